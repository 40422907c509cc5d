"""How far the reference strays from itself, and whether a quantization strays further.

The reference's repeats (runs.noise: other seeds, or greedy with the prompt in other micro-batch sizes) are
measured against the reference's own output with the same measures a quantization gets (summary.summarize:
words changed, similarity, facts changed). Per prompt the floor is the farthest any repeat went:

  within the reference's own variation   words changed ≤ the floor's most AND facts changed ≤ the floor's most
  beyond it                              otherwise

So with a floor of "identical every time" any difference is beyond it; with a floor of "up to 40 words" a
quantization that rewrote 30 words is within it. Over a set, each quantization gets the count of prompts
within and beyond, and a one-sided Wilcoxon signed-rank test (scipy) of its words changed against the
repeats' mean words changed on the same prompts: whether it moves further from the reference than the
reference's own repeats do, beyond what chance pairs of prompts would show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from workbench.core.glossary import chance_words
from workbench.core.text_units import counted
from workbench.quality.summary import ColumnSummary, summarize
from workbench.storage.store import SET_PROMPT_FINISHED, Store, StoredSetRun

WITHIN = "within"
BEYOND = "beyond"


@dataclass(frozen=True)
class Floor:
    """One prompt's noise floor: each usable repeat's summary against the reference's output."""

    repeats: list[ColumnSummary]
    perturbations: list[str] = field(default_factory=list)  # what each repeat changed, in words
    failed: int = 0  # repeats that ended in an error (not part of the floor)

    @property
    def n(self) -> int:
        return len(self.repeats)

    @property
    def identical(self) -> int:
        return sum(s.changed_words == 0 and not s.facts for s in self.repeats)

    @property
    def max_changed_words(self) -> int:
        return max((s.changed_words for s in self.repeats), default=0)

    @property
    def max_facts_changed(self) -> int:
        return max((s.facts_changed for s in self.repeats), default=0)

    @property
    def min_similarity(self) -> float:
        return min((s.similarity for s in self.repeats), default=1.0)

    @property
    def mean_changed_words(self) -> float:
        return mean(s.changed_words for s in self.repeats) if self.repeats else 0.0

    def sentence(self) -> str:
        """E.g. "the reference repeated 3 times: identical each time", or "… differed from itself by up to 12
        words (81% similar) and 1 fact"."""
        head = f"the reference repeated {counted(self.n, 'time')}"
        if self.identical == self.n:
            return f"{head}: identical each time"
        tail = f" and {counted(self.max_facts_changed, 'fact')}" if self.max_facts_changed else ""
        return (f"{head}: differed from itself by up to {counted(self.max_changed_words, 'word')} "
                f"({100 * self.min_similarity:.0f}% similar){tail}, identical {self.identical} of {self.n}")

    def to_dict(self) -> dict[str, Any]:
        return {"repeats": self.n, "identical": self.identical, "failed": self.failed,
                "max_changed_words": self.max_changed_words, "max_facts_changed": self.max_facts_changed,
                "min_similarity": round(self.min_similarity, 6), "perturbations": list(self.perturbations)}


def _text(row: Any) -> str | None:
    """A usable repeat's text: a row that ended without error or stop, holding text."""
    if not isinstance(row, dict) or row.get("error") or row.get("stop_reason") == "cancelled":
        return None
    return row["text"] if isinstance(row.get("text"), str) else None


def _describe(row: dict[str, Any]) -> str:
    p = row.get("perturbation")
    if isinstance(p, dict) and p.get("kind") == "seed" and isinstance(p.get("seed"), int):
        return f"seed {p['seed']}"
    if isinstance(p, dict) and p.get("kind") == "n_batch" and isinstance(p.get("n_batch"), int):
        return f"micro-batches of {p['n_batch']}"
    return "unknown"


def floor_of(reference_text: str, repeats: Iterable[Any]) -> Floor | None:
    """The floor from stored repeat rows (store.reference_repeats); None when no repeat is usable."""
    rows = [r for r in repeats if isinstance(r, dict)]
    usable = [(r, t) for r in rows if (t := _text(r)) is not None]
    if not usable:
        return None
    return Floor([summarize(reference_text, t) for _, t in usable], [_describe(r) for r, _ in usable],
                 failed=sum(bool(r.get("error")) for r in rows))


def standing(summary: ColumnSummary, floor: Floor) -> str:
    """WITHIN when the output is no further from the reference than the farthest repeat, else BEYOND."""
    return standing_of(summary.changed_words, summary.facts_changed, floor)


def standing_of(changed_words: int, facts_changed: int, floor: Floor) -> str:
    """`standing` from the two numbers it compares (for callers that kept only those)."""
    within = changed_words <= floor.max_changed_words and facts_changed <= floor.max_facts_changed
    return WITHIN if within else BEYOND


def standing_sentence(summary: ColumnSummary, floor: Floor) -> str:
    """The column's words against the floor, e.g. "beyond the reference's own variation (its 3 repeats were
    identical)"."""
    where = "within" if standing(summary, floor) == WITHIN else "beyond"
    if floor.identical == floor.n:
        why = f"its {counted(floor.n, 'repeat')} {'were' if floor.n != 1 else 'was'} identical"
    else:
        why = f"its {counted(floor.n, 'repeat')} differed by up to {counted(floor.max_changed_words, 'word')}"
        if floor.max_facts_changed:
            why += f" and {counted(floor.max_facts_changed, 'fact')}"
    return f"{where} the reference's own variation ({why})"


