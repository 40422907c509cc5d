"""Was a timing disturbed? Measure how much CPU the rest of the machine took during a timed window.

llama.cpp's CPU threads wait for each other at every step, so a browser redrawing, the app's own
server, another program or the hypervisor (steal time) taking a core for a moment slows a whole
decode step, and the tok/s figure reads low without saying why. The worker snapshots the CPU
counters at the start and end of each timed window (prefill, decode) and the parent classifies:

* worker CPU: CPU-seconds of the worker process itself (all its threads, `time.process_time`).
* others' CPU: machine-wide busy CPU-seconds (/proc/stat via psutil: user, nice, system, irq,
  softirq) minus the worker's own; the app process (the worker's parent) is reported apart.
* steal: CPU time the hypervisor gave to other guests; it is lost to the worker as surely.
* contention: the share of the worker's threads that had to share a core, assuming the others'
  load used the spare cores first: max(0, others' cores + steal cores - (CPUs - threads)) /
  threads, where "cores" is CPU-seconds / wall seconds. 0 on a quiet machine; 0.5 when one of two
  threads lost its core for the whole window.

A window is **disturbed** when contention reaches `DISTURBED_AT` (10%) for a one-thread worker, or
`DISTURBED_AT_MULTI` (3%) for a worker with several threads: those wait for each other at every step,
so a little contention costs a lot. Calibrated on this project's 2-core machine with
benchmarks/disturbance_calibration.py (Q8_0 of the demo ladder, busy processes with duty cycles;
docs/data/disturbance-calibration.json, docs/benchmarks.md "Disturbance"):

* 1 thread: busy processes up to two at 100% left the worker a core of its own; contention stayed
  at 0-2.4% and decode at 0.94-1.01 of quiet speed (the measure and the speed agree: no loss).
* 2 threads: contention 0.4-0.6% when quiet; 3-4% cost 30% in 2 of 3 runs (0.70), 5% cost 6%,
  12% cost 19%, 20% cost 45%.

A window is also **disturbed** when the worker shared no core but other work kept the cores it left free at
least `SPARE_BUSY_AT` (40%) busy: work there competes with the worker for memory bandwidth and caches, which
CPU accounting cannot see. Measured on the same machine with a neighbour that copies 64 MiB arrays
(`--hog memory`): one beside a one-thread decode cost 11-26% (free core 42-100% busy; 43% in
tests/test_disturbance.py) while the spinning neighbour above cost nothing; in the app, a busy browser beside a
run (free core 43-100% busy) cost 10-14%, while the page's usual streaming kept it under 40% (at most 38%). The share cannot tell a spinning neighbour from a
memory-bound one, so the words say what was seen and that it *can* slow decoding.

Windows shorter than `MIN_WINDOW_S` are not judged: /proc/stat counts in 10 ms ticks.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from workbench.core.text_units import counted

DISTURBED_AT = 0.10
DISTURBED_AT_MULTI = 0.03
SPARE_BUSY_AT = 0.40
MIN_WINDOW_S = 0.25
HOW = ("machine-wide CPU time (/proc/stat) minus the worker's own CPU time (all its threads) during the timed "
       "window; contention = the share of the worker's threads that had to share a core with other work")


@dataclass(frozen=True)
class CpuSnapshot:
    """The counters at one instant, taken inside the worker (cheap: one /proc/stat read)."""

    wall: float
    worker_cpu: float
    machine_busy: float
    steal: float
    app_cpu: float | None

    @classmethod
    def take(cls, app_pid: int | None = None) -> CpuSnapshot:
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        app = None
        if app_pid:
            try:
                ct = psutil.Process(app_pid).cpu_times()
                app = ct.user + ct.system
            except (psutil.Error, OSError):
                app = None
        return cls(time.perf_counter(), time.process_time(), busy, getattr(t, "steal", 0.0), app)

    def to_list(self) -> list[float | None]:
        return [self.wall, self.worker_cpu, self.machine_busy, self.steal, self.app_cpu]

    @classmethod
    def from_list(cls, values: list[Any]) -> CpuSnapshot:
        return cls(*(None if v is None else float(v) for v in values))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Disturbance:
    """What the rest of the machine did during one timed window, and the verdict."""

    window: str  # "decode" | "prefill"
    wall_s: float
    n_cpus: int
    n_threads: int
    worker_cpu_s: float
    others_cpu_s: float
    app_cpu_s: float | None
    steal_s: float
    others_share: float  # others' CPU (steal included) / (wall x CPUs): the machine's share they took
    contention: float | None  # None when the window was too short to judge
    disturbed: bool | None
    threshold: float = DISTURBED_AT
    how: str = HOW

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def words(self) -> str:
        """One plain sentence for the result, the chart and the report."""
        if self.disturbed is None:
            return f"{self.window} window too short to judge ({self.wall_s * 1000:.0f} ms)"
        app = f" (the app itself {self.app_cpu_s / (self.wall_s * self.n_cpus):.0%})" if self.app_cpu_s else ""
        steal = f", the hypervisor took {self.steal_s / (self.wall_s * self.n_cpus):.0%}" if self.steal_s > 0.01 else ""
        head = "disturbed" if self.disturbed else "quiet"
        words = (f"{head}: other processes used {self.others_share:.0%} of the CPU during this {self.window} "
                 f"measurement{app}{steal}; {self.contention:.0%} of the worker's {counted(self.n_threads, 'thread')} "
                 "had to share a core")
        busy = self.spare_busy
        if self.disturbed and (self.contention or 0.0) < self.threshold and busy is not None:
            words += (f", but the free core{'s were' if self.spare_cpus > 1 else ' was'} {busy:.0%} busy, and work "
                      "there competes for memory bandwidth and caches (a memory-copying neighbour there cost a "
                      "one-thread decode 11-43% where this was calibrated)")
        return words

    @property
    def spare_cpus(self) -> int:
        """CPUs the worker's threads leave to other work."""
        return _free_cpus(self.n_threads, self.n_cpus)

    @property
    def spare_busy(self) -> float | None:
        """How busy other work kept the CPUs the worker left free (0-1); None when it left none."""
        return _free_busy(self.others_share, self.n_threads, self.n_cpus)


