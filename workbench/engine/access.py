"""The one way to a loaded worker: load settings, GPU offload, the pool's lease and the extra-buffer crash fallback.

Every caller that runs a local file (a comparison, an eval through it, divergence scoring, an endpoint
fingerprint's local side) goes through `WorkerAccess`, so they all load a file with the same `LoadSettings`
(a warm worker one of them loaded is reused by the others, never reloaded) and all survive llama.cpp's
extra-CPU-buffer crash the same way (core/crash_fallback.py): a worker that dies by a crash signal while
loading, or on its first decode since the load before anything reached the user, with extra buffers on, is
retried once without them, and the machine remembers it once that retry succeeds (a file that crashes either
way is broken, not a victim of extra buffers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from workbench.core import crash_fallback, hardware
from workbench.engine.pool import LoadSettings, WorkerDied, WorkerPool, WorkerProcess

T = TypeVar("T")

# GPU offload: "auto" offloads what the fit prediction says fits, "all" every layer, "layers" the
# given number (n_gpu_layers), "cpu" nothing. Without a usable GPU every mode runs on the CPU.
OFFLOAD_MODES = ("auto", "all", "layers", "cpu")
# Signals the extra-buffer crash can show up as (a SIGKILL is the OOM killer or Stop: not retried).
CRASH_SIGNALS_FOR_FALLBACK = {"SIGSEGV", "SIGABRT", "SIGILL", "SIGBUS", "SIGFPE"}

# on_status(status, payload): "loading" before each load attempt, "retrying" (payload["message"]) before the second.
OnStatus = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Placement:
    """How the caller wants a file loaded; the GPU layers are decided per file and machine (`gpu_layers`)."""

    n_ctx: int
    n_threads: int
    gpu_offload: str = "auto"
    n_gpu_layers: int = 0  # used by gpu_offload="layers"
    n_batch: int | None = None  # None: the worker's default; another size is another warm worker (runs.noise)
    n_seq: int | None = None  # None: one sequence; more is a context for generate_batch (runs.batched)
    type_k: str = "f16"  # KV-cache types (llama.cpp names); a quantized V cache loads with flash attention on
    type_v: str = "f16"

    def kv_default(self) -> bool:
        """llama.cpp's default cache (f16 K and V): loaded exactly as before variants existed."""
        return self.type_k == "f16" and self.type_v == "f16"

    def worker_key(self, path: str) -> str:
        """The pool key of this placement's worker: the path for the default cache (so every caller shares it, as
        before), the path plus the cache types otherwise (a variant stays warm beside the plain file)."""
        return path if self.kv_default() else f"{path}#kv={self.type_k}/{self.type_v}"


def gpu_layers(path: str, placement: Placement, pool: WorkerPool | None = None,
               gpus: Sequence[hardware.Gpu] | None = None) -> int:
    """Layers to offload for one file under `placement`'s offload mode (0 without a usable GPU).

    "auto" sizes every file as if it ran alone: the VRAM `pool`'s warm workers hold counts as free
    (the pool evicts them to make that room), so a contestant run later does not get fewer layers.
    `gpus` replaces this machine's GPUs (tests, or a machine described elsewhere).
    """
    if placement.gpu_offload == "cpu" or (gpus is None and not hardware.gpu_offload_available()):
        return 0
    if placement.gpu_offload == "all":
        return -1
    if placement.gpu_offload == "layers":
        return placement.n_gpu_layers
    from workbench.files import fit
    from workbench.files.gguf_info import read_header

    found = list(gpus) if gpus is not None else None
    if pool is not None:
        found = pool.gpus_as_if_alone(found)
    return fit.predict(read_header(path), n_ctx=placement.n_ctx * (placement.n_seq or 1), gpus=found,
                       kv_type=placement.type_k, kv_type_v=placement.type_v).gpu_layers


def _remembered_note() -> str:
    note = crash_fallback.remembered() or {}
    return (f"loaded without llama.cpp's extra CPU buffer types: this machine crashed with them "
            f"({note.get('signal') or 'signal'}) on {note.get('seen_at', 'an earlier run')}")


