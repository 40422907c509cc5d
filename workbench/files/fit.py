"""Will this GGUF fit here? Predict a worker's peak memory and say where it can run, before loading or downloading.

Peak memory of one worker process = weights + KV cache + compute buffers + runtime overhead:

* weights: the tensor bytes the GGUF header lists ("read"); llama.cpp maps them and touches every page.
* KV cache: n_layers x n_ctx x n_kv_heads x (key_length + value_length) x bytes per element of the cache
  type (f16 by default), n_ctx padded to 256 like llama.cpp does. Exact for a plain transformer, so "read"
  when every factor comes from the header; "estimated" for sliding-window, MLA or recurrent models and when
  factors had to be guessed.
* compute buffers ("estimated"): activations of one micro-batch; on a GPU the whole reserve, which is
  dominated by a micro-batch of logits (n_ubatch x n_vocab x 4 bytes).
* overhead: Python + llama.cpp libraries (measured: a fresh process that imports llama_cpp) plus the
  vocabulary structures llama.cpp builds at load ("estimated", scales with n_vocab).

Calibration (CPU, SmolLM2-135M F16/Q8_0/Q4_1/Q2_K, n_ctx 512-8192, 500-token prompt, flash attention auto):
import = 44.7 MiB, load beyond weights = 18.6 MiB, first decode batch = 15-17 MiB, KV exactly as above.
Only one model shape was measured: the per-n_vocab / per-width split of those constants is a guess to be
refined against more shapes. GPU figures reproduce the H100 per-process NVML numbers in ENVIRONMENT.md
(synthetic 1B model, n_ctx 2048, all layers offloaded) within +1% to +3%; host RSS with CUDA libraries
loaded is not calibrated.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gguf

from workbench.core.hardware import Gpu
from workbench.core.text_units import MiB, format_gb, format_gib, format_mib
from workbench.files import json_fields as jf
from workbench.files.quant_names import nominal_bits_per_weight

#: RSS of a fresh Python process after `import llama_cpp` (llama-cpp-python 0.3.36, x86-64 Linux; 3 runs,
#: 44.6-44.7 MiB). `measure_runtime_overhead()` re-measures it on the machine at hand.
RUNTIME_OVERHEAD_BYTES = 45 * MiB
#: Load-time structures beyond the weights: fixed part and per vocabulary entry (18.6 MiB at n_vocab 49,152).
LOAD_FIXED_BYTES = 4 * MiB
LOAD_PER_TOKEN_BYTES = 310
#: Compute buffer pages a CPU decode touches: fixed part + per micro-batch token (2 x n_ff + 6 x n_embd floats).
COMPUTE_FIXED_BYTES = 3 * MiB
#: Device memory the CUDA context takes in the worker (ENVIRONMENT.md: ~590 MiB on an H100, driver 580).
CUDA_CONTEXT_BYTES = 600 * MiB
# Host memory the CUDA runtime adds to a worker that offloads (measured on an H100, CUDA 13, driver 580:
# peak RSS was the file size + 324 MiB at every size from 0.5B to 8B; 324 MiB less our runtime overhead).
CUDA_HOST_RUNTIME_BYTES = 280 * 1024 * 1024
#: Fraction of free memory kept in reserve: the OS, the app and other workers need some too.
DEFAULT_HEADROOM = 0.10
DEFAULT_N_CTX = 2048  # the worker's default context
DEFAULT_N_UBATCH = 512  # the worker's micro-batch (n_batch = n_ubatch = min(n_ctx, 512))
KV_PAD = 256

GPU_FULL, GPU_PARTIAL, CPU_ONLY, NO_FIT = "gpu_full", "gpu_partial", "cpu", "no_fit"
READ, ESTIMATED, MEASURED = "read", "estimated", "measured"
HEADER_READ = "read from this file's header"  # `how` of a prediction from the file's own header
UNREADABLE = "header unreadable"


def unreadable(error: str | BaseException, name: str | None = None) -> str:
    """What a fit row says instead of a verdict when the file's header was refused or could not be fetched:
    "header unreadable: <why>" on one line, without the file's name in front (the row already names it)."""
    why = " ".join(str(error).split()) or type(error).__name__
    for prefix in (name, name and os.path.realpath(name), os.path.basename(name or "")):
        if prefix and why.startswith(f"{prefix}: "):
            why = why[len(prefix) + 2:]
            break
    return f"{UNREADABLE}: {why}"


