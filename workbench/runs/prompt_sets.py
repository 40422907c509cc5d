"""Prompt sets: "our prompts", pasted or uploaded, to run through a ladder as one batch (a set run).

A product person has 20-50 prompts of their own and no checkers; a set is just those prompts, each with an
optional system prompt, category and id. Four ways in, each parsed all or nothing (one bad row refuses the
whole set, with every bad row's line number, so nothing is half-imported):

- pasted lines (`fmt="lines"`): one prompt per non-empty line; lines starting with `#` are comments;
- CSV (`"csv"`): a header row with a `prompt` column; optional `system`, `category`, `id`; other columns ignored;
- TOML (`"toml"`): `[[prompts]]` tables with `prompt` and optional `system`, `category`, `id`, `check`; an
  optional top-level `name`. A task pack's `[[cases]]` (prompts/starter.toml) and the Compare examples'
  `[[examples]]` (prompts/examples.toml) are read too: their prompts are taken, a case's `check` is kept as
  an optional spec (never run here), and cases that build their prompt from a generated `passage` are left
  out with a note in `PromptSet.notes` (that passage is a task-pack feature; run such packs as evals);
- JSONL (`"jsonl"`): one JSON object per line with `prompt` and the same optional fields.

Limits (a pasted or uploaded file is untrusted): MAX_BYTES per file, MAX_PROMPTS prompts, MAX_PROMPT_CHARS
per prompt or system prompt, MAX_JSON_DEPTH nesting per JSON line. Errors are `PromptSetError`, whose message
reads "line 7: no "prompt" field" (more bad rows are listed after the first). TOML and CSV go through
files.text_formats' bounded readers (nesting, number length, strict quoting); lines are split on "\n" only.

Bundled sets live in prompts/sets/ (`list_bundled_sets`). Imports only workbench.files.text_formats and the
database's limits (storage.limits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core import paths
from workbench.files.text_formats import (
    TextFormatError,
    csv_records,
    load_toml,
    split_lines,
    toml_key_line,
    toml_table_lines,
)
from workbench.storage.limits import MAX_PROMPT_CHARS, MAX_SET_PROMPTS, is_unicode

MAX_BYTES = 2 * 1024 * 1024
MAX_PROMPTS = MAX_SET_PROMPTS  # the database's limits (storage.limits): what an export of a set run may hold
MAX_JSON_DEPTH = 20
MAX_ERRORS_SHOWN = 10
FORMATS = ("lines", "csv", "toml", "jsonl")
SUFFIX_FORMATS = {".txt": "lines", ".csv": "csv", ".toml": "toml", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_FIELDS = ("system", "category", "id")
TOML_TABLES = ("prompts", "cases", "examples")  # ours, a task pack's, the Compare examples'


class PromptSetError(ValueError):
    """A set that cannot be imported; `errors` holds every (line or None, reason), the message the first few."""

    def __init__(self, errors: list[tuple[int | None, str]]) -> None:
        self.errors = errors
        shown = [f"line {line}: {reason}" if line else reason for line, reason in errors[:MAX_ERRORS_SHOWN]]
        more = len(errors) - len(shown)
        super().__init__("; ".join(shown) + (f" (and {more} more)" if more > 0 else ""))

    @property
    def line(self) -> int | None:
        """The first bad row's line (None when the problem is the whole file)."""
        return self.errors[0][0] if self.errors else None


