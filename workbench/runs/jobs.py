"""Comparisons running in the background, so a UI can stream them, switch pages, or stop them.

A `ComparisonJob` is a `workbench.core.jobs.Job` that runs `compare.run_comparison` and keeps a per-contestant
view (status, text so far, message) in its snapshot. The app keeps one registry for every kind of job; the
worker pool's run queue makes concurrent jobs take turns machine-wide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workbench.core.jobs import Job
from workbench.engine.pool import WorkerPool
from workbench.models.ladder import Ladder
from workbench.runs.compare import check_contestants, run_comparison
from workbench.runs.contestants import Contestant, RunSettings
from workbench.storage.store import Store

STATUS_TEXT = {
    "queued": "queued",
    "waiting": "waiting for the machine",
    "loading": "loading",
    "connecting": "connecting to the endpoint",
    "retrying": "retrying",
    "generating": "generating",
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
        self.message = payload.get("message", "") or self.message if status in ("crashed", "error", "retrying", "cancelled") else ""


class ComparisonJob(Job):
    """One prompt through several contestants. Bad settings or contestants are refused by the constructor,
    before anything starts, so the page shows the reason at once; `failure` is an unexpected error of the job
    itself (a contestant's error is that contestant's column)."""

    kind = "comparison"

    def __init__(self, pool: WorkerPool, store: Store, contestants: list[Contestant], prompt: str,
                 settings: RunSettings, *, ladder: Ladder | None = None, category: str | None = None) -> None:
        settings.validate()
        check_contestants(contestants)
        super().__init__(self._compare, title="comparison")
        self.pool, self.store, self.contestants, self.prompt, self.settings = pool, store, contestants, prompt, settings
        self.ladder, self.category = ladder, category
        self.labels = [c.label for c in contestants]
        self.columns = {label: ColumnState(label) for label in self.labels}
        self.run_id: int | None = None
        self.display = settings.display  # what the page that started it draws while contestants are timed

    def _compare(self, _job: Job) -> Any:
        return run_comparison(self.pool, self.contestants, self.prompt, self.settings, store=self.store,
                              ladder=self.ladder, on_event=self.on_event, cancel=self.cancel,
                              category=self.category, on_run_created=self._set_run)

    def _set_run(self, run_id: int) -> None:
        with self._lock:
            self.run_id = run_id

    def on_event(self, label: str, status: str, payload: dict[str, Any]) -> None:
        with self._lock:
            col = self.columns.get(label)
            if col is not None:
                col.apply(status, payload)

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "cancelling": self.cancel.is_set(),
                "columns": [asdict(self.columns[label]) for label in self.labels]}
