"""Estimated decode speed on a target: bytes read per token over memory bandwidth, calibrated here.

Decoding one token reads every weight once and the whole KV cache held so far; on CPUs and GPUs alike that
streaming, not arithmetic, bounds decode for models much larger than the caches. So

    tok/s ≈ efficiency × bandwidth / bytes per token

where `efficiency` is the share of the bandwidth llama.cpp's decode actually reaches. It is calibrated on this
machine: measured decode tok/s × bytes per token ÷ the measured copy bandwidth, the median over stored,
undisturbed CPU runs of files still on disk. With no such runs it is an assumption (50%), and says so. Every
estimate carries the list of assumptions it rests on; it is an estimate, never a measurement.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from workbench.core import hardware
from workbench.decide.targets import TargetFit, TargetProfile, fit_on_target, kv_bytes
from workbench.files import fit
from workbench.files.gguf_info import GgufError, read_header

DEFAULT_EFFICIENCY = 0.5
MIN_DECODE_STEPS = 8  # shorter decode windows are too noisy to calibrate with
MAX_SAMPLES = 200
SMALL_MODEL_BYTES = 2**30  # below this per token, fixed per-token costs are not negligible against streaming
_HEADERS: dict[tuple[str, float], Any] = {}  # (path, mtime) -> GgufInfo: a tokenizer can take seconds to parse


def bytes_per_token(info: Any, n_ctx: int, kv_type_k: str = "f16", kv_type_v: str = "f16",
                    weights_bytes: int | None = None) -> int:
    """Bytes a decode step reads: all the weights (an upper bound: the token-embedding lookup reads one row,
    though a tied output head reads the whole table) plus the KV cache of `n_ctx` tokens."""
    weights = int(weights_bytes if weights_bytes is not None else info.tensor_bytes)
    return weights + _kv_read(info, n_ctx, kv_type_k, kv_type_v)


def _kv_read(info: Any, n_ctx: int, kv_type_k: str, kv_type_v: str) -> int:
    """KV bytes of n_ctx tokens (unpadded: attention reads the cells in use)."""
    if n_ctx <= 0:
        return 0
    padded = kv_bytes(info, n_ctx, kv_type_k, kv_type_v)
    return int(padded * n_ctx / fit.padded_ctx(n_ctx))


@dataclass
class Calibration:
    """The share of measured bandwidth llama.cpp's decode reached on this machine (None: nothing to calibrate on)."""

    efficiency: float | None
    bandwidth_gbs: float | None  # the copy rate measured here the ratio is relative to (the highest of several)
    samples: int
    source: str
    spread: tuple[float, float] | None = None  # lowest and highest ratio among the samples
    threads: list[int] = field(default_factory=list)  # the thread counts the samples' decodes (and copies) used

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _header(path: str) -> Any:
    import os

    key = (path, os.path.getmtime(path))
    if key not in _HEADERS:
        if len(_HEADERS) >= 256:  # bounded: drop the oldest
            _HEADERS.pop(next(iter(_HEADERS)))
        _HEADERS[key] = read_header(path, check_arch=False)
    return _HEADERS[key]


def calibrate(store: Any, *, bandwidth: hardware.MemoryBandwidth | None = None,
              limit: int = MAX_SAMPLES) -> Calibration:
    """The median decode efficiency of stored, local, undisturbed, CPU-only results of files still on disk.

    For each: bytes per token at the context the decode attended to on average (prompt + half the completion),
    times the measured decode tok/s, over the copy bandwidth measured here with the same number of threads the
    decode used (a 1-thread decode cannot stream what all cores can; the ratio is llama.cpp's share of what its
    threads could copy). `bandwidth` fixes the figure instead (tests).
    """
    ratios: list[float] = []
    used: dict[int, float] = {}
    for r in store.decode_samples(limit):
        if (r.get("decode_steps") or r.get("completion_tokens") or 0) < MIN_DECODE_STEPS:
            continue
        try:
            info = _header(str(r["file"]))
        except (GgufError, OSError, ValueError):
            continue  # the file is gone or unreadable: its speed cannot be turned into bytes
        metrics = r.get("metrics") or {}
        kv_k = str(metrics.get("kv_type_k") or "f16")
        kv_v = str(metrics.get("kv_type_v") or kv_k)
        attended = int((r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0) / 2)
        try:
            bpt = bytes_per_token(info, attended, kv_k, kv_v)
        except ValueError:
            continue
        n_threads = (r.get("settings") or {}).get("n_threads")
        threads = n_threads if isinstance(n_threads, int) and n_threads > 0 else None
        bw = bandwidth or hardware.measure_memory_bandwidth(threads=threads)
        used[bw.threads] = bw.gbs
        ratios.append(float(r["decode_tok_s"]) * bpt / (bw.gbs * 1e9))
    if not ratios:
        return Calibration(None, None, 0, "no calibration: no undisturbed CPU decode of a file still on disk is "
                                          "stored here yet (run a comparison to calibrate)")
    eff = statistics.median(ratios)
    copy = ", ".join(f"{gbs:.1f} GB/s with {t} thread(s)" for t, gbs in sorted(used.items()))
    return Calibration(eff, max(used.values()), len(ratios),
                       f"calibrated by the ratio measured on this machine: decode reached {eff:.0%} of the copy "
                       f"bandwidth measured here with as many threads ({copy}; median of {len(ratios)} run "
                       "result(s))", (min(ratios), max(ratios)), sorted(used))


