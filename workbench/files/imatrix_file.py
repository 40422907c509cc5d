"""Importance-matrix files, in llama.cpp's own formats, so ours and `llama-imatrix`'s interoperate.

An importance matrix records, for each weight matrix the model multiplies by, the sum of the squared
activations that reached each input column over some calibration text, and how many tokens that was. The
quantizer divides one by the other (the mean squared activation per column) and spends its precision where
that is large. Two formats exist, both read here:

- **GGUF** (what `llama-imatrix` writes today, `*.imatrix.gguf`): `general.type = "imatrix"`, the keys
  `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`, and per weight two F32 tensors,
  `<weight>.in_sum2` (raw sums, shape [n_mat, n_cols]) and `<weight>.counts` (tokens per matrix, [n_mat]).
- **legacy `.dat`**: int32 entry count; per entry a name, `ncall`, the value count and the values (already
  averaged and multiplied by ncall); then optionally the chunk count and a dataset name.

`write_imatrix` writes the GGUF form only; `importance()` gives what `llama-quantize` hands
`llama_model_quantize` for each weight, computed the way its `load_imatrix` does. Reading is bounded: the
header goes through the bounded parser, the file size, entry count and value counts have named limits, and
a broken file raises `ImatrixError` with one line.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from workbench.files.gguf_header import GgufError, file_fetch, parse_header

MAX_FILE_BYTES = 4 << 30
"""Largest imatrix file read (4 GiB); a 70B model's is ~200 MB, a 400B MoE's a few GB."""

MAX_ENTRIES = 200_000
"""Most weights one file may describe (a large MoE has a few thousand)."""

MAX_VALUES = 1 << 28
"""Most values in one entry (2^28 floats, 1 GiB)."""

MAX_NAME_BYTES = 4096
"""Longest weight or dataset name in a legacy file."""

SUM_SUFFIX, COUNT_SUFFIX = ".in_sum2", ".counts"


class ImatrixError(ValueError):
    """A file that is not a usable importance matrix; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ImatrixEntry:
    """One weight's statistics: `sums` [n_mat, n_cols] of squared activations, `counts` [n_mat] of tokens."""

    sums: np.ndarray
    counts: np.ndarray

    def importance(self) -> np.ndarray:
        """Mean squared activation per column, flattened, as llama-quantize computes it (1 where a matrix saw
        no token, which leaves that matrix quantized as without a matrix)."""
        counts = self.counts.astype(np.float64)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(counts > 0, self.sums / np.where(counts > 0, counts, 1), 1.0)
        return mean.astype(np.float32).reshape(-1)


@dataclass
class ImatrixFile:
    """A whole importance matrix: entries by weight name, and what it was computed from.

    `chunk_count`/`chunk_size`: how many chunks of how many tokens went through the model. `metadata` holds
    the workbench's own provenance keys (`workbench.calibration.*`), written into the GGUF as strings/ints.
    """

    entries: dict[str, ImatrixEntry]
    datasets: tuple[str, ...] = ()
    chunk_count: int = 0
    chunk_size: int = 0
    legacy: bool = False
    metadata: dict[str, str | int] = field(default_factory=dict)

    def importance(self) -> dict[str, np.ndarray]:
        """{weight name: float32 values} for llama_model_quantize's `imatrix` array."""
        return {name: e.importance() for name, e in self.entries.items()}

    @property
    def n_tokens(self) -> int:
        """Tokens the matrix saw (the most any one weight saw; all dense weights see every token)."""
        return max((int(e.counts.max()) for e in self.entries.values() if e.counts.size), default=0)


def write_imatrix(path: str | os.PathLike[str], data: ImatrixFile) -> Path:
    """Write `data` in the GGUF form llama-imatrix writes (tmp name, renamed when complete)."""
    import gguf

    path = Path(path)
    if not data.entries:
        raise ImatrixError(f"{path}: an importance matrix needs at least one entry")
    tmp = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), arch="imatrix")
    writer.add_type(gguf.GGUFType.IMATRIX)
    writer.add_array(gguf.Keys.IMatrix.DATASETS, list(data.datasets))
    writer.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, int(data.chunk_count))
    writer.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, int(data.chunk_size))
    for key, value in sorted(data.metadata.items()):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ImatrixError(f"{path}: metadata {key!r} must be text or an integer")
        if isinstance(value, int):
            writer.add_uint64(key, value)
        else:
            writer.add_string(key, value)
    for name, e in sorted(data.entries.items()):
        sums = np.ascontiguousarray(e.sums, dtype=np.float32).reshape(len(e.counts), -1)
        writer.add_tensor(name + SUM_SUFFIX, sums)
        writer.add_tensor(name + COUNT_SUFFIX, np.asarray(e.counts, dtype=np.float32).reshape(len(e.counts), 1))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, path)
    return path


