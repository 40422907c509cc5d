"""History: search, cascading delete, JSON/CSV export without secrets, JSON import round trip, CLI."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta

import pytest

from workbench.cli.main import main
from workbench.people import history, ratings
from workbench.storage.store import Store


def make_run(store: Store, prompt: str, model: str = "Tiny model", settings: dict | None = None) -> int:
    run_id = store.create_run(settings=settings or {"max_tokens": 8, "seed": 0}, prompt=prompt, category="chat",
                              ladder={"name": model, "provenance": {"origin": "test"}, "files": []},
                              machine={"cpu_model": "Test CPU"}, reference_label="Q8_0")
    for i, label in enumerate(("Q8_0", "Q2_K")):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "text": f"{prompt} → {label}",
                                     "is_reference": i == 0, "token_ids": [1, 2, i], "decode_tok_s": 10.0 + i,
                                     "settings": {"n_ctx": 256}})
    store.finish_run(run_id, "done")
    return run_id


def populated(store: Store) -> list[int]:
    a = make_run(store, "Summarise this memo", model="SmolLM2")
    b = make_run(store, "Solve 17 * 23", model="Qwen")
    for run_id in (a, b):
        ratings.add_rating(store, run_id=run_id, label="Q8_0", score=5, rater="ann", comment="clear")
        ratings.add_rating(store, run_id=run_id, label="Q2_K", score=2, rater="ann", mode="blind", session="s",
                           display_letter="B")
        ratings.add_vote(store, run_id=run_id, label_a="Q8_0", label_b="Q2_K", winner="a", rater="bob")
    return [a, b]


def test_search_by_prompt_model_and_dates(store):
    a, b = populated(store)
    assert [r.id for r in history.search_runs(store)] == [b, a]
    assert [r.id for r in history.search_runs(store, text="memo")] == [a]
    assert [r.id for r in history.search_runs(store, model="qwen")] == [b]
    row = history.search_runs(store, text="17")[0]
    assert (row.n_results, row.n_ratings, row.n_votes) == (2, 2, 1)
    today = datetime.now(UTC).date()
    assert len(history.search_runs(store, since=today, until=today)) == 2
    assert len(history.search_runs(store, until=str(today - timedelta(days=1)))) == 0
    assert len(history.search_runs(store, since=datetime.now(UTC) + timedelta(hours=1))) == 0
    assert history.search_runs(store, since=date(2000, 1, 1), text="nothing like this") == []


def test_delete_cascades_to_outputs_ratings_and_votes_only_of_that_run(store):
    a, b = populated(store)
    assert history.delete_runs(store, [a, 12345]) == 1
    assert store.get_run(a) is None and store.get_run(b) is not None
    with store._connect() as conn:
        for table in ("results", "ratings", "votes"):
            assert {r[0] for r in conn.execute(f"SELECT DISTINCT run_id FROM {table}")} == {b}


def _strip_ids(data: dict) -> dict:
    """The export with ids and the export time removed: what must survive a round trip."""
    out = json.loads(json.dumps(data))
    out.pop("exported_at")
    for run in out["runs"]:
        run.pop("id")
        run.pop("imported_from")  # an import marks its runs on purpose
        for table in ("results", "ratings", "votes"):
            for row in run[table]:
                for key in ("id", "run_id", "result_id"):
                    row.pop(key, None)
    return out


def test_json_export_round_trips_through_an_empty_database(store, tmp_path):
    populated(store)
    first = history.export_data(store)
    assert first["format"] == "quant-workbench-export" and len(first["runs"]) == 2
    assert {len(r["results"]) for r in first["runs"]} == {2}
    assert first["runs"][0]["results"][0]["token_ids"] == [1, 2, 0]
    path = history.export_json(store, tmp_path / "export.json")
    fresh = Store(tmp_path / "fresh.sqlite3")
    summary = history.import_json(fresh, path)
    assert (summary.runs, summary.results, summary.ratings, summary.votes) == (2, 4, 4, 2)
    second = history.export_data(fresh)
    assert _strip_ids(second) == _strip_ids(first)
    # relations survive: each imported rating points at the imported output of its own run
    for run in second["runs"]:
        ids = {r["label"]: r["id"] for r in run["results"]}
        assert all(rt["result_id"] == ids[rt["label"]] for rt in run["ratings"])
    # only chosen runs
    only = history.export_data(store, [second["runs"][0]["id"]])
    assert len(only["runs"]) == 1


def test_import_refuses_files_that_are_not_exports(store, tmp_path):
    bad = tmp_path / "bad.json"
    newer = json.dumps({"format": "quant-workbench-export", "version": 99}).encode()
    for content in (b"not json", b'{"runs": []}', newer):
        bad.write_bytes(content)
        with pytest.raises(history.ImportFileError):
            history.import_json(store, bad)
    assert history.search_runs(store) == []


def test_csv_export_is_a_zip_of_one_csv_per_table(store, tmp_path):
    populated(store)
    path = history.export_csv(store, tmp_path / "export.zip")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["ratings.csv", "results.csv", "runs.csv", "votes.csv"]
        tables = {n: list(csv.DictReader(io.StringIO(zf.read(n).decode()))) for n in zf.namelist()}
    assert [len(tables[t]) for t in ("runs.csv", "results.csv", "ratings.csv", "votes.csv")] == [2, 4, 4, 2]
    assert {"prompt", "ladder_name", "settings_json"} <= set(tables["runs.csv"][0])
    assert json.loads(tables["runs.csv"][0]["settings_json"]) == {"max_tokens": 8, "seed": 0}


def test_exports_never_carry_secret_named_settings(store, tmp_path):
    secret = "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"
    remote = {"api_key": secret, "url": "http://x", "headers": {"Authorization": secret}}
    make_run(store, "p", settings={"max_tokens": 8, "hf_token": secret, "remote": remote})
    data = history.export_data(store)
    settings = data["runs"][0]["settings"]
    assert settings["max_tokens"] == 8 and settings["remote"]["url"] == "http://x"  # counts and urls stay
    assert settings["hf_token"] == settings["remote"]["api_key"] == history.REDACTED
    assert settings["remote"]["headers"]["Authorization"] == history.REDACTED
    assert data["runs"][0]["results"][0]["metrics"]["settings"] == {"n_ctx": 256}
    with zipfile.ZipFile(io.BytesIO(history.export_csv_bytes(store))) as zf:
        texts = [zf.read(n).decode() for n in zf.namelist()]
    assert all(secret not in t for t in [history.export_json_bytes(store).decode(), *texts])
    for key in ("hf_token", "api_key", "token", "secret", "password", "Authorization", "openai-api-key"):
        assert history.SECRET_KEY.search(key), key
    for key in ("max_tokens", "prompt_tokens", "token_ids", "n_keep", "keyboard"):
        assert not history.SECRET_KEY.search(key), key


def test_cli_export_import_history_and_their_errors(store, tmp_path, capsys):
    a, _ = populated(store)
    db = str(store.path)
    out = tmp_path / "all.json"
    assert main(["export", "--format", "json", "--out", str(out), "--db", db]) == 0
    assert len(json.loads(out.read_text())["runs"]) == 2
    assert main(["export", "--format", "csv", "--out", str(tmp_path / "one.zip"), "--runs", str(a), "--db", db]) == 0
    assert zipfile.is_zipfile(tmp_path / "one.zip")
    capsys.readouterr()
    assert main(["export", "--format", "json", "--out", str(out), "--runs", "999", "--db", db]) == 1
    assert "no run with id 999" in capsys.readouterr().err
    assert main(["export", "--format", "csv", "--out", str(tmp_path / "x.csv"), "--db", db]) == 2
    assert main(["export", "--format", "xml", "--out", str(out), "--db", db]) == 2
    assert main(["export", "--format", "json", "--out", str(tmp_path / "no" / "dir.json"), "--db", db]) == 2
    assert main(["export", "--format", "json", "--out", str(out), "--runs", "a,b", "--db", db]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ".zip" in err

    fresh = str(tmp_path / "fresh.sqlite3")
    assert main(["import", str(out), "--db", fresh]) == 0
    assert "imported 2 runs, 4 outputs, 4 ratings, 2 votes" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "missing.json"), "--db", fresh]) == 1
    (tmp_path / "junk.json").write_text("[]")
    assert main(["import", str(tmp_path / "junk.json"), "--db", fresh]) == 1
    assert "not a Quant Workbench export" in capsys.readouterr().err

    assert main(["history", "--search", "memo", "--json", "--db", fresh]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["prompt"] for r in rows] == ["Summarise this memo"] and isinstance(rows[0]["run_id"], int)  # not "id"
    assert main(["history", "--db", fresh]) == 0
    assert "Solve 17 * 23" in capsys.readouterr().out
    assert main(["history", "--since", "yesterday", "--db", fresh]) == 2
