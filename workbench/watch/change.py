"""Has the provider changed? A provider's checks read as one verdict and one sentence for a banner.

How it is decided (only checks that succeeded count; failed and cancelled ones are skipped, and the sentence
says how many):

- The closest match changed when the newest check's closest quantization differs from the one before the
  current streak of equal answers. That change is *within noise* when the fingerprint itself could not tell the
  two apart: in the newest check the old closest file is marked within noise of the new one (the winner beat it
  in fewer than 95% of paired bootstrap resamples over prompts), or in the check before the change the new
  file was within noise of the old one. Only a change beyond noise is a change.
- The quality probe's pass rate dropped when the newest check's pass count is below the previous check's and
  Fisher's exact test on the two counts gives p < 0.05 (quality.evalstats.compare_pass_rates); a difference
  with p >= 0.05 is reported as within noise, with both Wilson 95% intervals.

`changed` is True for a closest-match change beyond noise or a pass-rate drop beyond noise; `since_check_id`
names the check where it showed, so a scheduled run alarms once (when its own check is that one), while the
banner keeps saying what changed and since when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workbench.quality.evalstats import compare_pass_rates
from workbench.storage.watch_rows import ProviderCheck

__all__ = ["Assessment", "assess", "when"]


@dataclass(frozen=True)
class Assessment:
    """What a provider's checks say, in figures and in one sentence (`sentence`) for the banner."""

    changed: bool  # the closest match changed, or the pass rate dropped, beyond the measurement's noise
    within_noise: bool  # something moved, but within the measurement's noise: said, not alarmed on
    since: str | None  # when the current answer began (started_at of its first check)
    since_check_id: int | None  # the check where the change showed (None when nothing moved)
    before: str | None  # the closest match before the change (None when it did not change)
    before_confidence: float | None
    after: str | None  # the closest match now
    after_confidence: float | None
    before_pass: tuple[float, float, float] | None  # (rate, low, high) of the check compared with
    after_pass: tuple[float, float, float] | None
    pass_p_value: float | None
    checks: int  # successful checks read
    skipped: int  # failed or cancelled checks left out
    sentence: str


def when(iso: str | None) -> str:
    """A check's time as people read it: "7 Dec 10:31 UTC"."""
    if not iso:
        return "an unknown time"
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{t.day} {t:%b %H:%M} UTC"


def _conf(x: float | None) -> str:
    return "only file compared" if x is None else f"{x:.2f}"


def _pass(c: ProviderCheck) -> tuple[float, float, float] | None:
    if c.pass_rate is None or c.pass_low is None or c.pass_high is None:
        return None
    return c.pass_rate, c.pass_low, c.pass_high


def _pass_words(p: tuple[float, float, float]) -> str:
    return f"{p[0]:.0%} ({p[1]:.0%}–{p[2]:.0%})"


def _noisy(check: ProviderCheck, label: str | None) -> bool:
    """Whether `check`'s fingerprint marked `label` as within noise of its closest file."""
    cands: list[Any] = check.fingerprint.get("candidates") or []
    return any(isinstance(c, dict) and c.get("label") == label and c.get("within_noise") for c in cands)


def assess(checks: Sequence[ProviderCheck], provider_name: str = "the provider") -> Assessment:
    """Read a provider's checks (oldest first) as a verdict; see the module docstring for how it is decided."""
    ok = [c for c in checks if c.ok and c.closest]
    skipped = len(checks) - len(ok)
    tail = ""
    if skipped:
        tail = (f" {skipped} check{'s' if skipped != 1 else ''} that failed (rate limits, server errors, timeouts) "
                f"or {'were' if skipped != 1 else 'was'} stopped {'are' if skipped != 1 else 'is'} left out.")
    if not ok:
        return Assessment(False, False, None, None, None, None, None, None, None, None, None, 0, skipped,
                          f"No successful check of {provider_name} yet." + tail)
    latest = ok[-1]
    prior = next((i for i in range(len(ok) - 1, -1, -1) if ok[i].closest != latest.closest), None)
    first_now = ok[0 if prior is None else prior + 1]
    before_check = ok[prior] if prior is not None else (ok[-2] if len(ok) > 1 else None)
    moved = prior is not None
    closest_noise = moved and before_check is not None and (
        _noisy(latest, before_check.closest) or _noisy(before_check, latest.closest))

    before_pass, after_pass = (_pass(before_check) if before_check else None), _pass(latest)
    p_value, dropped, pass_noise = None, False, False
    if before_check and before_check.passed is not None and before_check.total and latest.passed is not None \
            and latest.total:
        cmp = compare_pass_rates(latest.passed, latest.total, before_check.passed, before_check.total)
        p_value = cmp.p_value
        dropped = cmp.significant and cmp.diff < 0
        pass_noise = cmp.diff != 0 and not cmp.significant
    changed = (moved and not closest_noise) or dropped
    within_noise = not changed and ((moved and closest_noise) or pass_noise)
    since_id = first_now.id if moved else (latest.id if dropped else None)

    now = f"like {latest.closest} (confidence {_conf(latest.confidence)})"
    if moved and before_check is not None and not closest_noise:
        sentence = (f"Since {when(first_now.started_at)}, {provider_name} answers {now}; before, like "
                    f"{before_check.closest} ({_conf(before_check.confidence)}).")
    elif moved and before_check is not None:
        sentence = (f"{provider_name} now answers {now}, before like {before_check.closest}; but the fingerprint "
                    f"cannot tell those two apart on its prompts (within noise), so no change is claimed.")
    else:
        n = len(ok)
        sentence = (f"{provider_name} answers {now}, as in "
                    f"{'its only check' if n == 1 else f'all {n} checks'} since {when(first_now.started_at)}.")
    if after_pass is not None:
        if before_pass is not None and (moved or dropped or pass_noise) and after_pass[0] == before_pass[0]:
            sentence += f" Pass rate on the quality probe unchanged: {_pass_words(after_pass)}."
        elif before_pass is not None and (moved or dropped or pass_noise):
            sentence += f" Pass rate on the quality probe {_pass_words(after_pass)} vs {_pass_words(before_pass)}"
            sentence += ("; a drop beyond noise." if dropped else "; within noise." if pass_noise else ".")
        else:
            sentence += f" Pass rate on the quality probe {_pass_words(after_pass)}."
    return Assessment(changed, within_noise, first_now.started_at, since_id,
                      before_check.closest if moved and before_check else None,
                      before_check.confidence if moved and before_check else None, latest.closest, latest.confidence,
                      before_pass, after_pass, p_value, len(ok), skipped, sentence + tail)