# ---- over a set of prompts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantAgainstFloor:
    """One quantization over the prompts that have a floor: how many within / beyond, and the test."""

    label: str
    prompts: int
    within: int
    beyond: int
    mean_changed_words: float
    floor_mean_changed_words: float
    p_value: float | None  # one-sided Wilcoxon: moves further than the repeats; None below 2 differing prompts

    def sentence(self) -> str:
        """E.g. "Q4_K_M went beyond the reference's own variation on 7 of 10 prompts (it changed 41 words on
        average, the reference's repeats 3; chance would do this about 1 in 250 times — one-sided Wilcoxon p = 0.004)"."""
        test = ("" if self.p_value is None else
                f"; {chance_words(self.p_value)} — one-sided Wilcoxon p = {self.p_value:.2g}")
        where = (f"stayed within the reference's own variation on all {self.prompts} prompts" if not self.beyond else
                 f"went beyond the reference's own variation on {self.beyond} of {self.prompts} prompts")
        return (f"{self.label} {where} (it changed {self.mean_changed_words:.0f} words on average, the reference's "
                f"repeats {self.floor_mean_changed_words:.0f}{test}).")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "prompts": self.prompts, "within": self.within, "beyond": self.beyond,
                "mean_changed_words": round(self.mean_changed_words, 3),
                "floor_mean_changed_words": round(self.floor_mean_changed_words, 3), "p_value": self.p_value}


@dataclass(frozen=True)
class SetFloor:
    """A set's noise floor: per prompt (by index) and per quantization against it."""

    floors: dict[int, Floor]
    quants: list[QuantAgainstFloor]
    prompts: int  # prompts in the set (some may have no floor)

    @property
    def repeats(self) -> int:
        return max((f.n for f in self.floors.values()), default=0)

    @property
    def prompts_identical(self) -> int:
        return sum(f.identical == f.n for f in self.floors.values())

    def sentence(self) -> str:
        """The floor over the set in one sentence, e.g. "Repeated 3 times on each of 10 prompts, the reference
        was identical to itself on 9 and differed by up to 12 words on the other 1."."""
        if not self.floors:
            return "No noise floor: the reference was not repeated."
        n, same = len(self.floors), self.prompts_identical
        head = f"Repeated {counted(self.repeats, 'time')} on each of {counted(n, 'prompt')}, the reference was"
        if same == n:
            return f"{head} identical to itself every time."
        most = max(f.max_changed_words for f in self.floors.values())
        return f"{head} identical to itself on {same} and differed by up to {counted(most, 'word')} on the other {n - same}."

    def to_dict(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "repeats": self.repeats, "prompts_identical": self.prompts_identical,
                "floors": {str(i): f.to_dict() for i, f in sorted(self.floors.items())},
                "quants": [q.to_dict() for q in self.quants]}


def _wilcoxon_greater(a: Sequence[float], b: Sequence[float]) -> float | None:
    """One-sided p that a's values exceed b's (paired); None when fewer than 2 pairs differ."""
    if sum(x != y for x, y in zip(a, b, strict=True)) < 2:
        return None
    from scipy import stats

    return float(stats.wilcoxon(a, b, alternative="greater", zero_method="zsplit").pvalue)


def set_floor(prompts: Sequence[tuple[int, dict[str, str], Sequence[Any]]], reference: str,
              labels: Sequence[str]) -> SetFloor:
    """The floor of each prompt and each label against it.

    `prompts`: (index, {label: output text}, repeat rows) per prompt whose run finished; a prompt without
    the reference's text or a usable repeat has no floor and is left out of the counts.
    """
    floors: dict[int, Floor] = {}
    summaries: dict[int, dict[str, ColumnSummary]] = {}
    for index, texts, repeats in prompts:
        ref_text = texts.get(reference)
        if ref_text is None:
            continue
        floor = floor_of(ref_text, repeats)
        if floor is None:
            continue
        floors[index] = floor
        summaries[index] = {label: summarize(ref_text, text) for label, text in texts.items() if label != reference}
    quants = []
    for label in labels:
        if label == reference:
            continue
        pairs = [(summaries[i][label], floors[i]) for i in sorted(floors) if label in summaries[i]]
        if not pairs:
            continue
        within = sum(standing(s, f) == WITHIN for s, f in pairs)
        words = [float(s.changed_words) for s, _ in pairs]
        floor_words = [f.mean_changed_words for _, f in pairs]
        quants.append(QuantAgainstFloor(label, len(pairs), within, len(pairs) - within, mean(words), mean(floor_words),
                                        _wilcoxon_greater(words, floor_words)))
    return SetFloor(floors, quants, len(prompts))


def stored_set_floor(store: Store, set_run: StoredSetRun) -> SetFloor | None:
    """The floor of a stored set run (store.get_set_run) from its finished prompts' runs and their stored
    repeats; None when the set run asked for no repeats and none are stored."""
    reference = set_run.reference_label
    if reference is None:
        return None
    prompts = []
    for child in set_run.children:
        if child.status not in SET_PROMPT_FINISHED:
            continue
        run = store.get_run(child.run_id)
        repeats = store.reference_repeats(child.run_id)
        if run is None or not repeats:
            continue
        texts = {r.label: r.text for r in run.results if r.text is not None and not r.error}
        prompts.append((child.index, texts, repeats))
    if not prompts and not set_run.noise_repeats:
        return None
    return set_floor(prompts, reference, set_run.labels)
