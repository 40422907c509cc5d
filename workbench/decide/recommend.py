"""Which candidate to ship on a target machine, and why, from facts already gathered: a pure function.

Rules (the page, the CLI and the report say them the same way):
- A candidate's quality *holds* when its measured mean KLD from the reference is at most a threshold and blind
  votes do not show people preferring the reference over it (sign test). The default threshold is published
  practice, not a number tuned to any ladder: the mean KLD llama.cpp published for Q5_K_M on LLaMA-3-8B
  (quality.published), the smallest type common GGUF guides call "very low quality loss" (docs/recommend.md says why).
- A candidate is *eligible* when every constraint is known to hold: it fits the target at the context asked
  (predicted), its estimated decode speed there reaches the minimum (an estimate), and its quality holds.
  A constraint that cannot be checked for lack of evidence makes it *unknown*, never eligible.
- Among eligible candidates, `prefer="memory"` (the default) picks the smallest predicted footprint: the answer to
  "which quantization?"; `prefer="quality"` picks the least quality loss (mean KLD; the reference is 0 by
  definition; ties: the smaller footprint), which is the reference whenever it fits.
- When the reference is the pick because no quantized candidate holds, the answer says so and why ("Keep F16: …").
- Without a measured quality figure a candidate cannot be ranked by quality: it is listed with what to run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.core.text_units import bytes_in_words
from workbench.decide.evidence import CandidateKey, Evidence
from workbench.decide.targets import the, verdict_words
from workbench.files.quant_names import imatrix_words
from workbench.quality.published import MODEL as PUBLISHED_MODEL
from workbench.quality.published import published_for

NO_FIT = "no_fit"
PREFERENCES = ("memory", "quality")  # the first is the default
PREFER_WORDS = {"memory": "The smallest whose quality holds", "quality": "The best quality (the reference if it fits)"}
#: The type whose published loss sets the default bar: the smallest common GGUF guides call "very low quality loss".
HOLDS_TYPE = "Q5_K_M"


def _published_bar() -> float:
    figure = published_for(HOLDS_TYPE)
    if figure is None or figure.mean_kld is None:  # the table is parsed from the source: this would be a bad edit
        raise RuntimeError(f"the published table lost {HOLDS_TYPE}")
    return figure.mean_kld


#: The default "quality holds" threshold, read from the published table (0.0108 nats), never retyped.
DEFAULT_MAX_KLD = _published_bar()
PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
MAX_BEATEN = 3  # candidates that would rank higher named in the reasons; the table has them all


@dataclass(frozen=True)
class Constraints:
    """What the person deciding asks for."""

    target: str
    n_ctx: int = 8192
    min_tok_s: float | None = None
    max_kld: float | None = DEFAULT_MAX_KLD  # the "quality holds" threshold; None: no bar
    prefer: str = "memory"

    def validate(self) -> None:
        """Plain-message ValueErrors for settings that cannot be met by anything."""
        if not 64 <= self.n_ctx <= 1 << 22:
            raise ValueError("the context must be between 64 and 4,194,304 tokens")
        if self.min_tok_s is not None and not (math.isfinite(self.min_tok_s) and self.min_tok_s >= 0):
            raise ValueError("the minimum speed must be a number of tokens per second, 0 or more")
        if self.max_kld is not None and not (math.isfinite(self.max_kld) and self.max_kld >= 0):
            raise ValueError("the maximum mean KLD must be a number, 0 or more")
        if self.prefer not in PREFERENCES:
            raise ValueError(f"prefer must be one of {', '.join(PREFERENCES)}")


@dataclass
class Facts:
    """One candidate on one target: its evidence, the fit and speed predicted there."""

    key: CandidateKey
    evidence: Evidence
    verdict_code: str  # fit.GPU_FULL | GPU_PARTIAL | CPU_ONLY | NO_FIT
    verdict: str  # in words
    needed_bytes: int  # predicted footprint on the target (RAM + VRAM)
    spare_bytes: int  # predicted room left in the memory that binds (negative: short by that much)
    est_tok_s: float | None  # estimated decode speed on the target (None: no estimate)
    file: str | None = None
    quant_type: str | None = None
    published_kld: float | None = None  # another model's figure for the same type, for context only
    detail: Any = None  # the TargetFit / SpeedEstimate behind these numbers, for reports
    imatrix: dict[str, Any] | None = None  # the file was made with an importance matrix: its provenance (LadderFile)

    @property
    def label(self) -> str:
        return self.key.label

    @property
    def named(self) -> str:
        """The label, and for a file made with an importance matrix what that means: "Q4_K_M · imatrix (Support) —
        Q4_K_M made with your prompts' importance matrix —" reads as one noun in a sentence."""
        if self.imatrix is None or not self.quant_type:
            return self.label
        return f"{self.label} — {imatrix_words(self.quant_type, self.imatrix, with_name=False)} —"

    @property
    def kld(self) -> float | None:
        d = self.evidence.divergence
        return d.mean_kld if d is not None else None


