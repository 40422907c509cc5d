"""Divergence measurements and evals running in the background, so a page can poll, switch or stop them.

Like `workbench.runs.jobs` does for comparisons: a job runs on its own thread with a cancel event and a
progress view (done / total / message) that any number of readers can snapshot. The registry is
process-wide (the app keeps one), a browser session keeps only job ids. The library functions
themselves take the machine-wide run queue's turns, so these jobs and comparisons take turns.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.engine.pool import WorkerPool
from workbench.models.ladder import Ladder
from workbench.quality import divergence, evals
from workbench.quality.packs import Pack
from workbench.runs.contestants import Contestant, RunSettings
from workbench.storage.store import Store


@dataclass
class TaskJob:
    """One background task: what it is, how far it got, and how it ended."""

    id: int
    kind: str  # "divergence-run", "divergence-prompt", "divergence-text", "eval"
    title: str
    cancel: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int = 0
    message: str = "queued"
    run_id: int | None = None
    result: Any = None
    failure: str | None = None  # why it could not finish (a plain sentence)
    cancelled: bool = False
    finished: bool = False
    started_at: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, done: int, total: int, message: str) -> None:
        with self._lock:
            self.done, self.total, self.message = done, total, message

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"id": self.id, "kind": self.kind, "title": self.title, "done": self.done, "total": self.total,
                    "fraction": (self.done / self.total) if self.total else 0.0, "message": self.message,
                    "run_id": self.run_id, "failure": self.failure, "cancelled": self.cancelled,
                    "finished": self.finished, "cancelling": self.cancel.is_set() and not self.finished,
                    "elapsed_s": time.time() - self.started_at}

    def stop(self) -> None:
        self.cancel.set()


class TaskRegistry:
    """Starts quality jobs and finds them again by id."""

    def __init__(self, pool: WorkerPool, store: Store) -> None:
        self.pool = pool
        self.store = store
        self._jobs: dict[int, TaskJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, job_id: int | None) -> TaskJob | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id is not None else None

    def active(self) -> list[TaskJob]:
        with self._lock:
            return [j for j in self._jobs.values() if not j.finished]

    def _start(self, kind: str, title: str, work: Callable[[TaskJob], Any]) -> TaskJob:
        job = TaskJob(next(self._ids), kind, title)

        def run() -> None:
            try:
                job.result = work(job)
                if isinstance(job.result, evals.EvalRun) and job.result.status == "cancelled":
                    job.cancelled = True
            except divergence.DivergenceCancelled:
                job.cancelled = True
            except (divergence.DivergenceError, ValueError) as exc:
                job.failure = str(exc)
            except Exception as exc:  # an unexpected error of the job itself: shown, and logged with its trace
                job.failure = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            finally:
                with job._lock:
                    job.message = "stopped" if job.cancelled else "failed" if job.failure else "done"
                job.finished = True

        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=run, name=f"quality-{kind}-{job.id}", daemon=True).start()
        return job

    # ---- divergence ----------------------------------------------------------------------------
    def start_divergence_run(self, run_id: int, contestants: Sequence[Contestant] | None = None) -> TaskJob:
        def work(job: TaskJob) -> divergence.DivergenceReport:
            job.run_id = run_id
            return divergence.diverge_run(self.pool, self.store, run_id, contestants=contestants,
                                          on_progress=job.progress, cancel=job.cancel)

        return self._start("divergence-run", f"divergence of run #{run_id}", work)

    def start_divergence_prompt(self, contestants: Sequence[Contestant], prompt: str, settings: RunSettings,
                                ladder: Ladder | None = None) -> TaskJob:
        settings.validate()

        def work(job: TaskJob) -> divergence.DivergenceReport:
            report = divergence.diverge_prompt(self.pool, contestants, prompt, settings, store=self.store, ladder=ladder,
                                               on_progress=job.progress, cancel=job.cancel)
            job.run_id = report.run_id
            return report

        return self._start("divergence-prompt", "divergence on a new prompt", work)

    def start_divergence_text(self, contestants: Sequence[Contestant], settings: RunSettings, *,
                              chunk_tokens: int = divergence.DEFAULT_CHUNK_TOKENS, max_chunks: int | None = None,
                              ladder: Ladder | None = None) -> TaskJob:
        def work(job: TaskJob) -> divergence.DivergenceReport:
            report = divergence.diverge_text(self.pool, contestants, settings, chunk_tokens=chunk_tokens,
                                             max_chunks=max_chunks, store=self.store, ladder=ladder,
                                             on_progress=job.progress, cancel=job.cancel)
            job.run_id = report.run_id
            return report

        return self._start("divergence-text", "divergence on the bundled reference text", work)

    # ---- evals ---------------------------------------------------------------------------------
    def start_eval(self, pack: Pack, contestants: Sequence[Contestant], settings: RunSettings | None = None, *,
                   categories: Sequence[str] | None = None, limit: int | None = None,
                   ladder: Ladder | None = None) -> TaskJob:
        evals.select_cases(pack, categories, limit)  # a bad filter is refused now, not in the thread

        def work(job: TaskJob) -> evals.EvalRun:
            def set_run(run_id: int) -> None:
                job.run_id = run_id

            def progress(p: evals.EvalProgress) -> None:
                job.progress(p.done, p.total, p.message)

            return evals.run_eval(self.pool, pack, contestants, settings, store=self.store, ladder=ladder,
                                  categories=categories, limit=limit, on_progress=progress, cancel=job.cancel,
                                  on_run_created=set_run)

        return self._start("eval", f"eval of {pack.name}", work)
