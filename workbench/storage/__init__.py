"""The SQLite database of everything a user makes (runs, outputs, metrics, ratings, fingerprints).

`store.Store` is the one face callers use: `database.Database` (connections, read-only handling, transactions,
what a write error means) composed with one query module per concern (`run_queries`, `set_run_queries`,
`noise_queries`, `judgement_queries`, `history_queries`, `divergence_queries`, `eval_queries`,
`evidence_queries`, `fingerprint_queries`, `target_queries`, `watch_queries`), which between them hold every SQL
statement; `rows` and `watch_rows` are what the readers return (typed rows, checked once where they are read);
`migrations` evolves the schema, `limits` refuses what could not be stored and read back, `provenance` says
where a stored figure came from. May import `workbench.core` only.
"""
