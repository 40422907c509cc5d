"""Set runs: a prompt set put through the chosen quantizations as one batch, stoppable and resumable.

How a caller uses it (a page, the CLI):

    set_run_id = start_set_run(store, prompt_set, ladder, labels=["Q8_0", "Q4_K_M"])   # stored, nothing runs yet
    outcome = run_set(pool, store, ladder, set_run_id, on_progress, cancel)          # blocks; or, in the app:
    job = registry.start(SetRunJob(pool, store, set_run_id, ladder=ladder))           # follow job.snapshot()
    job = running_job(registry, set_run_id)          # after a reload: the job still running, or None (resume)
    store.get_set_run(set_run_id), store.list_set_runs()                               # what is stored

Each prompt becomes one ordinary comparison run (kind "compare") tagged with the set run and the prompt's
index, so ratings, divergence, diff views and export understand every prompt.

Batched (the default, runs.batched): unfinished prompts go in chunks of CHUNK_PROMPTS; within a chunk each
file answers all of them in one batch (the reference first), every answer stored in its prompt's run as it
comes; a prompt is finished when every file answered it. A Stop keeps every answer: on resume a prompt whose
run was stopped carries on in that run and only the files that had not answered it run again. The noise
floor's repeats then run one batch per repeat. Results carry `measurement.batched` and no single-stream speed.
With WORKBENCH_BATCH=off prompts run one at a time through `compare.run_comparison`, as described below.
Prompts run in order. A prompt is finished when its newest run is done, or ended with a contestant's error
(`store.SET_PROMPT_FINISHED`: a retry would give the same error), and, with a noise floor (`noise_repeats`),
its reference has been repeated that often (runs.noise; a prompt whose reference failed gets no repeats);
a contestant failure affects only that prompt. Stop (the `cancel` Event) ends the current prompt's run as cancelled and starts no other; finished
prompts are kept. Resume is calling `run_set` (or starting a `SetRunJob`) again with the same id: it runs only
the prompts that are not finished, after a Stop, a reload, or a crash alike. A stored status "running" with no
`running_job` means the process that ran it has ended: offer to resume it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from workbench.core.jobs import Cancelled, Job, JobRegistry
from workbench.engine.metrics import ContestantResult, mark_divergence
from workbench.engine.pool import WorkerPool
from workbench.files.gguf_info import GgufError
from workbench.models.ladder import Ladder, LadderFile
from workbench.runs.batched import DEFAULT_N_SEQ, BatchItem, ItemResult, batching_enabled, generate_many, result_of
from workbench.runs.compare import OnEvent, check_contestants, contestants_for, run_comparison
from workbench.runs.contestants import Contestant, RunSettings, variant_contestants
from workbench.runs.jobs import ColumnState, apply_column_event
from workbench.runs.noise import NoiseError, check_repeatable, missing_repeats, run_repeats, run_repeats_batched
from workbench.runs.prompt_sets import PromptSet, SetPrompt
from workbench.runs.run_record import new_run, run_status, workbench_version
from workbench.runs.variants import Variant
from workbench.storage.limits import refuse_set
from workbench.storage.store import SET_PROMPT_FINISHED, SetRunChild, Store, StoredSetRun, StoreError

CONTESTANT_ENDS = ("done", "cancelled", "crashed", "error")  # compare's on_event statuses that end a contestant

_active: set[int] = set()  # set runs running in this process: a second run of the same one is refused
_active_lock = threading.Lock()


class SetRunError(ValueError):
    """A set run that cannot run as asked (unknown id, a model file gone, labels not in the ladder, already
    running); the message says what to do."""


@dataclass(frozen=True)
class SetProgress:
    """Where a set run is, as data: `finished` of `total` prompts; the prompt running now (`index`, 0-based,
    None between prompts and at the end), its text and child run; which of its contestants have ended.

    `phase`: "prompt" (a prompt started), "contestant" (one of its contestants ended), "repeat" (a repeat of
    its reference for the noise floor started: `repeat` of `repeats`), "prompt-done", "end".
    `statuses`: each prompt's newest run status (None: not run yet), by index.
    """

    set_run_id: int
    total: int
    finished: int
    phase: str
    index: int | None = None
    prompt: str = ""
    run_id: int | None = None
    labels: tuple[str, ...] = ()
    done_labels: tuple[str, ...] = ()
    statuses: tuple[str | None, ...] = ()
    repeat: int | None = None
    repeats: int = 0
    label: str | None = None  # phase "batch": the file answering prompts chunk[0]..chunk[1]-1 together
    chunk: tuple[int, int] | None = None
    answered: int = 0

    def message(self) -> str:
        """One line for people: "prompt 3 of 10: Summarize this…" or "prompt 3 of 10: reference repeat 2 of 3"."""
        if self.phase == "batch" and self.chunk is not None:
            a, b = self.chunk
            return (f"prompts {a + 1}–{b} of {self.total}: {self.label}, batched ({self.answered} of {b - a} "
                    "answered)")
        if self.phase == "repeat" and self.index is None and self.repeat is not None:
            return f"reference repeat {self.repeat} of {self.repeats} (noise floor), batched over the prompts"
        if self.index is None:
            return f"{self.finished} of {self.total} prompts finished"
        if self.phase == "repeat" and self.repeat is not None:
            return f"prompt {self.index + 1} of {self.total}: reference repeat {self.repeat} of {self.repeats} (noise floor)"
        head = " ".join(self.prompt.split())
        return f"prompt {self.index + 1} of {self.total}: {head[:60]}{'…' if len(head) > 60 else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "labels": list(self.labels), "done_labels": list(self.done_labels),
                "statuses": list(self.statuses), "chunk": list(self.chunk) if self.chunk else None}


@dataclass(frozen=True)
class SetRunOutcome:
    """How `run_set` ended: status done (every prompt finished), cancelled (stopped; resume runs the rest)."""

    set_run_id: int
    status: str
    finished: int
    total: int


OnProgress = Callable[[SetProgress], None]


def _quiet(progress: SetProgress) -> None:
    pass


# ---- creating ---------------------------------------------------------------------------------------------
def set_contestants(ladder: Ladder, labels: list[str] | None, reference: str | None = None) -> list[Contestant]:
    """The contestants of a set run: the reference first, then the chosen labels; unknown labels refused."""
    unknown = [label for label in [*(labels or []), *([reference] if reference else [])] if label not in ladder.labels()]
    if unknown:
        raise SetRunError(f"{', '.join(unknown)}: not in the ladder {ladder.name!r} (it has {', '.join(ladder.labels())})")
    contestants = contestants_for(ladder, labels, reference)
    check_contestants(contestants)
    return contestants


def stored_contestants(ladder: Ladder, set_run: StoredSetRun) -> list[Contestant]:
    """A stored set run's contestants: its files, expanded by the variants its settings were started with
    (RunSettings.variants; none in set runs from before variants)."""
    try:
        settings = RunSettings.from_dict(set_run.settings)
    except ValueError as exc:
        raise SetRunError(f"set run {set_run.id}: {exc}") from None
    if not settings.variants:
        return set_contestants(ladder, list(set_run.labels), set_run.reference_label)
    files = set_contestants(ladder, list(settings.file_labels), set_run.reference_label)
    expanded = variant_contestants(files, settings.variants, int(settings.n_ctx or RunSettings().n_ctx),
                                   baseline=settings.variant_baseline)
    wanted = set_run.labels
    return [c for c in expanded if c.label in wanted]


def start_set_run(store: Store, prompt_set: PromptSet, ladder: Ladder, *, labels: list[str] | None = None,
                  reference: str | None = None, settings: RunSettings | None = None, noise_repeats: int = 0,
                  variants: Sequence[Variant] = (), variant_baseline: bool = True) -> int:
    """Store a new set run (status running) and return its id; `run_set` then runs it.

    `labels`: the contestants (default: the ladder's default labels); the reference (default: the ladder's)
    always takes part. `variants` (runs.variants): each file also runs as these (and as itself unless
    `variant_baseline` is False; the reference always does). `noise_repeats`: how often each prompt's reference is run again for the noise floor
    (runs.noise). Bad settings, labels, repeats or an empty set are refused here, before anything is stored.
    """
    settings = settings or RunSettings()
    settings.validate()
    if not prompt_set.prompts:
        raise SetRunError("the prompt set is empty")
    try:
        refuse_set(prompt_set.to_dicts())  # a set run an export could not carry back is never made
    except ValueError as exc:
        raise SetRunError(str(exc)) from None
    files = set_contestants(ladder, labels, reference)
    contestants = variant_contestants(files, variants, settings.n_ctx, baseline=variant_baseline)
    stored_settings = replace(settings, variants=tuple(variants), variant_baseline=variant_baseline,
                              file_labels=tuple(c.label for c in files)) if variants else settings.without_variants()
    reference_contestant = next((c for c in contestants if c.is_reference), None)
    try:
        check_repeatable(reference_contestant, settings, noise_repeats)
    except NoiseError as exc:
        raise SetRunError(str(exc)) from None
    ref = reference_contestant.label if reference_contestant else None
    return store.create_set_run(name=prompt_set.name, prompts=prompt_set.to_dicts(), labels=[c.label for c in contestants],
                                reference_label=ref, settings=stored_settings.to_dict(), ladder=ladder.to_dict(),
                                noise_repeats=noise_repeats, workbench_version=workbench_version())


def ladder_of(set_run: StoredSetRun) -> Ladder:
    """The ladder a stored set run was started with, its files checked (resume after a restart needs it)."""
    data = set_run.ladder or {}
    try:
        files = [LadderFile(**f) for f in data.get("files") or []]
    except TypeError:
        raise SetRunError(f"set run {set_run.id}: its stored ladder cannot be read") from None
    for f in files:
        try:
            with open(f.path, "rb"):
                pass
        except OSError:
            raise SetRunError(f"set run {set_run.id}: {f.path} ({f.label}) is gone; its prompts cannot be "
                              "run again here") from None
    if not files:
        raise SetRunError(f"set run {set_run.id} has no ladder to run")
    return Ladder(name=str(data.get("name") or "ladder"), files=files, provenance=data.get("provenance") or {},
                  directory=data.get("directory"))


def set_status(finished: int, total: int, *, stopped: bool) -> str:
    """How a set run ends: "done" when every prompt finished, "cancelled" when stopped (resume runs the rest),
    else "failed" (a prompt could not finish; its own run says why)."""
    return "done" if finished == total else "cancelled" if stopped else "failed"


def unfinished(set_run: StoredSetRun) -> list[int]:
    """Indices of the prompts that still need a run (no finished newest run), in order. Repeats of the
    reference still owed by a finished prompt are `run_set`'s to find (they need the store)."""
    statuses = {c.index: c.status for c in set_run.children}
    return [i for i in range(len(set_run.prompts)) if statuses.get(i) not in SET_PROMPT_FINISHED]


