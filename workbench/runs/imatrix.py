"""Compute an importance matrix from a ladder's reference over calibration text, with progress and cancel.

The statistics are collected the way llama.cpp's `llama-imatrix` collects them (engine.imatrix_collect, in a child
process: a crash inside llama.cpp cannot take the app down, and cancel terminates the child), and written in its
GGUF format with the calibration's provenance (`workbench.calibration.*`), so `llama-quantize` and
`models.quantize` read it the same way.

The reference must be full precision (F32/F16/BF16): a matrix measured on an already-rounded model describes that
model's activations, and quantizing that file again compounds the rounding. A full-precision file that was itself
made from a quantized source (the demo ladder's F16 comes from a Q4_1) is accepted with a note that says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core import hardware
from workbench.core.jobs import Cancelled, Job, Progress
from workbench.engine.pool import describe_exit
from workbench.files.gguf_info import GgufError, read_header
from workbench.models.ladder import load_ladder
from workbench.runs.calibration import Calibration, CalibrationError

FULL_PRECISION = ("F32", "F16", "BF16")
DEFAULT_CHUNK_TOKENS = 512  # llama-imatrix's default context, and so its chunk size


class ImatrixComputeError(ValueError):
    """The matrix cannot be computed (wrong reference, unusable text, llama.cpp failed); one line for the user."""


class ImatrixInputError(ImatrixComputeError):
    """The input is at fault (a reference that is not full precision, calibration text too short, no folder)."""


class ImatrixCancelled(Cancelled):
    """Stopped on request; nothing was written."""


@dataclass(frozen=True)
class ImatrixResult:
    """A computed matrix: where it is, from what, how many tokens in how many chunks, how long it took.

    `seconds` is the whole computation (loading included); `collect_seconds` only the tokens going through the
    model, what `tokens_per_second` divides by. `pieces`: which calibration pieces the model saw, as indices into the prompt set when the calibration is a
    split prompt set (else into `calibration.pieces`); `piece_sha256`: each one's text hash (the text itself is
    not kept). `note`: what to know about the reference (a requantized F16), or "".
    """

    path: Path
    calibration: Calibration
    n_tokens: int
    n_chunks: int
    seconds: float
    note: str = ""
    pieces: tuple[int, ...] = ()
    piece_sha256: tuple[str, ...] = ()
    collect_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.collect_seconds if self.collect_seconds > 0 else 0.0


def check_reference(path: str | os.PathLike[str]) -> str:
    """Vet a reference for computing a matrix; returns a note ("" when none), ImatrixComputeError when unusable."""
    try:
        info = read_header(path)
    except GgufError as exc:
        raise ImatrixInputError(str(exc)) from None
    if info.quant_type not in FULL_PRECISION:
        raise ImatrixInputError(
            f"{Path(path).name} is {info.quant_type}, not full precision: an importance matrix from a "
            f"{info.quant_type} reference measures activations of an already-rounded model; quantizing that file "
            "again compounds the rounding — use the F16/BF16 source")
    source = _ladder_source_type(Path(path))
    if source and source not in FULL_PRECISION:
        return (f"This {info.quant_type} file was made from a {source} file, so it carries that file's rounding: "
                f"the matrix measures the {source} model's activations, not the original model's.")
    return ""


def _ladder_source_type(path: Path) -> str | None:
    """The quantization of the file a ladder's reference was made from, when `path` is one and its ladder says."""
    try:
        ladder = load_ladder(path.parent)
    except (OSError, ValueError, KeyError, TypeError, GgufError):
        return None
    if not any(os.path.abspath(f.path) == os.path.abspath(path) for f in ladder.files):
        return None
    source = ladder.provenance.get("source_quant_type")
    return str(source) if source else None


