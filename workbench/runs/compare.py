"""Run one prompt through several contestants, one after another, and keep everything.

Fair by default: the same messages, chat template (each GGUF's own), greedy decoding, seed,
context size, thread count and max tokens for every contestant. Contestants run sequentially so
their timings do not fight over cores and memory bandwidth; the reference runs first so the
others can be diffed against it as they finish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from workbench.engine.access import WorkerAccess, memory_lines
from workbench.engine.metrics import ContestantResult, mark_divergence
from workbench.engine.pool import (
    WorkerCancelled,
    WorkerDied,
    WorkerError,
    WorkerKilledOnCancel,
    WorkerPool,
    WorkerProcess,
)
from workbench.engine.protocol import Generate
from workbench.files.gguf_info import GgufError, read_header
from workbench.models.ladder import Ladder
from workbench.runs import remote, timing
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.run_record import new_run, run_status
from workbench.storage.limits import refuse_run_texts
from workbench.storage.store import Store, StoredRun

# on_event(label, status, payload). Statuses: queued, waiting (payload["position"]), loading,
# retrying, generating, tokens (payload["text"] is the new text), done, cancelled, crashed, error.
OnEvent = Callable[[str, str, dict[str, Any]], None]

SEQUENTIAL_NOTE = "Contestants run one after another, so their timings do not compete for cores or memory bandwidth."


@dataclass
class Comparison:
    run_id: int | None
    reference_label: str | None
    results: list[ContestantResult]
    settings: RunSettings
    note: str = SEQUENTIAL_NOTE

    @property
    def all_ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "reference": self.reference_label, "note": self.note,
                "settings": self.settings.to_dict(), "results": [r.to_dict() for r in self.results]}


def contestants_for(ladder: Ladder, labels: list[str] | None = None, reference: str | None = None) -> list[Contestant]:
    """Contestants from a ladder: the reference first, then the chosen labels in ladder order."""
    labels = labels or ladder.default_labels()
    ref_label = reference or ladder.reference.label
    chosen = [f for f in ladder.files if f.label in labels or f.label == ref_label]
    ordered = sorted(chosen, key=lambda f: (f.label != ref_label, ladder.files.index(f)))
    return [Contestant.from_ladder_file(f, is_reference=(f.label == ref_label)) for f in ordered]


IMPORTED_NOTE = ("was imported from an export: its file paths came from another machine (or from whoever wrote the "
                 "file), so the workbench does not load them as models")


def is_imported(run: StoredRun) -> bool:
    """Whether a stored run came in through History's import (its paths are not this machine's to load)."""
    return bool(run.imported_from)


def local_contestants_of_run(run: StoredRun) -> list[Contestant]:
    """The local files of a stored run, as contestants again (to re-measure it); remote endpoints are left out:
    their keys are never stored, and their speed is not this machine's. An imported run has none: its paths
    are never loaded as models (IMPORTED_NOTE)."""
    if is_imported(run):
        return []
    out = []
    for r in run.results:
        settings = r.metrics.get("settings")
        if (isinstance(settings, dict) and settings.get("endpoint")) or not r.file:
            continue
        out.append(Contestant.from_stored(r, run.settings.get("n_ctx")))
    return sorted(out, key=lambda c: not c.is_reference)


def _nothing(label: str, status: str, payload: dict[str, Any]) -> None:
    pass


def run_contestant(
    pool: WorkerPool,
    contestant: Contestant,
    settings: RunSettings,
    messages: list[dict[str, str]],
    on_event: OnEvent = _nothing,
    cancel: threading.Event | None = None,
    *,
    n_batch: int | None = None,
    timed: bool = False,
) -> ContestantResult:
    """Load (or reuse) the contestant's worker and generate; any failure becomes `result.error`.

    `n_batch`: evaluate the prompt in micro-batches of this many tokens (the noise floor's greedy perturbation,
    runs.noise); None is the worker's default. `timed`: after the answer, time its decode again as
    runs.timing says (settings.timing_repeats windows, a disturbed one repeated); for comparisons, whose speed
    figures people act on. Both are ignored for remote endpoints."""
    if not contestant.kind.loads_file:  # it answers from elsewhere: the endpoint client generates
        return remote.run_remote(contestant, settings, messages, on_event, cancel)
    result = contestant.blank_result()
    label = contestant.label
    try:
        read_header(contestant.path)  # cheap checks first: a clear line instead of a llama.cpp failure
    except GgufError as exc:
        result.error, result.stop_reason = str(exc), "error"
        on_event(label, "error", {"message": result.error})
        return result

    def status(status: str, payload: dict[str, Any]) -> None:  # loading, retrying
        if status == "retrying":
            result.fallback = payload["message"]
        on_event(label, status, payload)

    placement = settings.placement_for(contestant)
    if n_batch is not None:
        placement = replace(placement, n_batch=n_batch)
    access = WorkerAccess(pool, contestant.path, placement, on_status=status)
    result.fallback = access.fallback  # loaded without extra buffers: this machine is known to crash with them

    def forward(event: dict[str, Any]) -> None:
        if event.get("event") == "tokens":
            access.output_started()  # the user saw part of it: a crash now is not retried
            on_event(label, "tokens", {"text": event.get("text", ""), "ids": event.get("ids", [])})
        elif event.get("event") == "started":
            on_event(label, "generating", {"prompt_tokens": event.get("prompt_tokens"), "template": event.get("template")})

    def generate(worker: WorkerProcess, loaded: dict[str, Any] | None) -> dict[str, Any]:
        result.warm = loaded is None
        info = worker.last_loaded
        result.load_s = info.get("load_s")
        result.gpu_layers = info.get("gpu_layers")
        loaded_as(result, info)
        request = Generate(messages, max_tokens=settings.max_tokens, temperature=settings.temperature,
                           top_p=settings.top_p, seed=settings.seed)
        # Stop pressed during the load (it cannot be interrupted): call() sees `cancel` set and does not
        # start the generate; pressed just after, the cancel names this generate and the worker honours it
        done = worker.call(request, {"done"}, forward, cancel)
        result.memory = memory_lines(pool, worker, done.get("metrics") or {})
        if timed:
            def again(n: int, _: int) -> None:
                on_event(label, "timing", {"message": f"decode window {n} of the same answer, nothing drawn"})

            windows[:] = timing.time_repeats(worker, request, done.get("metrics") or {}, settings.timing_repeats,
                                             cancel, again)
        return done

    windows: list[dict[str, Any]] = []

    try:
        done = access.run(generate)
    except WorkerCancelled:  # stopped before it produced anything: a cancelled result, not an error
        result.stop_reason = "cancelled"
        on_event(label, "cancelled", {"message": f"{label}: stopped before generating"})
        return result
    except WorkerKilledOnCancel as killed:  # Stop, with a worker that never read the cancel: not a crash
        result.error = f"{label}: {killed.reason}"
        result.stop_reason = "cancelled"
        on_event(label, "cancelled", {"message": result.error})
        return result
    except WorkerDied as died:
        result.error = f"{label}: {died.describe(access.during)}"
        result.stop_reason = "error"
        on_event(label, "crashed", {"message": result.error, "signal": died.signal_name})
        return result
    except WorkerError as exc:
        result.error = str(exc) if str(exc).startswith(contestant.path) else f"{label}: {exc}"
        result.stop_reason = "error"
        on_event(label, "error", {"message": result.error})
        return result
    result.absorb_metrics(done["metrics"])
    result.measurement = {**(result.measurement or {}), "display": settings.display}
    timing.apply(result, windows, settings.timing_repeats)
    result.text = done.get("text", "")
    result.token_ids = list(done.get("token_ids", []))
    result.settings = {**done["metrics"].get("settings", {}), "warm_worker": result.warm}
    on_event(label, "cancelled" if result.stop_reason == "cancelled" else "done", {"result": result.to_dict()})
    return result


def loaded_as(result: ContestantResult, loaded: dict[str, Any]) -> None:
    """Record on `result` what its worker's `loaded` event says was loaded: KV-cache types and context."""
    result.kv_type_k = loaded.get("type_k") or "f16"
    result.kv_type_v = loaded.get("type_v") or "f16"
    result.n_ctx = loaded.get("n_ctx") or result.n_ctx


