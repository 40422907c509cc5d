"""The SQLite database of everything a user makes (runs, outputs, metrics, ratings, fingerprints).

`store.Store` owns every SQL statement and every connection; `migrations` evolves the schema.
May import `workbench.core` only.
"""
