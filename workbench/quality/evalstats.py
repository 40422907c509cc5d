"""How sure can we be about a pass rate, and is one quantization really worse than another?

Why this module: task packs are small (ten cases a category), so "3/10 vs 5/10" looks like a
difference and usually is not. Every pass rate the workbench shows carries a Wilson 95% interval,
and every comparison says plainly whether it is within noise.

Two comparisons are offered:
- `compare_pass_rates(...)` for two independent counts: Fisher's exact test (two-sided) with a
  Newcombe (hybrid score) interval for the difference.
- `compare_paired(...)` for the usual eval situation, both contestants answering the *same*
  cases: the exact McNemar test, which looks only at the cases where they disagree. It is the
  right model for paired runs, and more sensitive than Fisher when the two agree on most cases
  (a quantization that loses a few cases and gains none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from scipy import stats

from workbench.core.glossary import chance_words  # p-values in words: one home, re-exported here

__all__ = [
    "Comparison",
    "chance_words",
    "compare_paired",
    "compare_pass_rates",
    "format_p",
    "newcombe_interval",
    "wilson_interval",
]


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _check_counts(passed: int, n: int) -> None:
    if n < 0 or passed < 0 or passed > n:
        raise ValueError(f"need 0 <= passed <= n, got {passed}/{n}")


def wilson_interval(passed: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for passed/n; (0.0, 1.0) when n == 0 (nothing is known).

    Why Wilson: unlike the textbook p ± 1.96·sqrt(p(1-p)/n), it stays inside [0, 1] and does not
    collapse to zero width at 0/10 or 10/10, which small packs hit all the time.
    """
    _check_counts(passed, n)
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = passed / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    # Exact ends where the data sit on a boundary (avoids 1e-17 style noise in reports).
    return (0.0 if passed == 0 else low, 1.0 if passed == n else high)


def newcombe_interval(
    a_passed: int, a_n: int, b_passed: int, b_n: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for rate_a - rate_b (method 10 of Newcombe 1998)."""
    _check_counts(a_passed, a_n)
    _check_counts(b_passed, b_n)
    if a_n == 0 or b_n == 0:
        return (-1.0, 1.0)
    p1, p2 = a_passed / a_n, b_passed / b_n
    l1, u1 = wilson_interval(a_passed, a_n, confidence)
    l2, u2 = wilson_interval(b_passed, b_n, confidence)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (max(-1.0, low), min(1.0, high))


def format_p(p: float) -> str:
    """p-values as people read them: p=0.65, p=0.012, p=0.004, p<0.001."""
    if p < 0.001:
        return "p<0.001"
    if p < 0.01:
        return f"p={p:.3f}"
    return f"p={p:.2f}" if p < 0.995 else "p=1.00"


@dataclass(frozen=True)
class Comparison:
    """Two pass rates side by side and whether they differ beyond noise."""

    label_a: str
    label_b: str
    a_passed: int
    a_n: int
    b_passed: int
    b_n: int
    p_value: float
    diff: float  # rate_a - rate_b
    diff_interval: tuple[float, float]  # Newcombe interval for the difference (unpaired view)
    alpha: float
    method: str  # "fisher" or "mcnemar-exact"
    task: str | None = None

    @property
    def rate_a(self) -> float:
        return self.a_passed / self.a_n if self.a_n else float("nan")

    @property
    def rate_b(self) -> float:
        return self.b_passed / self.b_n if self.b_n else float("nan")

    @property
    def significant(self) -> bool:
        """True when the difference is beyond noise at level alpha."""
        return self.p_value < self.alpha

    @property
    def sentence(self) -> str:
        """E.g. "Q2_K vs Q8_0 on math: 3/10 vs 5/10 — within noise (p=0.65)"."""
        on = f" on {self.task}" if self.task else ""
        head = f"{self.label_a} vs {self.label_b}{on}: {self.a_passed}/{self.a_n} vs {self.b_passed}/{self.b_n}"
        if self.a_n == 0 or self.b_n == 0:
            return f"{head} — no cases to compare"
        if not self.significant:
            return f"{head} — within noise ({format_p(self.p_value)})"
        better = self.label_a if self.rate_a > self.rate_b else self.label_b
        return f"{head} — {better} passes more, beyond noise ({format_p(self.p_value)})"

    def __str__(self) -> str:
        return self.sentence


def compare_pass_rates(
    a_passed: int,
    a_n: int,
    b_passed: int,
    b_n: int,
    *,
    label_a: str = "A",
    label_b: str = "B",
    task: str | None = None,
    alpha: float = 0.05,
) -> Comparison:
    """Compare two independent pass counts with Fisher's exact test (two-sided)."""
    _check_counts(a_passed, a_n)
    _check_counts(b_passed, b_n)
    if a_n == 0 or b_n == 0:
        p = 1.0
    else:
        table = [[a_passed, a_n - a_passed], [b_passed, b_n - b_passed]]
        p = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
    diff = (a_passed / a_n if a_n else 0.0) - (b_passed / b_n if b_n else 0.0)
    return Comparison(
        label_a, label_b, a_passed, a_n, b_passed, b_n, min(1.0, p), diff,
        newcombe_interval(a_passed, a_n, b_passed, b_n), alpha, "fisher", task,
    )


def compare_paired(
    a_results: Sequence[bool],
    b_results: Sequence[bool],
    *,
    label_a: str = "A",
    label_b: str = "B",
    task: str | None = None,
    alpha: float = 0.05,
) -> Comparison:
    """Compare two contestants on the same cases (same order) with the exact McNemar test.

    Only discordant cases carry information: if A passes 3 cases B fails and B passes 0 that A
    fails, p is the two-sided binomial probability of a 3-0 split or worse at even odds.
    """
    if len(a_results) != len(b_results):
        raise ValueError(f"paired results need the same cases: {len(a_results)} vs {len(b_results)}")
    a_only = sum(1 for a, b in zip(a_results, b_results, strict=True) if a and not b)
    b_only = sum(1 for a, b in zip(a_results, b_results, strict=True) if b and not a)
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(stats.binomtest(a_only, discordant, 0.5).pvalue)
    n = len(a_results)
    a_passed, b_passed = sum(map(bool, a_results)), sum(map(bool, b_results))
    diff = (a_passed - b_passed) / n if n else 0.0
    return Comparison(
        label_a, label_b, a_passed, n, b_passed, n, min(1.0, p), diff,
        newcombe_interval(a_passed, n, b_passed, n), alpha, "mcnemar-exact", task,
    )