def check_contestants(contestants: list[Contestant]) -> None:
    """Raise ValueError unless there is at least one contestant and every label is unique.

    Results, ratings and columns are keyed by label: an endpoint labelled like a local quantization (or like
    another endpoint) would overwrite that result.
    """
    if not contestants:
        raise ValueError("choose at least one quantization")
    seen: set[str] = set()
    for c in contestants:
        if c.label in seen:
            raise ValueError(f"two contestants are labelled {c.label!r}: give each endpoint a label that no "
                             "local quantization or other endpoint uses")
        seen.add(c.label)


def run_comparison(
    pool: WorkerPool,
    contestants: list[Contestant],
    prompt: str,
    settings: RunSettings | None = None,
    *,
    store: Store | None = None,
    ladder: Ladder | None = None,
    on_event: OnEvent = _nothing,
    cancel: threading.Event | None = None,
    category: str | None = None,
    on_run_created: Callable[[int], None] | None = None,
) -> Comparison:
    """Run `prompt` through every contestant in turn; each finished result is stored at once."""
    settings = settings or RunSettings()
    settings.validate(contestants)
    refuse_run_texts(prompt, settings.system_prompt)  # storage.limits: what an export could not carry back
    check_contestants(contestants)
    messages = settings.messages(prompt)
    ref = next((c for c in contestants if c.is_reference), None)
    run_id = None
    if store is not None:
        run_id = new_run(store, "compare", contestants, prompt, settings, ladder=ladder, category=category)
        if on_run_created:
            on_run_created(run_id)
    try:
        return _run_comparison(pool, contestants, settings, messages, ref, store, run_id, on_event, cancel)
    except BaseException:
        # Whatever went wrong (a bug, a KeyboardInterrupt), the stored run must not stay "running".
        if store is not None and run_id is not None:
            try:
                store.finish_run(run_id, "failed")
            except Exception:
                pass
        raise


