"""Target machines: saved profiles of machines a model should run on (memory, GPU), by name."""

from __future__ import annotations

import json
from typing import Any

from workbench.storage.database import Database, now_iso


class TargetQueries(Database):
    """Save, list and delete target profiles."""

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
