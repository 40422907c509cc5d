"""Divergence from the reference: one token sequence teacher-forced through every contestant.

Why: two greedy outputs that differ from the first word on say little about *how far* a
quantization drifted. Teacher forcing answers it token by token: feed the reference's own tokens
to every contestant and compare the next-token distributions they predict at each position.

Per position (see docs/quality.md for the exact definitions):
- KLD: KL(reference || contestant) of the next-token distributions, in nats;
- top-1 agreement: whether both put the same token first ("same top p" in llama-perplexity);
- p(reference token): the probability the contestant gave the token the reference text has there.
Per contestant: mean (± standard error), median, 90/95/99/99.9th percentile and max KLD, top-1
agreement, and the perplexity of the reference text under the contestant (exp of the mean
negative log-likelihood of the reference's tokens).

Two sources of reference tokens:
- "output": the reference's greedy output on a run's prompt (a stored comparison, or a prompt
  run here where only the reference generates);
- "text": the bundled reference text (`prompts/reference_text.txt`), cut into chunks like
  `llama-perplexity --kl-divergence`: chunks of `chunk_tokens`, the first token of each replaced
  by BOS when the model adds one, only the second half of each chunk scored.

How: the reference worker scores a stretch with `save_logprobs` (its [positions, vocab] float32
log-probs written to a temporary .npy); then each contestant scores the same stretch against that
file. Stretches hold at most `positions_per_call(vocab)` positions (64 MiB of log-probs; 341 at
SmolLM2's 49,152-token vocabulary), so no process holds more than that and the temporary file is
deleted before the next stretch. (The worker scores each decoded chunk a block of rows at a time,
engine/scoring.py, and memory-maps the reference's file.) A longer sequence is scored stretch by stretch with the earlier
tokens as context, so the numbers do not depend on the stretch size.

Workers are the pool's warm ones, reached through engine.access like a comparison's (the same load
settings, the same crash fallback), and the whole measurement takes one turn in the machine-wide run queue.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.scratch import scratch_dir
from workbench.engine.access import WorkerAccess
from workbench.engine.pool import WorkerDied, WorkerError, WorkerPool
from workbench.engine.protocol import Request, Score, Tokenize
from workbench.files import json_fields as jf
from workbench.files.gguf_info import GgufError, read_header
from workbench.models.ladder import Ladder
from workbench.runs.compare import IMPORTED_NOTE, is_imported, run_contestant
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.run_record import new_run, run_status
from workbench.storage.store import DivergenceRow, Store, StoredRun, now_iso

__all__ = [
    "BUDGET_BYTES",
    "ContestantDivergence",
    "DivergenceCancelled",
    "DivergenceError",
    "DivergenceReport",
    "DEFAULT_CHUNK_TOKENS",
    "contestants_of_run",
    "diverge_prompt",
    "diverge_run",
    "diverge_text",
    "list_text_reports",
    "load_report",
    "measured_runs",
    "percentile",
    "positions_per_call",
    "reference_text",
    "reference_text_path",
    "save_report",
    "summarize",
    "teacher_force",
    "text_segments",
]

# Log-probs a single score request may produce or read: [positions, vocab] float32.
BUDGET_BYTES = 64 * 2**20
DEFAULT_CHUNK_TOKENS = 512  # llama-perplexity's default context; published KLD tables use it
DEFAULT_TOP_K = 5
PERCENTILES = (("p999_kld", 0.999), ("p99_kld", 0.99), ("p95_kld", 0.95), ("p90_kld", 0.90), ("p10_kld", 0.10),
               ("p5_kld", 0.05), ("p1_kld", 0.01))

# on_progress(done, total, message): `done` of `total` score requests finished.
OnProgress = Callable[[int, int, str], None]


class DivergenceError(RuntimeError):
    """The measurement cannot run (no reference output, the reference failed, a bad setting)."""


class DivergenceCancelled(RuntimeError):
    """The user stopped the measurement; nothing was stored."""


def _nothing(done: int, total: int, message: str) -> None:
    pass


# ------------------------------------------------------------------------------------ statistics


def percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """llama-perplexity's percentile: linear interpolation at fraction*(n-1) of sorted values."""
    n = len(sorted_values)
    if n == 0:
        return float("nan")
    if fraction <= 0:
        return float(sorted_values[0])
    if fraction >= 1:
        return float(sorted_values[-1])
    p = fraction * (n - 1)
    i = int(p)
    p -= i
    return float((1 - p) * sorted_values[i] + p * sorted_values[min(i + 1, n - 1)])


