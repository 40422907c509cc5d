"""Teacher-forced divergence on the real SmolLM2 ladder: KLD, top-1 agreement, perplexity, stored."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from workbench.quality import divergence as dv
from workbench.quality.heatmap import heatmap_html, kld_alpha
from workbench.runs.compare import contestants_for, run_comparison
from workbench.runs.contestants import Contestant, RunSettings

SETTINGS = dict(n_ctx=512)  # every test shares these load settings, so the session pool's workers stay warm


def settings(max_tokens: int = 32) -> RunSettings:
    return RunSettings(max_tokens=max_tokens, **SETTINGS)


# ---- pure statistics ---------------------------------------------------------------------------
def test_percentile_matches_llama_perplexity_interpolation():
    values = np.sort(np.array([0.3, 0.1, 0.2, 0.5, 0.4]))
    assert dv.percentile(values, 0.5) == pytest.approx(0.3)
    assert dv.percentile(values, 0.99) == pytest.approx(np.percentile(values, 99))
    assert dv.percentile(values, 0.0) == 0.1 and dv.percentile(values, 1.0) == 0.5
    assert math.isnan(dv.percentile(np.array([]), 0.5))


def test_summarize_definitions():
    lp = np.log([0.5, 0.25, 0.5, 0.125] * 5)
    ref = np.log([0.5] * 20)
    kld = [0.0, 0.1, 0.2, 0.7] * 5
    agree = [True, True, False, True] * 5
    s = dv.summarize(lp, ref, kld, agree)
    assert s["n_tokens"] == 20
    assert s["mean_kld"] == pytest.approx(0.25)
    assert s["median_kld"] == pytest.approx(0.15)
    assert s["max_kld"] == pytest.approx(0.7) and s["min_kld"] == 0.0
    assert s["top1_agreement"] == pytest.approx(0.75)
    assert s["ppl"] == pytest.approx(math.exp(-np.mean(lp)))
    assert s["ref_ppl"] == pytest.approx(2.0)
    assert s["ln_ppl_ratio"] == pytest.approx(-np.mean(lp) - math.log(2))
    assert s["mean_delta_p"] == pytest.approx(np.mean(np.exp(lp)) - 0.5)
    ref_summary = dv.summarize(ref, ref)
    assert ref_summary["mean_kld"] == 0.0 and ref_summary["top1_agreement"] == 1.0 and ref_summary["by_definition"]


def test_text_segments_are_llama_perplexity_chunks():
    tokens = list(range(100, 100 + 70))
    segs = dv.text_segments(tokens, 32, bos=1)
    assert len(segs) == 2  # 70 // 32: the partial last chunk is dropped
    prompt, target = segs[1]
    assert prompt[0] == 1 and prompt[1:] == tokens[33:49]  # BOS replaces the chunk's first token
    assert len(prompt) == 17 and target == tokens[49:64]  # the second half is scored: 32 - 16 - 1 tokens
    assert dv.text_segments(tokens, 32, bos=None)[0][0][0] == 100
    with pytest.raises(dv.DivergenceError, match="fewer than one chunk"):
        dv.text_segments(tokens[:20], 32, None)


def test_positions_per_call_stays_within_the_budget():
    n = dv.positions_per_call(49_152)
    assert n * 49_152 * 4 <= dv.BUDGET_BYTES and n >= 256
    assert dv.positions_per_call(None) >= 8


def test_kld_shading_scale():
    assert kld_alpha(0.0) == 0.0 and kld_alpha(None) == 0.0
    assert kld_alpha(5.0) == 1.0
    assert 0 < kld_alpha(0.1) < kld_alpha(0.5) < 1


# ---- the real model ----------------------------------------------------------------------------
def test_same_file_against_itself_is_zero_divergence(pool, demo_ladder):
    f16 = demo_ladder.reference
    contestants = [Contestant(f16.label, f16.path, f16.quant_type, is_reference=True),
                   Contestant("F16 again", f16.path, f16.quant_type)]
    report = dv.diverge_prompt(pool, contestants, "Write one sentence about cats.", settings(24))
    same = report.result("F16 again")
    assert same.ok and report.n_tokens > 0
    assert max(same.kld) < 1e-5  # float32 round trip of the saved log-probs, nothing more
    assert same.summary["mean_kld"] < 1e-6
    assert same.summary["top1_agreement"] == 1.0
    assert same.summary["ppl"] == pytest.approx(report.reference.summary["ppl"], rel=1e-4)


def test_q2k_diverges_more_than_q8_on_a_stored_comparison(pool, demo_ladder, store):
    contestants = contestants_for(demo_ladder, ["Q8_0", "Q2_K"])
    comparison = run_comparison(pool, contestants, "Explain in two sentences why the sky is blue.", settings(40),
                                store=store, ladder=demo_ladder)
    assert comparison.all_ok
    pids = pool.pids()
    progress: list[tuple[int, int, str]] = []
    report = dv.diverge_run(pool, store, comparison.run_id, on_progress=lambda *a: progress.append(a))
    assert pool.pids() == pids  # the comparison's warm workers did the scoring: no new process, no reload
    assert progress[-1][0] == progress[-1][1] == 3  # one score request for the reference and each contestant

    ref_out = next(r for r in comparison.results if r.is_reference)
    assert report.reference.tokens == ref_out.token_ids
    assert "".join(report.reference.piece(t) for t in report.reference.tokens) == ref_out.text
    q8, q2 = report.result("Q8_0").summary, report.result("Q2_K").summary
    assert q2["mean_kld"] > q8["mean_kld"]
    assert q2["top1_agreement"] <= q8["top1_agreement"]
    for s in (q8, q2):
        assert s["n_tokens"] == len(ref_out.token_ids)
        assert 0 <= s["min_kld"] <= s["median_kld"] <= s["p99_kld"] <= s["max_kld"]
        assert 0 <= s["top1_agreement"] <= 1
        assert s["ppl"] >= 1 and 0 < s["mean_p_token"] <= 1
    for r in report.contestants():
        assert len(r.kld) == len(r.agree) == len(r.logprobs) == len(r.top) == report.n_tokens
        assert all(k >= 0 for k in r.kld)
        assert all(len(top) == 5 for top in r.top)

    stored = dv.load_report(store, comparison.run_id, "output")
    assert [r.label for r in stored.results] == ["F16", "Q8_0", "Q2_K"]
    assert stored.result("Q2_K").summary == q2
    assert stored.result("Q2_K").kld == pytest.approx(report.result("Q2_K").kld, abs=1e-6)
    assert dv.measured_runs(store, [comparison.run_id, 999]) == {comparison.run_id}

    page = heatmap_html(stored, "Q2_K")
    tokens = page.split('<div class="wb-heat">')[1]
    assert tokens.count('<span class="t') == report.n_tokens and tokens.count("title=") == report.n_tokens


def test_bundled_reference_text_is_scored_in_chunks(pool, demo_ladder, store):
    text = dv.reference_text()
    assert 9_000 < len(text) < 20_000  # about 3,200 SmolLM2 tokens
    contestants = contestants_for(demo_ladder, ["Q2_K"])
    report = dv.diverge_text(pool, contestants, settings(), chunk_tokens=64, max_chunks=2, store=store,
                             ladder=demo_ladder)
    assert report.meta["chunks"] == 2 and report.meta["scored_per_chunk"] == 31
    assert report.meta["text_tokens"] > 2_500
    assert report.n_tokens == 62
    q2 = report.result("Q2_K").summary
    assert q2["mean_kld"] > 0 and q2["ppl"] > report.reference.summary["ppl"] * 0.5
    run = store.get_run(report.run_id)
    assert run.kind == "diverge-text" and run.status == "done"
    assert dv.load_report(store, report.run_id, "text").meta["chunk_tokens"] == 64
    assert dv.list_text_reports(store)[0]["id"] == report.run_id


def test_runs_that_cannot_be_measured_say_why(pool, store):
    with pytest.raises(dv.DivergenceError, match="no run with id"):
        dv.diverge_run(pool, store, 12345)
    run_id = store.create_run(settings=settings().to_dict(), prompt="x", messages=[{"role": "user", "content": "x"}],
                              reference_label="F16")
    store.add_result(run_id, 0, {"label": "F16", "file": "/nowhere.gguf", "is_reference": True, "error": "it crashed",
                                 "stop_reason": "error"})
    with pytest.raises(dv.DivergenceError, match="the reference failed"):
        dv.diverge_run(pool, store, run_id)


def test_stale_scratch_folders_of_killed_runs_are_swept_and_live_ones_kept(pool, demo_ladder, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import tempfile
    import time

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that was killed mid-measurement: its pid no longer runs
    dead = tmp_path / f"workbench-divergence-{gone.pid}-abc123"
    live = tmp_path / f"workbench-divergence-{os.getppid()}-def456"  # a running process's: never touched
    old = tmp_path / "workbench-divergence-k2j3h4"  # named without a pid, from hours ago
    fresh = tmp_path / "workbench-divergence-q9w8e7"  # named without a pid, just now
    other = tmp_path / "someone-elses-folder"
    for folder in (dead, live, old, fresh, other):
        folder.mkdir()
        (folder / "reference-0.npy").write_bytes(b"x" * 1000)
    os.utime(old, (time.time() - 7 * 3600, time.time() - 7 * 3600))
    f16 = demo_ladder.reference
    report = dv.diverge_prompt(pool, [Contestant(f16.label, f16.path, f16.quant_type, is_reference=True),
                                      Contestant("F16 again", f16.path, f16.quant_type)], "Say hi.", settings(4))
    assert report.result("F16 again").ok
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, fresh, other))


def test_quantizations_load_together_and_a_broken_file_is_left_to_its_own_request(demo_ladder, tmp_path):
    """load_together starts every contestant's worker at once; a file that cannot load is not an error here (its
    first request meets it and reports it, as before), and the others are loaded and warm."""
    from workbench.engine.pool import WorkerPool

    broken = tmp_path / "broken.Q4_K_M.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    contestants = [*contestants_for(demo_ladder, ["F16", "Q8_0", "Q2_K"]),
                   Contestant("broken", str(broken), "Q4_K_M")]
    own = WorkerPool()
    try:
        dv.load_together(own, contestants, settings())
        warm = {m["file"] for m in own.warm_models()}
        assert warm == {Path(c.path).name for c in contestants[:3]}
        pids = own.pids()
        dv.load_together(own, contestants, settings())  # warm already: nothing restarts
        assert own.pids() == pids
        ref, bad = dv.teacher_force(own, contestants[:1] + contestants[3:], [([1, 2, 3], [4, 5, 6])], settings())
        assert ref.ok and not bad.ok and bad.error  # the broken file's own entry says what is wrong
    finally:
        own.shutdown()