def compute_imatrix(reference: str | os.PathLike[str], calibration: Calibration, out: str | os.PathLike[str], *,
                    chunk_tokens: int = DEFAULT_CHUNK_TOKENS, max_chunks: int | None = None,
                    threads: int | None = None,
                    on_progress: Callable[[int, int, str], None] = lambda done, total, msg: None,
                    cancel: threading.Event | None = None) -> ImatrixResult:
    """Run `calibration` through `reference` and write its importance matrix to `out` (llama.cpp's GGUF form).

    Progress is chunks done of chunks planned. Raises ImatrixComputeError (one line) or, when `cancel` is set,
    ImatrixCancelled; in both cases no file is left at `out`.
    """
    note = check_reference(reference)
    if chunk_tokens < 16:
        raise ImatrixInputError(f"chunks of {chunk_tokens} tokens are too short: llama.cpp measures at least 16")
    if max_chunks is not None and max_chunks < 1:
        raise ImatrixInputError("the number of chunks must be at least 1")
    out = Path(out)
    if not out.parent.is_dir():
        raise ImatrixInputError(f"{out.parent}: no such folder to write the matrix into")
    job = {"model": os.path.abspath(reference), "out": str(out), "chunk_tokens": int(chunk_tokens),
           "max_chunks": max_chunks, "threads": int(threads or hardware.default_threads()),
           "pieces": [{"text": p.text, "system": p.system, "chat": p.chat} for p in calibration.pieces],
           "datasets": [calibration.describe()], "metadata": calibration.provenance(0)}
    cancel = cancel or threading.Event()
    on_progress(0, 0, "loading the reference")
    t0 = time.perf_counter()
    errors = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty child can never block on it
    proc = subprocess.Popen([sys.executable, "-m", "workbench.engine.imatrix_collect"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errors, text=True)
    stopper = threading.Thread(target=_stop_on_cancel, args=(proc, cancel), daemon=True)
    stopper.start()
    last: dict[str, Any] = {}
    try:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(job))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            last = event
            if event.get("event") == "progress":
                on_progress(int(event["chunk"]), int(event["chunks"]),
                            f"chunk {event['chunk']} of {event['chunks']} ({event['tokens']:,} tokens)")
        rc = proc.wait()
        errors.seek(0)
        stderr = errors.read()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cancel_seen = cancel.is_set()
        stopper.join()  # it ends within 0.2 s of the child's exit; the caller's event is left as it was
        errors.close()
    if cancel_seen and last.get("event") != "done":
        _remove(out)
        raise ImatrixCancelled("stopped; no importance matrix was written")
    if last.get("event") == "error":
        _remove(out)
        error = ImatrixInputError if last.get("input") else ImatrixComputeError
        raise error(str(last.get("message") or "the collector failed"))
    if rc != 0 or last.get("event") != "done":
        _remove(out)
        reason, _ = describe_exit(rc)
        reason = reason.replace("worker killed", "the collector was killed")
        detail = reason if rc < 0 else (stderr.strip().splitlines() or [reason])[-1]
        raise ImatrixComputeError(f"computing the importance matrix failed: {detail}")
    split = calibration.split
    used = tuple(int(i) for i in last.get("pieces", []))
    short = int(last.get("short_pieces", 0))
    if short:
        note = " ".join(x for x in (note, f"{short} of {len(calibration.pieces)} prompts were shorter than 16 tokens "
                                    "and did not count (llama.cpp's importance matrix skips such short runs).") if x)
    return ImatrixResult(out, calibration, int(last["tokens"]), int(last["chunks"]), time.perf_counter() - t0, note,
                         tuple(split.calibration[i] for i in used) if split else used,
                         tuple(str(h) for h in last.get("piece_sha256", [])), float(last.get("seconds", 0.0)))


def _stop_on_cancel(proc: subprocess.Popen[str], cancel: threading.Event) -> None:
    while proc.poll() is None:
        if cancel.wait(0.2):
            if proc.poll() is None:
                proc.terminate()
            return


def _remove(out: Path) -> None:
    for p in (out, out.with_name(out.name + ".partial")):
        p.unlink(missing_ok=True)


class ImatrixJob(Job):
    """`compute_imatrix` in the background for a page: progress is chunks done of chunks planned; the result is
    an ImatrixResult; a cancel leaves no file."""

    kind = "imatrix"
    expected = (ImatrixComputeError, CalibrationError, OSError)
    cancelled_by = (ImatrixCancelled,)
    failure_prefix = "Computing the importance matrix failed: "

    def __init__(self, reference: str, calibration: Calibration, out: str | os.PathLike[str], *,
                 chunk_tokens: int = DEFAULT_CHUNK_TOKENS, max_chunks: int | None = None,
                 threads: int | None = None) -> None:
        self.reference, self.calibration, self.out = reference, calibration, Path(out)
        self.options: dict[str, Any] = {"chunk_tokens": chunk_tokens, "max_chunks": max_chunks, "threads": threads}
        super().__init__(self._compute, title=f"importance matrix from {calibration.name}",
                         progress=Progress(0, 0, "", "Starting…"))

    def _compute(self, _job: Job) -> ImatrixResult:
        return compute_imatrix(self.reference, self.calibration, self.out, on_progress=self.on_progress,
                               cancel=self.cancel, **self.options)

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"error": self.failure, "result": self.result}
