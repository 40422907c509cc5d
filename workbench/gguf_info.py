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

GGUF_MAGIC = b"GGUF"
REPACKABLE_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})


class GgufError(ValueError):
    """A file cannot be used as a GGUF model; the message names the file and the cause."""


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

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)


def _field_value(f: gguf.ReaderField) -> Any:
    try:
        value = f.contents()
    except Exception:  # unusual field types: skip rather than fail the whole header
        return None
    return value


def quant_type_from_file_type(file_type: int | None) -> str | None:
    """Map `general.file_type` (llama.cpp's LLAMA_FTYPE) to a short name such as "Q4_K_M"."""
    if file_type is None:
        return None
    try:
        name = gguf.LlamaFileType(int(file_type)).name
    except ValueError:
        return None
    return name.removeprefix("MOSTLY_").replace("ALL_F32", "F32")


def _dominant_tensor_type(reader: gguf.GGUFReader) -> str:
    """When a file lacks `general.file_type`, name it after the type holding most of its bytes."""
    by_type: dict[str, int] = {}
    for t in reader.tensors:
        by_type[t.tensor_type.name] = by_type.get(t.tensor_type.name, 0) + int(t.n_bytes)
    return max(by_type, key=by_type.get) if by_type else "unknown"


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

    Parsed headers are cached by (path, size, mtime): the token table makes a parse take seconds.
    """
    p = check_path(path)
    st = p.stat()
    info = _read_header_cached(str(p.resolve()), st.st_size, st.st_mtime_ns, check_arch)
    return replace(info, path=str(p))  # keep the caller's spelling of the path


@lru_cache(maxsize=64)
def _read_header_cached(path: str, size: int, mtime_ns: int, check_arch: bool) -> GgufInfo:
    p = Path(path)
    try:
        reader = gguf.GGUFReader(p)
    except (ValueError, IndexError, OverflowError) as exc:
        raise GgufError(f"{p}: truncated or corrupt GGUF header ({exc})") from None
    except OSError as exc:
        raise GgufError(f"{p}: cannot be read ({exc.strerror or exc})") from None

    end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=reader.data_offset)
    if end > size:
        raise GgufError(f"{p}: truncated GGUF ({size:,} bytes on disk, header describes {end:,})")

    meta: dict[str, Any] = {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                               "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            continue
        value = _field_value(f)
        if isinstance(value, list) and len(value) > 64:
            continue
        meta[key] = value

    arch = str(meta.get("general.architecture") or "")
    if not arch:
        raise GgufError(f"{p}: GGUF header has no general.architecture")
    if check_arch and arch not in known_architectures():
        raise GgufError(f"{p}: architecture '{arch}' is not supported by this llama.cpp")

    def arch_int(suffix: str) -> int | None:
        v = meta.get(f"{arch}.{suffix}")
        if isinstance(v, (list, np.ndarray)):  # per-layer arrays: take the largest
            return int(max(v)) if len(v) else None
        return int(v) if v is not None else None

    n_params = sum(int(t.n_elements) for t in reader.tensors)
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    # llama.cpp's CPU "extra buffer" repacks these types of 2-D weights (not the token embedding,
    # which is only looked up) into an interleaved copy when the CPU supports it
    repackable = sum(int(t.n_bytes) for t in reader.tensors
                     if t.tensor_type.name in REPACKABLE_TYPES and len(t.shape) == 2 and t.name != "token_embd.weight")

    head_count = arch_int("attention.head_count")
    embd = arch_int("embedding_length")
    head_dim = embd // head_count if embd and head_count else None
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return GgufInfo(
        path=str(p),
        size_bytes=size,
        architecture=arch,
        name=meta.get("general.name"),
        quant_type=quant_type_from_file_type(meta.get("general.file_type")) or _dominant_tensor_type(reader),
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
        vocab_size=len(tokens.data) if tokens is not None else arch_int("vocab_size"),
        chat_template=meta.get("tokenizer.chat_template"),
        tensor_types=types,
        repackable_bytes=repackable,
        metadata=meta,
    )
