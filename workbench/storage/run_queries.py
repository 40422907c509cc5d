"""Runs and their results: one prompt put to every contestant, and each contestant's output and figures.

The run record every kind of job makes (compare, divergence, eval, a set run's prompt) and the results it holds;
the other query modules read these tables too, but writing a run and its outputs happens here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.storage import limits
from workbench.storage.database import BUSY_TIMEOUT_S, Database, new_id, now_iso
from workbench.storage.rows import RunSummary, StoredRun, float_or_none

RESULT_COLUMNS = (
    "label", "quant_type", "file", "size_bytes", "bits_per_weight", "is_reference", "text", "stop_reason",
    "error", "fallback", "load_s", "ttft_s", "prompt_tokens", "prefill_s", "prefill_tok_s", "completion_tokens",
    "decode_steps", "decode_s", "decode_tok_s", "peak_rss_bytes", "gpu_mem_bytes", "gpu_layers",
    "first_divergence_token", "cpu_contention", "disturbed", "display",
)


class RunQueries(Database):
    """Create, finish, read, list and delete runs; add a contestant's result."""

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
            return new_id(cur)

    def finish_run(self, run_id: int, status: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def add_result(self, run_id: int, position: int, result: dict[str, Any]) -> int:
        """Store one contestant's result (a ContestantResult.to_dict()); replaces one of the same label."""
        measurement = result.get("measurement")
        measurement = measurement if isinstance(measurement, dict) else {}
        decode = measurement.get("decode")
        decode = decode if isinstance(decode, dict) else {}
        derived = {"cpu_contention": float_or_none(decode.get("contention")),
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
            return int(row[0]) if row else new_id(cur)

    def get_run(self, run_id: int) -> StoredRun | None:
        """A run with its settings, ladder and results (each with its full metrics), checked once; or None."""
        with self._connect() as conn:
            run = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if run is None:
                return None
            results = conn.execute("SELECT * FROM results WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
        return StoredRun.from_row(dict(run), [dict(r) for r in results])

    def list_runs(self, limit: int = 50, search: str | None = None, kind: str | None = None,
                  standalone: bool = False) -> list[RunSummary]:
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
            return [RunSummary.from_row(dict(r)) for r in conn.execute(sql, args)]

    def delete_run(self, run_id: int) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))


# ---- another checkout's database, read as it is --------------------------------------------------
# benchmarks/sessions.py reads the database of an app it started (possibly an older checkout, still running):
# opened read-only and never migrated, so measuring it changes nothing; SELECT * because an older database may
# lack newer columns.
def _peek(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    conn.row_factory = sqlite3.Row
    return conn


def peek_runs(db: Path, run_ids: Sequence[int]) -> dict[int, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Run id → (its runs row, its results rows in position order) for the runs of `db` that exist."""
    out = {}
    conn = _peek(db)
    try:
        for rid in run_ids:
            run = conn.execute("SELECT * FROM runs WHERE id = ?", (rid,)).fetchone()
            if run is not None:
                rows = conn.execute("SELECT * FROM results WHERE run_id = ? ORDER BY position", (rid,)).fetchall()
                out[int(rid)] = (dict(run), [dict(r) for r in rows])
    finally:
        conn.close()
    return out
