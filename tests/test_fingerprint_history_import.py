"""Fingerprint history moved from JSON-lines files into the database (migration m006_fingerprints).

A database from before m006 is upgraded with the `fingerprints/<key>.jsonl` files beside it: every
good report is imported once, in order; a malformed, non-object or over-long line is skipped with a
note (a half-written line after a crash must not hide the rest); the files stay where they were.
"""

from __future__ import annotations

import json
import logging

from workbench.runs.contestants import RemoteEndpoint
from workbench.runs.fingerprint import history, history_key
from workbench.storage import migrations
from workbench.storage.store import Store


def report(closest: str, when: str) -> dict:
    return {"endpoint": {"base_url": "http://127.0.0.1:9"}, "ladder": "demo", "created_at": when,
            "closest": closest, "candidates": [{"label": closest, "mean_kld": 0.01}], "notes": ["ünïcode"]}


def test_an_older_database_imports_the_json_lines_files_once(tmp_path, monkeypatch, caplog):
    db = tmp_path / "workbench.sqlite3"
    before_m006 = [m for m in migrations.MIGRATIONS if m[0] != "m006_fingerprints"]
    with monkeypatch.context() as m:  # a database made by the workbench before fingerprints moved in
        m.setattr(migrations, "MIGRATIONS", before_m006)
        old = Store(db)
        run_id = old.create_run(settings={"max_tokens": 8}, prompt="kept")
        assert "m006_fingerprints" not in old.schema_version()

    ep = RemoteEndpoint("http://127.0.0.1:9", model="served")
    folder = tmp_path / "fingerprints"
    folder.mkdir()
    mine = folder / f"{history_key(ep)}.jsonl"
    first, second = report("Q4_K_M", "2026-01-01T00:00:00+00:00"), report("Q8_0", "2026-02-01T00:00:00+00:00")
    mine.write_text("\n".join([json.dumps(first, ensure_ascii=False), '{"closest": "Q2_K", "candid',  # crash
                               "[1, 2, 3]", "x" * 3000, "", json.dumps(second)]) + "\n", encoding="utf-8")
    other = folder / f"{'0' * 16}.jsonl"
    other.write_text(json.dumps(report("Q6_K", "2026-03-01T00:00:00+00:00")) + "\n", encoding="utf-8")
    (folder / "notes.jsonl").write_text(json.dumps(report("Q3_K", "x")) + "\n", encoding="utf-8")
    files_before = {p.name: p.read_bytes() for p in folder.iterdir()}

    monkeypatch.setattr(migrations, "MAX_FINGERPRINT_LINE_BYTES", 2000)
    with caplog.at_level(logging.WARNING, logger="workbench.storage.migrations"):
        store = Store(db)
    assert "m006_fingerprints" in store.schema_version()
    assert store.get_run(run_id).prompt == "kept"
    assert history(ep, store) == [first, second]  # good lines, in file order; the rest skipped
    assert [h["closest"] for h in store.fingerprint_history("0" * 16)] == ["Q6_K"]
    notes = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{mine.name} line 2: not JSON" in notes
    assert f"{mine.name} line 3: not a fingerprint report" in notes
    assert f"{mine.name} line 4: longer than 2000 bytes" in notes
    assert "notes.jsonl: not a fingerprint history file name" in notes
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files_before  # left in place, untouched

    store.add_fingerprint(history_key(ep), report("Q5_K_M", "2026-04-01T00:00:00+00:00"))
    again = Store(db)  # imported once: opening again adds nothing from the files
    assert [h["closest"] for h in history(ep, again)] == ["Q4_K_M", "Q8_0", "Q5_K_M"]


def test_an_oversized_file_is_left_out_whole(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "fingerprints"
    folder.mkdir()
    (folder / f"{'a' * 16}.jsonl").write_text(json.dumps(report("Q4_0", "t")) + "\n", encoding="utf-8")
    monkeypatch.setattr(migrations, "MAX_FINGERPRINT_FILE_BYTES", 10)
    with caplog.at_level(logging.WARNING, logger="workbench.storage.migrations"):
        store = Store(tmp_path / "workbench.sqlite3")
    assert store.fingerprint_history("a" * 16) == []
    assert "over 10 bytes, left out" in caplog.text


def test_a_new_database_without_files_starts_an_empty_history(tmp_path):
    store = Store(tmp_path / "workbench.sqlite3")
    ep = RemoteEndpoint("http://127.0.0.1:9", model="served")
    assert history(ep, store) == []
    assert not (tmp_path / "fingerprints").exists()  # nothing is written beside the database any more
