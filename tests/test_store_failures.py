"""Issue 14, finding 9: a full disk, a damaged database and a read-only one each say what is wrong and how to
recover; nothing saved before is lost, and the app stays up."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.storage.store import Store, StoreError

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def result(label: str, text: str) -> dict:
    return {"label": label, "quant_type": "Q8_0", "file": "/x.gguf", "text": text, "is_reference": False}


def test_a_full_disk_says_so_and_keeps_what_was_saved(tmp_path, monkeypatch):
    store = Store(tmp_path / "w.sqlite3")
    kept = store.create_run(settings={"max_tokens": 8}, prompt="kept")
    store.add_result(kept, 0, result("Q8_0", "saved before the disk filled"))
    pages = sqlite3.connect(tmp_path / "w.sqlite3").execute("PRAGMA page_count").fetchone()[0]
    real_connect = Store._connect

    @contextmanager
    def full_disk(self):  # SQLite's own "database or disk is full", as on a full disk: no room past these pages
        with real_connect(self) as conn:
            conn.execute(f"PRAGMA max_page_count = {pages + 2}")
            yield conn

    monkeypatch.setattr(Store, "_connect", full_disk)
    run = store.create_run(settings={"max_tokens": 8}, prompt="new")
    with pytest.raises(StoreError, match="the disk is full") as err:
        store.add_result(run, 0, result("Q2_K", "x" * 200_000))
    assert "everything saved before is intact" in str(err.value)
    assert "rollback" not in str(err.value).lower()  # the error that happened, not a failed ROLLBACK after it
    monkeypatch.undo()
    assert Store(tmp_path / "w.sqlite3").get_run(kept).results[0].text == "saved before the disk filled"


def test_a_damaged_database_is_refused_with_the_way_to_recover_and_left_as_it_was(tmp_path):
    db = tmp_path / "workbench.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as err:
        Store(db)
    message = str(err.value)
    assert "cannot be used" in message and f"mv '{db}' '{db}.broken'" in message and ".recover" in message
    assert db.read_bytes() == b"this is not a database" * 100


@contextmanager
def immutable(*paths: Path):
    """Read-only even for root (tests run as root): the ext4 immutable attribute."""
    done = []
    try:
        for p in paths:
            if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
                pytest.skip("chattr +i is not available here (needs root on ext4/xfs)")
            done.append(p)
        yield
    finally:
        for p in done:
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)


def test_a_read_only_database_opens_read_only_and_refuses_writes_plainly(tmp_path):
    db = tmp_path / "ro" / "workbench.sqlite3"
    store = Store(db)
    run = store.create_run(settings={"max_tokens": 8}, prompt="saved while writable")
    with immutable(db, db.parent):
        ro = Store(db)
        assert ro.read_only and "read-only" in ro.read_only_reason()
        assert ro.get_run(run).prompt == "saved while writable"
        with pytest.raises(StoreError, match="read-only"):
            ro.create_run(settings={}, prompt="new")
    assert Store(db).get_run(run).prompt == "saved while writable"


def test_pages_say_what_is_wrong_instead_of_raising(tmp_path, monkeypatch, demo_ladder):
    from ui import shared

    data = tmp_path / "data"
    data.mkdir()
    (data / "workbench.sqlite3").write_bytes(b"garbage" * 1000)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data))
    shared._open_store.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        assert any("cannot be used" in e.value and ".broken" in e.value for e in at.error)

        (data / "workbench.sqlite3").unlink()  # recovered as the message says: the next visit works
        Store(data / "workbench.sqlite3").create_run(settings={"max_tokens": 8}, prompt="after recovery")
        db = data / "workbench.sqlite3"
        with immutable(db, data):
            shared._open_store.clear()
            at = AppTest.from_file(APP, default_timeout=120)
            at.run()
            assert not at.exception, at.exception
            assert any("read-only" in w.value for w in at.sidebar.warning)
            assert at.title[0].value == "Compare quantizations"
    finally:
        shared._open_store.clear()


def test_the_cli_says_a_damaged_database_in_one_line(tmp_path):
    """Every command that opens the store (history, fingerprint, report…) reports a StoreError plainly, no traceback."""
    db = tmp_path / "workbench.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "workbench", "history"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and out.stderr.startswith("error: ") and ".recover" in out.stderr


def test_a_database_error_no_page_handles_ends_the_page_in_the_database_box():
    """Pages do not catch storage errors to show them: ui.shared.run_navigation says one that a page left unhandled,
    in the box `store()` uses for a database that cannot be opened, instead of a traceback."""

    def app() -> None:
        import streamlit as st

        from ui.shared import run_navigation
        from workbench.storage.store import StoreError

        def page() -> None:
            st.title("A page that writes")
            raise StoreError("Could not save to /x/workbench.sqlite3: the database is read-only. Nothing was saved.")

        run_navigation(st.navigation([st.Page(page, title="Writes")]))

    at = AppTest.from_function(app, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "A page that writes"
    (box,) = at.error
    assert "the database is read-only" in box.value and box.proto.icon == ":material/database:"
