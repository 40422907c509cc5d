"""History: finding past runs, and moving them between databases (export every row, import them back).

Export and import work on raw table rows (every column, JSON as text) so a round trip is lossless, including
columns this version does not know; `import_runs` does the whole import in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.storage.database import Database, new_id, where_ids
from workbench.storage.rows import FoundRun


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


class HistoryQueries(Database):
    """Search runs; list, describe and read the tables a run owns; import runs in one go."""

    def search_runs(self, *, text: str | None, model: str | None, since: str | None, until: str | None,
                    until_inclusive: bool, kind: str | None, limit: int) -> list[FoundRun]:
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
            return [FoundRun.from_row(dict(r)) for r in conn.execute(sql, [*args, int(limit)])]

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
        where, args = where_ids(col, run_ids)
        sql = f'SELECT * FROM "{table}"{where}'
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
                return new_id(cur)

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