def _reference_ok(store: Store, run_id: int | None, reference: str | None) -> bool:
    """Whether the run's reference produced an output (only then is there something to repeat)."""
    run = store.get_run(run_id) if run_id is not None and reference else None
    return run is not None and any(r.label == reference and not r.error and r.text is not None for r in run.results)


# ---- running ----------------------------------------------------------------------------------------------
def run_set(pool: WorkerPool, store: Store, ladder: Ladder | None, set_run_id: int,
            on_progress: OnProgress = _quiet, cancel: threading.Event | None = None, *,
            on_event: OnEvent | None = None, n_seq: int = DEFAULT_N_SEQ) -> SetRunOutcome:
    """Run every unfinished prompt of the set run through its contestants, in order (see the module docstring).

    `ladder`: where the labels' files are (None: the ladder stored with the set run). `on_event` receives the
    current prompt's contestant events as `compare.run_comparison` sends them (tokens for streaming).
    Raises SetRunError when the set run cannot run; an unexpected error marks it failed and propagates.
    """
    set_run = store.get_set_run(set_run_id)
    if set_run is None:
        raise SetRunError(f"no set run with id {set_run_id}")
    if set_run.imported_from:
        raise SetRunError(f"set run {set_run_id} was imported ({set_run.imported_from}): its prompts ran on another "
                          "machine, and its file paths are not this one's to load, so it cannot be resumed here")
    ladder = ladder or ladder_of(set_run)
    contestants = stored_contestants(ladder, set_run)
    settings = RunSettings.from_dict(set_run.settings).without_variants()  # expanded into the contestants
    prompts = [SetPrompt.from_dict(p) for p in set_run.prompts]
    repeats = set_run.noise_repeats
    with _active_lock:
        if set_run_id in _active:
            raise SetRunError(f"set run {set_run_id} is already running")
        _active.add(set_run_id)
    try:
        store.set_set_run_status(set_run_id, "running")
        try:
            if not batching_enabled():
                return _run_prompts(pool, store, ladder, set_run_id, contestants, settings, prompts, repeats,
                                    on_progress, cancel, on_event)
            return _run_prompts_batched(pool, store, ladder, set_run_id, contestants, settings, prompts, repeats,
                                        on_progress, cancel, on_event, n_seq)
        except KeyboardInterrupt:
            store.set_set_run_status(set_run_id, "cancelled")  # resumable: nothing is wrong with the set
            raise
        except BaseException:
            try:
                store.set_set_run_status(set_run_id, "failed")
            except Exception:
                pass
            raise
    finally:
        with _active_lock:
            _active.discard(set_run_id)


