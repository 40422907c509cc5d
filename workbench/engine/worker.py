"""A model worker: one process, one loaded GGUF, driven by the JSON-lines protocol in protocol.py.

This process is the only place that runs llama.cpp inference. It lives on its own because llama.cpp
can segfault, abort or be OOM-killed, and none of that may take the app down. This module is the
process: its private event stream, the request loop (`main`: read, check with protocol.check_request,
dispatch, answer errors) and cancels that reach the request they name. What each op does lives beside it:
loading and prompts in llama_model.py, generation in generation.py, teacher-forced scoring in
teacher_forcing.py, llama.cpp's log in llama_log.py, the process's memory in process_memory.py.

Run as `python -m workbench.engine.worker`.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

# llama_cpp must be imported before numpy: on one CUDA machine (Python 3.12, numpy 2.5) loading
# numpy's libraries first made llama.cpp segfault while initialising the tokenizer.
import llama_cpp  # noqa: F401, I001

from workbench.engine import generation, protocol, teacher_forcing
from workbench.engine.llama_model import Cancelled, LoadedModel


class _Out:
    """Writes protocol events on a private copy of the original stdout, safe from C-level prints."""

    def __init__(self) -> None:
        fd = os.dup(1)
        os.dup2(2, 1)  # anything llama.cpp or Python prints to stdout now lands on stderr
        sys.stdout = sys.stderr
        self._fh: BinaryIO = os.fdopen(fd, "wb", buffering=0)
        self._lock = threading.Lock()

    def send(self, **event: Any) -> None:
        data = protocol.encode(event)
        with self._lock:
            self._fh.write(data)


class Engine(LoadedModel):
    """The ops this worker answers, by the names the request loop dispatches: load, unload and tokenize are
    LoadedModel's; generate and generate_batch are generation.py's; score is teacher_forcing.py's."""

    def generate(self, req: dict[str, Any]) -> None:
        generation.generate(self, req)

    def generate_batch(self, req: dict[str, Any]) -> None:
        generation.generate_batch(self, req)

    def score(self, req: dict[str, Any]) -> None:
        teacher_forcing.score(self, req)


class _Cancels:
    """Which requests a cancel has reached, so that none is lost.

    One Event cleared at the start of every request dropped a cancel that arrived while the request before
    it (a slow load) was running: the parent pressed Stop, and the model generated all of max_tokens anyway
    (issue 13). Now a cancel names its request: the running one stops at its next check, a queued one is
    answered at once without running, a finished (or unknown) one is ignored.
    """

    def __init__(self) -> None:
        self.event = threading.Event()  # what the engine polls: set when the running request is cancelled
        self._lock = threading.Lock()
        self._queued: list[Any] = []  # ids read but not started, in order
        self._cancelled: set[Any] = set()  # queued ids a cancel reached
        self._running: Any = None
        self._busy = False

    def queued(self, rid: Any) -> None:
        """Called by the reader before the request is queued, so a cancel read after it always finds it."""
        with self._lock:
            self._queued.append(rid)

    def cancel(self, rid: Any) -> None:
        """Cancel request `rid`; None (a cancel without an id, as older parents sent) cancels every pending one."""
        with self._lock:
            if rid is None:
                self._cancelled.update(self._queued)
                if self._busy:
                    self.event.set()
            elif self._busy and rid == self._running:
                self.event.set()
            elif rid in self._queued:
                self._cancelled.add(rid)
            # else: already finished (or never sent): nothing to stop

    def start(self, rid: Any) -> bool:
        """Mark `rid` running; False when it was cancelled while queued (then it must not run)."""
        with self._lock:
            if rid in self._queued:
                self._queued.remove(rid)
            if rid in self._cancelled:
                self._cancelled.discard(rid)
                return False
            self._running, self._busy = rid, True
            self.event.clear()  # only here, under the lock: a cancel for this request cannot be lost
            return True

    def finish(self) -> None:
        with self._lock:
            self._running, self._busy = None, False
            self.event.clear()


def _reader(requests: queue.Queue[dict[str, Any] | None], cancels: _Cancels, out: _Out) -> None:
    """Read requests from stdin; `cancel` acts at once, everything else is queued in order."""
    for raw in sys.stdin.buffer:
        try:
            req = protocol.decode(raw)
        except ValueError as exc:
            out.send(event="error", id=None, during="request", message=f"malformed request: {exc}")
            continue
        op = req.get("op")
        if op == "cancel":
            cancels.cancel(req.get("target", req.get("id")))
        elif op not in protocol.OPS:
            out.send(event="error", id=req.get("id"), during="request", message=f"unknown op {op!r}")
        else:
            cancels.queued(req.get("id"))
            requests.put(req)
    requests.put(None)  # stdin closed: the parent is gone


def main(engine_factory: Callable[[_Out, threading.Event], Any] | None = None) -> None:
    """Serve requests until stdin closes or a shutdown comes, then end the process (`_exit_now`).

    `engine_factory`: tests pass a fake engine (no llama.cpp)."""
    out = _Out()
    cancels = _Cancels()
    requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=_reader, args=(requests, cancels, out), daemon=True).start()
    engine = (engine_factory or Engine)(out, cancels.event)
    out.send(event="ready", id=None, pid=os.getpid())
    # an engine answers the ops it has (a test's fake engine may lack some: those get an error, not a crash)
    handlers = {op: getattr(engine, op) for op in ("load", "generate", "generate_batch", "score", "tokenize")
                if hasattr(engine, op)}
    while True:
        req = requests.get()
        if req is None or req.get("op") == "shutdown":
            break
        op, rid = req["op"], req.get("id")
        if not cancels.start(rid):  # cancelled while it waited: answered without running
            out.send(event="error", id=rid, during=op, message="cancelled")
            continue
        try:
            if op == "unload":
                engine.unload(quiet=True)
                out.send(event="unloaded", id=rid)
            elif op not in handlers:
                out.send(event="error", id=rid, during=op, message=f"this worker does not do {op!r}")
            else:
                protocol.check_request(req)  # the parent checks too; anything may write to our stdin
                handlers[op](req)
        except Cancelled:
            out.send(event="error", id=rid, during=op, message="cancelled")
        except Exception as exc:  # reported to the parent; the worker stays up for the next request
            out.send(event="error", id=rid, during=op, message=str(exc) or type(exc).__name__)
        finally:
            cancels.finish()
    engine.unload(quiet=True)
    _exit_now()


def _exit_now() -> None:
    """End the process without Python's finalization.

    Why: the reader thread sits in a read of stdin holding its buffer's lock, and at interpreter shutdown
    Python waits a second for that lock, then aborts ("Fatal Python error: _enter_buffered_busy", SIGABRT):
    every shutdown took ~1.05 s and died of a signal. Nothing here needs finalizing (events are written
    unbuffered; the model is unloaded), so flush what Python may still hold and leave at once.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
