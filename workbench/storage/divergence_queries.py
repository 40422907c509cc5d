"""Divergence: how far each contestant's token probabilities drift from the reference's, as measured and stored."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.storage.database import Database


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


class DivergenceQueries(Database):
    """Replace and read a run's divergence measurements."""

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