class _SetState:
    """What both ways of running a set read from the store as they go: each prompt's newest run, which prompts
    are finished (and not owed reference repeats), and each prompt's own settings (its system prompt)."""

    def __init__(self, store: Store, set_run_id: int, prompts: list[SetPrompt], settings: RunSettings,
                 repeats: int, reference: Contestant | None) -> None:
        self.store, self.set_run_id, self.prompts, self.settings = store, set_run_id, prompts, settings
        self.repeats, self.reference, self.total = repeats, reference, len(prompts)

    def children(self) -> dict[int, SetRunChild]:
        return {c.index: c for c in self.store.set_run_children(self.set_run_id)}

    def statuses(self) -> tuple[str | None, ...]:
        newest = self.children()
        return tuple(newest[i].status if i in newest else None for i in range(self.total))

    def owes_repeats(self, child: SetRunChild | None) -> bool:
        """A finished prompt whose reference answered, with repeats still missing."""
        if not self.repeats or self.reference is None or child is None or child.status not in SET_PROMPT_FINISHED:
            return False
        return bool(missing_repeats(self.store, child.run_id, self.repeats)) and \
            _reference_ok(self.store, child.run_id, self.reference.label)

    def finished_count(self) -> int:
        return sum(c.status in SET_PROMPT_FINISHED and not self.owes_repeats(c) for c in self.children().values())

    def prompt_settings(self, i: int) -> RunSettings:
        system = self.prompts[i].system
        return replace(self.settings, system_prompt=system) if system is not None else self.settings


