"""The warm pool stays within its memory budget (real demo ladder), and GPU offload is sized as if alone."""

from __future__ import annotations

import re

import pytest

from workbench.core.hardware import Gpu
from workbench.engine import memory_budget as mb
from workbench.engine.pool import DoesNotFit, LoadSettings, WorkerPool
from workbench.runs.compare import contestants_for, run_comparison, run_contestant
from workbench.runs.contestants import Contestant, RunSettings

GiB = 2**30
N_CTX = 256
SETTINGS = RunSettings(max_tokens=8, n_ctx=N_CTX, n_threads=1, gpu_offload="cpu")
PROMPT = "Name a colour."


def load(path: str) -> LoadSettings:
    """What run_contestant builds for SETTINGS on a CPU, so leases and runs share workers."""
    from workbench.core import crash_fallback

    return LoadSettings(path, N_CTX, 1, 0, crash_fallback.use_extra_bufts_setting())


def need(path: str) -> int:
    return mb.predict_load(path, N_CTX, 0, load(path).use_extra_bufts, []).ram_bytes


@pytest.fixture()
def fresh_pool():
    p = WorkerPool()
    yield p
    p.shutdown()


@pytest.fixture()
def q_files(demo_ladder) -> dict[str, str]:
    return {f.label: f.path for f in demo_ladder.files if not f.reference}


def use(pool: WorkerPool, path: str) -> None:
    with pool.lease(path, load(path)) as (worker, _):
        assert worker.alive()


def test_live_workers_never_exceed_the_budget(fresh_pool, demo_ladder, q_files):
    budget = 2 * max(need(p) for p in q_files.values())
    fresh_pool.set_memory_budget(budget)
    paths = [f.path for f in demo_ladder.files if need(f.path) <= budget]
    assert len(paths) >= 3  # enough files to force evictions
    for path in paths + paths[::-1]:
        use(fresh_pool, path)
        held = fresh_pool.memory_in_use().ram_bytes
        assert held <= budget
        assert held == sum(w["ram_bytes"] for w in fresh_pool.warm_models())
        assert len(fresh_pool.pids()) == len(fresh_pool.warm_models())
    assert fresh_pool.budget().ram_bytes == budget and fresh_pool.budget().source == "set on the Hardware page"


