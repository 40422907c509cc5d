"""History export/import is lossless: every table a run owns (a run_id column) leaves in the JSON export and
comes back, column for column, into a fresh database (issue 14, finding 7)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from workbench.people import history, ratings
from workbench.people.set_report import build_set_report, set_report_html
from workbench.people.verdict import SET_MODE, set_verdict
from workbench.quality import divergence, evals
from workbench.runs.set_runs import SetRunError, run_set
from workbench.storage.store import SetRunChild, Store


def full_run(store: Store) -> int:
    """A compare run with outputs, ratings, a vote, a divergence measurement, and an eval run beside it."""
    run_id = store.create_run(settings={"max_tokens": 8, "seed": 0}, prompt="Name three rivers", category="chat",
                              ladder={"name": "Tiny", "files": []}, machine={"cpu_model": "Test CPU"},
                              reference_label="Q8_0", versions={"workbench": "1.0", "llama_cpp": "0.3"})
    for i, label in enumerate(("Q8_0", "Q2_K")):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "file": f"/models/tiny-{label}.gguf",
                                     "text": f"Nile, Amazon → {label}", "is_reference": i == 0,
                                     "token_ids": [5, 6, i], "decode_tok_s": 10.5 + i, "stop_reason": "length",
                                     "settings": {"n_ctx": 256}})
    store.finish_run(run_id, "done")
    ratings.add_rating(store, run_id=run_id, label="Q8_0", score=5, rater="ann", comment="clear")
    ratings.add_rating(store, run_id=run_id, label="Q2_K", score=2, rater="ann", mode="blind", session="s",
                       display_letter="B")
    ratings.add_vote(store, run_id=run_id, label_a="Q8_0", label_b="Q2_K", winner="tie", rater="bob")
    store.add_reference_repeat(run_id, 1, label="Q8_0", perturbation={"kind": "n_batch", "n_batch": 1},
                               text="Nile, Amazon → Q8_0", completion_tokens=3, stop_reason="length", error=None)
    ref = divergence.ContestantDivergence("Q8_0", "Q8_0", "/models/tiny-Q8_0.gguf", True, tokens=[5, 6],
                                          logprobs=[-0.1, -0.2], top=[[[5, -0.1]], [[6, -0.2]]],
                                          pieces={5: "Nile", 6: ","}, summary={"n_tokens": 2})
    q2 = divergence.ContestantDivergence("Q2_K", "Q2_K", "/models/tiny-Q2_K.gguf", False, tokens=[5, 6],
                                         logprobs=[-0.3, -0.9], kld=[0.01, 0.2], agree=[True, False],
                                         top=[[[5, -0.3]], [[7, -0.5]]], pieces={5: "Nile", 6: ",", 7: " and"},
                                         summary={"n_tokens": 2, "mean_kld": 0.105, "max_kld": 0.2,
                                                  "top1_agreement": 0.5})
    divergence.save_report(store, divergence.DivergenceReport(run_id, "output", "Q8_0", [ref, q2],
                                                              meta={"n_ctx": 256}))

    eval_id = store.create_run(settings={"max_tokens": 16}, prompt="eval: tiny (1 cases)", kind="eval",
                               reference_label="Q8_0")
    with store.transaction() as conn:
        conn.execute("""INSERT INTO eval_runs (run_id, pack_name, pack_source, categories_json, case_limit, labels_json,
                        cases_json) VALUES (?,?,?,?,?,?,?)""",
                     (eval_id, "tiny", "builtin", json.dumps(["math"]), 1,
                      json.dumps([{"label": "Q8_0", "quant_type": "Q8_0", "file": "/m/a.gguf", "is_reference": True}]),
                      json.dumps([{"id": "add", "category": "math", "prompt": "2+2?", "check": {"kind": "exact"}}])))
    evals._store_outcome(store, eval_id, evals.CaseOutcome("add", "math", "Q8_0", "Q8_0", True, "4 == 4", "4",
                                                           stop_reason="stop", completion_tokens=1, decode_tok_s=9.5,
                                                           total_s=0.2))
    store.finish_run(eval_id, "done")
    return run_id


def dump(store: Store) -> dict[str, list[dict]]:
    """Every row of every table a run owns (and runs, and set runs), ids replaced by their rank so remapped ids
    compare equal, JSON columns parsed."""
    tables = ["runs", "set_runs", *history.run_tables(store)]
    with store._connect() as conn:
        rows = {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in tables}
    run_rank = {r["id"]: i for i, r in enumerate(rows["runs"])}
    result_rank = {r["id"]: i for i, r in enumerate(rows["results"])}
    set_rank = {r["id"]: i for i, r in enumerate(rows["set_runs"])}
    for table_rows in rows.values():
        for row in table_rows:
            row.pop("id", None)
            if "run_id" in row:
                row["run_id"] = run_rank[row["run_id"]]
            if row.get("set_run_id") is not None:
                row["set_run_id"] = set_rank[row["set_run_id"]]
            if row.get("result_id") is not None:
                row["result_id"] = result_rank[row["result_id"]]
            row.pop("imported_from", None)  # the only column an import sets on purpose
            for key in history.JSON_COLUMNS:  # JSON text compares as the value it holds (escaping may differ)
                if isinstance(row.get(key), str):
                    row[key] = json.loads(row[key])
    return rows


def test_every_column_of_every_table_a_run_owns_survives_export_and_import(store, tmp_path):
    full_run(store)
    before = dump(store)
    assert all(before[t] for t in ("results", "ratings", "votes", "divergence", "eval_runs", "eval_results",
                                   "reference_repeats"))
    path = history.export_json(store, tmp_path / "all.json")
    fresh = Store(tmp_path / "fresh.sqlite3")
    summary = history.import_json(fresh, path)
    assert summary.rows == {"results": 2, "ratings": 2, "votes": 1, "divergence": 2, "eval_runs": 1,
                            "eval_results": 1, "reference_repeats": 1}
    after = dump(fresh)
    assert after.keys() == before.keys()
    for table in before:
        assert after[table] == before[table], table
    # what the pages read back is the same too
    new_run = summary.run_ids[min(summary.run_ids)]
    assert divergence.load_report(fresh, new_run).result("Q2_K").kld == [0.01, 0.2]


def test_a_table_with_a_run_id_column_is_exported_even_when_no_list_names_it(store, tmp_path):
    run_id = full_run(store)
    with store.transaction() as conn:  # a table a later migration might add
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL "
                     "REFERENCES runs(id) ON DELETE CASCADE, body TEXT)")
        conn.execute("INSERT INTO notes (run_id, body) VALUES (?, 'remember this')", (run_id,))
    owned = set(history.run_tables(store))
    with store._connect() as conn:
        with_run_id = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                       if any(c[1] == "run_id" for c in conn.execute(f"PRAGMA table_info({name})"))}
    assert with_run_id == owned
    assert set(history.RUN_TABLES) <= owned  # the explicit order names only real tables
    data = history.export_data(store)
    assert data["version"] == history.EXPORT_VERSION >= 2
    assert {t for t in owned for run in data["runs"] if run[t]} == owned
    assert data["runs"][0]["notes"][0]["body"] == "remember this"
    # and the shipped schema has no run_id table beyond the explicit list
    plain = sqlite3.connect(Store(tmp_path / "plain.sqlite3").path)
    shipped = {name for (name,) in plain.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
               if any(c[1] == "run_id" for c in plain.execute(f"PRAGMA table_info({name})"))}
    plain.close()
    assert shipped == set(history.RUN_TABLES)


def test_version_1_exports_still_import(store, tmp_path):
    full_run(store)
    data = history.export_data(store)
    data["version"] = 1
    for run in data["runs"]:
        for table in ("divergence", "eval_runs", "eval_results"):
            run.pop(table)
    fresh = Store(tmp_path / "fresh.sqlite3")
    summary = history.import_json(fresh, data)
    assert (summary.runs, summary.results, summary.ratings, summary.votes) == (2, 2, 2, 1)


SET_TEXTS = [("Walk 20 minutes to the station.", "Walk 2 minutes to the station."),
             ("Paris is the capital of France.", "Paris is the capital of France."),
             ("The meeting is on 3 March at 10:00.", "The meeting is on 4 March at 10:00, I think.")]


def judged_set_run(store: Store) -> int:
    """A done set run of three prompts (Q8_0 reference, Q4_K_M), the second stopped once and run again, judged
    blind by two raters; made through the store (no inference)."""
    prompts = [{"prompt": f"Question {i + 1}?", "id": f"q{i + 1}"} for i in range(len(SET_TEXTS))]
    prompts[1] |= {"system": "Be brief.", "category": "geo"}
    set_id = store.create_set_run(name="our prompts", prompts=prompts, labels=["Q8_0", "Q4_K_M"],
                                  reference_label="Q8_0", settings={"max_tokens": 8, "api_key": "sk-secret"},
                                  ladder={"name": "Tiny", "files": [{"label": "Q8_0", "path": "/m/a.gguf"}]},
                                  noise_repeats=2, workbench_version="1.0")
    stopped = store.create_run(settings={"max_tokens": 8}, prompt="Question 2?")
    store.tag_set_run_child(stopped, set_id, 1)
    store.finish_run(stopped, "cancelled")
    for i, (ref, cand) in enumerate(SET_TEXTS):
        run_id = store.create_run(settings={"max_tokens": 8}, prompt=prompts[i]["prompt"], reference_label="Q8_0",
                                  machine={"cpu_model": "Test CPU"}, versions={"llama_cpp": "0.3"})
        store.tag_set_run_child(run_id, set_id, i)
        store.add_result(run_id, 0, {"label": "Q8_0", "quant_type": "Q8_0", "text": ref, "is_reference": True})
        store.add_result(run_id, 1, {"label": "Q4_K_M", "quant_type": "Q4_K_M", "text": cand})
        store.finish_run(run_id, "done")
        for rater, winner in (("ann", "a"), ("bob", "ab"[i % 2])):
            ratings.add_vote(store, run_id=run_id, label_a="Q8_0", label_b="Q4_K_M", winner=winner, rater=rater,
                             mode=SET_MODE, session=f"set-{set_id}-{rater}")
    store.set_set_run_status(set_id, "done")
    return set_id


def report_facts(store: Store, set_id: int) -> tuple:
    """What a set report says, without the ids and times that differ between databases."""
    r = build_set_report(store, set_id)
    return ([sv.paragraph for sv in r.verdicts], r.quality, r.machines, r.status_line,
            [(p.index, p.prompt, p.system, p.category, p.status, p.reference_text,
              [(c.label, c.sentence, c.facts, c.text) for c in p.cells]) for p in r.prompts])


def test_a_set_run_survives_export_and_import_with_its_children_verdict_and_report(store, tmp_path):
    full_run(store)
    set_id = judged_set_run(store)
    before = dump(store)
    data = json.loads(history.export_json(store, tmp_path / "all.json").read_text(encoding="utf-8"))
    assert data["version"] == history.EXPORT_VERSION == 3 and [s["id"] for s in data["set_runs"]] == [set_id]
    assert data["set_runs"][0]["settings"]["api_key"] == history.REDACTED  # no secret leaves, here either

    fresh = Store(tmp_path / "fresh.sqlite3")
    local = fresh.create_set_run(name="made here", prompts=[{"prompt": "p"}], labels=["Q8_0"], reference_label="Q8_0",
                                 settings={})
    summary = history.import_json(fresh, tmp_path / "all.json")
    assert summary.set_runs == 1 and summary.runs == 2 + 4
    new_set = summary.set_run_ids[set_id]
    assert new_set != local

    # the set_runs row is the same apart from its id and the import mark (the secret was removed on export)
    after = dump(fresh)
    local_row = after["set_runs"].pop(0)
    assert local_row["name"] == "made here"
    assert [r["set_run_id"] for r in after["runs"]] == [None if r["set_run_id"] is None else r["set_run_id"] + 1
                                                        for r in before["runs"]]
    for row in after["runs"]:
        row["set_run_id"] = None if row["set_run_id"] is None else row["set_run_id"] - 1
    before["set_runs"][0]["settings_json"]["api_key"] = history.REDACTED
    assert after == before
    imported = fresh.get_set_run(new_set)
    assert imported.imported_from.endswith("all.json")

    # its children are the imported runs, remapped, with their attempts; the local set run adopts none of them
    original = store.get_set_run(set_id)
    assert [(c.index, c.status, c.attempts) for c in imported.children] == \
        [(c.index, c.status, c.attempts) for c in original.children] == \
        [(0, "done", 1), (1, "done", 2), (2, "done", 1)]
    assert [c.run_id for c in imported.children] == [summary.run_ids[c.run_id] for c in original.children]
    assert fresh.get_set_run(local).children == ()
    fresh.tag_set_run_child(imported.children[0].run_id, local, 0)  # as an older import left runs tagged
    assert fresh.get_set_run(local).children == ()  # a local set run never takes an imported run
    fresh.tag_set_run_child(imported.children[0].run_id, new_set, 0)
    listed = {r.id: r for r in fresh.list_set_runs()}
    assert (listed[new_set].n_finished, listed[new_set].n_prompts, listed[local].n_finished) == (3, 3, 0)

    # the verdict and the report read the same in the fresh database
    for candidate in ("Q4_K_M",):
        old, new = set_verdict(store, set_id, candidate), set_verdict(fresh, new_set, candidate)
        assert new.verdict.votes == 6 and new.paragraph == old.paragraph and new.quality == old.quality
    assert report_facts(fresh, new_set) == report_facts(store, set_id)
    assert "imported" in set_report_html(fresh, new_set) and "imported" not in set_report_html(store, set_id)

    # it is never resumed here: its file paths are another machine's
    with pytest.raises(SetRunError, match="was imported"):
        run_set(None, fresh, None, new_set)  # type: ignore[arg-type]

    # and it travels on: exported from the fresh database and imported again, still with its children (the local
    # set run has no runs, so an export of runs does not carry it)
    again = Store(tmp_path / "again.sqlite3")
    moved = history.import_json(again, history.export_data(fresh))
    assert moved.set_run_ids.keys() == {new_set} and report_facts(again, moved.set_run_ids[new_set]) == report_facts(store, set_id)


def test_an_export_carries_only_the_set_runs_of_its_runs(store, tmp_path):
    plain = full_run(store)
    set_id = judged_set_run(store)
    child = store.get_set_run(set_id).children[2].run_id
    assert history.export_data(store, [plain])["set_runs"] == []
    one = history.export_data(store, [child])
    assert [s["id"] for s in one["set_runs"]] == [set_id] and one["runs"][0]["set_run_id"] == set_id
    fresh = Store(tmp_path / "fresh.sqlite3")
    summary = history.import_json(fresh, one)
    children = fresh.get_set_run(summary.set_run_ids[set_id]).children
    assert children == (SetRunChild(index=2, run_id=summary.run_ids[child], status="done", attempts=1),)


def test_version_2_exports_still_import_and_their_set_run_ids_are_dropped(store, tmp_path):
    """A version 2 file has no set runs; its runs' set_run_id named another database's set run, so here it is none."""
    set_id = judged_set_run(store)
    data = history.export_data(store)
    data["version"] = 2
    data.pop("set_runs")
    fresh = Store(tmp_path / "fresh.sqlite3")
    same_id = fresh.create_set_run(name="local", prompts=[{"prompt": "p"}] * 3, labels=["Q8_0"],
                                   reference_label="Q8_0", settings={})
    assert same_id == set_id  # the imported runs' old tag would name this local set run
    summary = history.import_json(fresh, data)
    assert summary.set_runs == 0 and summary.runs == 4
    assert all(fresh.get_run(new).set_run_id is None for new in summary.run_ids.values())
    assert fresh.get_set_run(same_id).children == ()
