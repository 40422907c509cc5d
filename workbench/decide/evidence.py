"""What the database already knows about each candidate of a ladder: the quality measured (divergence from the
reference, eval pass rates, blind votes and ratings) and the speed and memory measured on this machine.

A candidate is a ladder file plus its KV-cache types (`CandidateKey`); its context is the user's choice, since
quality evidence taken at one context speaks for another (the cache's precision matters, its length does not)
while memory and speed are predicted for the chosen context elsewhere (decide.targets, decide.speed).
Stored labels name the variant they ran ("Q4_K_M · KV q8_0 · 8k", runs.variants); a plain label is the file
with an f16 cache. Every value read back from the database is type-checked here: it is untrusted input.

Only evidence measured here decides (issue 24): a figure of an imported run (another machine's, or a forged file's)
never reaches `divergence`, `evals`, `verdict`, ratings or `speed_here`. It is kept apart in `Evidence.imported`, one
`ImportedEvidence` per origin (storage.provenance), to be shown labelled "imported from <machine>, <date> — not used
for the decision".
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from workbench.decide.prompt_evidence import PromptsEvidence, prompt_floors
from workbench.models.ladder import Ladder
from workbench.people.verdict import Verdict, count_votes, decide
from workbench.runs.variants import DEFAULT_KV, format_label, parse_label
from workbench.storage.provenance import MEASURED_HERE, Provenance
from workbench.storage.store import JudgementFilters, Store


@dataclass(frozen=True, order=True)
class CandidateKey:
    """A ladder file's label and the KV-cache types it runs with."""

    base: str
    kv_type_k: str = DEFAULT_KV
    kv_type_v: str = DEFAULT_KV

    @property
    def label(self) -> str:
        """"Q4_K_M" for the f16 cache, "Q4_K_M · KV q8_0", or "Q4_K_M · KV q8_0/q4_0" when K and V differ."""
        return format_label(self.base, self.kv_type_k, self.kv_type_v)


def split_label(label: str) -> tuple[CandidateKey, int | None]:
    """A stored label as (candidate, context in tokens or None when the label does not say), by
    runs.variants.parse_label."""
    parsed = parse_label(label)
    return CandidateKey(parsed.base, parsed.kv_type_k, parsed.kv_type_v), parsed.n_ctx


def key_of_result(result: dict[str, Any]) -> CandidateKey:
    """A stored result's candidate: its recorded KV types when it has them (runs.variants), else its label's."""
    key, _ = split_label(str(result.get("label") or ""))
    metrics = result.get("metrics")
    if not isinstance(metrics, dict):
        metrics = {}
    k, v = metrics.get("kv_type_k"), metrics.get("kv_type_v")
    if isinstance(k, str) and isinstance(v, str) and k and v:
        return CandidateKey(key.base, k.lower(), v.lower())
    return key


# ---- the evidence ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DivergenceEvidence:
    """Teacher-forced divergence from the reference, measured here (quality.divergence)."""

    mean_kld: float
    top1_agreement: float | None
    n_tokens: int
    runs: tuple[int, ...]
    source: str  # "reference text" | "prompt outputs" | "the reference itself"

    @property
    def how(self) -> str:
        if not self.runs:
            return "the reference, by definition"
        runs = ", ".join(f"#{r}" for r in self.runs[:5]) + (" …" if len(self.runs) > 5 else "")
        return f"measured here: teacher-forced over {self.n_tokens:,} tokens of {self.source} (run {runs})"

    @property
    def provenance(self) -> Provenance:
        """Measured here, by its newest run: an imported measurement is an `ImportedEvidence`, never this."""
        return Provenance(MEASURED_HERE, self.runs[0] if self.runs else None)


@dataclass(frozen=True)
class EvalEvidence:
    """Pass rate on the newest eval run of the ladder that included the candidate."""

    passed: int
    cases: int
    run_id: int
    pack: str
    reference_passed: int | None = None
    reference_cases: int | None = None

    @property
    def pass_rate(self) -> float:
        return self.passed / self.cases if self.cases else 0.0

    @property
    def reference_rate(self) -> float | None:
        if self.reference_passed is None or not self.reference_cases:
            return None
        return self.reference_passed / self.reference_cases

    @property
    def provenance(self) -> Provenance:
        return Provenance(MEASURED_HERE, self.run_id)