def test_eviction_is_least_recently_used_and_spares_workers_in_use(fresh_pool, q_files):
    a, b, c = q_files["Q2_K"], q_files["Q4_K_M"], q_files["Q5_K_M"]
    fresh_pool.set_memory_budget(need(a) + max(need(b), need(c)) + 2**20)  # room for two, not three
    use(fresh_pool, a)
    use(fresh_pool, b)
    use(fresh_pool, a)  # A is now the most recently used
    pid_a = fresh_pool.pids()[a]
    use(fresh_pool, c)
    assert set(fresh_pool.pids()) == {a, c} and fresh_pool.pids()[a] == pid_a  # B went, A stayed warm
    assert [w["key"] for w in fresh_pool.warm_models()] == [c, a]  # most recently used first

    with fresh_pool.lease(a, load(a)):  # A in use: loading B must evict C, the idle one, although A is older
        use(fresh_pool, b)
        assert set(fresh_pool.pids()) == {a, b}
        assert [w["in_use"] for w in fresh_pool.warm_models() if w["key"] == a] == [True]
        fresh_pool.set_memory_budget(need(a) + need(c) // 2)  # only A fits, and A is busy
        with pytest.raises(DoesNotFit, match="in use right now"):
            use(fresh_pool, c)
    assert a in fresh_pool.pids()


def test_a_run_after_eviction_reloads_and_succeeds(fresh_pool, demo_ladder, q_files):
    first = Contestant.from_ladder_file(demo_ladder.by_label("Q2_K"), is_reference=False)
    other = Contestant.from_ladder_file(demo_ladder.by_label("Q4_K_M"), is_reference=False)
    fresh_pool.set_memory_budget(max(need(first.path), need(other.path)) + 2**20)  # one at a time
    messages = SETTINGS.messages(PROMPT)
    r1 = run_contestant(fresh_pool, first, SETTINGS, messages)
    r2 = run_contestant(fresh_pool, other, SETTINGS, messages)
    assert list(fresh_pool.pids()) == [other.path]  # the first was evicted
    again = run_contestant(fresh_pool, first, SETTINGS, messages)
    assert r1.ok and r2.ok and again.ok, (r1.error, r2.error, again.error)
    assert not again.warm and again.token_ids == r1.token_ids  # reloaded, same greedy output


def test_a_file_bigger_than_the_budget_fails_alone_with_a_clear_message(fresh_pool, demo_ladder):
    biggest = max(demo_ladder.files, key=lambda f: need(f.path))
    others = [f for f in demo_ladder.files if f is not biggest]
    fresh_pool.set_memory_budget(max(need(f.path) for f in others) + 2**20)
    contestants = contestants_for(demo_ladder, [f.label for f in others] + [biggest.label], reference=others[0].label)
    comp = run_comparison(fresh_pool, contestants, PROMPT, SETTINGS)
    by = {r.label: r for r in comp.results}
    err = by[biggest.label].error or ""
    assert err.startswith(f"{biggest.label}: needs about"), err
    assert re.search(r"weights \d+ MiB \+ KV cache", err) and "warm-model budget is" in err
    assert "set on the Hardware page" in err and "smaller quantization" in err
    assert all(by[f.label].ok for f in others), [(r.label, r.error) for r in comp.results]
    assert biggest.path not in fresh_pool.pids()


def test_memory_budget_parsing(monkeypatch):
    assert mb.parse_size("6GiB") == 6 * GiB
    assert mb.parse_size("500MiB") == 500 * 2**20
    assert mb.parse_size("8GB") == 8 * 10**9
    assert mb.parse_size(" 1.5 g ") == int(1.5 * GiB)
    assert mb.parse_size("123456") == 123456
    for bad in ("lots", "6 GiBs", "-1GiB", "0", "", "1e9"):
        with pytest.raises(ValueError, match="WORKBENCH_MEMORY_BUDGET"):
            mb.parse_size(bad)

    pool = WorkerPool()  # no worker is started until a lease
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", "3GiB")
    assert pool.budget(gpus=[]).ram_bytes == 3 * GiB and "WORKBENCH_MEMORY_BUDGET" in pool.budget(gpus=[]).explanation
    pool.set_memory_budget(GiB)  # the page setting wins over the environment
    assert pool.budget(gpus=[]).ram_bytes == GiB
    pool.set_memory_budget(None)
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", "plenty")
    with pytest.raises(ValueError, match="WORKBENCH_MEMORY_BUDGET='plenty'"):
        pool.budget(gpus=[])
    monkeypatch.delenv("WORKBENCH_MEMORY_BUDGET")
    assert pool.budget(gpus=[]).source == "automatic"


def test_automatic_budget_arithmetic():
    own = mb.Need(2 * GiB, {0: 3 * GiB})
    gpu = Gpu(0, "Fake", 24 * GiB, 10 * GiB, "test")
    b = mb.compute_budget(own, ram_available_bytes=8 * GiB, ram_total_bytes=32 * GiB, gpus=[gpu])
    assert b.ram_bytes == 8 * GiB + 2 * GiB - int(3.2 * GiB)  # 10% of 32 GiB beats 1 GiB
    assert b.vram_bytes == {0: int(13 * GiB * 0.9)}
    small = mb.compute_budget(mb.Need(), ram_available_bytes=4 * GiB, ram_total_bytes=8 * GiB, gpus=[])
    assert small.ram_bytes == 3 * GiB and "kept free" in small.explanation  # at least 1 GiB stays free


def test_gpu_eviction_frees_the_gpu_that_is_short():
    budget = mb.MemoryBudget(10 * GiB, {0: 8 * GiB}, "automatic", "")
    held = [mb.Held("cpu-only", mb.Need(GiB), 1, False), mb.Held("on-gpu", mb.Need(GiB, {0: 5 * GiB}), 2, False)]
    assert mb.plan_evictions(mb.Need(GiB, {0: 4 * GiB}), held, budget) == ["on-gpu"]  # the older one frees no VRAM
    assert mb.plan_evictions(mb.Need(GiB, {0: 2 * GiB}), held, budget) == []
    busy = [mb.Held("on-gpu", mb.Need(GiB, {0: 5 * GiB}), 2, True)]
    assert mb.plan_evictions(mb.Need(GiB, {0: 4 * GiB}), busy, budget) is None


def test_fair_offload_sizes_each_contestant_as_if_alone(demo_ladder):
    path = demo_ladder.by_label("Q8_0").path
    auto = RunSettings(gpu_offload="auto", n_ctx=2048)
    alone = Gpu(0, "Fake", 8 * GiB, int(0.85 * GiB), "test")  # room for some layers, not all
    layers_alone = auto.gpu_layers_for(path, gpus=[alone])
    assert 0 < layers_alone < 31
    held = {0: int(0.1 * GiB)}  # another contestant's warm worker holds this much of it now
    crowded = Gpu(0, "Fake", 8 * GiB, alone.free_bytes - held[0], "test")
    assert auto.gpu_layers_for(path, gpus=[crowded]) < layers_alone  # the unfairness being fixed
    as_if_alone = mb.gpus_as_if_alone([crowded], mb.Need(0, held))
    assert as_if_alone == [alone]
    assert auto.gpu_layers_for(path, gpus=as_if_alone) == layers_alone
    assert auto.gpu_layers_for(path, pool=WorkerPool(), gpus=[alone]) == layers_alone  # an empty pool adds nothing

    # the pool predicts what those layers need, and it fits the budget the same GPU view gives
    pred = mb.predict_load(path, 2048, layers_alone, None, as_if_alone)
    assert pred.gpu_layers == layers_alone and pred.gpu_index == 0
    budget = mb.compute_budget(mb.Need(0, held), ram_available_bytes=8 * GiB, ram_total_bytes=16 * GiB, gpus=[crowded])
    assert budget.fits(mb.Need.of(pred))
    full = mb.predict_load(path, 2048, -1, None, as_if_alone)
    cpu = mb.predict_load(path, 2048, 0, None, as_if_alone)
    assert full.vram_bytes > pred.vram_bytes > cpu.vram_bytes == 0
    assert "of GPU 0 memory" in mb.does_not_fit_message(full, mb.Need.of(full), budget)


def test_lowering_the_budget_evicts_at_once_and_a_warm_model_over_it_is_refused(fresh_pool, q_files):
    """Seen on the H200: a budget set below the warm workers left them all loaded until a new file came."""
    a, b = q_files["Q2_K"], q_files["Q4_K_M"]
    use(fresh_pool, a)
    use(fresh_pool, b)  # b is the most recently used
    assert len(fresh_pool.warm_models()) == 2
    fresh_pool.set_memory_budget(need(b) + need(a) // 2)  # room for one of them
    assert [w["key"] for w in fresh_pool.warm_models()] == [b]  # the least recently used went at once
    assert fresh_pool.memory_in_use().ram_bytes <= fresh_pool.budget().ram_bytes

    fresh_pool.set_memory_budget(need(b) // 2)  # now b, warm, no longer fits even alone
    assert fresh_pool.warm_models() == []
    result = run_contestant(fresh_pool, Contestant("Q4_K_M", b), SETTINGS, SETTINGS.messages(PROMPT))
    assert result.error and "warm-model budget" in result.error and result.text == ""
    assert fresh_pool.pids() == {}
