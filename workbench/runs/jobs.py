"""Comparisons running in the background, so a UI can stream them, switch pages, or stop them.

A job runs `compare.run_comparison` on its own thread and keeps a per-contestant view (status,
text so far, message) that any number of readers can snapshot. The app keeps one registry per
process; the worker pool's run queue makes concurrent jobs take turns machine-wide.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

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


@dataclass
class ComparisonJob:
    id: int
    labels: list[str]
    columns: dict[str, ColumnState]
    cancel: threading.Event = field(default_factory=threading.Event)
    run_id: int | None = None
    finished: bool = False
    failure: str | None = None  # an unexpected error of the job itself (not a contestant's)
    started_at: float = field(default_factory=time.time)
    display: str = "none"  # what the page that started it draws while contestants are timed (RunSettings.display)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_event(self, label: str, status: str, payload: dict[str, Any]) -> None:
        with self._lock:
            col = self.columns.get(label)
            if col is None:
                return
            if status == "tokens":
                col.text += payload.get("text", "")
                col.status = "generating"
                return
            if status == "waiting":
                col.queue_position = payload.get("position")
            if status in ("loading", "retrying"):
                col.text = ""
            col.status = status
            col.message = payload.get("message", "") or col.message if status in ("crashed", "error", "retrying", "cancelled") else ""

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"id": self.id, "run_id": self.run_id, "finished": self.finished, "failure": self.failure,
                    "cancelling": self.cancel.is_set(), "elapsed_s": time.time() - self.started_at,
                    "columns": [asdict(self.columns[label]) for label in self.labels]}

    def stop(self) -> None:
        self.cancel.set()


class JobRegistry:
    """Process-wide: starts jobs and finds them again by id (a browser session keeps only the id)."""

    def __init__(self, pool: WorkerPool, store: Store) -> None:
        self.pool = pool
        self.store = store
        self._jobs: dict[int, ComparisonJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, contestants: list[Contestant], prompt: str, settings: RunSettings, *, ladder: Ladder | None = None,
              category: str | None = None) -> ComparisonJob:
        settings.validate()
        check_contestants(contestants)  # before the job starts: the page shows the reason at once
        labels = [c.label for c in contestants]
        job = ComparisonJob(next(self._ids), labels, {label: ColumnState(label) for label in labels},
                            display=settings.display)

        def set_run(run_id: int) -> None:
            job.run_id = run_id

        def work() -> None:
            try:
                run_comparison(self.pool, contestants, prompt, settings, store=self.store, ladder=ladder,
                               on_event=job.on_event, cancel=job.cancel, category=category, on_run_created=set_run)
            except Exception as exc:  # shown to the user as the job's failure; contestants' errors are not here
                job.failure = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            finally:
                job.finished = True

        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=work, name=f"comparison-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: int | None) -> ComparisonJob | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id is not None else None

    def active(self) -> list[ComparisonJob]:
        with self._lock:
            return [j for j in self._jobs.values() if not j.finished]
