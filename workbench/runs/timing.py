"""Speed with spread: time a contestant's decode more than once, and repeat a disturbed window.

One decode window is one short sample. On a shared machine it can read up to 30% low now and then with nothing
visible running, and on a busy laptop (a browser, chat, an IDE) other work can take the worker's cores outright
(core.disturbance judges each window). So after a contestant's streamed answer the same request is decoded
again, greedily and with the same seed, as a *timing-only* request: the worker sends no tokens, only the
figures and how undisturbed the window was.

* `wanted` windows (RunSettings.timing_repeats, 1-MAX_TIMING_REPEATS; the streamed answer is the first) are timed.
* A disturbed window does not count towards `wanted`: another is timed in its place, at most `EXTRA_TRIES`
  more in all. A window too short to judge counts (there is nothing to repeat it for).
* The contestant's `decode_tok_s` is then the **median of the undisturbed windows** and `decode_spread`
  holds that median with the range (min-max) and how many windows it took, like llama-bench's mean ± sd.
  When no quiet window could be had, it is the median of all of them, the result stays disturbed, and
  `decode_spread["quiet"]` is False: pages say so in words and offer to re-measure.
* `measurement["decode"]` becomes the window whose figure is nearest that median (so a result's "disturbed"
  mark says whether its figure was disturbed); the streamed window's own stays as `measurement["streamed_decode"]`.
  `decode_s` and `decode_steps` stay the streamed answer's.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from workbench.core.text_units import counted
from workbench.engine.metrics import ContestantResult
from workbench.engine.pool import WorkerCancelled, WorkerError, WorkerProcess
from workbench.engine.protocol import Generate
from workbench.storage.rows import StoredResult, StoredRun

EXTRA_TRIES = 3  # disturbed windows timed again, at most, beyond the windows asked for
NO_QUIET = ("could not get a quiet window: other work on this machine competed with the worker in every "
            "one of the {n} decode windows timed")

# on_timing(repeat, windows_so_far): a timing-only decode is about to start (repeat counts from 2)
OnTiming = Callable[[int, int], None]


def window_of(metrics: dict[str, Any], *, streamed: bool) -> dict[str, Any] | None:
    """One decode window from a worker's `done` metrics; None when it timed no decode (one token, a cancel)."""
    tok_s = metrics.get("decode_tok_s")
    if not isinstance(tok_s, (int, float)) or isinstance(tok_s, bool) or tok_s <= 0:
        return None
    measurement = metrics.get("measurement")
    decode = measurement.get("decode") if isinstance(measurement, dict) else None
    decode = decode if isinstance(decode, dict) else None
    return {"tok_s": float(tok_s), "decode_s": metrics.get("decode_s"), "steps": metrics.get("decode_steps"),
            "disturbed": decode.get("disturbed") if decode else None,
            "contention": decode.get("contention") if decode else None, "streamed": streamed, "decode": decode}


