"""Work that is a batch by nature, generated at batch speed: many prompts through one file, several at a time.

`generate_many` sends every prompt to the file's worker in one `generate_batch` request: up to `n_seq`
sequences share one llama.cpp context and decode together, so the weights are read once per step for all of
them (decode is memory-bound: throughput rises almost linearly until compute catches up), and a sequence that
ends frees its slot for the next prompt. Eval packs, prompt sets and the noise floor's repeats use it;
interactive Compare stays single-sequence, because its timings are the single-stream figures people expect.

What batching changes, and does not:
- each prompt keeps `generate`'s stop rules (eos, max_tokens, its own context full) and gets its own sampler,
  seeded like a single run, so a sampled answer does not depend on which prompts shared its batch;
- greedy answers can still differ from single-sequence decoding in rare near-ties: a step over 8 sequences
  runs matrix-matrix kernels where one sequence runs matrix-vector ones, and sums in another order. How often
  that happens is measured, not assumed (benchmarks/batch_speed.py, docs/benchmarks.md), and
  `WORKBENCH_BATCH=off` (or `n_seq=1`) turns batching off for exact reproduction of sequential runs;
- per-prompt speed is not a single-stream figure: a step's time is shared by every active sequence. Results
  made here carry `measurement.batched` with the batch's throughput and leave decode tok/s empty.

The context is sized from the fit prediction and the pool's memory budget (`choose_n_seq`): n_seq halves until
n_ctx × n_seq cells of KV cache fit. A worker that dies mid-batch keeps every prompt it already answered;
only the unfinished ones fail, with the worker's reason. A cancel ends the batch: answered prompts are kept,
the ones running come back "cancelled" with their text so far, the rest are not run.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from workbench.engine import memory_budget
from workbench.engine.access import Placement, WorkerAccess, gpu_layers, memory_lines
from workbench.engine.metrics import ContestantResult
from workbench.engine.pool import REQUEST_TIMEOUT_S, WorkerDied, WorkerError, WorkerPool, WorkerProcess
from workbench.engine.protocol import BatchItem, GenerateBatch
from workbench.files.gguf_info import GgufError, read_header
from workbench.runs.contestants import Contestant, RunSettings

DEFAULT_N_SEQ = 16  # the most sequences measured (docs/benchmarks.md); choose_n_seq lowers it to fit memory
MAX_N_SEQ = 64
BATCH_ENV = "WORKBENCH_BATCH"  # "off": every batch feature runs one sequence at a time (exact reproduction)


def batching_enabled() -> bool:
    """False when WORKBENCH_BATCH=off (or 0/false/no): batch features then generate one prompt at a time."""
    return os.environ.get(BATCH_ENV, "").strip().lower() not in ("off", "0", "false", "no")


@dataclass
class ItemResult:
    """What one prompt of a batch produced; `error` set when it has no answer (too long, the worker died)."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    stop_reason: str | None = None
    template: str | None = None
    time_s: float | None = None
    error: str | None = None
    n_seq: int | None = None  # the batch's sequences (how it was made)

    @property
    def ok(self) -> bool:
        return self.error is None and self.stop_reason != "cancelled"

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ItemResult:
        return cls(int(event["index"]), str(event.get("text") or ""), [int(t) for t in event.get("token_ids") or []],
                   event.get("prompt_tokens"), event.get("completion_tokens"), event.get("stop_reason"),
                   event.get("template"), event.get("time_s"), event.get("error"))


@dataclass
class BatchOutcome:
    """Every prompt's result by index (None: never started, after a cancel), the batch's own figures, and
    whether it was cancelled or the worker died (`error`)."""

    results: list[ItemResult | None]
    n_seq: int
    metrics: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    error: str | None = None
    fallback: str | None = None  # the crash fallback's note, as compare results carry it
    memory: dict[str, Any] = field(default_factory=dict)  # engine.access.memory_lines of the batch's worker

    def measurement(self) -> dict[str, Any]:
        """What a result made in this batch stores as its measurement: batched, with the batch's throughput."""
        return {"batched": {"n_seq": self.n_seq, "generated_tok_s": self.metrics.get("generated_tok_s"),
                            "wall_s": self.metrics.get("wall_s"), "n_items": self.metrics.get("n_items")}}


OnItem = Callable[[ItemResult], None]


def _quiet(item: ItemResult) -> None:
    pass


def choose_n_seq(pool: WorkerPool, path: str, settings: RunSettings, wanted: int, n_items: int,
                 placement: Placement | None = None) -> int:
    """Sequences for a batch of `n_items` prompts: at most `wanted` and `n_items`, halved until n_ctx × n_seq
    of KV cache (with the rest of the worker, fit's prediction) fits the pool's memory budget; 1 without
    batching (WORKBENCH_BATCH=off)."""
    if not batching_enabled():
        return 1
    n = max(1, min(int(wanted), int(n_items), MAX_N_SEQ))
    try:
        budget = pool.budget()
        placement = placement or settings.placement()
        while n > 1:
            layers = gpu_layers(path, replace(placement, n_seq=n), pool)
            gpus = pool.gpus_as_if_alone() if layers else []
            need = memory_budget.Need.of(memory_budget.predict_load(
                path, placement.n_ctx * n, layers, None, gpus, kv_type_k=placement.type_k, kv_type_v=placement.type_v))
            if budget.fits(need):
                break
            n //= 2
    except (OSError, ValueError):
        return 1  # the load itself will say what is wrong with the file or the budget
    return n


