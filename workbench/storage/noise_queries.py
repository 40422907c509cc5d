"""Reference repeats: the reference run again with small changes, the noise floor a difference is judged against."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from workbench.storage.database import Database, now_iso, placeholders


class NoiseQueries(Database):
    """Store and read the repeats of a run's reference."""

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
                                    WHERE run_id IN ({placeholders(run_ids)}) GROUP BY run_id""",
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