@dataclass
class Check:
    name: str  # fit | speed | quality | votes
    status: str  # pass | fail | unknown
    words: str


@dataclass
class Assessment:
    facts: Facts
    checks: list[Check]

    @property
    def status(self) -> str:
        statuses = {c.status for c in self.checks}
        return FAIL if FAIL in statuses else UNKNOWN if UNKNOWN in statuses else PASS

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def unknown(self) -> list[Check]:
        return [c for c in self.checks if c.status == UNKNOWN]


@dataclass(frozen=True)
class Action:
    """Evidence to collect, and for which candidates: what a button or a command runs."""

    kind: str  # divergence | eval | speed | votes
    labels: tuple[str, ...]
    words: str


@dataclass
class Recommendation:
    constraints: Constraints
    recommended: Facts | None
    reasons: list[str]
    would_change: list[str]
    assessments: list[Assessment]
    actions: list[Action] = field(default_factory=list)
    answer: str = ""  # the one sentence to say out loud
    rule: str = ""  # what "quality holds" means here, in one sentence
    meaning: str = ""  # what the answer means for the decision: memory and speed against the reference

    @property
    def enough_evidence(self) -> bool:
        return self.recommended is not None

    @property
    def keeps_reference(self) -> bool:
        """The smallest-that-holds rule fell back to the reference: no quantized option holds (or is measured yet)."""
        return (self.constraints.prefer == "memory" and self.recommended is not None
                and self.recommended.evidence.is_reference)


# ---- words --------------------------------------------------------------------------------------------------------
def ctx_words(n_ctx: int) -> str:
    return f"{n_ctx // 1024}k" if n_ctx % 1024 == 0 else f"{n_ctx:,} tokens"


def kld_words(x: float) -> str:
    return "0 (the reference)" if x == 0 else f"{x:.4f}" if x < 0.01 else f"{x:.3f}"


def bar_words(x: float) -> str:
    """A threshold in words: enough digits to tell the default (0.0108) from a typed 0.01."""
    return f"{x:.4g}"


def rule_sentence(c: Constraints, reference: str) -> str:
    """What "quality holds" means under `c`, in one sentence a product person can check and change."""
    kld = (f"the mean KLD from {reference} (how far its next-token probabilities drift from {reference}'s, measured "
           "here on reference text)")
    prompts = (f"its answers on your prompts stay within {reference}'s own variation (where a prompt set ran here "
               "with a noise floor)")
    votes = f"blind votes do not prefer {reference}"
    if c.max_kld is None:
        return f"No quality bar is set: any measured mean KLD counts, as long as {votes}."
    published = (f"the loss llama.cpp published for {HOLDS_TYPE} on {PUBLISHED_MODEL}, the smallest type common "
                 "GGUF guides call \"very low quality loss\"")
    if math.isclose(c.max_kld, DEFAULT_MAX_KLD, rel_tol=1e-6):
        return f"Quality holds when {kld} is at most {bar_words(c.max_kld)} ({published}), {prompts}, and {votes}."
    return (f"Quality holds when {kld} is at most {bar_words(c.max_kld)} (your setting; the default "
            f"{bar_words(DEFAULT_MAX_KLD)} is {published}), {prompts}, and {votes}.")


def _verdict_words(e: Evidence) -> str | None:
    v = e.verdict
    if v is None or not v.votes:
        return None
    outcome = v.outcome
    if outcome == "prefers-reference":
        return f"people preferred {v.reference} in {v.prefer_reference} of {v.decided} decided blind judgements (p = {v.p_value:.3f})"
    if outcome == "prefers-candidate":
        return f"people preferred it over {v.reference} in {v.prefer_candidate} of {v.decided} decided blind judgements"
    if outcome == "too-few":
        return f"{v.votes} blind judgement(s) vs {v.reference}: too few to tell"
    return f"no detectable preference in {v.votes} blind judgements vs {v.reference}"


