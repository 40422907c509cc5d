"""Checks run with a time limit, in a helper process, so a hostile output cannot hang or crash a run.

A pack's regex can backtrack catastrophically on model output (the starter pack's old
`^\\W*\\S+(?:\\s+\\S+){0,14}\\W*$` took 15 s on 2,000 "!" and 16 words), and Python's `re` holds
the GIL while it matches, so a thread cannot stop it. Each check is therefore sent to one
long-lived `python -m workbench.quality.check_runner` process (started on first use, reused; a round
trip costs well under a millisecond) and given CHECK_TIMEOUT_S. A check that runs over kills the
helper (the next check starts a fresh one) and becomes an error verdict; any exception inside a
checker (e.g. RecursionError on 1,000 nested `[` in a JSON check) becomes an error verdict for
that case only.

Protocol: length-prefixed pickles both ways ((checker, output) in, Verdict out). Both ends are
this package; model output only ever travels as a str inside the pickle.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from workbench.quality.checkers import Checker, Verdict

CHECK_TIMEOUT_S = 2.0  # wall-clock limit for one check of one output
_HEADER = struct.Struct("!I")


def error_verdict(detail: str) -> Verdict:
    return Verdict(False, detail, error=True)


def _judge(checker: Any, output: str) -> Verdict:
    """Run one check in this process; an exception becomes an error verdict with a plain detail."""
    try:
        verdict = checker.check(output)
    except RecursionError:
        return error_verdict(f"checker failed: the output nests too deeply to check ({len(output):,} characters)")
    except Exception as exc:  # a checker bug or a hostile output: that case only
        return error_verdict(f"checker failed: {type(exc).__name__}: {str(exc)[:200]}")
    if not isinstance(verdict, Verdict):
        return error_verdict(f"checker returned {type(verdict).__name__}, not a verdict")
    return verdict


def _timeout_detail(timeout_s: float, output: str) -> str:
    return f"checker timed out after {timeout_s:g} s on a {len(output):,}-character output"


class _Helper:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "workbench.quality.check_runner"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both opened with PIPE above
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close() if f else None
            except OSError:
                pass

    def _read_exact(self, n: int, deadline: float) -> bytes | None:
        fd = self.stdout.fileno()
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError("check helper exited")
            buf += chunk
        return buf

    def ask(self, checker: Any, output: str, timeout_s: float) -> Verdict | None:
        """The verdict, or None when the deadline passed."""
        data = pickle.dumps((checker, output), protocol=pickle.HIGHEST_PROTOCOL)
        self.stdin.write(_HEADER.pack(len(data)) + data)
        self.stdin.flush()
        deadline = time.monotonic() + timeout_s
        head = self._read_exact(_HEADER.size, deadline)
        if head is None:
            return None
        body = self._read_exact(_HEADER.unpack(head)[0], deadline + 1.0)  # the answer is already on its way
        if body is None:
            return None
        return pickle.loads(body)


_lock = threading.Lock()
_helper: _Helper | None = None


def run_check(checker: Checker, output: str, timeout_s: float | None = None) -> Verdict:
    """`checker.check(output)` within `timeout_s` (default CHECK_TIMEOUT_S); never raises, never hangs.

    Overruns and exceptions come back as `Verdict(passed=False, error=True)` with a plain detail.
    """
    global _helper
    timeout_s = CHECK_TIMEOUT_S if timeout_s is None else timeout_s
    if not isinstance(output, str):
        return error_verdict(f"nothing to check: the output is {type(output).__name__}, not text")
    try:
        pickle.dumps(checker)
    except Exception:  # a checker made in code that cannot travel: judge here, without the time limit
        return _judge(checker, output)
    with _lock:
        for attempt in (1, 2):
            try:
                if _helper is None or not _helper.alive():
                    _helper = _Helper()
                verdict = _helper.ask(checker, output, timeout_s)
            except (OSError, EOFError, pickle.UnpicklingError, struct.error) as exc:
                if _helper is not None:
                    _helper.kill()
                    _helper = None
                if attempt == 2:
                    return error_verdict(f"checker failed: its helper process broke ({type(exc).__name__})")
                continue
            if verdict is None:
                _helper.kill()  # stuck in a match: stop it; the next check starts a fresh helper
                _helper = None
                return error_verdict(_timeout_detail(timeout_s, output))
            return verdict
    return error_verdict("checker failed")  # not reached


def _serve() -> None:
    """The helper's loop: read (checker, output), answer with its verdict, until stdin closes."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        checker, output = pickle.loads(stdin.read(_HEADER.unpack(head)[0]))
        data = pickle.dumps(_judge(checker, output), protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_HEADER.pack(len(data)) + data)
        stdout.flush()


if __name__ == "__main__":
    _serve()
