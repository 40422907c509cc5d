"""A small, bounded GGUF header parser: metadata and tensor table, never the weights.

Why our own parser instead of `gguf.GGUFReader`: the reader memory-maps the file and materialises every
field with no limits, so a 49-byte file declaring one 2^30-entry array grows the app's memory until the
kernel kills it, a duplicate key raises an uncaught KeyError, and a real 256k-token vocabulary takes
seconds to turn into numpy objects nobody looks at. This parser

- reads the header through a small window (local file or HTTP range reads), never more than
  `MAX_HEADER_BYTES`, and never the tensor data;
- checks every count and length against a named limit *before* acting on it, raising `GgufError` with
  one line naming the file and the limit;
- skips token arrays (tokenizer.ggml.tokens/scores/token_type/merges) and any array longer than
  `MAX_KEPT_ARRAY` without building them: strings are stepped over by their lengths, numbers by
  count x size; only the token count is kept (the vocabulary size);
- stops after `MAX_PARSE_SECONDS` of parsing.

Why in-process is enough (README: "anything heavier than reading a few KB runs outside the app process"):
with these limits the work is bounded by construction: at most 64 MiB read through a window of a few MiB,
no structure larger than the limits is ever allocated, and the time limit caps the CPU spent, so a hostile
header costs the app process at most a few MB of memory and a bounded moment of one thread. Nothing here
calls into native code that could crash. A child process would add ~100 ms of start-up to every listed
file for no extra safety.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gguf

GGUF_MAGIC = b"GGUF"

MAX_KV_COUNT = 65_536
"""Most metadata keys a header may declare (real models have a few dozen)."""

MAX_TENSOR_COUNT = 1_000_000
"""Most tensors a header may declare (the largest real models have tens of thousands)."""

MAX_STRING_BYTES = 1 << 20
"""Longest string value (1 MiB): chat templates are the longest real ones, a few KB to ~100 KB."""

MAX_KEY_BYTES = 64 << 10
"""Longest key or tensor name (64 KiB); real ones are under 100 bytes."""

MAX_ARRAY_LEN = 16_777_216
"""Most entries in one array (16,777,216); the largest vocabularies have ~260k tokens (merges ~500k)."""

MAX_DIMS = 8
"""Most dimensions of one tensor (GGML supports 4)."""

MAX_ARRAY_NESTING = 2
"""Deepest nesting of arrays: an array of arrays is allowed, an array of arrays of arrays is not."""

MAX_HEADER_BYTES = 64 << 20
"""Most header bytes read (64 MiB), metadata and tensor table together; a 256k-vocab header is ~6 MB."""

MAX_PARSE_SECONDS = 10.0
"""Longest time spent parsing one header (fetching remote bytes not counted); a 256k-vocab header takes ~0.1 s."""

MAX_KEPT_ARRAY = 64
"""Arrays up to this long are kept in the metadata (per-layer values); longer ones are stepped over."""

DEFAULT_ALIGNMENT = 32
TOKEN_KEYS = frozenset({"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                        "tokenizer.ggml.merges"})

# GGUF value types: (struct format, size) for the fixed-size ones
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = range(13)
_SCALARS = {_UINT8: "B", _INT8: "b", _UINT16: "H", _INT16: "h", _UINT32: "I", _INT32: "i", _FLOAT32: "f",
            _BOOL: "?", _UINT64: "Q", _INT64: "q", _FLOAT64: "d"}
_SIZES = {t: struct.calcsize("<" + f) for t, f in _SCALARS.items()}

_WINDOW = 1 << 20  # bytes read from the source at a time (local files)


class GgufError(ValueError):
    """A file cannot be used as a GGUF model; the message names the file and the cause."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_name: str
    n_elements: int
    n_bytes: int
    offset: int  # from the start of the file


@dataclass
class Header:
    """What `parse_header` read: metadata (short values only), token count, tensor table, where data starts."""

    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)  # every array's length, kept or skipped
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0


Fetch = Callable[[int, int], bytes]
"""(offset, n) -> the bytes at offset: at least n of them (fewer only at the end of the file), more when the
source reads ahead; the parser keeps at most what it has not consumed yet."""


def file_fetch(fh, read_ahead: int = _WINDOW) -> Fetch:
    """Fetch from an open binary file, reading `read_ahead` bytes at a time (never past the header cap)."""

    def fetch(offset: int, n: int) -> bytes:
        fh.seek(offset)
        return fh.read(max(n, min(read_ahead, MAX_HEADER_BYTES - offset)))

    return fetch