def generate_many(pool: WorkerPool, contestant: Contestant, settings: RunSettings, items: Sequence[BatchItem], *,
                  n_seq: int = DEFAULT_N_SEQ, n_batch: int | None = None, on_item: OnItem = _quiet,
                  cancel: threading.Event | None = None, ignore_eos: bool = False) -> BatchOutcome:
    """Generate every item through `contestant`'s file with up to `n_seq` sequences at once (see the module
    docstring); `on_item` gets each result as it is made. Local files only. Never raises for the file or the
    worker: a broken file or a dead worker is the outcome's `error`, and each unanswered item carries it."""
    if not contestant.kind.can_batch:
        raise ValueError("batched generation runs local files; endpoints answer one request at a time")
    results: list[ItemResult | None] = [None] * len(items)
    if not items:
        return BatchOutcome(results, 0)
    try:
        read_header(contestant.path)
    except GgufError as exc:
        return _failed(results, 0, f"{contestant.label}: {exc}")
    base = settings.placement_for(contestant)  # the contestant's variant: its KV-cache types and context
    n = choose_n_seq(pool, contestant.path, settings, n_seq, len(items), base)
    if n_batch is not None:  # llama.cpp aborts when a step's sequences exceed the micro-batch (n_ubatch)
        n = max(1, min(n, n_batch))
    placement = replace(base, n_seq=n, n_batch=n_batch)
    access = WorkerAccess(pool, contestant.path, placement)
    outcome = BatchOutcome(results, n, fallback=access.fallback)

    def forward(event: dict[str, Any]) -> None:
        if event.get("event") == "item" and isinstance(event.get("index"), int) and 0 <= event["index"] < len(items):
            access.output_started()  # a crash from here on is not retried: answers were already handed on
            item = ItemResult.from_event(event)
            item.n_seq = n
            results[item.index] = item
            on_item(item)

    def run(worker: WorkerProcess, loaded: dict[str, Any] | None) -> dict[str, Any]:
        request = GenerateBatch(tuple(items), n, settings.temperature, settings.top_p, settings.seed,
                                ignore_eos)  # benchmarks: every item decodes exactly its max_tokens
        rounds = math.ceil(len(items) / n)
        done = worker.call(request, {"done"}, forward, cancel, timeout=REQUEST_TIMEOUT_S * max(1, rounds))
        outcome.memory = memory_lines(pool, worker, done.get("metrics") or {})
        return done

    try:
        done = access.run(run)
    except WorkerDied as died:  # a crash, or Stop with a worker that did not answer the cancel in time
        if cancel is not None and cancel.is_set():
            outcome.cancelled = True
            return outcome
        return _failed(results, n, f"{contestant.label}: {died.describe(access.during)}", outcome)
    except WorkerError as exc:  # includes a cancel before the batch started (WorkerCancelled)
        if cancel is not None and cancel.is_set():
            outcome.cancelled = True
            return outcome
        return _failed(results, n, f"{contestant.label}: {exc}", outcome)
    outcome.metrics = dict(done.get("metrics") or {})
    outcome.cancelled = bool(done.get("cancelled"))
    outcome.fallback = access.fallback
    return outcome


def _failed(results: list[ItemResult | None], n_seq: int, error: str, outcome: BatchOutcome | None = None
            ) -> BatchOutcome:
    """Every item without an answer gets `error`; answers already made are kept."""
    for i, r in enumerate(results):
        if r is None or r.stop_reason == "cancelled":
            results[i] = ItemResult(i, error=error, n_seq=n_seq)
    out = outcome or BatchOutcome(results, n_seq)
    out.error = error
    return out


def result_of(contestant: Contestant, item: ItemResult, settings: RunSettings,
              memory: dict[str, Any] | None = None) -> ContestantResult:
    """A batch item as a comparison result (stored like any other): its text, tokens and stop reason; no
    single-stream speed figures, and `measurement.batched` saying how it was made. `memory`: the batch's
    memory lines (BatchOutcome.memory), when known."""
    r = contestant.blank_result()
    r.n_ctx = contestant.n_ctx or settings.n_ctx
    r.memory = dict(memory or {})
    r.text, r.token_ids, r.prompt_tokens = item.text, list(item.token_ids), item.prompt_tokens
    r.completion_tokens, r.stop_reason, r.template, r.total_s = item.completion_tokens, item.stop_reason, \
        item.template, item.time_s
    r.error = item.error
    if item.error and not r.stop_reason:
        r.stop_reason = "error"
    r.measurement = {"batched": {"n_seq": item.n_seq}, "display": settings.display}
    r.settings = {**settings.to_dict(), "n_seq": item.n_seq}
    return r