def usable(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Windows whose figure counts: undisturbed, or too short to judge."""
    return [w for w in windows if w.get("disturbed") is not True]


def needs_another(windows: list[dict[str, Any]], wanted: int) -> bool:
    """Whether to time one more window: fewer usable ones than `wanted`, and tries left."""
    return len(usable(windows)) < wanted and len(windows) < wanted + EXTRA_TRIES


def spread(windows: list[dict[str, Any]], wanted: int) -> dict[str, Any]:
    """The median and range of the usable windows (of all of them when none is usable), and what it took."""
    good = usable(windows)
    pool = good or windows
    values = [w["tok_s"] for w in pool]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "windows": len(windows), "wanted": wanted, "disturbed_windows": len(windows) - len(good),
            "quiet": bool(good), "how": (f"median of {counted(len(values), 'decode window')} "
                                         "not disturbed" if good else NO_QUIET.format(n=len(windows)))}


def apply(result: ContestantResult, windows: list[dict[str, Any]], wanted: int) -> None:
    """Put the spread on `result`: decode_tok_s the median, the nearest window's disturbance as its decode's."""
    if not windows:
        return
    s = spread(windows, wanted)
    result.decode_repeats = [{k: v for k, v in w.items() if k != "decode"} for w in windows]
    result.decode_spread = s
    result.decode_tok_s = s["median"]
    pool = usable(windows) or windows
    nearest = min(pool, key=lambda w: abs(w["tok_s"] - s["median"]))
    measurement = dict(result.measurement or {})
    if not nearest["streamed"] and nearest["decode"] is not None:
        if isinstance(measurement.get("decode"), dict):
            measurement["streamed_decode"] = measurement["decode"]
        measurement["decode"] = nearest["decode"]
    result.measurement = measurement


def time_repeats(worker: WorkerProcess, request: Generate, first: dict[str, Any], wanted: int,
                 cancel: threading.Event | None = None, on_timing: OnTiming | None = None) -> list[dict[str, Any]]:
    """The streamed answer's window plus timing-only re-decodes of `request` until `wanted` usable windows (or
    the tries run out). A Stop or a worker error ends the repeats; the windows timed so far are kept."""
    window = window_of(first, streamed=True)
    if window is None or first.get("stop_reason") == "cancelled":
        return []
    windows = [window]
    while needs_another(windows, wanted):
        if cancel is not None and cancel.is_set():
            break
        if on_timing is not None:
            on_timing(len(windows) + 1, len(windows))
        try:
            done = worker.call(replace(request, timing_only=True), {"done"}, None, cancel)
        except (WorkerCancelled, WorkerError):
            break
        metrics = done.get("metrics") or {}
        w = window_of(metrics, streamed=False)
        if w is None or metrics.get("stop_reason") == "cancelled":
            break
        windows.append(w)
    return windows


def of_result(r: StoredResult) -> dict[str, Any] | None:
    """A stored result's decode spread, every field type-checked (its metrics JSON is as the run or an import
    stored it); None without one."""
    s = r.metrics.get("decode_spread")
    if not isinstance(s, dict):
        return None

    def number(key: str) -> bool:
        return isinstance(s.get(key), (int, float)) and not isinstance(s.get(key), bool)

    if not all(number(k) for k in ("median", "min", "max")) or not isinstance(s.get("n"), int) \
            or not isinstance(s.get("windows"), int) or not isinstance(s.get("quiet"), bool):
        return None
    return {"median": float(s["median"]), "min": float(s["min"]), "max": float(s["max"]), "n": s["n"],
            "windows": s["windows"], "quiet": s["quiet"],
            "disturbed_windows": s["disturbed_windows"] if isinstance(s.get("disturbed_windows"), int) else 0}


def spread_words(s: dict[str, Any] | None) -> str:
    """The spread in a few words for a card or table, e.g. "median of 3, range 88.1-95.0"; "" for one window."""
    if s is None or s["windows"] <= 1:
        return ""
    if not s["quiet"]:
        return f"no quiet window in {s['windows']} tries; range {s['min']:,.1f}-{s['max']:,.1f}"
    extra = f", {s['disturbed_windows']} disturbed left out" if s["disturbed_windows"] else ""
    if s["n"] == 1:
        return f"1 quiet window{extra}"
    return f"median of {s['n']}, range {s['min']:,.1f}-{s['max']:,.1f}{extra}"



def repeats_note(wanted: int) -> str:
    """What the timing-repeats setting does, in a sentence for the page that sets it."""
    head = ("Decode speed is timed once per file (its streamed answer): one short window can read up to 30% low on "
            "a shared machine, so set Timing repeats to 3 or more for a median and a range."
            if wanted <= 1 else
            f"Decode speed is timed {wanted} times per file (its answer, then the same answer again with nothing "
            "drawn); the figure is the median of the undisturbed windows, shown with their range.")
    return f"{head} A window that other work disturbed is timed again, up to {EXTRA_TRIES} more times."


def banner(results: Sequence[StoredResult], disturbed: list[str]) -> str:
    """The one sentence above a run whose columns `disturbed` have disturbed speed figures, and what to do."""
    one = len(disturbed) == 1
    names = "every file" if len(disturbed) == len(results) > 1 else ", ".join(disturbed)
    hover = "hover a column's \"speed disturbed\" mark for what was seen"
    no_quiet = [r.label for r in results if r.label in disturbed and (s := of_result(r)) is not None
                and not s["quiet"] and s["windows"] > 1]
    if no_quiet and len(no_quiet) == len(disturbed):
        return (f"No quiet window could be had for {names}, even timed again: other work on this machine competed "
                f"with the worker every time, so {'its' if one else 'their'} speed can read low ({hover}). Close what "
                "else is busy (a build, a video, a sync, other browser tabs), then re-measure.")
    text = (f"Speed figures disturbed for {names}: other work on this machine competed with the worker while "
            f"{'it was' if one else 'they were'} timed, so {'its' if one else 'their'} speed can read low ({hover}).")
    if no_quiet:
        return (f"{text} No quiet window could be had for {', '.join(no_quiet)}, even timed again: close what "
                "else is busy (a build, a video, a sync, other browser tabs), then re-measure.")
    return f"{text} Re-measuring runs the same files and settings again with nothing drawn, timing a disturbed window again."

def unmeasured(run: StoredRun) -> str | None:
    """For a finished speed run: which files got no undisturbed figure, why, and what to do; None when all did."""
    lost = [r for r in run.results if not r.error and r.disturbance[0]]
    if not lost:
        return None
    tries = max((s["windows"] for r in lost if (s := of_result(r)) is not None), default=1)
    return (f"No speed figure to use for {', '.join(r.label for r in lost)}: other work on this machine "
            f"competed with the worker in every decode window timed ({tries} per file), so those speeds would read "
            "low. Close what else is busy (a build, a video, a sync, other browser tabs) and press Run it again.")