def _run_prompts(pool: WorkerPool, store: Store, ladder: Ladder, set_run_id: int, contestants: list[Contestant],
                 settings: RunSettings, prompts: list[SetPrompt], repeats: int, on_progress: OnProgress,
                 cancel: threading.Event | None, on_event: OnEvent | None) -> SetRunOutcome:
    labels = tuple(c.label for c in contestants)
    total = len(prompts)
    reference = next((c for c in contestants if c.is_reference), None)
    state = _SetState(store, set_run_id, prompts, settings, repeats, reference)

    now = state.statuses()
    newest = state.children()
    todo = [i for i in range(total) if now[i] not in SET_PROMPT_FINISHED or state.owes_repeats(newest.get(i))]
    for index in todo:
        if cancel is not None and cancel.is_set():
            break
        item = prompts[index]
        base = SetProgress(set_run_id, total, state.finished_count(), "prompt", index, item.prompt, None, labels, (), now,
                           repeats=repeats)
        child = state.children().get(index)
        run_id: int | None = child.run_id if child and child.status in SET_PROMPT_FINISHED else None
        done: tuple[str, ...] = ()
        prompt_settings = state.prompt_settings(index)
        if run_id is None:
            on_progress(base)
            run_id = _run_one_prompt(pool, store, ladder, set_run_id, index, contestants, item, prompt_settings,
                                     base, on_progress, cancel, on_event)
            done = labels
        stopped = cancel is not None and cancel.is_set()
        if repeats and reference is not None and run_id is not None and not stopped and \
                _reference_ok(store, run_id, reference.label):

            def started(k: int, n: int, phase: str, row: dict[str, Any] | None, base: SetProgress = base,
                        run_id: int = run_id) -> None:
                if phase == "start":
                    on_progress(replace(base, phase="repeat", run_id=run_id, repeat=k, done_labels=labels))

            run_repeats(pool, store, run_id, reference, prompt_settings, prompt_settings.messages(item.prompt),
                        repeats, cancel=cancel, on_repeat=started)
        now = state.statuses()
        on_progress(replace(base, phase="prompt-done", finished=state.finished_count(), run_id=run_id, done_labels=done,
                            statuses=now))
    now = state.statuses()
    finished = state.finished_count()
    status = set_status(finished, total, stopped=cancel is not None and cancel.is_set())
    store.set_set_run_status(set_run_id, status)
    on_progress(SetProgress(set_run_id, total, finished, "end", labels=labels, statuses=now, repeats=repeats))
    return SetRunOutcome(set_run_id, status, finished, total)


