"""Ratings and votes: what people said of outputs, each saved with a snapshot of its run and output.

The snapshot (ladder, prompt, category, settings, quant type) keeps a judgement meaningful after its run is
deleted or changed; readers fall back to the run for rows saved before snapshots existed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.storage.database import Database, RowMissing, new_id, now_iso, placeholders


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


class JudgementQueries(Database):
    """Save and find ratings (scores of one output) and votes (one output against another)."""

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
            return new_id(cur)

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
            return new_id(cur)

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
            return new_id(cur)

    @staticmethod
    def _judgement_where(alias: str, filters: JudgementFilters) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if filters.run_id is not None:
            where.append(f"{alias}.run_id = ?")
            args.append(filters.run_id)
        if filters.run_ids is not None:
            where.append(f"{alias}.run_id IN ({placeholders(filters.run_ids)})")
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
