"""The verdict of a judged prompt set: did raters prefer the reference or the candidate, and how sure is that?

A product person asks "is Q4_K_M good enough vs Q8_0 for our prompts?". After a blind session over a set
run, this turns the saved pairwise votes into one paragraph they can paste to a stakeholder:

- counts: votes preferring the reference, the candidate, and ties (the newest vote per rater and prompt);
- a two-sided exact sign test on the decided (non-tied) votes: under "no difference" each decided vote
  is a fair coin (scipy.stats.binomtest, p = 0.5);
- the share of decided votes preferring the candidate with its 95% Wilson interval, which says how big a
  preference the data still allow; "people could not tell them apart" with 27–69% is not "they are equal".
  The words never say "no difference": votes alone cannot show that, and the machine's measures may disagree
  (people.headline puts both side by side).

With fewer than MIN_DECIDED (6) decided votes even a clean sweep cannot reach p < 0.05 (5 of 5 gives
p = 0.0625), so the paragraph says so instead of "no difference". Votes of several raters on one prompt
are counted as separate votes; the test treats them as independent, which overstates certainty a little
when raters agree because the prompt, not the quantization, decided.

Beside the votes, the set's machine measures per quantization: changed facts (facts.compare_facts) and the
column summary verdicts (summary.summarize) of each prompt's output against the reference, and, when the
set run repeated its reference, where the candidate stands against that noise floor (quality.noise_floor).
Values read from the database are untrusted: a vote whose labels or winner are not what a vote holds is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.core.text_units import counted, times
from workbench.files.quant_names import default_pair
from workbench.people.ratings import SET_MODE as SET_MODE  # the mode of votes made in a blind set session
from workbench.people.ratings import WINNERS, list_votes, rater_identity
from workbench.quality.evalstats import chance_words as chance_words  # p-values in words (one home)
from workbench.quality.noise_floor import BEYOND, Floor, SetFloor, standing, stored_set_floor
from workbench.quality.summary import GROUPS, summarize
from workbench.storage.store import SET_PROMPT_FINISHED, Store, StoredResult, StoredRun, StoredSetRun

CONFIDENCE = 0.95
ALPHA = 0.05
MIN_DECIDED = 6  # the fewest decided votes whose clean sweep is significant at ALPHA, two-sided

# summary.summarize verdicts grouped the way a stakeholder reads them


@dataclass(frozen=True)
class Verdict:
    """Pairwise votes of a set, reference vs candidate, and what they show."""

    reference: str
    candidate: str
    n_prompts: int
    prefer_reference: int
    prefer_candidate: int
    ties: int
    n_raters: int = 0
    p_value: float | None = None
    share: float | None = None  # of decided votes, preferring the candidate
    low: float | None = None
    high: float | None = None

    @property
    def decided(self) -> int:
        return self.prefer_reference + self.prefer_candidate

    @property
    def votes(self) -> int:
        return self.decided + self.ties

    @property
    def outcome(self) -> str:
        """no-votes | too-few | no-difference | prefers-reference | prefers-candidate."""
        if not self.votes:
            return "no-votes"
        if self.decided < MIN_DECIDED:
            return "too-few"
        if self.p_value is None or self.p_value >= ALPHA:
            return "no-difference"
        return "prefers-candidate" if self.prefer_candidate > self.prefer_reference else "prefers-reference"

    @property
    def paragraph(self) -> str:
        return verdict_paragraph(self)


@dataclass(frozen=True)
class QuantQuality:
    """One quantization's machine measures over a set: how many prompts fall in each summary group, facts changed."""

    label: str
    prompts: int = 0
    identical: int = 0
    same_answer: int = 0
    different_answer: int = 0
    facts_changed: int = 0
    prompts_with_changed_facts: int = 0
    floor_prompts: int = 0  # prompts with a noise floor (the reference's own variation), whatever the baseline
    beyond_floor: int = 0  # of those, prompts where this output moved further from the baseline's than the floor


