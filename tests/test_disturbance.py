"""Disturbed timings are detected and said: the arithmetic, and a real run beside busy processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from workbench.core.disturbance import DISTURBED_AT, CpuSnapshot, classify, machine_cpus, summarize
from workbench.runs.compare import contestants_for, run_comparison
from workbench.runs.contestants import RunSettings
from workbench.storage.rows import StoredResult

LONG_PROMPT = "Write a long story about a lighthouse keeper and a storm, with many details."


def snap(wall: float, worker: float, busy: float, steal: float = 0.0, app: float | None = None) -> CpuSnapshot:
    return CpuSnapshot(wall, worker, busy, steal, app)


def test_quiet_machine_is_not_disturbed():
    # 2 threads on 2 CPUs for 2 s: the worker used 3.9 CPU-s, the machine 3.95 in all
    d = classify("decode", snap(0, 0, 0), snap(2.0, 3.9, 3.95), n_threads=2, n_cpus=2)
    assert d.contention == pytest.approx(0.0125) and d.disturbed is False
    assert "quiet" in d.words()


def test_light_work_on_the_free_core_does_not_disturb_but_sharing_the_workers_cores_does():
    # 1 thread on 2 CPUs: another process using 30% of the free core is neither contention nor disturbance ...
    light = classify("decode", snap(0, 0, 0), snap(2.0, 2.0, 2.6), n_threads=1, n_cpus=2)
    assert light.contention == 0.0 and light.spare_busy == pytest.approx(0.3) and light.disturbed is False
    # ... but 2 threads on 2 CPUs with one core's worth of other work is: half the threads shared a core
    shared = classify("decode", snap(0, 0, 0, app=10.0), snap(2.0, 2.0, 4.0, app=10.4), n_threads=2, n_cpus=2)
    assert shared.contention == pytest.approx(0.5) and shared.disturbed
    assert shared.app_cpu_s == pytest.approx(0.4)
    assert "disturbed: other processes used 50% of the CPU" in shared.words()
    assert "the app itself 10%" in shared.words()


def test_a_busy_free_core_disturbs_without_contention_and_says_why():
    """Work on the core a one-thread worker leaves free competes for memory bandwidth and caches: a neighbour
    copying memory there cost 11-26% of the decode speed on this machine while sharing no core (docs/benchmarks.md,
    "Disturbance")."""
    for busy, expected in ((0.38, False), (0.42, True), (1.0, True)):
        d = classify("decode", snap(0, 0, 0), snap(2.0, 2.0, 2.0 + 2.0 * busy), n_threads=1, n_cpus=2)
        assert d.contention == 0.0 and d.disturbed is expected, busy
    d = classify("decode", snap(0, 0, 0), snap(2.0, 2.0, 4.0), n_threads=1, n_cpus=2)
    assert d.words().startswith("disturbed: other processes used 50% of the CPU")
    assert "the free core was 100% busy" in d.words() and "memory bandwidth" in d.words()
    assert summarize({"decode": d.to_dict()}) == (True, d.words())  # the stored result reads the same
    # with several threads on every CPU there is no free core: contention alone decides, as before
    assert classify("decode", snap(0, 0, 0), snap(2.0, 3.96, 4.0), n_threads=2, n_cpus=2).spare_busy is None


def test_hypervisor_steal_counts_as_disturbance():
    d = classify("decode", snap(0, 0, 0, steal=0.0), snap(1.0, 1.6, 1.6, steal=0.4), n_threads=2, n_cpus=2)
    assert d.contention == pytest.approx(0.2) and d.disturbed
    assert "hypervisor" in d.words()


def test_short_windows_are_not_judged():
    d = classify("prefill", snap(0, 0, 0), snap(0.05, 0.1, 0.1), n_threads=2, n_cpus=2)
    assert d.disturbed is None and d.contention is None
    assert "too short" in d.words()


def test_stored_measurements_are_type_checked_before_they_are_used():
    good = {"decode": classify("decode", snap(0, 0, 0), snap(2.0, 2.0, 4.0), 2, 2).to_dict()}
    assert summarize(good)[0] is True
    for bad in (None, "x", {"decode": "x"}, {"decode": {**good["decode"], "others_share": "<style>"}},
                {"decode": {**good["decode"], "n_cpus": 0}}, {"decode": {**good["decode"], "disturbed": "yes"}}):
        assert summarize(bad) == (None, "")


def busy_processes(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 120\nwhile time.time() < end: pass"])
            for _ in range(n)]


def run_beside(start_hogs: Callable[[], list[subprocess.Popen]], pool, contestants, settings, store):
    """One stored, timed run while the processes `start_hogs` starts keep going; the model is loaded first, outside
    the timing, and the processes are gone afterwards."""
    run_comparison(pool, contestants, "Hello", settings)  # load first: the load is not what is measured
    hogs = start_hogs()
    try:
        time.sleep(0.5)
        return run_comparison(pool, contestants, LONG_PROMPT, settings, store=store).results[0]
    finally:
        for h in hogs:
            h.kill()
            h.wait()


@pytest.mark.slow
def test_a_run_beside_busy_processes_is_marked_disturbed_and_says_so(pool, demo_ladder, store):
    """CPU contention faked by busy processes (one per CPU): the stored result says it was disturbed."""
    settings = RunSettings(max_tokens=96, n_threads=machine_cpus(), n_ctx=512)
    contestants = contestants_for(demo_ladder, ["Q2_K"], reference="Q2_K")
    busy = run_beside(lambda: busy_processes(machine_cpus()), pool, contestants, settings, store)
    decode = busy.measurement["decode"]
    print(f"beside {machine_cpus()} busy processes: decode {busy.decode_tok_s:.1f} tok/s, contention "
          f"{decode['contention']:.0%}, others {decode['others_cpu_s']:.2f} CPU-s in {decode['wall_s']:.2f} s")
    assert busy.ok and decode["wall_s"] >= 0.25
    assert decode["others_cpu_s"] > 0.2 * decode["wall_s"]
    assert decode["contention"] >= DISTURBED_AT and busy.disturbed is True
    stored = store.get_run(store.list_runs(limit=1)[0].id).results[0]
    assert stored.disturbed is True and stored.cpu_contention == pytest.approx(decode["contention"])
    assert summarize(stored.metrics["measurement"])[1].startswith("disturbed: other processes used")

    quiet = run_comparison(pool, contestants, LONG_PROMPT, settings).results[0]
    q = quiet.measurement["decode"]
    print(f"without them: decode {quiet.decode_tok_s:.1f} tok/s, contention {q['contention']:.0%}")
    assert q["contention"] < decode["contention"]


MEMORY_HOG = """
import time
import numpy as np
a = np.ones(8 * 2**20); b = np.empty_like(a); end = time.time() + 120
while time.time() < end: np.copyto(b, a)
"""


@pytest.mark.slow
def test_a_one_thread_run_beside_a_memory_bound_neighbour_is_marked_disturbed(pool, demo_ladder, store):
    """A neighbour copying memory on the free core (no core shared): the result says it was disturbed, and why."""
    if machine_cpus() < 2:
        pytest.skip("needs a core the worker leaves free")
    settings = RunSettings(max_tokens=96, n_threads=1, n_ctx=512)
    contestants = contestants_for(demo_ladder, ["Q8_0"], reference="Q8_0")
    beside = run_beside(lambda: [subprocess.Popen([sys.executable, "-c", MEMORY_HOG])
                                 for _ in range(machine_cpus() - 1)], pool, contestants, settings, store)
    quiet = run_comparison(pool, contestants, LONG_PROMPT, settings).results[0]
    decode = beside.measurement["decode"]
    print(f"beside a memory-bound neighbour: {beside.decode_tok_s:.1f} tok/s, others {decode['others_share']:.0%}, "
          f"contention {decode['contention']:.0%}; without it: {quiet.decode_tok_s:.1f} tok/s")
    assert beside.ok and beside.disturbed is True
    words = summarize(beside.measurement)[1]
    assert words.startswith("disturbed:") and ("memory bandwidth" in words or "share a core" in words)


def test_the_result_card_names_the_busy_free_core_and_survives_a_hostile_measurement():
    from ui.views import _metric_rows

    d = classify("decode", snap(0, 0, 0), snap(2.0, 2.0, 4.0), n_threads=1, n_cpus=2)
    result = StoredResult(0, 0, 0, "Q8_0", cpu_contention=d.contention, disturbed=True,
                          metrics={"measurement": {"decode": d.to_dict()}})
    assert ("CPU contention", "0% · free core 100% busy (disturbed)") in _metric_rows(result)
    hostile = replace(result, metrics={"measurement": {"decode": {**d.to_dict(), "n_cpus": "<b>2</b>"}}})
    assert ("CPU contention", "0% (disturbed)") in _metric_rows(hostile)
