"""History export/import is lossless: every table a run owns (a run_id column) leaves in the JSON export and
comes back, column for column, into a fresh database (issue 14, finding 7)."""

from __future__ import annotations

import json
import sqlite3

from workbench.people import history, ratings
from workbench.quality import divergence, evals
from workbench.storage.store import Store


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
    """Every row of every table a run owns (and runs), ids replaced by their rank so remapped ids compare equal,
    JSON columns parsed."""
    tables = ["runs", *history.run_tables(store)]
    with store._connect() as conn:
        rows = {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in tables}
    run_rank = {r["id"]: i for i, r in enumerate(rows["runs"])}
    result_rank = {r["id"]: i for i, r in enumerate(rows["results"])}
    for table_rows in rows.values():
        for row in table_rows:
            row.pop("id", None)
            if "run_id" in row:
                row["run_id"] = run_rank[row["run_id"]]
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
