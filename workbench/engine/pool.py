"""The parent's side of the workers: start them, talk to them, notice when they die.

One worker process per contestant (a GGUF file plus load settings). Workers stay warm between
prompts while their predicted memory fits the budget (memory_budget.py: least recently used idle
workers are shut down to make room; a model too big for the budget alone is refused with DoesNotFit);
a worker whose load settings changed is reloaded; a dead worker is reported as an error for its own
request and replaced on the next one. The pool also holds the machine-wide run queue,
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
from dataclasses import dataclass, field
from typing import Any, NoReturn

from workbench.core import hardware
from workbench.core.hardware import Gpu
from workbench.core.text_units import bytes_in_words
from workbench.engine import memory_budget, protocol

EventCallback = Callable[[dict[str, Any]], None]

# Load and generate have no natural upper bound (a big model on a slow disk); these only guard
# against a worker that hangs without dying. Generous on purpose.
LOAD_TIMEOUT_S = 1800.0
REQUEST_TIMEOUT_S = 3600.0
# Stop sends the worker a cancel message; a worker busy where it never reads it (a chat template that loops for
# minutes, llama.cpp stuck in a kernel) is killed this long after the cancel was sent. A healthy worker answers
# within one decode step, far below this.
CANCEL_GRACE_S = 5.0
# How much of a worker's stderr an error message carries (its last lines: llama.cpp's warnings and errors, an
# abort's message, a Python traceback). Untrusted text: whoever renders it escapes it.
STDERR_TAIL_BYTES = 2048
STDERR_TAIL_LINES = 8


# Everything that decides how a model is loaded (a change means a reload) is the load request itself.
LoadSettings = protocol.Load


def with_output(message: str, output: str) -> str:
    """`message` plus the worker's last stderr lines, when it wrote any: why it died or failed, in its words."""
    return f"{message}; the worker's last output: {output}" if output else message


class WorkerDied(RuntimeError):
    """The worker process ended while a request was in flight.

    `output` is the tail of what it wrote to stderr meanwhile (untrusted text, one line, maybe empty).
    """

    def __init__(self, reason: str, signal_name: str | None, during: str | None, output: str = "") -> None:
        super().__init__(with_output(reason, output))
        self.reason = reason
        self.signal_name = signal_name
        self.during = during
        self.output = output

    def describe(self, during: str | None = None) -> str:
        """"<reason> during <what>", with the worker's last output: the line a result or report shows."""
        return with_output(f"{self.reason} during {during or self.during or 'start'}", self.output)


class WorkerKilledOnCancel(WorkerDied):
    """The worker did not answer a cancel within the grace period, so it was killed (Stop, not a crash)."""

    def __init__(self, grace_s: float, during: str | None) -> None:
        super().__init__(f"stopped: the worker did not answer the cancel within {grace_s:g} s and was killed",
                         None, during)


class WorkerError(RuntimeError):
    """The worker answered a request with an error event (it is still alive)."""


class WorkerCancelled(WorkerError):
    """The request was cancelled before it produced a result (Stop before it started, or while it was queued)."""

    def __init__(self) -> None:
        super().__init__("cancelled")


class DoesNotFit(WorkerError):
    """The model's predicted memory does not fit the warm-model budget: refused before loading, not OOM-killed."""


# Workers run llama.cpp and nothing else: they never need a credential, so they do not inherit one (a crash dump,
# a core file or a library reading its environment cannot leak it).
SECRET_ENV_NAMES = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACEHUB_API_TOKEN", "API_KEY", "TOKEN", "SECRET"}
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_ACCESS_KEY", "_SECRET_KEY")
_named_secrets: set[str] = set()  # variables endpoints read their key from (any name): `keep_from_workers`
_named_lock = threading.Lock()


def keep_from_workers(name: str) -> None:
    """Never hand environment variable `name` to a worker (an endpoint's key_env, whatever it is called)."""
    with _named_lock:
        _named_secrets.add(name)


