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


# ---- votes from blind sessions over set runs ---------------------------------------------------------------
def _set_run(store: Store, name: str, winners: str) -> int:
    """A done set run with one prompt per winner, each voted on once in a blind set session by "ann"."""
    prompts = [{"prompt": f"{name} {i}"} for i in range(len(winners))]
    set_id = store.create_set_run(name=name, prompts=prompts, labels=["Q8_0", "Q2_K"], reference_label="Q8_0",
                                  settings={})
    for i, winner in enumerate(winners):
        run_id = _make_run(store, "Model A", "chat")
        store.tag_set_run_child(run_id, set_id, i)
        store.finish_run(run_id, "done")
        ratings.add_vote(store, run_id=run_id, label_a="Q8_0", label_b="Q2_K", winner={"1": "a", "2": "b"}[winner],
                         rater="ann", mode=ratings.SET_MODE, session=f"set-{set_id}-s")
    store.set_set_run_status(set_id, "done")
    return set_id


def test_blind_set_votes_count_say_so_and_one_set_run_can_be_singled_out(store: Store, capsys):
    from workbench.cli.main import main

    first, second = _set_run(store, "first", "1112"), _set_run(store, "second", "22")
    plain = _make_run(store, "Model A", "chat")
    ratings.add_vote(store, run_id=plain, label_a="Q8_0", label_b="Q2_K", winner="a", rater="bob")
    ratings.add_rating(store, run_id=plain, label="Q8_0", score=4, rater="bob")

    board = lb.leaderboard(store)
    assert (board.n_votes, board.n_set_votes, board.n_ratings) == (7, 6, 1)
    q8 = next(s for s in board.standings if s.key == "Q8_0")
    assert (q8.wins, q8.losses) == (4, 3)  # 3 + 1 wins from the sets and the plain vote; 1 + 2 losses
    assert board.to_dict()["n_set_votes"] == 6

    only_first = lb.leaderboard(store, set_run_id=first)
    assert (only_first.n_votes, only_first.n_set_votes, only_first.n_ratings) == (4, 4, 0)
    assert only_first.filters == {"set_run_id": first}
    assert lb.leaderboard(store, set_run_id=second, run_ids=[plain]).empty  # the plain run is in no set
    assert lb.leaderboard(store, mode=ratings.SET_MODE).n_votes == 6
    with pytest.raises(LookupError):
        lb.leaderboard(store, set_run_id=999)

    db = str(store.path)
    assert main(["leaderboard", "--mode", "blind-set", "--set", str(second), "--json", "--db", db]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["n_votes"], out["n_set_votes"]) == (2, 2)
    assert main(["leaderboard", "--db", db]) == 0
    assert "7 pairwise votes (6 of them from blind set sessions)" in capsys.readouterr().out
    assert main(["leaderboard", "--set", "999", "--db", db]) == 1
    assert capsys.readouterr().err == "error: no set run with id 999\n"


def test_the_ratings_page_says_how_many_votes_came_from_set_sessions_and_filters_by_set_run():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    store = Store()  # the app's database (a test session's own)
    set_id = _set_run(store, "page set", "1122")
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
        at.switch_page("pages/ratings.py")
        at.run()
        at.radio(key="ratings-mode").set_value("Open")  # blind rating of the newest run would hide the board
        at.run()
        assert not at.exception, at.exception
        everyone = lb.leaderboard(store, n_boot=10)
        assert everyone.n_set_votes >= 4
        assert any(f"{everyone.n_votes} pairwise votes ({everyone.n_set_votes} of them from blind set sessions)"
                   in c.value for c in at.caption), [c.value for c in at.caption]
        at.selectbox(key="lb-set").set_value(set_id)
        at.run()
        assert not at.exception, at.exception
        assert any("4 pairwise votes (4 of them from blind set sessions)" in c.value for c in at.caption)
        board = next(d.value for d in at.dataframe if "quantization" in d.value.columns)
        assert sorted(board["quantization"]) == ["Q2_K", "Q8_0"] and list(board["comparisons (n)"]) == [4, 4]
    finally:
        for child in store.get_set_run(set_id).children:
            store.delete_run(child.run_id)
