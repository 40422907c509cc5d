"""Collect an importance matrix in-process, the way llama.cpp's `llama-imatrix` does, in a child process.

The reference model runs over calibration text with llama.cpp's evaluation callback (`cb_eval`) set. For every
graph node the scheduler first *asks* whether we want it; like `IMatrixCollector::collect_imatrix`
(tools/imatrix/imatrix.cpp) we want every `MUL_MAT_ID` and every `MUL_MAT` whose weight is a `blk.*` tensor and
whose activations (`src1`) are F32 with at least 16 rows (`output.weight` is left out, as llama-imatrix does by
default). On the follow-up call we add the squared activation rows, per input column, into that weight's sums and
count the tokens. The callback reads `struct ggml_tensor` through ctypes; its layout is declared from
ggml/include/ggml.h of the llama.cpp the bindings were built from and checked at start-up against the library.

It runs as a child (`python -m workbench.engine.imatrix_collect`) so a crash inside llama.cpp cannot take the app
down and a cancel is a terminate. The job comes as JSON on stdin (model, out, chunk_tokens, max_chunks, threads,
pieces, datasets, metadata); progress goes to stdout as JSON lines (`{"event": "progress", "chunk", "chunks",
"tokens"}`), then `{"event": "done", …}` or `{"event": "error", "message"}` (exit 2). The matrix is written
through `files.imatrix_file.write_imatrix` (temporary name, renamed when complete).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# enum ggml_op values (ggml/include/ggml.h: GGML_OP_NONE = 0, …, GGML_OP_L2_NORM, GGML_OP_MUL_MAT,
# GGML_OP_MUL_MAT_ID); checked at start-up against the library's own ggml_op_name.
GGML_OP_MUL_MAT, GGML_OP_MUL_MAT_ID = 29, 30
GGML_TYPE_F32 = 0
GGML_MAX_DIMS, GGML_MAX_SRC, GGML_MAX_OP_PARAMS, GGML_MAX_NAME = 4, 10, 64, 64
GGML_OBJECT_SIZE = 32  # struct ggml_object: size_t offs, size; ggml_object * next; enum type; char padding[4]
MIN_ROWS = 16  # llama-imatrix ignores matrix multiplications over fewer tokens


class GgmlTensor(ctypes.Structure):
    """`struct ggml_tensor` of ggml/include/ggml.h (llama-cpp-python 0.3.36's llama.cpp)."""


GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
    ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GgmlTensor) * GGML_MAX_SRC),
    ("view_src", ctypes.POINTER(GgmlTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * GGML_MAX_NAME),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]
_OP_OFFSET = GgmlTensor.op.offset
_SRC_OFFSET = GgmlTensor.src.offset


class CollectError(RuntimeError):
    """Something that stops the collection; one line for the parent."""


class InputError(CollectError):
    """The calibration text is at fault (too short to measure)."""


