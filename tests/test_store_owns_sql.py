"""The store owns SQL: no module outside workbench/storage opens a connection, runs a statement or writes SQL.

Callers use `Store`'s named methods, so the schema, its transactions and the StoreError handling (full disk,
damaged or read-only database) live in one place. Checked on the syntax tree, function bodies included.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from workbench.storage.store import DivergenceRow, ImportRun, JudgementFilters, Store, StoreError
from workbench.storage.watch_rows import ProviderCheck

ROOT = Path(__file__).resolve().parent.parent
STORAGE = ROOT / "workbench" / "storage"
# Methods that hand out a connection or run a statement on one.
CONNECTION_CALLS = {"_connect", "_connect_read_only", "transaction", "execute", "executemany", "executescript"}
SQL = re.compile(r"\b(SELECT\s[\s\S]*?\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\"?\w+\"?\s+SET\s|DELETE\s+FROM\s|"
                 r"CREATE\s+(TABLE|INDEX)\s|ALTER\s+TABLE\s|DROP\s+TABLE\s|PRAGMA\s+\w+)")


def app_sources() -> list[Path]:
    """Every module of the library outside storage, the Streamlit helpers, the pages, the entry script and the
    benchmarks (which read the app's database through storage too)."""
    files = [p for p in (ROOT / "workbench").rglob("*.py") if STORAGE not in p.parents]
    files += list((ROOT / "ui").rglob("*.py")) + list((ROOT / "pages").rglob("*.py")) + [ROOT / "app.py"]
    files += list((ROOT / "benchmarks").rglob("*.py"))
    return sorted(p for p in files if p.is_file())


def sql_uses(source: str) -> list[str]:
    """Where `source` reaches a database itself: connection calls, sqlite3.connect, SQL text outside docstrings."""
    tree = ast.parse(source)
    docstrings = {id(body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and (body := node.body) and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in CONNECTION_CALLS:
                found.append(f"{node.lineno}: .{node.func.attr}()")
            elif node.func.attr == "connect" and isinstance(node.func.value, ast.Name) and \
                    node.func.value.id == "sqlite3":
                found.append(f"{node.lineno}: sqlite3.connect()")
        elif isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
            found.append(f"{node.lineno}: from sqlite3 import ...")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and SQL.search(node.value):
            found.append(f"{node.lineno}: SQL text {SQL.search(node.value).group(0)!r}")
    return found


def test_the_checker_finds_each_way_of_reaching_the_database():
    source = '''
import sqlite3
def f(store):
    with store._connect() as conn:
        conn.execute("SELECT id FROM runs")
    with store.transaction() as conn:
        pass
    sqlite3.connect("x.db")
    sql = f"DELETE FROM {table} WHERE id = ?"
    other = "UPDATE runs SET status = ?"
'''
    found = "\n".join(sql_uses(source))
    for what in (".execute()", "._connect()", ".transaction()", "sqlite3.connect()", "'SELECT id FROM '",
                 "'DELETE FROM '", "'UPDATE runs SET '"):
        assert what in found, (what, found)
    assert sql_uses('def g(store):\n    """Rows as PRAGMA table_info gives them; SELECT * FROM runs."""\n'
                    '    return store.list_runs()\n') == []


def test_no_module_outside_storage_reaches_the_database_itself():
    sources = app_sources()
    assert len(sources) > 40 and ROOT / "workbench" / "people" / "history.py" in sources
    assert ROOT / "benchmarks" / "sessions.py" in sources
    offenders = {str(p.relative_to(ROOT)): uses for p in sources if (uses := sql_uses(p.read_text(encoding="utf-8")))}
    assert offenders == {}, f"SQL belongs in workbench/storage (Store's methods): {offenders}"


def test_every_write_goes_through_the_store_transaction_and_its_errors(tmp_path):
    """A read-only database refuses each writing method with StoreError (not a raw sqlite3 error) and is unchanged."""
    store = Store(tmp_path / "w.sqlite3")
    run_id = store.create_run(settings={"max_tokens": 8}, prompt="kept")
    store.add_result(run_id, 0, {"label": "Q8_0", "quant_type": "Q8_0", "text": "out", "is_reference": True})
    store.add_result(run_id, 1, {"label": "Q2_K", "quant_type": "Q2_K", "text": "out", "is_reference": False})
    before = store.get_run(run_id)
    outcome = {"case_id": "c", "category": "x", "label": "Q8_0", "quant_type": "Q8_0", "passed": True, "detail": "",
               "output": "", "error": None, "stop_reason": None, "completion_tokens": 1, "decode_tok_s": 1.0,
               "total_s": 1.0}
    writes = {
        "create_run": lambda: store.create_run(settings={}, prompt="new"),
        "finish_run": lambda: store.finish_run(run_id, "done"),
        "add_result": lambda: store.add_result(run_id, 2, {"label": "Q4_0", "is_reference": False}),
        "add_rating": lambda: store.add_rating(run_id=run_id, label="Q8_0", score=3),
        "add_rating_snapshot": lambda: store.add_rating_snapshot(run_id=run_id, label="Q8_0", score=3, comment=None,
                                                                 rater=None, mode="open", session=None,
                                                                 display_letter=None),
        "add_vote": lambda: store.add_vote(run_id=run_id, label_a="Q8_0", label_b="Q2_K", winner="a", rater=None,
                                           session=None, mode="pairwise", comment=None),
        "import_runs": lambda: store.import_runs(lambda info: [ImportRun({"id": 9, "settings_json": "{}",
                                                                          "created_at": "t"})], (), "stamp"),
        "replace_divergence": lambda: store.replace_divergence(run_id, "output", "Q8_0", {}, "t", [
            DivergenceRow("Q2_K", "Q2_K", None, False, None, {"mean_kld": 0.1}, {})]),
        "add_eval_run": lambda: store.add_eval_run(run_id, pack_name="p", pack_source=None, categories=None,
                                                   case_limit=None, contestants=[], cases=[]),
        "save_eval_result": lambda: store.save_eval_result(run_id, outcome),
        "add_fingerprint": lambda: store.add_fingerprint("0" * 16, {"closest": "Q8_0"}),
        "save_target_profile": lambda: store.save_target_profile("box", {"ram_bytes": 2**33}),
        "delete_target_profile": lambda: store.delete_target_profile("box"),
        "add_watched_provider": lambda: store.add_watched_provider(name="Acme", base_url="http://127.0.0.1:9",
                                                                   ladder="demo"),
        "update_watched_provider": lambda: store.update_watched_provider(1, model="m"),
        "add_provider_check": lambda: store.add_provider_check(ProviderCheck(0, 1, "t", status="failed")),
        "delete_watched_provider": lambda: store.delete_watched_provider(1),
        "delete_run": lambda: store.delete_run(run_id),
    }
    store.read_only = True
    for write in writes.values():
        with pytest.raises(StoreError, match="read-only"):
            write()
    store.read_only = False
    assert store.get_run(run_id) == before and len(store.list_runs()) == 1
    assert store.divergence_rows(run_id, "output") == [] and store.eval_rows(run_id) is None
    assert store.ratings() == [] and store.find_votes(JudgementFilters()) == []
    assert store.fingerprint_history("0" * 16) == [] and store.target_profiles() == []
    assert store.watched_providers() == [] and store.provider_checks(1) == []
    for write in writes.values():  # and each one works on a writable database
        write()
    assert store.get_run(run_id) is None and len(store.list_runs()) == 2  # deleted; the new and the imported run
    assert store.fingerprint_history("0" * 16) == [{"closest": "Q8_0"}]