def _mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error as llama-perplexity computes them (0 below 11 values)."""
    n = len(values)
    if n == 0:
        return float("nan"), 0.0
    mean = float(values.mean())
    var = float((values * values).mean() - mean * mean)
    return mean, (math.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0)


def summarize(
    logprobs: Sequence[float],
    ref_logprobs: Sequence[float],
    kld: Sequence[float] | None = None,
    agree: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Every per-contestant statistic from per-position arrays (see docs/quality.md).

    `logprobs`: this contestant's log p of each reference token; `ref_logprobs`: the reference's.
    `kld`/`agree` are None for the reference itself, whose KLD is 0 and agreement 1 by definition.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    ref_lp = np.asarray(ref_logprobs, dtype=np.float64)
    n = len(lp)
    out: dict[str, Any] = {"n_tokens": n}
    if n == 0:
        return out
    mean_nll, nll_se = _mean_and_se(-lp)
    ref_nll, _ = _mean_and_se(-ref_lp)
    ppl = math.exp(mean_nll)
    p, ref_p = np.exp(lp), np.exp(ref_lp)
    dp = p - ref_p
    dp_mean, dp_se = _mean_and_se(dp)
    out.update({
        "mean_nll": mean_nll,
        "ppl": ppl,
        "ppl_stderr": ppl * nll_se,
        "ref_ppl": math.exp(ref_nll),
        "ln_ppl_ratio": mean_nll - ref_nll,
        "mean_p_token": float(p.mean()),
        "mean_delta_p": dp_mean,
        "delta_p_stderr": dp_se,
        "rms_delta_p": float(math.sqrt(float((dp * dp).mean()))),
    })
    if kld is None:
        out.update({"mean_kld": 0.0, "kld_stderr": 0.0, "median_kld": 0.0, "max_kld": 0.0, "min_kld": 0.0,
                    **{key: 0.0 for key, _ in PERCENTILES}, "top1_agreement": 1.0, "top1_stderr": 0.0,
                    "by_definition": True})
        return out
    k = np.asarray(kld, dtype=np.float64)
    a = np.asarray(agree, dtype=bool)
    mean_kld, kld_se = _mean_and_se(k)
    s = np.sort(k)
    top1 = float(a.mean())
    out.update({
        "mean_kld": mean_kld,
        "kld_stderr": kld_se,
        "median_kld": float(np.median(s)),
        "max_kld": float(s[-1]),
        "min_kld": float(s[0]),
        **{key: percentile(s, frac) for key, frac in PERCENTILES},
        "top1_agreement": top1,
        "top1_stderr": math.sqrt(top1 * (1 - top1) / (n - 1)) if n > 1 else 0.0,
    })
    return out


# ------------------------------------------------------------------------------------ results


@dataclass
class ContestantDivergence:
    """One contestant's per-token scores on the reference's tokens, and their summary."""

    label: str
    quant_type: str | None
    file: str
    is_reference: bool
    tokens: list[int] = field(default_factory=list)  # the reference's tokens (the same for everyone)
    logprobs: list[float] = field(default_factory=list)  # this model's log p of each of them
    kld: list[float] | None = None  # KL(reference || this) per position; None for the reference
    agree: list[bool] | None = None  # top-1 tokens agree; None for the reference
    top: list[list[list[float]]] = field(default_factory=list)  # per position: [[token, logprob], ...]
    pieces: dict[int, str] = field(default_factory=dict)  # token id -> text, for every id above
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def headline(self) -> dict[str, Any]:
        """The figures the CLI's JSON and the summary tables lead with."""
        s = self.summary
        return {jf.LABEL: self.label, jf.QUANT_TYPE: self.quant_type, jf.FILE: jf.abs_file(self.file),
                jf.IS_REFERENCE: self.is_reference, "n_tokens": s.get("n_tokens"), "mean_kld": s.get("mean_kld"),
                "median_kld": s.get("median_kld"), "p99_kld": s.get("p99_kld"), "max_kld": s.get("max_kld"), "top1_agreement": s.get("top1_agreement"),
                "ppl": s.get("ppl"), "mean_p_token": s.get("mean_p_token"), "error": self.error}

    def piece(self, token: int) -> str:
        return self.pieces.get(int(token), f"<{int(token)}>")


