"""Provider watch: the endpoints a user watches and the history of their checks (workbench.watch decides the rest)."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from workbench.storage.database import Database, now_iso, placeholders
from workbench.storage.watch_rows import ProviderCheck, WatchedProvider

# what a caller may set on a provider (id and created_at are the store's)
PROVIDER_FIELDS = ("name", "base_url", "model", "api", "key_env", "extra_body", "ladder", "probe",
                   "fingerprint_prompts", "max_tokens", "timeout_s", "every_s", "webhook_env")
_CHECK_COLUMNS = tuple(f.name for f in fields(ProviderCheck) if f.name not in ("id", "fingerprint", "probe", "run_ids"))


def _provider_columns(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in PROVIDER_FIELDS:
            raise ValueError(f"a watched provider has no field {key!r}")
        if key == "extra_body":
            out["extra_body_json"] = json.dumps(value or {}, ensure_ascii=False)
        elif key == "probe":
            out["probe_json"] = json.dumps(value.to_dict() if hasattr(value, "to_dict") else dict(value or {}))
        else:
            out[key] = value
    return out


class WatchQueries(Database):
    """Add, change, list and remove watched providers; append and read their checks."""

    def add_watched_provider(self, **values: Any) -> int:
        """Store a new watched provider (fields: PROVIDER_FIELDS); returns its id. Names are unique."""
        cols = _provider_columns(values)
        cols["created_at"] = now_iso()
        with self.transaction() as conn:
            cur = conn.execute(f"INSERT INTO watched_providers ({', '.join(cols)}) VALUES ({placeholders(cols)})",
                               tuple(cols.values()))
            return int(cur.lastrowid or 0)

    def update_watched_provider(self, provider_id: int, **values: Any) -> None:
        """Change the given fields of a watched provider; LookupError when there is none."""
        cols = _provider_columns(values)
        if not cols:
            return
        with self.transaction() as conn:
            cur = conn.execute(f"UPDATE watched_providers SET {', '.join(f'{k} = ?' for k in cols)} WHERE id = ?",
                               (*cols.values(), provider_id))
            if cur.rowcount == 0:
                raise LookupError(f"no watched provider #{provider_id}")

    def delete_watched_provider(self, provider_id: int) -> bool:
        """Remove a provider and its checks; False when there was none."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM provider_checks WHERE provider_id = ?", (provider_id,))
            return conn.execute("DELETE FROM watched_providers WHERE id = ?", (provider_id,)).rowcount > 0

    def watched_providers(self) -> list[WatchedProvider]:
        """Every watched provider, by name."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM watched_providers ORDER BY name COLLATE NOCASE, id").fetchall()
        return [WatchedProvider.from_row(dict(r)) for r in rows]

    def watched_provider(self, provider_id: int) -> WatchedProvider | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM watched_providers WHERE id = ?", (provider_id,)).fetchone()
        return None if row is None else WatchedProvider.from_row(dict(row))

    def watched_provider_named(self, name: str) -> WatchedProvider | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM watched_providers WHERE name = ?", (name,)).fetchone()
        return None if row is None else WatchedProvider.from_row(dict(row))

    def add_provider_check(self, check: ProviderCheck) -> int:
        """Append one check (its `id` is ignored); returns the stored id."""
        cols = {k: getattr(check, k) for k in _CHECK_COLUMNS}
        cols.update(fingerprint_json=json.dumps(check.fingerprint, ensure_ascii=False),
                    probe_json=json.dumps(check.probe, ensure_ascii=False), run_ids_json=json.dumps(check.run_ids))
        with self.transaction() as conn:
            cur = conn.execute(f"INSERT INTO provider_checks ({', '.join(cols)}) VALUES ({placeholders(cols)})",
                               tuple(cols.values()))
            return int(cur.lastrowid or 0)

    def provider_checks(self, provider_id: int) -> list[ProviderCheck]:
        """The provider's checks, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM provider_checks WHERE provider_id = ? ORDER BY id",
                                (provider_id,)).fetchall()
        return [ProviderCheck.from_row(dict(r)) for r in rows]

    def last_provider_checks(self) -> dict[int, str]:
        """Each provider's newest check time (started_at), for the schedule."""
        with self._connect() as conn:
            rows = conn.execute("SELECT provider_id, MAX(started_at) FROM provider_checks GROUP BY provider_id").fetchall()
        return {int(r[0]): str(r[1]) for r in rows}
