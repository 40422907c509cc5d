"""Evidence across runs: a ladder's stored measurements gathered for a recommendation and for speed calibration.

Each reader reaches over many runs at once and says where each figure came from (made here or imported), so
the recommendation can weigh measured-here figures apart from others.
"""

from __future__ import annotations

import json
from typing import Any

from workbench.storage.database import Database


class EvidenceQueries(Database):
    """Read a ladder's divergence, eval outcomes, results and decode samples across runs."""

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