def _run_comparison(pool: WorkerPool, contestants: list[Contestant], settings: RunSettings,
                    messages: list[dict[str, str]], ref: Contestant | None, store: Store | None, run_id: int | None,
                    on_event: OnEvent, cancel: threading.Event | None) -> Comparison:
    for c in contestants:
        on_event(c.label, "queued", {})
    results: list[ContestantResult] = []
    interrupted = False

    def waiting(position: int) -> None:
        for c in contestants:
            on_event(c.label, "waiting", {"position": position})

    try:
        with pool.queue.turn(on_wait=waiting, cancel=cancel):
            by_index: dict[int, ContestantResult] = {}

            def finish(i: int, r: ContestantResult) -> None:
                by_index[i] = r
                results[:] = [by_index[k] for k in sorted(by_index)]
                mark_divergence(results)
                if store is not None and run_id is not None:
                    store.add_result(run_id, i, r.to_dict())

            def cancelled(c: Contestant) -> ContestantResult:
                r = c.blank_result()
                r.stop_reason = "cancelled"
                on_event(c.label, "cancelled", {})
                return r

            remote_ids = [i for i, c in enumerate(contestants) if not c.kind.loads_file]
            batch = settings.remote_concurrent and len(remote_ids) > 1
            for i, c in enumerate(contestants):  # local files one at a time, in order
                if batch and i in remote_ids:
                    continue
                stop = cancel is not None and cancel.is_set()
                finish(i, cancelled(c) if stop else run_contestant(pool, c, settings, messages, on_event, cancel,
                                                                     timed=True))
            if batch:  # remote endpoints together: they do not share this machine's cores
                rs = remote.run_remote_batch([contestants[i] for i in remote_ids], settings, messages, on_event, cancel,
                                             concurrent=True)
                for i, r in zip(remote_ids, rs, strict=True):
                    finish(i, r)
    except InterruptedError:
        interrupted = True
        for c in contestants[len(results):]:
            r = c.blank_result()
            r.stop_reason = "cancelled"
            results.append(r)
            on_event(c.label, "cancelled", {})
    status = run_status((r.ok for r in results), cancelled=interrupted or (cancel is not None and cancel.is_set()))
    if store is not None and run_id is not None:
        for i, r in enumerate(results):
            store.add_result(run_id, i, r.to_dict())  # final divergence marks
        store.finish_run(run_id, status)
    return Comparison(run_id, ref.label if ref else None, results, settings)