def read_imatrix(path: str | os.PathLike[str]) -> ImatrixFile:
    """Read an importance matrix in either format; `ImatrixError` (one line) for anything unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImatrixError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise ImatrixError(f"{path}: {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for an importance matrix")
    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic == b"GGUF":
            return _read_gguf(path, fh, size)
        return _read_legacy(path, fh, size)


def _read_gguf(path: Path, fh: BinaryIO, size: int) -> ImatrixFile:
    try:
        header = parse_header(file_fetch(fh), str(path))
    except GgufError as exc:
        raise ImatrixError(str(exc)) from None
    meta = header.metadata
    if meta.get("general.type") not in (None, "imatrix") or not any(t.name.endswith(SUM_SUFFIX) for t in header.tensors):
        raise ImatrixError(f"{path}: a GGUF file, but not an importance matrix (no *.in_sum2 tensors)")
    if len(header.tensors) > 2 * MAX_ENTRIES:
        raise ImatrixError(f"{path}: {len(header.tensors):,} tensors, over the limit of {2 * MAX_ENTRIES:,}")
    arrays: dict[str, np.ndarray] = {}
    for t in header.tensors:
        if t.type_name != "F32":
            raise ImatrixError(f"{path}: tensor {t.name} is {t.type_name}; an importance matrix holds F32 only")
        if t.n_elements > MAX_VALUES or t.offset + t.n_bytes > size:
            raise ImatrixError(f"{path}: tensor {t.name} is larger than the file or the {MAX_VALUES:,}-value limit")
        fh.seek(t.offset)
        raw = fh.read(t.n_bytes)
        if len(raw) != t.n_bytes:
            raise ImatrixError(f"{path}: tensor {t.name} is cut short")
        # GGUF shapes list the fastest dimension first; numpy wants it last
        arrays[t.name] = np.frombuffer(raw, dtype="<f4").reshape(tuple(reversed(t.shape)) or (1,))
    entries: dict[str, ImatrixEntry] = {}
    for name, sums in arrays.items():
        if not name.endswith(SUM_SUFFIX):
            continue
        weight = name[: -len(SUM_SUFFIX)]
        counts = arrays.get(weight + COUNT_SUFFIX)
        if counts is None:
            raise ImatrixError(f"{path}: {weight} has sums but no counts")
        n_mat = counts.size
        if n_mat == 0 or sums.size % n_mat:
            raise ImatrixError(f"{path}: {weight}: {sums.size} sums do not divide into {n_mat} matrices")
        if not (np.isfinite(sums).all() and np.isfinite(counts).all()) or (counts < 0).any():
            raise ImatrixError(f"{path}: {weight} holds non-finite or negative values")
        entries[weight] = ImatrixEntry(sums.reshape(n_mat, -1).astype(np.float32),
                                       np.rint(counts.reshape(-1)).astype(np.int64))
    datasets = meta.get("imatrix.datasets")
    own = {k: v for k, v in meta.items() if k.startswith("workbench.") and isinstance(v, (int, str))}
    return ImatrixFile(entries, tuple(str(d) for d in datasets) if isinstance(datasets, list) else (),
                       _int(meta.get("imatrix.chunk_count")), _int(meta.get("imatrix.chunk_size")), metadata=own)


def _int(value: object) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _read_legacy(path: Path, fh: BinaryIO, size: int) -> ImatrixFile:
    def take(n: int, what: str) -> bytes:
        raw = fh.read(n)
        if len(raw) != n:
            raise ImatrixError(f"{path}: cut short while reading {what} (not an importance matrix?)")
        return raw

    def i32(what: str) -> int:
        return int(struct.unpack("<i", take(4, what))[0])

    def name(what: str) -> str:
        n = i32(what)
        if not 0 < n <= MAX_NAME_BYTES:
            raise ImatrixError(f"{path}: a {what} of {n} bytes (limit {MAX_NAME_BYTES}); not an importance matrix")
        return take(n, what).decode("utf-8", "replace")

    n_entries = i32("the entry count")
    if not 0 < n_entries <= MAX_ENTRIES:
        raise ImatrixError(f"{path}: neither a GGUF nor a legacy importance matrix (entry count {n_entries})")
    entries: dict[str, ImatrixEntry] = {}
    for _ in range(n_entries):
        weight = name("weight name")
        ncall, nval = i32("a call count"), i32("a value count")
        if not 0 < nval <= MAX_VALUES or ncall < 0 or fh.tell() + 4 * nval > size:
            raise ImatrixError(f"{path}: {weight}: {nval} values, more than the file holds or the limit")
        values = np.frombuffer(take(4 * nval, "values"), dtype="<f4")
        if not np.isfinite(values).all():
            raise ImatrixError(f"{path}: {weight} holds non-finite values")
        entries[weight] = ImatrixEntry(values.reshape(1, -1).astype(np.float32), np.array([ncall], dtype=np.int64))
    chunk_count, datasets = 0, tuple[str, ...]()
    if fh.tell() < size:
        chunk_count = i32("the chunk count")
        if fh.tell() < size:
            datasets = (name("dataset name"),)
    return ImatrixFile(entries, datasets, chunk_count, 0, legacy=True)


def entries_from_arrays(sums: Mapping[str, np.ndarray], counts: Mapping[str, int | np.ndarray]) -> dict[str, ImatrixEntry]:
    """Entries from plain arrays (what a collector accumulates): 1-D sums become one matrix."""
    out = {}
    for weight, s in sums.items():
        c = np.atleast_1d(np.asarray(counts[weight], dtype=np.int64))
        out[weight] = ImatrixEntry(np.asarray(s, dtype=np.float32).reshape(len(c), -1), c)
    return out