@dataclass
class DivergenceReport:
    """A measurement: every contestant against the reference on one token sequence."""

    run_id: int | None
    source: str  # "output" or "text"
    reference_label: str
    results: list[ContestantDivergence]
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None

    @property
    def reference(self) -> ContestantDivergence:
        return next(r for r in self.results if r.is_reference)

    @property
    def n_tokens(self) -> int:
        return len(self.reference.tokens)

    def result(self, label: str) -> ContestantDivergence:
        for r in self.results:
            if r.label == label:
                return r
        raise KeyError(label)

    def contestants(self) -> list[ContestantDivergence]:
        """Everyone but the reference, in measurement order."""
        return [r for r in self.results if not r.is_reference]

    def to_json(self) -> dict[str, Any]:
        return {jf.REFERENCE: self.reference_label, jf.RUN_ID: self.run_id, "source": self.source,
                "n_tokens": self.n_tokens, "meta": self.meta, "results": [r.headline() for r in self.results]}


# ------------------------------------------------------------------------------------ workers


def positions_per_call(vocab_size: int | None, budget_bytes: int = BUDGET_BYTES) -> int:
    """How many positions one score request may cover so its log-probs stay within the budget."""
    vocab = vocab_size or 262_144  # unknown: assume a very large vocabulary
    return max(8, budget_bytes // (4 * vocab))


def _request(
    pool: WorkerPool,
    contestant: Contestant,
    settings: RunSettings,
    request: Request,
    terminal: set[str],
    cancel: threading.Event | None,
) -> dict[str, Any]:
    """One request to the contestant's warm worker, through the one access path a comparison uses too (the same
    load settings, so its warm workers are reused as they are; the same extra-buffer crash fallback)."""
    access = WorkerAccess(pool, contestant.path, settings.placement_for(contestant))
    try:
        return access.run(lambda worker, _loaded: worker.call(request, terminal, None, cancel))
    except WorkerDied as died:
        raise DivergenceError(f"{contestant.label}: {died.describe(request.op)}") from None
    except WorkerError as exc:
        if str(exc) == "cancelled" or (cancel is not None and cancel.is_set()):
            raise DivergenceCancelled("stopped") from None
        raise DivergenceError(f"{contestant.label}: {exc}") from None


def _tokenize(pool: WorkerPool, contestant: Contestant, settings: RunSettings, *, messages: Any = None,
              text: str | None = None, cancel: threading.Event | None = None) -> list[int]:
    req = Tokenize(messages=messages) if messages is not None else Tokenize(text=text or "")
    return [int(t) for t in _request(pool, contestant, settings, req, {"tokenized"}, cancel)["tokens"]]


def _split(segments: Sequence[tuple[Sequence[int], Sequence[int]]], per_call: int) -> list[tuple[list[int], list[int]]]:
    """Cut (prompt, target) segments into score requests of at most `per_call` target positions."""
    calls = []
    for prompt, target in segments:
        prompt, target = list(prompt), list(target)
        for start in range(0, len(target), per_call):
            calls.append((prompt + target[:start], target[start : start + per_call]))
    return calls


class _turn:
    """The pool's run-queue turn; being stopped while waiting in line is a cancellation."""

    def __init__(self, pool: WorkerPool, cancel: threading.Event | None) -> None:
        self._cm = pool.queue.turn(cancel=cancel)

    def __enter__(self) -> None:
        try:
            self._cm.__enter__()
        except InterruptedError:
            raise DivergenceCancelled("stopped while waiting for the machine") from None

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)