@dataclass
class SetVerdict:
    verdict: Verdict
    quality: list[QuantQuality] = field(default_factory=list)
    floor: SetFloor | None = None  # the reference's repeats (None: the set run did not repeat it)
    floor_of: str | None = None  # the reference whose repeats made the floor (the floor never moves with the pair)

    @property
    def candidate_quality(self) -> QuantQuality | None:
        return next((q for q in self.quality if q.label == self.verdict.candidate), None)

    @property
    def paragraph(self) -> str:
        """The votes, the candidate's machine measures, and its place against the noise floor: one paragraph."""
        q = self.candidate_quality
        parts = [self.verdict.paragraph, *((quality_sentence(q, self.verdict.reference),) if q else ())]
        if self.floor is not None and self.floor.floors:
            parts.append(self.floor.sentence())
            if self.floor_of in (None, self.verdict.reference):
                parts += [x.sentence() for x in self.floor.quants if x.label == self.verdict.candidate]
            elif q is not None and q.floor_prompts:
                parts.append(f"Against {self.verdict.reference}, {q.label} went beyond {self.floor_of}'s own "
                             f"variation on {q.beyond_floor} of {q.floor_prompts} prompts (the floor is always the "
                             "reference's own variation).")
        return " ".join(parts)


# ---- matching labels -----------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def matches(name: str, label: Any, quant_type: Any = None) -> bool:
    """Whether an output (its label, its quant type) is `name`, as the leaderboard keys them."""
    return name in (_text(label), _text(quant_type))


def result_label(results: Iterable[StoredResult], name: str) -> str | None:
    """The label of the result in a run that is `name` (by label first, then quant type) and has no error."""
    ok = [r for r in results if not r.error and r.text is not None]
    return next((r.label for r in ok if r.label == name),
                next((r.label for r in ok if r.quant_type == name and r.label), None))


# ---- counting votes ------------------------------------------------------------------------------
def count_votes(votes: Iterable[Any], reference: str, candidate: str) -> tuple[int, int, int, int]:
    """(prefer reference, prefer candidate, ties, raters) from vote rows; the newest per (run, rater) counts.

    Only votes between an output that is `reference` and one that is `candidate` count; rows whose run,
    labels or winner are not the right type are skipped.
    """
    latest: dict[tuple[Any, str], tuple[str, str]] = {}  # (run, rater) → (side a is, winner)
    for v in votes:
        if not isinstance(v, dict) or not isinstance(v.get("run_id"), int) or v.get("winner") not in WINNERS:
            continue
        a_ref = matches(reference, v.get("label_a"), v.get("quant_type_a"))
        b_ref = matches(reference, v.get("label_b"), v.get("quant_type_b"))
        a_cand = matches(candidate, v.get("label_a"), v.get("quant_type_a"))
        b_cand = matches(candidate, v.get("label_b"), v.get("quant_type_b"))
        if a_ref and b_cand:
            side = "reference"
        elif a_cand and b_ref:
            side = "candidate"
        else:
            continue
        latest[(v["run_id"], rater_identity(v))] = (side, v["winner"])
    ref = cand = ties = 0
    for side, winner in latest.values():
        if winner == "tie":
            ties += 1
        elif (winner == "a") == (side == "reference"):
            ref += 1
        else:
            cand += 1
    return ref, cand, ties, len({who for _, who in latest})


def decide(reference: str, candidate: str, prefer_reference: int, prefer_candidate: int, ties: int, *,
           n_prompts: int, n_raters: int = 0) -> Verdict:
    """The sign test and the Wilson interval of these counts."""
    from scipy.stats import binomtest

    for n in (prefer_reference, prefer_candidate, ties, n_prompts, n_raters):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"counts are whole numbers ≥ 0, not {n!r}")
    decided = prefer_reference + prefer_candidate
    if not decided:
        return Verdict(reference, candidate, n_prompts, prefer_reference, prefer_candidate, ties, n_raters)
    test = binomtest(prefer_candidate, decided, 0.5, alternative="two-sided")
    ci = test.proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Verdict(reference, candidate, n_prompts, prefer_reference, prefer_candidate, ties, n_raters,
                   float(test.pvalue), prefer_candidate / decided, float(ci.low), float(ci.high))


