"""GPU code paths degrade cleanly to "no GPU" on a machine without one (CI has none)."""

from __future__ import annotations

import statistics

import pytest

from workbench.core import hardware
from workbench.runs.contestants import RunSettings


def test_no_gpu_means_no_offload_and_no_gpu_figures(demo_ladder, monkeypatch):
    if hardware.gpus():
        pytest.skip("this machine has a GPU")
    assert hardware.process_gpu_memory(12345) is None
    assert not hardware.gpu_offload_available()
    assert "no GPU" in hardware.machine().one_line()
    path = demo_ladder.by_label("Q2_K").path
    for mode in ("auto", "all", "layers", "cpu"):
        assert RunSettings(gpu_offload=mode, n_gpu_layers=5).gpu_layers_for(path) == 0


def test_offload_modes_map_to_layers_when_a_gpu_is_usable(demo_ladder, monkeypatch):
    """With a (pretend) usable GPU, each mode asks llama.cpp for the right number of layers."""
    gpu = hardware.Gpu(0, "Test GPU", 8 * 2**30, 8 * 2**30, "test")
    monkeypatch.setattr(hardware, "gpus", lambda: [gpu])
    monkeypatch.setattr(hardware, "gpu_offload_available", lambda: True)
    path = demo_ladder.by_label("Q2_K").path
    assert RunSettings(gpu_offload="all").gpu_layers_for(path) == -1
    assert RunSettings(gpu_offload="cpu").gpu_layers_for(path) == 0
    assert RunSettings(gpu_offload="layers", n_gpu_layers=7).gpu_layers_for(path) == 7
    assert RunSettings(gpu_offload="auto").gpu_layers_for(path) == 31  # 30 layers + output fit in 8 GiB
    with pytest.raises(ValueError):
        RunSettings(gpu_offload="warp").validate()


def test_metrics_are_self_consistent_in_the_benchmark_maths():
    from workbench.runs.benchmark import Figure, parse_llama_bench_json, pooled, ratio, ratio_interval, summarize

    fig = summarize([100.0, 110.0, 90.0])
    assert fig.mean == pytest.approx(100.0) and fig.sd == pytest.approx(10.0) and fig.median == 100.0 and fig.n == 3
    assert ratio(Figure(95.0, 1.0, 3, 96.0), Figure(100.0, 2.0, 3, 100.0)) == pytest.approx(0.96)
    assert ratio(None, fig) is None and ratio(fig, Figure(0.0, 0.0, 1)) is None
    both = pooled([summarize([1.0, 2.0, 3.0]), summarize([10.0, 11.0]), Figure(4.0, 0.0, 1)])
    assert both.n == 6 and both.median == pytest.approx(3.5) and sorted(both.samples) == [1, 2, 3, 4, 10, 11]
    lo, hi = ratio_interval(summarize([95.0, 96.0, 97.0, 94.0]), summarize([99.0, 100.0, 101.0, 100.0]))
    assert 0.93 <= lo <= 0.955 <= hi <= 0.99  # spans the ratio of medians (0.955), within the samples' extremes
    assert ratio_interval(Figure(95.0, 1.0, 3, 96.0), fig) is None  # no samples, no interval
    text = """[{"model_filename": "/m/a.gguf", "n_prompt": 128, "n_gen": 0, "avg_ts": 700.5, "stddev_ts": 5.0,
                 "samples_ts": [695.0, 700.0, 706.5]},
                {"model_filename": "/m/a.gguf", "n_prompt": 0, "n_gen": 64, "avg_ts": 90.0, "stddev_ts": 1.0,
                 "samples_ts": [89.0, 90.0, 91.0]}]"""
    parsed = parse_llama_bench_json(text)
    assert parsed["/m/a.gguf"]["pp"].mean == 700.5 and parsed["/m/a.gguf"]["pp"].median == 700.0
    assert parsed["/m/a.gguf"]["tg"].n == 3 and parsed["/m/a.gguf"]["tg"].sd == 1.0
    assert parsed["/m/a.gguf"]["pp"].samples == [695.0, 700.0, 706.5]


def test_recorded_runs_round_trip_and_pool_type_by_type():
    import json

    from workbench.runs.benchmark import BenchRow, markdown_table, merge_runs, rows_from_json, summarize

    def run(lb: list[float], wb: list[float]) -> dict:
        rows = [BenchRow("Q4_K_M", "/m/q4.gguf", 100, summarize(lb), summarize(lb), summarize(wb), summarize(wb), 0.3, 0.2)]
        return json.loads(json.dumps({"rows": [r.to_dict() for r in rows]}))

    merged = merge_runs([rows_from_json(run([100.0, 102.0, 98.0], [97.0, 99.0, 95.0])),
                         rows_from_json(run([80.0, 82.0, 78.0], [79.0, 81.0, 77.0]))])
    assert len(merged) == 1 and merged[0].workbench_tg.n == 6 and merged[0].llama_bench_pp.n == 6
    assert merged[0].tg_ratio == pytest.approx(statistics.median([97, 99, 95, 79, 81, 77]) / statistics.median([100, 102, 98, 80, 82, 78]))
    assert "Q4_K_M" in markdown_table(merged, 128, 64) and "[" in markdown_table(merged, 128, 64)


def test_whether_the_build_offloads_is_asked_once_per_build_and_remembered(tmp_path, monkeypatch):
    """The child-process check costs a second or more with CUDA: asked once per llama.cpp build, kept in the
    machine's notes under the libraries' fingerprint, and asked again when the libraries change."""
    import subprocess

    from workbench.core import machine_notes

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    hardware.llama_gpu_offload_supported.cache_clear()
    first = hardware.llama_gpu_offload_supported()  # the real child process, this machine's real answer
    key = hardware._llama_libs_fingerprint()
    assert key and machine_notes.recall(hardware.GPU_OFFLOAD_SECTION, key) is first

    def no_child(*_a, **_k):
        raise AssertionError("asked the child again")

    monkeypatch.setattr(subprocess, "run", no_child)
    hardware.llama_gpu_offload_supported.cache_clear()
    assert hardware.llama_gpu_offload_supported() is first  # from the notes, no child

    libs = tmp_path / "other-build"
    libs.mkdir()
    (libs / "libllama.so").write_bytes(b"another build")
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(libs))
    assert hardware._llama_libs_fingerprint() not in (None, key)
    hardware.llama_gpu_offload_supported.cache_clear()
    with pytest.raises(AssertionError, match="asked the child again"):
        hardware.llama_gpu_offload_supported()  # a new build is asked afresh
    hardware.llama_gpu_offload_supported.cache_clear()
