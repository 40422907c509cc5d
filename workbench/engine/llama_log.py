"""llama.cpp's own log, read inside the worker: why a load failed, what it allocated, what it resolved.

Why a module of its own: llama.cpp says these things only through a C-level log callback, never as return
values. A failed load's reason is a WARN/ERROR line; the memory llama.cpp itself reserved (weights, KV cache,
compute buffers) and whether flash attention ended up on are INFO lines of the load. `LlamaLog` installs the
process's one callback and keeps those lines; `parse_buffer_lines` and `flash_attn_resolved` read them. The
callback is ctypes, so this stays inside engine/, beside the rest of our llama.cpp contact.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections import deque
from typing import Any

import llama_cpp

# ggml_log_level's WARN and ERROR (ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5; measured on this build:
# a load's metadata dump arrives at 2, "error loading model" at 4). llama-cpp-python's _logger.py comment is stale.
LOG_WARN_ERROR = (3, 4)
LOG_INFO = 2  # where llama.cpp logs its buffer sizes (DEBUG, 1, floods with per-tensor lines: never kept)
# llama.cpp's INFO log lines that size its buffers at load, e.g. "load_tensors:   CPU_Mapped model buffer size =
# 98.87 MiB", "llama_kv_cache:        CPU KV buffer size =   180.00 MiB", "sched_reserve:  CPU compute buffer size
# = 98.25 MiB", "llama_context:  CPU  output buffer size =  0.19 MiB". At most this many are kept per load.
BUFFER_LINE = re.compile(r"^\s*\w+:\s+(\S{1,40})\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([0-9]{1,9}(?:\.[0-9]{1,4})?)\s*MiB\s*$")
MAX_BUFFER_LINES = 64
BUFFER_KINDS = {"model": "weights_bytes", "KV": "kv_bytes", "RS": "kv_bytes", "compute": "compute_bytes",
                "output": "compute_bytes"}


def parse_buffer_lines(lines: list[str]) -> dict[str, Any]:
    """llama.cpp's own buffer sizes from its load log: {"weights_bytes", "kv_bytes", "compute_bytes"} summed over
    devices (compute includes the logits output buffer; kv the recurrent state) and "by_device": {device: {kind:
    bytes}}. A kind llama.cpp did not log is missing. Sizes are logged in MiB to 2 decimals (±5 KiB)."""
    out: dict[str, Any] = {}
    by_device: dict[str, dict[str, int]] = {}
    for line in lines[:MAX_BUFFER_LINES]:
        m = BUFFER_LINE.match(line)
        if not m:
            continue
        device, kind, mib = m[1], m[2], float(m[3])
        n = int(round(mib * 2**20))
        key = BUFFER_KINDS[kind]
        out[key] = out.get(key, 0) + n
        dev = by_device.setdefault(device, {})
        dev[kind.lower()] = dev.get(kind.lower(), 0) + n
    if by_device:
        out["by_device"] = by_device
    return out


FLASH_LINE = re.compile(r"(?:Flash Attention|flash_attn)\s*(?:=\s*)?(enabled|disabled)", re.IGNORECASE)


def flash_attn_resolved(lines: list[str]) -> str | None:
    """"enabled"/"disabled" as llama.cpp's load log last said it (auto resolves at load), None when it did not."""
    found = None
    for line in lines[:MAX_BUFFER_LINES]:
        m = FLASH_LINE.search(line)
        if m:
            found = m[1].lower()
    return found


def system_info() -> str:
    """llama.cpp's one-line description of its build (CPU features, backends), as the `loaded` event carries it."""
    return llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()


class LlamaLog:
    """The process's llama.cpp log callback: keeps the last warnings and errors so a load failure can say why,
    and this load's buffer-size and flash-attention lines (`clear` before each load)."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=40)
        self.buffer_lines: deque[str] = deque(maxlen=MAX_BUFFER_LINES)  # this load's "… buffer size = … MiB" lines
        self._install()

    def _install(self) -> None:
        # our own copy of stderr: llama-cpp-python points fd 2 at /dev/null while it loads a model, and a load
        # is where a warning or error line says most about a death that follows
        stderr_fd = os.dup(2)

        @llama_cpp.llama_log_callback
        def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            try:
                line = text.decode("utf-8", "replace").strip()
            except Exception:
                return
            if line and level in LOG_WARN_ERROR:
                self.tail.append(line)
            elif level == LOG_INFO and line and ("buffer size" in line or "flash" in line.lower()) and len(line) < 200:
                # INFO: llama.cpp's buffer sizes at load, and whether flash attention ended up on
                self.buffer_lines.append(line)
            if os.environ.get("WORKBENCH_WORKER_VERBOSE"):
                sys.stderr.write(text.decode("utf-8", "replace"))
            elif line and level in LOG_WARN_ERROR:  # on stderr too: the parent shows its tail when this worker dies
                try:
                    os.write(stderr_fd, (line + "\n").encode("utf-8", "replace"))
                except OSError:
                    pass

        self._log_cb = on_log  # keep a reference: llama.cpp holds only the C pointer
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))

    def clear(self) -> None:
        """Forget the lines of earlier loads, so what follows is this load's."""
        self.tail.clear()
        self.buffer_lines.clear()

    def error(self, default: str) -> str:
        """The most telling recent llama.cpp error line, or `default`."""
        for line in reversed(self.tail):
            if "error" in line.lower() or "unknown" in line.lower() or "failed" in line.lower():
                return line
        return default
