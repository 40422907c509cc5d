"""Teacher-forced scoring of logits rows: log-softmax, the target's log-prob, top-k, KLD and top-1 agreement.

Why a module of its own: the worker's `score` op decodes a chunk with logits at every position and
hands the rows here as one [positions, vocab] float32 block. `score_rows` works on blocks of rows
at once (no Python per position); `score_rows_per_position` is the previous row-at-a-time code,
kept as the reference implementation that tests and `benchmarks/divergence_speed.py` compare
against (the worker uses it when `PER_POSITION_ENV` is set). Both compute in float64 where the
old code did; on the demo ladder their figures are bitwise identical (tests/test_divergence_vectorised.py
allows 1e-9). One request's rows ([255, 49152]) take ~65 ms instead of ~190 ms (docs/benchmarks.md).

Memory: a block of `rows_per_block(vocab)` rows keeps three float64 [rows, vocab] buffers (log-probs,
scratch, the reference's log-probs) within `BLOCK_BYTES`, whatever the vocabulary: 8 MiB is 7 rows at
SmolLM2's 49,152 tokens and 1 at 256k. Small beside the model and the logits llama.cpp already holds,
and the fastest size measured here: the passes over a block then stay in cache (2 to 8 MiB within 5 %
of each other; 32 MiB 1.35x and a whole 255-row request at once 1.85x slower).

Ties: the top-k are ordered by log-prob, then by token id (the lowest id first, as np.argmax picks it),
so top-1 agreement with the reference's argmax is decided the same way on both sides. The old code
left the order of tied tokens to np.argpartition/np.argsort.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# Set (to anything non-empty) in a worker's environment to score with the old per-position code.
PER_POSITION_ENV = "WORKBENCH_SCORE_PER_POSITION"
BLOCK_BYTES = 8 * 2**20
_FLOAT64_BUFFERS = 3  # log-probs, scratch, reference log-probs
_GROUP = 256  # top-k candidates come from groups of this many tokens (see _top_k)


@dataclass
class Scores:
    """Per position: the target's log-prob, the top-k (ids, log-probs) and, against a reference, KLD and top-1."""

    logprob: np.ndarray  # [n] float64
    top_ids: np.ndarray  # [n, k] int64, best first
    top_logprobs: np.ndarray  # [n, k] float64
    kld: np.ndarray | None = None  # [n] float64, KL(reference || this), clamped at 0
    ref_top: np.ndarray | None = None  # [n] int64, the reference's argmax
    agree: np.ndarray | None = None  # [n] bool: ref_top == top_ids[:, 0]

    def __len__(self) -> int:
        return len(self.logprob)