def _ggml() -> ctypes.CDLL:
    """libggml-base from the bindings' own lib folder (already loaded by llama_cpp; this gets its symbols)."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    lib = ctypes.CDLL(str(sorted(lib_dir.glob("libggml-base.*"))[0]), mode=ctypes.RTLD_GLOBAL)
    lib.ggml_tensor_overhead.restype = ctypes.c_size_t
    lib.ggml_op_name.restype = ctypes.c_char_p
    lib.ggml_op_name.argtypes = [ctypes.c_int]
    lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
    lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return lib


def check_layout(lib: ctypes.CDLL) -> None:
    """Refuse to run when our struct or enum values do not match the library (a different llama.cpp)."""
    overhead = int(lib.ggml_tensor_overhead())
    if ctypes.sizeof(GgmlTensor) + GGML_OBJECT_SIZE != overhead:
        raise CollectError(f"this llama.cpp's ggml_tensor is {overhead - GGML_OBJECT_SIZE} bytes, not the "
                           f"{ctypes.sizeof(GgmlTensor)} this collector was written for")
    names = (lib.ggml_op_name(GGML_OP_MUL_MAT), lib.ggml_op_name(GGML_OP_MUL_MAT_ID))
    if names != (b"MUL_MAT", b"MUL_MAT_ID"):
        raise CollectError(f"this llama.cpp numbers its operations differently ({names!r}); cannot collect")


def _weight_name(raw: bytes) -> str:
    """"CUDA0#blk.0.attn_k.weight#0" -> "blk.0.attn_k.weight" (filter_tensor_name)."""
    name = raw.decode("utf-8", "replace")
    if "#" in name:
        name = name.split("#", 2)[1]
    return name


class Collector:
    """The eval callback and what it accumulates: float64 sums [n_mat, n_cols] and token counts per weight."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.error: str | None = None
        self.checked = False
        self._copy = np.empty(0, dtype=np.uint8)

    def callback(self, t: int, ask: bool, _user: Any) -> bool:
        try:
            if ask:
                op = ctypes.c_int.from_address(t + _OP_OFFSET).value
                if op == GGML_OP_MUL_MAT_ID:
                    return True
                if op != GGML_OP_MUL_MAT:
                    return False
                tensor = GgmlTensor.from_address(t)
                src0, src1 = tensor.src[0].contents, tensor.src[1].contents
                return (src1.ne[1] >= MIN_ROWS and src1.type == GGML_TYPE_F32
                        and _weight_name(src0.name).startswith("blk."))
            self._collect(GgmlTensor.from_address(t))
            return True
        except Exception as exc:  # an exception must not cross into C; report it after the decode
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            return False

    def _array(self, t: GgmlTensor, dtype: Any) -> np.ndarray:
        """A strided view of `t`'s data (host memory), or a copy from the backend when it lives elsewhere."""
        shape = tuple(int(n) for n in reversed(t.ne))
        strides = tuple(int(n) for n in reversed(t.nb))
        extent = sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + np.dtype(dtype).itemsize
        if t.buffer and self.lib.ggml_backend_buffer_is_host(t.buffer):
            raw = np.frombuffer((ctypes.c_char * extent).from_address(t.data), dtype=np.uint8)
        else:
            raw = np.empty(extent, dtype=np.uint8)
            self.lib.ggml_backend_tensor_get(ctypes.addressof(t), raw.ctypes.data, 0, extent)
        return np.lib.stride_tricks.as_strided(raw.view(dtype)[:1], shape=shape, strides=strides)  # [ne3,ne2,ne1,ne0]

    def _check(self, t: GgmlTensor, src0: GgmlTensor, src1: GgmlTensor, name: str) -> None:
        """The first call proves the struct reads sensibly: a blk.* weight whose rows match the activations."""
        if not (name.startswith("blk.") and src0.ne[0] == src1.ne[0] > 0 and src1.nb[0] == 4
                and t.op in (GGML_OP_MUL_MAT, GGML_OP_MUL_MAT_ID) and all(0 < n < 1 << 32 for n in src1.ne)):
            raise CollectError(f"the ggml_tensor read back makes no sense (weight {name!r}, ne {list(src0.ne)} × "
                               f"{list(src1.ne)}); this llama.cpp's struct differs from ours")
        self.checked = True

    def _collect(self, t: GgmlTensor) -> None:
        src0, src1 = t.src[0].contents, t.src[1].contents
        name = _weight_name(src0.name)
        if not self.checked:
            self._check(t, src0, src1, name)
        x = self._array(src1, np.float32)
        ne0 = int(src1.ne[0])
        if t.op == GGML_OP_MUL_MAT_ID:
            n_as = int(src0.ne[2])
            ids = self._array(t.src[2].contents, np.int32)[0, 0]  # [n_tokens, n_ids]
            sums = self.sums.setdefault(name, np.zeros((n_as, ne0)))
            counts = self.counts.setdefault(name, np.zeros(n_as, dtype=np.int64))
            rows = x[0]  # [n_tokens, ne1, ne0]
            for idx in range(ids.shape[1]):
                experts = ids[:, idx]
                np.add.at(sums, experts, np.square(rows[:, idx % rows.shape[1], :], dtype=np.float64))
                counts += np.bincount(experts, minlength=n_as)
        else:
            n2, n3 = int(src0.ne[2]), int(src0.ne[3])
            sums = self.sums.setdefault(name, np.zeros((n2 * n3, ne0)))
            counts = self.counts.setdefault(name, np.zeros(1, dtype=np.int64))
            for i3 in range(x.shape[0]):
                for i2 in range(x.shape[1]):
                    sums[(i3 % n3) * n2 + (i2 % n2)] += np.square(x[i3, i2], dtype=np.float64).sum(axis=0)
            counts += x.shape[0] * x.shape[1] * x.shape[2] // (n2 * n3)
        if not np.isfinite(sums).all():
            raise CollectError(f"non-finite activations in {name}")