def load_together(pool: WorkerPool, contestants: Sequence[Contestant], settings: RunSettings) -> None:
    """Start and load every contestant's worker at the same time, before the first stretch needs them.

    One after another, each start (Python, llama.cpp's libraries, the GPU's context) and load is mostly waiting,
    and with a GPU they added up to seconds of a run that llama-perplexity spends computing. A load that fails
    here (a broken file, no room in the memory budget) is left for the contestant's first request, which meets
    it again and reports it as before; the pool's budget still decides what stays warm.
    """
    local = [c for c in contestants if not c.kind.cannot_score]
    if len(local) < 2:
        return

    def load(c: Contestant) -> None:
        try:
            WorkerAccess(pool, c.path, settings.placement_for(c)).run(lambda _worker, _loaded: None)
        except Exception:  # reported by the contestant's first request, as before
            pass

    with ThreadPoolExecutor(len(local), thread_name_prefix="load-together") as threads:
        list(threads.map(load, local))


def _reference_of(contestants: Sequence[Contestant]) -> Contestant:
    return next((c for c in contestants if c.is_reference), contestants[0])


def teacher_force(
    pool: WorkerPool,
    contestants: Sequence[Contestant],
    segments: Sequence[tuple[Sequence[int], Sequence[int]]],
    settings: RunSettings,
    *,
    top_k: int = DEFAULT_TOP_K,
    on_progress: OnProgress = _nothing,
    cancel: threading.Event | None = None,
) -> list[ContestantDivergence]:
    """Score every segment's target tokens (after its prompt tokens) on every contestant.

    The reference is the contestant flagged `is_reference` (else the first). A contestant that
    fails gets `error` and the others go on; a failing reference raises DivergenceError. The caller
    holds the run queue's turn.
    """
    if not contestants:
        raise DivergenceError("choose at least one quantization")
    if not any(t for _, t in segments):
        raise DivergenceError("there are no tokens to score")
    ref = _reference_of(contestants)
    others = [c for c in contestants if c is not ref]
    out = {id(c): ContestantDivergence(c.label, c.quant_type, c.path, c is ref) for c in contestants}
    for c in contestants:
        if c.kind.cannot_score:
            out[id(c)].error = f"{c.label}: {c.kind.cannot_score}"
    try:
        ref_vocab = read_header(ref.path).vocab_size
    except GgufError as exc:
        raise DivergenceError(str(exc)) from None
    for c in others:
        if out[id(c)].error:
            continue
        try:
            vocab = read_header(c.path).vocab_size
        except GgufError as exc:
            out[id(c)].error = str(exc)
            continue
        if vocab and ref_vocab and vocab != ref_vocab:
            out[id(c)].error = (f"{c.label}: its vocabulary has {vocab:,} tokens, the reference's {ref_vocab:,}; "
                                "teacher forcing needs the same tokenizer")
    calls = _split(segments, positions_per_call(ref_vocab))
    active = [c for c in others if not out[id(c)].error]
    load_together(pool, [ref, *active], settings)
    total = len(calls) * (1 + len(active))
    done = 0
    with scratch_dir("workbench-divergence-") as tmp:  # sweeps the folders of killed runs first
        for i, (prompt, target) in enumerate(calls):
            if cancel is not None and cancel.is_set():
                raise DivergenceCancelled("stopped")
            ref_file = str(Path(tmp) / f"reference-{i}.npy")
            on_progress(done, total, f"{ref.label} (reference): stretch {i + 1} of {len(calls)}")
            event = _request(pool, ref, settings, Score(prompt, target, top_k, save_logprobs=ref_file), {"scored"},
                             cancel)
            _absorb(out[id(ref)], event, with_kld=False)
            done += 1
            for c in active:
                entry = out[id(c)]
                if entry.error:
                    done += 1
                    continue
                on_progress(done, total, f"{c.label}: stretch {i + 1} of {len(calls)}")
                try:
                    event = _request(pool, c, settings, Score(prompt, target, top_k, reference_logprobs=ref_file),
                                     {"scored"}, cancel)
                    _absorb(entry, event, with_kld=True)
                except DivergenceError as exc:
                    entry.error = str(exc)
                done += 1
            os.remove(ref_file)  # the next stretch writes its own: at most one on disk at a time
    on_progress(done, total, "done")
    ref_entry = out[id(ref)]
    results = [out[id(c)] for c in contestants]
    for r in results:
        r.tokens = list(ref_entry.tokens)
        r.pieces = {**ref_entry.pieces, **r.pieces} if r is not ref_entry else r.pieces
        if r.error:
            r.logprobs, r.kld, r.agree, r.top, r.summary = [], None, None, [], {}
            continue
        r.summary = summarize(r.logprobs, ref_entry.logprobs, r.kld if not r.is_reference else None,
                              r.agree if not r.is_reference else None)
    return results


