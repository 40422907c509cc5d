"""The fit prediction against measured peak RSS, for every file of the embedded ladder, on this machine.

Each file runs in a fresh worker process (a fresh pool: a reused worker's VmHWM would carry an earlier model's
peak), n_ctx 2048, a short prompt, CPU only. Measured on the 2-core AMD EPYC (AVX2) dev box, peak RSS was
deterministic to 0.1 MiB over repeated runs; predicted / measured MiB (64 tokens generated):

  extra buffers on (llama.cpp's default): F16 381.3/369.6 (+3.2%), Q8_0 261.1/249.3 (+4.7%),
    Q5_K_M 229.9/219.0 (+5.0%), Q4_K_M 231.1/220.3 (+4.9%), Q2_K 249.8/238.3 (+4.8%)
  extra buffers off (after a crash fallback): F16 +3.2%, Q8_0 +4.7%, Q5_K_M +5.0%, Q4_K_M 223.5/212.6 (+5.1%),
    Q2_K 207.1/196.1 (+5.6%)

With extra buffers on, weights the CPU repacks (here Q2_K's 42.7 MiB of Q4_0 fallback tensors, Q4_K_M's 7.6 MiB
of Q4_K) are held twice; before fit.py counted them Q2_K was predicted 13% low. The prediction runs high by 3-6%
because it assumes a full 512-token micro-batch of activations and a short prompt touches fewer pages.
"""

from __future__ import annotations

import pytest

from workbench.core import crash_fallback
from workbench.engine.pool import WorkerPool
from workbench.files import fit
from workbench.files.gguf_info import read_header
from workbench.runs.compare import contestants_for, run_comparison
from workbench.runs.contestants import RunSettings

pytestmark = pytest.mark.slow
BOUND = 0.10
N_CTX = 2048
MiB = 2**20


def measure(demo_ladder) -> list[tuple[str, int, int]]:
    """(label, predicted, measured) for every file of the demo ladder, each in a fresh worker."""
    pool = WorkerPool()
    try:
        comparison = run_comparison(pool, contestants_for(demo_ladder, demo_ladder.labels()),
                                    "Explain in three sentences why the sky is blue.",
                                    RunSettings(max_tokens=8, n_ctx=N_CTX, gpu_offload="cpu"))
    finally:
        pool.shutdown()
    assert comparison.all_ok, [r.error for r in comparison.results]
    out = []
    for r in comparison.results:
        repacked = r.settings.get("use_extra_bufts")  # as the worker loaded it (a crash fallback turns it off)
        assert repacked is not None
        p = fit.predict(read_header(r.file), n_ctx=N_CTX, gpus=[], ram_available_bytes=2**40, repack_cpu=repacked)
        out.append((r.label, p.predicted_bytes, r.peak_rss_bytes))
    return out


def check(rows: list[tuple[str, int, int]]) -> None:
    report = ", ".join(f"{label} {pred / MiB:.1f}/{meas / MiB:.1f} MiB ({100 * (pred - meas) / meas:+.1f}%)"
                       for label, pred, meas in rows)
    assert len(rows) == 5 and all(abs(pred - meas) / meas <= BOUND for _, pred, meas in rows), report


def test_fit_within_10_percent_without_extra_buffers(demo_ladder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crash_fallback, "use_extra_bufts_setting", lambda: False)
    check(measure(demo_ladder))


def test_fit_within_10_percent_with_llama_cpp_defaults(demo_ladder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crash_fallback, "use_extra_bufts_setting", lambda: None)  # a machine that never crashed
    check(measure(demo_ladder))


def test_a_variant_is_predicted_with_its_own_cache_and_context(demo_ladder) -> None:
    """A stored variant's result is checked against the prediction for what it loaded (its KV types, its context),
    not the run's defaults: otherwise every q4_0 cache looks 20% over-predicted on the Hardware page."""
    from workbench.models.fit_report import predict_for_result
    from workbench.storage.rows import StoredResult

    path = demo_ladder.by_label("Q4_K_M").path

    def stored(metrics: dict) -> StoredResult:
        return StoredResult(id=1, run_id=1, position=0, label="Q4_K_M", file=path, metrics=metrics)

    plain = predict_for_result(stored({}), {"n_ctx": 2048})
    variant = predict_for_result(stored({"kv_type_k": "q8_0", "kv_type_v": "q4_0", "n_ctx": 8192}), {"n_ctx": 2048})
    assert (plain.n_ctx, plain.kv_type, plain.kv_type_v) == (2048, "f16", "f16")
    assert (variant.n_ctx, variant.kv_type, variant.kv_type_v) == (8192, "q8_0", "q4_0")
    hostile = predict_for_result(stored({"kv_type_k": 7, "n_ctx": "big"}), {"n_ctx": 1024})
    assert (hostile.n_ctx, hostile.kv_type) == (1024, "f16")
