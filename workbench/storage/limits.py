"""What the database may hold, in one place: the import refuses more (people.history), and every writer refuses it
too (the Store, the Compare box, the CLI, prompt sets), so the app's own backup always imports back (issue 24).

Imports nothing from the workbench.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_IMPORT_BYTES = 200 * 1024 * 1024  # a whole export file
MAX_TEXT_BYTES = 1024 * 1024  # one TEXT value: a prompt, a system prompt, an output, an error
MAX_JSON_BYTES = 64 * 1024 * 1024  # one JSON value (a divergence measurement's per-token detail can be large)
MAX_DEPTH = 64  # nesting of a whole export
MAX_SET_PROMPTS = 500  # prompts in one prompt set / set run
MAX_PROMPT_CHARS = 20_000  # one prompt (or system prompt) of a prompt set
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # SQLite's INTEGER


def utf8_bytes(text: str) -> int:
    """How many bytes `text` takes in the database (a lone surrogate counts, as the import measures it)."""
    return len(text.encode("utf-8", "surrogatepass"))


def text_problem(name: str, text: str | None) -> str | None:
    """Why `text` cannot be stored as one value (None when it can): too long, or not valid Unicode."""
    if text is None:
        return None
    if utf8_bytes(text) > MAX_TEXT_BYTES:
        return f"{name} is longer than {MAX_TEXT_BYTES // 2**20} MiB ({utf8_bytes(text):,} bytes), the most one " \
               f"stored text may hold"
    if not is_unicode(text):
        return f"{name} holds a lone surrogate (text that is not valid Unicode)"
    return None


def is_unicode(text: str) -> bool:
    """False for text holding a lone surrogate: SQLite cannot store it and JSON readers refuse it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def set_problem(n_prompts: int, longest: int) -> str | None:
    """Why a set of `n_prompts` prompts, the longest `longest` characters, cannot be a set run (None: it can)."""
    if n_prompts > MAX_SET_PROMPTS:
        return f"{n_prompts} prompts, more than the {MAX_SET_PROMPTS} a set may hold"
    if longest > MAX_PROMPT_CHARS:
        return f"a prompt is {longest:,} characters, over the {MAX_PROMPT_CHARS:,} a set's prompt may hold"
    return None


def number_problem(value: object) -> str | None:
    """Why a number cannot be stored (None: it can): an integer beyond SQLite's 64 bits, or a float that is not
    finite (NaN and infinity are not figures)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return "is beyond the 64-bit range a database integer may hold"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    return None


def refuse_run_texts(prompt: str | None, system_prompt: str | None) -> None:
    """ValueError (plain words) for a prompt or system prompt the database would store but an import refuse."""
    problem = text_problem("the prompt", prompt) or text_problem("the system prompt", system_prompt)
    if problem:
        raise ValueError(problem)


def refuse_set(prompts: Sequence[Mapping[str, Any]]) -> None:
    """ValueError (plain words) for a set run's prompts that an import would refuse."""
    longest = max((len(text) for p in prompts if isinstance(text := p.get("prompt"), str)), default=0)
    problem = set_problem(len(prompts), longest)
    if problem:
        raise ValueError(problem)