def _absorb(entry: ContestantDivergence, event: dict[str, Any], with_kld: bool) -> None:
    positions = event.get("positions", [])
    if with_kld and entry.kld is None:
        entry.kld, entry.agree = [], []
    for p in positions:
        entry.tokens.append(int(p["token"]))
        entry.logprobs.append(float(p["logprob"]))
        entry.top.append([[int(t), float(lp)] for t, lp in p.get("top", [])])
        if with_kld:
            entry.kld.append(float(p["kld"]))  # type: ignore[union-attr]
            entry.agree.append(bool(p["top1_agree"]))  # type: ignore[union-attr]
    for k, v in (event.get("pieces") or {}).items():
        entry.pieces[int(k)] = v


# ------------------------------------------------------------------------------------ sources


def reference_text_path() -> Path:
    from workbench.quality.packs import bundled_dir

    return bundled_dir() / "reference_text.txt"


def reference_text() -> str:
    return reference_text_path().read_text(encoding="utf-8")


def text_segments(tokens: Sequence[int], chunk_tokens: int, bos: int | None,
                  max_chunks: int | None = None) -> list[tuple[list[int], list[int]]]:
    """llama-perplexity's chunks: whole chunks of `chunk_tokens` (a partial last one is dropped),
    the first token replaced by BOS when the model adds one, the second half scored.

    For a chunk c, first = chunk_tokens // 2; the prompt is c[:first+1] and the target c[first+1:],
    so each chunk scores chunk_tokens - first - 1 tokens, each with at least half a chunk before it.
    """
    if chunk_tokens < 16:
        raise DivergenceError("chunks must be at least 16 tokens")
    n_chunk = len(tokens) // chunk_tokens
    if max_chunks is not None:
        n_chunk = min(n_chunk, max_chunks)
    if n_chunk < 1:
        raise DivergenceError(f"the text has {len(tokens)} tokens, fewer than one chunk of {chunk_tokens}")
    first = chunk_tokens // 2
    segments = []
    for i in range(n_chunk):
        chunk = [int(t) for t in tokens[i * chunk_tokens : (i + 1) * chunk_tokens]]
        if bos is not None:
            chunk[0] = bos
        segments.append((chunk[: first + 1], chunk[first + 1 :]))
    return segments


def _run_settings(data: dict[str, Any] | None) -> RunSettings:
    return RunSettings.from_dict(data)