@dataclass(frozen=True)
class SetPrompt:
    """One prompt of a set. `check` is a task pack's checker spec when the prompt came from one (optional)."""

    prompt: str
    system: str | None = None
    category: str | None = None
    id: str | None = None
    check: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored shape (set_runs.prompts_json): `prompt` plus only the optional fields that are set."""
        out: dict[str, Any] = {"prompt": self.prompt}
        for key in (*TEXT_FIELDS, "check"):
            value = getattr(self, key)
            if value is not None:
                out[key] = dict(value) if key == "check" else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SetPrompt:
        """Back from `to_dict` (as stored)."""
        check = data.get("check")
        return cls(str(data["prompt"]), data.get("system"), data.get("category"), data.get("id"),
                   dict(check) if isinstance(check, Mapping) else None)


@dataclass(frozen=True)
class PromptSet:
    """A named list of prompts, ready for `set_runs.start_set_run`; `notes` says what was deliberately left out."""

    name: str
    prompts: list[SetPrompt]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.prompts]


# ---- entry points ---------------------------------------------------------------------------------------
def parse_prompt_set(text: str, fmt: str, name: str | None = None) -> PromptSet:
    """Parse `text` in `fmt` (one of FORMATS). `name` wins over a TOML file's own `name`; else "prompts"."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise PromptSetError([(None, f"larger than {MAX_BYTES // (1024 * 1024)} MiB")])
    if fmt not in FORMATS:
        raise PromptSetError([(None, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")])
    parser = {"lines": _parse_lines, "csv": _parse_csv, "toml": _parse_toml, "jsonl": _parse_jsonl}[fmt]
    try:
        own_name, rows, notes = parser(text.removeprefix("\ufeff"))  # a pasted text may start with a BOM
    except TextFormatError as exc:
        raise PromptSetError([(exc.line, exc.reason)]) from None
    return _finish(name or own_name or "prompts", rows, notes)


def parse_prompt_set_bytes(data: bytes, fmt: str, name: str | None = None) -> PromptSet:
    """An uploaded file's bytes: the size limit is checked before anything is decoded."""
    if len(data) > MAX_BYTES:
        raise PromptSetError([(None, f"{len(data)} bytes, larger than {MAX_BYTES // (1024 * 1024)} MiB")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PromptSetError([(data.count(b"\n", 0, exc.start) + 1, "not UTF-8 text")]) from None
    return parse_prompt_set(text, fmt, name)


def format_for(filename: str | Path) -> str:
    """The format a file name implies (.txt lines, .csv, .toml, .jsonl/.ndjson); PromptSetError otherwise."""
    fmt = SUFFIX_FORMATS.get(Path(filename).suffix.lower())
    if fmt is None:
        raise PromptSetError([(None, f"{Path(filename).name}: use a .txt, .csv, .toml or .jsonl file")])
    return fmt


def load_prompt_set(path: str | Path, name: str | None = None) -> PromptSet:
    """A set from a file, its format from its suffix; named by `name`, a TOML `name`, or the file's stem."""
    path = Path(path)
    fmt = format_for(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise PromptSetError([(None, f"{path.name}: larger than {MAX_BYTES // (1024 * 1024)} MiB")])
        data = path.read_bytes()
    except OSError as exc:
        raise PromptSetError([(None, f"{path}: {exc.strerror or exc}")]) from None
    return parse_prompt_set_bytes(data, fmt, name) if name is not None else parse_upload(data, path.name)


def parse_upload(data: bytes, filename: str) -> PromptSet:
    """A set from a file's bytes (an upload in the app, a file for the CLI): its format from the file name's suffix,
    its name from the file's own TOML `name`, else the file name without its suffix. PromptSetError otherwise."""
    parsed = parse_prompt_set_bytes(data, format_for(filename))
    if parsed.name != "prompts":
        return parsed
    return PromptSet(Path(filename).stem or "prompts", parsed.prompts, parsed.notes)


def bundled_sets_dir() -> Path:
    """prompts/sets/ beside the package: the sets the app offers out of the box."""
    return paths.bundled_prompts_dir() / "sets"


def _set_files(folder: Path) -> list[Path]:
    """The prompt-set files in `folder`, sorted by name (none when it is missing)."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in SUFFIX_FORMATS]


def list_bundled_sets(directory: str | Path | None = None) -> list[PromptSet]:
    """Every bundled set, loaded (they are small and ours), sorted by file name."""
    return [load_prompt_set(p) for p in _set_files(Path(directory) if directory is not None else bundled_sets_dir())]


def find_bundled_set(name: str) -> PromptSet | None:
    """A bundled set by its name or its file's stem ("Product support", "product-support"), any case."""
    wanted = name.strip().lower()
    for p in _set_files(bundled_sets_dir()):
        s = load_prompt_set(p)
        if wanted in (s.name.lower(), p.stem.lower()):
            return s
    return None


def find_prompt_set(name: str) -> PromptSet:
    """A prompt set by file path, or a bundled one by its name or file stem (any case); ValueError otherwise."""
    path = Path(name).expanduser()
    if path.is_file():
        return load_prompt_set(path)
    found = find_bundled_set(name)
    if found is None:
        known = ", ".join(s.name for s in list_bundled_sets()) or "none"
        raise ValueError(f"no prompt set named {name!r} (bundled: {known}; or give a file)")
    return found


# ---- formats: each returns (its own name or None, [(line, raw row or error text)], notes) ----------------
Row = tuple[int | None, Mapping[str, Any] | str]


def _parse_lines(text: str) -> tuple[str | None, list[Row], list[str]]:
    rows: list[Row] = []
    for number, line in enumerate(split_lines(text), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            rows.append((number, {"prompt": stripped}))
    return None, rows, []


def _parse_csv(text: str) -> tuple[str | None, list[Row], list[str]]:
    records = csv_records(text)  # a quoted field may span lines: a row is named by its first line
    if not records:
        raise PromptSetError([(None, "empty file")])
    columns = [h.strip().lower() for h in records[0][1]]
    if "prompt" not in columns:
        raise PromptSetError([(1, 'no "prompt" column in the header row')])
    rows: list[Row] = []
    for start, values in records[1:]:
        if any(v.strip() for v in values):
            if len(values) > len(columns):
                rows.append((start, f"{len(values)} values for {len(columns)} columns"))
            else:
                rows.append((start, {c: v for c, v in zip(columns, values, strict=False) if v.strip() or c == "prompt"}))
    return None, rows, []


def _parse_jsonl(text: str) -> tuple[str | None, list[Row], list[str]]:
    rows: list[Row] = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        if _json_depth(line) > MAX_JSON_DEPTH:
            rows.append((number, f"nested deeper than {MAX_JSON_DEPTH} levels"))
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            rows.append((number, f"not JSON ({str(exc)[:80]})"))
            continue
        rows.append((number, value if isinstance(value, dict) else "not a JSON object"))
    return None, rows, []


def _parse_toml(text: str) -> tuple[str | None, list[Row], list[str]]:
    data = load_toml(text)
    tables = [key for key in TOML_TABLES if key in data]
    if not tables:
        raise PromptSetError([(None, "no [[prompts]] tables (a task pack's [[cases]] or [[examples]] work too)")])
    own_name = data.get("name") if isinstance(data.get("name"), str) and data["name"].strip() else None
    rows: list[Row] = []
    notes: list[str] = []
    for key in tables:
        items = data[key]
        if not isinstance(items, list):
            raise PromptSetError([(toml_key_line(text, key), f'"{key}" must be an array of tables ([[{key}]])')])
        lines: list[int | None] = list(toml_table_lines(text, key))
        if len(lines) != len(items):  # written inline (prompts = [{...}]): no line per table to point at
            lines = [None] * len(items)
        for n, (line, item) in enumerate(zip(lines, items, strict=True), start=1):
            if isinstance(item, dict) and key == "cases" and "passage" in item:
                notes.append(f"{key} {n} ({item.get('id', '?')}) left out: its prompt is built from a generated "
                             "passage, a task-pack feature; run that pack as an eval")
                continue
            rows.append((line, item if isinstance(item, dict) else f"[[{key}]] entry {n} is not a table"))
    return own_name, rows, notes


# ---- checks shared by every format ------------------------------------------------------------------------
def _finish(name: str, rows: list[Row], notes: list[str]) -> PromptSet:
    """Check every row; refuse the whole set when any is bad (all or nothing)."""
    errors: list[tuple[int | None, str]] = []
    prompts: list[SetPrompt] = []
    seen_ids: dict[str, int | None] = {}
    for n, (line, row) in enumerate(rows, start=1):
        where = line if line is not None else None
        if isinstance(row, str):
            errors.append((where, row if line is not None else f"prompt {n}: {row}"))
            continue
        reasons = _row_problems(row)
        if not reasons:
            prompt = _set_prompt(row)
            if prompt.id is not None and prompt.id in seen_ids:
                first = seen_ids[prompt.id]
                reasons.append(f'id "{prompt.id}" is used twice' + (f" (first on line {first})" if first else ""))
            else:
                if prompt.id is not None:
                    seen_ids[prompt.id] = line
                prompts.append(prompt)
        errors += [(where, r if line is not None else f"prompt {n}: {r}") for r in reasons]
    if not errors and not prompts:
        errors.append((None, "no prompts"))
    if len(prompts) > MAX_PROMPTS:
        errors.append((None, f"{len(prompts)} prompts, more than the {MAX_PROMPTS} a set may hold"))
    if errors:
        raise PromptSetError(errors)
    return PromptSet(name.strip()[:200] or "prompts", prompts, notes)


def _row_problems(row: Mapping[str, Any]) -> list[str]:
    if "prompt" not in row:
        return ['no "prompt" field']
    bad_text = [k for k, v in row.items() if isinstance(v, str) and not is_unicode(v)]
    if bad_text:  # JSON's "\ud800": parses, then fails wherever the text is stored or shown
        return [f'"{bad_text[0]}" is not valid text (it holds a lone surrogate such as \\ud800)']
    problems = []
    for key in ("prompt", "system"):
        value = row.get(key)
        if value is None and key == "system":
            continue
        if not isinstance(value, str):
            problems.append(f'"{key}" must be text, got {type(value).__name__}')
        elif len(value) > MAX_PROMPT_CHARS:
            problems.append(f'"{key}" is {len(value)} characters, over {MAX_PROMPT_CHARS}')
        elif key == "prompt" and not value.strip():
            problems.append("empty prompt")
    for key in ("category", "id"):
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            problems.append(f'"{key}" must be text, got {type(value).__name__}')
        elif value is not None and len(str(value)) > 200:
            problems.append(f'"{key}" is longer than 200 characters')
    if row.get("check") is not None and not isinstance(row.get("check"), Mapping):
        problems.append('"check" must be a table')
    return problems


def _set_prompt(row: Mapping[str, Any]) -> SetPrompt:
    def text(key: str) -> str | None:
        value = row.get(key)
        return str(value).strip() or None if value is not None else None

    check = row.get("check")
    return SetPrompt(row["prompt"].strip(), text("system"), text("category"), text("id"),
                     dict(check) if isinstance(check, Mapping) else None)


def _json_depth(line: str) -> int:
    """How deeply a JSON text nests arrays and objects (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in line:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


