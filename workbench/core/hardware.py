"""What this machine has: CPU, RAM, GPUs (via NVML when present), and per-process GPU memory.

Every GPU function degrades to "no GPU" (an empty list or None) when NVML or a driver is missing,
so CPU-only machines never see an error from here.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import psutil

from workbench.core.text_units import GiB, format_gib


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    driver: str


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    physical_cores: int | None
    logical_cores: int
    ram_total_bytes: int
    ram_available_bytes: int
    gpus: list[Gpu] = field(default_factory=list)

    def one_line(self) -> str:
        """A short human summary, e.g. for the sidebar and reports."""
        ram = f"{format_gib(self.ram_total_bytes, 0)} RAM ({self.ram_available_bytes / GiB:.1f} free)"
        cores = f"{self.physical_cores or self.logical_cores} cores"
        gpu = "; ".join(f"{g.name} {format_gib(g.total_bytes, 0)}" for g in self.gpus) or "no GPU"
        return f"{self.cpu_model} · {cores} · {ram} · {gpu}"

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, falling back to platform info."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_fingerprint() -> str:
    """A stable id for this CPU model and its feature flags: facts learned about llama.cpp crashes key on it."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    except OSError:
        pass
    return hashlib.sha256(f"{cpu_model()}|{platform.machine()}|{flags}".encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _nvml():
    """The initialised pynvml module, or None where there is no NVIDIA driver. Initialised once a process:
    nvmlInit opens the driver every time it is called, and the pool asks for free VRAM on every request."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no library, no driver, no device: all mean "no GPU"
        return None


def gpus() -> list[Gpu]:
    """Every NVIDIA GPU NVML sees, with free memory now; [] without NVML."""
    nvml = _nvml()
    if nvml is None:
        return []
    out = []
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(h)
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            out.append(Gpu(i, name.decode() if isinstance(name, bytes) else name, int(mem.total), int(mem.free), driver))
    except Exception:
        return out
    return out


def process_gpu_memory(pid: int) -> int | None:
    """GPU memory NVML attributes to process `pid` (its CUDA context included), summed over GPUs; None without NVML.

    Returns None, not 0, when the process holds no GPU memory, so "no GPU used" never reads as a measured zero.
    """
    nvml = _nvml()
    if nvml is None:
        return None
    total, seen = 0, False
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(h):
                if proc.pid == pid and proc.usedGpuMemory:
                    total += int(proc.usedGpuMemory)
                    seen = True
    except Exception:
        return None
    return total if seen else None


def gpu_memory_bandwidth_gbs(index: int) -> float | None:
    """A GPU's theoretical memory bandwidth from NVML: maximum memory clock x 2 (double data rate) x bus width / 8,
    in GB/s; None without NVML or when the driver does not say. (RTX 4090: 10,501 MHz x 2 x 384 bits = 1008 GB/s,
    NVIDIA's figure.)"""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        clock_mhz = int(nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_MEM))
        bus_bits = int(nvml.nvmlDeviceGetMemoryBusWidth(h))
    except Exception:  # an old driver or a device without the query
        return None
    if clock_mhz <= 0 or bus_bits <= 0:
        return None
    return round(clock_mhz * 1e6 * 2 * bus_bits / 8 / 1e9, 1)


def machine() -> Machine:
    """A snapshot of this machine now (free memory changes; call again for fresh figures)."""
    vm = psutil.virtual_memory()
    return Machine(
        cpu_model=cpu_model(),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available),
        gpus=gpus(),
    )


def default_threads(beside_browser: bool = False) -> int:
    """llama.cpp's best thread count alone is usually the physical core count; `WORKBENCH_THREADS` overrides.

    `beside_browser`: the app's pages, where the Streamlit server and a browser share the machine with the
    worker, leave one core to them on machines of up to 4 physical cores. llama.cpp's threads wait for each
    other at every step, so one thread descheduled by the page's work stalls them all. Measured on the 2-core
    machine (docs/benchmarks.md, "Live page vs quiet CLI"): with 2 threads the page's decode figures read
    0.78-0.88 of a quiet CLI run and fell 5x when a queued run started while another page drew its results;
    with 1 thread they read 0.97-1.00 of the CLI at the same thread count. Above 4 cores one spare core is a
    small share and was not measured, so all physical cores are used there.
    """
    override = os.environ.get("WORKBENCH_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    cores = max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    if beside_browser and cores <= 4:
        return max(1, cores - 1)
    return cores


GPU_OFFLOAD_SECTION = "llama_gpu_offload"


def _llama_libs_fingerprint() -> str | None:
    """Which llama.cpp libraries this install loads (the folder, and each library's name, size and time), found
    without importing them; None when llama_cpp or its folder cannot be found."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("llama_cpp")
        folders = list(spec.submodule_search_locations or []) if spec else []
        lib = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(folders[0]) / "lib") if folders else None
        if lib is None:
            return None
        found = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in lib.iterdir()
                       if ".so" in f.name or f.suffix in (".dylib", ".dll"))
    except (OSError, ValueError, ImportError):
        return None
    return hashlib.sha256(repr((str(lib.resolve()), found)).encode()).hexdigest()[:20] if found else None


@lru_cache(maxsize=1)
def llama_gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp build can offload to a GPU: asked in a child process once per build and
    remembered in the machine's notes, keyed by the libraries' fingerprint (a new build is asked afresh).

    A child, because loading llama.cpp's libraries into the app process is not needed for anything else; once
    per build, because with CUDA that child takes a second or more, which every command paid before.
    """
    import subprocess
    import sys

    from workbench.core import machine_notes

    key = _llama_libs_fingerprint()
    known = machine_notes.recall(GPU_OFFLOAD_SECTION, key) if key else None
    if isinstance(known, bool):
        return known
    try:
        out = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_supports_gpu_offload())"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    answer = out.stdout.strip().endswith("True")
    if key and out.returncode == 0:
        try:
            machine_notes.remember(GPU_OFFLOAD_SECTION, key, answer)
        except OSError:
            pass  # a read-only data folder: ask again next time
    return answer


def gpu_offload_available() -> bool:
    """A GPU is present and this llama.cpp build can use it."""
    return bool(gpus()) and llama_gpu_offload_supported()


@lru_cache(maxsize=1)
def cpu_supports_repack() -> bool:
    """Whether llama.cpp's CPU backend repacks Q4 weights here (x86 AVX2, or Arm with dot product)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine().lower() in ("arm64", "aarch64")
    return " avx2" in text or " asimddp" in text


@lru_cache(maxsize=1)
def llama_cpp_version() -> str:
    """The llama.cpp build this install runs, as recorded with every measurement (figures differ across builds).
    Once a process: the metadata lookup walks every folder on sys.path, and every request asks (crash_fallback)."""
    try:
        from importlib.metadata import version

        return f"llama-cpp-python {version('llama-cpp-python')}"
    except Exception:
        return "llama-cpp-python (version unknown)"


# ---- memory bandwidth ---------------------------------------------------------------------------------------------

BANDWIDTH_ARRAY_BYTES = 128 * 2**20  # well beyond any desktop L3 (32 MiB here), so the copy streams from DRAM
BANDWIDTH_REPEATS = 8  # best of: other work on a shared machine only ever slows a copy down
_bandwidth_cache: dict[str, MemoryBandwidth] = {}


@dataclass(frozen=True)
class MemoryBandwidth:
    """A measured STREAM-style copy rate: bytes read + bytes written per second, best of a few copies."""

    gbs: float  # 1e9 bytes per second
    threads: int
    array_bytes: int
    repeats: int
    cpu_fingerprint: str
    measured_at: str
    method: str = "numpy copy of a 128 MiB array split over threads (read + write bytes, best of 8)"


def _copy_rate(src: Any, dst: Any, threads: int) -> float:
    """Bytes per second of one copy of src into dst split into `threads` slices (numpy releases the GIL)."""
    import threading

    import numpy as np

    n = len(src)
    bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]
    workers = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b])) for a, b in bounds]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return 2 * n / max(time.perf_counter() - start, 1e-9)


def measure_memory_bandwidth(*, refresh: bool = False, threads: int | None = None,
                             array_bytes: int = BANDWIDTH_ARRAY_BYTES) -> MemoryBandwidth:
    """This machine's RAM bandwidth as a copy rate with `threads` threads (default: the physical cores), in a
    fraction of a second, holding 2 x `array_bytes` of RAM for that moment.

    Why: decode speed is bounded by how fast the weights stream from memory, so a target's estimated speed is
    calibrated against this figure. It is a measured copy rate, not the theoretical peak a spec sheet quotes
    (a copy usually reaches well under the peak). Kept for this process and in the data directory (keyed on
    the CPU and the thread count), so the app and the CLI agree until `refresh=True` measures again.
    """
    import json
    from datetime import UTC, datetime

    import numpy as np

    from workbench.core import paths

    key = cpu_fingerprint()
    threads = max(1, int(threads or psutil.cpu_count(logical=False) or 1))
    slot = f"{key}:{threads}"
    if not refresh and slot in _bandwidth_cache:
        return _bandwidth_cache[slot]
    cache = paths.data_dir() / "bandwidth.json"
    try:
        data = json.loads(cache.read_text())
        figures = data.get("figures") if isinstance(data, dict) and data.get("cpu_fingerprint") == key else None
        figures = figures if isinstance(figures, dict) else {}
    except (OSError, ValueError):
        figures = {}
    if not refresh:
        try:
            row = figures[str(threads)]
            found = MemoryBandwidth(**{k: row[k] for k in MemoryBandwidth.__dataclass_fields__ if k in row})
            if isinstance(found.gbs, (int, float)) and found.gbs > 0:
                _bandwidth_cache[slot] = found
                return found
        except (KeyError, TypeError):
            pass
    n = max(2**20, int(array_bytes))
    src = np.ones(n, dtype=np.uint8)
    dst = np.zeros(n, dtype=np.uint8)  # zeros touches no page: the first copy (not counted) faults them in
    _copy_rate(src, dst, threads)
    best = max(_copy_rate(src, dst, threads) for _ in range(BANDWIDTH_REPEATS))
    del src, dst
    found = MemoryBandwidth(gbs=round(best / 1e9, 2), threads=threads, array_bytes=n, repeats=BANDWIDTH_REPEATS,
                            cpu_fingerprint=key, measured_at=datetime.now(UTC).isoformat(timespec="seconds"))
    _bandwidth_cache[slot] = found
    figures[str(threads)] = asdict(found)
    try:
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cpu_fingerprint": key, "figures": figures}, indent=2))
        tmp.replace(cache)
    except OSError:
        pass  # a read-only data dir: the figure still holds for this process
    return found