def unreadable_summary(file: str, error: str | BaseException) -> dict[str, Any]:
    """The CLI's JSON row for a local file whose header could not be read: no prediction, no verdict."""
    return jf.fit_fields(file=file, name=os.path.basename(file), quant_type=None, predicted_bytes=None, verdict=None,
                         how=unreadable(error, file))


@dataclass
class FitPrediction:
    """Predicted peak memory of one worker running one GGUF, and where it can run. Bytes throughout."""

    file: str  # the GGUF's absolute path when read from a local file; a display name otherwise (a Hub file)
    quant_type: str | None
    predicted_bytes: int  # host RAM + device memory the worker needs in the placement the verdict names
    verdict: str  # "fits on the GPU entirely" | "partial offload: N of M layers on the GPU" | "CPU only" | "does not fit"
    verdict_code: str  # gpu_full | gpu_partial | cpu | no_fit
    n_ctx: int
    kv_type: str  # K's cache type (and V's unless kv_type_v says otherwise)
    n_layers: int | None
    gpu_layers: int  # layers to offload (n_gpu_layers) for the verdict; 0 on the CPU
    gpu_index: int | None
    ram_bytes: int  # predicted peak RSS of the worker
    vram_bytes: int  # predicted device memory (0 on the CPU)
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    basis: dict[str, str] = field(default_factory=dict)  # figure -> "read" | "estimated" | "measured"
    ram_available_bytes: int | None = None
    download_bytes: int | None = None
    disk_free_bytes: int | None = None
    disk_ok: bool | None = None  # None when no download was asked about
    notes: list[str] = field(default_factory=list)
    kv_type_v: str = "f16"  # V's cache type
    # the budget left in the memory that binds the placement (VRAM on the GPU, else RAM; negative: short by that
    # much), from the same arithmetic as the verdict, so "fits" and "spare >= 0" cannot disagree
    spare_bytes: int = 0
    spare_in: str = "RAM"

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON row for a local file, in the shared vocabulary (json_fields): file, name, quant_type,
        predicted_bytes, verdict, how (read from the file's own header)."""
        local = self.file if os.path.isabs(self.file) else None
        return jf.fit_fields(file=local, name=os.path.basename(self.file), quant_type=self.quant_type,
                             predicted_bytes=self.predicted_bytes, verdict=self.verdict, how=HEADER_READ)

    def to_dict(self) -> dict[str, Any]:
        """Everything, the summary keys first."""
        d = asdict(self)
        return {**self.summary(), **d}


# --------------------------------------------------------------------------------------------------------------
# the arithmetic
# --------------------------------------------------------------------------------------------------------------


def kv_bytes_per_element(kv_type: str) -> float:
    """Bytes per cached element for llama.cpp's cache types (f16, f32, bf16, q8_0, q4_0, q5_1, iq4_nl …)."""
    try:
        t = gguf.GGMLQuantizationType[kv_type.upper()]
    except KeyError:
        raise ValueError(f"unknown KV cache type '{kv_type}' (use f16, f32, bf16, q8_0, q5_1, q5_0, q4_1, q4_0 or iq4_nl)") from None
    block, size = gguf.GGML_QUANT_SIZES[t]
    return size / block


def padded_ctx(n_ctx: int) -> int:
    """The KV cache size llama.cpp allocates for a context of n_ctx tokens (padded to 256 cells)."""
    return int(math.ceil(n_ctx / KV_PAD) * KV_PAD)


def kv_cache_bytes(n_layers: int, n_ctx: int, n_kv_heads: int, key_length: int, value_length: int, kv_type: str = "f16",
                   kv_type_v: str | None = None) -> int:
    """n_layers x n_ctx x n_kv_heads x (key_length x bytes per K element + value_length x bytes per V element)
    (n_ctx as given: pad first). `kv_type` is K's type, and V's too unless `kv_type_v` is given."""
    per_k = kv_bytes_per_element(kv_type)
    per_v = kv_bytes_per_element(kv_type_v or kv_type)
    return int(n_layers * n_ctx * n_kv_heads * (key_length * per_k + value_length * per_v))


@dataclass
class _Shape:
    n_layers: int
    n_embd: int
    n_ff: int
    n_vocab: int
    n_kv_heads: int
    key_length: int
    value_length: int
    kv_basis: str
    notes: list[str]


def _shape(info: Any) -> _Shape:
    """Model dimensions from a GgufInfo, guessing (and saying so) where the header is silent."""
    md: dict[str, Any] = dict(getattr(info, "metadata", {}) or {})
    arch = getattr(info, "architecture", "") or ""
    notes: list[str] = []
    basis = READ

    def meta(suffix: str) -> Any:
        return md.get(f"{arch}.{suffix}")

    n_layers = info.block_count
    if not n_layers:
        n_layers, basis = 32, ESTIMATED
        notes.append("block_count missing: assumed 32 layers")
    n_embd = info.embedding_length or 4096
    n_head = info.head_count or max(1, n_embd // 128)
    n_kv = info.head_count_kv or n_head
    k_len = info.key_length or n_embd // n_head
    v_len = info.value_length or n_embd // n_head
    if not (info.head_count and info.embedding_length):
        basis = ESTIMATED
        notes.append("attention shape missing from the header: KV cache guessed")
    if isinstance(meta("attention.head_count_kv"), (list, tuple)):
        basis = ESTIMATED
        notes.append("KV heads vary by layer: the largest count was used (an upper bound)")
    if meta("attention.sliding_window"):
        basis = ESTIMATED
        notes.append("sliding-window attention: llama.cpp keeps a smaller cache for windowed layers (upper bound)")
    if meta("attention.kv_lora_rank"):
        basis = ESTIMATED
        notes.append("multi-head latent attention: the cache is compressed (upper bound)")
    if any(k.startswith(f"{arch}.ssm.") or k.startswith(f"{arch}.wkv.") for k in md):
        basis = ESTIMATED
        notes.append("recurrent layers keep a fixed-size state, not a per-token cache (upper bound)")
    ff = meta("feed_forward_length")
    if isinstance(ff, (list, tuple)):
        ff = max(ff) if ff else None
    n_ff = int(ff) if ff else 4 * n_embd
    n_vocab = info.vocab_size or 32000
    return _Shape(int(n_layers), int(n_embd), int(n_ff), int(n_vocab), int(n_kv), int(k_len), int(v_len), basis, notes)


def compute_bytes_cpu(shape: _Shape, n_ubatch: int, all_logits: bool) -> int:
    """Compute-buffer pages a CPU worker touches at peak: one micro-batch of activations, plus logits rows."""
    outputs = n_ubatch if all_logits else 1
    return int(COMPUTE_FIXED_BYTES + n_ubatch * 4 * (2 * shape.n_ff + 6 * shape.n_embd) + 2 * outputs * shape.n_vocab * 4)


def compute_bytes_gpu(shape: _Shape, n_ubatch: int) -> int:
    """A GPU's compute reserve is allocated whole; ggml reuses activation memory for the logits, so the larger
    of a micro-batch of logits and a micro-batch of activations (H100: 88 MiB measured, 96 MiB predicted)."""
    return int(n_ubatch * 4 * max(shape.n_vocab, 2 * shape.n_ff + 6 * shape.n_embd))


def load_overhead_bytes(shape: _Shape) -> int:
    return int(LOAD_FIXED_BYTES + LOAD_PER_TOKEN_BYTES * shape.n_vocab)


# --------------------------------------------------------------------------------------------------------------
# prediction
# --------------------------------------------------------------------------------------------------------------


def predict(
    info: Any,
    *,
    n_ctx: int | None = None,
    kv_type: str = "f16",
    kv_type_v: str | None = None,
    n_ubatch: int = DEFAULT_N_UBATCH,
    all_logits: bool = False,
    ram_available_bytes: int | None = None,
    gpus: Sequence[Gpu] | None = None,
    gpu_offload: bool = True,
    weights_bytes: int | None = None,
    download_bytes: int | None = None,
    disk_free_bytes: int | None = None,
    runtime_overhead_bytes: int = RUNTIME_OVERHEAD_BYTES,
    headroom: float = DEFAULT_HEADROOM,
    file: str | None = None,
    repack_cpu: bool | None = None,
    gpu_layers: int | None = None,
) -> FitPrediction:
    """Predict peak memory for a GGUF (a `gguf_info.GgufInfo`, local or read from the Hub) and give a verdict.

    RAM, GPUs and free disk default to this machine now; pass them to ask about another (tests do).
    `weights_bytes` overrides the header's tensor bytes (a split model's first shard lists only its own).
    `all_logits` is for teacher-forced evaluation, which keeps logits for every prompt position.
    `gpu_offload=False` for a llama.cpp build without GPU support.
    `kv_type` is the K cache's type and V's too unless `kv_type_v` is given (llama.cpp names: f16, q8_0, q4_0 …).
    `gpu_layers` predicts a placement already chosen (a worker's n_gpu_layers: -1 = all, 0 = CPU) instead of
    the most that fits; the figures are then what that placement needs, whether or not it fits.
    """
    if ram_available_bytes is None or gpus is None:
        from workbench.core.hardware import machine

        m = machine()
        ram_available_bytes = m.ram_available_bytes if ram_available_bytes is None else ram_available_bytes
        gpus = m.gpus if gpus is None else gpus
    shape = _shape(info)
    notes = list(shape.notes)
    ctx_train = getattr(info, "context_length", None)
    n_ctx = int(n_ctx or min(DEFAULT_N_CTX, ctx_train or DEFAULT_N_CTX))
    if ctx_train and n_ctx > ctx_train:
        notes.append(f"n_ctx {n_ctx} exceeds the {ctx_train} tokens the model was trained for")
    n_ub = max(1, min(n_ubatch, n_ctx))
    type_v = (kv_type_v or kv_type).lower()
    if type_v not in ("f16", "f32", "bf16"):
        notes.append("a quantized V cache needs flash attention")

    weights = int(weights_bytes if weights_bytes is not None else info.tensor_bytes)
    kv = kv_cache_bytes(shape.n_layers, padded_ctx(n_ctx), shape.n_kv_heads, shape.key_length, shape.value_length, kv_type,
                        type_v)
    overhead = int(runtime_overhead_bytes + load_overhead_bytes(shape))
    compute_cpu = compute_bytes_cpu(shape, n_ub, all_logits)
    basis = {
        "weights": READ if weights_bytes is None else ESTIMATED,
        "kv_cache": shape.kv_basis,
        "compute": ESTIMATED,
        "overhead": ESTIMATED,
        "total": ESTIMATED,
    }
    if repack_cpu is None:  # llama.cpp's default, unless this machine is known to crash with it
        from workbench.core.crash_fallback import use_extra_bufts_setting

        repack_cpu = use_extra_bufts_setting() is not False
    repack = repack_bytes(info) if repack_cpu else 0
    if repack:
        notes.append(f"includes {format_mib(repack)} of weights llama.cpp repacks for this CPU (extra buffer types)")
    cpu_total = overhead + weights + kv + compute_cpu + repack
    ram_budget = int(ram_available_bytes * (1 - headroom))

    pred = FitPrediction(
        file=file or jf.abs_file(getattr(info, "path", None)) or "?",
        quant_type=getattr(info, "quant_type", None),
        predicted_bytes=cpu_total,
        verdict="",
        verdict_code="",
        n_ctx=n_ctx,
        kv_type=kv_type.lower(),
        kv_type_v=type_v,
        n_layers=shape.n_layers,
        gpu_layers=0,
        gpu_index=None,
        ram_bytes=cpu_total,
        vram_bytes=0,
        weights_bytes=weights,
        kv_bytes=kv,
        compute_bytes=compute_cpu,
        overhead_bytes=overhead,
        basis=basis,
        ram_available_bytes=int(ram_available_bytes),
        notes=notes,
    )

    use_gpus = gpus if gpu_offload and gpu_layers != 0 else []
    pred.spare_bytes = ram_budget - cpu_total
    placed = _place_on_gpu(pred, info, shape, use_gpus, n_ub, ram_budget, headroom, gpu_layers) if use_gpus else False
    if not placed:
        if cpu_total <= ram_budget:
            pred.verdict, pred.verdict_code = "CPU only", CPU_ONLY
        else:
            pred.verdict, pred.verdict_code = "does not fit", NO_FIT
            pred.notes.append(
                f"needs about {format_gib(cpu_total)}, {format_gib(ram_available_bytes)} of RAM is free "
                f"(keeping {headroom:.0%} in reserve)"
            )

    if download_bytes is not None:
        free = disk_free_bytes if disk_free_bytes is not None else free_disk_bytes()
        pred.download_bytes, pred.disk_free_bytes = int(download_bytes), int(free)
        pred.disk_ok = download_bytes <= free
        if not pred.disk_ok:
            pred.notes.append(f"the download needs {format_gb(download_bytes)}, the disk has {format_gb(free)} free")
    return pred


def repack_bytes(info: Any) -> int:
    """Extra host memory when llama.cpp's CPU backend repacks weights (its "extra buffer types").

    On x86 with AVX2 (and Arm with dot-product support) Q4_0, Q4_K and IQ4_NL matrices are copied
    into an interleaved layout while the mmapped originals stay resident: measured on an AVX2 CPU,
    a 0.5B Q4_K_M worker's peak RSS was 146 MiB above the plain prediction with 167 MiB of Q4_K
    matrices. Callers pass `repack_cpu=False` when extra buffers are off (crash_fallback).
    """
    from workbench.core.hardware import cpu_supports_repack

    return int(getattr(info, "repackable_bytes", 0) or 0) if cpu_supports_repack() else 0


def _non_layer_weight_bytes(info: Any, shape: _Shape) -> int:
    """Token embeddings stay in host memory even with every layer offloaded; their size, estimated from the type."""
    bits = nominal_bits_per_weight(getattr(info, "quant_type", "") or "") or 8.0
    return int(min(shape.n_vocab * shape.n_embd * bits / 8, info.tensor_bytes * 0.5))


def _place_on_gpu(pred: FitPrediction, info: Any, shape: _Shape, gpus: Sequence[Gpu], n_ub: int, ram_budget: int,
                  headroom: float, force_layers: int | None = None) -> bool:
    """Fill in a GPU verdict (whole model, else as many layers as fit) on the GPU with most free memory;
    with `force_layers`, the figures for exactly that many layers (more than n_layers or negative: all)."""
    if not gpus:
        return False
    gpu = max(gpus, key=lambda g: g.free_bytes)
    vram_budget = int(gpu.free_bytes * (1 - headroom))
    embd_host = _non_layer_weight_bytes(info, shape)
    compute_gpu = compute_bytes_gpu(shape, n_ub)
    host_base = pred.overhead_bytes + embd_host + compute_bytes_cpu(shape, 1, False)
    layer_w = max(0, pred.weights_bytes - embd_host)  # repeating layers + output head
    per_layer = layer_w / shape.n_layers + pred.kv_bytes / shape.n_layers

    full_vram = CUDA_CONTEXT_BYTES + layer_w + pred.kv_bytes + compute_gpu
    pred.basis.update(vram=ESTIMATED)
    # Peak RSS also counts the model file's pages, read through mmap while the weights are uploaded,
    # and the CUDA runtime's host memory; neither must stay resident, so the verdict uses host_base.
    uploaded_pages = layer_w + CUDA_HOST_RUNTIME_BYTES
    forced_all = force_layers is not None and (force_layers < 0 or force_layers > shape.n_layers)
    if forced_all or (force_layers is None and full_vram <= vram_budget and host_base <= ram_budget):
        _set_gpu(pred, gpu, GPU_FULL, "fits on the GPU entirely", shape.n_layers + 1, host_base + uploaded_pages,
                 full_vram, compute_gpu)
        vram_left, ram_left = vram_budget - full_vram, ram_budget - host_base
        pred.spare_bytes, pred.spare_in = (vram_left, "VRAM") if vram_left <= ram_left else (ram_left, "RAM")
        return True
    if force_layers is not None:
        layers = force_layers
    else:
        layers = int((vram_budget - CUDA_CONTEXT_BYTES - compute_gpu) // per_layer) if per_layer else 0
    layers = max(0, min(layers, shape.n_layers))
    if layers >= 1:
        vram = int(CUDA_CONTEXT_BYTES + compute_gpu + layers * per_layer)
        host = int(pred.overhead_bytes + pred.weights_bytes + pred.kv_bytes + pred.compute_bytes - layers * per_layer)
        # VRAM is filled by design, so the RAM holding the rest binds; when that is short, the model does not fit
        # and this is by how much, with as many layers on the GPU as its memory takes
        pred.spare_bytes, pred.spare_in = ram_budget - host, "RAM"
        if force_layers is not None or host <= ram_budget:
            _set_gpu(pred, gpu, GPU_PARTIAL, f"partial offload: {layers} of {shape.n_layers} layers on the GPU", layers,
                     host + int(layers * layer_w / shape.n_layers) + CUDA_HOST_RUNTIME_BYTES, vram, compute_gpu)
            return True
    pred.notes.append(f"GPU {gpu.index} ({gpu.name}) has {format_gib(gpu.free_bytes)} free: not enough for a useful offload")
    return False


def _set_gpu(pred: FitPrediction, gpu: Gpu, code: str, verdict: str, layers: int, host: int, vram: int, compute_gpu: int) -> None:
    pred.verdict, pred.verdict_code = verdict, code
    pred.gpu_layers, pred.gpu_index = layers, gpu.index
    pred.ram_bytes, pred.vram_bytes = int(host), int(vram)
    pred.compute_bytes = int(compute_gpu)
    pred.predicted_bytes = int(host + vram)
    pred.notes.append(f"on GPU {gpu.index} ({gpu.name}); includes ~{format_mib(CUDA_CONTEXT_BYTES)} for the CUDA context")


# --------------------------------------------------------------------------------------------------------------
# helpers for callers
# --------------------------------------------------------------------------------------------------------------


def predict_many(infos: Iterable[Any], **kwargs: Any) -> list[FitPrediction]:
    """One prediction per GGUF with the same settings (machine figures read once)."""
    if kwargs.get("ram_available_bytes") is None or kwargs.get("gpus") is None:
        from workbench.core.hardware import machine

        m = machine()
        if kwargs.get("ram_available_bytes") is None:
            kwargs["ram_available_bytes"] = m.ram_available_bytes
        if kwargs.get("gpus") is None:
            kwargs["gpus"] = m.gpus
    return [predict(i, **kwargs) for i in infos]


def warm_together_bytes(predictions: Iterable[FitPrediction]) -> int:
    """Host RAM for keeping every contestant's worker warm at once (the pool keeps only what fits its budget)."""
    return sum(p.ram_bytes for p in predictions)


def summaries_json(predictions: Iterable[FitPrediction]) -> str:
    """The CLI's JSON: [{"file", "name", "quant_type", "predicted_bytes", "verdict", "how"}]."""
    return json.dumps([p.summary() for p in predictions], indent=2)


def free_disk_bytes(path: Path | str | None = None) -> int:
    """Free bytes where downloads go (the HF cache, or its nearest existing parent)."""
    if path is None:
        from workbench.core.paths import hf_cache_dir as cache_dir

        path = cache_dir()
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def measure_runtime_overhead(python: str | None = None) -> int:
    """RSS of a fresh Python process after `import llama_cpp`: the fixed cost of every worker, measured here."""
    code = "import psutil, llama_cpp; print(psutil.Process().memory_info().rss)"
    out = subprocess.run([python or sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip().splitlines()[-1])