class WorkerAccess:
    """One caller's use of one file's warm worker, surviving the extra-buffer crash once.

    `fallback` says what the crash fallback did (None: extra buffers as llama.cpp likes them), for the
    caller's result. `during` is what the worker was doing when the last attempt ended: "load", or the
    op of the request that died. A caller that passes output on to the user as it arrives (streamed
    tokens) calls `output_started()`: a crash after that is not retried, the user already saw part of it.
    """

    def __init__(self, pool: WorkerPool, path: str, placement: Placement, on_status: OnStatus | None = None) -> None:
        self.pool, self.path, self.placement = pool, path, placement
        self._on_status = on_status
        self.use_extra_bufts = crash_fallback.use_extra_bufts_setting()
        self.fallback: str | None = _remembered_note() if self.use_extra_bufts is False else None
        self.during = "load"
        self._output_started = False
        self._worker: WorkerProcess | None = None
        self._crash: tuple[str | None, str | None, str] | None = None  # a crash to remember if the retry succeeds

    def load_settings(self) -> LoadSettings:
        """What the file is loaded with now: the same for every caller, so warm workers are shared."""
        p = self.placement
        kv = {} if p.kv_default() else {"type_k": p.type_k, "type_v": p.type_v}  # default: the settings as before
        return LoadSettings(self.path, p.n_ctx, p.n_threads, gpu_layers(self.path, p, self.pool),
                            self.use_extra_bufts, p.n_batch, p.n_seq, **kv)

    def output_started(self) -> None:
        self._output_started = True

    def run(self, use: Callable[[WorkerProcess, dict[str, Any] | None], T]) -> T:
        """`use(worker, loaded)` on the file's leased worker (`loaded`: the `loaded` event if it had to load,
        else None), once more without extra buffers if the first try died of their crash.

        Raises what the pool and `use` raise: DoesNotFit, WorkerError (WorkerCancelled), WorkerDied.
        """
        for attempt in (1, 2):
            self.during, self._output_started, self._worker = "load", False, None
            self._status("loading", {})
            try:
                with self.pool.lease(self.placement.worker_key(self.path), self.load_settings()) as (worker, loaded):  # in use: never evicted
                    self._worker = worker
                    self.during = "request"
                    result = use(worker, loaded)
                    if self._crash is not None:  # the retry without extra buffers worked: that was their crash
                        crash_fallback.remember_crash(*self._crash)
                        self._crash = None
                    return result
            except WorkerDied as died:
                if self.during != "load":
                    self.during = died.during or self.during
                if attempt == 1 and self._is_extra_bufts_crash(died):
                    self._fall_back(died)
                    continue
                raise
        raise AssertionError("unreachable")

    def _is_extra_bufts_crash(self, died: WorkerDied) -> bool:
        """Could this death be the extra-buffer crash? A crash signal with extra buffers on, while loading or
        on the first decode since the load, before any output reached the user."""
        if self.use_extra_bufts is False or died.signal_name not in CRASH_SIGNALS_FOR_FALLBACK:
            return False
        early = died.during == "load" or self.during == "load" or (self._worker is not None and self._worker.decodes == 0)
        return early and not self._output_started

    def _fall_back(self, died: WorkerDied) -> None:
        # remembered only once the retry without extra buffers succeeds: a file that crashes either way is broken,
        # and must not turn repacking off for every later run on this machine
        self._crash = (died.signal_name, self.during, self.path)
        self.use_extra_bufts = False
        self.fallback = (f"worker died by {died.signal_name} during {self.during} with llama.cpp's extra CPU "
                         "buffer types on; retried without them (remembered for this machine)")
        self._status("retrying", {"message": self.fallback})

    def _status(self, status: str, payload: dict[str, Any]) -> None:
        if self._on_status is not None:
            self._on_status(status, payload)


def memory_lines(pool: WorkerPool | None, worker: WorkerProcess, measured: dict[str, Any]) -> dict[str, Any]:
    """A result's memory as lines, each labelled by how it was obtained:

    - "predicted": fit.predict for the settings the worker loaded (its context × sequences, KV types, GPU layers);
    - "reported": llama.cpp's own buffer sizes from its load log (reserved bytes: a CPU compute buffer is reserved
      whole but only partly touched, so it can exceed what RSS shows);
    - "measured": the worker's peak RSS and GPU memory from `measured` (a `done` event's metrics).
    """
    from workbench.engine import memory_budget

    out: dict[str, Any] = {"reported": dict(worker.last_loaded.get("memory_reported") or {}),
                           "measured": {"peak_rss_bytes": measured.get("peak_rss_bytes"),
                                        "gpu_mem_bytes": measured.get("gpu_mem_bytes")}}
    s = worker.settings
    if s is None:
        return out
    try:
        gpus = (pool.gpus_as_if_alone() if pool is not None else hardware.gpus()) if s.n_gpu_layers else []
        p = memory_budget.predict_load(s.model_path, s.n_ctx * (s.n_seq or 1), s.n_gpu_layers, s.use_extra_bufts, gpus,
                                       kv_type_k=s.type_k or "f16", kv_type_v=s.type_v)
    except (OSError, ValueError):
        return out
    out["predicted"] = {"weights_bytes": p.weights_bytes, "kv_bytes": p.kv_bytes, "compute_bytes": p.compute_bytes,
                        "overhead_bytes": p.overhead_bytes, "total_bytes": p.predicted_bytes,
                        "ram_bytes": p.ram_bytes, "vram_bytes": p.vram_bytes}
    return out