def assess(f: Facts, c: Constraints) -> Assessment:
    """Each constraint checked for one candidate, with the words that say why."""
    ctx = ctx_words(c.n_ctx)
    checks = []
    if f.verdict_code == NO_FIT:
        checks.append(Check("fit", FAIL, f"does not fit {the(c.target)} at {ctx}: {bytes_in_words(-f.spare_bytes)} short (predicted)"))
    else:
        checks.append(Check("fit", PASS, f"{verdict_words(f.verdict_code, f.verdict)} on {the(c.target)} at {ctx} with "
                            f"{bytes_in_words(max(0, f.spare_bytes))} to spare (predicted)"))
    if c.min_tok_s is not None:
        if f.est_tok_s is None:
            checks.append(Check("speed", UNKNOWN, "no decode speed estimate for the target"))
        elif f.est_tok_s < c.min_tok_s:
            checks.append(Check("speed", FAIL, f"est. {f.est_tok_s:.1f} tok/s, below the {c.min_tok_s:g} tok/s asked (estimate)"))
        else:
            checks.append(Check("speed", PASS, f"est. {f.est_tok_s:.1f} tok/s (estimate)"))
    elif f.est_tok_s is not None:
        checks.append(Check("speed", PASS, f"est. {f.est_tok_s:.1f} tok/s (estimate)"))
    kld = f.kld
    if kld is None:
        status = UNKNOWN if (c.max_kld is not None or c.prefer == "quality") and not f.evidence.is_reference else PASS
        checks.append(Check("quality", status, "no divergence measured for it yet"))
    elif c.max_kld is not None and kld > c.max_kld:
        checks.append(Check("quality", FAIL, f"mean KLD {kld_words(kld)}, above the {bar_words(c.max_kld)} allowed (measured)"))
    else:
        within = "" if c.max_kld is None or f.evidence.is_reference else f", within the {bar_words(c.max_kld)} allowed"
        checks.append(Check("quality", PASS, f"mean KLD {kld_words(kld)}" + ("" if f.evidence.is_reference else " (measured)")
                            + within))
    prompts = f.evidence.prompts
    if prompts is not None and c.max_kld is not None and not f.evidence.is_reference:  # part of "quality holds"
        checks.append(Check("prompts", FAIL if prompts.beyond_floor else PASS, prompts.words()))
    votes = _verdict_words(f.evidence)
    if votes is not None:
        prefers_ref = f.evidence.verdict is not None and f.evidence.verdict.outcome == "prefers-reference"
        checks.append(Check("votes", FAIL if prefers_ref else PASS, votes))
    return Assessment(f, checks)


def _order(c: Constraints, f: Facts) -> tuple[float, float]:
    kld = f.kld if f.kld is not None else math.inf
    return (kld, f.needed_bytes) if c.prefer == "quality" else (f.needed_bytes, kld)


def _pick_sentence(a: Assessment) -> str:
    words = [ch.words for ch in a.checks]
    evals = a.facts.evidence.evals
    if evals is not None:
        words.append(f"passed {evals.passed} of {evals.cases} eval cases ({evals.pack}, measured)")
    return f"{a.facts.label}: " + "; ".join(words) + "."


def _actions(assessments: Sequence[Assessment], c: Constraints) -> list[Action]:
    """What to run to settle the candidates whose standing is unknown, most useful first."""
    need_kld = tuple(a.facts.label for a in assessments if any(ch.name == "quality" and ch.status == UNKNOWN
                                                              for ch in a.checks) and a.failed() == [])
    need_speed = tuple(a.facts.label for a in assessments if any(ch.name == "speed" and ch.status == UNKNOWN
                                                                for ch in a.checks) and a.failed() == [])
    contenders = sorted((a for a in assessments if a.status == PASS), key=lambda a: _order(c, a.facts))[:2]
    no_votes = tuple(a.facts.label for a in contenders if not a.facts.evidence.is_reference
                     and (a.facts.evidence.verdict is None or not a.facts.evidence.verdict.votes))
    out = []
    if need_kld:
        out.append(Action("divergence", need_kld, "measure divergence from the reference (teacher-forced KLD) for "
                          + ", ".join(need_kld)))
    if need_speed:
        out.append(Action("speed", need_speed, "run a comparison on this machine to calibrate the speed estimate for "
                          + ", ".join(need_speed)))
    if no_votes:
        out.append(Action("votes", no_votes, "judge a prompt set blind, reference vs " + ", ".join(no_votes)
                          + ", to see whether people can tell them apart"))
    return out