def is_secret_env(name: str) -> bool:
    upper = name.upper()
    with _named_lock:
        named = name in _named_secrets
    return named or upper in SECRET_ENV_NAMES or upper.endswith(SECRET_ENV_SUFFIXES)


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker starts with: the app's, plus `extra`, less every credential."""
    return {k: v for k, v in {**os.environ, **(extra or {})}.items() if not is_secret_env(k)}


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
    """One running `python -m workbench.engine.worker`, with its events read on a background thread.

    `command` replaces the worker's command line: tests start a fake worker that speaks the same protocol.
    """

    def __init__(self, env: dict[str, str] | None = None, command: list[str] | None = None) -> None:
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "workbench.engine.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env=worker_env(env),  # without HF_TOKEN, API keys and the like
            start_new_session=True,  # a Ctrl-C in the app's terminal is for the app, not each worker
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.settings: LoadSettings | None = None
        self.decodes = 0  # generate and score requests finished since the last load (the crash fallback reads it)
        self._stderr_mark = 0  # where the stderr of the request in flight starts
        self.last_loaded: dict[str, Any] = {}  # the `loaded` event of the model now loaded
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)  # request ids: unique and increasing for this worker
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
        except (BrokenPipeError, OSError, ValueError):  # ValueError: stdin closed by ask_to_exit
            pass  # the reader will see EOF and report the death

    def _next_event(self, timeout: float, during: str | None) -> dict[str, Any]:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise WorkerDied(f"worker did not answer within {timeout:.0f} s and was stopped", None, during) from None
        if event is None:
            self._died(during)
        return event

    def _died(self, during: str | None) -> NoReturn:
        """The worker's stdout closed: it exited. Raise the death report (exit reason, signal, stderr tail)."""
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        reason, sig = describe_exit(self.proc.returncode)
        raise WorkerDied(reason, sig, during, self.stderr_tail())

    def stderr_tail(self, since: int | None = None) -> str:
        """The last lines the worker wrote to stderr since the request in flight began (or `since`, a byte
        offset), bounded to STDERR_TAIL_BYTES and STDERR_TAIL_LINES, control characters dropped, joined by " | "."""
        start = self._stderr_mark if since is None else since
        try:  # pread, not seek: the worker writes through the same open file, so moving its offset would clobber
            fd = self.stderr_file.fileno()
            size = os.fstat(fd).st_size
            offset = max(start, size - STDERR_TAIL_BYTES)
            raw = os.pread(fd, size - offset, offset) if size > offset else b""
        except (OSError, ValueError):  # closed: the worker was shut down
            return ""
        lines = ["".join(ch for ch in line if ch.isprintable()).strip()
                 for line in raw.decode("utf-8", "replace").splitlines()]
        return " | ".join([line for line in lines if line][-STDERR_TAIL_LINES:])

    def _mark_stderr(self) -> None:
        try:
            self._stderr_mark = os.fstat(self.stderr_file.fileno()).st_size
        except (OSError, ValueError):
            pass

    def call(
        self,
        typed: protocol.Request | dict[str, Any],
        terminal: set[str],
        on_event: EventCallback | None = None,
        cancel: threading.Event | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send one request and pass its events to `on_event` until a terminal one arrives.

        `typed`: a protocol request (a raw wire dict is taken too: tests probe the worker's own checks with one).
        The request gets a fresh id (any `id` in it is replaced); events of other ids are stale (a late
        "cancelled" or the tail of an abandoned generate) and dropped, never taken for this request's.
        Raises WorkerError for an error event (WorkerCancelled for "cancelled") and WorkerDied when the process
        ends. `cancel` already set: nothing is sent and WorkerCancelled raised. Set later: a cancel naming this
        request is sent once; a worker that has not finished `CANCEL_GRACE_S` later is killed and
        WorkerKilledOnCancel raised (the pool starts a fresh worker on the next request).
        """
        rid = next(self._ids)
        request = typed.to_wire(rid) if isinstance(typed, protocol.Request) else {**typed, "id": rid}
        try:
            protocol.check_request(request)
        except protocol.BadRequest as exc:  # refused here: llama.cpp would crash on it or answer wrongly
            raise WorkerError(f"bad request: {exc}") from None
        if cancel is not None and cancel.is_set():
            raise WorkerCancelled()  # Stop came first (say, during the load): do not start what it stops
        self._mark_stderr()
        self.send(request)
        try:
            event = self._await(request, rid, terminal, on_event, cancel, timeout)
            if request["op"] in ("generate", "generate_batch", "score"):
                self.decodes += 1
            return event
        except WorkerError:
            raise  # the worker answered: the request is over
        except BaseException:
            if self.alive():  # abandoned (a callback raised): stop it; what it still sends is stale
                self.send(protocol.Cancel(rid).to_wire())
            raise

    def _await(self, request: dict[str, Any], rid: int, terminal: set[str], on_event: EventCallback | None,
               cancel: threading.Event | None, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        cancel_sent_at: float | None = None
        while True:
            if cancel is not None and cancel.is_set() and cancel_sent_at is None:
                self.send(protocol.Cancel(rid).to_wire())
                cancel_sent_at = time.monotonic()
            grace = CANCEL_GRACE_S  # read each time: tests may shorten it
            if cancel_sent_at is not None and time.monotonic() - cancel_sent_at >= grace:
                self.kill()
                raise WorkerKilledOnCancel(grace, request["op"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerDied(f"worker did not finish within {timeout:.0f} s and was stopped", None, request["op"],
                                 self.stderr_tail())
            try:
                event = self.events.get(timeout=min(0.05, remaining) if cancel is not None else remaining)
            except queue.Empty:
                continue
            if event is None:
                self._died(request["op"])
            kind = event.get("event")
            if event.get("id") != rid and not (kind == "error" and event.get("id") is None):
                continue  # stale: an earlier request's (an id-less error is a malformed request's: ours)
            if on_event is not None:
                on_event(event)
            if kind == "error":
                message = event.get("message", "unknown worker error")
                raise WorkerCancelled() if message == "cancelled" else WorkerError(message)
            if kind in terminal:
                return event

    def load(self, settings: LoadSettings, on_event: EventCallback | None = None) -> dict[str, Any]:
        """Load `settings`' model; a refused load's error carries the worker's last stderr lines."""
        self.settings = None  # the worker drops its current model first, even if this load fails
        try:
            event = self.call(settings, {"loaded"}, on_event, timeout=LOAD_TIMEOUT_S)
        except WorkerCancelled:
            raise
        except WorkerError as exc:
            output = self.stderr_tail()
            if not output or output == str(exc):
                raise
            raise WorkerError(with_output(str(exc), output)) from None
        self.settings = settings
        self.decodes = 0
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
        self.ask_to_exit()
        self.wait_exit(timeout)

    def ask_to_exit(self) -> None:
        """Send `shutdown` and close the worker's stdin (its reader then ends too); `wait_exit` waits for it.

        Two steps so that a pool asks all its workers first and waits once, not a worker after another."""
        if self.alive():
            self.send(protocol.Shutdown().to_wire(next(self._ids)))
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass

    def wait_exit(self, timeout: float = 5.0) -> None:
        """Wait for the worker to end (killed after `timeout` seconds), then close our ends of its streams."""
        if self.alive():
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
    """A machine-wide first-come-first-served queue: one run uses the models at a time; a run that had to wait
    starts `handover_s` after the one before it ended, so that run's page drawing its results is not timed.

    `position(ticket)` lets a waiting session show "2nd in line".
    """

    HANDOVER_S = 1.5  # measured: docs/benchmarks.md, "Many viewers"

    def __init__(self, handover_s: float = HANDOVER_S) -> None:
        self.handover_s = handover_s
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
            waited = False
            with self._cond:
                while self._tickets[0] != ticket:
                    waited = True
                    if on_wait is not None:
                        on_wait(self._tickets.index(ticket))
                    if cancel is not None and cancel.is_set():
                        raise InterruptedError("cancelled while waiting in the queue")
                    self._cond.wait(timeout=0.5)
            if waited and self.handover_s > 0:
                # the run before ours just ended and its page is drawing the results (diffs, charts) now: on a
                # small machine that work would land in our first contestant's timed window
                time.sleep(self.handover_s)
            yield ticket
        finally:
            with self._cond:
                self._tickets.remove(ticket)
                self._cond.notify_all()


@dataclass
class _Slot:
    """One contestant's worker and what the budget knows about it."""

    worker: WorkerProcess | None = None
    need: memory_budget.Need = field(default_factory=memory_budget.Need)  # predicted for the model loaded
    last_used: float = 0.0  # time.time() of the last lease, for the UI
    order: int = 0  # lease counter: the LRU order (time can tie)
    in_use: int = 0  # leases open now: never evicted while > 0
    lock: threading.RLock = field(default_factory=threading.RLock)  # one request at a time per worker

    def live(self) -> bool:
        return self.worker is not None and self.worker.alive()

    def holds_memory(self) -> bool:
        """Live, or reserving memory for a worker about to start (a dead worker holds nothing)."""
        return self.worker is None or self.worker.alive()


class WorkerPool:
    """Warm workers keyed by contestant, kept within a memory budget, plus the run queue.

    Thread-safe; one per app process. See memory_budget.py for the budget rule and eviction.
    """

    def __init__(self, env: dict[str, str] | None = None, worker_command: list[str] | None = None) -> None:
        self._env = env
        self._worker_command = worker_command  # None: the real worker (tests pass a fake one)
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._order = itertools.count(1)
        self._budget_override: int | None = None
        self.queue = RunQueue()

    # ---- memory ------------------------------------------------------------------------------------------------
    def set_memory_budget(self, ram_bytes: int | None) -> None:
        """Cap the RAM warm workers may hold (a page setting); None: back to WORKBENCH_MEMORY_BUDGET or automatic."""
        if ram_bytes is not None and ram_bytes <= 0:
            raise ValueError("the memory budget must be more than zero bytes (None for automatic)")
        self._budget_override = None if ram_bytes is None else int(ram_bytes)
        self.trim()

    def trim(self, keep: str | None = None, budget: memory_budget.MemoryBudget | None = None) -> list[str]:
        """Shut down idle workers, least recently used first, until the warm ones fit the budget now.

        The budget moves: a person lowers it, or other programs take RAM (the automatic budget follows free
        RAM). Called when the budget is set and before every lease, so the pool never stays over it for
        longer than the requests in flight. `keep` is left for the caller, who checks it against the budget
        alone. `budget`: the one the caller already computed. Returns the keys shut down.
        """
        if budget is None:
            try:
                budget = self.budget()
            except ValueError:
                return []  # a malformed WORKBENCH_MEMORY_BUDGET: the next request reports it
        with self._lock:
            held = [memory_budget.Held(k, s.need, s.order, s.in_use > 0 or k == keep)
                    for k, s in self._slots.items() if s.holds_memory()]
            victims = memory_budget.plan_evictions(memory_budget.Need(), held, budget)
            if victims is None:  # still over with every idle worker gone: shut them all down anyway
                victims = [h.key for h in held if not h.in_use]
            gone = [self._slots.pop(k).worker for k in victims]
        for w in gone:
            if w is not None:
                w.shutdown()
        return victims

    def memory_budget_override(self) -> int | None:
        """The RAM budget `set_memory_budget` set, or None (WORKBENCH_MEMORY_BUDGET or automatic)."""
        return self._budget_override

    def memory_in_use(self) -> memory_budget.Need:
        """Predicted memory of the live workers together."""
        with self._lock:
            return memory_budget.total([s.need for s in self._slots.values() if s.holds_memory()])

    def budget(self, gpus: list[Gpu] | None = None) -> memory_budget.MemoryBudget:
        """The budget now (raises ValueError for a malformed WORKBENCH_MEMORY_BUDGET)."""
        return memory_budget.compute_budget(self.memory_in_use(), self._budget_override, gpus=gpus)

    def gpus_as_if_alone(self, gpus: list[Gpu] | None = None) -> list[Gpu]:
        """This machine's GPUs (or `gpus`) with our warm workers' VRAM counted as free: fair offload sizing."""
        return memory_budget.gpus_as_if_alone(hardware.gpus() if gpus is None else gpus, self.memory_in_use())

    def warm_models(self) -> list[dict[str, Any]]:
        """The live workers for the UI, most recently used first."""
        with self._lock:
            rows: list[dict[str, Any]] = [{"key": k, "pid": s.worker.pid,
                     "file": os.path.basename(s.worker.settings.model_path if s.worker.settings else k.split("#")[0]),
                     "type_k": (s.worker.settings.type_k if s.worker.settings else None) or "f16",
                     "type_v": (s.worker.settings.type_v if s.worker.settings else None) or "f16",
                     "ram_bytes": s.need.ram_bytes, "vram_bytes": sum(s.need.vram_bytes.values()),
                     "vram_by_gpu": dict(s.need.vram_bytes), "last_used": s.last_used, "in_use": s.in_use > 0,
                     "n_ctx": s.worker.settings.n_ctx if s.worker.settings else None, "order": s.order}
                    for k, s in self._slots.items() if s.live() and s.worker is not None]
        return [{k: v for k, v in r.items() if k != "order"} for r in sorted(rows, key=lambda r: -r["order"])]

    def _make_room(self, key: str, slot: _Slot, settings: LoadSettings) -> None:
        """Predict `settings`' memory, refuse it if it cannot fit even alone, else evict LRU idle workers."""
        try:
            gpus = self.gpus_as_if_alone() if settings.n_gpu_layers else []
            prediction = memory_budget.predict_load(settings.model_path, settings.n_ctx * (settings.n_seq or 1),
                                                    settings.n_gpu_layers,
                                                    settings.use_extra_bufts, gpus,
                                                    kv_type_k=settings.type_k or "f16", kv_type_v=settings.type_v)
            budget = self.budget()
        except (OSError, ValueError) as exc:  # an unreadable header, a malformed WORKBENCH_MEMORY_BUDGET
            raise WorkerError(" ".join(str(exc).split())) from None
        need = memory_budget.Need.of(prediction)
        if not budget.fits(need):
            raise DoesNotFit(memory_budget.does_not_fit_message(prediction, need, budget))
        with self._lock:
            held = [memory_budget.Held(k, s.need, s.order, s.in_use > 0)
                    for k, s in self._slots.items() if k != key and s.holds_memory()]
            victims = memory_budget.plan_evictions(need, held, budget)
            if victims is None:
                busy = ", ".join(os.path.basename(h.key) for h in held if h.in_use)
                raise DoesNotFit(f"needs about {bytes_in_words(need.ram_bytes)} of RAM"
                                 f"{' and GPU memory' if need.vram_bytes else ''}; the rest of the warm-model budget "
                                 f"({bytes_in_words(budget.ram_bytes)} of RAM, {budget.source}) is held by models "
                                 f"in use right now ({busy}) — try again when they finish, or raise the budget")
            gone = [self._slots.pop(k).worker for k in victims]
            slot.need = need  # reserved before the load starts, so a concurrent load counts it
        for w in gone:
            if w is not None:
                w.shutdown()

    # ---- workers -----------------------------------------------------------------------------------------------
    @contextmanager
    def lease(
        self, key: str, settings: LoadSettings, on_event: EventCallback | None = None
    ) -> Iterator[tuple[WorkerProcess, dict[str, Any] | None]]:
        """`(worker, loaded)` with `settings` loaded, held in use (never evicted) until the block ends.

        `loaded` is the `loaded` event when it had to (re)load, else None. Raises DoesNotFit when the model
        cannot fit the memory budget, WorkerError/WorkerDied when the worker fails.
        """
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
            slot.in_use += 1
            slot.order, slot.last_used = next(self._order), time.time()
        try:
            with slot.lock:
                loaded = self._ensure(key, slot, settings, on_event)
                assert slot.worker is not None
                yield slot.worker, loaded
        finally:
            with self._lock:
                slot.in_use -= 1
                slot.last_used = time.time()
                if slot.worker is None and slot.in_use == 0 and self._slots.get(key) is slot:
                    del self._slots[key]  # a load refused before any worker started

    def _ensure(self, key: str, slot: _Slot, settings: LoadSettings, on_event: EventCallback | None) -> dict[str, Any] | None:
        if slot.worker is not None and not slot.worker.alive():
            slot.worker.shutdown()
            slot.worker, slot.need = None, memory_budget.Need()
        try:
            budget = self.budget()  # once per lease: it reads free RAM and asks NVML
        except ValueError as exc:  # a malformed WORKBENCH_MEMORY_BUDGET: this request's error
            raise WorkerError(" ".join(str(exc).split())) from None
        self.trim(keep=key, budget=budget)
        if slot.worker is not None and slot.worker.settings == settings:
            if budget.fits(slot.need):
                return None
            slot.worker.shutdown()  # warm, but the budget was lowered below it since it loaded
            slot.worker, slot.need = None, memory_budget.Need()
        self._make_room(key, slot, settings)
        try:
            if slot.worker is None:
                slot.worker = WorkerProcess(self._env, self._worker_command)
            return slot.worker.load(settings, on_event)
        except BaseException:
            slot.need = memory_budget.Need()  # nothing (or a dead process) holds that memory now
            raise

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {k: s.worker.pid for k, s in self._slots.items() if s.worker is not None and s.worker.alive()}

    def shutdown(self) -> None:
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
        workers = [s.worker for s in slots if s.worker is not None]
        for w in workers:
            w.ask_to_exit()
        for w in workers:
            w.wait_exit()
