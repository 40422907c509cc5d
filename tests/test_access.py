"""One worker-access path: divergence and fingerprint scoring get the same load settings and the same
extra-buffer crash fallback as a comparison, and a dead worker's error says what it printed."""

from __future__ import annotations

import json

import pytest

from workbench.core import crash_fallback, hardware
from workbench.engine.pool import LoadSettings, WorkerDied, WorkerError, WorkerPool, WorkerProcess
from workbench.quality import divergence as dv
from workbench.runs.compare import run_contestant
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.fingerprint import _Local

SETTINGS = RunSettings(max_tokens=8, n_ctx=512)


@pytest.fixture()
def crashing_pool(tmp_path, monkeypatch):
    """A pool whose workers die by SIGSEGV on their first decode with extra buffers on (the AMX crash), on a
    machine with no crash note yet."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    assert crash_fallback.remembered() is None
    pool = WorkerPool(env={crash_fallback.INJECT_ENV: "1"})
    yield pool
    pool.shutdown()


def _note(tmp_path) -> dict:
    return list(json.loads((tmp_path / "machine.json").read_text())["extra_bufts_crash"].values())[0]


def _loaded_extra_bufts(pool: WorkerPool, path: str) -> bool | None:
    return pool._slots[path].worker.settings.use_extra_bufts


def test_divergence_scoring_survives_the_extra_buffer_crash(demo_ladder, crashing_pool, tmp_path):
    ref = Contestant.from_ladder_file(demo_ladder.by_label("Q8_0"), is_reference=True)
    other = Contestant.from_ladder_file(demo_ladder.by_label("Q4_K_M"), is_reference=False)
    tokens = dv._tokenize(crashing_pool, ref, SETTINGS, text="The cat sat on the mat and looked at the door.")
    results = dv.teacher_force(crashing_pool, [ref, other], [(tokens[:4], tokens[4:])], SETTINGS)
    assert all(r.ok for r in results), [r.error for r in results]
    assert _note(tmp_path)["signal"] == "SIGSEGV" and _note(tmp_path)["during"] == "score"
    assert _loaded_extra_bufts(crashing_pool, ref.path) is False
    assert _loaded_extra_bufts(crashing_pool, other.path) is False  # the note spared it the crash


def test_fingerprint_scoring_survives_the_extra_buffer_crash(demo_ladder, crashing_pool, tmp_path):
    f = demo_ladder.by_label("Q4_K_M")
    local = _Local(crashing_pool, f, SETTINGS)
    target = local.text_tokens("Paris is the capital of France.", None)
    scored = local.score(local.prompt_tokens(SETTINGS.messages("What is the capital of France?"), None), target, None)
    assert len(scored["positions"]) == len(target) > 0
    assert _note(tmp_path)["model"] == f.path
    assert _loaded_extra_bufts(crashing_pool, f.path) is False


def test_fingerprint_reuses_the_comparisons_worker_with_its_gpu_offload(demo_ladder, monkeypatch):
    """The fingerprint's local side loads a file exactly as run_contestant does (GPU layers from the offload
    mode), so the warm worker is reused: no reload to n_gpu_layers=0 on a GPU machine."""
    monkeypatch.setattr(hardware, "gpu_offload_available", lambda: True)  # "all" offloads every layer (-1)
    settings = RunSettings(max_tokens=8, n_ctx=512, gpu_offload="all")
    f = demo_ladder.by_label("Q2_K")
    pool = WorkerPool()
    try:
        assert run_contestant(pool, Contestant.from_ladder_file(f), settings, settings.messages("Hi")).ok
        pid, loaded = pool.pids()[f.path], pool._slots[f.path].worker.last_loaded
        _Local(pool, f, settings).prompt_tokens(settings.messages("Hi"), None)
        worker = pool._slots[f.path].worker
        assert worker.settings.n_gpu_layers == -1
        assert pool.pids()[f.path] == pid and worker.last_loaded is loaded  # not reloaded
    finally:
        pool.shutdown()


def test_a_dead_workers_error_carries_its_last_stderr_lines(demo_ladder, tmp_path, monkeypatch):
    monkeypatch.setenv(crash_fallback.INJECT_ENV, "1")
    worker = WorkerProcess()
    try:
        worker.load(LoadSettings(demo_ladder.by_label("Q2_K").path, 512, 1, 0, True))
        with pytest.raises(WorkerDied) as died:
            worker.call({"op": "tokenize", "text": "hi"}, {"tokenized"})
            worker.call({"op": "score", "prompt_tokens": [1, 2], "target_tokens": [3]}, {"scored"})
    finally:
        worker.shutdown()
    assert died.value.signal_name == "SIGSEGV"
    assert "injected extra-buffer crash" in died.value.output
    assert "injected extra-buffer crash" in died.value.describe() and "during score" in died.value.describe()


def test_a_refused_loads_error_carries_llama_cpps_own_reason(demo_ladder, tmp_path):
    """llama-cpp-python silences stderr while it loads; the worker's log capture still gets the reason out."""
    import shutil

    cut = tmp_path / "cut.gguf"
    shutil.copy(demo_ladder.by_label("Q2_K").path, cut)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # header intact, tensor data missing
    worker = WorkerProcess()
    try:
        with pytest.raises(WorkerError) as refused:
            worker.load(LoadSettings(str(cut), 512, 1, 0, None))
    finally:
        worker.shutdown()
    assert "not within the file bounds" in str(refused.value)


def test_a_file_that_crashes_either_way_is_not_remembered_as_the_extra_buffer_crash(demo_ladder, tmp_path, monkeypatch):
    """A worker that dies with extra buffers on and again without them is a broken file (or a broken build), not
    the extra-buffer crash: its error says so, and no machine note turns repacking off for every later run."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    pool = WorkerPool(env={crash_fallback.INJECT_ENV: "always"})
    try:
        c = Contestant.from_ladder_file(demo_ladder.by_label("Q4_K_M"))
        r = run_contestant(pool, c, SETTINGS, SETTINGS.messages("Say hi."))
        assert not r.ok and "SIGSEGV" in (r.error or "")
        assert crash_fallback.remembered() is None and not (tmp_path / "machine.json").exists()
    finally:
        pool.shutdown()