# ---- words ---------------------------------------------------------------------------------------
def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def vote_test_words(v: Verdict) -> str:
    """The test behind the words, for the details: the sign test's p and the Wilson interval."""
    if not v.decided:
        return "no decided votes, so no test"
    return (f"exact two-sided sign test on the {v.decided} decided votes, {_p(v.p_value if v.p_value is not None else 1.0)}; "
            f"{v.candidate} preferred in {_pct(v.share or 0.0)} of them, {int(CONFIDENCE * 100)}% Wilson interval "
            f"{100 * (v.low or 0.0):.0f}–{_pct(v.high or 0.0)}")


def verdict_paragraph(v: Verdict) -> str:
    """The votes in words a stakeholder understands, with their uncertainty. Votes alone: "could not tell them
    apart" is what the votes show, never "no difference" (the machine's measures may still show one)."""
    prompts = counted(v.n_prompts, "prompt")
    if not v.votes:
        return f"No votes yet comparing {v.reference} and {v.candidate} on your {prompts}."
    who = f" ({v.votes} votes from {v.n_raters} raters)" if v.n_raters > 1 else ""
    head = (f"On your {prompts}{who}, raters preferred {v.reference} {times(v.prefer_reference)}, "
            f"{v.candidate} {times(v.prefer_candidate)}, {counted(v.ties, 'tie')}")
    if v.outcome == "too-few":
        return (f"{head}: too few decided votes to say whether people notice a difference ({v.decided} so far; "
                f"with fewer than {MIN_DECIDED} even a clean sweep could be chance).")
    test = (f"sign test {_p(v.p_value if v.p_value is not None else 1.0)}; {v.candidate} preferred in "
            f"{_pct(v.share or 0.0)} of decided votes, {int(CONFIDENCE * 100)}% interval "
            f"{100 * (v.low or 0.0):.0f}–{_pct(v.high or 0.0)}")
    if v.outcome == "no-difference":
        return (f"{head}: people could not tell them apart by these votes ({chance_words(v.p_value or 1.0)}; "
                f"{test}). That is not proof they are equal: the interval shows how large a preference these votes "
                "cannot rule out, and more votes narrow it.")
    winner = v.candidate if v.outcome == "prefers-candidate" else v.reference
    return f"{head}: raters clearly preferred {winner} ({chance_words(v.p_value or 0.0)}; {test})."


def quality_sentence(q: QuantQuality, baseline: str | None = None) -> str:
    """The machine measures in one sentence: summary groups and changed facts."""
    against = f"Against {baseline}" if baseline else "Against the reference"
    return (f"{against}, {q.label}'s answers were identical on {q.identical}, the same answer on "
            f"{q.same_answer} and a different answer on {q.different_answer} of {q.prompts} prompts, with "
            f"{counted(q.facts_changed, 'changed fact')} on {counted(q.prompts_with_changed_facts, 'prompt')}.")


# ---- from a stored set run -----------------------------------------------------------------------
def set_child_runs(store: Store, set_run: StoredSetRun) -> list[StoredRun]:
    """The finished child run of each prompt of the set, in prompt order (runs with their results)."""
    out = []
    for child in set_run.children:
        if child.status not in SET_PROMPT_FINISHED:
            continue
        run = store.get_run(child.run_id)
        if run is not None:
            out.append(run)
    return out


def set_quality(runs: Sequence[StoredRun], reference: str, labels: Sequence[str],
                floors: dict[int, Floor] | None = None) -> list[QuantQuality]:
    """Summary groups and changed facts per quantization in `labels`, each output against `reference`'s (any
    label: the baseline of the pair); with `floors` (the set reference's noise floor per prompt index), on how
    many prompts each went beyond it."""
    floors = floors or {}
    out = []
    for name in labels:
        if name == reference:
            continue
        counts = {"identical": 0, "same answer": 0, "different answer": 0}
        facts = with_facts = prompts = floored = beyond = 0
        for run in runs:
            results = run.results
            ref_label, cand_label = result_label(results, reference), result_label(results, name)
            if ref_label is None or cand_label is None:
                continue
            texts = {r.label: r.text or "" for r in results if r.label}
            s = summarize(texts[ref_label], texts[cand_label])
            prompts += 1
            counts[GROUPS[s.verdict]] += 1
            facts += s.facts_changed
            with_facts += bool(s.facts_changed)
            floor = floors.get(run.set_index) if run.set_index is not None else None
            if floor is not None:
                floored += 1
                beyond += standing(s, floor) == BEYOND
        out.append(QuantQuality(name, prompts, counts["identical"], counts["same answer"],
                                counts["different answer"], facts, with_facts, floored, beyond))
    return out


