"""The leaderboard: Bradley–Terry recovers a known order, intervals are honest, ratings become pairs."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy import stats

from workbench.people import leaderboard as lb
from workbench.people import ratings
from workbench.storage.store import Store

TRUE = {"Q8_0": 4.0, "Q5_K_M": 2.0, "Q4_K_M": 1.0, "Q2_K": 0.25}


def synthetic_votes(strengths: dict[str, float], n: int, seed: int = 1, tie_rate: float = 0.0) -> list[dict]:
    """Votes drawn from a Bradley–Terry model with the given strengths, each from its own run."""
    rng = np.random.default_rng(seed)
    keys = list(strengths)
    votes = []
    for i in range(n):
        a, b = (keys[k] for k in rng.choice(len(keys), 2, replace=False))
        u = rng.random()
        winner = "tie" if u < tie_rate else "a" if rng.random() < strengths[a] / (strengths[a] + strengths[b]) else "b"
        votes.append({"run_id": i, "rater": "r", "label_a": a, "label_b": b, "quant_type_a": a, "quant_type_b": b,
                      "winner": winner})
    return votes


def test_bradley_terry_recovers_a_known_order_and_separates_it():
    started = time.perf_counter()
    board = lb.build_leaderboard([], synthetic_votes(TRUE, 400, tie_rate=0.1))
    assert time.perf_counter() - started < 10  # 500 resamples stay interactive
    assert [s.key for s in board.standings] == list(TRUE)
    ratio = board.standings[0].strength / board.standings[-1].strength
    assert 8 < ratio < 32  # true ratio 16
    assert all(s.strength_low < s.strength < s.strength_high for s in board.standings)
    assert len(board.sentences) == 3 and all(" is rated above " in s for s in board.sentences)
    assert board.sentences[-1].startswith("Q4_K_M is rated above Q2_K (")
    assert board.n_votes == 400 and board.n_rating_pairs == 0


def test_near_equal_strengths_are_not_separated():
    board = lb.build_leaderboard([], synthetic_votes({"Q8_0": 1.1, "Q5_K_M": 1.0}, 30))
    (sentence,) = board.sentences
    assert sentence.startswith("Not enough ratings to separate ")
    assert {"Q8_0", "Q5_K_M"} <= set(sentence.replace(" (", " ").split())


def test_two_unanimous_votes_do_not_read_as_certainty():
    votes = synthetic_votes({"Q8_0": 1e9, "Q2_K": 1.0}, 2)
    board = lb.build_leaderboard([], votes)
    assert board.standings[0].key == "Q8_0" and board.standings[0].strength_low < board.standings[0].strength
    assert board.sentences[0].startswith("Not enough ratings")


def test_fit_is_deterministic_and_strengths_have_geometric_mean_one():
    votes = synthetic_votes(TRUE, 120, seed=3)
    one, two = lb.build_leaderboard([], votes), lb.build_leaderboard([], votes)
    assert [s.to_dict() for s in one.standings] == [s.to_dict() for s in two.standings]
    strengths = lb.fit_bradley_terry(list(TRUE), lb.vote_pairs(votes))
    assert np.exp(np.mean(np.log(list(strengths.values())))) == pytest.approx(1.0)


def rating(run_id: int, label: str, score: int, rater: str = "ann") -> dict:
    return {"run_id": run_id, "label": label, "quant_type": label, "score": score, "rater": rater, "session": None}


def test_ratings_become_pairs_within_one_run_and_rater_and_the_newest_counts():
    rows = [rating(1, "Q8_0", 2), rating(1, "Q2_K", 3), rating(1, "Q8_0", 5),  # ann changed her mind: 5
            rating(1, "Q4_K_M", 3, rater="bob"),  # alone in run 1 for bob: no pair
            rating(2, "Q4_K_M", 4), rating(2, "Q2_K", 4)]  # a tie
    pairs = sorted(lb.rating_pairs(rows))
    assert pairs == [("Q2_K", "Q4_K_M", 0.5), ("Q2_K", "Q8_0", 0.0)]
    board = lb.build_leaderboard(rows, [])
    by = {s.key: s for s in board.standings}
    assert board.n_ratings == 5 and board.n_rating_pairs == 2
    assert (by["Q2_K"].wins, by["Q2_K"].ties, by["Q2_K"].losses) == (0, 1, 1)
    assert by["Q2_K"].tie_rate == 0.5 and by["Q8_0"].win_rate == 1.0 and by["Q8_0"].mean_rating == 5.0
    assert by["Q8_0"].rating_low is None  # one rating: no interval, and n says so
    assert by["Q4_K_M"].n_ratings == 2


def test_mean_rating_interval_is_a_t_interval():
    scores = [5, 4, 4, 3, 5, 2, 4]
    mean, lo, hi = lb.mean_interval(scores)
    want = stats.t.interval(0.95, len(scores) - 1, loc=np.mean(scores), scale=stats.sem(scores))
    assert mean == pytest.approx(np.mean(scores)) and (lo, hi) == pytest.approx(want)
    same = lb.mean_interval([4, 4, 4])
    assert same[1] < 4 < same[2]  # identical scores still leave room for doubt


def _make_run(store: Store, model: str, category: str) -> int:
    run_id = store.create_run(settings={"max_tokens": 8}, prompt="p", category=category,
                              ladder={"name": model, "provenance": {}, "files": []})
    for i, label in enumerate(("Q8_0", "Q2_K")):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "text": label, "is_reference": i == 0})
    return run_id


def test_store_leaderboard_filters_by_model_category_rater_and_mode(store: Store):
    a, b = _make_run(store, "Model A", "math"), _make_run(store, "Model B", "chat")
    ratings.add_rating(store, run_id=a, label="Q8_0", score=5, rater="ann")
    ratings.add_rating(store, run_id=a, label="Q2_K", score=1, rater="ann")
    ratings.add_rating(store, run_id=b, label="Q2_K", score=4, rater="bob", mode="blind")
    ratings.add_vote(store, run_id=b, label_a="Q8_0", label_b="Q2_K", winner="b", rater="cy")
    full = lb.leaderboard(store)
    assert full.n_ratings == 3 and full.n_votes == 1 and full.n_rating_pairs == 1
    assert any("2 models are pooled" in n for n in full.notes)
    only_a = lb.leaderboard(store, model="Model A")
    assert [s.key for s in only_a.standings] == ["Q8_0", "Q2_K"] and only_a.notes == []
    assert lb.leaderboard(store, category="chat").n_votes == 1
    assert lb.leaderboard(store, rater="bob").n_ratings == 1
    blind = lb.leaderboard(store, mode="blind")
    assert blind.n_ratings == 1 and blind.n_votes == 0 and blind.standings[0].strength is None
    assert any("No comparisons yet" in n for n in blind.notes)
    assert lb.leaderboard(store, mode="pairwise").n_votes == 1
    assert lb.leaderboard(store, model="nobody").empty
    json.dumps(full.to_dict())  # plain data, ready for --json
    frame = full.to_frame()
    assert list(frame["quantization"]) == [s.key for s in full.standings]
    assert {"mean rating", "rating 95% CI", "ratings (n)", "win", "tie", "loss", "BT strength",
            "BT 95% interval"} <= set(frame.columns)