def _free_cpus(n_threads: int, n_cpus: int) -> int:
    """CPUs a worker with `n_threads` threads leaves to other work."""
    return max(0, n_cpus - max(1, min(n_threads, n_cpus)))


def _free_busy(others_share: float, n_threads: int, n_cpus: int) -> float | None:
    """The share of the free CPUs that others' load (a share of the whole machine) kept busy; None without any."""
    free = _free_cpus(n_threads, n_cpus)
    return min(1.0, others_share * n_cpus / free) if free else None


def classify(window: str, start: CpuSnapshot, end: CpuSnapshot, n_threads: int, n_cpus: int | None = None) -> Disturbance:
    """Turn two snapshots into a Disturbance; the rule is in this module's docstring."""
    n_cpus = n_cpus or machine_cpus()
    wall = max(0.0, end.wall - start.wall)
    worker = max(0.0, end.worker_cpu - start.worker_cpu)
    steal = max(0.0, end.steal - start.steal)
    others = max(0.0, (end.machine_busy - start.machine_busy) - worker)
    app = None if start.app_cpu is None or end.app_cpu is None else max(0.0, end.app_cpu - start.app_cpu)
    share = min(1.0, (others + steal) / (wall * n_cpus)) if wall > 0 else 0.0
    contention: float | None = None
    disturbed: bool | None = None
    if wall >= MIN_WINDOW_S:
        threads = max(1, min(n_threads, n_cpus))
        contention = round(min(1.0, max(0.0, (others + steal) / wall - _free_cpus(n_threads, n_cpus)) / threads), 4)
        free_busy = _free_busy(share, n_threads, n_cpus)
        disturbed = contention >= threshold_for(n_threads) or (free_busy is not None and free_busy >= SPARE_BUSY_AT)
    return Disturbance(window, round(wall, 4), n_cpus, n_threads, round(worker, 3), round(others, 3),
                       None if app is None else round(app, 3), round(steal, 3), round(share, 4), contention, disturbed,
                       threshold_for(n_threads))


def threshold_for(n_threads: int) -> float:
    """The contention at which a window counts as disturbed (see the module docstring for the calibration)."""
    return DISTURBED_AT if n_threads <= 1 else DISTURBED_AT_MULTI


def machine_cpus() -> int:
    """Logical CPUs the machine-wide counters cover (all of them, not this process's affinity)."""
    return psutil.cpu_count(logical=True) or os.cpu_count() or 1


_NUMBERS = ("wall_s", "worker_cpu_s", "others_cpu_s", "steal_s", "others_share")


def summarize(measurement: Any) -> tuple[bool | None, str]:
    """(disturbed?, words) for a stored result's `measurement`; (None, "") when it has none or it is malformed.

    Stored results can come from an import: every field is type-checked before it is used or shown.
    """
    d = stored_decode(measurement)
    return (None, "") if d is None else (d.disturbed, d.words())


def stored_decode(measurement: Any) -> Disturbance | None:
    """The decode window's Disturbance rebuilt from a stored `measurement`, every field type-checked; None when
    it has none or it is malformed."""
    decode = measurement.get("decode") if isinstance(measurement, dict) else None
    if not isinstance(decode, dict):
        return None

    def number(key: str) -> bool:
        return isinstance(decode.get(key), (int, float)) and not isinstance(decode.get(key), bool)

    if not all(number(k) for k in _NUMBERS) or not isinstance(decode.get("n_cpus"), int) \
            or not isinstance(decode.get("n_threads"), int) or decode["n_cpus"] < 1 or decode["wall_s"] <= 0:
        return None
    disturbed = decode.get("disturbed") if isinstance(decode.get("disturbed"), bool) else None
    contention = decode.get("contention") if number("contention") else None
    if (disturbed is None) != (contention is None):
        return None
    return Disturbance("decode", float(decode["wall_s"]), decode["n_cpus"], decode["n_threads"],
                    float(decode["worker_cpu_s"]), float(decode["others_cpu_s"]),
                    float(decode["app_cpu_s"]) if number("app_cpu_s") else None, float(decode["steal_s"]),
                    float(decode["others_share"]), contention, disturbed)
