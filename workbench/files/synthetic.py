"""Synthetic models for measuring cost as models grow: llama architecture, random weights, a real tokenizer.

They answer "how do load time, memory and speed grow with size on this machine?", nothing else.
They are labelled synthetic in their metadata and file names, and their output is noise: never
offer them as a model to judge quality. Weights are drawn once from a small random pool and
tiled, because speed and memory do not depend on the values and drawing billions of normals
would take minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

SYNTHETIC_KEY = "workbench.files.synthetic"


@dataclass(frozen=True)
class Shape:
    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_kv_head: int
    n_ff: int

    def n_params(self, n_vocab: int) -> int:
        hd = self.n_embd // self.n_head
        attn = self.n_embd * hd * (2 * self.n_head + 2 * self.n_kv_head)
        ffn = 3 * self.n_embd * self.n_ff
        return 2 * n_vocab * self.n_embd + self.n_layer * (attn + ffn + 2 * self.n_embd) + self.n_embd


# Shapes in the proportions of common llama-family models of each size (with a 49,152-token vocabulary).
SHAPES = {
    "0.1B": Shape("0.1B", 512, 12, 8, 4, 1536),
    "0.5B": Shape("0.5B", 1024, 24, 16, 4, 4096),
    "1B": Shape("1B", 2048, 16, 32, 8, 8192),
    "3B": Shape("3B", 3072, 28, 24, 8, 8192),
    "8B": Shape("8B", 4096, 32, 32, 8, 14336),
}


# (key, value, type, array element type): the value as read (a string, a number or a list of them), passed
# back to GGUFWriter.add_key_value unchanged.
TokenizerField = tuple[str, Any, gguf.GGUFValueType, gguf.GGUFValueType | None]


def _tokenizer_fields(src: gguf.GGUFReader) -> list[TokenizerField]:
    fields: list[TokenizerField] = []
    for name, f in src.fields.items():
        if not name.startswith("tokenizer."):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            sub = f.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
            else:
                value = [f.parts[i].tolist()[0] for i in f.data]
            fields.append((name, value, t, sub))
        elif t == gguf.GGUFValueType.STRING:
            fields.append((name, bytes(f.parts[f.data[0]]).decode("utf-8", "replace"), t, None))
        else:
            fields.append((name, f.parts[f.data[0]].tolist()[0], t, None))
    return fields


def write_vocab_only(src: str | Path, out: str | Path) -> Path:
    """A GGUF holding only `src`'s tokenizer: a few MB to carry to the lent GPU machine (64 MiB per call),
    where the full model would not fit; benchmarks/gpu/h100.sh builds its synthetic models from it."""
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(str(out), "llama")
    for name, value, t, sub in _tokenizer_fields(reader):
        writer.add_key_value(name, value, t, sub_type=sub)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def write_synthetic(vocab_src: str | Path, out: str | Path, shape: Shape, seed: int = 0) -> Path:
    """Write an F16 synthetic model of `shape` using the tokenizer of `vocab_src`."""
    reader = gguf.GGUFReader(vocab_src)
    tok_fields = _tokenizer_fields(reader)
    n_vocab = next(len(v) for name, v, _, _ in tok_fields if name == "tokenizer.ggml.tokens")
    writer = gguf.GGUFWriter(str(out), "llama")
    for name, value, t, sub in tok_fields:
        writer.add_key_value(name, value, t, sub_type=sub)
    writer.add_name(f"synthetic-llama-{shape.name} (random weights, not a real model)")
    writer.add_bool(SYNTHETIC_KEY, True)
    writer.add_context_length(4096)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_kv_head)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    rng = np.random.default_rng(seed)
    pool = rng.standard_normal(1 << 22, dtype=np.float32).astype(np.float16)  # 4 Mi values, tiled
    offset = [0]

    def mat(rows: int, cols: int) -> np.ndarray:
        n = rows * cols
        start = offset[0] % pool.size
        offset[0] += 7919
        reps = (start + n) // pool.size + 1
        flat = np.tile(pool, reps)[start : start + n] if reps > 1 else pool[start : start + n]
        return (flat.reshape(rows, cols) * np.float16(1.0 / np.sqrt(cols))).astype(np.float16)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    hd = shape.n_embd // shape.n_head
    writer.add_tensor("token_embd.weight", mat(n_vocab, shape.n_embd))
    writer.add_tensor("output_norm.weight", ones(shape.n_embd))
    writer.add_tensor("output.weight", mat(n_vocab, shape.n_embd))
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", ones(shape.n_embd))
        writer.add_tensor(p + "attn_q.weight", mat(shape.n_head * hd, shape.n_embd))
        writer.add_tensor(p + "attn_k.weight", mat(shape.n_kv_head * hd, shape.n_embd))
        writer.add_tensor(p + "attn_v.weight", mat(shape.n_kv_head * hd, shape.n_embd))
        writer.add_tensor(p + "attn_output.weight", mat(shape.n_embd, shape.n_head * hd))
        writer.add_tensor(p + "ffn_norm.weight", ones(shape.n_embd))
        writer.add_tensor(p + "ffn_gate.weight", mat(shape.n_ff, shape.n_embd))
        writer.add_tensor(p + "ffn_up.weight", mat(shape.n_ff, shape.n_embd))
        writer.add_tensor(p + "ffn_down.weight", mat(shape.n_embd, shape.n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)