def contestants_of_run(run: StoredRun, measured: Sequence[str] = ()) -> list[Contestant]:
    """The reference and every other local contestant that produced a result in a stored run.

    A run made by `diverge_prompt` holds only the reference's output; its contestants are the
    ones measured before (`measured`: the labels of its divergence rows), else its ladder's default set. An imported run has none:
    its paths (and its ladder's) are never loaded as models.
    """
    found: list[Contestant] = []
    if is_imported(run):
        return found
    run_n_ctx = run.settings.get("n_ctx")
    for r in run.results:
        if r.file and (r.is_reference or not r.error):
            found.append(Contestant.from_stored(r, run_n_ctx))
    if len(found) <= 1:
        extra = list(measured)
        ladder = run.ladder or {}
        files = {f["label"]: f for f in ladder.get("files", [])}
        wanted = extra or [f["label"] for f in ladder.get("files", []) if not f.get("reference")]
        have = {c.label for c in found}
        for label in wanted:
            f = files.get(label)
            if f and label not in have:
                found.append(Contestant(label, f["path"], f.get("quant_type"), f.get("size_bytes"),
                                        f.get("bits_per_weight"), False))
    return found


def diverge_run(
    pool: WorkerPool,
    store: Store,
    run_id: int,
    *,
    contestants: Sequence[Contestant] | None = None,
    top_k: int = DEFAULT_TOP_K,
    on_progress: OnProgress = _nothing,
    cancel: threading.Event | None = None,
) -> DivergenceReport:
    """Teacher-force a stored run's reference output through its contestants; store and return it."""
    run = store.get_run(run_id)
    if run is None:
        raise DivergenceError(f"no run with id {run_id}")
    ref_row = next((r for r in run.results if r.is_reference), None)
    if ref_row is None:
        raise DivergenceError(f"run {run_id} has no reference contestant to measure against")
    if ref_row.error:
        raise DivergenceError(f"run {run_id}: the reference failed ({ref_row.error}), so there is nothing to follow")
    target = list(ref_row.token_ids)
    if not target:
        raise DivergenceError(f"run {run_id}: the reference produced no tokens, so there is nothing to compare")
    if is_imported(run) and (contestants is None or not any(c.is_reference for c in contestants)):
        raise DivergenceError(f"run {run_id} {IMPORTED_NOTE}; measure it by choosing the files yourself")
    if contestants is None:
        stored = load_report(store, run_id, "output")
        contestants = contestants_of_run(run, [r.label for r in stored.results] if stored else ())
    contestants = list(contestants)
    if not any(c.is_reference for c in contestants):
        contestants.insert(0, Contestant(ref_row.label, ref_row.file or "", ref_row.quant_type, is_reference=True))
    missing = [c for c in contestants if c.kind.loads_file and not os.path.isfile(c.path)]
    if any(c.is_reference for c in missing):
        raise DivergenceError(f"the reference file {missing[0].path} is no longer there")
    settings = _run_settings(run.settings)
    messages = run.messages or settings.messages(run.prompt or "")
    ref = _reference_of(contestants)
    with _turn(pool, cancel):
        prompt_tokens = _tokenize(pool, ref, settings, messages=messages, cancel=cancel)
        if len(prompt_tokens) + len(target) > settings.n_ctx:
            raise DivergenceError(f"prompt and output ({len(prompt_tokens) + len(target)} tokens) do not fit the run's "
                                  f"context of {settings.n_ctx}")
        live = [c for c in contestants if c not in missing]
        results = teacher_force(pool, live, [(prompt_tokens, target)], settings, top_k=top_k,
                                on_progress=on_progress, cancel=cancel)
    for c in missing:
        results.append(ContestantDivergence(c.label, c.quant_type, c.path, False, error=f"{c.path}: file not found"))
    report = DivergenceReport(run_id, "output", ref.label, results,
                              meta={"prompt_tokens": len(prompt_tokens), "top_k": top_k,
                                    "stop_reason": ref_row.stop_reason,
                                    "note": "the reference's end-of-sequence token, if it stopped on one, is not scored"})
    save_report(store, report)
    return report


