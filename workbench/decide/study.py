"""One decision study: every candidate of a ladder (file × KV-cache type) on every target machine, with the
evidence behind it and the recommendation for the chosen target. What the page, the CLI and the report show.

Each figure keeps its kind: fit and memory are *predicted* (files.fit via decide.targets), decode speed on a
target is an *estimate* (decide.speed), divergence, eval pass rates, votes and speeds here are *measured*
(decide.evidence), and the KLD of another model is *published elsewhere* (quality.published). Figures imported from
another machine are shown apart, labelled, and decide nothing (`imported` in the JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.decide import speed, targets
from workbench.decide.evidence import CandidateKey, Evidence, candidate_keys, gather
from workbench.decide.recommend import Constraints, Facts, Recommendation, recommend, to_json
from workbench.files.fit import kv_bytes_per_element, unreadable
from workbench.files.gguf_info import GgufError, GgufInfo, read_header
from workbench.models.ladder import Ladder
from workbench.quality.published import published_for
from workbench.storage.store import Store

DEFAULT_KV_TYPES = ("f16", "q8_0", "q4_0")


@dataclass
class Study:
    ladder: Ladder
    constraints: Constraints
    profiles: list[targets.TargetProfile]
    by_target: dict[str, list[Facts]]  # target name -> one Facts per candidate, in candidate order
    evidence: dict[CandidateKey, Evidence]
    recommendation: Recommendation
    calibration: speed.Calibration
    # files left out because their header could not be read: (label, "header unreadable: …"); no verdict for them
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def facts(self) -> list[Facts]:
        """The chosen target's facts."""
        return self.by_target[self.constraints.target]


def _facts(ladder: Ladder, keys: Sequence[CandidateKey], evidence: dict[CandidateKey, Evidence],
           infos: dict[str, GgufInfo], profile: targets.TargetProfile, n_ctx: int,
           calibration: speed.Calibration) -> list[Facts]:
    out = []
    for key in keys:
        f = ladder.by_label(key.base)
        info = infos[f.path]
        fit = targets.fit_on_target(info, profile, n_ctx=n_ctx, kv_type_k=key.kv_type_k, kv_type_v=key.kv_type_v)
        est = speed.estimate_decode(info, fit, profile, calibration, n_ctx=n_ctx, kv_type_k=key.kv_type_k,
                                    kv_type_v=key.kv_type_v)
        # the published table ran llama.cpp's default f16 cache: beside a quantized cache it would mislead
        # and the reference is the yardstick here, not a candidate measured against one
        plain = key.kv_type_k == key.kv_type_v == "f16" and not evidence[key].is_reference
        # a file made with an importance matrix is set beside the figure published for that kind of file
        published = published_for(f.quant_type, imatrix=f.imatrix is not None) if plain else None
        out.append(Facts(key, evidence[key], fit.verdict_code, fit.verdict, fit.predicted_bytes, fit.spare_bytes,
                         est.tok_s, f.path, f.quant_type, published.mean_kld if published else None,
                         {"fit": fit, "speed": est, "published": published}, f.imatrix))
    return out


def study(store: Store, ladder: Ladder, constraints: Constraints, kv_types: Sequence[str] = DEFAULT_KV_TYPES) -> Study:
    """Gather, predict and recommend. Raises ValueError (plain words) for an unknown target, KV type or bad
    constraint, or when no ladder file can be read; a file whose header is refused is left out and named in
    `Study.unreadable`."""
    constraints.validate()
    for kv in kv_types:
        kv_bytes_per_element(kv)  # ValueError in plain words for a type llama.cpp has no cache for
    profiles = targets.list_targets(store)
    names = [p.name for p in profiles]
    if constraints.target not in names:
        raise ValueError(f"unknown target {constraints.target!r}; choose one of: {', '.join(names)}")
    infos: dict[str, GgufInfo] = {}
    refused: list[tuple[str, str]] = []
    for f in ladder.files:  # a verdict only from a header that was read (issue 24): a refused file is left out, named
        try:
            infos[f.path] = read_header(f.path)
        except (GgufError, OSError) as exc:
            refused.append((f.label, unreadable(exc, f.path)))
    if not infos:
        raise ValueError("no file of the ladder has a readable header: " + "; ".join(f"{a}: {b}" for a, b in refused))
    keys = [k for k in candidate_keys(ladder, kv_types) if ladder.by_label(k.base).path in infos]
    evidence = gather(store, ladder, keys)
    calibration = speed.calibrate(store)
    by_target = {p.name: _facts(ladder, keys, evidence, infos, p, constraints.n_ctx, calibration) for p in profiles}
    rec = recommend(by_target[constraints.target], constraints)
    return Study(ladder, constraints, profiles, by_target, evidence, rec, calibration, refused)


