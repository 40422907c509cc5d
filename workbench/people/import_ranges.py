"""Whether an imported row's figures could have been measured at all (issue 24): an import is refused whole, naming
the field, when a figure is out of the range its measurement gives.

The column types are checked first (people.history); these are the meanings. Every number a run's tables hold is a
count, a size, a time, a speed, a rate or a divergence, so none is negative. KL divergence is never negative: the
workbench clamps each token's value at 0 where it measures it (engine.scoring), so no tolerance for float noise is
needed and none is given. Rates (top-1 agreement) lie in 0..1, flags (passed, is_reference, disturbed) are 0 or 1, a
perplexity is at least 1, and a distribution's mean, median and 99th percentile do not exceed its maximum.

Imports nothing from the workbench but the storage limits.
"""

from __future__ import annotations

import math
from typing import Any

from workbench.storage.limits import number_problem

FLAGS = ("passed", "is_reference", "disturbed")  # 0 or 1 (True/False in an old export)
RATES = ("top1_agreement",)  # a fraction of tokens
KLDS = ("mean_kld", "median_kld", "p99_kld", "max_kld")  # one distribution of per-token KL divergences
SIGNED: tuple[str, ...] = ()  # numeric columns of a run's tables that may be negative: none so far


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def range_problem(row: dict[str, Any], numeric: set[str]) -> str | None:
    """What figure of `row` (an imported row, JSON columns flattened) no measurement could give, naming the column
    (None: all are possible). `numeric`: its table's INTEGER and REAL columns."""
    for column in sorted(numeric):
        value = row.get(column)
        if value is None or isinstance(value, bool):
            continue
        problem = number_problem(value)
        if problem:
            return f"{column} {problem}"
        x = _number(value)
        if x is None:
            continue  # a type problem, reported by the type check
        if column in FLAGS and x not in (0, 1):
            return f"{column} must be 0 or 1, got {x:g}"
        if column in RATES and not 0 <= x <= 1:
            return f"{column} is a fraction and must lie between 0 and 1, got {x:g}"
        if column == "ppl" and x < 1:
            return f"ppl is a perplexity and cannot be below 1, got {x:g}"
        if x < 0 and column not in SIGNED:
            what = "a KL divergence is never negative" if column.endswith("_kld") else "it cannot be negative"
            return f"{column} must be 0 or more ({what}), got {x:g}"
    top = _number(row.get("max_kld"))
    if top is not None:
        for column in KLDS[:-1]:
            x = _number(row.get(column))
            if x is not None and math.isfinite(top) and x > top * (1 + 1e-9) + 1e-12:
                return f"{column} {x:g} is above max_kld {top:g}: not one measurement"
    return None
