"""One plain headline per question: "Q4_K_M vs Q8_0 — will it do?", in a sentence a product person can say out loud.

The workbench gathers four kinds of evidence about a pair of quantizations (a candidate against a baseline):

  objective (measured by the machine)     changed facts (quality.facts), answers that took another path
                                          (quality.summary), the noise floor (quality.noise_floor: how far the
                                          reference strays from itself when re-run), divergence (mean KL)
  human (blind votes)                     people.verdict: which of the two people preferred, and how sure

`headline` turns one `PairEvidence` record into a `Headline`: the sentence first, then what to do (advice), a
flag when the evidence disagrees, and the details under it. The rules are written down in docs/headlines.md;
the short form:

- The machine says "changed" when the candidate went beyond the reference's own variation on any prompt (with a
  noise floor), or, without one, when it changed facts or gave a different answer on any prompt; "same" when it
  did neither; "unknown" with no prompt measured.
- People say "preferred the baseline", "preferred the candidate", "could not tell them apart" (enough decided
  votes, sign test not significant), "too few votes" (fewer than verdict.MIN_DECIDED decided votes) or nothing.
- Too few votes never reads as "no difference": it reads "too few votes to say whether people notice".
- "Could not tell apart" with fewer than SURE_DECIDED decided votes reads "could not yet tell … (too few votes to
  be sure)"; even with more it is "could not tell", never "they are equal".
- When the machine says "changed" and people could not tell (or preferred the candidate), or the machine says
  "same" and people preferred the baseline, the evidence disagrees: the sentence says both, and the advice says
  what settles it.

The rules are pure functions over plain records; only `stored_run_headline` at the bottom reads the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.core.text_units import counted, times
from workbench.files.quant_names import default_pair
from workbench.people.ratings import list_votes
from workbench.people.verdict import (
    MIN_DECIDED,
    SetVerdict,
    Verdict,
    chance_words,
    count_votes,
    decide,
    vote_test_words,
)
from workbench.quality.noise_floor import BEYOND, floor_of, standing
from workbench.quality.summary import GROUPS, summarize
from workbench.storage.store import Store, StoredRun

SURE_DECIDED = 20  # decided votes below which "could not tell" is still "not yet": the 95% interval spans ±20 points
KLD_SMALL = 0.01  # mean KL divergence (nats per token) below which the candidate's next-token odds barely move
KLD_LARGE = 0.1  # above which they move a lot (Q2_K territory on the demo ladder)

CHANGED, SAME, UNKNOWN = "changed", "same", "unknown"
PREFERS_BASELINE, PREFERS_CANDIDATE, CANNOT_TELL, TOO_FEW, NO_VOTES = (
    "prefers-baseline", "prefers-candidate", "cannot-tell", "too-few", "no-votes")


@dataclass(frozen=True)
class PairEvidence:
    """Everything measured about one candidate against one baseline, over one prompt or a set of them."""

    candidate: str
    baseline: str
    prompts: int  # prompts where both gave an output
    prompts_with_changed_facts: int = 0
    facts_changed: int = 0
    different_answers: int = 0  # prompts whose answer took another path (summary group "different answer")
    floor_prompts: int | None = None  # prompts with a noise floor; None: no floor was measured
    beyond_floor: int = 0  # of those, prompts where the pair differed more than the reference differs from itself
    floor_of: str | None = None  # whose own variation the floor is (the reference)
    mean_kld: float | None = None  # divergence of the candidate from the baseline; None: not measured
    verdict: Verdict | None = None  # blind votes between the two (verdict.reference is the baseline)

    def __post_init__(self) -> None:
        for n in (self.prompts, self.prompts_with_changed_facts, self.facts_changed, self.different_answers,
                  self.beyond_floor, *(() if self.floor_prompts is None else (self.floor_prompts,))):
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ValueError(f"evidence counts are whole numbers ≥ 0, not {n!r}")

    @property
    def has_floor(self) -> bool:
        return bool(self.floor_prompts)


@dataclass(frozen=True)
class Headline:
    """The answer in one sentence, what to do about it, whether the evidence disagrees, and the evidence."""

    sentence: str
    advice: str
    disagreement: bool
    machine: str  # CHANGED | SAME | UNKNOWN
    people: str  # PREFERS_BASELINE | PREFERS_CANDIDATE | CANNOT_TELL | TOO_FEW | NO_VOTES
    details: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """Sentence and advice together, as said out loud."""
        return f"{self.sentence} {self.advice}"


def _of(k: int, n: int) -> str:
    return f"all {n}" if k == n and n > 1 else f"{k} of {n}"


# ---- the two kinds of evidence, each on its own ------------------------------------------------------------
def machine_says(e: PairEvidence) -> str:
    """CHANGED, SAME or UNKNOWN from the objective evidence alone (see the module's rules)."""
    if not e.prompts:
        return UNKNOWN
    if e.has_floor:
        return CHANGED if e.beyond_floor else SAME
    return CHANGED if e.prompts_with_changed_facts or e.different_answers else SAME


def people_say(v: Verdict | None) -> str:
    """What the blind votes show, in the headline's terms (verdict.Verdict.outcome, renamed for the pair)."""
    if v is None or not v.votes:
        return NO_VOTES
    return {"too-few": TOO_FEW, "no-difference": CANNOT_TELL, "prefers-reference": PREFERS_BASELINE,
            "prefers-candidate": PREFERS_CANDIDATE}.get(v.outcome, NO_VOTES)


def machine_clause(e: PairEvidence) -> str:
    """The objective evidence as the sentence's first clause, e.g. "Q4_K_M changed facts on 9 of 10 prompts,
    beyond the reference's own variation on all 10"."""
    c = e.candidate
    if not e.prompts:
        return f"{c} has no answers to set against {e.baseline}'s yet"
    said = machine_says(e)
    floor_whose = f"{e.floor_of}'s" if e.floor_of and e.floor_of != e.baseline else "the reference's"
    one = e.prompts == 1
    if e.prompts_with_changed_facts:
        what = (f"{c} changed {counted(e.facts_changed, 'fact')}" if one else
                f"{c} changed facts on {_of(e.prompts_with_changed_facts, e.prompts)} prompts")
    elif e.different_answers:
        what = f"{c} gave a different answer" + ("" if one else f" on {_of(e.different_answers, e.prompts)} prompts")
    else:
        what = f"{c} gave the same answers as {e.baseline} on {_of(e.prompts, e.prompts)} prompts, no fact changed"
        if e.prompts == 1:
            what = f"{c} gave the same answer as {e.baseline}, no fact changed"
    if e.has_floor:
        n = e.floor_prompts or 0
        if said == CHANGED:
            return f"{what}, beyond {floor_whose} own variation" + ("" if one else f" on {_of(e.beyond_floor, n)}")
        if e.prompts_with_changed_facts or e.different_answers:
            return f"{what}, but no more than {floor_whose} own variation when it is run again"
        return f"{what}, within {floor_whose} own variation"
    if said == CHANGED:
        return f"{what} (no noise floor, so some of it may be ordinary run-to-run variation)"
    return what


def people_clause(e: PairEvidence) -> str:
    """The blind votes as the sentence's second clause; never "no difference" for too few votes."""
    v, c, b = e.verdict, e.candidate, e.baseline
    said = people_say(v)
    if v is None or said == NO_VOTES:
        return "nobody has compared them blind yet"
    n = counted(v.votes, "blind comparison")
    if said == TOO_FEW:
        return (f"{n} are too few to say whether people notice ({v.decided} decided so far; "
                f"it takes at least {MIN_DECIDED})")
    if said == CANNOT_TELL:
        chance = chance_words(v.p_value if v.p_value is not None else 1.0)
        if v.decided < SURE_DECIDED:
            return f"in {n} people could not yet tell it from {b} (too few votes to be sure; {chance})"
        return f"in {n} people could not tell it from {b} ({chance}), which is not proof they are equal"
    winner = b if said == PREFERS_BASELINE else c
    return f"in {n} people preferred {winner} ({chance_words(v.p_value or 0.0)})"


def _advice(e: PairEvidence, machine: str, people: str) -> str:
    c, b = e.candidate, e.baseline
    if machine == UNKNOWN:
        if people == PREFERS_BASELINE:
            return f"Keep {b}."
        if people in (PREFERS_CANDIDATE, CANNOT_TELL):
            return f"{c} looks good enough to people; run the prompts again to measure the answers too."
        return "Run the prompts through both before deciding."
    if machine == CHANGED:
        return {PREFERS_BASELINE: f"Keep {b}.",
                PREFERS_CANDIDATE: f"People liked {c}'s answers better, but check its changed facts before "
                                   f"shipping it; if they matter, keep {b}.",
                CANNOT_TELL: f"Keep {b}, or collect more votes.",
                TOO_FEW: f"Keep {b} for now, or collect more blind votes to see whether people notice.",
                NO_VOTES: f"Keep {b} for now, or judge them blind to see whether people notice."}[people]
    return {PREFERS_BASELINE: f"Look at the wording people noticed before switching; until then keep {b}.",
            PREFERS_CANDIDATE: f"{c} will do for these prompts.",
            CANNOT_TELL: f"{c} will do for these prompts.",
            TOO_FEW: f"{c} looks safe on these prompts; more blind votes would confirm it.",
            NO_VOTES: f"{c} looks safe on these prompts; a blind judgement would confirm it."}[people]


def moved_words(mean_kld: float) -> str:
    """How far next-token odds moved, in words (the bounds above)."""
    return "barely moved" if mean_kld < KLD_SMALL else "moved a little" if mean_kld < KLD_LARGE else "moved a lot"


def _details(e: PairEvidence) -> tuple[str, ...]:
    out = []
    if e.prompts:
        out.append(f"Changed facts: {counted(e.facts_changed, 'fact')} on {counted(e.prompts_with_changed_facts, 'prompt')} "
                   f"of {e.prompts}; a different answer (the text took another path) on {e.different_answers}. "
                   f"Measured by the machine: {e.candidate}'s output against {e.baseline}'s on the same prompt.")
    if e.has_floor:
        whose = e.floor_of or "the reference"
        out.append(f"Noise floor: {whose} was run again on each prompt and measured against itself; {e.candidate} "
                   f"differed from {e.baseline} more than that on {e.beyond_floor} of {e.floor_prompts} prompts. "
                   f"The floor is always {whose}'s own variation, whichever pair is compared.")
    elif e.prompts:
        out.append("No noise floor (the reference was not repeated), so a difference cannot be told from ordinary "
                   "run-to-run variation.")
    if e.mean_kld is not None:
        out.append(f"Divergence: {e.candidate}'s next-token odds {moved_words(e.mean_kld)} from {e.baseline}'s (mean KL divergence "
                   f"{e.mean_kld:.3f}; under {KLD_SMALL} is negligible, over {KLD_LARGE} is large).")
    v = e.verdict
    if v is not None and v.votes:
        out.append(f"Blind votes: {v.reference} preferred {times(v.prefer_reference)}, {v.candidate} "
                   f"{times(v.prefer_candidate)}, {counted(v.ties, 'tie')}; {vote_test_words(v)}.")
    return tuple(out)


def headline(e: PairEvidence) -> Headline:
    """The sentence, advice, disagreement flag and details for one pair (rules: module docstring, docs/headlines.md)."""
    machine, people = machine_says(e), people_say(e.verdict)
    disagree = ((machine == CHANGED and people in (CANNOT_TELL, PREFERS_CANDIDATE))
                or (machine == SAME and people == PREFERS_BASELINE))
    first = machine_clause(e)
    second = people_clause(e)
    joint = "; yet " if disagree else "; "
    sentence = f"{first}{joint}{second}."
    sentence = sentence[:1].upper() + sentence[1:]
    advice = _advice(e, machine, people)
    details = _details(e)
    if disagree:
        details = (("The evidence disagrees: the machine measured a difference people did not (yet) notice."
                    if machine == CHANGED else
                    "The evidence disagrees: people preferred one side though the machine found no difference "
                    "beyond the reference's own variation."), *details)
    return Headline(sentence, advice, disagree, machine, people, details)


# ---- from a set's verdict ----------------------------------------------------------------------------------
def set_evidence(sv: SetVerdict) -> PairEvidence:
    """The evidence record of one set verdict: its candidate's machine measures against the verdict's baseline,
    the reference's noise floor, and the votes."""
    v = sv.verdict
    q = sv.candidate_quality
    has_floor = sv.floor is not None and bool(sv.floor.floors) and q is not None and q.floor_prompts > 0
    if q is None:
        return PairEvidence(v.candidate, v.reference, 0, verdict=v)
    return PairEvidence(v.candidate, v.reference, q.prompts, q.prompts_with_changed_facts, q.facts_changed,
                        q.different_answer, q.floor_prompts if has_floor else None, q.beyond_floor if has_floor else 0,
                        sv.floor_of, verdict=v)


def set_headline(sv: SetVerdict) -> Headline:
    """The headline of one pair over a prompt set."""
    return headline(set_evidence(sv))


# ---- from one stored comparison run ------------------------------------------------------------------------
def run_evidence(run: StoredRun, candidate: str, baseline: str, repeats: Sequence[Any] = (),
                 mean_kld: float | None = None, votes: Iterable[Any] = ()) -> PairEvidence:
    """The evidence of one prompt's run (store.get_run) for candidate vs baseline: their stored outputs' summary and
    changed facts, the reference's repeats as the floor (store.reference_repeats), a divergence measured against
    the baseline, and pairwise votes on the run. Untrusted rows: outputs that are not text or carry an error count
    as missing."""
    texts = {r.label: r.text for r in run.results if r.text is not None and not r.error}
    own = next((r.label for r in run.results if r.is_reference and r.label in texts), None)
    ref, cand, ties, raters = count_votes(votes, baseline, candidate)
    verdict = decide(baseline, candidate, ref, cand, ties, n_prompts=1, n_raters=raters) if ref + cand + ties else None
    if candidate not in texts or baseline not in texts:
        return PairEvidence(candidate, baseline, 0, verdict=verdict)
    s = summarize(texts[baseline], texts[candidate])
    floor = floor_of(texts[own], repeats) if own is not None and repeats else None
    return PairEvidence(candidate, baseline, 1, int(bool(s.facts)), s.facts_changed,
                        int(GROUPS[s.verdict] == "different answer"), 1 if floor is not None else None,
                        int(floor is not None and standing(s, floor) == BEYOND), own, mean_kld, verdict)


def run_outputs(run: StoredRun) -> list[str]:
    """The labels of a run's outputs that can be compared (text, no error), in column order."""
    return list(dict.fromkeys(r.label for r in run.results if r.text is not None and not r.error))


def default_run_pair(run: StoredRun) -> tuple[str, str] | None:
    """(candidate, baseline) a stored run is asked about first: files.quant_names.default_pair of its outputs."""
    quant_of = {r.label: r.quant_type for r in run.results}
    return default_pair(run_outputs(run), run.reference_label, quant_of)


def stored_run_headline(store: Store, run: StoredRun, candidate: str, baseline: str) -> Headline:
    """`run_evidence` read from the store (repeats, a divergence measured against the baseline, the run's votes)."""
    from workbench.quality.divergence import load_report

    report = load_report(store, run.id, "output")
    kld = None
    if report is not None and report.reference_label == baseline:
        found = next((c for c in report.results if c.label == candidate and not c.error), None)
        value = found.summary.get("mean_kld") if found is not None else None
        kld = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return headline(run_evidence(run, candidate, baseline, store.reference_repeats(run.id), kld,
                                 list_votes(store, run_ids=[run.id])))
