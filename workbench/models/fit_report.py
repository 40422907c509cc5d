"""How good is the fit prediction here? Predicted peak memory against what stored runs measured.

For every stored result that measured a worker's peak RSS, the prediction is recomputed from the file's GGUF
header with the run's own settings (context size, GPU layers): the verdict half of `fit.predict` depends on
this machine now, the memory half only on the file and the settings, so old runs stay comparable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workbench.core.hardware import Gpu
from workbench.files import fit
from workbench.files.gguf_info import GgufError, read_header
from workbench.storage.rows import StoredResult, StoredRun

TEACHER_FORCED_KINDS = ("diverge", "diverge-text")  # keep logits for every position


@dataclass
class FitCheck:
    run_id: int
    kind: str
    label: str
    quant_type: str | None
    file: str
    n_ctx: int
    gpu_layers: int
    predicted_bytes: int  # predicted peak RSS of the worker (host memory)
    measured_bytes: int  # measured peak RSS (VmHWM)
    predicted_vram_bytes: int | None = None
    measured_vram_bytes: int | None = None

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_bytes - self.measured_bytes) / self.measured_bytes

    @property
    def vram_error_pct(self) -> float | None:
        if not self.predicted_vram_bytes or not self.measured_vram_bytes:
            return None
        return 100.0 * (self.predicted_vram_bytes - self.measured_vram_bytes) / self.measured_vram_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_pct": round(self.error_pct, 2),
                "vram_error_pct": None if self.vram_error_pct is None else round(self.vram_error_pct, 2)}


def predict_for_result(result: StoredResult, settings: dict[str, Any], kind: str = "compare",
                       gpus: list[Gpu] | None = None) -> fit.FitPrediction:
    """The prediction for one stored result, placed as the run placed it (CPU unless layers were offloaded)."""
    info = read_header(result.file or "", check_arch=False)
    layers = result.gpu_layers or 0
    metrics = result.metrics
    # a variant (runs.variants) ran with its own KV-cache types and context; older results have neither
    n_ctx = _int(metrics.get("n_ctx")) or _int(settings.get("n_ctx")) or fit.DEFAULT_N_CTX
    kv_k: str = metrics["kv_type_k"] if isinstance(metrics.get("kv_type_k"), str) else "f16"
    kv_v: str = metrics["kv_type_v"] if isinstance(metrics.get("kv_type_v"), str) else kv_k
    loaded: dict[str, Any] = metrics["settings"] if isinstance(metrics.get("settings"), dict) else {}
    # repacked weight copies exist only when the worker loaded with llama.cpp's extra buffer types
    repack = loaded.get("use_extra_bufts")
    all_logits, repack_cpu = kind in TEACHER_FORCED_KINDS, None if repack is None else bool(repack)
    if layers and gpus:
        return fit.predict(info, gpus=gpus, n_ctx=n_ctx, all_logits=all_logits, repack_cpu=repack_cpu,
                           kv_type=kv_k, kv_type_v=kv_v)
    return fit.predict(info, gpus=[], ram_available_bytes=2**62, n_ctx=n_ctx, all_logits=all_logits, repack_cpu=repack_cpu,
                       kv_type=kv_k, kv_type_v=kv_v)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def fit_checks(store: Any, limit: int = 50, gpus: list[Gpu] | None = None) -> tuple[list[FitCheck], list[str]]:
    """(checks for the newest stored results with a measured peak RSS, one-line notes on what was skipped)."""
    checks: list[FitCheck] = []
    missing: set[str] = set()
    for row in store.list_runs(limit=limit):
        run: StoredRun | None = store.get_run(row.id)
        if run is None or run.imported_from:  # another machine's memory, and paths not ours to open
            continue
        for r in run.results:
            if not r.peak_rss_bytes or not r.file or r.error:
                continue
            try:
                pred = predict_for_result(r, run.settings, run.kind or "compare", gpus)
            except (GgufError, OSError, ValueError):
                missing.add(r.file)
                continue
            checks.append(FitCheck(
                run_id=run.id, kind=run.kind or "compare", label=r.label, quant_type=r.quant_type,
                file=r.file, n_ctx=pred.n_ctx, gpu_layers=r.gpu_layers or 0,
                predicted_bytes=pred.ram_bytes, measured_bytes=r.peak_rss_bytes,
                predicted_vram_bytes=pred.vram_bytes or None, measured_vram_bytes=r.gpu_mem_bytes,
            ))
    notes = [f"{len(missing)} file(s) of older runs are no longer on disk, so their results were left out"] if missing else []
    return checks, notes