class _Cursor:
    """Sequential reads over a fetch function, keeping only the bytes not consumed yet; bounded by MAX_HEADER_BYTES."""

    def __init__(self, fetch: Fetch, name: str) -> None:
        self.fetch, self.name = fetch, name
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # index into buf
        self.fetch_seconds = 0.0
        self.started = time.monotonic()
        self.byteorder = "<"

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def fail(self, what: str) -> GgufError:
        return GgufError(f"{self.name}: {what}")

    def check_time(self) -> None:
        if time.monotonic() - self.started - self.fetch_seconds > MAX_PARSE_SECONDS:
            raise self.fail(f"header took longer than {MAX_PARSE_SECONDS:g} s to parse (limit), stopped at byte {self.offset:,}")

    def need(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            return
        end = self.offset + n
        if end > MAX_HEADER_BYTES:
            raise self.fail(f"header is larger than {MAX_HEADER_BYTES:,} bytes (limit)")
        keep = self.buf[self.pos:]
        self.base += self.pos
        self.pos = 0
        t0 = time.monotonic()
        more = self.fetch(self.base + len(keep), n - len(keep))
        self.fetch_seconds += time.monotonic() - t0
        self.buf = keep + more
        if len(self.buf) < n:
            raise self.fail(f"truncated or corrupt GGUF header (ends at byte {self.base + len(self.buf):,}, "
                            f"needed {end:,})")

    def take(self, n: int) -> bytes:
        self.need(n)
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def skip(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            self.pos += n
            return
        if self.offset + n > MAX_HEADER_BYTES:
            raise self.fail(f"header is larger than {MAX_HEADER_BYTES:,} bytes (limit)")
        # land exactly on the target and check that the byte before it exists
        target = self.offset + n
        self.base, self.buf, self.pos = target, b"", 0
        if n:
            self.base -= 1
            self.need(1)
            self.pos = 1

    def scalar(self, vtype: int) -> Any:
        size = _SIZES[vtype]
        self.need(size)
        (v,) = struct.unpack_from(self.byteorder + _SCALARS[vtype], self.buf, self.pos)
        self.pos += size
        return v

    def u32(self) -> int:
        return self.scalar(_UINT32)

    def u64(self) -> int:
        return self.scalar(_UINT64)

    def string(self, limit: int, what: str) -> str:
        n = self.u64()
        if n > limit:
            raise self.fail(f"header declares a string of {n:,} bytes for {what} (limit {limit:,})")
        return self.take(n).decode("utf-8", "replace")


def _value_type(cur: _Cursor, key: str) -> int:
    t = cur.u32()
    if t not in _SCALARS and t not in (_STRING, _ARRAY):
        raise cur.fail(f"header has an unknown value type {t} for key '{key}'")
    return t


def _array(cur: _Cursor, key: str, depth: int, keep: bool) -> tuple[int, list | None]:
    """Read an array (its type and count already positioned at); returns (count, values or None when skipped)."""
    if depth > MAX_ARRAY_NESTING:
        raise cur.fail(f"header nests arrays {depth} deep for key '{key}' (limit {MAX_ARRAY_NESTING})")
    etype = _value_type(cur, key)
    count = cur.u64()
    if count > MAX_ARRAY_LEN:
        raise cur.fail(f"header declares an array of {count:,} entries for key '{key}' (limit {MAX_ARRAY_LEN:,})")
    keep = keep and count <= MAX_KEPT_ARRAY
    if etype in _SCALARS:
        size = _SIZES[etype]
        if not keep:
            cur.skip(count * size)
            return count, None
        cur.need(count * size)
        scalars = list(struct.unpack_from(f"{cur.byteorder}{count}{_SCALARS[etype]}", cur.buf, cur.pos))
        cur.pos += count * size
        return count, scalars
    if etype == _STRING:
        if not keep:
            _skip_strings(cur, key, count)
            return count, None
        unpack = struct.Struct(cur.byteorder + "Q").unpack_from
        strings = []
        for i in range(count):
            if not i & 0xFFF:
                cur.check_time()
            strings.append(cur.take(_string_length(cur, key, unpack)).decode("utf-8", "replace"))
        return count, strings
    values: list | None = [] if keep else None
    for i in range(count):  # array of arrays
        if not i & 0xFFF:
            cur.check_time()
        _, inner = _array(cur, key, depth + 1, values is not None)
        if values is not None:
            values.append(inner)
    return count, values


def _skip_strings(cur: _Cursor, key: str, count: int) -> None:
    """Step over `count` length-prefixed strings (a tokenizer's 49k tokens and merges, say) with the same limits
    as reading them; strings wholly in the buffer are stepped over without a call each (5x faster here)."""
    unpack = struct.Struct(cur.byteorder + "Q").unpack_from
    i = 0
    while i < count:
        cur.check_time()
        buf, pos, end = cur.buf, cur.pos, len(cur.buf)
        stop = min(count, i + 0x1000)  # back to check_time at least every 4096 strings
        while i < stop and pos + 8 <= end:
            (n,) = unpack(buf, pos)
            if n > MAX_STRING_BYTES or pos + 8 + n > end:
                break
            pos += 8 + n
            i += 1
        cur.pos = pos
        if i < stop:  # the next string reaches past the buffer (or is too long): the careful way, once
            cur.skip(_string_length(cur, key, unpack))
            i += 1


def _string_length(cur: _Cursor, key: str, unpack: Callable[..., tuple[Any, ...]]) -> int:
    """Read one array string's length prefix, refusing lengths over the limit; the cursor is then at its bytes."""
    cur.need(8)
    (n,) = unpack(cur.buf, cur.pos)
    if n > MAX_STRING_BYTES:
        raise cur.fail(f"header declares a string of {n:,} bytes in array '{key}' (limit {MAX_STRING_BYTES:,})")
    cur.pos += 8
    return n


def parse_header(fetch: Fetch, name: str) -> Header:
    """Parse a GGUF header from `fetch` (see `file_fetch`); raises GgufError naming `name` and the cause."""
    cur = _Cursor(fetch, name)
    magic = cur.take(4)
    if magic != GGUF_MAGIC:
        raise cur.fail(f"not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    version = cur.u32()
    if version & 0xFFFF == 0 and version:  # written on a big-endian machine
        cur.byteorder = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in (2, 3):
        raise cur.fail(f"GGUF version {version} is not supported (only 2 and 3)")
    n_tensors, n_kv = cur.u64(), cur.u64()
    if n_tensors > MAX_TENSOR_COUNT:
        raise cur.fail(f"header declares {n_tensors:,} tensors (limit {MAX_TENSOR_COUNT:,})")
    if n_kv > MAX_KV_COUNT:
        raise cur.fail(f"header declares {n_kv:,} metadata keys (limit {MAX_KV_COUNT:,})")

    header = Header(version=version)
    seen: set[str] = set()
    for _ in range(n_kv):
        cur.check_time()
        key = cur.string(MAX_KEY_BYTES, "a key")
        if key in seen:
            raise cur.fail(f"header repeats the key '{key}'")
        seen.add(key)
        vtype = _value_type(cur, key)
        if vtype == _ARRAY:
            count, values = _array(cur, key, 1, key not in TOKEN_KEYS)
            header.array_lengths[key] = count
            if values is not None:
                header.metadata[key] = values
        elif vtype == _STRING:
            header.metadata[key] = cur.string(MAX_STRING_BYTES, f"key '{key}'")
        else:
            header.metadata[key] = cur.scalar(vtype)

    offsets = []
    for i in range(n_tensors):
        if not i & 0x3FF:
            cur.check_time()
        tname = cur.string(MAX_KEY_BYTES, "a tensor name")
        n_dims = cur.u32()
        if n_dims > MAX_DIMS:
            raise cur.fail(f"header declares {n_dims:,} dimensions for tensor '{tname}' (limit {MAX_DIMS})")
        shape = tuple(cur.u64() for _ in range(n_dims))
        ttype = cur.u32()
        try:
            qtype = gguf.GGMLQuantizationType(ttype)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise cur.fail(f"tensor '{tname}' has an unknown type {ttype}") from None
        n_el = 1
        for d in shape:
            n_el *= d
        offsets.append(cur.u64())
        header.tensors.append(TensorInfo(tname, shape, qtype.name, n_el, n_el * type_size // block, 0))

    alignment = header.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise cur.fail(f"general.alignment is {alignment!r}, not a power of two")
    pos = cur.offset
    header.data_offset = pos + (-pos % alignment)
    for t, off in zip(header.tensors, offsets, strict=True):
        t.offset = header.data_offset + off
    return header