def _quality_json(facts: Facts) -> dict[str, Any]:
    e = facts.evidence
    d, ev, v = e.divergence, e.evals, e.verdict
    published = (facts.detail or {}).get("published")
    return {
        "mean_kld": d.mean_kld if d else None,
        "top1_agreement": d.top1_agreement if d else None,
        "kld_how": d.how if d else None,
        "eval_passed": ev.passed if ev else None,
        "eval_cases": ev.cases if ev else None,
        "eval_pack": ev.pack if ev else None,
        "votes": None if v is None else {"reference": v.reference, "prefer_reference": v.prefer_reference,
                                         "prefer_candidate": v.prefer_candidate, "ties": v.ties,
                                         "p_value": v.p_value, "outcome": v.outcome},
        "prompts": None if e.prompts is None else {  # the user's prompts against the reference's own variation
            "set_run_id": e.prompts.set_run_id, "prompts": e.prompts.prompts, "beyond_floor_on": e.prompts.beyond,
            "p_value": e.prompts.p_value, "beyond_floor": e.prompts.beyond_floor,
            "inherited_from": e.prompts.inherited_from, "words": e.prompts.words()},
        "rating_mean": e.rating_mean,
        "n_ratings": e.n_ratings,
        "published_kld": published.mean_kld if published else None,
        "published_source": f"{published.model}: {published.source_url}" if published else None,
        "published_imatrix": published.imatrix if published else None,  # the source row's matrix ("WT 10m") or null
        "published_note": published.note if published else None,  # says when its kind differs from the file's
    }


def _imported_json(facts: Facts) -> list[dict[str, Any]]:
    """What imports say of the candidate, each with where it came from; none of it decided anything."""
    return [{"provenance": i.provenance.to_json(), "label": i.label, "figures": i.figures(),
             "mean_kld": i.divergence.mean_kld if i.divergence else None,
             "top1_agreement": i.divergence.top1_agreement if i.divergence else None,
             "eval_passed": i.evals.passed if i.evals else None, "eval_cases": i.evals.cases if i.evals else None,
             "rating_mean": i.rating_mean, "n_ratings": i.n_ratings, "used_for_decision": False}
            for i in facts.evidence.imported]


def study_json(s: Study) -> dict[str, Any]:
    """The CLI's `recommend --json`: {recommended, reasons, …, candidates: [{label, file, kv_type, n_ctx,
    predicted_bytes_by_target, verdict_by_target, est_decode_tok_s_by_target, quality, measured_here}]}."""
    out = to_json(s.recommendation)
    out["ladder"] = s.ladder.name
    out["unreadable"] = [{"label": label, "how": how} for label, how in s.unreadable]  # left out: no verdict
    out["calibration"] = {"efficiency": s.calibration.efficiency, "bandwidth_gbs": s.calibration.bandwidth_gbs,
                          "samples": s.calibration.samples, "source": s.calibration.source}
    candidates = []
    for i, f in enumerate(s.facts):
        k = f.key
        here = f.evidence.speed_here
        candidates.append({
            "label": f.label,
            "file": f.file,
            "quant_type": f.quant_type,
            "imatrix": f.imatrix,  # the shared vocabulary: the matrix's provenance, null for a static file
            "kv_type": k.kv_type_k if k.kv_type_k == k.kv_type_v else f"{k.kv_type_k}/{k.kv_type_v}",
            "kv_type_k": k.kv_type_k,
            "kv_type_v": k.kv_type_v,
            "n_ctx": s.constraints.n_ctx,
            "is_reference": f.evidence.is_reference,
            "predicted_bytes_by_target": {t: rows[i].needed_bytes for t, rows in s.by_target.items()},
            "verdict_by_target": {t: rows[i].verdict_code for t, rows in s.by_target.items()},
            "est_decode_tok_s_by_target": {t: rows[i].est_tok_s for t, rows in s.by_target.items()},
            "quality": _quality_json(f),
            "imported": _imported_json(f),
            "measured_here": None if here is None else {"decode_tok_s_median": here.median_tok_s, "low": here.low_tok_s,
                                                         "high": here.high_tok_s, "runs": here.n,
                                                         "peak_rss_bytes": here.peak_rss_bytes},
        })
    out["candidates"] = candidates
    return out
