"""The SQLite store of everything a user makes: runs, outputs, metrics, ratings, evals, divergence, fingerprints.

`Store` owns every connection and every SQL statement of the workbench: other modules call its named
methods, so the schema, its transactions and the StoreError handling live in one place
(tests/test_store_owns_sql.py keeps it so).

WAL mode and a generous busy timeout let several app tabs, CLI runs and workers' parents write at
once without "database is locked" reaching a user; every write is its own short transaction, so
a crash loses at most the write in flight. Other tools can read the file directly.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.core import paths
from workbench.storage import limits, migrations

BUSY_TIMEOUT_S = 30.0
# A prompt of a set run is finished when its newest run ended so: done, or with a contestant's error (which a
# retry would not change); a cancelled run, or one left "running" by a crash, is run again on resume.
SET_PROMPT_FINISHED = ("done", "partial", "failed")

RESULT_COLUMNS = (
    "label", "quant_type", "file", "size_bytes", "bits_per_weight", "is_reference", "text", "stop_reason",
    "error", "fallback", "load_s", "ttft_s", "prompt_tokens", "prefill_s", "prefill_tok_s", "completion_tokens",
    "decode_steps", "decode_s", "decode_tok_s", "peak_rss_bytes", "gpu_mem_bytes", "gpu_layers",
    "first_divergence_token", "cpu_contention", "disturbed", "display",
)


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _new_id(cur: sqlite3.Cursor) -> int:
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


@dataclass(frozen=True)
class JudgementFilters:
    """Which ratings or votes to read (None / empty: any); model and category match the snapshot, else the run."""

    run_id: int | None = None
    run_ids: Sequence[int] | None = None
    model: str | None = None
    category: str | None = None
    rater: str | None = None
    mode: str | None = None
    session: str | None = None


@dataclass
class ImportRun:
    """One run of an export ready to insert: its row and each owned table's rows, JSON columns as JSON text."""

    run: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class ImportBatch:
    """What an import adds: runs (each with its rows) and the set runs they belong to (`set_runs` rows, each with
    its id in the file, JSON columns as JSON text)."""

    runs: Sequence[ImportRun]
    set_runs: Sequence[dict[str, Any]] = ()


@dataclass
class Imported:
    """What an import added: id in the file → new id, of runs and of set runs; rows added per table a run owns."""

    run_ids: dict[int, int]
    set_run_ids: dict[int, int]
    rows: dict[str, int]


