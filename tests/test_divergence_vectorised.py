"""Scoring in blocks of rows (engine/scoring.py) equals the old per-position scoring: on seeded logits, and
on the real SmolLM2 ladder through the worker's `score` op and diverge_text."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.engine import scoring
from workbench.engine.access import Placement, WorkerAccess
from workbench.engine.pool import WorkerPool
from workbench.files.gguf_info import read_header
from workbench.quality import divergence as dv
from workbench.runs.contestants import Contestant, RunSettings

SETTINGS = dict(n_ctx=512)  # as tests/test_divergence.py: the session pool's workers stay warm


def _inputs(n: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, a reference's float32 log-probs close to them (as a quantization's are), and targets."""
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, vocab)) * 3).astype(np.float32)
    ref = logits + rng.standard_normal((n, vocab)).astype(np.float32) * 0.5
    ref = (ref - np.log(np.exp(ref.astype(np.float64)).sum(axis=1, keepdims=True))).astype(np.float32)
    return logits, ref, rng.integers(0, vocab, n)


def _assert_same(new: scoring.Scores, old: scoring.Scores, tol: float = 1e-9) -> None:
    assert np.max(np.abs(new.logprob - old.logprob)) <= tol
    assert np.array_equal(new.top_ids, old.top_ids)
    assert np.max(np.abs(new.top_logprobs - old.top_logprobs)) <= tol
    if old.kld is not None:
        assert new.kld is not None and np.max(np.abs(new.kld - old.kld)) <= tol
        assert np.array_equal(new.ref_top, old.ref_top) and np.array_equal(new.agree, old.agree)


@pytest.mark.parametrize("block_rows", [None, 1, 64, 1000])
def test_blocks_equal_per_position_scoring(block_rows):
    # 300 positions of a 5,000-token vocabulary: the default block (69 rows) and 64 both leave a partial last block
    logits, ref, targets = _inputs(300, 5_000)
    save_new, save_old = np.empty_like(logits), np.empty_like(logits)
    new = scoring.score_rows(logits, targets, 5, ref=ref, save=save_new, block_rows=block_rows)
    old = scoring.score_rows_per_position(logits, targets, 5, ref=ref, save=save_old)
    _assert_same(new, old)
    assert np.max(np.abs(save_new - save_old)) <= 1e-6
    assert new.kld is not None and new.kld.min() >= 0 and new.kld.mean() > 0.05  # the inputs differ: a real test
    assert 0.3 < new.agree.mean() < 1  # some positions agree at the top, some do not
    assert np.allclose(np.exp(save_new.astype(np.float64)).sum(axis=1), 1.0, atol=1e-5)  # log-probs, normalised


def test_without_a_reference_and_with_a_small_vocabulary():
    logits, _, targets = _inputs(40, 300, seed=3)  # 2 groups of 256 < top-10: the whole-row path
    new = scoring.score_rows(logits, targets, 10)
    _assert_same(new, scoring.score_rows_per_position(logits, targets, 10))
    assert new.kld is None and new.agree is None
    assert np.all(np.diff(new.top_logprobs, axis=1) <= 0)  # best first


def test_ties_go_to_the_lowest_token_id_as_argmax_does():
    logits, _, targets = _inputs(20, 2_000, seed=5)
    logits[:, [7, 900, 1500]] = logits.max() + 1  # three tokens tie for first place in every row
    own = scoring.score_rows(logits, targets, 5)
    assert np.all(own.top_ids[:, :3] == [7, 900, 1500])
    logp = np.empty_like(logits)
    scoring.score_rows(logits, targets, 5, save=logp)
    against_itself = scoring.score_rows(logits, targets, 5, ref=logp)
    assert against_itself.agree is not None and against_itself.agree.all()
    assert against_itself.kld is not None and against_itself.kld.max() < 1e-6


def test_nan_rows_and_cancel():
    logits, ref, targets = _inputs(10, 1_000, seed=7)
    logits[2, 10] = np.nan
    scores = scoring.score_rows(logits, targets, 3, ref=ref)
    assert np.isnan(scores.logprob[2]) and 10 not in scores.top_ids[2]
    assert np.array_equal(scores.top_ids[3], scoring.score_rows_per_position(logits, targets, 3).top_ids[3])
    with pytest.raises(InterruptedError):
        scoring.score_rows(logits, targets, 3, cancelled=lambda: True)
    with pytest.raises(ValueError, match="do not match"):
        scoring.score_rows(logits, targets, 3, ref=ref[:5])


