"""Comparisons running in the background, so a UI can stream them, switch pages, or stop them.

A `ComparisonJob` is a `workbench.core.jobs.Job` that runs `compare.run_comparison` and keeps a per-contestant
view (status, text so far, message) in its snapshot. The app keeps one registry for every kind of job; the
worker pool's run queue makes concurrent jobs take turns machine-wide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from workbench.core.jobs import Job
from workbench.engine.pool import WorkerPool
from workbench.models.ladder import Ladder
from workbench.runs.compare import check_contestants, run_comparison
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.noise import check_repeatable, run_repeats
from workbench.storage.limits import refuse_run_texts
from workbench.storage.store import Store

STATUS_TEXT = {
    "queued": "queued",
    "waiting": "waiting for the machine",
    "loading": "loading",
    "connecting": "connecting to the endpoint",
    "retrying": "retrying",
    "generating": "generating",
    "timing": "timing",
    "done": "done",
    "cancelled": "cancelled",
    "crashed": "crashed",
    "error": "error",
}


@dataclass
class ColumnState:
    label: str
    status: str = "queued"
    text: str = ""
    message: str = ""
    queue_position: int | None = None

    def apply(self, status: str, payload: dict[str, Any]) -> None:
        """One `compare.OnEvent` for this contestant: new text streams in, a (re)load starts the text over,
        an error-like status keeps its message."""
        if status == "tokens":
            self.text += payload.get("text", "")
            self.status = "generating"
            return
        if status == "waiting":
            self.queue_position = payload.get("position")
        if status in ("loading", "retrying"):
            self.text = ""
        self.status = status
        self.message = payload.get("message", "") or self.message if status in ("crashed", "error", "retrying", "cancelled", "timing") else ""


def apply_column_event(columns: Mapping[str, ColumnState], label: str, status: str, payload: dict[str, Any]) -> None:
    """Hand one `compare.OnEvent` to its contestant's column (a label no column shows is dropped); the caller
    holds the job's lock. Comparisons and set runs both follow their contestants this way."""
    col = columns.get(label)
    if col is not None:
        col.apply(status, payload)


class ComparisonJob(Job):
    """One prompt through several contestants. Bad settings or contestants are refused by the constructor,
    before anything starts, so the page shows the reason at once; `failure` is an unexpected error of the job
    itself (a contestant's error is that contestant's column).

    `noise_repeats`: after every contestant has run (their timings untouched), the reference runs that many
    more times for a noise floor (runs.noise); the snapshot's `repeat` says which one runs now.
    """

    kind = "comparison"

    def __init__(self, pool: WorkerPool, store: Store, contestants: list[Contestant], prompt: str,
                 settings: RunSettings, *, ladder: Ladder | None = None, category: str | None = None,
                 noise_repeats: int = 0) -> None:
        settings.validate(contestants)
        refuse_run_texts(prompt, settings.system_prompt)
        check_contestants(contestants)
        check_repeatable(next((c for c in contestants if c.is_reference), None), settings, noise_repeats)
        super().__init__(self._compare, title="comparison")
        self.pool, self.store, self.contestants, self.prompt, self.settings = pool, store, contestants, prompt, settings
        self.ladder, self.category = ladder, category
        self.labels = [c.label for c in contestants]
        self.columns = {label: ColumnState(label) for label in self.labels}
        self.run_id: int | None = None
        self.display = settings.display  # what the page that started it draws while contestants are timed
        self.noise_repeats = noise_repeats
        self.repeat: int | None = None

    def _compare(self, _job: Job) -> Any:
        comparison = run_comparison(self.pool, self.contestants, self.prompt, self.settings, store=self.store,
                                    ladder=self.ladder, on_event=self.on_event, cancel=self.cancel,
                                    category=self.category, on_run_created=self._set_run)
        reference = next((c for c in self.contestants if c.is_reference), None)
        ref_result = next((r for r in comparison.results if r.label == (reference.label if reference else None)), None)
        if self.noise_repeats and reference is not None and comparison.run_id is not None and \
                ref_result is not None and ref_result.ok and not self.cancel.is_set():
            run_repeats(self.pool, self.store, comparison.run_id, reference, self.settings,
                        self.settings.messages(self.prompt), self.noise_repeats, cancel=self.cancel,
                        on_repeat=self._on_repeat)
        return comparison

    def _on_repeat(self, repeat: int, n: int, phase: str, row: dict[str, Any] | None) -> None:
        with self._lock:
            self.repeat = repeat if phase == "start" else None
        self.report(repeat - (phase == "start"), n, phase="repeat",
                    message=f"noise floor: reference repeat {repeat} of {n}")

    def _set_run(self, run_id: int) -> None:
        with self._lock:
            self.run_id = run_id

    def on_event(self, label: str, status: str, payload: dict[str, Any]) -> None:
        with self._lock:
            apply_column_event(self.columns, label, status, payload)

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "cancelling": self.cancel.is_set(), "repeat": self.repeat,
                "noise_repeats": self.noise_repeats,
                "columns": [asdict(self.columns[label]) for label in self.labels]}