@dataclass
class DivergenceRow:
    """One contestant's divergence measurement as stored: headline columns come from `summary`."""

    label: str
    quant_type: str | None
    file: str | None
    is_reference: bool
    error: str | None
    summary: dict[str, Any]
    detail: dict[str, Any]


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
        limits.refuse_run_texts(prompt, system_prompt)  # what is stored must import back (issue 24)
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
            return _new_id(cur)

    def finish_run(self, run_id: int, status: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def add_result(self, run_id: int, position: int, result: dict[str, Any]) -> int:
        """Store one contestant's result (a ContestantResult.to_dict()); replaces one of the same label."""
        measurement = result.get("measurement")
        measurement = measurement if isinstance(measurement, dict) else {}
        decode = measurement.get("decode")
        decode = decode if isinstance(decode, dict) else {}
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
            return int(row[0]) if row else _new_id(cur)

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

    def list_runs(self, limit: int = 50, search: str | None = None, kind: str | None = None,
                  standalone: bool = False) -> list[dict[str, Any]]:
        """Recent runs, newest first, optionally filtered by text in the prompt or ladder name; `standalone` leaves
        out the prompts of set runs (so a set run does not push the Compare runs out of a short list)."""
        sql = "SELECT id, created_at, kind, status, ladder_name, prompt, reference_label FROM runs"
        where: list[str] = []
        args: list[str | int] = []
        if search:
            where.append("(prompt LIKE ? OR ladder_name LIKE ?)")
            args += [f"%{search}%", f"%{search}%"]
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if standalone:
            where.append("set_run_id IS NULL")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(sql, args)]

    def delete_run(self, run_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # ---- set runs (runs.set_runs) -------------------------------------------------------------
    def create_set_run(self, *, name: str, prompts: list[dict[str, Any]], labels: list[str],
                       reference_label: str | None, settings: dict[str, Any], ladder: dict[str, Any] | None = None,
                       noise_repeats: int = 0, workbench_version: str | None = None) -> int:
        """A new set run (status running) holding what was asked; its prompts run later, as child runs."""
        limits.refuse_set(prompts)  # what is stored must import back (issue 24)
        with self.transaction() as conn:
            cur = conn.execute(
                """INSERT INTO set_runs (created_at, name, status, ladder_name, ladder_json, prompts_json, labels_json,
                   reference_label, settings_json, noise_repeats, workbench_version)
                   VALUES (?,?,'running',?,?,?,?,?,?,?,?)""",
                (now_iso(), name, (ladder or {}).get("name"), json.dumps(ladder) if ladder else None,
                 json.dumps(prompts, ensure_ascii=False), json.dumps(labels), reference_label, json.dumps(settings),
                 int(noise_repeats), workbench_version),
            )
            return _new_id(cur)

    def set_set_run_status(self, set_run_id: int, status: str) -> None:
        """running, done, cancelled or failed."""
        with self.transaction() as conn:
            conn.execute("UPDATE set_runs SET status = ? WHERE id = ?", (status, set_run_id))

    def tag_set_run_child(self, run_id: int, set_run_id: int, set_index: int) -> None:
        """Make `run_id` the run of prompt `set_index` of the set run (called right after the run is created)."""
        with self.transaction() as conn:
            cur = conn.execute("UPDATE runs SET set_run_id = ?, set_index = ? WHERE id = ?",
                               (set_run_id, set_index, run_id))
            if cur.rowcount == 0:
                raise RowMissing(run_id)

    # A set run's children are the runs tagged with its id that came the way it came: made here (imported_from
    # NULL) for a local set run, in the same import (the same imported_from mark) for an imported one. So a
    # local set run never adopts runs imported from elsewhere (older exports kept another database's set run
    # id on their runs), and an imported set run shows exactly the runs imported with it.
    _CHILDREN = """runs.set_run_id = {set}.id AND runs.imported_from IS {set}.imported_from
                   AND runs.set_index IS NOT NULL"""

    def set_run_children(self, set_run_id: int) -> list[dict[str, Any]]:
        """The run of each prompt that has one, by index: {index, run_id, status, attempts}.

        A prompt stopped and run again has several runs; the newest is its run, `attempts` counts them all.
        A local set run's children are runs made here; an imported set run's, the runs imported with it.
        """
        with self._connect() as conn:
            rows = conn.execute(
                f"""SELECT runs.set_index, MAX(runs.id) AS run_id, COUNT(*) AS attempts FROM runs
                    JOIN set_runs s ON {self._CHILDREN.format(set="s")}
                    WHERE s.id = ? GROUP BY runs.set_index ORDER BY runs.set_index""", (set_run_id,)).fetchall()
            status = {int(r[0]): r[1] for r in conn.execute(
                f"SELECT id, status FROM runs WHERE id IN ({', '.join('?' * len(rows)) or 'NULL'})",
                [r["run_id"] for r in rows])}
        return [{"index": int(r["set_index"]), "run_id": int(r["run_id"]), "status": status.get(int(r["run_id"])),
                 "attempts": int(r["attempts"])} for r in rows]

    def set_runs_of(self, run_ids: Sequence[int] | None) -> tuple[list[dict[str, Any]], dict[int, int]]:
        """The set runs these runs (None: every run) are children of, as stored (JSON columns as text, id order),
        and run id → its set run's id for each of those runs (for an export: `history.export_data`)."""
        sql = f"SELECT runs.id, s.id FROM runs JOIN set_runs s ON {self._CHILDREN.format(set='s')}"
        args: list[int] = []
        if run_ids is not None:
            sql += f" WHERE runs.id IN ({', '.join('?' * len(run_ids)) or 'NULL'})"
            args = [int(r) for r in run_ids]
        with self._connect() as conn:
            owner = {int(run): int(set_id) for run, set_id in conn.execute(sql, args)}
            ids = sorted(set(owner.values()))
            rows = [dict(r) for r in conn.execute(
                f"SELECT * FROM set_runs WHERE id IN ({', '.join('?' * len(ids)) or 'NULL'}) ORDER BY id", ids)]
        return rows, owner

    def get_set_run(self, set_run_id: int) -> dict[str, Any] | None:
        """A set run with its JSON columns decoded (prompts, labels, settings, ladder) and `children`
        (`set_run_children`); None when there is no such set run."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM set_runs WHERE id = ?", (set_run_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        for key in ("prompts_json", "labels_json", "settings_json", "ladder_json"):
            raw = out.pop(key)
            out[key.removesuffix("_json")] = json.loads(raw) if raw else None
        out["children"] = self.set_run_children(set_run_id)
        return out

    def list_set_runs(self, limit: int = 50, finished_statuses: Sequence[str] = SET_PROMPT_FINISHED
                      ) -> list[dict[str, Any]]:
        """Set runs, newest first: id, created_at, name, status, ladder_name, reference_label, n_prompts and
        n_finished (prompts whose newest run has one of `finished_statuses`)."""
        marks = ", ".join("?" * len(finished_statuses)) or "NULL"
        sql = f"""SELECT s.id, s.created_at, s.name, s.status, s.ladder_name, s.reference_label,
                         json_array_length(s.prompts_json) AS n_prompts,
                         (SELECT COUNT(*) FROM runs r WHERE r.id IN (
                             SELECT MAX(runs.id) FROM runs WHERE {self._CHILDREN.format(set="s")}
                             GROUP BY runs.set_index) AND r.status IN ({marks})) AS n_finished
                  FROM set_runs s ORDER BY s.id DESC LIMIT ?"""
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(sql, [*finished_statuses, int(limit)])]

    # ---- reference repeats: the noise floor (runs.noise) ---------------------------------------
    def add_reference_repeat(self, run_id: int, repeat: int, *, label: str, perturbation: dict[str, Any],
                             text: str | None, completion_tokens: int | None, stop_reason: str | None,
                             error: str | None) -> None:
        """Store (or replace) repeat number `repeat` of the run's reference."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO reference_repeats (run_id, repeat, label, perturbation_json, text, completion_tokens,
                   stop_reason, error, created_at) VALUES (?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (run_id, repeat) DO UPDATE SET label = excluded.label,
                   perturbation_json = excluded.perturbation_json, text = excluded.text,
                   completion_tokens = excluded.completion_tokens, stop_reason = excluded.stop_reason,
                   error = excluded.error, created_at = excluded.created_at""",
                (run_id, int(repeat), label, json.dumps(perturbation), text, completion_tokens, stop_reason, error,
                 now_iso()))

    def reference_repeat_counts(self, run_ids: Sequence[int]) -> dict[int, int]:
        """How many repeat rows each run has (runs without any are left out): cheap, for cache keys."""
        with self._connect() as conn:
            rows = conn.execute(f"""SELECT run_id, COUNT(*) FROM reference_repeats
                                    WHERE run_id IN ({', '.join('?' * len(run_ids)) or 'NULL'}) GROUP BY run_id""",
                                [int(r) for r in run_ids])
            return {int(r[0]): int(r[1]) for r in rows}

    def reference_repeats(self, run_id: int) -> list[dict[str, Any]]:
        """The run's reference repeats in repeat order, `perturbation` decoded (rows of reference_repeats)."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM reference_repeats WHERE run_id = ? ORDER BY repeat", (run_id,))
            out = [dict(r) for r in rows]
        for row in out:
            raw = row.pop("perturbation_json")
            try:
                row["perturbation"] = json.loads(raw) if raw else None
            except ValueError:
                row["perturbation"] = None
        return out

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
            return _new_id(cur)

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

    # ---- ratings and votes with their snapshots (people.ratings) -----------------------------
    def _snapshot(self, conn: sqlite3.Connection, run_id: int,
                  labels: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The run and its results for `labels`, read inside the caller's transaction; RowMissing if absent."""
        run = conn.execute("SELECT id, ladder_name, prompt, category, settings_json FROM runs WHERE id = ?",
                           (run_id,)).fetchone()
        if run is None:
            raise RowMissing(run_id)
        results = {}
        for label in labels:
            row = conn.execute("SELECT id, label, quant_type FROM results WHERE run_id = ? AND label = ?",
                               (run_id, label)).fetchone()
            if row is None:
                raise RowMissing(run_id, label)
            results[label] = dict(row)
        return dict(run), results

    def add_rating_snapshot(self, *, run_id: int, label: str, score: int, comment: str | None, rater: str | None,
                            mode: str, session: str | None, display_letter: str | None) -> int:
        """Insert one rating with a snapshot of its run and output, in one transaction; returns its id."""
        with self.transaction() as conn:
            run, results = self._snapshot(conn, run_id, [label])
            res = results[label]
            cur = conn.execute(
                """INSERT INTO ratings (run_id, result_id, label, score, comment, rater, mode, created_at, session,
                   display_letter, quant_type, ladder_name, prompt, category, settings_json)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (run_id, res["id"], label, score, comment, rater, mode, now_iso(), session, display_letter,
                 res["quant_type"], run["ladder_name"], run["prompt"], run["category"], run["settings_json"]),
            )
            return _new_id(cur)

    def add_vote(self, *, run_id: int, label_a: str, label_b: str, winner: str, rater: str | None,
                 session: str | None, mode: str, comment: str | None) -> int:
        """Insert one pairwise vote with a snapshot of its run and outputs, in one transaction; returns its id."""
        with self.transaction() as conn:
            run, results = self._snapshot(conn, run_id, [label_a, label_b])
            cur = conn.execute(
                """INSERT INTO votes (run_id, label_a, label_b, quant_type_a, quant_type_b, winner, rater, session,
                   mode, comment, ladder_name, prompt, category, settings_json, created_at)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (run_id, label_a, label_b, results[label_a]["quant_type"], results[label_b]["quant_type"], winner,
                 rater, session, mode, comment, run["ladder_name"], run["prompt"], run["category"],
                 run["settings_json"], now_iso()),
            )
            return _new_id(cur)

    @staticmethod
    def _judgement_where(alias: str, filters: JudgementFilters) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if filters.run_id is not None:
            where.append(f"{alias}.run_id = ?")
            args.append(filters.run_id)
        if filters.run_ids is not None:
            where.append(f"{alias}.run_id IN ({', '.join('?' * len(filters.run_ids)) or 'NULL'})")
            args += list(filters.run_ids)
        if filters.model:
            where.append(f"COALESCE({alias}.ladder_name, runs.ladder_name) = ?")
            args.append(filters.model)
        if filters.category:
            where.append(f"COALESCE({alias}.category, runs.category) = ?")
            args.append(filters.category)
        for column in ("rater", "mode", "session"):
            if getattr(filters, column):
                where.append(f"{alias}.{column} = ?")
                args.append(getattr(filters, column))
        return (" WHERE " + " AND ".join(where)) if where else "", args

    def find_ratings(self, filters: JudgementFilters) -> list[dict[str, Any]]:
        """Ratings, oldest first; snapshot columns fall back to the run for rows saved without one."""
        where, args = self._judgement_where("r", filters)
        sql = f"""SELECT r.id, r.run_id, r.result_id, r.label, r.score, r.comment, r.rater, r.session, r.mode,
                         r.display_letter, r.created_at,
                         COALESCE(r.quant_type, res.quant_type) AS quant_type,
                         COALESCE(r.ladder_name, runs.ladder_name) AS ladder_name,
                         COALESCE(r.prompt, runs.prompt) AS prompt,
                         COALESCE(r.category, runs.category) AS category,
                         COALESCE(r.settings_json, runs.settings_json) AS settings_json,
                         runs.imported_from, runs.machine_json AS run_machine_json
                  FROM ratings r JOIN runs ON runs.id = r.run_id
                  LEFT JOIN results res ON res.run_id = r.run_id AND res.label = r.label
                  {where} ORDER BY r.id"""
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(sql, args)]

    def find_votes(self, filters: JudgementFilters) -> list[dict[str, Any]]:
        """Pairwise votes, oldest first, filtered like `find_ratings`."""
        where, args = self._judgement_where("v", filters)
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(
                f"""SELECT v.*, runs.imported_from, runs.machine_json AS run_machine_json
                    FROM votes v JOIN runs ON runs.id = v.run_id{where} ORDER BY v.id""", args)]

    # ---- history: search, export, import (people.history) ------------------------------------
    def search_runs(self, *, text: str | None, model: str | None, since: str | None, until: str | None,
                    until_inclusive: bool, kind: str | None, limit: int) -> list[dict[str, Any]]:
        """Runs, newest first, by prompt text, ladder name (substrings), ISO time bounds and kind, with row counts."""
        where, args = [], []
        if text:
            where.append("(runs.prompt LIKE ? OR runs.system_prompt LIKE ?)")
            args += [f"%{text}%"] * 2
        if model:
            where.append("runs.ladder_name LIKE ?")
            args.append(f"%{model}%")
        if since:
            where.append("runs.created_at >= ?")
            args.append(since)
        if until:
            where.append("runs.created_at <= ?" if until_inclusive else "runs.created_at < ?")
            args.append(until)
        if kind:
            where.append("runs.kind = ?")
            args.append(kind)
        sql = f"""SELECT runs.id, runs.created_at, runs.kind, runs.status, runs.ladder_name, runs.prompt, runs.category,
                         runs.reference_label,
                         (SELECT COUNT(*) FROM results WHERE results.run_id = runs.id) AS n_results,
                         (SELECT COUNT(*) FROM ratings WHERE ratings.run_id = runs.id) AS n_ratings,
                         (SELECT COUNT(*) FROM votes WHERE votes.run_id = runs.id) AS n_votes
                  FROM runs {"WHERE " + " AND ".join(where) if where else ""}
                  ORDER BY runs.id DESC LIMIT ?"""
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(sql, [*args, int(limit)])]

    @staticmethod
    def _run_tables(conn: sqlite3.Connection, first: Sequence[str]) -> list[str]:
        found = []
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            if name != "runs" and not name.startswith(("_", "sqlite_")) and \
                    any(r[1] == "run_id" for r in conn.execute(f'PRAGMA table_info("{name}")')):
                found.append(name)
        return [t for t in first if t in found] + [t for t in found if t not in first]

    def run_tables(self, first: Sequence[str] = ()) -> list[str]:
        """Every table holding rows of a run (a `run_id` column): `first` in its order, then any other by name."""
        with self._connect() as conn:
            return self._run_tables(conn, first)

    def table_info(self, tables: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
        """PRAGMA table_info rows (cid, name, type, notnull, default, pk) of each table."""
        with self._connect() as conn:
            return {t: [tuple(r) for r in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}

    def table_rows(self, table: str, run_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Every row of `runs` or of a table a run owns (all runs, or the chosen ones), in id order."""
        col = "id" if table == "runs" else "run_id"
        sql = f'SELECT * FROM "{table}"'
        args: list[Any] = []
        if run_ids is not None:
            sql += f" WHERE {col} IN ({', '.join('?' * len(run_ids)) or 'NULL'})"
            args = [int(r) for r in run_ids]
        with self._connect() as conn:
            if table != "runs" and table not in self._run_tables(conn, ()):
                raise ValueError(f"{table!r} is not a table of runs")
            order = "id" if any(r[1] == "id" for r in conn.execute(f'PRAGMA table_info("{table}")')) else col
            return [dict(r) for r in conn.execute(sql + f" ORDER BY {order}", args)]

    def import_runs(self, prepare: Callable[[dict[str, list[tuple[Any, ...]]]], Sequence[ImportRun] | ImportBatch],
                    first: Sequence[str], stamp: str) -> Imported:
        """Add runs (and the set runs they belong to) from an export in one transaction (all or nothing), each
        marked `imported_from` = `stamp`.

        `prepare` gets the PRAGMA table_info rows of runs, set_runs and every table a run owns (`first` first),
        read inside the transaction, and returns the rows to add (it refuses bad input by raising). Ids are new;
        rows keep pointing at their run, ratings at their output, runs at their set run (a run naming a set run
        the import does not carry is no set run's child here: that id was another database's). Columns this
        database lacks are skipped.
        """
        with self.transaction() as conn:
            owned = self._run_tables(conn, first)
            info = {t: [tuple(r) for r in conn.execute(f'PRAGMA table_info("{t}")')]
                    for t in ("runs", "set_runs", *owned)}
            columns = {t: [r[1] for r in rows if r[1] != "id"] for t, rows in info.items()}
            prepared = prepare(info)
            batch = prepared if isinstance(prepared, ImportBatch) else ImportBatch(prepared)
            counts = {t: 0 for t in owned}
            mapping: dict[int, int] = {}
            set_mapping: dict[int, int] = {}

            def insert(table: str, row: dict[str, Any], **override: Any) -> int:
                flat = {**row, **override}
                cols = [c for c in columns[table] if c in flat]
                cur = conn.execute(f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})',
                                   [flat[c] for c in cols])
                return _new_id(cur)

            for set_row in batch.set_runs:
                set_mapping[int(set_row["id"])] = insert("set_runs", set_row, imported_from=stamp)
            for run in batch.runs:
                tag = run.run.get("set_run_id")
                new_run = insert("runs", run.run, imported_from=stamp,
                                 set_run_id=None if tag is None else set_mapping.get(int(tag)))
                mapping[int(run.run["id"])] = new_run
                result_ids: dict[int, int] = {}
                for table in owned:
                    for row in run.rows.get(table) or []:
                        if table == "results":
                            result_ids[int(row["id"])] = insert(table, row, run_id=new_run)
                        elif table == "ratings":
                            old_result = row.get("result_id")
                            insert(table, row, run_id=new_run,
                                   result_id=None if old_result is None else result_ids.get(old_result))
                        else:
                            insert(table, row, run_id=new_run)
                        counts[table] += 1
        return Imported(mapping, set_mapping, counts)

    # ---- divergence (quality.divergence) -----------------------------------------------------
    def replace_divergence(self, run_id: int, source: str, reference_label: str, meta: dict[str, Any],
                           created_at: str, rows: Sequence[DivergenceRow]) -> None:
        """Replace the run's stored measurement of this source with `rows` (one transaction)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM divergence WHERE run_id = ? AND source = ?", (run_id, source))
            for r in rows:
                s = r.summary
                conn.execute(
                    """INSERT INTO divergence (run_id, source, label, quant_type, file, is_reference, reference_label,
                       n_tokens, mean_kld, median_kld, p99_kld, max_kld, top1_agreement, ppl, error, summary_json,
                       tokens_json, meta_json, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                    (run_id, source, r.label, r.quant_type, r.file, int(r.is_reference), reference_label,
                     s.get("n_tokens"), s.get("mean_kld"), s.get("median_kld"), s.get("p99_kld"), s.get("max_kld"),
                     s.get("top1_agreement"), s.get("ppl"), r.error, json.dumps(s),
                     json.dumps(r.detail, ensure_ascii=False), json.dumps(meta), created_at),
                )

    def divergence_rows(self, run_id: int, source: str) -> list[dict[str, Any]]:
        """The stored divergence rows of a run and source, in the order they were saved."""
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(
                "SELECT * FROM divergence WHERE run_id = ? AND source = ? ORDER BY id", (run_id, source))]

    def text_divergence_runs(self, limit: int) -> list[dict[str, Any]]:
        """Reference-text measurement runs, newest first: id, created_at, ladder_name, status."""
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(
                "SELECT id, created_at, ladder_name, status FROM runs WHERE kind = 'diverge-text' "
                "ORDER BY id DESC LIMIT ?", (limit,))]

    def runs_with_divergence(self, run_ids: Sequence[int], source: str = "output") -> set[int]:
        """Which of these runs have a stored divergence measurement of `source`."""
        if not run_ids:
            return set()
        with self._connect() as conn:
            marks = ",".join("?" * len(run_ids))
            rows = conn.execute(f"SELECT DISTINCT run_id FROM divergence WHERE source = ? AND run_id IN ({marks})",
                                [source, *run_ids]).fetchall()
        return {int(r[0]) for r in rows}

    # ---- evals (quality.evals) ---------------------------------------------------------------
    def add_eval_run(self, run_id: int, *, pack_name: str, pack_source: str | None, categories: list[str] | None,
                     case_limit: int | None, contestants: list[dict[str, Any]], cases: list[dict[str, Any]]) -> None:
        """Record the pack as it was run (its cases and contestants) for an eval run."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO eval_runs (run_id, pack_name, pack_source, categories_json, case_limit, labels_json,
                   cases_json) VALUES (?,?,?,?,?,?,?)""",
                (run_id, pack_name, pack_source, json.dumps(categories), case_limit, json.dumps(contestants),
                 json.dumps(cases, ensure_ascii=False)),
            )

    def save_eval_result(self, run_id: int, outcome: dict[str, Any]) -> None:
        """Store one case's outcome on one contestant (a CaseOutcome as a dict); replaces an earlier one."""
        o = outcome
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO eval_results (run_id, case_id, category, label, quant_type, passed, detail, output,
                   error, stop_reason, completion_tokens, decode_tok_s, total_s, created_at)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (run_id, case_id, label) DO UPDATE SET passed=excluded.passed, detail=excluded.detail,
                   output=excluded.output, error=excluded.error, stop_reason=excluded.stop_reason,
                   completion_tokens=excluded.completion_tokens, decode_tok_s=excluded.decode_tok_s,
                   total_s=excluded.total_s""",
                (run_id, o["case_id"], o["category"], o["label"], o["quant_type"], int(o["passed"]), o["detail"],
                 o["output"], o["error"], o["stop_reason"], o["completion_tokens"], o["decode_tok_s"], o["total_s"],
                 now_iso()),
            )

    def eval_rows(self, run_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """An eval run's head (eval_runs joined with its run) and its results in saved order; None if not an eval."""
        with self._connect() as conn:
            head = conn.execute(
                """SELECT e.*, r.created_at, r.status, r.settings_json, r.reference_label FROM eval_runs e
                   JOIN runs r ON r.id = e.run_id WHERE e.run_id = ?""", (run_id,)).fetchone()
            if head is None:
                return None
            rows = conn.execute("SELECT * FROM eval_results WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        return dict(head), [dict(r) for r in rows]

    def list_eval_runs(self, limit: int) -> list[dict[str, Any]]:
        """Eval runs, newest first: run_id, created_at, status, ladder_name, pack_name, labels_json, cases_json."""
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(
                """SELECT e.run_id, r.created_at, r.status, r.ladder_name, e.pack_name, e.labels_json, e.cases_json
                   FROM eval_runs e JOIN runs r ON r.id = e.run_id ORDER BY e.run_id DESC LIMIT ?""", (limit,))]

    # ---- evidence for a recommendation (decide.evidence) ------------------------------------------
    def ladder_divergence(self, ladder_name: str, limit: int = 200) -> list[dict[str, Any]]:
        """Divergence rows of the ladder's newest measurement runs, newest run first, with the run's kind, time and
        provenance (imported_from: NULL when measured here; run_machine_json). The newest `limit` runs made here and,
        apart, the newest `limit` imported: an import never pushes this machine's measurements out of the window."""
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(
                """SELECT d.run_id, d.source, d.label, d.quant_type, d.is_reference, d.reference_label, d.n_tokens,
                          d.mean_kld, d.top1_agreement, d.ppl, d.error, runs.kind, runs.created_at,
                          runs.imported_from, runs.machine_json AS run_machine_json
                   FROM divergence d JOIN runs ON runs.id = d.run_id
                   WHERE d.run_id IN (SELECT id FROM runs WHERE ladder_name = ? AND kind IN ('diverge', 'diverge-text')
                                      AND imported_from IS NULL ORDER BY id DESC LIMIT ?)
                      OR d.run_id IN (SELECT id FROM runs WHERE ladder_name = ? AND kind IN ('diverge', 'diverge-text')
                                      AND imported_from IS NOT NULL ORDER BY id DESC LIMIT ?)
                   ORDER BY d.run_id DESC, d.id""", (ladder_name, limit) * 2)]

    def ladder_eval_results(self, ladder_name: str, limit: int = 50) -> list[dict[str, Any]]:
        """Per-case eval outcomes of the ladder's newest eval runs (newest run first): run, pack, label, passed, and
        the run's provenance (imported_from: NULL when measured here; run_machine_json), the newest `limit` of each
        kind apart as `ladder_divergence` takes them."""
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(
                """SELECT e.run_id, er.pack_name, e.label, e.quant_type, e.passed, e.error, runs.created_at,
                          runs.reference_label, runs.imported_from, runs.machine_json AS run_machine_json
                   FROM eval_results e JOIN eval_runs er ON er.run_id = e.run_id JOIN runs ON runs.id = e.run_id
                   WHERE e.run_id IN (SELECT id FROM runs WHERE kind = 'eval' AND ladder_name = ?
                                      AND imported_from IS NULL ORDER BY id DESC LIMIT ?)
                      OR e.run_id IN (SELECT id FROM runs WHERE kind = 'eval' AND ladder_name = ?
                                      AND imported_from IS NOT NULL ORDER BY id DESC LIMIT ?)
                   ORDER BY e.run_id DESC, e.id""", (ladder_name, limit) * 2)]

    def ladder_results(self, ladder_name: str, limit: int = 500) -> list[dict[str, Any]]:
        """Results of the ladder's newest comparisons made on this machine (imported runs measured elsewhere), newest
        first: label, quant type, file, decode speed, whether it was disturbed, memory, GPU layers, metrics."""
        with self._connect() as conn:
            rows = conn.execute(
                """SELECT res.run_id, res.label, res.quant_type, res.file, res.is_reference, res.error,
                          res.decode_tok_s, res.completion_tokens, res.disturbed, res.peak_rss_bytes,
                          res.gpu_mem_bytes, res.gpu_layers, res.metrics_json, runs.created_at
                   FROM results res JOIN runs ON runs.id = res.run_id
                   WHERE res.run_id IN (SELECT id FROM runs WHERE kind = 'compare' AND ladder_name = ?
                                        AND imported_from IS NULL ORDER BY id DESC LIMIT ?)
                   ORDER BY res.run_id DESC, res.position""", (ladder_name, limit)).fetchall()
        out = []
        for row in rows:
            r = dict(row)
            try:
                metrics = json.loads(r.pop("metrics_json") or "{}")
            except json.JSONDecodeError:
                metrics = {}
            r["metrics"] = metrics if isinstance(metrics, dict) else {}
            out.append(r)
        return out

    # ---- fingerprint history (runs.fingerprint) ----------------------------------------------
    def add_fingerprint(self, key: str, report: dict[str, Any]) -> None:
        """Append one fingerprint report to the history of the endpoint `key` names."""
        with self.transaction() as conn:
            migrations.insert_fingerprint(conn, key, report)

    def fingerprint_history(self, key: str) -> list[dict[str, Any]]:
        """The endpoint's fingerprint reports, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT report_json FROM fingerprints WHERE endpoint_key = ? ORDER BY id",
                                (key,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # ---- target machines (decide.targets) -----------------------------------------------------
    def save_target_profile(self, name: str, data: dict[str, Any]) -> None:
        """Save a target profile under `name` (replacing one of the same name, keeping its created_at)."""
        now = now_iso()
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO target_profiles (name, profile_json, created_at, updated_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET profile_json = excluded.profile_json,
                   updated_at = excluded.updated_at""",
                (name, json.dumps(data, ensure_ascii=False), now, now))

    def target_profiles(self) -> list[dict[str, Any]]:
        """Saved target profiles by name: {name, data (the decoded JSON; {} when unreadable), created_at, updated_at}."""
        with self._connect() as conn:
            rows = [dict(r) for r in conn.execute("SELECT * FROM target_profiles ORDER BY name")]
        out = []
        for r in rows:
            try:
                data = json.loads(r["profile_json"])
            except ValueError:
                data = {}
            out.append({"name": r["name"], "data": data if isinstance(data, dict) else {},
                        "created_at": r["created_at"], "updated_at": r["updated_at"]})
        return out

    def delete_target_profile(self, name: str) -> bool:
        """Delete the saved profile `name`; False when there was none."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM target_profiles WHERE name = ?", (name,)).rowcount > 0

    def decode_samples(self, limit: int = 500) -> list[dict[str, Any]]:
        """The newest local, undisturbed, error-free CPU decode measurements of comparison runs (a set run's prompts
        are comparison runs too), for speed calibration, newest first:
        result columns file, label, quant_type, decode_tok_s, decode_steps, prompt_tokens, completion_tokens,
        gpu_layers, metrics (decoded), and the run's id, kind and settings (decoded)."""
        with self._connect() as conn:
            rows = [dict(r) for r in conn.execute(
                """SELECT res.file, res.label, res.quant_type, res.decode_tok_s, res.decode_steps, res.prompt_tokens,
                          res.completion_tokens, res.gpu_layers, res.metrics_json, runs.id AS run_id, runs.kind,
                          runs.settings_json
                   FROM results res JOIN runs ON runs.id = res.run_id
                   WHERE runs.kind = 'compare' AND runs.imported_from IS NULL AND res.error IS NULL AND res.disturbed = 0
                     AND res.decode_tok_s > 0 AND res.file IS NOT NULL AND COALESCE(res.gpu_layers, 0) = 0
                   ORDER BY res.id DESC LIMIT ?""", (int(limit),))]
        for r in rows:
            for key in ("metrics_json", "settings_json"):
                try:
                    value = json.loads(r.pop(key) or "{}")
                except ValueError:
                    value = {}
                r[key.removesuffix("_json")] = value if isinstance(value, dict) else {}
        return rows
