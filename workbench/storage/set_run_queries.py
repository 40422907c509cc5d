"""Set runs: one prompt set put to the same contestants, each prompt a child run of the set run.

Which runs are a set run's children (made here for a local set run, imported with it for an imported one) is
decided once, in `_CHILDREN`, for every query that needs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from workbench.storage import limits
from workbench.storage.database import Database, RowMissing, new_id, now_iso, placeholders, where_ids
from workbench.storage.rows import SetRunChild, SetRunSummary, StoredSetRun

# A prompt of a set run is finished when its newest run ended so: done, or with a contestant's error (which a
# retry would not change); a cancelled run, or one left "running" by a crash, is run again on resume.
SET_PROMPT_FINISHED = ("done", "partial", "failed")


class SetRunQueries(Database):
    """Create set runs, tag their children, read their progress."""

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
            return new_id(cur)

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

    def set_run_children(self, set_run_id: int) -> list[SetRunChild]:
        """The run of each prompt that has one, by index: its index, run id, status and attempts.

        A prompt stopped and run again has several runs; the newest is its run, `attempts` counts them all.
        A local set run's children are runs made here; an imported set run's, the runs imported with it.
        """
        with self._connect() as conn:
            rows = conn.execute(
                f"""SELECT runs.set_index, MAX(runs.id) AS run_id, COUNT(*) AS attempts FROM runs
                    JOIN set_runs s ON {self._CHILDREN.format(set="s")}
                    WHERE s.id = ? GROUP BY runs.set_index ORDER BY runs.set_index""", (set_run_id,)).fetchall()
            status = {int(r[0]): r[1] for r in conn.execute(
                f"SELECT id, status FROM runs WHERE id IN ({placeholders(rows)})",
                [r["run_id"] for r in rows])}
        return [SetRunChild(int(r["set_index"]), int(r["run_id"]), status.get(int(r["run_id"])), int(r["attempts"]))
                for r in rows]

    def set_runs_of(self, run_ids: Sequence[int] | None) -> tuple[list[dict[str, Any]], dict[int, int]]:
        """The set runs these runs (None: every run) are children of, as stored (JSON columns as text, id order),
        and run id → its set run's id for each of those runs (for an export: `history.export_data`)."""
        where, args = where_ids("runs.id", run_ids)
        sql = f"SELECT runs.id, s.id FROM runs JOIN set_runs s ON {self._CHILDREN.format(set='s')}{where}"
        with self._connect() as conn:
            owner = {int(run): int(set_id) for run, set_id in conn.execute(sql, args)}
            ids = sorted(set(owner.values()))
            rows = [dict(r) for r in conn.execute(
                f"SELECT * FROM set_runs WHERE id IN ({placeholders(ids)}) ORDER BY id", ids)]
        return rows, owner

    def get_set_run(self, set_run_id: int) -> StoredSetRun | None:
        """A set run with its JSON columns decoded (prompts, labels, settings, ladder) and its `children`
        (`set_run_children`), checked once; None when there is no such set run."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM set_runs WHERE id = ?", (set_run_id,)).fetchone()
        if row is None:
            return None
        return StoredSetRun.from_row(dict(row), self.set_run_children(set_run_id))

    def list_set_runs(self, limit: int = 50, finished_statuses: Sequence[str] = SET_PROMPT_FINISHED
                      ) -> list[SetRunSummary]:
        """Set runs, newest first, with n_prompts and n_finished (prompts whose newest run has one of
        `finished_statuses`)."""
        marks = ", ".join("?" * len(finished_statuses)) or "NULL"
        sql = f"""SELECT s.id, s.created_at, s.name, s.status, s.ladder_name, s.reference_label,
                         json_array_length(s.prompts_json) AS n_prompts,
                         (SELECT COUNT(*) FROM runs r WHERE r.id IN (
                             SELECT MAX(runs.id) FROM runs WHERE {self._CHILDREN.format(set="s")}
                             GROUP BY runs.set_index) AND r.status IN ({marks})) AS n_finished
                  FROM set_runs s ORDER BY s.id DESC LIMIT ?"""
        with self._connect() as conn:
            return [SetRunSummary.from_row(dict(r)) for r in conn.execute(sql, [*finished_statuses, int(limit)])]
