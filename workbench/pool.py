"""The parent's side of the workers: start them, talk to them, notice when they die.

One worker process per contestant (a GGUF file plus load settings). Workers stay warm between
prompts; a worker whose load settings changed is reloaded; a dead worker is reported as an error
for its own request and replaced on the next one. The pool also holds the machine-wide run queue,
so runs from several app sessions take turns instead of fighting over cores and memory bandwidth.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from workbench import protocol

EventCallback = Callable[[dict[str, Any]], None]

# Load and generate have no natural upper bound (a big model on a slow disk); these only guard
# against a worker that hangs without dying. Generous on purpose.
LOAD_TIMEOUT_S = 1800.0
REQUEST_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class LoadSettings:
    """Everything that decides how a model is loaded; a change means a reload."""

    model_path: str
    n_ctx: int = 2048
    n_threads: int = 1
    n_gpu_layers: int = 0
    use_extra_bufts: bool | None = None  # None: llama.cpp's default

    def request(self) -> dict[str, Any]:
        return {"op": "load", **asdict(self)}


class WorkerDied(RuntimeError):
    """The worker process ended while a request was in flight."""

    def __init__(self, reason: str, signal_name: str | None, during: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signal_name = signal_name
        self.during = during


class WorkerError(RuntimeError):
    """The worker answered a request with an error event (it is still alive)."""


def describe_exit(returncode: int | None) -> tuple[str, str | None]:
    """A human reason for a worker's exit status, and the signal's name if a signal killed it."""
    if returncode is None:
        return "worker stopped answering", None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = {
            "SIGKILL": " (killed; the kernel's out-of-memory killer sends this when memory runs out)",
            "SIGSEGV": " (segmentation fault inside llama.cpp)",
            "SIGABRT": " (llama.cpp aborted)",
            "SIGBUS": " (bus error: the model file may have changed or be on a failing disk)",
        }.get(name, "")
        return f"worker killed by {name}{hint}", name
    return f"worker exited with code {returncode}", None


class WorkerProcess:
    """One running `python -m workbench.worker`, with its events read on a background thread."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # a Ctrl-C in the app's terminal is for the app, not each worker
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.settings: LoadSettings | None = None
        self.generations = 0  # generate requests served since the last load
        self.last_loaded: dict[str, Any] = {}  # the `loaded` event of the model now loaded
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read_events, daemon=True).start()
        ready = self._next_event(timeout=120.0, during="start")
        if ready.get("event") != "ready":
            raise WorkerError(f"unexpected first event from worker: {ready}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(protocol.decode(line))
            except ValueError:
                continue  # not a protocol line; the worker's stdout is reserved, so ignore it
        self.events.put(None)

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            with self._send_lock:
                self.proc.stdin.write(protocol.encode(request))
                self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader will see EOF and report the death

    def _next_event(self, timeout: float, during: str | None) -> dict[str, Any]:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise WorkerDied(f"worker did not answer within {timeout:.0f} s and was stopped", None, during) from None
        if event is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            reason, sig = describe_exit(self.proc.returncode)
            raise WorkerDied(reason, sig, during)
        return event

    def stderr_tail(self, n: int = 2000) -> str:
        self.stderr_file.seek(0, os.SEEK_END)
        size = self.stderr_file.tell()
        self.stderr_file.seek(max(0, size - n))
        return self.stderr_file.read().decode("utf-8", "replace")

    def call(
        self,
        request: dict[str, Any],
        terminal: set[str],
        on_event: EventCallback | None = None,
        cancel: threading.Event | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send one request and pass its events to `on_event` until a terminal one arrives.

        Raises WorkerError for an error event and WorkerDied when the process ends.
        `cancel`, when set, is forwarded to the worker once.
        """
        self.send(request)
        deadline = time.monotonic() + timeout
        cancel_sent = False
        while True:
            if cancel is not None and cancel.is_set() and not cancel_sent:
                self.send({"op": "cancel"})
                cancel_sent = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerDied(f"worker did not finish within {timeout:.0f} s and was stopped", None, request["op"])
            try:
                event = self.events.get(timeout=min(0.05, remaining) if cancel is not None else remaining)
            except queue.Empty:
                continue
            if event is None:
                self.events.put(None)  # let _next_event produce the death report
                self._next_event(timeout=1.0, during=request["op"])
            if on_event is not None:
                on_event(event)
            kind = event.get("event")
            if kind == "error":
                raise WorkerError(event.get("message", "unknown worker error"))
            if kind in terminal:
                return event

    def load(self, settings: LoadSettings, on_event: EventCallback | None = None) -> dict[str, Any]:
        self.settings = None  # the worker drops its current model first, even if this load fails
        event = self.call(settings.request(), {"loaded"}, on_event, timeout=LOAD_TIMEOUT_S)
        self.settings = settings
        self.generations = 0
        self.last_loaded = event
        return event

    def kill(self) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def shutdown(self, timeout: float = 5.0) -> None:
        if self.alive():
            self.send({"op": "shutdown"})
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self.stderr_file.close()


class RunQueue:
    """A machine-wide first-come-first-served queue: one run uses the models at a time.

    `position(ticket)` lets a waiting session show "2nd in line".
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._tickets: list[int] = []
        self._counter = itertools.count(1)

    def position(self, ticket: int) -> int:
        """0 when the ticket holds the machine, 1 when next, and so on; -1 when unknown."""
        with self._cond:
            return self._tickets.index(ticket) if ticket in self._tickets else -1

    @contextmanager
    def turn(self, on_wait: Callable[[int], None] | None = None, cancel: threading.Event | None = None) -> Iterator[int]:
        with self._cond:
            ticket = next(self._counter)
            self._tickets.append(ticket)
        try:
            with self._cond:
                while self._tickets[0] != ticket:
                    if on_wait is not None:
                        on_wait(self._tickets.index(ticket))
                    if cancel is not None and cancel.is_set():
                        raise InterruptedError("cancelled while waiting in the queue")
                    self._cond.wait(timeout=0.5)
            yield ticket
        finally:
            with self._cond:
                self._tickets.remove(ticket)
                self._cond.notify_all()


class WorkerPool:
    """Warm workers keyed by contestant, plus the run queue. Thread-safe; one per app process."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = env
        self._workers: dict[str, WorkerProcess] = {}
        self._lock = threading.Lock()
        self.queue = RunQueue()

    def worker(self, key: str) -> WorkerProcess:
        """The live worker for `key`, starting a fresh one if there is none or it died."""
        with self._lock:
            w = self._workers.get(key)
            if w is not None and not w.alive():
                w.shutdown()
                w = None
            if w is None:
                w = WorkerProcess(self._env)
                self._workers[key] = w
            return w

    def ensure_loaded(
        self, key: str, settings: LoadSettings, on_event: EventCallback | None = None
    ) -> tuple[WorkerProcess, dict[str, Any] | None]:
        """A worker with `settings` loaded; the `loaded` event when it had to (re)load, else None."""
        w = self.worker(key)
        if w.settings == settings:
            return w, None
        return w, w.load(settings, on_event)

    def discard(self, key: str) -> None:
        with self._lock:
            w = self._workers.pop(key, None)
        if w is not None:
            w.kill()
            w.shutdown()

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._workers)

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {k: w.pid for k, w in self._workers.items() if w.alive()}

    def shutdown(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for w in workers:
            w.shutdown()