def rows_per_block(n_vocab: int, budget: int = BLOCK_BYTES) -> int:
    """Rows per block so that the block's float64 working set stays within `budget` bytes (at least 1)."""
    return max(1, budget // (_FLOAT64_BUFFERS * 8 * max(1, n_vocab)))


def _check(logits: np.ndarray, targets: np.ndarray, ref: np.ndarray | None) -> None:
    if logits.ndim != 2 or len(targets) != len(logits):
        raise ValueError(f"logits {logits.shape} and {len(targets)} targets do not match")
    if ref is not None and ref.shape != logits.shape:
        raise ValueError(f"reference log-probs {ref.shape} do not match logits {logits.shape}")


def score_rows(
    logits: np.ndarray,
    targets: np.ndarray,
    top_k: int,
    *,
    ref: np.ndarray | None = None,
    save: np.ndarray | None = None,
    block_rows: int | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Scores:
    """Score `logits` [n, vocab] (float32) against `targets` [n], a block of rows at a time.

    `ref`: the reference's log-probs [n, vocab] (float32, say a memory-mapped .npy), for KLD and top-1.
    `save`: where to write this model's log-probs [n, vocab] (float32). `cancelled`: a callable checked
    between blocks; when it returns true, scoring stops with InterruptedError.
    """
    targets = np.asarray(targets, dtype=np.int64)
    _check(logits, targets, ref)
    n, vocab = logits.shape
    k = max(1, min(int(top_k), vocab))
    block = max(1, block_rows or rows_per_block(vocab))
    logprob, top_ids, top_lp = np.empty(n), np.empty((n, k), np.int64), np.empty((n, k))
    kld, ref_top = np.empty(n), np.empty(n, np.int64)
    rows = min(block, n)
    logp_buf, work_buf = np.empty((rows, vocab)), np.empty((rows, vocab))
    ref_buf = np.empty((rows, vocab)) if ref is not None else None
    for s in range(0, n, block):
        if cancelled is not None and cancelled():
            raise InterruptedError("cancelled")
        e = min(s + block, n)
        x = logits[s:e]
        logp, work = logp_buf[: e - s], work_buf[: e - s]
        # log-softmax as the per-position code does it: logits - (max + log(sum(exp(logits - max))))
        np.copyto(logp, x)
        m = logp.max(axis=1)
        np.subtract(logp, m[:, None], out=work)
        np.exp(work, out=work)
        np.subtract(logp, (m + np.log(work.sum(axis=1)))[:, None], out=logp)
        if save is not None:
            save[s:e] = logp
        logprob[s:e] = logp[np.arange(e - s), targets[s:e]]
        ids = _top_k(x, k)
        top_ids[s:e] = ids
        top_lp[s:e] = np.take_along_axis(logp, ids, axis=1)
        if ref is not None and ref_buf is not None:
            r_rows = ref[s:e]
            r = ref_buf[: e - s]
            np.copyto(r, r_rows)
            np.exp(r, out=work)  # p_ref
            np.subtract(r, logp, out=r)  # log p_ref - log p
            np.multiply(work, r, out=work)
            kld[s:e] = np.maximum(0.0, work.sum(axis=1))
            ref_top[s:e] = np.argmax(r_rows, axis=1)  # float32 -> float64 is exact: the same argmax
    if ref is None:
        return Scores(logprob, top_ids, top_lp)
    return Scores(logprob, top_ids, top_lp, kld, ref_top, ref_top == top_ids[:, 0])


def score_rows_split(
    logits: np.ndarray,
    targets: np.ndarray,
    top_k: int,
    *,
    threads: int,
    ref: np.ndarray | None = None,
    save: np.ndarray | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Scores:
    """`score_rows` over `threads` contiguous slices of the rows at once; the same figures, bit for bit (each row
    is scored on its own).

    Why: the worker scores while the threads its decode used sit idle, and llama-perplexity computes its KLD
    on all of them. numpy releases the GIL in the heavy passes, so the slices overlap; on a 2-core machine
    it gains ~10 %, on a 16-core GPU host more (docs/benchmarks.md, "Divergence scoring").
    """
    n = len(logits)
    threads = max(1, min(int(threads), n // 16 or 1))  # slices of fewer than 16 rows are not worth a thread
    if threads == 1:
        return score_rows(logits, targets, top_k, ref=ref, save=save, cancelled=cancelled)
    targets = np.asarray(targets, dtype=np.int64)
    _check(logits, targets, ref)
    cuts = [n * i // threads for i in range(threads + 1)]
    slices = [slice(a, b) for a, b in zip(cuts, cuts[1:], strict=False)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="score") as pool:
        parts = list(pool.map(lambda sl: score_rows(
            logits[sl], targets[sl], top_k, ref=None if ref is None else ref[sl],
            save=None if save is None else save[sl], cancelled=cancelled), slices))
    return _concat(parts)


def _concat(parts: list[Scores]) -> Scores:
    def cat(name: str) -> np.ndarray | None:
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else np.concatenate(values)

    return Scores(cat("logprob"), cat("top_ids"), cat("top_logprobs"), cat("kld"), cat("ref_top"),  # type: ignore[arg-type]
                  cat("agree"))


def _top_k(x: np.ndarray, k: int) -> np.ndarray:
    """The k largest entries of each row of `x` [b, vocab], by value then lowest index: [b, k] int64.

    A full np.argpartition costs ~8 ns a token (the bulk of the old per-position time); instead each
    row is cut into groups of `_GROUP` tokens. The k-th largest group maximum t is a lower bound of the
    row's k-th largest value (k groups each hold a value >= t), so every top-k token is among the
    few with x >= t, and only those are sorted. Log-probs are logits minus a per-row constant, so the
    order of the float32 logits is the order of the float64 log-probs.
    """
    b, vocab = x.shape
    starts = np.arange(0, vocab, _GROUP)
    if len(starts) < k or np.isnan(x).any():
        return _top_k_full(x, k)
    gmax = np.maximum.reduceat(x, starts, axis=1)
    t = np.partition(gmax, len(starts) - k, axis=1)[:, len(starts) - k]
    flat = np.flatnonzero(x >= t[:, None])  # 1-D: ~15x faster than np.nonzero on the 2-D mask
    rows, cols = np.divmod(flat, vocab)
    vals = x[rows, cols]
    order = np.lexsort((cols, -vals, rows))  # by row, then value descending, then token id
    rows, cols = rows[order], cols[order]
    counts = np.bincount(rows, minlength=b)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return cols[first[:, None] + np.arange(k)].astype(np.int64)


def _top_k_full(x: np.ndarray, k: int) -> np.ndarray:
    """_top_k by a stable sort of whole rows (tiny vocabularies, NaN logits, which sort last)."""
    vals = np.where(np.isnan(x), -np.inf, x)
    return np.argsort(-vals, axis=1, kind="stable")[:, :k].astype(np.int64)


def score_rows_per_position(
    logits: np.ndarray,
    targets: np.ndarray,
    top_k: int,
    *,
    ref: np.ndarray | None = None,
    save: np.ndarray | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Scores:
    """The previous worker code, one position at a time: the reference that `score_rows` must equal."""
    targets = np.asarray(targets, dtype=np.int64)
    _check(logits, targets, ref)
    n, vocab = logits.shape
    k = max(1, min(int(top_k), vocab - 1))
    logprob, top_ids, top_lp = np.empty(n), np.empty((n, k), np.int64), np.empty((n, k))
    kld, ref_top, agree = np.empty(n), np.empty(n, np.int64), np.empty(n, bool)
    for i in range(n):
        if cancelled is not None and cancelled():
            raise InterruptedError("cancelled")
        row = logits[i].astype(np.float64)
        m = row.max()
        logp = row - (m + np.log(np.exp(row - m).sum()))
        if save is not None:
            save[i] = logp
        top = np.argpartition(-logp, k)[:k]
        top = top[np.argsort(-logp[top])]
        logprob[i] = float(logp[targets[i]])
        top_ids[i], top_lp[i] = top, logp[top]
        if ref is not None:
            r = ref[i].astype(np.float64)
            pr = np.exp(r)
            kld[i] = float(max(0.0, np.sum(pr * (r - logp))))
            ref_top[i] = int(np.argmax(r))
            agree[i] = bool(int(np.argmax(r)) == int(top[0]))
    if ref is None:
        return Scores(logprob, top_ids, top_lp)
    return Scores(logprob, top_ids, top_lp, kld, ref_top, agree)
