"""Background jobs: work on its own thread that a page can follow, stop, and find again after a page switch.

Every long task the app starts (a comparison, a divergence measurement, an eval, a download, a ladder build) is
a `Job`: its work function receives the job, reads `job.cancel` (an Event) and reports progress as data
(`job.report(done=…, total=…, message=…)`), never as text for someone to parse. How it ended is data too:
`status` is "running", "done", "failed" or "cancelled"; `result` is what the work returned; `failure` is one
line. An exception a user can act on (a type in `expected`) keeps its own message and no traceback; any other
exception is a bug of the job: its one line names the type and its traceback goes to the server log.

`snapshot()` is a plain dict that is cheap to take and equal between two calls when nothing changed, so a page
can poll it and redraw only on a change. A `JobRegistry` keeps jobs by id (a browser session keeps only the id)
and forgets finished jobs once they are both old and not among the newest few; a running job is never dropped.
Imports nothing from the workbench.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"

J = TypeVar("J", bound="Job")


class Cancelled(Exception):
    """Raised by a work function that stopped because `cancel` was set; its message (if any) says what was kept."""


@dataclass(frozen=True)
class Progress:
    """How far a job got: `done` of `total` units (files, bytes, requests…), the phase it is in, one line for
    people, and any job-specific data (`detail`, e.g. per-file bytes of a download)."""

    done: float = 0
    total: float = 0
    phase: str = ""
    message: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return min(1.0, max(0.0, self.done / self.total)) if self.total else 0.0


def one_line(exc: BaseException) -> str:
    """An exception's message as one line (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Job:
    """One background task. Subclasses add what their pages show (`_snapshot_extra`) and how they fail.

    `expected`: exception types that are a user's or the outside world's doing (a wrong path, a refused
    download): the failure is their message. `cancelled_by`: exception types that mean "stopped on request"
    (besides `Cancelled`). `failure_prefix` starts the line of an unexpected failure ("Download failed: ").
    """

    kind = "job"
    expected: tuple[type[BaseException], ...] = ()
    cancelled_by: tuple[type[BaseException], ...] = ()
    failure_prefix = ""

    def __init__(self, work: Callable[[Any], Any], *, title: str = "", kind: str | None = None,
                 progress: Progress | None = None) -> None:
        self.id = 0  # set by JobRegistry.start; 0 for a job started on its own
        self.kind = kind or self.kind
        self.title = title
        self.cancel = threading.Event()
        self.status = RUNNING
        self.result: Any = None
        self.failure: str | None = None
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.thread: threading.Thread | None = None
        self._work = work
        self._progress = progress or Progress(message="queued")
        self._lock = threading.RLock()

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self: J) -> J:
        """Run the work on a daemon thread; returns the job."""
        self.thread = threading.Thread(target=self._run, name=f"{self.kind}-{self.id or id(self)}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the work to stop; it ends when it next looks at `cancel`."""
        self.cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job to end; True when it has."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.finished

    @property
    def finished(self) -> bool:
        return self.status != RUNNING

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED

    def _run(self) -> None:
        status, failure, result, message = DONE, None, None, None
        stopped: tuple[type[BaseException], ...] = (Cancelled, *self.cancelled_by)
        try:
            result = self._work(self)
        except stopped as exc:
            status = CANCELLED
            message = one_line(exc) if isinstance(exc, Cancelled) and str(exc).strip() else "stopped"
        except self.expected as exc:
            status, failure = FAILED, one_line(exc)
        except BaseException as exc:  # a bug of the job: one line for the page, the traceback for the log
            status, failure = FAILED, f"{self.failure_prefix}{type(exc).__name__}: {one_line(exc)}"
            traceback.print_exc()
        with self._lock:
            self.result, self.failure = result, failure
            if status == DONE and self._progress.total:
                self._progress = replace(self._progress, done=self._progress.total)
            self._progress = replace(self._progress, message=message or
                                     {DONE: "done", FAILED: "failed", CANCELLED: "stopped"}[status])
            self.finished_at = time.time()
            self.status = status  # last: a reader that sees "finished" sees the result too

    # ---- progress ----------------------------------------------------------------------------------
    def report(self, done: float | None = None, total: float | None = None, *, phase: str | None = None,
               message: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
        """Update the fields given; the others keep their values."""
        changes: dict[str, Any] = {k: v for k, v in (("done", done), ("total", total), ("phase", phase), ("message", message),
                                     ("detail", detail)) if v is not None}
        with self._lock:
            self._progress = replace(self._progress, **changes)

    def on_progress(self, done: int, total: int, message: str) -> None:
        """`report` in the (done, total, message) shape the library's progress callbacks use."""
        self.report(done, total, message=message)

    @property
    def progress(self) -> Progress:
        with self._lock:
            return self._progress

    # ---- reading -----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain data for a page: equal between two calls when nothing but the clock moved (see `elapsed_s`)."""
        with self._lock:
            p = self._progress
            end = self.finished_at if self.finished_at is not None else time.time()
            snap = {"id": self.id, "kind": self.kind, "title": self.title, "status": self.status,
                    "finished": self.finished, "cancelled": self.cancelled, "failure": self.failure,
                    "cancelling": self.cancel.is_set() and not self.finished,
                    "done": p.done, "total": p.total, "fraction": p.fraction, "phase": p.phase, "message": p.message,
                    "detail": dict(p.detail), "elapsed_s": end - self.started_at}
            snap.update(self._snapshot_extra())
            return snap

    def _snapshot_extra(self) -> dict[str, Any]:
        """What a subclass adds to the snapshot (called under the job's lock)."""
        return {}


class JobRegistry:
    """Process-wide: starts jobs, finds them by id, and forgets finished ones that nobody is likely to ask for.

    A finished job is kept while it is among the newest `keep_finished` finished jobs or ended less than
    `keep_for_s` ago; a running job is always kept.
    """

    def __init__(self, keep_finished: int = 20, keep_for_s: float = 3600.0) -> None:
        self.keep_finished, self.keep_for_s = keep_finished, keep_for_s
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, job: J) -> J:
        """Give `job` an id, keep it, and start it."""
        with self._lock:
            job.id = next(self._ids)
            self._jobs[job.id] = job
        self.prune()
        return job.start()

    def get(self, job_id: int | None, of: type[J] = Job) -> J | None:  # type: ignore[assignment]
        """The job with this id when it is still kept and is an `of`; else None."""
        with self._lock:
            job = self._jobs.get(job_id) if job_id is not None else None
        return job if isinstance(job, of) else None

    def active(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if not j.finished]

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def prune(self, now: float | None = None) -> list[int]:
        """Forget finished jobs beyond the newest `keep_finished` that ended over `keep_for_s` ago; their ids."""
        now = time.time() if now is None else now
        with self._lock:
            ended = sorted((j for j in self._jobs.values() if j.finished and j.finished_at is not None),
                           key=lambda j: j.finished_at or 0.0, reverse=True)
            gone = [j.id for j in ended[self.keep_finished:] if now - (j.finished_at or now) > self.keep_for_s]
            for job_id in gone:
                del self._jobs[job_id]
            return gone
