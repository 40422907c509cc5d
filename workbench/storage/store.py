"""The SQLite store of everything a user makes: runs, outputs, metrics and ratings.

WAL mode and a generous busy timeout let several app tabs, CLI runs and workers' parents write at
once without "database is locked" reaching a user; every write is its own short transaction, so
a crash loses at most the write in flight. Other tools can read the file directly.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.core import paths
from workbench.storage import migrations

BUSY_TIMEOUT_S = 30.0

RESULT_COLUMNS = (
    "label", "quant_type", "file", "size_bytes", "bits_per_weight", "is_reference", "text", "stop_reason",
    "error", "fallback", "load_s", "ttft_s", "prompt_tokens", "prefill_s", "prefill_tok_s", "completion_tokens",
    "decode_steps", "decode_s", "decode_tok_s", "peak_rss_bytes", "gpu_mem_bytes", "gpu_layers",
    "first_divergence_token", "cpu_contention", "disturbed", "display",
)


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class StoreError(RuntimeError):
    """The database cannot be used as asked: the message says what is wrong and how to recover."""


def _is_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


def _is_read_only(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.Error) and ("readonly" in text or "read-only" in text or "unable to open" in text)


class Store:
    """A handle on one database file; opens a short-lived connection per operation (thread-safe).

    A database the app cannot write (a read-only file or folder) opens read-only: everything saved can be
    read, and a write raises StoreError saying why. A file that is not a SQLite database, or is damaged,
    raises StoreError at once with the way to recover; nothing is changed in it.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else paths.db_path()
        self.read_only = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                migrations.apply(conn)
        except (sqlite3.Error, OSError) as exc:
            if not (_is_read_only(exc) or isinstance(exc, PermissionError)) or not self.path.exists():
                raise self._unusable(exc) from None
            self.read_only = True
            self._check_read_only_schema()

    def _unusable(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"The database {self.path} cannot be used: {exc}. Nothing in it was changed. To recover, move it aside "
            f"(mv '{self.path}' '{self.path}.broken') and start the app again: a new, empty database is made. "
            f"Runs in the old file can often be rescued with: sqlite3 '{self.path}.broken' .recover | sqlite3 rescued.db")

    def _check_read_only_schema(self) -> None:
        """A read-only database must already have every migration: it cannot be upgraded."""
        try:
            with self._connect() as conn:
                done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        missing = [name for name, _ in migrations.MIGRATIONS if name not in done]
        if missing:
            raise StoreError(f"The database {self.path} is read-only and older than this workbench (it lacks "
                             f"{', '.join(missing)}): make it writable once so it can be upgraded.")

    def read_only_reason(self) -> str | None:
        """Why nothing can be saved now (None when the database is writable)."""
        if not self.read_only:
            return None
        return (f"The database {self.path} is read-only (file or folder permissions, or a read-only disk): runs and "
                "ratings saved so far are shown, but nothing new can be saved until it is writable again.")

    def _connect_read_only(self) -> sqlite3.Connection:
        """mode=ro; in a folder we cannot write, a WAL database has no -shm file to share, so open it as
        immutable (SQLite then reads the file as it is, without locking)."""
        for query in ("mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(f"file:{self.path}?{query}", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
                return conn
            except sqlite3.OperationalError:
                conn.close()
        raise sqlite3.OperationalError("unable to open database file (read-only)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            conn = self._connect_read_only()
        else:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, retried when another writer holds the lock past the busy timeout.

        A full disk or a read-only database becomes a StoreError saying so; the write in flight is lost,
        everything committed before it stays. The error that happened is the one reported, never a failed
        ROLLBACK after it (SQLite may already have rolled back on a full disk).
        """
        if self.read_only:
            raise StoreError(self.read_only_reason() or "read-only database")
        for attempt in range(5):
            with self._connect() as conn:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if "locked" in str(exc) and attempt < 4:
                        time.sleep(0.2 * (attempt + 1))
                        continue
                    raise self._write_error(exc) from None
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException as exc:
                    try:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # already rolled back by SQLite; the original error is the one to report
                    if _is_full(exc) or _is_read_only(exc):
                        raise self._write_error(exc) from None
                    raise
                return

    def _write_error(self, exc: BaseException) -> BaseException:
        if _is_full(exc):
            return StoreError(f"Could not save to {self.path}: the disk is full ({exc}). What was being saved is "
                              "lost; everything saved before is intact. Free some space and try again.")
        if _is_read_only(exc):
            return StoreError(f"Could not save to {self.path}: the database is read-only ({exc}). Everything "
                              "saved before is intact; make the file and its folder writable and try again.")
        return exc

    def schema_version(self) -> list[str]:
        with self._connect() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]

    # ---- runs -------------------------------------------------------------------------------
    def create_run(
        self,
        *,
        settings: dict[str, Any],
        prompt: str | None = None,
        system_prompt: str | None = None,
        messages: list[dict[str, str]] | None = None,
        kind: str = "compare",
        category: str | None = None,
        ladder: dict[str, Any] | None = None,
        reference_label: str | None = None,
        machine: dict[str, Any] | None = None,
        versions: dict[str, str] | None = None,
    ) -> int:
        versions = versions or {}
        with self.transaction() as conn:
            cur = conn.execute(
                """INSERT INTO runs (created_at, kind, ladder_name, ladder_json, prompt, system_prompt, messages_json,
                   category, settings_json, reference_label, machine_json, workbench_version, llama_cpp_version)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    now_iso(), kind, (ladder or {}).get("name"), json.dumps(ladder) if ladder else None, prompt,
                    system_prompt, json.dumps(messages) if messages else None, category, json.dumps(settings),
                    reference_label, json.dumps(machine) if machine else None, versions.get("workbench"),
                    versions.get("llama_cpp"),
                ),
            )
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def add_result(self, run_id: int, position: int, result: dict[str, Any]) -> int:
        """Store one contestant's result (a ContestantResult.to_dict()); replaces one of the same label."""
        measurement = result.get("measurement") if isinstance(result.get("measurement"), dict) else {}
        decode = measurement.get("decode") if isinstance(measurement.get("decode"), dict) else {}
        derived = {"cpu_contention": _float_or_none(decode.get("contention")),
                   "disturbed": None if decode.get("disturbed") is None else int(bool(decode.get("disturbed"))),
                   "display": measurement.get("display") if isinstance(measurement.get("display"), str) else None}
        values = [derived[c] if c in derived else result.get(c) for c in RESULT_COLUMNS]
        values[RESULT_COLUMNS.index("is_reference")] = int(bool(result.get("is_reference")))
        with self.transaction() as conn:
            cur = conn.execute(
                f"""INSERT INTO results (run_id, position, {", ".join(RESULT_COLUMNS)}, token_ids_json, metrics_json, created_at)
                    VALUES (?, ?, {", ".join("?" * len(RESULT_COLUMNS))}, ?, ?, ?)
                    ON CONFLICT (run_id, label) DO UPDATE SET
                    {", ".join(f"{c}=excluded.{c}" for c in RESULT_COLUMNS)},
                    token_ids_json=excluded.token_ids_json, metrics_json=excluded.metrics_json""",
                (run_id, position, *values, json.dumps(result.get("token_ids") or []), json.dumps(result), now_iso()),
            )
            row = conn.execute("SELECT id FROM results WHERE run_id = ? AND label = ?", (run_id, result["label"])).fetchone()
            return int(row[0]) if row else int(cur.lastrowid)

    def set_first_divergence(self, result_id: int, token: int | None) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE results SET first_divergence_token = ? WHERE id = ?", (token, result_id))

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        """A run with its settings, ladder and results (each with its full metrics), or None."""
        with self._connect() as conn:
            run = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if run is None:
                return None
            results = conn.execute("SELECT * FROM results WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
        out = dict(run)
        for key in ("settings_json", "ladder_json", "messages_json", "machine_json"):
            out[key.removesuffix("_json")] = json.loads(out.pop(key)) if out.get(key) else None
        out["results"] = [self._result_row(r) for r in results]
        return out

    @staticmethod
    def _result_row(row: sqlite3.Row) -> dict[str, Any]:
        r = dict(row)
        r["token_ids"] = json.loads(r.pop("token_ids_json") or "[]")
        r["metrics"] = json.loads(r.pop("metrics_json") or "{}")
        r["is_reference"] = bool(r["is_reference"])
        return r

    def list_runs(self, limit: int = 50, search: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Recent runs, newest first, optionally filtered by text in the prompt or ladder name."""
        sql = "SELECT id, created_at, kind, status, ladder_name, prompt, reference_label FROM runs"
        where, args = [], []
        if search:
            where.append("(prompt LIKE ? OR ladder_name LIKE ?)")
            args += [f"%{search}%", f"%{search}%"]
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(sql, args)]

    def delete_run(self, run_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # ---- ratings ----------------------------------------------------------------------------
    def add_rating(
        self,
        *,
        run_id: int,
        label: str,
        score: int,
        comment: str | None = None,
        rater: str | None = None,
        mode: str = "open",
        result_id: int | None = None,
    ) -> int:
        """Save one rating at once (there is no separate save step to forget)."""
        if not 1 <= int(score) <= 5:
            raise ValueError("a rating is a whole number from 1 to 5")
        with self.transaction() as conn:
            if result_id is None:
                row = conn.execute("SELECT id FROM results WHERE run_id = ? AND label = ?", (run_id, label)).fetchone()
                result_id = int(row[0]) if row else None
            cur = conn.execute(
                """INSERT INTO ratings (run_id, result_id, label, score, comment, rater, mode, created_at)
                   VALUES (?,?,?,?,?,?,?,?)""",
                (run_id, result_id, label, int(score), comment or None, rater or None, mode, now_iso()),
            )
            return int(cur.lastrowid)

    def ratings(self, run_id: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM ratings"
        args: tuple = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args = (run_id,)
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(sql + " ORDER BY id", args)]

    def latest_ratings(self, run_id: int) -> dict[str, dict[str, Any]]:
        """The newest rating per contestant label for one run (what the page shows as 'your rating')."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.ratings(run_id):
            out[r["label"]] = r
        return out