def recommend(facts: Sequence[Facts], constraints: Constraints) -> Recommendation:
    """The pick under `constraints`, the sentence that says it, why, what would change it, and what evidence would help."""
    constraints.validate()
    assessments = [assess(f, constraints) for f in facts]
    eligible = sorted((a for a in assessments if a.status == PASS), key=lambda a: _order(constraints, a.facts))
    actions = _actions(assessments, constraints)
    reference = next((f.label for f in facts if f.evidence.is_reference), "the reference")
    rule = rule_sentence(constraints, reference)
    if not eligible:
        reasons = ["Not enough evidence to recommend anything." if any(a.status == UNKNOWN for a in assessments)
                   else "No candidate meets every constraint."]
        reasons += [f"{a.facts.label}: " + "; ".join(ch.words for ch in a.failed() + a.unknown()) + "."
                    for a in assessments if a.status != PASS]
        answer = f"{reasons[0][:-1]} on {the(constraints.target)} at {ctx_words(constraints.n_ctx)}."
        return Recommendation(constraints, None, reasons, [], assessments, actions, answer, rule)
    pick = eligible[0]
    reasons = [_pick_sentence(pick)]
    better = sorted((a for a in assessments if a is not pick and a.status != PASS
                     and _order(constraints, a.facts) < _order(constraints, pick.facts)),
                    key=lambda a: _order(constraints, a.facts), reverse=True)  # the closest to the pick first
    for a in better[:MAX_BEATEN]:
        reasons.append(f"{a.facts.label} would rank higher but " + "; ".join(ch.words for ch in a.failed() + a.unknown()) + ".")
    if len(better) > MAX_BEATEN:
        reasons.append(f"{len(better) - MAX_BEATEN} more would rank higher but miss a constraint or lack evidence "
                       "(see the table).")
    would_change = _would_change(pick, eligible, constraints)
    answer = _answer(pick, better, assessments, constraints)
    return Recommendation(constraints, pick.facts, reasons, would_change, assessments, actions, answer, rule,
                          _meaning(pick.facts, [a.facts for a in assessments], constraints))


def _meaning(pick: Facts, facts: Sequence[Facts], c: Constraints) -> str:
    """The pick against the reference in what a deployment pays: memory on the target, and speed there."""
    ref = next((f for f in facts if f.evidence.is_reference), None)
    where = the(c.target)
    if ref is None:
        return ""
    if pick is ref:
        smaller = [f for f in facts if f is not ref and f.needed_bytes < ref.needed_bytes]
        if not smaller:
            return f"{ref.label} needs {bytes_in_words(ref.needed_bytes)} on {where} (predicted)."
        saving = ref.needed_bytes - min(f.needed_bytes for f in smaller)
        return (f"{ref.label} needs {bytes_in_words(ref.needed_bytes)} on {where} (predicted); a quantized option would save up "
                f"to {bytes_in_words(saving)}, at a quality cost the rule does not accept or has not measured.")
    saved = ref.needed_bytes - pick.needed_bytes
    words = (f"{pick.label} needs {bytes_in_words(pick.needed_bytes)} on {where} where {ref.label} needs "
             f"{bytes_in_words(ref.needed_bytes)}: " + (f"{saved / ref.needed_bytes:.0%} less memory" if saved > 0
                                              else f"{bytes_in_words(-saved)} more") + " (predicted)")
    if pick.est_tok_s is not None and ref.est_tok_s is not None:
        words += f", and about {pick.est_tok_s:.0f} tok/s against {ref.est_tok_s:.0f} (estimated)"
    return words + "."


def _names(labels: Sequence[str], most: int = 3) -> str:
    """"A", "A and B", "A, B and C", "A, B, C and 2 more"."""
    shown = list(labels[:most]) + ([f"{len(labels) - most} more"] if len(labels) > most else [])
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _why_not(failed: Sequence[Assessment], c: Constraints, reference: str) -> str:
    """Why these candidates lost, grouped by the first check each failed: "12 lose more than … (the closest: …)"."""
    groups: dict[str, list[Assessment]] = {}
    for a in failed:
        groups.setdefault(a.failed()[0].name, []).append(a)
    parts = []
    for name, group in groups.items():
        labels = [a.facts.label for a in group]
        many = len(group) > 1
        if name == "quality" and c.max_kld is not None:
            closest = min(group, key=lambda a: a.facts.kld or math.inf)
            lead = f"{len(group)} lose" if many else f"{labels[0]} loses"
            parts.append(f"{lead} more than the {bar_words(c.max_kld)} mean KLD allowed ("
                         + (f"the closest: {closest.facts.label}, " if many else "") + f"{kld_words(closest.facts.kld or 0)})")
        elif name == "votes":
            parts.append(f"people preferred {reference} over {_names(labels)} in blind votes")
        elif name == "prompts":
            least = min(group, key=lambda a: (a.facts.evidence.prompts.beyond / a.facts.evidence.prompts.prompts)
                        if a.facts.evidence.prompts else 1.0).facts
            p = least.evidence.prompts
            lead = f"{len(group)} went" if many else f"{labels[0]} went"
            parts.append(f"{lead} beyond {reference}'s own variation on your prompts ("
                         + (f"the least: {least.label}, " if many else "")
                         + (f"on {p.beyond} of {p.prompts}" if p else "") + ")")
        elif name == "fit":
            parts.append(f"{_names(labels)} {'do' if many else 'does'} not fit {the(c.target)} at {ctx_words(c.n_ctx)}")
        else:
            parts.append(f"{_names(labels)} {'are' if many else 'is'} estimated below {c.min_tok_s or 0:g} tok/s")
    return "; ".join(parts)


