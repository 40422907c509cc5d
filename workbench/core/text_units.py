"""Numbers in words, written one way everywhere: bytes ("310 MiB", "4.62 GiB"), counts ("3 words", "1 fact") and
"once" / "3 times".

The app, the CLI and the reports each keep the look their readers know (a table cell's "—" or "-", one decimal
of MiB in the CLI), chosen by parameters; the rule itself is here. Bytes are binary (GiB = 2**30, MiB = 2**20):
below one GiB in MiB, from one GiB up in GiB, judged by size so a negative difference reads like a positive one.
Imports nothing from the workbench.
"""

from __future__ import annotations

import math
from typing import Any

GiB = 2**30
MiB = 2**20


def is_number(x: Any) -> bool:
    """A real, finite number (not a bool, not a string that looks like one): only those get number formatting."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def format_bytes(n: Any, *, mib_digits: int = 0, gib_digits: int = 2, missing: str = "—") -> str:
    """ "310 MiB" below one GiB, "4.62 GiB" from one GiB up; `missing` for None or anything not a number (stored
    and imported values may hold anything). MiB carry a thousands separator ("1,010 MiB")."""
    if not is_number(n):
        return missing
    if abs(n) >= GiB:
        return f"{n / GiB:.{gib_digits}f} GiB"
    return f"{n / MiB:,.{mib_digits}f} MiB"


def bytes_in_words(n: float) -> str:
    """Bytes inside a sentence: "4.6 GiB", "310 MiB" under one GiB (a small model's differences are MiB)."""
    return format_bytes(n, gib_digits=1)


def format_gib(n: float, digits: int = 1) -> str:
    """Whole-machine sizes, always in GiB: "16 GiB" (digits=0), "7.6 GiB"."""
    return f"{n / GiB:.{digits}f} GiB"


def format_mib(n: float, digits: int = 0) -> str:
    """Small amounts always in MiB: "32 MiB" (a CUDA context, a repack buffer), "44.7 MiB" (digits=1)."""
    return f"{n / MiB:.{digits}f} MiB"


def format_gb(n: float, digits: int = 2) -> str:
    """Disk and download sizes in decimal gigabytes, as disks are sold and hubs list files: "4.92 GB"."""
    return f"{n / 1e9:.{digits}f} GB"


def plural(n: int, word: str) -> str:
    """`word` as it goes with n: "word" for 1, "words" otherwise (regular English plurals only)."""
    return word if n == 1 else f"{word}s"


def counted(n: int, word: str) -> str:
    """ "1 word", "3 words", "0 facts"."""
    return f"{n} {plural(n, word)}"


def times(n: int) -> str:
    """ "once", "2 times"."""
    return "once" if n == 1 else f"{n} times"
