"""Evals: a pack of checkable cases run on every contestant, with each case's pass or fail."""

from __future__ import annotations

import json
from typing import Any

from workbench.storage.database import Database, now_iso


class EvalQueries(Database):
    """Record an eval run's pack and its outcomes; read them back."""

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