def test_blocks_stay_within_the_memory_budget():
    for vocab in (32_000, 49_152, 256_000):
        rows = scoring.rows_per_block(vocab)
        assert rows >= 1 and rows * 3 * 8 * vocab <= scoring.BLOCK_BYTES
    assert scoring.rows_per_block(10**9) == 1


# ---- the real model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def per_position_pool():
    """A pool whose workers score the old way (scoring.PER_POSITION_ENV)."""
    p = WorkerPool(env={scoring.PER_POSITION_ENV: "1"})
    yield p
    p.shutdown()


def _score(pool: WorkerPool, path: str, placement: Placement, request: dict) -> dict:
    access = WorkerAccess(pool, path, placement)
    return access.run(lambda worker, _loaded: worker.call(request, {"scored"}))


def test_score_op_equals_per_position_across_decode_chunks(pool, per_position_pool, demo_ladder, tmp_path):
    # micro-batches of 16: the prompt's first decode asks for no logits, the next starts mid-chunk
    placement = Placement(n_ctx=512, n_threads=RunSettings().n_threads, n_batch=16)
    prompt = [1, *range(400, 419)]
    target = list(range(1000, 1030))
    ref_file = str(tmp_path / "ref.npy")
    f16, q2k = demo_ladder.reference.path, demo_ladder.by_label("Q2_K").path
    base = {"op": "score", "id": 1, "prompt_tokens": prompt, "target_tokens": target, "top_k": 5}
    ref_event = _score(pool, f16, placement, {**base, "save_logprobs": ref_file})
    saved = np.load(ref_file)
    assert saved.shape == (len(target), read_header(f16).vocab_size)
    old_ref = _score(per_position_pool, f16, placement, {**base, "save_logprobs": str(tmp_path / "old.npy")})
    assert np.array_equal(np.load(tmp_path / "old.npy"), saved)
    assert ref_event["positions"] == old_ref["positions"]
    new = _score(pool, q2k, placement, {**base, "reference_logprobs": ref_file})["positions"]
    old = _score(per_position_pool, q2k, placement, {**base, "reference_logprobs": ref_file})["positions"]
    assert [p["token"] for p in new] == target and len(new) == len(old)
    for a, b in zip(new, old, strict=True):
        assert a["top"] == b["top"] and a["top1_agree"] == b["top1_agree"] and a["ref_top"] == b["ref_top"]
        assert abs(a["logprob"] - b["logprob"]) <= 1e-9 and abs(a["kld"] - b["kld"]) <= 1e-9
    assert sum(p["kld"] for p in new) > 0  # Q2_K is not F16


def test_diverge_text_statistics_equal_per_position(pool, per_position_pool, demo_ladder):
    contestants = [Contestant(f.label, f.path, f.quant_type, is_reference=f.reference)
                   for f in (demo_ladder.reference, demo_ladder.by_label("Q4_K_M"))]
    settings = RunSettings(**SETTINGS)
    new = dv.diverge_text(pool, contestants, settings, chunk_tokens=64, max_chunks=2)
    old = dv.diverge_text(per_position_pool, contestants, settings, chunk_tokens=64, max_chunks=2)
    assert new.n_tokens == old.n_tokens == 2 * 31
    for a in new.results:
        b = old.result(a.label)
        assert a.ok and b.ok and a.summary.keys() == b.summary.keys()
        for key, value in a.summary.items():
            assert value == pytest.approx(b.summary[key], abs=1e-6), (a.label, key)
        assert a.top == b.top and a.agree == b.agree
    assert new.result("Q4_K_M").summary["mean_kld"] > 0


@pytest.mark.parametrize("threads", [2, 3, 64])
def test_scoring_split_over_threads_is_bit_for_bit_the_same(threads):
    logits, ref, targets = _inputs(301, 3_000, seed=3)
    save_split, save_one = np.empty_like(logits), np.empty_like(logits)
    split = scoring.score_rows_split(logits, targets, 5, ref=ref, save=save_split, threads=threads)
    one = scoring.score_rows(logits, targets, 5, ref=ref, save=save_one)
    _assert_same(split, one, tol=0.0)
    assert np.array_equal(save_split, save_one)
    bare = scoring.score_rows_split(logits, targets, 5, threads=threads)
    assert bare.kld is None and np.array_equal(bare.logprob, one.logprob)
