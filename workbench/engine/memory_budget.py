"""How much memory the warm worker pool may keep loaded, and which idle workers to evict to stay within it.

Workers stay warm between prompts, one process per model file; with real models, keeping every one loaded
ends in the kernel's out-of-memory killer. So the pool keeps warm only what fits a budget, counted in
*predicted* bytes (`fit.predict` for each worker's load settings), because a worker's real peak is reached
only after it loads, and by then it is too late to say no.

The budget:

* host RAM, automatic: psutil's available RAM + the RAM predicted for the pool's own live workers (they
  would give it back if evicted), minus headroom: max(1 GiB, 10% of total RAM) stays free for the OS,
  the app and everything else.
* host RAM, set: `pool.set_memory_budget(bytes)` (the Hardware page) wins over the environment variable
  `WORKBENCH_MEMORY_BUDGET` (`6GiB`, `500MiB`, `8GB`, `1.5G`, plain bytes), which wins over the automatic
  figure. A set budget is used as given, even above what is free now: the person setting it decides.
* VRAM, per GPU: its free VRAM + the VRAM predicted for our own workers on it, minus 10% of that.

Loading a model whose prediction exceeds the budget alone is refused with a plain message; otherwise the
least recently used idle workers are shut down until the live workers plus the new one fit. A worker in
use by a request is never chosen. The same "as if alone" view of the GPUs (free + ours) sizes each
contestant's GPU offload, so a contestant run later is not given fewer layers because earlier ones are warm.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from workbench.core.hardware import Gpu
from workbench.core.text_units import GiB, MiB, bytes_in_words

ENV = "WORKBENCH_MEMORY_BUDGET"
RAM_HEADROOM_MIN_BYTES = GiB
RAM_HEADROOM_FRACTION = 0.10
VRAM_HEADROOM_FRACTION = 0.10

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def parse_size(text: str, name: str = ENV) -> int:
    """Bytes from `6GiB`, `500MiB`, `8GB`, `1.5G` (binary) or `123456`; ValueError naming `name` otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", text or "")
    unit = m[2].lower() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"{name}={text!r} is not a memory size: use e.g. 6GiB, 500MiB, 8GB or a number of bytes")
    n = int(float(m[1]) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"{name}={text!r} must be more than zero (leave it unset for the automatic budget)")
    return n


def env_override() -> int | None:
    """The RAM budget `WORKBENCH_MEMORY_BUDGET` sets, or None when it is unset or empty."""
    text = os.environ.get(ENV, "").strip()
    return parse_size(text) if text else None


@dataclass(frozen=True)
class Need:
    """Predicted memory of one worker: host RAM and, per GPU index, VRAM."""

    ram_bytes: int = 0
    vram_bytes: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, prediction: Any) -> Need:
        """From a `fit.FitPrediction`."""
        vram = {prediction.gpu_index: prediction.vram_bytes} if prediction.vram_bytes and prediction.gpu_index is not None else {}
        return cls(int(prediction.ram_bytes), vram)

    def __add__(self, other: Need) -> Need:
        vram = dict(self.vram_bytes)
        for gpu, n in other.vram_bytes.items():
            vram[gpu] = vram.get(gpu, 0) + n
        return Need(self.ram_bytes + other.ram_bytes, vram)


def total(needs: Sequence[Need]) -> Need:
    out = Need()
    for n in needs:
        out = out + n
    return out


@dataclass(frozen=True)
class MemoryBudget:
    """What the warm workers together may hold; `source` is a short origin, `explanation` says it in words."""

    ram_bytes: int
    vram_bytes: dict[int, int]
    source: str  # "automatic" | "WORKBENCH_MEMORY_BUDGET" | "set on the Hardware page"
    explanation: str

    def over(self, used: Need) -> list[str]:
        """The resources `used` exceeds: "ram" and/or "gpu N"."""
        out = ["ram"] if used.ram_bytes > self.ram_bytes else []
        return out + [f"gpu {g}" for g, n in used.vram_bytes.items() if n > self.vram_bytes.get(g, 0)]

    def fits(self, used: Need) -> bool:
        return not self.over(used)


