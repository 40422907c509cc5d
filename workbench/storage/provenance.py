"""Where a figure came from (issue 24): measured here (by which run), imported from another machine (which machine,
when), or published elsewhere (where). Only a figure measured here may decide a recommendation or calibrate a speed
estimate; the others are shown, labelled, beside it.

A stored row says it through its run: `runs.imported_from` (NULL for a run made here; for an imported run, the
import's time and file name), `runs.machine_json` (the machine the run was made on, as that machine described
itself) and the row's `created_at`. All three are untrusted: an import carries whatever its file said, so they are
type-checked, cut short and only ever shown, never used to decide anything.

Imports nothing from the workbench.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

MEASURED_HERE: Final = "measured_here"
IMPORTED: Final = "imported"
PUBLISHED: Final = "published"
ProvenanceKind = Literal["measured_here", "imported", "published"]
MAX_WORDS = 80  # characters of a machine name or an import mark shown
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\d])")


def _short(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = "".join(ch for ch in " ".join(value.split()) if ch.isprintable())  # no terminal escapes from a file
    return text if len(text) <= MAX_WORDS else text[: MAX_WORDS - 1] + "…"


def machine_name(machine: Any) -> str | None:
    """"AMD EPYC 9654 (16 threads)" from a run's machine record (a dict or its JSON text); None when it says nothing."""
    if isinstance(machine, str):
        try:
            machine = json.loads(machine)
        except ValueError:
            return None
    if not isinstance(machine, dict):
        return None
    cpu, threads = _short(machine.get("cpu_model")), machine.get("logical_cores")
    if cpu and isinstance(threads, int) and not isinstance(threads, bool) and 0 < threads < 100_000:
        return f"{cpu} ({threads} threads)"
    return cpu


@dataclass(frozen=True)
class Provenance:
    """Where one figure came from. `run_id`: the run that measured it (here, or its id in this database once
    imported); `machine` and `date` (YYYY-MM-DD): where and when it was measured, as recorded; `source`: for an
    imported figure the import's mark (time and file), for a published one its reference."""

    kind: ProvenanceKind
    run_id: int | None = None
    machine: str | None = None
    date: str | None = None
    source: str | None = None

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> Provenance:
        """The provenance of a stored row carrying its run's `imported_from`, `run_machine_json` and `created_at`."""
        run = row.get("run_id")
        run_id = run if isinstance(run, int) and not isinstance(run, bool) else None
        mark = row.get("imported_from")
        if mark is None:
            return cls(MEASURED_HERE, run_id)
        created = row.get("created_at")
        date = created[:10] if isinstance(created, str) and _DATE.match(created) else None
        return cls(IMPORTED, run_id, machine_name(row.get("run_machine_json")), date, _short(str(mark)))

    @classmethod
    def published(cls, source: str) -> Provenance:
        """A figure someone else published; `source` (the workbench's own table, not user input) names it whole."""
        return cls(PUBLISHED, source=source)

    @property
    def measured_here(self) -> bool:
        """Whether this figure may decide anything: it was measured by this workbench on this machine."""
        return self.kind == MEASURED_HERE

    @property
    def origin(self) -> str:
        """The machine and date of an imported figure, in words: "AMD EPYC 9654 (16 threads), 2026-11-30"."""
        return ", ".join(x for x in (self.machine or "another machine", self.date) if x)

    def words(self) -> str:
        """"measured here (run #12)", "imported from <machine>, <date> (run #40 here)", "published: <source>"."""
        if self.kind == MEASURED_HERE:
            return "measured here" + (f" (run #{self.run_id})" if self.run_id is not None else "")
        if self.kind == PUBLISHED:
            return f"published elsewhere: {self.source or 'unknown source'}"
        return f"imported from {self.origin}" + (f" (run #{self.run_id} here)" if self.run_id is not None else "")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "run_id": self.run_id, "machine": self.machine, "date": self.date,
                "source": self.source, "words": self.words()}
