"""Teacher-forced scoring in the worker (the `score` op): how this model judges a given answer, position by position.

Why a module of its own: divergence (quality/) and fingerprints (runs/) ask how a model rates a fixed
continuation, not what it would write. This feeds prompt+target through llama.cpp with logits at every
scored position and hands the rows, as one block per decode, to scoring.py's numpy arithmetic (log-softmax,
top-k, KLD against a reference, top-1 agreement); what stays here is the llama.cpp side: batches, the logits
buffer, cancel, token pieces, the `scored` event.
"""

from __future__ import annotations

import ctypes
import os
import time
from functools import partial
from typing import Any

# llama_cpp must be imported before numpy: see generation.py.
import llama_cpp  # noqa: I001
import numpy as np

from workbench.engine import scoring
from workbench.engine.llama_model import Cancelled, LoadedModel


def score(model: LoadedModel, req: dict[str, Any]) -> None:
    """Feed prompt+target through the model and report, per target position, how it judged it.

    Per position: log-prob of the target token, this model's top-k alternatives and, when a
    reference's log-probs are given (a .npy of shape [positions, vocab]), the KL divergence
    KL(reference || this) and whether the top-1 tokens agree.

    Each decode asks for logits at every scored position; its rows are scored as one block by
    scoring.score_rows_split on the decode's threads (scoring.score_rows_per_position, the old row-at-a-time code, when
    scoring.PER_POSITION_ENV is set). The reference's file is memory-mapped, not read whole.
    """
    model.require_model()
    lc = llama_cpp
    rid = req.get("id")
    prompt = [int(t) for t in req["prompt_tokens"]]
    target = [int(t) for t in req["target_tokens"]]
    top_k = int(req.get("top_k") or 5)
    if not prompt:
        raise RuntimeError("score needs at least one prompt token")
    seq = prompt + target
    if len(seq) > model.settings["n_ctx"]:
        raise RuntimeError(f"{len(seq)} tokens do not fit the context of {model.settings['n_ctx']}")
    per_position = bool(os.environ.get(scoring.PER_POSITION_ENV))
    first = len(prompt) - 1  # logits at position i predict token i+1
    n_pos = len(target)
    n_vocab = model.n_vocab
    ref = None
    if req.get("reference_logprobs"):
        ref = np.load(req["reference_logprobs"], mmap_mode=None if per_position else "r")
        if ref.shape != (n_pos, n_vocab):
            raise RuntimeError(f"the reference's log-probs are {list(ref.shape)}, not [{n_pos}, {n_vocab}]")
    save = np.empty((n_pos, n_vocab), dtype=np.float32) if req.get("save_logprobs") else None
    targets = np.asarray(target, dtype=np.int64)
    model.ctx.kv_cache_clear()
    batch = model.internals.LlamaBatch(n_tokens=model.settings["n_batch"], embd=0, n_seq_max=1, verbose=False)
    parts: list[scoring.Scores] = []
    t0 = time.perf_counter()
    try:
        model.inject_extra_bufts_crash()
        n_batch = model.settings["n_batch"]
        for start in range(0, len(seq) - 1, n_batch):
            chunk = seq[start : min(start + n_batch, len(seq) - 1)]
            b = batch.batch
            b.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = start + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = (start + i) >= first
            rc = lc.llama_decode(model.ctx.ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc} while scoring")
            if model.cancel.is_set():
                raise Cancelled()
            i0 = max(first - start, 0)  # the first position of this chunk with logits
            if i0 >= len(chunk):
                continue
            k0, k1 = start + i0 - first, start + len(chunk) - first
            score_block = (scoring.score_rows_per_position if per_position
                           else partial(scoring.score_rows_split, threads=model.settings["n_threads"]))
            try:
                parts.append(score_block(_logit_rows(model, i0, len(chunk)), targets[k0:k1], top_k,
                                         ref=None if ref is None else ref[k0:k1],
                                         save=None if save is None else save[k0:k1], cancelled=model.cancel.is_set))
            except InterruptedError:
                raise Cancelled() from None
    finally:
        batch.close()
    if save is not None:
        np.save(req["save_logprobs"], save)
    del ref  # a memory map: close the file now
    positions = _positions(target, parts)
    pieces = {}
    for p in positions:
        for t, _ in p["top"]:
            if t not in pieces:
                pieces[t] = model.model.token_to_piece(t).rstrip(b"\0").decode("utf-8", "replace")
        if p["token"] not in pieces:
            pieces[p["token"]] = model.model.token_to_piece(p["token"]).rstrip(b"\0").decode("utf-8", "replace")
    model.out.send(event="scored", id=rid, positions=positions, pieces={str(k): v for k, v in pieces.items()},
                   elapsed_s=time.perf_counter() - t0)


def _logit_rows(model: LoadedModel, i0: int, i1: int) -> np.ndarray:
    """The last decode's logits for batch positions i0..i1-1 (all of which asked for logits), [rows, vocab].

    llama.cpp keeps one sequence's outputs in batch order in one buffer, so this is a view of it (valid
    until the next decode); should a build ever order them otherwise, the rows are gathered one by one.
    """
    lc, ctx, n_vocab = llama_cpp, model.ctx.ctx, model.n_vocab
    n = i1 - i0
    base = lc.llama_get_logits(ctx)
    at = ctypes.cast(base, ctypes.c_void_p).value
    first_row = ctypes.cast(lc.llama_get_logits_ith(ctx, i0), ctypes.c_void_p).value
    last_row = ctypes.cast(lc.llama_get_logits_ith(ctx, i1 - 1), ctypes.c_void_p).value
    if at and first_row == at and last_row == at + (n - 1) * n_vocab * ctypes.sizeof(ctypes.c_float):
        return np.ctypeslib.as_array(base, shape=(n, n_vocab))
    return np.stack([np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, i), shape=(n_vocab,)) for i in range(i0, i1)])


def _positions(target: list[int], parts: list[scoring.Scores]) -> list[dict[str, Any]]:
    """The `scored` event's per-position entries (protocol.py), from the scored blocks in order."""
    positions: list[dict[str, Any]] = []
    k = 0
    for part in parts:
        lp, ids, top_lp = part.logprob.tolist(), part.top_ids.tolist(), part.top_logprobs.tolist()
        kld = part.kld.tolist() if part.kld is not None else None
        agree = part.agree.tolist() if part.agree is not None else None
        ref_top = part.ref_top.tolist() if part.ref_top is not None else None
        for j in range(len(part)):
            entry: dict[str, Any] = {"token": target[k], "logprob": lp[j],
                                     "top": [[t, v] for t, v in zip(ids[j], top_lp[j], strict=True)]}
            if kld is not None and agree is not None and ref_top is not None:
                entry["kld"], entry["top1_agree"], entry["ref_top"] = kld[j], agree[j], ref_top[j]
            positions.append(entry)
            k += 1
    return positions

