"""Past runs: find them, delete them (with their outputs, ratings and votes), export and import them.

Export formats:
- JSON: one document, {"format": "quant-workbench-export", "version": 3, "exported_at", "runs": [...],
  "set_runs": [...]}, each run holding the rows of every table that belongs to it (`results`, `ratings`,
  `votes`, `divergence`, `eval_runs`, `eval_results`, `reference_repeats`: every table with a `run_id`
  column, see `run_tables`), and the set runs (`set_runs` rows) the exported runs are prompts of.
  It is the lossless format: `import_json` reads it (and version 2, without set runs, and version 1,
  which had only results, ratings and votes) back into any database (new ids, relations kept: a run
  stays its set run's child). An imported set run is marked like an imported run and never resumed.
- CSV: one ZIP file holding one CSV per table (runs.csv, results.csv, ratings.csv, votes.csv) with
  the database's own columns (JSON columns stay JSON text), for spreadsheets and pandas. One file
  is easy to download from the app and to hand on; ids relate the tables.

Secrets never leave in an export: the database holds none, and as a guard any settings key (run,
rating and vote settings, and the settings inside a result's metrics) named like a token, key,
secret or password is replaced by "[removed]"; `max_tokens` and friends are counts and stay.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from workbench.people.import_ranges import range_problem
from workbench.storage.limits import (
    MAX_DEPTH,
    MAX_IMPORT_BYTES,
    MAX_JSON_BYTES,
    MAX_PROMPT_CHARS,
    MAX_SET_PROMPTS,
    MAX_TEXT_BYTES,
    is_unicode,
    number_problem,
    text_problem,
    utf8_bytes,
)
from workbench.storage.store import FoundRun, ImportBatch, ImportRun, Store, now_iso

EXPORT_FORMAT = "quant-workbench-export"
EXPORT_VERSION = 3  # 3: with the set runs of the runs; 2: every table with a run_id; 1: results, ratings, votes
TABLES = ("runs", "results", "ratings", "votes")  # the CSV export's tables
# The tables a run owns, in the order an import inserts them (results before ratings, which point at them).
# A table with a run_id column that is missing here is still exported and imported (see run_tables), after these.
RUN_TABLES = ("results", "ratings", "votes", "divergence", "eval_runs", "eval_results", "reference_repeats")
JSON_COLUMNS = ("settings_json", "ladder_json", "messages_json", "machine_json", "metrics_json", "token_ids_json",
                "summary_json", "tokens_json", "meta_json", "categories_json", "labels_json", "cases_json",
                "perturbation_json", "prompts_json")
REDACTED = "[removed]"

# What an import accepts (finding 8 of issue 14: an import is untrusted input): storage.limits, which every writer
# obeys too, so the app's own export always imports back.
MAX_INT_DIGITS = 40  # a JSON integer longer than this is beyond any column's range: kept as text to name its field
# JSON columns that must hold an object / a list (the pages read them as such)
JSON_OBJECTS = ("settings_json", "ladder_json", "machine_json", "metrics_json", "summary_json", "tokens_json",
                "meta_json", "perturbation_json")
JSON_LISTS = ("messages_json", "token_ids_json", "categories_json", "labels_json", "cases_json", "prompts_json")
RUN_KINDS = ("compare", "eval", "diverge", "diverge-text")
RUN_STATUSES = ("running", "done", "partial", "failed", "cancelled")
SET_RUN_STATUSES = ("running", "done", "cancelled", "failed")
SECRET_KEY = re.compile(r"(^|[_\-.])(token|api[_\-]?key|key|secret|password|passwd|authorization|bearer|credentials?)$",
                        re.IGNORECASE)


class ImportFileError(ValueError):
    """A file that is not a workbench export, or one this version cannot read."""


# ---- search and delete ------------------------------------------------------------------------
def _bound(value: date | datetime | str | None, end: bool) -> str | None:
    """An ISO UTC bound for created_at; a bare date as `until` includes that whole day."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
    if not isinstance(value, datetime):
        value = datetime.combine(value + timedelta(days=1) if end else value, time.min, tzinfo=UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def search_runs(
    store: Store,
    *,
    text: str | None = None,
    model: str | None = None,
    since: date | datetime | str | None = None,
    until: date | datetime | str | None = None,
    kind: str | None = None,
    limit: int = 200,
) -> list[FoundRun]:
    """Runs, newest first, matching prompt text and model (ladder) name (substrings, any case) and a date range.

    Each row carries counts of its outputs, ratings and votes for a history table.
    """
    return store.search_runs(text=text, model=model, since=_bound(since, end=False), until=_bound(until, end=True),
                             until_inclusive=isinstance(until, datetime), kind=kind, limit=int(limit))


def delete_runs(store: Store, run_ids: Sequence[int]) -> int:
    """Delete runs with their outputs, ratings and votes (foreign-key cascade); returns how many existed."""
    existing = [rid for rid in run_ids if store.get_run(int(rid)) is not None]
    for rid in existing:
        store.delete_run(int(rid))
    return len(existing)


# ---- export -----------------------------------------------------------------------------------
def redact(value: Any) -> Any:
    """`value` with every dict key named like a secret replaced by REDACTED, at any depth."""
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def secret_keys(value: Any, path: str = "") -> list[str]:
    """Paths of keys named like secrets that still hold a value (for the guard and for tests)."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if SECRET_KEY.search(str(k)) and v not in (None, "", REDACTED):
                found.append(here)
            found += secret_keys(v, here)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += secret_keys(v, f"{path}[{i}]")
    return found


def run_tables(store: Store) -> list[str]:
    """Every table holding rows of a run (a `run_id` column), RUN_TABLES first in their order, then any other."""
    return store.run_tables(RUN_TABLES)


def _rows(store: Store, table: str, run_ids: Sequence[int] | None) -> list[dict[str, Any]]:
    rows = store.table_rows(table, run_ids)
    for row in rows:
        _redact_row(row)
    return rows


def _redact_row(row: dict[str, Any]) -> None:
    """Remove secrets from a database row's settings, in place (JSON text stays JSON text)."""
    if row.get("settings_json"):
        row["settings_json"] = json.dumps(redact(json.loads(row["settings_json"])), ensure_ascii=False)
    if row.get("metrics_json"):
        metrics = json.loads(row["metrics_json"])
        if isinstance(metrics, dict) and isinstance(metrics.get("settings"), dict):
            metrics["settings"] = redact(metrics["settings"])
            row["metrics_json"] = json.dumps(metrics, ensure_ascii=False)


def leaked_settings(row: dict[str, Any]) -> list[str]:
    """Secret-named keys still holding a value in a row's settings (parsed or JSON text)."""
    found = []
    for key in ("settings", "settings_json", "metrics", "metrics_json"):
        value = row.get(key)
        if isinstance(value, str) and value:
            value = json.loads(value)
        if key.startswith("metrics"):
            value = value.get("settings") if isinstance(value, dict) else None
        found += secret_keys(value, key)
    return found


class SecretInExport(RuntimeError):
    """Raised instead of writing an export that would hold a secret (a bug: redaction should prevent it)."""


def export_data(store: Store, run_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """Every run (or the chosen ones) with the rows of every table it owns, and the set runs they are prompts of;
    JSON columns parsed; no secrets.

    A run's `set_run_id` is kept only when it is a child of an exported set run: a run imported by an older
    version may still carry another database's set run id, which means nothing here.
    """
    owned = run_tables(store)
    tables = {t: _rows(store, t, run_ids) for t in ("runs", *owned)}
    by_run: dict[int, dict[str, list[dict[str, Any]]]] = {r["id"]: {t: [] for t in owned} for r in tables["runs"]}
    for table in owned:
        for row in tables[table]:
            by_run[row["run_id"]][table].append(_parse_json_columns(row))
    set_rows, owner = store.set_runs_of(run_ids)
    for row in set_rows:
        _redact_row(row)
    runs = [{**_parse_json_columns(r), **by_run[r["id"]], "set_run_id": owner.get(r["id"])} for r in tables["runs"]]
    sets = [_parse_json_columns(r) for r in set_rows]
    schema = store.schema_version()
    data = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_at": now_iso(), "schema": schema,
            "runs": runs, "set_runs": sets}
    leaked = [p for r in runs for row in [r, *(x for t in owned for x in r[t])] for p in leaked_settings(row)]
    leaked += [p for row in sets for p in leaked_settings(row)]
    if leaked:
        raise SecretInExport(f"refusing to export secrets: {leaked}")
    return data


def _parse_json_columns(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in JSON_COLUMNS:
        if key in out:
            out[key.removesuffix("_json")] = json.loads(out.pop(key)) if out[key] else None
    return out


def export_json_bytes(store: Store, run_ids: Sequence[int] | None = None) -> bytes:
    return json.dumps(export_data(store, run_ids), indent=2, ensure_ascii=False).encode("utf-8")


def export_json(store: Store, path: str | Path, run_ids: Sequence[int] | None = None) -> Path:
    path = Path(path)
    path.write_bytes(export_json_bytes(store, run_ids))
    return path


# A spreadsheet treats a cell starting with one of these as a formula (=HYPERLINK(...), =cmd|...): text from models,
# endpoints and imports is prefixed with a single quote so it opens as text (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """`value` for a CSV cell: text that a spreadsheet would run as a formula gets a leading single quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_tables(store: Store, run_ids: Sequence[int] | None = None) -> dict[str, str]:
    """table name → CSV text, the database's columns in their order."""
    out = {}
    columns = {t: [r[1] for r in rows] for t, rows in store.table_info(TABLES).items()}
    for table in TABLES:
        buf = io.StringIO()
        # CRLF (RFC 4180): with "\n" alone a lone "\r" in model text went unquoted and broke the row
        writer = csv.DictWriter(buf, fieldnames=columns[table], extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows({k: csv_safe(v) for k, v in row.items()} for row in _rows(store, table, run_ids))
        out[table] = buf.getvalue()
    leaked = [p for text in out.values() for row in csv.DictReader(io.StringIO(text)) for p in leaked_settings(row)]
    if leaked:
        raise SecretInExport(f"refusing to export secrets: {leaked}")
    return out


def export_csv_bytes(store: Store, run_ids: Sequence[int] | None = None) -> bytes:
    """A ZIP holding runs.csv, results.csv, ratings.csv and votes.csv."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for table, text in csv_tables(store, run_ids).items():
            zf.writestr(f"{table}.csv", text)
    return buf.getvalue()


def export_csv(store: Store, path: str | Path, run_ids: Sequence[int] | None = None) -> Path:
    path = Path(path)
    path.write_bytes(export_csv_bytes(store, run_ids))
    return path


# ---- import -----------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    runs: int
    results: int
    ratings: int
    votes: int
    run_ids: dict[int, int]  # id in the file → id in this database
    rows: dict[str, int] = field(default_factory=dict)  # table → rows added, every table a run owns
    set_run_ids: dict[int, int] = field(default_factory=dict)  # set run id in the file → id in this database

    @property
    def set_runs(self) -> int:
        return len(self.set_run_ids)


def import_json(store: Store, source: str | Path | bytes | dict[str, Any], origin: str | None = None) -> ImportSummary:
    """Add the runs of an export to this database, all or nothing (see `_import_json`).

    Any file that cannot be imported raises ImportFileError saying why, one that looks like an export but is
    damaged in a way validation did not name included, so every caller reports it the same way; a database that
    cannot be written raises StoreError.
    """
    try:
        return _import_json(store, source, origin)
    except ImportFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, sqlite3.Error) as exc:
        raise ImportFileError(f"it looks like an export but is damaged or incomplete ({type(exc).__name__}: {exc})") \
            from None


def _import_json(store: Store, source: str | Path | bytes | dict[str, Any], origin: str | None) -> ImportSummary:
    """Add the runs of an export to this database, all in one transaction (all or nothing).

    The file is untrusted: `validate_import` checks every value against the schema first, and each run is
    marked `imported_from` (the time and `origin`, a file name), so its file paths are never loaded as models.

    Ids are new; every row a run owns keeps pointing at its run (and ratings at their output).
    Columns this database does not know are skipped, so exports from newer versions still load.
    """
    if origin is None and isinstance(source, (str, Path)):
        origin = Path(source).name
    if isinstance(source, dict):
        data = source
    else:
        if not isinstance(source, bytes) and Path(source).stat().st_size > MAX_IMPORT_BYTES:
            raise ImportFileError(f"the file is larger than {MAX_IMPORT_BYTES // 2**20} MiB")
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        if len(raw) > MAX_IMPORT_BYTES:
            raise ImportFileError(f"the file is larger than {MAX_IMPORT_BYTES // 2**20} MiB")
        try:
            data = json.loads(raw, parse_int=_parse_int)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ImportFileError(f"not a JSON file: {exc}") from None
        except RecursionError:
            raise ImportFileError(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ImportFileError("not a Quant Workbench export (no \"format\": \"quant-workbench-export\")")
    if _depth(data) > MAX_DEPTH:
        raise ImportFileError(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    if isinstance(source, dict):
        data = _tame_ints(data)  # as the file reader leaves them: an integer too long to store named, not converted
    if not isinstance(data.get("version", 0), int) or isinstance(data.get("version"), bool):
        raise ImportFileError(f"the export version must be a whole number, got {_show(data.get('version'))}")
    if int(data.get("version", 0)) > EXPORT_VERSION:
        raise ImportFileError(f"export version {_show(data.get('version'))} is newer than this workbench reads "
                              f"({EXPORT_VERSION})")
    origin = str(origin or "an export")[:200].encode("utf-8", "replace").decode("utf-8")  # an odd file name
    stamp = f"{now_iso()} {origin}"

    def prepare(info: dict[str, list[Any]]) -> ImportBatch:
        validate_import(data, info)
        owned = _owned(info)
        return ImportBatch([ImportRun(_flatten_json_columns(run),
                                      {t: [_flatten_json_columns(row) for row in run.get(t) or []] for t in owned})
                            for run in data.get("runs", [])],
                           [_flatten_json_columns(row) for row in data.get("set_runs") or []])

    try:
        done = store.import_runs(prepare, RUN_TABLES, stamp)
    except (OverflowError, UnicodeEncodeError) as exc:  # a backstop: validate_import names the field first
        raise ImportFileError(f"a value the database cannot hold ({type(exc).__name__}: {exc})") from None
    counts = done.rows
    return ImportSummary(len(done.run_ids), counts.get("results", 0), counts.get("ratings", 0),
                         counts.get("votes", 0), done.run_ids, counts, done.set_run_ids)


def _owned(info: dict[str, list[Any]]) -> list[str]:
    """The tables a run owns among those `Store.import_runs` describes (all but runs and set_runs)."""
    return [t for t in info if t not in ("runs", "set_runs")]


def _flatten_json_columns(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)  # keys that are not columns (a run's lists of rows) are left out at insert
    for key in JSON_COLUMNS:
        short = key.removesuffix("_json")
        if short in out:
            value = out.pop(short)
            out[key] = None if value is None else json.dumps(value, ensure_ascii=False)
    return out


# ---- import validation -----------------------------------------------------------------------
class HugeInt:
    """A JSON integer too long for any column (Python refuses to read one of over 4,300 digits at all): kept as its
    digit count, so the check that meets it names its field instead of the parser failing with no field."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"a {self.digits:,}-digit integer"


def _parse_int(text: str) -> int | HugeInt:
    return int(text) if len(text) <= MAX_INT_DIGITS else HugeInt(len(text.lstrip("-")))


def _tame_ints(value: Any) -> Any:
    """`value` (nested no deeper than MAX_DEPTH) with every integer too long for a column as a HugeInt."""
    if isinstance(value, dict):
        return {k: _tame_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tame_ints(v) for v in value]
    if _is_int(value) and abs(value) >= 10**MAX_INT_DIGITS:
        return HugeInt(int(math.log10(abs(value))) + 1)  # str() refuses one of over 4,300 digits
    return value


def _show(value: Any) -> str:
    text = repr(_tame_ints(value) if _is_int(value) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (without recursion: a hostile file cannot blow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _writable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return False
    return True


# What names a row once in its run (the schema's UNIQUE keys beside run_id): a file repeating one is refused.
ONCE_PER_RUN = {"divergence": ("source", "label"), "eval_results": ("case_id", "label"), "reference_repeats": ("repeat",)}
IDS = ("id", "run_id", "result_id", "set_run_id", "set_index")  # INTEGER columns that must hold whole numbers


def _check_value(table: str, column: str, declared: str, value: Any) -> str | None:
    """What is wrong with `value` for this column (None when it fits); JSON columns get their parsed value."""
    if column in JSON_COLUMNS:
        short = column.removesuffix("_json")
        if column in JSON_OBJECTS and not isinstance(value, dict):
            return f"{short} must be an object, got {_show(value)}"
        if column in JSON_LISTS and not isinstance(value, list):
            return f"{short} must be a list, got {_show(value)}"
        if column == "token_ids_json" and not all(_is_int(t) for t in value):
            return "token_ids must be a list of whole numbers"
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True)
        except (TypeError, ValueError) as exc:
            return f"{short} is not JSON ({exc})"
        if not is_unicode(text):
            return f"{short} holds a lone surrogate (text that is not valid Unicode)"
        size = utf8_bytes(text)
        if size > MAX_JSON_BYTES:
            return f"{short} is longer than {MAX_JSON_BYTES // 2**20} MiB"
        return None
    declared = declared.upper()
    # SQLite keeps a float written to an INTEGER column as it is, so a genuine export may hold one there
    if declared == "INTEGER" and not _is_int(value) and not (isinstance(value, float) and column not in IDS):
        return f"{column} must be a whole number, got {_show(value)}"
    if declared == "REAL" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        return f"{column} must be a number, got {_show(value)}"
    if declared in ("INTEGER", "REAL") and number_problem(value):
        return f"{column} {number_problem(value)}"
    if declared == "TEXT":
        if not isinstance(value, str):
            return f"{column} must be text, got {_show(value)}"
        if utf8_bytes(value) > MAX_TEXT_BYTES:
            return f"{column} is longer than {MAX_TEXT_BYTES // 2**20} MiB"
        return text_problem(column, value)
    return None



def _enum_problem(table: str, row: dict[str, Any]) -> str | None:
    from workbench.people.ratings import MODES, VOTE_MODES, WINNERS
    from workbench.runs.contestants import DISPLAY_MODES

    by_table: dict[str, dict[str, tuple[str, ...]]] = {
        "runs": {"kind": RUN_KINDS, "status": RUN_STATUSES},
        "set_runs": {"status": SET_RUN_STATUSES},
        "results": {"display": DISPLAY_MODES},
        "ratings": {"mode": MODES},
        "votes": {"mode": VOTE_MODES, "winner": WINNERS},
        "divergence": {"source": ("output", "text")}}
    allowed = by_table.get(table, {})
    for column, values in allowed.items():
        if row.get(column) is not None and row[column] not in values:
            return f"{column} must be one of {', '.join(values)}, got {_show(row[column])}"
    if table == "ratings" and row.get("score") is not None and not 1 <= row["score"] <= 5:
        return f"score must be 1 to 5, got {_show(row['score'])}"
    if table in ("results", "divergence") and row.get("is_reference") not in (None, 0, 1, True, False):
        return f"is_reference must be 0 or 1, got {_show(row['is_reference'])}"
    return None


def validate_import(data: dict[str, Any], info: dict[str, list[Any]]) -> None:
    """Refuse (ImportFileError, naming run, table, row and column) an export holding anything the schema does not.

    `info`: PRAGMA table_info rows of runs and of every table a run owns. Checks each value's type (INTEGER,
    REAL, TEXT, or for JSON columns an object/list), sizes, required columns, enumerated fields (kind,
    status, modes, winner, source), and that ratings and votes name outputs of their own run.
    """
    runs = data.get("runs", [])
    if not isinstance(runs, list):
        raise ImportFileError("\"runs\" must be a list")
    set_runs = data.get("set_runs") or []
    if not isinstance(set_runs, list):
        raise ImportFileError("\"set_runs\" must be a list")
    owned = _owned(info)
    # figures to range-check (ids and set indexes are checked against the file itself below)
    numeric = {t: {r[1] for r in rows if str(r[2]).upper() in ("INTEGER", "REAL")} - set(IDS) for t, rows in info.items()}
    seen_runs: set[int] = set()

    def check_row(where: str, table: str, row: Any, fixed: set[str]) -> dict[str, Any]:
        if not isinstance(row, dict):
            raise ImportFileError(f"{where}: must be an object, got {_show(row)}")
        try:
            flat = _flatten_json_columns(row)
        except (TypeError, ValueError):  # a value JSON cannot write: an integer too long to store, or not JSON at all
            bad = next(c.removesuffix("_json") for c in JSON_COLUMNS if not _writable(row.get(c.removesuffix("_json"))))
            raise ImportFileError(f"{where}: {bad} holds a value that cannot be stored (an integer too long, or not "
                                  "JSON)") from None
        for _cid, column, declared, notnull, default, _pk in info[table]:
            if column in fixed or (column == "id" and table != "runs"):
                continue
            value = flat.get(column)
            if value is None:
                if notnull and default is None and not (column == "id"):
                    raise ImportFileError(f"{where}: {column} is missing")
                continue
            if column in JSON_COLUMNS:
                value = row.get(column.removesuffix("_json"), None)
                if column in row:  # the raw column given as text instead of the parsed value
                    try:
                        value = json.loads(row[column]) if isinstance(row[column], str) else row[column]
                    except (json.JSONDecodeError, RecursionError):
                        raise ImportFileError(f"{where}: {column} is not JSON") from None
            problem = _check_value(table, column, declared, value)
            if problem:
                raise ImportFileError(f"{where}: {problem}")
        problem = _enum_problem(table, flat) or range_problem(flat, numeric[table])
        if problem:
            raise ImportFileError(f"{where}: {problem}")
        return flat

    seen_sets: dict[int, int] = {}  # set run id → its number of prompts
    for n, set_run in enumerate(set_runs, 1):
        name = f"set run {set_run.get('id') if isinstance(set_run, dict) else n}"
        flat = check_row(name, "set_runs", set_run, {"imported_from"})
        if not _is_int(flat.get("id")) or flat["id"] in seen_sets:
            raise ImportFileError(f"set run {n} in the file: id must be a whole number, once per file, "
                                  f"got {_show(flat.get('id'))}")
        problem = _set_run_problem(set_run)
        if problem:
            raise ImportFileError(f"{name}: {problem}")
        seen_sets[flat["id"]] = len(set_run.get("prompts") or [])

    for n, run in enumerate(runs, 1):
        name = f"run {run.get('id') if isinstance(run, dict) else n}"
        flat = check_row(name, "runs", run, {"imported_from"})
        if not _is_int(flat.get("id")):
            raise ImportFileError(f"run {n} in the file: id must be a whole number, got {_show(flat.get('id'))}")
        if flat["id"] in seen_runs:
            raise ImportFileError(f"{name}: the same run id appears twice")
        seen_runs.add(flat["id"])
        tag, index = flat.get("set_run_id"), flat.get("set_index")
        if tag in seen_sets and not (isinstance(index, int) and 0 <= index < seen_sets[tag]):
            raise ImportFileError(f"{name}: set_index must name one of the {seen_sets[tag]} prompts of set run {tag} "
                                  f"(0 to {seen_sets[tag] - 1}), got {_show(index)}")
        for table in owned:
            rows = run.get(table) or []
            if not isinstance(rows, list):
                raise ImportFileError(f"{name}: {table} must be a list")
        labels: dict[int, str] = {}
        for i, res in enumerate(run.get("results") or [], 1):
            res_flat = check_row(f"{name}, results row {i}", "results", res, {"run_id"})
            if not _is_int(res.get("id")) or res["id"] in labels:
                raise ImportFileError(f"{name}, results row {i}: id must be a whole number, once per run, "
                                      f"got {_show(res.get('id'))}")
            if res_flat["label"] in labels.values():
                raise ImportFileError(f"{name}, results row {i}: label {_show(res_flat['label'])} appears twice")
            labels[res["id"]] = res_flat["label"]
        for table in owned:
            if table == "results":
                continue
            keys: set[tuple[Any, ...]] = set()
            for i, row in enumerate(run.get(table) or [], 1):
                where = f"{name}, {table} row {i}"
                flat_row = check_row(where, table, row, {"run_id", "result_id"} if table == "ratings" else {"run_id"})
                if table in ONCE_PER_RUN:  # a repeated row would count twice (5 of 5 from one case passed 5 times)
                    once = tuple(flat_row.get(c) for c in ONCE_PER_RUN[table])
                    if once in keys:
                        raise ImportFileError(f"{where}: {' and '.join(ONCE_PER_RUN[table])} {_show(once)} appear twice "
                                              "in this run")
                    keys.add(once)
                if table == "ratings":
                    if flat_row["label"] not in labels.values():
                        raise ImportFileError(f"{where}: label {_show(flat_row['label'])} is not an output of this run")
                    rid = row.get("result_id")
                    if rid is not None and labels.get(rid) != flat_row["label"]:
                        raise ImportFileError(f"{where}: result_id {_show(rid)} is not this run's output "
                                              f"{_show(flat_row['label'])}")
                if table == "votes":
                    for key in ("label_a", "label_b"):
                        if flat_row[key] not in labels.values():
                            raise ImportFileError(f"{where}: {key} {_show(flat_row[key])} is not an output of this run")
                    if flat_row["label_a"] == flat_row["label_b"]:
                        raise ImportFileError(f"{where}: label_a and label_b are the same output")


def _set_run_problem(row: dict[str, Any]) -> str | None:
    """What is wrong with a set run's prompts, labels or repeats beyond their column types (None: nothing): the
    pages read each prompt as {"prompt": text, "system"?, "category"?, "id"?, "check"?} and labels as names."""
    prompts = row.get("prompts")
    if isinstance(prompts, list):
        if not prompts or len(prompts) > MAX_SET_PROMPTS:
            return f"prompts must hold 1 to {MAX_SET_PROMPTS} prompts, got {len(prompts)}"
        for i, item in enumerate(prompts, 1):
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                return f"prompt {i} must be an object with a \"prompt\" text, got {_show(item)}"
            if len(item["prompt"]) > MAX_PROMPT_CHARS:
                return f"prompt {i} is longer than {MAX_PROMPT_CHARS} characters"
            for key in ("system", "category", "id"):
                if item.get(key) is not None and not isinstance(item[key], str):
                    return f"prompt {i}: {key} must be text, got {_show(item[key])}"
            if item.get("check") is not None and not isinstance(item["check"], dict):
                return f"prompt {i}: check must be an object, got {_show(item['check'])}"
    labels = row.get("labels")
    if isinstance(labels, list) and not all(isinstance(x, str) and x for x in labels):
        return f"labels must be a list of names, got {_show(labels)}"
    repeats = row.get("noise_repeats")
    if repeats is not None and (not _is_int(repeats) or repeats < 0):
        return f"noise_repeats must be a whole number ≥ 0, got {_show(repeats)}"
    return None