def compute_budget(own: Need, override: int | None = None, override_source: str = "set on the Hardware page",
                   ram_available_bytes: int | None = None, ram_total_bytes: int | None = None,
                   gpus: Sequence[Gpu] | None = None) -> MemoryBudget:
    """The budget for warm workers that together hold `own` (predicted) now; machine figures default to this one."""
    if ram_available_bytes is None or ram_total_bytes is None:
        vm = psutil.virtual_memory()
        ram_available_bytes = int(vm.available) if ram_available_bytes is None else ram_available_bytes
        ram_total_bytes = int(vm.total) if ram_total_bytes is None else ram_total_bytes
    if gpus is None:
        from workbench.core import hardware

        gpus = hardware.gpus()
    vram = {g.index: int((g.free_bytes + own.vram_bytes.get(g.index, 0)) * (1 - VRAM_HEADROOM_FRACTION)) for g in gpus}
    source = override_source
    if override is None:
        override, source = env_override(), ENV
    if override is not None:
        how = f"set by {ENV}" if source == ENV else source
        return MemoryBudget(int(override), vram, source, f"{bytes_in_words(override)} of RAM, {how}")
    headroom = max(RAM_HEADROOM_MIN_BYTES, int(ram_total_bytes * RAM_HEADROOM_FRACTION))
    ram = max(0, ram_available_bytes + own.ram_bytes - headroom)
    words = (f"automatic: {bytes_in_words(ram_available_bytes)} of RAM available + {bytes_in_words(own.ram_bytes)} held by warm models "
             f"− {bytes_in_words(headroom)} kept free (the larger of 1 GiB and 10% of {bytes_in_words(ram_total_bytes)})")
    if vram:
        words += "; per GPU: free VRAM + what warm models hold there, less 10%"
    return MemoryBudget(ram, vram, "automatic", words)


def predict_load(path: str, n_ctx: int, n_gpu_layers: int, use_extra_bufts: bool | None, gpus: Sequence[Gpu], *,
                 kv_type_k: str = "f16", kv_type_v: str | None = None) -> Any:
    """`fit.predict` for a worker's load settings: its context, its GPU layers (0: CPU), its repacking, its KV types."""
    from workbench.files import fit
    from workbench.files.gguf_info import read_header

    return fit.predict(read_header(path), n_ctx=n_ctx, gpus=list(gpus) if n_gpu_layers else [],
                       kv_type=kv_type_k, kv_type_v=kv_type_v,
                       ram_available_bytes=int(psutil.virtual_memory().available), gpu_layers=n_gpu_layers,
                       repack_cpu=use_extra_bufts is not False, file=os.path.basename(path))


def gpus_as_if_alone(gpus: Sequence[Gpu], own: Need) -> list[Gpu]:
    """Each GPU with the VRAM our own warm workers hold counted as free: a contestant is sized as if it ran
    alone, and the pool evicts to make that room."""
    return [replace(g, free_bytes=min(g.total_bytes, g.free_bytes + own.vram_bytes.get(g.index, 0))) for g in gpus]


@dataclass(frozen=True)
class Held:
    """One live worker as the eviction plan sees it."""

    key: str
    need: Need
    last_used: float
    in_use: bool


def plan_evictions(new: Need, held: Sequence[Held], budget: MemoryBudget) -> list[str] | None:
    """Keys of idle workers to shut down, least recently used first, so `held` + `new` fits the budget.

    Only workers that free a resource still over budget are chosen. None when even evicting every idle
    worker is not enough (the rest are in use); callers check `budget.fits(new)` alone first.
    """
    keep = list(held)
    victims: list[str] = []
    for h in sorted((h for h in held if not h.in_use), key=lambda h: h.last_used):
        over = budget.over(total([k.need for k in keep]) + new)
        if not over:
            break
        frees = ("ram" in over and h.need.ram_bytes > 0) or any(f"gpu {g}" in over for g in h.need.vram_bytes)
        if frees:
            keep.remove(h)
            victims.append(h.key)
    return victims if budget.fits(total([k.need for k in keep]) + new) else None


def breakdown(prediction: Any) -> str:
    """ "weights 7.6 GiB + KV cache 1.0 GiB + …" for an error message."""
    parts = [("weights", prediction.weights_bytes), ("KV cache", prediction.kv_bytes),
             ("compute", prediction.compute_bytes), ("runtime", prediction.overhead_bytes)]
    rest = prediction.ram_bytes - sum(n for _, n in parts)
    if not prediction.vram_bytes and rest > MiB:  # on the CPU the rest is what llama.cpp repacks
        parts.append(("repacked weights", rest))
    return " + ".join(f"{name} {bytes_in_words(n)}" for name, n in parts)


def does_not_fit_message(prediction: Any, need: Need, budget: MemoryBudget) -> str:
    """Why a model cannot be loaded even alone, and what to do about it."""
    file = os.path.basename(str(prediction.file))
    over = budget.over(need)
    if "ram" in over:
        what = (f"needs about {bytes_in_words(need.ram_bytes)} of RAM (predicted for {file} at n_ctx {prediction.n_ctx}: "
                f"{breakdown(prediction)}), the warm-model budget is {bytes_in_words(budget.ram_bytes)} ({budget.source})")
    else:
        g = int(over[0].split()[1])
        what = (f"needs about {bytes_in_words(need.vram_bytes[g])} of GPU {g} memory ({prediction.gpu_layers} layers of {file} "
                f"at n_ctx {prediction.n_ctx}), the budget there is {bytes_in_words(budget.vram_bytes.get(g, 0))} "
                "(free VRAM + warm models', less 10%)")
    return (f"{what} — choose a smaller quantization, a smaller context"
            f"{', fewer GPU layers' if 'ram' not in over else ''}, or raise the budget")
