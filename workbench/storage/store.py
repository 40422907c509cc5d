"""The SQLite store of everything a user makes: runs, outputs, metrics, ratings, evals, divergence, fingerprints.

`Store` is the one face callers use: the database core (`database.Database`: connections, read-only handling,
transactions, write errors) composed with one query module per concern. Each module owns the SQL of its
tables, so the schema, its transactions and the StoreError handling live in storage/ alone
(tests/test_store_owns_sql.py keeps it so). The names callers import from here stay here.
"""

from __future__ import annotations

from workbench.storage.database import BUSY_TIMEOUT_S, Database, RowMissing, StoreError, now_iso
from workbench.storage.divergence_queries import DivergenceQueries, DivergenceRow
from workbench.storage.eval_queries import EvalQueries
from workbench.storage.evidence_queries import EvidenceQueries
from workbench.storage.fingerprint_queries import FingerprintQueries
from workbench.storage.history_queries import HistoryQueries, ImportBatch, Imported, ImportRun
from workbench.storage.judgement_queries import JudgementFilters, JudgementQueries
from workbench.storage.noise_queries import NoiseQueries
from workbench.storage.rows import FoundRun, RunSummary, SetRunChild, StoredResult, StoredRun, StoredSetRun
from workbench.storage.run_queries import RESULT_COLUMNS, RunQueries
from workbench.storage.set_run_queries import SET_PROMPT_FINISHED, SetRunQueries
from workbench.storage.target_queries import TargetQueries
from workbench.storage.watch_queries import WatchQueries

__all__ = [
    "BUSY_TIMEOUT_S", "Database", "DivergenceRow", "FoundRun", "ImportBatch", "ImportRun", "Imported",
    "JudgementFilters", "RESULT_COLUMNS", "RowMissing", "RunSummary", "SET_PROMPT_FINISHED", "SetRunChild", "Store",
    "StoreError", "StoredResult", "StoredRun", "StoredSetRun", "now_iso",
]


class Store(RunQueries, SetRunQueries, NoiseQueries, JudgementQueries, HistoryQueries, DivergenceQueries, EvalQueries,
            EvidenceQueries, FingerprintQueries, TargetQueries, WatchQueries, Database):
    """A handle on one database file with every query of the workbench (see `database.Database` for how it opens,
    and the query modules for what can be asked)."""