CHUNK_PROMPTS = 16  # prompts batched together per file: a Stop loses at most one chunk's unfinished prompts


def _run_prompts_batched(pool: WorkerPool, store: Store, ladder: Ladder, set_run_id: int,
                         contestants: list[Contestant], settings: RunSettings, prompts: list[SetPrompt], repeats: int,
                         on_progress: OnProgress, cancel: threading.Event | None,
                         on_event: OnEvent | None, n_seq: int) -> SetRunOutcome:
    """`_run_prompts` at batch speed (runs.batched): unfinished prompts in chunks of CHUNK_PROMPTS; within a
    chunk each file answers every prompt in one batch, each answer stored as it comes; then the chunk's runs are
    finished. Then the noise floor's repeats, one batch per repeat over every prompt that owes it."""
    labels = tuple(c.label for c in contestants)
    total = len(prompts)
    reference = next((c for c in contestants if c.is_reference), None)
    state = _SetState(store, set_run_id, prompts, settings, repeats, reference)

    def stopped() -> bool:
        return cancel is not None and cancel.is_set()

    now = state.statuses()
    todo = [i for i in range(total) if now[i] not in SET_PROMPT_FINISHED]
    for start in range(0, len(todo), CHUNK_PROMPTS):
        if stopped():
            break
        chunk = todo[start : start + CHUNK_PROMPTS]
        span = (chunk[0], chunk[-1] + 1)
        run_ids, results = _chunk_runs(store, set_run_id, chunk, contestants, prompts, state.prompt_settings, ladder)
        for position, c in enumerate(contestants):
            if stopped():
                break
            if all(results[i][position] is not None for i in chunk):
                continue  # answered before a Stop: kept
            base = SetProgress(set_run_id, total, state.finished_count(), "batch", chunk[0], prompts[chunk[0]].prompt,
                               None, labels, labels[:position], now, repeats=repeats, label=c.label, chunk=span)
            on_progress(base)
            if not _answer_chunk(pool, store, c, position, chunk, run_ids, results, state.prompt_settings, settings,
                                 prompts, base, on_progress, cancel, on_event, n_seq):
                break  # stopped while waiting for the machine
        for i in chunk:
            got = [r for r in results[i] if r is not None]
            mark_divergence(got)
            for position, done_result in enumerate(results[i]):
                if done_result is not None:
                    store.add_result(run_ids[i], position, done_result.to_dict())  # the divergence marks
            store.finish_run(run_ids[i], run_status((r.ok for r in got), cancelled=len(got) < len(contestants)))
        now = state.statuses()
        on_progress(SetProgress(set_run_id, total, state.finished_count(), "prompt-done", chunk[-1],
                                prompts[chunk[-1]].prompt, None, labels, labels, now, repeats=repeats, chunk=span))
    if repeats and reference is not None and not stopped():
        newest = state.children()
        owed = [(newest[i].run_id, state.prompt_settings(i).messages(prompts[i].prompt)) for i in range(total)
                if state.owes_repeats(newest.get(i))]

        def started(k: int, n: int, phase: str, row: dict[str, Any] | None) -> None:
            if phase == "start":
                on_progress(SetProgress(set_run_id, total, state.finished_count(), "repeat", labels=labels,
                                        statuses=state.statuses(), repeat=k, repeats=repeats))

        if owed:
            run_repeats_batched(pool, store, owed, reference, settings, repeats, cancel=cancel, on_repeat=started,
                                n_seq=n_seq)
    now = state.statuses()
    finished = state.finished_count()
    status = set_status(finished, total, stopped=stopped())
    store.set_set_run_status(set_run_id, status)
    on_progress(SetProgress(set_run_id, total, finished, "end", labels=labels, statuses=now, repeats=repeats))
    return SetRunOutcome(set_run_id, status, finished, total)


