"""The sentence that leads a divergence result: every quantization, closest to the reference first, in words.

A product person opening the Quality page asks "which of these stays close to the original?", not "what is a
99.9th-percentile KLD". The table stays below for whoever wants it; this says the ranking and how far each moved,
with the same words and bounds as the pair headlines (`workbench.people.headline.moved_words`).
"""

from __future__ import annotations

import math

from workbench.people.headline import moved_words
from workbench.quality.divergence import ContestantDivergence, DivergenceReport


def _kld(x: float) -> str:
    return f"{x:.4f}" if x < 0.01 else f"{x:.3f}"


def _count(x: object) -> int:
    """A stored token count, or 0 when the database hands back anything but a whole number."""
    return x if isinstance(x, int) and not isinstance(x, bool) and x > 0 else 0


def _measured(r: ContestantDivergence) -> bool:
    kld = r.summary.get("mean_kld")
    return r.ok and isinstance(kld, int | float) and math.isfinite(kld) and _count(r.summary.get("n_tokens")) > 0


def ranking_sentence(report: DivergenceReport) -> str:
    """E.g. "On the bundled text (1,530 tokens scored), closest to F16 first: Q8_0's next-token odds barely moved
    (mean KLD 0.0037; same next token 94.1% of the time), Q4_K_M's moved a little (0.052; 88.2%), …"."""
    ref = report.reference_label
    where = "on the bundled text" if report.source == "text" else f"on {ref}'s answer"
    measured = sorted((r for r in report.contestants() if _measured(r)), key=lambda r: r.summary["mean_kld"])
    failed = [r for r in report.contestants() if not _measured(r)]
    parts = []
    for i, r in enumerate(measured):
        kld, top1 = float(r.summary["mean_kld"]), r.summary.get("top1_agreement")
        same = f"{100 * top1:.1f}%" if isinstance(top1, int | float) and math.isfinite(top1) else "unknown"
        if i == 0:
            parts.append(f"{r.label}'s next-token odds {moved_words(kld)} (mean KLD {_kld(kld)}; "
                         f"same next token {same} of the time)")
        else:
            parts.append(f"{r.label}'s {moved_words(kld)} ({_kld(kld)}; {same})")
    n = report.n_tokens or _count(report.reference.summary.get("n_tokens"))
    scored = f"{where[:1].upper()}{where[1:]}" + (f" ({n:,} tokens scored)" if n else "")
    if not parts:
        head = f"No quantization could be measured against {ref} {where}"
    elif len(parts) == 1:
        head = f"{scored}, against {ref}: {parts[0]}"
    else:
        head = f"{scored}, closest to {ref} first: " + ", ".join(parts)
    return head + "." + "".join(f" {r.label} could not be measured ({_reason(r)})." for r in failed)


def _reason(r: ContestantDivergence) -> str:
    text = " ".join((r.error or "no tokens scored").split())
    return text if len(text) <= 120 else text[:119] + "…"