def _set_of(store: Store, set_run_id: int) -> tuple[StoredSetRun, list[StoredRun], str | None, int]:
    """The set run, its finished child runs, its reference (None when it recorded none) and its number of prompts;
    LookupError for an unknown set run."""
    set_run = store.get_set_run(set_run_id)
    if set_run is None:
        raise LookupError(f"there is no set run {set_run_id}")
    runs = set_child_runs(store, set_run)
    return set_run, runs, set_run.reference_label or None, len(set_run.prompts) or len(runs)


def set_labels(set_run: StoredSetRun) -> list[str]:
    """The quantizations a set run compared (its labels that are text), in their order."""
    return list(set_run.labels)


def set_verdict(store: Store, set_run_id: int, candidate: str, reference: str | None = None, *,
                rater: str | None = None, session: str | None = None, mode: str | None = None) -> SetVerdict:
    """The verdict of a set run's votes for reference vs candidate (filtered by rater, session, mode: None is
    any), with every quantization's machine measures. Raises LookupError for an unknown set run."""
    set_run, runs, own_reference, n_prompts = _set_of(store, set_run_id)
    reference = reference or own_reference
    if reference is None:
        raise ValueError(f"set run {set_run_id} has no reference: name one")
    votes = list_votes(store, run_ids=[r.id for r in runs], rater=rater, session=session, mode=mode) if runs else []
    ref, cand, ties, raters = count_votes(votes, reference, candidate)
    labels = set_labels(set_run)
    if candidate not in labels:
        labels.append(candidate)
    floor = stored_set_floor(store, set_run)
    return SetVerdict(decide(reference, candidate, ref, cand, ties, n_prompts=n_prompts, n_raters=raters),
                      set_quality(runs, reference, labels, floor.floors if floor else None), floor, own_reference)


def set_verdicts(store: Store, set_run_id: int, baseline: str | None = None) -> list[SetVerdict]:
    """`set_verdict` of every quantization of the set run against `baseline` (default: its reference; every vote
    counts), in the set's order; their machine measures and the noise floor (always the reference's) are computed
    once and shared. Empty when there is no baseline. Raises LookupError for an unknown set run."""
    set_run, runs, own_reference, n_prompts = _set_of(store, set_run_id)
    reference = baseline or own_reference
    if reference is None:
        return []
    labels = set_labels(set_run)
    floor = stored_set_floor(store, set_run)
    quality = set_quality(runs, reference, labels, floor.floors if floor else None)
    votes = list_votes(store, run_ids=[r.id for r in runs]) if runs else []
    out = []
    for candidate in dict.fromkeys(x for x in labels if x != reference):
        ref, cand, ties, raters = count_votes(votes, reference, candidate)
        out.append(SetVerdict(decide(reference, candidate, ref, cand, ties, n_prompts=n_prompts, n_raters=raters),
                              quality, floor, own_reference))
    return out


def quant_types(set_run: StoredSetRun) -> dict[str, str | None]:
    """label → quant type from the set run's stored ladder (untrusted: only text values count)."""
    ladder = set_run.ladder or {}
    files: list[Any] = ladder["files"] if isinstance(ladder.get("files"), list) else []
    return {f["label"]: _text(f.get("quant_type")) for f in files if isinstance(f, dict) and _text(f.get("label"))}


def default_set_pair(store: Store, set_run_id: int) -> tuple[str, str] | None:
    """(candidate, baseline) a set run is asked about first: the quantization people judged most against the
    reference, when anyone voted; else the smallest common quantization against the 8-bit one
    (files.quant_names.default_pair). None when the set run compared fewer than two. LookupError when unknown."""
    set_run, runs, reference, _ = _set_of(store, set_run_id)
    labels = set_labels(set_run)
    if reference is not None and runs:
        votes = list_votes(store, run_ids=[r.id for r in runs])
        counts = {c: sum(count_votes(votes, reference, c)[:3]) for c in dict.fromkeys(labels) if c != reference}
        best = max(counts, key=lambda c: counts[c], default=None)
        if best is not None and counts[best]:
            return best, reference
    return default_pair(labels, reference, quant_types(set_run))
