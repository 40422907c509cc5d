"""Keep the app server's garbage collections cheap, so a page's own housekeeping does not steal a timed run's CPU.

Streamlit ends every script run with a full `gc.collect()` (its `runner.postScriptGC` option) so that cyclic
garbage a run leaves behind (dataframes, figures) is freed at once instead of whenever Python's own collector
gets to it. That protection is worth keeping, but a full collection walks every tracked object in the process:
about 180,000 once pandas, plotly, scipy and Streamlit are imported, 60-190 ms of CPU each on the 2-core machine.
Most of them are module-level objects that live as long as the process and will never be garbage.

`freeze_long_lived()` moves the objects alive now into the interpreter's permanent generation (`gc.freeze`),
which later collections skip; it acts only when new modules were imported since the last freeze (a page's first
visit), because that is when long-lived objects appear. Refcounting still frees frozen objects as usual; the
cost is that a frozen object that later becomes part of an unreachable cycle is not collected. Objects frozen
here are imports plus whatever a session held at that moment, a bounded set, so that cost is small.
"""

from __future__ import annotations

import gc
import sys
import threading

_lock = threading.Lock()
_modules_at_last_freeze = 0


def freeze_long_lived() -> bool:
    """Freeze the heap if modules were imported since the last freeze; True when it did."""
    global _modules_at_last_freeze
    with _lock:
        if len(sys.modules) <= _modules_at_last_freeze:
            return False
        gc.collect()  # free what is garbage now, so it is not frozen
        gc.freeze()
        _modules_at_last_freeze = len(sys.modules)
        return True


def collectable_objects() -> int:
    """Objects a full collection would walk now (tracked minus frozen): what one postScriptGC costs."""
    return len(gc.get_objects()) - gc.get_freeze_count()
