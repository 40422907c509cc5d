"""Fingerprints: what an endpoint's outputs looked like each time it was checked, so a silent model swap shows."""

from __future__ import annotations

import json
from typing import Any

from workbench.storage import migrations
from workbench.storage.database import Database


class FingerprintQueries(Database):
    """Append and read an endpoint's fingerprint reports."""

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