@dataclass
class SpeedEstimate:
    """An estimated decode speed on a target, with everything it assumes."""

    tok_s: float | None
    bytes_per_token: int
    bandwidth_gbs: float  # the bandwidth the estimate used (RAM, VRAM, or the blend of a partial offload)
    efficiency: float
    assumptions: list[str]
    label: str = "estimate"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_decode(info: Any, target_fit: TargetFit, profile: TargetProfile, calibration: Calibration,
                    n_ctx: int | None = None, kv_type_k: str | None = None, kv_type_v: str | None = None,
                    weights_bytes: int | None = None) -> SpeedEstimate:
    """Decode tok/s on `profile` in the placement `target_fit` found, with the context full (n_ctx tokens cached).

    CPU only: bytes per token over RAM bandwidth. All on the GPU: over VRAM bandwidth. Partial offload: the
    offloaded layers' share over VRAM plus the rest over RAM (the two run one after the other per token).
    """
    n_ctx = int(n_ctx or target_fit.n_ctx)
    kv_k = kv_type_k or target_fit.kv_type_k
    kv_v = kv_type_v or target_fit.kv_type_v
    weights = int(weights_bytes if weights_bytes is not None else target_fit.weights_bytes)
    kv = _kv_read(info, n_ctx, kv_k, kv_v)
    bpt = weights + kv
    eff = calibration.efficiency if calibration.efficiency is not None else DEFAULT_EFFICIENCY
    assumptions = [calibration.source if calibration.efficiency is not None else
                   f"no calibration: assumed {DEFAULT_EFFICIENCY:.0%} of the bandwidth ({calibration.source})",
                   "bytes per token = all weights + the KV cache with the context full "
                   f"({n_ctx:,} tokens): a shorter conversation decodes faster"]
    if bpt < SMALL_MODEL_BYTES:
        assumptions.append("a small model: per-token overheads (thread sync, kernel launches, sampling) weigh more "
                           "than streaming its bytes, so the estimate reads high, most of all on a GPU")
    ram_bw = profile.ram_bandwidth_gbs
    vram_bw = profile.vram_bandwidth_gbs
    code = target_fit.verdict_code
    if code == fit.NO_FIT:
        return SpeedEstimate(None, bpt, ram_bw, eff, assumptions + ["does not fit: no speed"])
    if code != fit.CPU_ONLY and not vram_bw:
        return SpeedEstimate(None, bpt, ram_bw, eff, assumptions + ["the GPU's memory bandwidth is not given"])
    if code != fit.CPU_ONLY:
        assumptions.append("the same efficiency on the GPU as calibrated on the CPU (GPUs often reach more)")
    if profile.name != "this machine":
        assumptions.append(f"{profile.name}'s bandwidth is the figure in its profile "
                           f"({profile.source('ram_bandwidth_gbs' if code == fit.CPU_ONLY else 'vram_bandwidth_gbs')}"
                           "); the calibration is relative to a measured copy rate, which is usually below a "
                           "theoretical peak, so against a theoretical peak the estimate reads high")
    if code == fit.CPU_ONLY:
        seconds = bpt / (ram_bw * 1e9 * eff)
        used_bw = ram_bw
    elif code == fit.GPU_FULL:
        assert vram_bw is not None
        seconds = bpt / (vram_bw * 1e9 * eff)
        used_bw = vram_bw
    else:
        assert vram_bw is not None
        n_layers = target_fit.n_layers or 1
        share = min(1.0, target_fit.gpu_layers / n_layers)
        on_gpu = bpt * share
        seconds = on_gpu / (vram_bw * 1e9 * eff) + (bpt - on_gpu) / (ram_bw * 1e9 * eff)
        used_bw = bpt / seconds / 1e9 / eff
        assumptions.append(f"{target_fit.gpu_layers} of {n_layers} layers' bytes read from VRAM, the rest from RAM, "
                           "one after the other")
    return SpeedEstimate(1.0 / seconds, bpt, round(used_bw, 2), eff, assumptions)


def fit_and_speed(info: Any, profile: TargetProfile, calibration: Calibration, *, n_ctx: int, kv_type_k: str = "f16",
                  kv_type_v: str = "f16") -> tuple[TargetFit, SpeedEstimate]:
    """Where it runs on the target and how fast it would decode there (one call for tables and reports)."""
    f = fit_on_target(info, profile, n_ctx=n_ctx, kv_type_k=kv_type_k, kv_type_v=kv_type_v)
    return f, estimate_decode(info, f, profile, calibration)
