"""The database core: one SQLite file, its connections, its write transactions and what their failures mean.

Kept apart from what is asked of the database (the query modules beside it, composed into `store.Store`), as
datasette's `Database` keeps the connection apart from the queries: opening a file read-only when it cannot be
written, retrying a locked write, and turning a full disk or a read-only file into one StoreError that says how to
recover are each written once here, whatever the query.

WAL mode and a generous busy timeout let several app tabs, CLI runs and workers' parents write at
once without "database is locked" reaching a user; every write is its own short transaction, so
a crash loses at most the write in flight. Other tools can read the file directly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence, Sized
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from workbench.core import paths
from workbench.storage import migrations

BUSY_TIMEOUT_S = 30.0


def now_iso() -> str:
    """The time rows are stamped with: UTC, ISO 8601, milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def placeholders(values: Sized) -> str:
    """The `?, ?, ?` of an `IN (...)` clause for these values; `NULL` for none, so `IN (NULL)` matches nothing
    instead of being a syntax error."""
    return ", ".join("?" * len(values)) or "NULL"


def where_ids(column: str, ids: Sequence[int] | None) -> tuple[str, list[int]]:
    """` WHERE column IN (...)` and its arguments for the chosen ids (as whole numbers), or no clause for None
    (every row): how an export or a listing narrows to the runs a person picked."""
    if ids is None:
        return "", []
    return f" WHERE {column} IN ({placeholders(ids)})", [int(i) for i in ids]


def new_id(cur: sqlite3.Cursor) -> int:
    """The id of the row a plain INSERT just made (sqlite3 sets lastrowid after every successful INSERT)."""
    if cur.lastrowid is None:
        raise sqlite3.DatabaseError("the INSERT reported no row id")
    return cur.lastrowid


class StoreError(RuntimeError):
    """The database cannot be used as asked: the message says what is wrong and how to recover."""


class RowMissing(LookupError):
    """A write named a run (or an output of a run, `label`) that is not in the database."""

    def __init__(self, run_id: int, label: str | None = None) -> None:
        super().__init__(f"run {run_id}" if label is None else f"run {run_id}, output {label!r}")
        self.run_id = run_id
        self.label = label


def _is_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


def _is_read_only(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.Error) and ("readonly" in text or "read-only" in text or "unable to open" in text)


class Database:
    """A handle on one database file: the core every query module builds on. Opens a short-lived connection per
    operation (thread-safe).

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
