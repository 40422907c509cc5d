"""GPU code paths degrade cleanly to "no GPU" on a machine without one (CI has none)."""

from __future__ import annotations

import pytest

from workbench import hardware
from workbench.compare import RunSettings


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
    from workbench.benchmark import Figure, parse_llama_bench_json, ratio, summarize

    fig = summarize([100.0, 110.0, 90.0])
    assert fig.mean == pytest.approx(100.0) and fig.sd == pytest.approx(10.0) and fig.median == 100.0 and fig.n == 3
    assert ratio(Figure(95.0, 1.0, 3, 96.0), Figure(100.0, 2.0, 3, 100.0)) == pytest.approx(0.96)
    assert ratio(None, fig) is None and ratio(fig, Figure(0.0, 0.0, 1)) is None
    text = """[{"model_filename": "/m/a.gguf", "n_prompt": 128, "n_gen": 0, "avg_ts": 700.5, "stddev_ts": 5.0,
                 "samples_ts": [695.0, 700.0, 706.5]},
                {"model_filename": "/m/a.gguf", "n_prompt": 0, "n_gen": 64, "avg_ts": 90.0, "stddev_ts": 1.0,
                 "samples_ts": [89.0, 90.0, 91.0]}]"""
    parsed = parse_llama_bench_json(text)
    assert parsed["/m/a.gguf"]["pp"].mean == 700.5 and parsed["/m/a.gguf"]["pp"].median == 700.0
    assert parsed["/m/a.gguf"]["tg"].n == 3 and parsed["/m/a.gguf"]["tg"].sd == 1.0