def diverge_prompt(
    pool: WorkerPool,
    contestants: Sequence[Contestant],
    prompt: str,
    settings: RunSettings | None = None,
    *,
    store: Store | None = None,
    ladder: Ladder | None = None,
    top_k: int = DEFAULT_TOP_K,
    on_progress: OnProgress = _nothing,
    cancel: threading.Event | None = None,
) -> DivergenceReport:
    """Generate the reference's output on `prompt`, then teacher-force it through every contestant.

    Only the reference generates (the others' own outputs are not needed to measure divergence).
    With a store, the run (kind "diverge", holding the reference's result) and the measurement are
    kept.
    """
    settings = settings or RunSettings()
    settings.validate(contestants)
    if not prompt.strip():
        raise DivergenceError("the prompt is empty")
    if not contestants:
        raise DivergenceError("choose at least one quantization")
    contestants = list(contestants)
    ref = _reference_of(contestants)
    messages = settings.messages(prompt)
    run_id = None
    if store is not None:
        run_id = new_run(store, "diverge", contestants, prompt, settings, reference=ref.label, ladder=ladder)
    try:
        with _turn(pool, cancel):
            on_progress(0, 1, f"{ref.label} (reference): generating")
            result = run_contestant(pool, ref, settings, messages, cancel=cancel)
            if store is not None and run_id is not None:
                store.add_result(run_id, 0, result.to_dict())
            if cancel is not None and cancel.is_set():
                raise DivergenceCancelled("stopped")
            if result.error:
                raise DivergenceError(result.error)
            if not result.token_ids:
                raise DivergenceError(f"{ref.label} produced no tokens (stopped: {result.stop_reason}), so there is nothing to compare")
            prompt_tokens = _tokenize(pool, ref, settings, messages=messages, cancel=cancel)
            results = teacher_force(pool, contestants, [(prompt_tokens, result.token_ids)], settings, top_k=top_k,
                                    on_progress=on_progress, cancel=cancel)
    except DivergenceCancelled:
        if store is not None and run_id is not None:
            store.finish_run(run_id, "cancelled")
        raise DivergenceCancelled("stopped") from None
    except DivergenceError:
        if store is not None and run_id is not None:
            store.finish_run(run_id, "failed")
        raise
    report = DivergenceReport(run_id, "output", ref.label, results,
                              meta={"prompt_tokens": len(prompt_tokens), "top_k": top_k,
                                    "stop_reason": result.stop_reason,
                                    "note": "the reference's end-of-sequence token, if it stopped on one, is not scored"})
    if store is not None and run_id is not None:
        save_report(store, report)
        store.finish_run(run_id, run_status((r.ok for r in results), cancelled=False))
    return report