def tokenize_pieces(model: Any, pieces: list[dict[str, Any]], chunk_tokens: int) -> tuple[list[list[int]], list[int]]:
    """Sequences to run and, per sequence, the index of the piece it came from.

    Plain-text pieces are concatenated and cut into chunks of `chunk_tokens`, each starting with BOS (llama-imatrix
    puts BOS over each chunk's first token); a last part of at least MIN_ROWS tokens is kept too. A chat piece is
    rendered through the model's chat template with its system message and is its own sequence, cut at
    `chunk_tokens`; pieces under MIN_ROWS tokens are dropped (llama.cpp's matrix products would skip them).
    """
    seqs: list[list[int]] = []
    origin: list[int] = []
    plain = [i for i, p in enumerate(pieces) if not p.get("chat")]
    if plain:
        text = "\n\n".join(pieces[i]["text"] for i in plain)
        add_bos = bool(model.add_bos_token())
        tokens = model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)
        for start in range(0, len(tokens), chunk_tokens):
            chunk = list(tokens[start:start + chunk_tokens])
            if len(chunk) < MIN_ROWS:
                continue
            if add_bos:
                chunk[0] = model.token_bos()
            seqs.append(chunk)
            origin.append(plain[0] if len(plain) == 1 else -1)
    template = model.metadata().get("tokenizer.chat_template")
    for i, p in enumerate(pieces):
        if not p.get("chat"):
            continue
        messages = ([{"role": "system", "content": p["system"]}] if p.get("system") else []) + \
            [{"role": "user", "content": p["text"]}]
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def token_text(tok: int) -> str:
                return str(model.token_get_text(tok)) if tok != -1 else ""

            fmt = Jinja2ChatFormatter(template=template, eos_token=token_text(model.token_eos()),
                                      bos_token=token_text(model.token_bos()))
            rendered = fmt(messages=messages)  # type: ignore[arg-type]
            toks = model.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        else:  # a base model: plain completion, as the workbench runs it
            text = "\n\n".join(m["content"] for m in messages)
            toks = model.tokenize(text.encode("utf-8"), add_bos=model.add_bos_token(), special=False)
        toks = list(toks[:chunk_tokens])
        if len(toks) >= MIN_ROWS:
            seqs.append(toks)
            origin.append(i)
    return seqs, origin


def _send(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def run(job: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp
    from llama_cpp import _internals

    from workbench.files.imatrix_file import ImatrixFile, entries_from_arrays, write_imatrix

    lib = _ggml()
    check_layout(lib)
    chunk_tokens = int(job["chunk_tokens"])
    collector = Collector(lib)
    callback = llama_cpp.ggml_backend_sched_eval_callback(collector.callback)
    quiet = llama_cpp.llama_log_callback(lambda *_: None)  # kept referenced: llama.cpp calls it until exit
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
    mparams = llama_cpp.llama_model_default_params()
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = chunk_tokens
    cparams.n_threads = cparams.n_threads_batch = int(job["threads"])
    cparams.cb_eval = callback
    cparams.cb_eval_user_data = None
    try:
        model = _internals.LlamaModel(path_model=str(job["model"]), params=mparams, verbose=False)
        ctx = _internals.LlamaContext(model=model, params=cparams, verbose=False)
    except ValueError as exc:
        raise CollectError(f"{job['model']}: llama.cpp could not load it ({exc})") from None
    try:
        seqs, origin = tokenize_pieces(model, job["pieces"], chunk_tokens)
        if job.get("max_chunks"):
            seqs, origin = seqs[:int(job["max_chunks"])], origin[:int(job["max_chunks"])]
        if not seqs:
            raise InputError(f"the calibration text gives no sequence of at least {MIN_ROWS} tokens; llama.cpp's "
                               "importance matrix ignores shorter ones, so there is nothing to measure (use more text)")
        batch = _internals.LlamaBatch(n_tokens=chunk_tokens, embd=0, n_seq_max=1)
        n_tokens, t0 = 0, time.perf_counter()
        _send(event="progress", chunk=0, chunks=len(seqs), tokens=0)
        for i, seq in enumerate(seqs):
            ctx.kv_cache_clear()
            batch.set_batch(seq, n_past=0, logits_all=True)  # every position's output, as llama-imatrix asks
            ctx.decode(batch)
            if collector.error:
                raise CollectError(collector.error)
            n_tokens += len(seq)
            _send(event="progress", chunk=i + 1, chunks=len(seqs), tokens=n_tokens)
        seconds = time.perf_counter() - t0
        if not collector.sums:
            raise CollectError("llama.cpp reported no matrix multiplication to measure for this model")
        counts = {k: v for k, v in collector.counts.items()}
        metadata = dict(job.get("metadata") or {})
        metadata["workbench.calibration.tokens"] = n_tokens
        data = ImatrixFile(entries_from_arrays(collector.sums, counts), tuple(job.get("datasets") or ()),
                           len(seqs), chunk_tokens, metadata=metadata)
        write_imatrix(job["out"], data)
    finally:  # free llama.cpp's objects while the callbacks they may call still exist
        ctx.close()
        model.close()
        del quiet, callback
    used = sorted({o for o in origin if o >= 0})
    return {"tokens": n_tokens, "chunks": len(seqs), "seconds": seconds, "entries": len(data.entries),
            "pieces": used, "piece_sha256": [hashlib.sha256(job["pieces"][i]["text"].encode()).hexdigest() for i in used]}


def main() -> int:
    try:
        result = run(json.load(sys.stdin))
    except (CollectError, OSError, ValueError, KeyError) as exc:
        _send(event="error", message=str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__,
              input=isinstance(exc, InputError))
        return 2
    _send(event="done", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
