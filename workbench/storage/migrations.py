"""Schema migrations for the workbench database, applied once each, in order, on open.

Each migration is a small named function registered with `@migration`; the `_migrations` table
records which ran, so a database upgrades itself and never loses a user's rows. Add a new
function at the end to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []
log = logging.getLogger(__name__)

# What m006 reads of the fingerprint JSON-lines files it imports (they sit in the user's data folder).
MAX_FINGERPRINT_FILE_BYTES = 64 * 1024 * 1024  # a larger file is left out whole, with a note
MAX_FINGERPRINT_LINE_BYTES = 4 * 1024 * 1024  # a larger line (one report) is left out, with a note
FINGERPRINT_KEY = re.compile(r"^[0-9a-f]{16}$")  # the file names runs.fingerprint made: 16 hex digits


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def apply(conn: sqlite3.Connection) -> list[str]:
    """Run every migration not yet applied, each in its own transaction; returns their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have applied it while we waited for the write lock
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            fn(conn)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).isoformat(timespec="seconds")),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


@migration
def m001_runs_results_ratings(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'compare',
            status TEXT NOT NULL DEFAULT 'running',
            ladder_name TEXT,
            ladder_json TEXT,
            prompt TEXT,
            system_prompt TEXT,
            messages_json TEXT,
            category TEXT,
            settings_json TEXT NOT NULL,
            reference_label TEXT,
            machine_json TEXT,
            workbench_version TEXT,
            llama_cpp_version TEXT
        )"""
    )
    conn.execute(
        """CREATE TABLE results (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            label TEXT NOT NULL,
            quant_type TEXT,
            file TEXT,
            size_bytes INTEGER,
            bits_per_weight REAL,
            is_reference INTEGER NOT NULL DEFAULT 0,
            text TEXT,
            token_ids_json TEXT,
            stop_reason TEXT,
            error TEXT,
            fallback TEXT,
            load_s REAL,
            ttft_s REAL,
            prompt_tokens INTEGER,
            prefill_s REAL,
            prefill_tok_s REAL,
            completion_tokens INTEGER,
            decode_steps INTEGER,
            decode_s REAL,
            decode_tok_s REAL,
            peak_rss_bytes INTEGER,
            gpu_mem_bytes INTEGER,
            gpu_layers INTEGER,
            first_divergence_token INTEGER,
            metrics_json TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (run_id, label)
        )"""
    )
    conn.execute("CREATE INDEX results_run ON results(run_id)")
    conn.execute(
        """CREATE TABLE ratings (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            result_id INTEGER REFERENCES results(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
            comment TEXT,
            rater TEXT,
            mode TEXT NOT NULL DEFAULT 'open',
            created_at TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX ratings_run ON ratings(run_id)")


@migration
def m002_ratings_detail(conn: sqlite3.Connection) -> None:
    """Ratings that stand on their own, and pairwise votes.

    Each rating snapshots what was rated (model, quantization, prompt, category, settings) from
    its run at insert time, so it stays meaningful if the run is edited; `session` and
    `display_letter` record a blind-mode rater session and the letter the output was shown as.
    Existing ratings get the snapshot from their runs now.
    """
    for column in ("session TEXT", "display_letter TEXT", "quant_type TEXT", "ladder_name TEXT", "prompt TEXT",
                   "category TEXT", "settings_json TEXT"):
        conn.execute(f"ALTER TABLE ratings ADD COLUMN {column}")
    conn.execute(
        """UPDATE ratings SET
            ladder_name = (SELECT ladder_name FROM runs WHERE runs.id = ratings.run_id),
            prompt = (SELECT prompt FROM runs WHERE runs.id = ratings.run_id),
            category = (SELECT category FROM runs WHERE runs.id = ratings.run_id),
            settings_json = (SELECT settings_json FROM runs WHERE runs.id = ratings.run_id),
            quant_type = (SELECT quant_type FROM results WHERE results.run_id = ratings.run_id
                          AND results.label = ratings.label)"""
    )
    conn.execute("CREATE INDEX ratings_rater ON ratings(rater, session)")
    conn.execute(
        """CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            label_a TEXT NOT NULL,
            label_b TEXT NOT NULL,
            quant_type_a TEXT,
            quant_type_b TEXT,
            winner TEXT NOT NULL CHECK (winner IN ('a', 'b', 'tie')),
            rater TEXT,
            session TEXT,
            mode TEXT NOT NULL DEFAULT 'pairwise',
            comment TEXT,
            ladder_name TEXT,
            prompt TEXT,
            category TEXT,
            settings_json TEXT,
            created_at TEXT NOT NULL,
            CHECK (label_a <> label_b)
        )"""
    )
    conn.execute("CREATE INDEX votes_run ON votes(run_id)")


@migration
def m003_divergence_and_evals(conn: sqlite3.Connection) -> None:
    """Teacher-forced divergence per contestant, and task-pack eval runs with per-case results.

    `divergence`: one row per (run, source, contestant). `source` is "output" (the reference's
    own output on the run's prompt, teacher-forced through each contestant) or "text" (the bundled
    reference text, scored in chunks like llama-perplexity). The summary columns are what tables
    and the CLI show; `summary_json` holds every statistic, `tokens_json` the per-token detail
    (KLD, top-1 agreement, log-probability of the reference's token, top alternatives).

    `eval_runs` / `eval_results`: a pack run across a ladder. The run row (kind "eval") holds the
    settings and ladder; `eval_runs` the pack as it was run (cases with prompts and checks, so a
    stored run can be judged and shown without the pack file); `eval_results` one row per case
    and contestant with the output and the checker's verdict.
    """
    conn.execute(
        """CREATE TABLE divergence (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            label TEXT NOT NULL,
            quant_type TEXT,
            file TEXT,
            is_reference INTEGER NOT NULL DEFAULT 0,
            reference_label TEXT NOT NULL,
            n_tokens INTEGER,
            mean_kld REAL,
            median_kld REAL,
            p99_kld REAL,
            max_kld REAL,
            top1_agreement REAL,
            ppl REAL,
            error TEXT,
            summary_json TEXT,
            tokens_json TEXT,
            meta_json TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (run_id, source, label)
        )"""
    )
    conn.execute("CREATE INDEX divergence_run ON divergence(run_id, source)")
    conn.execute(
        """CREATE TABLE eval_runs (
            run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
            pack_name TEXT NOT NULL,
            pack_source TEXT,
            categories_json TEXT,
            case_limit INTEGER,
            labels_json TEXT NOT NULL,
            cases_json TEXT NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE eval_results (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            case_id TEXT NOT NULL,
            category TEXT NOT NULL,
            label TEXT NOT NULL,
            quant_type TEXT,
            passed INTEGER NOT NULL,
            detail TEXT,
            output TEXT,
            error TEXT,
            stop_reason TEXT,
            completion_tokens INTEGER,
            decode_tok_s REAL,
            total_s REAL,
            created_at TEXT NOT NULL,
            UNIQUE (run_id, case_id, label)
        )"""
    )
    conn.execute("CREATE INDEX eval_results_run ON eval_results(run_id)")


@migration
def m004_measurement_disturbance(conn: sqlite3.Connection) -> None:
    """Whether each result's decode figure was disturbed by other work on the machine (disturbance.py).

    `cpu_contention`: the share of the worker's threads that had to share a core during the decode
    window (0-1; NULL when not judged: remote endpoints, windows too short, results stored before
    this migration). `disturbed`: 1 when it reached the threshold, 0 when quiet, NULL when not
    judged. `display`: what the app's page did meanwhile (none, streamed, held). The full record
    stays in `metrics_json` under "measurement".
    """
    conn.execute("ALTER TABLE results ADD COLUMN cpu_contention REAL")
    conn.execute("ALTER TABLE results ADD COLUMN disturbed INTEGER")
    conn.execute("ALTER TABLE results ADD COLUMN display TEXT")


@migration
def m005_imported_runs(conn: sqlite3.Connection) -> None:
    """Where an imported run came from (`imported_from`: the import's time and file name; NULL for runs made here).

    An import's file paths point at another machine's files (or anywhere its author liked), so the
    workbench never loads them as models: re-measuring and divergence refuse imported runs.
    """
    conn.execute("ALTER TABLE runs ADD COLUMN imported_from TEXT")


def insert_fingerprint(conn: sqlite3.Connection, key: str, report: dict[str, Any]) -> None:
    """Append one fingerprint report to an endpoint's history (used by m006's import and by Store)."""
    created = report.get("created_at")
    closest = report.get("closest")
    conn.execute(
        "INSERT INTO fingerprints (endpoint_key, created_at, closest, report_json) VALUES (?, ?, ?, ?)",
        (key, created if isinstance(created, str) else None, closest if isinstance(closest, str) else None,
         json.dumps(report, ensure_ascii=False, default=str)),
    )


def import_fingerprint_files(conn: sqlite3.Connection, folder: Path) -> list[str]:
    """Add every `<key>.jsonl` file in `folder` to the fingerprints table; returns notes on what was left out.

    The files are untrusted leftovers: a line that is not a JSON object, or is too long, is skipped (a
    half-written line after a crash must not hide the rest), as is a file that is too large or not named
    by a key. The files are left where they are: the import then changes nothing outside the database, so
    a migration that fails and rolls back can simply run again, and an older workbench still reads them.
    """
    notes: list[str] = []
    if not folder.is_dir():
        return notes
    for path in sorted(folder.glob("*.jsonl")):
        if not FINGERPRINT_KEY.match(path.stem) or not path.is_file():
            notes.append(f"{path.name}: not a fingerprint history file name, left out")
            continue
        size = path.stat().st_size
        if size > MAX_FINGERPRINT_FILE_BYTES:
            notes.append(f"{path.name}: {size} bytes, over {MAX_FINGERPRINT_FILE_BYTES} bytes, left out")
            continue
        for n, raw in enumerate(path.read_bytes().splitlines(), 1):
            if not raw.strip():
                continue
            if len(raw) > MAX_FINGERPRINT_LINE_BYTES:
                notes.append(f"{path.name} line {n}: longer than {MAX_FINGERPRINT_LINE_BYTES} bytes, skipped")
                continue
            try:
                report = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                notes.append(f"{path.name} line {n}: not JSON ({str(exc)[:80]}), skipped")
                continue
            if not isinstance(report, dict):
                notes.append(f"{path.name} line {n}: not a fingerprint report (a JSON object), skipped")
                continue
            insert_fingerprint(conn, path.stem, report)
    return notes


def _database_folder(conn: sqlite3.Connection) -> Path | None:
    """The folder holding the main database file (None for an in-memory database)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return Path(file).parent if file else None
    return None


@migration
def m006_fingerprints(conn: sqlite3.Connection) -> None:
    """Fingerprint history (runs.fingerprint) in the database instead of JSON-lines files beside it.

    One row per fingerprint run of an endpoint; `endpoint_key` is the hash of URL and model that named
    its file (`fingerprints/<key>.jsonl`), `report_json` the whole report, `created_at` and `closest`
    copied out of it for queries. The files found beside the database are imported once, here.
    """
    conn.execute(
        """CREATE TABLE fingerprints (
            id INTEGER PRIMARY KEY,
            endpoint_key TEXT NOT NULL,
            created_at TEXT,
            closest TEXT,
            report_json TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX fingerprints_key ON fingerprints(endpoint_key, id)")
    folder = _database_folder(conn)
    if folder is not None:
        for note in import_fingerprint_files(conn, folder / "fingerprints"):
            log.warning("fingerprint history import: %s", note)


@migration
def m007_set_runs(conn: sqlite3.Connection) -> None:
    """Set runs: a prompt set put through a ladder as one batch (workbench.runs.set_runs).

    One `set_runs` row holds what was asked: the prompts (`prompts_json`: a list of {"prompt", "system"?,
    "category"?, "id"?, "check"?}), the ladder and chosen labels, the reference, the settings and how often the
    reference is repeated for a noise floor (`noise_repeats`). Each prompt becomes an ordinary comparison run
    in `runs` tagged with `set_run_id` and `set_index` (its position in the set), so everything that reads a run
    reads each prompt. A prompt stopped and run again leaves its earlier, cancelled run tagged too: the
    newest run of an index is the prompt's. `runs.set_run_id` carries no foreign key: a run imported from
    another database keeps its own tag without needing that database's set run.
    """
    conn.execute(
        """CREATE TABLE set_runs (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            name TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'running',
            ladder_name TEXT,
            ladder_json TEXT,
            prompts_json TEXT NOT NULL,
            labels_json TEXT NOT NULL,
            reference_label TEXT,
            settings_json TEXT NOT NULL,
            noise_repeats INTEGER NOT NULL DEFAULT 0,
            workbench_version TEXT
        )"""
    )
    conn.execute("ALTER TABLE runs ADD COLUMN set_run_id INTEGER")
    conn.execute("ALTER TABLE runs ADD COLUMN set_index INTEGER")
    conn.execute("CREATE INDEX runs_set ON runs(set_run_id, set_index)")


@migration
def m008_reference_repeats(conn: sqlite3.Connection) -> None:
    """The noise floor: the reference run again on a run's prompt (quality.noise_floor, runs.noise).

    Each row is one repeat of the run's reference (`label`), made with one `perturbation_json`:
    {"kind": "seed", "seed": N} at temperature > 0, or {"kind": "n_batch", "n_batch": N} when greedy (the
    prompt evaluated in micro-batches of N tokens: other kernels, another summation order). `error` is set
    when the repeat failed; `stop_reason` "cancelled" when it was stopped. Rows belong to their run (run_id),
    so export, import and delete treat them like results.
    """
    conn.execute(
        """CREATE TABLE reference_repeats (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            repeat INTEGER NOT NULL,
            label TEXT NOT NULL,
            perturbation_json TEXT NOT NULL,
            text TEXT,
            completion_tokens INTEGER,
            stop_reason TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (run_id, repeat)
        )"""
    )


@migration
def m009_imported_set_runs(conn: sqlite3.Connection) -> None:
    """Where an imported set run came from (`set_runs.imported_from`, as m005 gives runs; NULL for set runs made
    here). An export carries the set runs its runs belong to; on import each gets a new id and this mark, and its
    runs the same mark, which is how a set run finds its children: a local set run those made here, an imported
    one those of its own import. An imported set run is never resumed: its file paths are another machine's.
    """
    conn.execute("ALTER TABLE set_runs ADD COLUMN imported_from TEXT")


@migration
def m010_target_profiles(conn: sqlite3.Connection) -> None:
    """Target machines a user saved (decide.targets): one row per profile, `name` unique, the whole profile
    (RAM, VRAM, bandwidths, cores, OS reserve, the source of each figure) as JSON in `profile_json`. The presets
    and "this machine" are built in code, never stored. No run owns a profile (no run_id), so history export and
    import leave them alone.
    """
    conn.execute(
        """CREATE TABLE target_profiles (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            profile_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )


@migration
def m011_provider_watch(conn: sqlite3.Connection) -> None:
    """Provider watch (workbench.watch): the endpoints a user watches and every check of them. A provider row
    holds the NAMES of the environment variables of its API key and webhook URL, never their values; a check
    row holds what one check found (closest quantization, pass rate, client-side speed) or why it failed.
    No run owns either (a check names its runs in run_ids_json), so history export and import leave them alone.
    """
    conn.execute(
        """CREATE TABLE watched_providers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            base_url TEXT NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            api TEXT NOT NULL DEFAULT 'openai',
            key_env TEXT,
            extra_body_json TEXT NOT NULL DEFAULT '{}',
            ladder TEXT NOT NULL,
            probe_json TEXT NOT NULL DEFAULT '{}',
            fingerprint_prompts INTEGER NOT NULL DEFAULT 8,
            max_tokens INTEGER NOT NULL DEFAULT 48,
            timeout_s REAL NOT NULL DEFAULT 60,
            every_s REAL,
            webhook_env TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE provider_checks (
            id INTEGER PRIMARY KEY,
            provider_id INTEGER NOT NULL REFERENCES watched_providers(id) ON DELETE CASCADE,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            reason TEXT,
            closest TEXT,
            confidence REAL,
            confidence_text TEXT,
            runner_up TEXT,
            method TEXT,
            fingerprint_json TEXT,
            probe_json TEXT,
            pass_rate REAL,
            passed INTEGER,
            total INTEGER,
            pass_low REAL,
            pass_high REAL,
            latency_s REAL,
            tok_s REAL,
            tokens_sent INTEGER,
            tokens_note TEXT,
            run_ids_json TEXT NOT NULL DEFAULT '[]'
        )"""
    )
    conn.execute("CREATE INDEX provider_checks_by_provider ON provider_checks (provider_id, id)")