def diverge_text(
    pool: WorkerPool,
    contestants: Sequence[Contestant],
    settings: RunSettings | None = None,
    *,
    text: str | None = None,
    text_name: str | None = None,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    max_chunks: int | None = None,
    store: Store | None = None,
    ladder: Ladder | None = None,
    top_k: int = DEFAULT_TOP_K,
    on_progress: OnProgress = _nothing,
    cancel: threading.Event | None = None,
) -> DivergenceReport:
    """The bundled reference text (or `text`) scored like `llama-perplexity --kl-divergence`.

    With a store the measurement is kept as a run of kind "diverge-text".
    """
    settings = settings or RunSettings()
    if chunk_tokens > settings.n_ctx:
        raise DivergenceError(f"chunks of {chunk_tokens} tokens do not fit a context of {settings.n_ctx}")
    if not contestants:
        raise DivergenceError("choose at least one quantization")
    if text is None:
        text = reference_text()
        text_name = text_name or str(reference_text_path().relative_to(reference_text_path().parent.parent))
    text_name = text_name or "text"
    contestants = list(contestants)
    ref = _reference_of(contestants)
    with _turn(pool, cancel):
        on_progress(0, 1, "loading the quantizations")
        load_together(pool, contestants, settings)
        on_progress(0, 1, f"{ref.label} (reference): tokenizing the text")
        tokens = _tokenize(pool, ref, settings, text=text, cancel=cancel)
        bos_probe = _tokenize(pool, ref, settings, text="", cancel=cancel)
        bos = bos_probe[0] if bos_probe else None
        segments = text_segments(tokens, chunk_tokens, bos, max_chunks)
        results = teacher_force(pool, contestants, segments, settings, top_k=top_k, on_progress=on_progress,
                                cancel=cancel)
    meta = {"text": text_name, "text_tokens": len(tokens), "chunk_tokens": chunk_tokens, "chunks": len(segments),
            "scored_per_chunk": chunk_tokens - chunk_tokens // 2 - 1, "bos_replaced": bos is not None, "top_k": top_k}
    run_id = None
    if store is not None:
        run_id = new_run(store, "diverge-text", contestants, f"reference text: {text_name}", settings, chat=False,
                         reference=ref.label, ladder=ladder, extra_settings={"chunk_tokens": chunk_tokens})
    report = DivergenceReport(run_id, "text", ref.label, results, meta=meta)
    if store is not None and run_id is not None:
        save_report(store, report)
        store.finish_run(run_id, run_status((r.ok for r in results), cancelled=False))
    return report


# ------------------------------------------------------------------------------------ storage


def _round(values: list[float] | None, digits: int = 6) -> list[float] | None:
    return None if values is None else [round(v, digits) for v in values]


def save_report(store: Store, report: DivergenceReport) -> None:
    """Replace the run's stored measurement of this source with `report` (one transaction)."""
    if report.run_id is None:
        raise ValueError("only a report with a run can be stored")
    created = now_iso()
    report.created_at = created
    rows = [DivergenceRow(r.label, r.quant_type, r.file, r.is_reference, r.error, r.summary,
                          {"tokens": r.tokens, "logprobs": _round(r.logprobs), "kld": _round(r.kld), "agree": r.agree,
                           "top": [[[int(t), round(lp, 4)] for t, lp in top] for top in r.top],
                           "pieces": {str(k): v for k, v in r.pieces.items()}})
            for r in report.results]
    store.replace_divergence(report.run_id, report.source, report.reference_label, report.meta, created, rows)


def load_report(store: Store, run_id: int, source: str = "output") -> DivergenceReport | None:
    """The stored measurement of a run (None when it was never measured)."""
    rows = store.divergence_rows(run_id, source)
    if not rows:
        return None
    results = []
    for row in rows:
        d = json.loads(row["tokens_json"] or "{}")
        results.append(ContestantDivergence(
            label=row["label"], quant_type=row["quant_type"], file=row["file"], is_reference=bool(row["is_reference"]),
            tokens=d.get("tokens", []), logprobs=d.get("logprobs", []), kld=d.get("kld"), agree=d.get("agree"),
            top=d.get("top", []), pieces={int(k): v for k, v in (d.get("pieces") or {}).items()},
            summary=json.loads(row["summary_json"] or "{}"), error=row["error"],
        ))
    first = rows[0]
    return DivergenceReport(run_id, source, first["reference_label"], results,
                            meta=json.loads(first["meta_json"] or "{}"), created_at=first["created_at"])


def list_text_reports(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """Stored reference-text measurements, newest first: run id, when, ladder, and each contestant's headline."""
    return store.text_divergence_runs(limit)


def measured_runs(store: Store, run_ids: Sequence[int]) -> set[int]:
    """Which of these runs have a stored measurement of their reference output."""
    return store.runs_with_divergence(run_ids, "output")
