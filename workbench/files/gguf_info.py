"""Read a GGUF file's header (metadata and tensor table) without loading weights, and vet it.

Checking the header first turns the common user mistakes (wrong path, a directory, an empty or
truncated file, something that is not GGUF, an architecture llama.cpp does not know) into one clear
line, instead of a crash or a cryptic error deep inside llama.cpp.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from workbench.files.gguf_header import TOKEN_KEYS, GgufError, Header, file_fetch, parse_header

GGUF_MAGIC = b"GGUF"
REPACKABLE_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})
CALIBRATION_PREFIX = "workbench.calibration."  # our provenance keys (runs.calibration writes them)
#: llama-quantize's keys for a file made with an importance matrix, and what `GgufInfo.imatrix` calls them
QUANTIZE_IMATRIX_KEYS = {"quantize.imatrix.file": "file", "quantize.imatrix.dataset": "dataset",
                         "quantize.imatrix.entries_count": "entries", "quantize.imatrix.chunks_count": "chunks"}


@dataclass
class GgufInfo:
    """What the header says about a model file. Sizes are bytes; counts come from the metadata."""

    path: str
    size_bytes: int
    architecture: str
    name: str | None
    quant_type: str
    n_params: int
    tensor_bytes: int
    bits_per_weight: float
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    vocab_size: int | None
    chat_template: str | None
    tensor_types: dict[str, int] = field(default_factory=dict)  # ggml type name -> tensor count
    repackable_bytes: int = 0  # bytes of matrix weights llama.cpp's CPU backend may repack (see fit.py)
    metadata: dict[str, Any] = field(default_factory=dict)  # scalar fields only (no token arrays)
    # made with an importance matrix (ours or llama-quantize's, e.g. bartowski's and unsloth's files): "file",
    # "dataset", "entries", "chunks" from `quantize.imatrix.*`, and our `workbench.calibration.*` keys unprefixed
    imatrix: dict[str, Any] | None = None

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)


def quant_type_from_file_type(file_type: int | None) -> str | None:
    """Map `general.file_type` (llama.cpp's LLAMA_FTYPE) to a short name such as "Q4_K_M"."""
    if file_type is None:
        return None
    try:
        name = gguf.LlamaFileType(int(file_type)).name
    except ValueError:
        return None
    return name.removeprefix("MOSTLY_").replace("ALL_F32", "F32")


def imatrix_from_metadata(meta: dict[str, Any]) -> dict[str, Any] | None:
    """What a file's header says about the importance matrix it was quantized with; None for a static file."""
    out = {short: meta[key] for key, short in QUANTIZE_IMATRIX_KEYS.items() if isinstance(meta.get(key), (str, int))}
    out.update({k.removeprefix(CALIBRATION_PREFIX): v for k, v in meta.items()
                if k.startswith(CALIBRATION_PREFIX) and isinstance(v, (str, int))})
    return out or None


def known_architectures() -> set[str]:
    """Architectures the gguf package (kept in step with llama.cpp) knows."""
    return set(gguf.MODEL_ARCH_NAMES.values())


def check_path(path: str | os.PathLike[str]) -> Path:
    """Fail with one clear line for the file-system mistakes, before any parsing."""
    p = Path(path).expanduser()
    try:
        if not p.exists():
            raise GgufError(f"{p}: no such file")
        if p.is_dir():
            raise GgufError(f"{p}: is a directory, not a GGUF file")
        if not os.access(p, os.R_OK):
            raise GgufError(f"{p}: cannot be read (permission denied)")
        if p.stat().st_size == 0:
            raise GgufError(f"{p}: file is empty")
        with p.open("rb") as fh:
            magic = fh.read(4)
    except PermissionError:
        raise GgufError(f"{p}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise GgufError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if magic != GGUF_MAGIC:
        raise GgufError(f"{p}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    return p


def read_header(path: str | os.PathLike[str], *, check_arch: bool = True) -> GgufInfo:
    """Parse and vet a GGUF header; raises GgufError naming the file and the cause.

    Parsing is bounded (`gguf_header`: limits on counts, lengths, bytes and time); parsed headers are
    cached by (path, size, mtime).
    """
    p = check_path(path)
    st = p.stat()
    info = _read_header_cached(str(p.resolve()), st.st_size, st.st_mtime_ns, check_arch)
    return replace(info, path=str(p))  # keep the caller's spelling of the path


@lru_cache(maxsize=64)
def _read_header_cached(path: str, size: int, mtime_ns: int, check_arch: bool) -> GgufInfo:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            header = parse_header(file_fetch(fh), str(p))
    except OSError as exc:
        raise GgufError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    return info_from_header(header, str(p), size, check_arch=check_arch)


def info_from_header(header: Header, name: str, size: int, *, check_arch: bool = True) -> GgufInfo:
    """A GgufInfo from a parsed header of a file of `size` bytes (local or remote); vets it like `read_header`."""
    p = name
    end = max((t.offset + t.n_bytes for t in header.tensors), default=header.data_offset)
    if end > size:
        raise GgufError(f"{p}: truncated GGUF ({size:,} bytes on disk, header describes {end:,})")

    meta: dict[str, Any] = {k: v for k, v in header.metadata.items() if not k.startswith("GGUF.") and k not in TOKEN_KEYS}

    arch = str(meta.get("general.architecture") or "")
    if not arch:
        raise GgufError(f"{p}: GGUF header has no general.architecture")
    if check_arch and arch not in known_architectures():
        raise GgufError(f"{p}: architecture '{arch}' is not supported by this llama.cpp")

    def arch_int(suffix: str) -> int | None:
        v = meta.get(f"{arch}.{suffix}")
        try:
            if isinstance(v, (list, np.ndarray)):  # per-layer arrays: take the largest
                return int(max(v)) if len(v) else None
            return int(v) if v is not None else None
        except (TypeError, ValueError):
            raise GgufError(f"{p}: {arch}.{suffix} is {str(v)[:40]!r}, not a number") from None

    tensors = header.tensors
    n_params = sum(t.n_elements for t in tensors)
    tensor_bytes = sum(t.n_bytes for t in tensors)
    types: dict[str, int] = {}
    by_bytes: dict[str, int] = {}
    for t in tensors:
        types[t.type_name] = types.get(t.type_name, 0) + 1
        by_bytes[t.type_name] = by_bytes.get(t.type_name, 0) + t.n_bytes
    # llama.cpp's CPU "extra buffer" repacks these types of 2-D weights (not the token embedding,
    # which is only looked up) into an interleaved copy when the CPU supports it
    repackable = sum(t.n_bytes for t in tensors
                     if t.type_name in REPACKABLE_TYPES and len(t.shape) == 2 and t.name != "token_embd.weight")
    # when a file lacks `general.file_type`, name it after the type holding most of its bytes
    dominant = max(by_bytes, key=lambda name: by_bytes[name]) if by_bytes else "unknown"

    head_count = arch_int("attention.head_count")
    embd = arch_int("embedding_length")
    head_dim = embd // head_count if embd and head_count else None
    file_type = meta.get("general.file_type")
    name_ = meta.get("general.name")
    template = meta.get("tokenizer.chat_template")
    return GgufInfo(
        path=str(p),
        size_bytes=size,
        architecture=arch,
        name=name_ if isinstance(name_, str) else None,
        quant_type=(quant_type_from_file_type(file_type) if isinstance(file_type, int) else None) or dominant,
        n_params=n_params,
        tensor_bytes=tensor_bytes,
        bits_per_weight=round(tensor_bytes * 8 / n_params, 3) if n_params else 0.0,
        context_length=arch_int("context_length"),
        block_count=arch_int("block_count"),
        embedding_length=embd,
        head_count=head_count,
        head_count_kv=arch_int("attention.head_count_kv") or head_count,
        key_length=arch_int("attention.key_length") or head_dim,
        value_length=arch_int("attention.value_length") or head_dim,
        vocab_size=header.array_lengths.get("tokenizer.ggml.tokens", arch_int("vocab_size")),
        chat_template=template if isinstance(template, str) else None,
        tensor_types=types,
        repackable_bytes=repackable,
        metadata=meta,
        imatrix=imatrix_from_metadata(meta),
    )