@dataclass(frozen=True)
class SpeedHere:
    """Decode speed measured on this machine (undisturbed local comparisons), and the workers' peak memory."""

    median_tok_s: float
    low_tok_s: float
    high_tok_s: float
    n: int
    peak_rss_bytes: int | None
    gpu_layers: int

    @property
    def provenance(self) -> Provenance:
        """Always measured here: the store reads no imported comparison for it (Store.ladder_results)."""
        return Provenance(MEASURED_HERE)


@dataclass(frozen=True)
class ImportedEvidence:
    """What runs imported from one origin (one machine, one day) say of a candidate: shown, labelled with where it
    came from, and never used for the decision, which rests on what was measured here."""

    provenance: Provenance
    divergence: DivergenceEvidence | None = None
    evals: EvalEvidence | None = None
    verdict: Verdict | None = None
    rating_mean: float | None = None
    n_ratings: int = 0

    def figures(self) -> str:
        """"mean KLD 0.0001 over 4,096 tokens of reference text; evals 5/5 (starter)"; the run numbers are this
        database's."""
        d, ev, v = self.divergence, self.evals, self.verdict
        parts = []
        if d is not None:
            top1 = "" if d.top1_agreement is None else f", top-1 agreement {d.top1_agreement:.1%}"
            parts.append(f"mean KLD {d.mean_kld:.4g}{top1} over {d.n_tokens:,} tokens of {d.source}")
        if ev is not None:
            parts.append(f"evals {ev.passed}/{ev.cases} ({ev.pack})")
        if v is not None and v.votes:
            parts.append(f"votes {v.prefer_reference} for {v.reference}, {v.prefer_candidate} for it, {v.ties} ties")
        if self.rating_mean is not None:
            parts.append(f"ratings {self.rating_mean:.2f} / 5 ({self.n_ratings})")
        return "; ".join(parts)

    @property
    def label(self) -> str:
        """How every imported figure is labelled wherever it is shown."""
        return f"{self.provenance.words()} — not used for the decision"


@dataclass
class Evidence:
    key: CandidateKey
    is_reference: bool = False
    divergence: DivergenceEvidence | None = None
    evals: EvalEvidence | None = None
    verdict: Verdict | None = None  # blind/pairwise votes, reference vs this candidate
    rating_mean: float | None = None
    n_ratings: int = 0
    speed_here: SpeedHere | None = None
    prompts: PromptsEvidence | None = None  # the user's prompts against the reference's own variation (set runs)
    labels_seen: list[str] = field(default_factory=list)
    imported: list[ImportedEvidence] = field(default_factory=list)  # never part of the decision

    @property
    def has_quality(self) -> bool:
        return self.is_reference or self.divergence is not None or self.evals is not None

    def missing(self) -> list[str]:
        """What evidence is missing, as the names of what would measure it."""
        out = []
        if self.divergence is None and not self.is_reference:
            out.append("divergence")
        if self.evals is None:
            out.append("eval")
        if self.speed_here is None:
            out.append("speed")
        if self.verdict is None or not self.verdict.votes:
            if not self.is_reference:
                out.append("votes")
        return out


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _divergence(rows: Iterable[dict[str, Any]], keys: set[CandidateKey]) -> dict[CandidateKey, DivergenceEvidence]:
    """Per candidate: the newest reference-text measurement, else every prompt-output measurement, token-weighted."""
    text: dict[CandidateKey, DivergenceEvidence] = {}
    outputs: dict[CandidateKey, list[tuple[float, float | None, int, int]]] = {}
    for row in rows:
        kld, n = _num(row.get("mean_kld")), _int(row.get("n_tokens"))
        if row.get("error") or kld is None or not n or row.get("is_reference") or not isinstance(row.get("label"), str):
            continue
        key, _ = split_label(row["label"])
        if key not in keys:
            continue
        top1, run = _num(row.get("top1_agreement")), _int(row.get("run_id")) or 0
        if row.get("source") == "text":
            if key not in text:  # newest first
                text[key] = DivergenceEvidence(kld, top1, n, (run,), "reference text")
        elif row.get("source") == "output":
            outputs.setdefault(key, []).append((kld, top1, n, run))
    found = dict(text)
    for key, items in outputs.items():
        if key in found:
            continue
        total = sum(n for _, _, n, _ in items)
        kld = sum(k * n for k, _, n, _ in items) / total
        tops = [(t, n) for _, t, n, _ in items if t is not None]
        top1 = sum(t * n for t, n in tops) / sum(n for _, n in tops) if tops else None
        found[key] = DivergenceEvidence(kld, top1, total, tuple(dict.fromkeys(r for *_, r in items)), "prompt outputs")
    return found


