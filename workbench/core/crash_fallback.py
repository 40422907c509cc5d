"""Surviving llama.cpp's CPU crash with extra buffer types, and remembering it per machine.

On some CPUs (seen: AMX under KVM) llama.cpp's repacked "extra" CPU buffers make every quantized
model segfault on its first decode. The cure is loading with `use_extra_bufts=False`. We do not
hard-code that for everyone (most laptops are fine and repacking can be faster): a worker that
dies by a signal while loading or on its first decode with extra buffers on is retried once
without them, the result says so, and, when that retry works, this machine's notes remember it so the next
run does not crash first (a file that crashes either way is broken: nothing is remembered). The notes key on the CPU's fingerprint and the llama.cpp version, so a new build or
another CPU is tried afresh.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from workbench.core import hardware, machine_notes
from workbench.core.hardware import llama_cpp_version

SECTION = "extra_bufts_crash"

# Fault injection for tests: when set, a worker kills itself with SIGSEGV on its first decode if
# extra buffer types are on, exactly as the AMX crash does. Never set outside tests.
INJECT_ENV = "WORKBENCH_INJECT_EXTRA_BUFTS_CRASH"


def _key() -> str:
    return f"{hardware.cpu_fingerprint()}|{llama_cpp_version()}"


def remembered() -> dict[str, Any] | None:
    """The note saying extra buffers crash on this machine, or None."""
    note = machine_notes.recall(SECTION, _key())
    return note if isinstance(note, dict) else None


def use_extra_bufts_setting() -> bool | None:
    """What to load with: False when this machine is known to crash, else None (llama.cpp's default)."""
    return False if remembered() else None


def remember_crash(signal_name: str | None, during: str | None, model: str) -> None:
    machine_notes.remember(SECTION, _key(), {
        "signal": signal_name,
        "during": during,
        "model": model,
        "cpu": hardware.cpu_model(),
        "llama_cpp": llama_cpp_version(),
        "seen_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })

