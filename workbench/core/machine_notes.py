"""Facts learned about this machine, kept between runs in one small JSON file (paths.machine_notes_path).

Why a module of its own: more than one part of the app learns something slow to find out and true until
the machine or the llama.cpp build changes (that extra CPU buffers crash here; whether this build can
offload to a GPU). Each fact lives under its own section, keyed by what it depends on, so a new build or
another CPU is asked afresh. A missing or unreadable file reads as "nothing learned yet".
"""

from __future__ import annotations

import json
import os
from typing import Any

from workbench.core import paths

MAX_BYTES = 1 << 20  # our own small file; anything bigger is not ours to parse


def read() -> dict[str, Any]:
    """Every section, or {} when there is no file or it cannot be read."""
    try:
        path = paths.machine_notes_path()
        if path.stat().st_size > MAX_BYTES:
            return {}
        notes = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return notes if isinstance(notes, dict) else {}


def recall(section: str, key: str) -> Any:
    """What `section` remembers under `key`, or None."""
    found = read().get(section)
    return found.get(key) if isinstance(found, dict) else None


def remember(section: str, key: str, value: Any) -> None:
    """Keep `value` under `section`/`key` (written whole and renamed into place: a reader never sees half a file)."""
    notes = read()
    if not isinstance(notes.get(section), dict):
        notes[section] = {}
    notes[section][key] = value
    target = paths.machine_notes_path()
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(notes, indent=2))
    os.replace(tmp, target)