def _answer(pick: Assessment, better: Sequence[Assessment], assessments: Sequence[Assessment], c: Constraints) -> str:
    """The one sentence: what to ship and the rule that chose it, or why the reference stays."""
    f = pick.facts
    where = f"on {the(c.target)} at {ctx_words(c.n_ctx)}"
    unknown = [a.facts.label for a in better if not a.failed()]  # could still beat the pick once measured
    failed = [a for a in better if a.failed()]
    later = (f"; {_names(unknown)} {'are' if len(unknown) > 1 else 'is'} not measured yet and could take its place"
             if unknown else "")
    if c.prefer == "quality":
        return f"Ship {f.named} {where}: the best quality that meets these{later}."
    if not f.evidence.is_reference:
        kld = "" if f.kld is None else f" (mean KLD {kld_words(f.kld)})"
        return f"Ship {f.named} {where}: the smallest option whose quality holds{kld}{later}."
    others = [a for a in assessments if not a.facts.evidence.is_reference]
    if not others:
        return f"Ship {f.label} {where}: it is the only option."
    if unknown and not failed:
        return (f"Keep {f.label} {where} for now: no quantized option has its quality measured yet "
                f"({_names(unknown)}); measure divergence to see whether one holds.")
    why = _why_not(failed, c, f.label)
    if unknown:
        return (f"Keep {f.label} {where} for now: {why}; {_names(unknown)} {'are' if len(unknown) > 1 else 'is'} "
                "not measured yet.")
    return f"Keep {f.label} {where}: no quantized option holds — {why}."


def _would_change(pick: Assessment, eligible: Sequence[Assessment], c: Constraints) -> list[str]:
    f = pick.facts
    out = []
    if len(eligible) > 1:
        nxt = eligible[1].facts
        diff = nxt.needed_bytes - f.needed_bytes
        size = f"{bytes_in_words(abs(diff))} {'more' if diff > 0 else 'less'} memory"
        kld = f", mean KLD {kld_words(nxt.kld)}" if nxt.kld is not None else ""
        out.append(f"Next in line: {nxt.label} ({size}{kld}).")
    if f.kld is not None and f.kld > 0:
        out.append(f"A quality bar (mean KLD) below {kld_words(f.kld)} would rule {f.label} out.")
    if f.est_tok_s is not None:
        out.append(f"A minimum above {f.est_tok_s:.1f} tok/s would rule it out on {the(c.target)}.")
    if f.spare_bytes >= 0:
        out.append(f"Another {bytes_in_words(f.spare_bytes)} of use on {the(c.target)} (a longer context, other programs) would "
                   "leave it without room.")
    verdict = f.evidence.verdict
    if not f.evidence.is_reference and (verdict is None or not verdict.votes):
        out.append("No one has judged it blind against the reference yet: a preference for the reference would rule it out.")
    return out


def to_json(rec: Recommendation) -> dict[str, Any]:
    """The chosen target's part of the CLI's JSON: recommended, reasons, would_change, actions."""
    return {
        "recommended": rec.recommended.label if rec.recommended else None,
        "recommended_imatrix": rec.recommended.imatrix if rec.recommended else None,  # its matrix's provenance
        "answer": rec.answer,
        "rule": rec.rule,
        "meaning": rec.meaning,
        "target": rec.constraints.target,
        "n_ctx": rec.constraints.n_ctx,
        "constraints": {"min_tok_s": rec.constraints.min_tok_s, "max_kld": rec.constraints.max_kld,
                        "prefer": rec.constraints.prefer},
        "reasons": rec.reasons,
        "would_change": rec.would_change,
        "actions": [{"kind": a.kind, "labels": list(a.labels), "words": a.words} for a in rec.actions],
    }