def _chunk_runs(store: Store, set_run_id: int, chunk: list[int], contestants: list[Contestant],
                prompts: list[SetPrompt], prompt_settings: Callable[[int], RunSettings], ladder: Ladder
                ) -> tuple[dict[int, int], dict[int, list[ContestantResult | None]]]:
    """Each prompt's run for this chunk and the results it already has. A prompt whose newest run was stopped
    midway carries on in that run, keeping the answers it got (a file's error too: a retry would repeat it);
    any other prompt gets a new run. Results are by contestant position."""
    newest = {c.index: c for c in store.set_run_children(set_run_id)}
    position_of = {c.label: k for k, c in enumerate(contestants)}
    run_ids: dict[int, int] = {}
    results: dict[int, list[ContestantResult | None]] = {}
    for i in chunk:
        results[i] = [None] * len(contestants)
        child = newest.get(i)
        prior = store.get_run(child.run_id) if child and child.status == "cancelled" else None
        kept = [r for r in prior.results if r.label in position_of and r.stop_reason != "cancelled"] if prior else []
        if prior is not None and kept:
            run_ids[i] = prior.id
            for row in kept:
                results[i][position_of[row.label]] = ContestantResult.from_dict({
                    **row.metrics, "label": row.label, "text": row.text, "error": row.error,
                    "stop_reason": row.stop_reason, "token_ids": row.token_ids, "is_reference": row.is_reference})
            store.finish_run(prior.id, "running")
            continue
        run_ids[i] = new_run(store, "compare", contestants, prompts[i].prompt, prompt_settings(i), ladder=ladder,
                             category=prompts[i].category)
        store.tag_set_run_child(run_ids[i], set_run_id, i)
    return run_ids, results


def _answer_chunk(pool: WorkerPool, store: Store, c: Contestant, position: int, chunk: list[int],
                  run_ids: dict[int, int], results: dict[int, list[ContestantResult | None]],
                  prompt_settings: Callable[[int], RunSettings], settings: RunSettings, prompts: list[SetPrompt],
                  base: SetProgress, on_progress: OnProgress, cancel: threading.Event | None,
                  on_event: OnEvent | None, n_seq: int) -> bool:
    """One file answers every prompt of the chunk in one batch; each answer is stored in its prompt's run as it
    comes (a dead worker's unanswered prompts get its error). False when stopped before the batch started."""
    answered = 0

    def on_item(item: ItemResult) -> None:
        nonlocal answered
        if item.stop_reason == "cancelled":
            return  # stopped midway: the prompt runs again on resume
        i = chunk[item.index]
        r = result_of(c, item, prompt_settings(i))
        results[i][position] = r
        store.add_result(run_ids[i], position, r.to_dict())
        answered += 1
        if on_event is not None:
            on_event(c.label, "done" if r.ok else "error", {"result": r.to_dict(), "index": i})
        on_progress(replace(base, answered=answered, run_id=run_ids[i]))

    chunk = [i for i in chunk if results[i][position] is None]  # what a Stop left unanswered
    items = [BatchItem(prompt_settings(i).messages(prompts[i].prompt), settings.max_tokens) for i in chunk]
    try:
        with pool.queue.turn(cancel=cancel):
            outcome = generate_many(pool, c, settings, items, n_seq=n_seq, on_item=on_item, cancel=cancel)
    except InterruptedError:
        return False
    for k, item in enumerate(outcome.results):
        i = chunk[k]
        if item is not None and item.error and results[i][position] is None:
            r = result_of(c, item, prompt_settings(i), outcome.memory)
            results[i][position] = r
            store.add_result(run_ids[i], position, r.to_dict())
        elif outcome.memory and (done := results[i][position]) is not None and not done.memory:
            done.memory = dict(outcome.memory)  # known once the batch ends: each answer stored again with it
            store.add_result(run_ids[i], position, done.to_dict())
    return True


