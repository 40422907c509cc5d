"""Evidence for the recommender, read back from a real SQLite database filled with handmade runs: the right rows
count for the right candidate (variant labels included), disturbed speeds and other ladders do not."""

from __future__ import annotations

from typing import Any

from workbench.decide.evidence import CandidateKey, candidate_keys, gather
from workbench.models.ladder import Ladder
from workbench.storage.store import DivergenceRow, Store


def _compare_run(store: Store, ladder: Ladder, results: list[dict[str, Any]], name: str | None = None) -> int:
    lad = ladder.to_dict() | ({"name": name} if name else {})
    run_id = store.create_run(settings={"n_ctx": 2048}, prompt="p", kind="compare", ladder=lad, reference_label="F16")
    for i, r in enumerate(results):
        store.add_result(run_id, i, {"quant_type": r["label"].split(" ")[0], "file": "/x.gguf", "completion_tokens": 64,
                                     "text": "some text", **r})
    store.finish_run(run_id, "done")
    return run_id


def test_gather_reads_each_kind_of_evidence(store: Store, demo_ladder: Ladder) -> None:
    # speeds: two quiet runs and one disturbed, for Q4_K_M with the f16 cache; one for the KV q8_0 variant
    for tok_s, disturbed in ((40.0, False), (44.0, False), (5.0, True)):
        run = _compare_run(store, demo_ladder, [
            {"label": "F16", "is_reference": True, "decode_tok_s": 30.0, "peak_rss_bytes": 400 << 20},
            {"label": "Q4_K_M", "decode_tok_s": tok_s, "peak_rss_bytes": 200 << 20,
             "measurement": {"decode": {"disturbed": disturbed, "contention": 0.9 if disturbed else 0.0}}},
            {"label": "Q4_K_M · KV q8_0 · 8k", "decode_tok_s": 41.0, "peak_rss_bytes": 190 << 20,
             "kv_type_k": "q8_0", "kv_type_v": "q8_0", "n_ctx": 8192},
        ])
    _compare_run(store, demo_ladder, [{"label": "Q4_K_M", "decode_tok_s": 1.0}], name="another ladder")
    # votes on the last run: the reference vs the KV variant
    for winner in ("a", "b", "tie"):
        store.add_vote(run_id=run, label_a="F16", label_b="Q4_K_M · KV q8_0 · 8k", winner=winner, rater=f"r{winner}",
                       session=None, mode="blind", comment=None)
    store.add_rating(run_id=run, label="Q4_K_M", score=4, rater="ann")
    store.add_rating(run_id=run, label="Q4_K_M", score=2, rater="ann")  # ann changed her mind: the newest counts
    store.add_rating(run_id=run, label="Q4_K_M", score=5, rater="bob")
    # divergence: prompt outputs for Q4_K_M in two runs (token-weighted), reference text for Q2_K
    for kld, n in ((0.10, 100), (0.04, 300)):
        d = store.create_run(settings={}, kind="diverge", ladder=demo_ladder.to_dict(), reference_label="F16")
        store.replace_divergence(d, "output", "F16", {}, "2026-11-30T00:00:00", [
            DivergenceRow("Q4_K_M", "Q4_K_M", "/x", False, None, {"n_tokens": n, "mean_kld": kld, "top1_agreement": 0.9}, {}),
            DivergenceRow("F16", "F16", "/x", True, None, {"n_tokens": n, "mean_kld": 0.0}, {}),
        ])
    t = store.create_run(settings={}, kind="diverge-text", ladder=demo_ladder.to_dict(), reference_label="F16")
    store.replace_divergence(t, "text", "F16", {}, "2026-11-30T00:00:00", [
        DivergenceRow("Q2_K", "Q2_K", "/x", False, None, {"n_tokens": 2048, "mean_kld": 0.5}, {}),
        DivergenceRow("Q5_K_M", "Q5_K_M", "/x", False, "worker died", {}, {}),
    ])
    # an eval run: Q2_K passes 1 of 2, the reference 2 of 2
    e = store.create_run(settings={}, kind="eval", ladder=demo_ladder.to_dict(), reference_label="F16")
    store.add_eval_run(e, pack_name="starter", pack_source=None, categories=None, case_limit=None, contestants=[], cases=[])
    for case, label, passed in (("c1", "F16", True), ("c2", "F16", True), ("c1", "Q2_K", True), ("c2", "Q2_K", False)):
        store.save_eval_result(e, {"case_id": case, "category": "x", "label": label, "quant_type": label,
                                   "passed": passed, "detail": "", "output": "", "error": None, "stop_reason": "stop",
                                   "completion_tokens": 3, "decode_tok_s": 9.0, "total_s": 1.0})

    keys = candidate_keys(demo_ladder, ("f16", "q8_0"))
    assert keys[0] == CandidateKey("F16") and CandidateKey("Q4_K_M", "q8_0", "q8_0") in keys
    ev = gather(store, demo_ladder, keys)

    q4 = ev[CandidateKey("Q4_K_M")]
    assert q4.speed_here is not None and q4.speed_here.n == 2 and q4.speed_here.median_tok_s == 42.0  # disturbed left out
    assert q4.divergence is not None and q4.divergence.source == "prompt outputs"
    assert abs(q4.divergence.mean_kld - (0.10 * 100 + 0.04 * 300) / 400) < 1e-12 and q4.divergence.n_tokens == 400
    assert q4.rating_mean == 3.5 and q4.n_ratings == 2
    q4kv = ev[CandidateKey("Q4_K_M", "q8_0", "q8_0")]
    assert q4kv.speed_here is not None and q4kv.speed_here.median_tok_s == 41.0
    assert q4kv.verdict is not None and (q4kv.verdict.prefer_reference, q4kv.verdict.prefer_candidate, q4kv.verdict.ties) == (1, 1, 1)
    assert q4kv.divergence is None and "divergence" in q4kv.missing()
    q2 = ev[CandidateKey("Q2_K")]
    assert q2.divergence is not None and q2.divergence.source == "reference text" and q2.divergence.mean_kld == 0.5
    assert q2.evals is not None and (q2.evals.passed, q2.evals.cases, q2.evals.reference_rate) == (1, 2, 1.0)
    assert ev[CandidateKey("Q5_K_M")].divergence is None  # its row is an error
    ref = ev[CandidateKey("F16")]
    assert ref.is_reference and ref.divergence is not None and ref.divergence.mean_kld == 0.0


def test_hostile_rows_are_skipped_not_trusted(store: Store, demo_ladder: Ladder) -> None:
    run = _compare_run(store, demo_ladder, [{"label": "Q8_0", "decode_tok_s": 12.0}])
    _compare_run(store, demo_ladder, [{"label": "Q8_0", "decode_tok_s": "fast"}, {"label": "Q2_K", "decode_tok_s": -3.0}])
    ev = gather(store, demo_ladder, candidate_keys(demo_ladder))
    assert ev[CandidateKey("Q8_0")].speed_here is not None and ev[CandidateKey("Q8_0")].speed_here.n == 1
    assert ev[CandidateKey("Q2_K")].speed_here is None
    assert run > 0
