"""Make broken or unusual GGUF files from a real one, for the bad-input tests."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf


def copy_gguf(src: str | Path, dst: str | Path, *, drop_keys: set[str] = frozenset(), arch: str | None = None,
              drop_tensors: int = 0) -> Path:
    """Rewrite `src` to `dst` with the gguf package, optionally dropping metadata keys or tensors."""
    reader = gguf.GGUFReader(src)
    arch_name = arch or bytes(reader.fields["general.architecture"].parts[-1]).decode()
    writer = gguf.GGUFWriter(str(dst), arch=arch_name)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop_keys:
            continue
        value_type = field.types[0]
        if value_type == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(key, value, value_type, sub_type=sub)
        elif value_type == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[-1]).decode("utf-8", "replace"), value_type)
        else:
            writer.add_key_value(key, field.parts[-1].tolist()[0], value_type)
    tensors = reader.tensors[: len(reader.tensors) - drop_tensors] if drop_tensors else reader.tensors
    for t in tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    return Path(dst)


def truncate(src: str | Path, dst: str | Path, keep_fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep_fraction)])
    return Path(dst)


def big_vocab_gguf(path: str | Path, n_vocab: int = 256_000, n_layers: int = 2, n_embd: int = 64) -> Path:
    """A small llama GGUF with a large tokenizer (tokens, scores, token types) and a few tiny F32 tensors:
    its header is as large as a real 256k-vocabulary model's (~6 MB), its weights are not."""
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("big-vocab")
    writer.add_block_count(n_layers)
    writer.add_context_length(4096)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_embd * 2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"tok{i:06d}" for i in range(n_vocab)])
    writer.add_token_scores([float(-i) for i in range(n_vocab)])
    writer.add_token_types([1] * n_vocab)
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layers):
        writer.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((n_embd, n_embd), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


# ---- hostile headers, written by hand (struct) -------------------------------------------------------------------

def _s(text: str | bytes, declared: int | None = None) -> bytes:
    """A GGUF string: uint64 length (or a declared, lying one) and the bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw) if declared is None else declared) + raw


def hostile_header(n_tensors: int = 0, kvs: bytes = b"", n_kv: int = 0, tensors: bytes = b"", version: int = 3) -> bytes:
    """Magic, version, counts, then whatever bytes a test wants as key-values and tensor infos."""
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs + tensors


def kv_string(key: str, value: str, declared: int | None = None) -> bytes:
    return _s(key) + struct.pack("<I", 8) + _s(value, declared)


def kv_u32(key: str, value: int) -> bytes:
    return _s(key) + struct.pack("<II", 4, value)


def kv_array_header(key: str, elem_type: int, count: int) -> bytes:
    """A key whose value is an array: type 9, element type, count; the elements must follow."""
    return _s(key) + struct.pack("<IIQ", 9, elem_type, count)


def hostile_files(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the GgufError must contain). Each file is a few dozen bytes."""
    arch = kv_string("general.architecture", "llama")
    nested = _s("x") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 1) + struct.pack("<I", 7)
    cases = {
        "huge array": (hostile_header(kvs=arch + kv_array_header("x", 0, 2**30), n_kv=2),
                       "header declares an array of 1,073,741,824 entries for key 'x' (limit 16,777,216)"),
        "huge string": (hostile_header(kvs=arch + kv_string("general.name", "abc", declared=2**40), n_kv=2),
                        "string of 1,099,511,627,776 bytes"),
        "huge key": (hostile_header(kvs=_s("k", declared=2**33), n_kv=1), "string of 8,589,934,592 bytes for a key"),
        "huge string in array": (hostile_header(kvs=arch + kv_array_header("tokenizer.ggml.tokens", 8, 3) + _s("a")
                                                 + _s("b", declared=2**50), n_kv=2), "in array 'tokenizer.ggml.tokens'"),
        "duplicate key": (hostile_header(kvs=arch + kv_u32("llama.block_count", 2) + kv_u32("llama.block_count", 3), n_kv=3),
                          "repeats the key 'llama.block_count'"),
        "too many keys": (hostile_header(kvs=arch, n_kv=2**40), "metadata keys (limit 65,536)"),
        "too many tensors": (hostile_header(kvs=arch, n_kv=1, n_tensors=2**40), "tensors (limit 1,000,000)"),
        "too many dims": (hostile_header(kvs=arch, n_kv=1, n_tensors=1, tensors=_s("t") + struct.pack("<I", 2**31)),
                          "dimensions for tensor 't' (limit 8)"),
        "deep nesting": (hostile_header(kvs=arch + nested, n_kv=2), "nests arrays 3 deep for key 'x' (limit 2)"),
        "past the header cap": (hostile_header(kvs=arch + kv_array_header("x", 10, 16_000_000), n_kv=2),
                                "header is larger than 67,108,864 bytes (limit)"),
        "truncated": (hostile_header(kvs=arch + kv_array_header("x", 8, 1000) + _s("abc") * 10, n_kv=2), "truncated"),
        "unknown type": (hostile_header(kvs=arch + _s("x") + struct.pack("<I", 77), n_kv=2), "unknown value type 77"),
    }
    out = {}
    for name, (data, phrase) in cases.items():
        p = d / (name.replace(" ", "-") + ".gguf")
        p.write_bytes(data)
        out[name] = (p, phrase)
    return out
