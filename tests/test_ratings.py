"""Ratings and votes: snapshots, validation, blind mode, filters, the migration, and concurrent raters."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from workbench.people import ratings
from workbench.people.ratings import RatingError
from workbench.storage import migrations
from workbench.storage.store import Store

LABELS = ("F16", "Q8_0", "Q4_K_M", "Q2_K")


def make_run(store: Store, *, prompt: str = "Name a fruit.", category: str | None = "chat",
             model: str = "Tiny model", labels: tuple[str, ...] = LABELS) -> int:
    """A finished run with one stored output per label (rows written directly: no inference needed)."""
    run_id = store.create_run(settings={"max_tokens": 8, "seed": 0}, prompt=prompt, category=category,
                              ladder={"name": model, "provenance": {}, "files": []}, reference_label=labels[0])
    for i, label in enumerate(labels):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "text": f"output of {label}",
                                     "is_reference": i == 0})
    store.finish_run(run_id, "done")
    return run_id


def test_rating_snapshots_the_run_and_survives_an_edit(store):
    run_id = make_run(store)
    rid = ratings.add_rating(store, run_id=run_id, label="Q4_K_M", score=4, rater="ann", mode="open", comment=" ok ")
    with store.transaction() as conn:
        conn.execute("UPDATE runs SET prompt = 'edited', category = 'code' WHERE id = ?", (run_id,))
    (row,) = ratings.list_ratings(store)
    assert row["id"] == rid and row["score"] == 4 and row["rater"] == "ann" and row["comment"] == "ok"
    assert (row["prompt"], row["category"], row["ladder_name"], row["quant_type"]) == (
        "Name a fruit.", "chat", "Tiny model", "Q4_K_M")
    assert '"max_tokens": 8' in row["settings_json"] and row["created_at"] and row["result_id"]


@pytest.mark.parametrize("kwargs, message", [
    ({"run_id": 999, "label": "Q8_0", "score": 3}, "no run 999"),
    ({"label": "Q9_X", "score": 3}, "no output labelled 'Q9_X'"),
    ({"label": "Q8_0", "score": 0}, "1 to 5"),
    ({"label": "Q8_0", "score": 6}, "1 to 5"),
    ({"label": "Q8_0", "score": "good"}, "1 to 5"),
    ({"label": "Q8_0", "score": 3, "mode": "secret"}, "mode must be"),
])
def test_bad_ratings_are_refused_plainly_and_save_nothing(store, kwargs, message):
    run_id = make_run(store)
    with pytest.raises(RatingError, match=message):
        ratings.add_rating(store, **{"run_id": run_id, **kwargs})
    assert ratings.list_ratings(store) == []


def test_votes_take_a_b_tie_or_a_label(store):
    run_id = make_run(store)
    ratings.add_vote(store, run_id=run_id, label_a="Q8_0", label_b="Q2_K", winner="Q8_0", rater="ann")
    ratings.add_vote(store, run_id=run_id, label_a="Q8_0", label_b="Q2_K", winner="tie", rater="bob", mode="blind")
    got = ratings.list_votes(store)
    assert [v["winner"] for v in got] == ["a", "tie"] and got[1]["mode"] == "blind"
    assert got[0]["quant_type_b"] == "Q2_K" and got[0]["prompt"] == "Name a fruit." and got[0]["category"] == "chat"
    for bad in ({"label_b": "Q8_0", "winner": "a"}, {"label_b": "Q2_K", "winner": "c"},
                {"label_b": "Q2_K", "winner": "a", "mode": "open"}, {"label_b": "nope", "winner": "a"}):
        with pytest.raises(RatingError):
            ratings.add_vote(store, run_id=run_id, label_a="Q8_0", **bad)
    assert len(ratings.list_votes(store)) == 2


def test_letters_go_past_z():
    assert [ratings.letter(i) for i in (0, 1, 25, 26, 27, 51, 52)] == ["A", "B", "Z", "AA", "AB", "AZ", "BA"]


def test_blind_order_is_reproducible_per_run_and_session_and_varies_between_them():
    order = ratings.blind_order(7, LABELS, "session-1")
    assert list(order) == ["A", "B", "C", "D"] and sorted(order.values()) == sorted(LABELS)
    assert ratings.blind_order(7, reversed(LABELS), "session-1") == order  # input order does not leak
    others = {tuple(ratings.blind_order(7, LABELS, f"session-{i}").values()) for i in range(20)}
    others |= {tuple(ratings.blind_order(run, LABELS, "session-1").values()) for run in range(20)}
    assert len(others) > 5  # a letter does not always mean the same quantization


def test_names_are_revealed_only_when_everything_shown_was_judged():
    r = [{"label": "Q8_0"}, {"label": "Q2_K"}]
    assert not ratings.names_revealed([], ["Q8_0", "Q2_K"])
    assert not ratings.names_revealed(r[:1], ["Q8_0", "Q2_K"])
    assert ratings.names_revealed(r, ["Q8_0", "Q2_K"])
    assert not ratings.names_revealed(r, ["Q8_0", "Q2_K", "Q4_K_M"])
    vote = {"label_a": "Q2_K", "label_b": "Q8_0"}
    assert ratings.names_revealed([], ["Q8_0", "Q2_K"], [vote])  # a pairwise vote covers the pair
    assert not ratings.names_revealed([], ["Q8_0", "Q2_K", "F16"], [vote])
    more = [vote, {"label_a": "F16", "label_b": "Q8_0"}, {"label_a": "Q2_K", "label_b": "F16"}]
    assert ratings.names_revealed([], ["Q8_0", "Q2_K", "F16"], more)
    assert not ratings.names_revealed([], [])


def test_blind_view_follows_one_session_not_another_rater(store):
    run_id = make_run(store)
    view = ratings.blind_view(store, run_id, session="s1")
    assert not view.revealed and view.display_name("Q8_0") in "ABCD"
    for label in LABELS[:3]:  # someone else rates everything: this session stays blind
        ratings.add_rating(store, run_id=run_id, label=label, score=3, mode="blind", session="s2")
    ratings.add_rating(store, run_id=run_id, label="Q2_K", score=3, mode="blind", session="s2")
    assert not ratings.blind_view(store, run_id, session="s1").revealed
    for label in LABELS:
        letter = view.letter_of(label)
        ratings.add_rating(store, run_id=run_id, label=label, score=2, mode="blind", session="s1",
                           display_letter=letter)
        revealed = ratings.blind_view(store, run_id, session="s1")
        assert revealed.order == view.order  # the letters do not move while rating
    assert revealed.revealed and revealed.rated == dict.fromkeys(LABELS, 2)
    assert revealed.display_name("Q2_K") == f"{view.letter_of('Q2_K')} · Q2_K"
    assert {r["display_letter"] for r in ratings.list_ratings(store, session="s1")} == {"A", "B", "C", "D"}
    with pytest.raises(RatingError):
        ratings.blind_view(store, 12345, session="s1")


def test_ratings_and_votes_filter_by_model_category_rater_and_mode(store):
    a = make_run(store, model="Model A", category="math")
    b = make_run(store, model="Model B", category="chat")
    ratings.add_rating(store, run_id=a, label="Q8_0", score=5, rater="ann", mode="open")
    ratings.add_rating(store, run_id=b, label="Q8_0", score=4, rater="bob", mode="blind")
    store.add_rating(run_id=b, label="Q2_K", score=1, rater="cy")  # an old-style rating without a snapshot
    ratings.add_vote(store, run_id=a, label_a="Q8_0", label_b="Q2_K", winner="a", rater="bob")
    assert [r["score"] for r in ratings.list_ratings(store, model="Model A")] == [5]
    assert [r["score"] for r in ratings.list_ratings(store, category="chat")] == [4, 1]
    assert [r["score"] for r in ratings.list_ratings(store, rater="bob")] == [4]
    assert [r["score"] for r in ratings.list_ratings(store, mode="blind")] == [4]
    old = ratings.list_ratings(store, rater="cy")[0]
    assert old["ladder_name"] == "Model B" and old["quant_type"] == "Q2_K"  # filled in from the run
    assert len(ratings.list_votes(store, model="Model A", rater="bob")) == 1
    assert ratings.list_votes(store, category="chat") == []
    assert ratings.filter_options(store) == {"model": ["Model A", "Model B"], "category": ["chat", "math"],
                                             "rater": ["ann", "bob", "cy"], "mode": ["blind", "open", "pairwise"]}


def test_migration_backfills_ratings_saved_before_it(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    migrations.m001_runs_results_ratings(conn)
    conn.execute("INSERT INTO _migrations VALUES ('m001_runs_results_ratings', 'then')")
    conn.execute("INSERT INTO runs (id, created_at, ladder_name, prompt, category, settings_json) "
                 "VALUES (1, 'then', 'Old model', 'old prompt', 'summary', '{\"seed\": 1}')")
    conn.execute("INSERT INTO results (id, run_id, position, label, quant_type, created_at) "
                 "VALUES (1, 1, 0, 'q4', 'Q4_K_M', 'then')")
    conn.execute("INSERT INTO ratings (run_id, result_id, label, score, created_at) VALUES (1, 1, 'q4', 3, 'then')")
    conn.close()
    store = Store(path)
    assert "m002_ratings_detail" in store.schema_version()
    with store._connect() as c:
        row = dict(c.execute("SELECT * FROM ratings").fetchone())
    assert (row["ladder_name"], row["prompt"], row["category"], row["quant_type"], row["settings_json"], row["score"]) \
        == ("Old model", "old prompt", "summary", "Q4_K_M", '{"seed": 1}', 3)


# ---- several processes rating at once ------------------------------------------------------------
def _rate_many(db: str, run_id: int, worker: int, start, errors) -> None:
    """One rater process: wait for the start signal, then save 50 ratings as fast as it can."""
    try:
        store = Store(db)
        start.wait(60)
        for i in range(50):
            ratings.add_rating(store, run_id=run_id, label=LABELS[i % len(LABELS)], score=1 + (i + worker) % 5,
                               rater=f"rater-{worker}", mode="open", comment=f"{worker}:{i}")
    except BaseException as exc:  # surfaced to the parent, which fails the test with it
        errors.put(f"worker {worker}: {exc!r}")


def test_eight_processes_rating_at_once_lose_nothing(tmp_path: Path):
    db = str(tmp_path / "shared.sqlite3")
    run_id = make_run(Store(db))
    ctx = multiprocessing.get_context("spawn")
    start, errors = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_rate_many, args=(db, run_id, w, start, errors)) for w in range(8)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == [] and [p.exitcode for p in procs] == [0] * 8
    rows = ratings.list_ratings(Store(db), run_id=run_id)
    assert len(rows) == 400
    assert {r["comment"] for r in rows} == {f"{w}:{i}" for w in range(8) for i in range(50)}
    assert all(r["prompt"] == "Name a fruit." for r in rows)
