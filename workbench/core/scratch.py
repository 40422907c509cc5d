"""Scratch folders in the system temp dir that a killed process cannot leave behind for long.

Divergence saves the reference's log-probabilities to disk (about 200 KB per token) in a temporary folder; a
process killed mid-measurement never runs its cleanup, so the folder stays. Each folder's name carries its
owner's pid (`<prefix><pid>-<random>`), and every new one first sweeps the stale ones: the owner is no longer
running, or (a folder named before pids were) it is older than STALE_AFTER_S. A live process's folder is kept.
Imports nothing from the workbench.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STALE_AFTER_S = 6 * 3600


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:
        return False
    return True


def sweep(prefix: str, *, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the stale `prefix*` folders in the temp dir (see the module docstring); returns those removed."""
    removed = []
    owner = re.compile(rf"{re.escape(prefix)}(\d+)-")
    for entry in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            if entry.is_symlink() or not entry.is_dir():
                continue
            m = owner.match(entry.name)
            stale = not _running(int(m.group(1))) if m else time.time() - entry.stat().st_mtime > stale_after_s
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh temporary folder named for this process, removed on exit; stale ones are swept first."""
    sweep(prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as tmp:
        yield Path(tmp)