def _evals(rows: Iterable[dict[str, Any]], keys: set[CandidateKey], reference: CandidateKey) -> dict[CandidateKey, EvalEvidence]:
    """Per candidate, the newest eval run that included it, with the reference's score in that same run."""
    by_run: dict[int, dict[CandidateKey, list[bool]]] = {}
    packs: dict[int, str] = {}
    for row in rows:
        run, label = _int(row.get("run_id")), row.get("label")
        if run is None or not isinstance(label, str):
            continue
        key, _ = split_label(label)
        by_run.setdefault(run, {}).setdefault(key, []).append(bool(row.get("passed")) and not row.get("error"))
        packs[run] = str(row.get("pack_name") or "?")
    found: dict[CandidateKey, EvalEvidence] = {}
    for run in sorted(by_run, reverse=True):
        outcomes = by_run[run]
        ref = outcomes.get(reference)
        for key, passed in outcomes.items():
            if key in keys and key not in found:
                found[key] = EvalEvidence(sum(passed), len(passed), run, packs[run],
                                          sum(ref) if ref else None, len(ref) if ref else None)
    return found


def _verdicts(votes: Sequence[dict[str, Any]], keys: set[CandidateKey], reference: CandidateKey) -> dict[CandidateKey, Verdict]:
    """Votes between the reference (any of its stored labels) and each candidate, summed over the labels they ran as."""
    labels: dict[CandidateKey, set[str]] = {}
    for v in votes:
        for side in ("label_a", "label_b"):
            if isinstance(v.get(side), str):
                labels.setdefault(split_label(v[side])[0], set()).add(v[side])
    found: dict[CandidateKey, Verdict] = {}
    for key in keys - {reference}:
        ref_n = cand_n = ties = raters = 0
        runs: set[int] = set()
        for ref_label in labels.get(reference, ()):
            for cand_label in labels.get(key, ()):
                a, b, t, r = count_votes(votes, ref_label, cand_label)
                ref_n, cand_n, ties, raters = ref_n + a, cand_n + b, ties + t, max(raters, r)
                if a or b or t:
                    runs |= {int(v["run_id"]) for v in votes if isinstance(v.get("run_id"), int)
                             and {v.get("label_a"), v.get("label_b")} == {ref_label, cand_label}}
        if ref_n or cand_n or ties:
            found[key] = decide(reference.label, key.label, ref_n, cand_n, ties, n_prompts=len(runs), n_raters=raters)
    return found


def _ratings(rows: Iterable[dict[str, Any]], keys: set[CandidateKey]) -> dict[CandidateKey, list[int]]:
    """Scores per candidate, the newest per (run, rater, label)."""
    newest: dict[tuple[Any, Any, str], int] = {}
    for r in rows:
        score, label = _int(r.get("score")), r.get("label")
        if score is None or not 1 <= score <= 5 or not isinstance(label, str):
            continue
        newest[(r.get("run_id"), r.get("rater"), label)] = score  # oldest first: the last one wins
    found: dict[CandidateKey, list[int]] = {}
    for (_, _, label), score in newest.items():
        key, _ = split_label(label)
        if key in keys:
            found.setdefault(key, []).append(score)
    return found


def _speeds(rows: Iterable[dict[str, Any]], keys: set[CandidateKey]) -> dict[CandidateKey, SpeedHere]:
    """Undisturbed decode speeds of each candidate's local results (at least 8 tokens), median and range. A result
    timed in several windows (runs.timing) counts once, by its figure: the median of its undisturbed windows."""
    speeds: dict[CandidateKey, list[tuple[float, int | None, int]]] = {}
    for r in rows:
        tok_s, tokens = _num(r.get("decode_tok_s")), _int(r.get("completion_tokens"))
        if r.get("error") or tok_s is None or tok_s <= 0 or r.get("disturbed") == 1 or (tokens or 0) < 8:
            continue
        key = key_of_result(r)
        if key in keys:
            speeds.setdefault(key, []).append((tok_s, _int(r.get("peak_rss_bytes")), _int(r.get("gpu_layers")) or 0))
    found = {}
    for key, items in speeds.items():
        values = [s for s, _, _ in items]
        rss = [m for _, m, _ in items if m]
        found[key] = SpeedHere(statistics.median(values), min(values), max(values), len(values),
                               int(statistics.median(rss)) if rss else None, max(g for *_, g in items))
    return found


