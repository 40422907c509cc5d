"""What this worker process holds: its resident memory now, its peak since it started, and its GPU memory.

Why a module of its own: each figure has a trap that must be handled once. The peak must not be
getrusage's (it survives fork+exec, so a worker would report the app's peak as its own); GPU memory is
NVML's per-process figure, asked only when layers were offloaded, so a CPU run never reads as a measured
zero. The worker puts these in its `loaded` and `done` events.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any


def peak_rss_bytes() -> int:
    """Peak resident set of this process since it started: VmHWM from /proc/self/status.

    Not getrusage's ru_maxrss: that survives fork+exec, so a worker would inherit its parent's
    (the app's) peak and report it as its own. Falls back to ru_maxrss where /proc is missing.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def rss_bytes() -> int:
    """Resident set of this process now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def gpu_mem_bytes(offloaded: Any) -> int | None:
    """GPU memory NVML attributes to this process when `offloaded` (layers on a GPU), else None: not measured."""
    from workbench.core.hardware import process_gpu_memory

    return process_gpu_memory(os.getpid()) if offloaded else None