def _run_one_prompt(pool: WorkerPool, store: Store, ladder: Ladder, set_run_id: int, index: int,
                    contestants: list[Contestant], item: SetPrompt, prompt_settings: RunSettings, base: SetProgress,
                    on_progress: OnProgress, cancel: threading.Event | None, on_event: OnEvent | None) -> int | None:
    """Run one prompt through the contestants as a comparison run tagged with the set run; its run id."""
    run_id: int | None = None
    done: tuple[str, ...] = ()

    def created(new_id: int) -> None:
        nonlocal run_id
        store.tag_set_run_child(new_id, set_run_id, index)
        run_id = new_id

    def event(label: str, status: str, payload: dict[str, Any]) -> None:
        nonlocal done
        if on_event is not None:
            on_event(label, status, payload)
        if status in CONTESTANT_ENDS and label not in done:
            done = (*done, label)
            on_progress(replace(base, phase="contestant", run_id=run_id, done_labels=done))

    run_comparison(pool, contestants, item.prompt, prompt_settings, store=store, ladder=ladder, on_event=event,
                   cancel=cancel, category=item.category, on_run_created=created)
    return run_id


# ---- in the background ------------------------------------------------------------------------------------
class SetRunJob(Job):
    """`run_set` on a background thread (core.jobs): start, Stop (`job.stop()`), and resume by starting another
    SetRunJob for the same set run id.

    Progress is data: `done`/`total` count finished prompts; `detail` is the latest `SetProgress.to_dict()`;
    the snapshot adds `set_run_id`, `progress` (the same dict) and `columns` (the current prompt's contestants:
    status and text so far, as `runs.jobs.ComparisonJob` shows them). A Stop ends the job "cancelled"; an
    unknown set run, a missing model file or a read-only database ends it "failed" with that one line.
    """

    kind = "set-run"
    expected = (SetRunError, StoreError, GgufError)

    def __init__(self, pool: WorkerPool, store: Store, set_run_id: int, *, ladder: Ladder | None = None,
                 n_seq: int = DEFAULT_N_SEQ) -> None:
        super().__init__(self._work, title=f"set run {set_run_id}")
        self.pool, self.store, self.set_run_id, self.ladder, self.n_seq = pool, store, set_run_id, ladder, n_seq
        self.latest: SetProgress | None = None
        self.columns: dict[str, ColumnState] = {}

    def _work(self, _job: Job) -> SetRunOutcome:
        outcome = run_set(self.pool, self.store, self.ladder, self.set_run_id, self._on_progress, self.cancel,
                          on_event=self._on_event, n_seq=self.n_seq)
        if outcome.status == "cancelled":
            raise Cancelled(f"stopped: {outcome.finished} of {outcome.total} prompts finished; resume runs the rest")
        return outcome

    def _on_progress(self, progress: SetProgress) -> None:
        with self._lock:
            self.latest = progress
            if progress.phase == "prompt":
                self.columns = {label: ColumnState(label) for label in progress.labels}
        self.report(progress.finished, progress.total, phase=progress.phase, message=progress.message(),
                    detail=progress.to_dict())

    def _on_event(self, label: str, status: str, payload: dict[str, Any]) -> None:
        with self._lock:
            apply_column_event(self.columns, label, status, payload)

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"set_run_id": self.set_run_id, "progress": self.latest.to_dict() if self.latest else None,
                "columns": [asdict(c) for c in self.columns.values()]}


def running_job(registry: JobRegistry, set_run_id: int) -> SetRunJob | None:
    """The registry's running job for this set run, if any: after a page reload (the browser session lost the
    job id) a page shows that job's progress instead of offering to resume (which `run_set` would refuse)."""
    return next((j for j in registry.active() if isinstance(j, SetRunJob) and j.set_run_id == set_run_id), None)