def candidate_keys(ladder: Ladder, kv_types: Sequence[str] = (DEFAULT_KV,)) -> list[CandidateKey]:
    """Every ladder file with each KV type (K and V alike), the reference's f16 first."""
    keys = [CandidateKey(ladder.reference.label)]
    for f in ladder.files:
        for kv in kv_types:
            key = CandidateKey(f.label, kv.lower(), kv.lower())
            if key not in keys:
                keys.append(key)
    return keys


def gather(store: Store, ladder: Ladder, keys: Sequence[CandidateKey]) -> dict[CandidateKey, Evidence]:
    """The stored evidence for each candidate of `ladder` (runs are matched by the ladder's name): what was measured
    here in its fields, what was imported in `imported`, apart (storage.provenance)."""
    reference = CandidateKey(ladder.reference.label)
    wanted = set(keys)
    evidence = {k: Evidence(k, is_reference=k == reference) for k in keys}
    if reference in evidence:
        evidence[reference].divergence = DivergenceEvidence(0.0, 1.0, 0, (), "the reference itself")
    divergence = _by_origin(store.ladder_divergence(ladder.name))
    evals = _by_origin(store.ladder_eval_results(ladder.name))
    votes = _by_origin(store.find_votes(JudgementFilters(model=ladder.name)))
    ratings = _by_origin(store.find_ratings(JudgementFilters(model=ladder.name)))
    for origin in dict.fromkeys([*divergence, *evals, *votes, *ratings]):
        found: dict[CandidateKey, dict[str, Any]] = {}
        for key, d in _divergence(divergence.get(origin, ()), wanted).items():
            if key != reference:
                found.setdefault(key, {})["divergence"] = d
        for key, e in _evals(evals.get(origin, ()), wanted, reference).items():
            found.setdefault(key, {})["evals"] = e
        for key, v in _verdicts(votes.get(origin, []), wanted, reference).items():
            found.setdefault(key, {})["verdict"] = v
        for key, scores in _ratings(ratings.get(origin, ()), wanted).items():
            found.setdefault(key, {}).update(rating_mean=statistics.fmean(scores), n_ratings=len(scores))
        for key, figures in found.items():
            if not origin.measured_here:
                evidence[key].imported.append(ImportedEvidence(origin, **figures))
                continue
            here = evidence[key]
            here.divergence = figures.get("divergence", here.divergence)  # the reference keeps its own
            here.evals, here.verdict = figures.get("evals"), figures.get("verdict")
            here.rating_mean, here.n_ratings = figures.get("rating_mean"), figures.get("n_ratings", 0)
    for key, s in _speeds(store.ladder_results(ladder.name), wanted).items():  # the store reads local runs only
        evidence[key].speed_here = s
    _prompts(evidence, prompt_floors(store, ladder), reference)
    return evidence


def _prompts(evidence: dict[CandidateKey, Evidence], floors: dict[str, PromptsEvidence], reference: CandidateKey) -> None:
    """Each candidate's standing on the user's prompts. A KV-cache variant that no set run measured takes its file's
    figure with the f16 cache (a quantized cache can only add drift), saying so."""
    own = {split_label(label)[0]: p for label, p in floors.items()}
    for key, e in evidence.items():
        if key == reference:
            continue
        base = CandidateKey(key.base)
        if key in own:
            e.prompts = own[key]
        elif base in own and base != reference:
            e.prompts = replace(own[base], inherited_from=key.base)


def _by_origin(rows: Iterable[dict[str, Any]]) -> dict[Provenance, list[dict[str, Any]]]:
    """Rows grouped by where they came from (run ids aside), order kept: measured here, or each imported origin."""
    groups: dict[Provenance, list[dict[str, Any]]] = {}
    for row in rows:
        p = Provenance.of_row(row)
        groups.setdefault(Provenance(p.kind, None, p.machine, p.date, p.source), []).append(row)
    return groups
