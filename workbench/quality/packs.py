"""Task packs: sets of prompts with automatic checks, loaded from TOML or CSV, plus Compare-page examples.

Why packs exist: folklore says 4-bit "bites" on math, code, reasoning and long context but not on
summarization or extraction. A pack turns that into a measurement: the same cases run on every
quantization, each judged by a checker (see `workbench.quality.checkers`), pass rates per category.

TOML pack shape::

    name = "Starter"
    description = "..."

    [fillers]                      # optional: seed texts for generated long passages
    harbor = \"\"\"A few paragraphs of text ...\"\"\"

    [[cases]]
    id = "math-add"                # unique; letters, digits, - _ . :
    category = "math"              # one of CATEGORIES
    prompt = "What is 2+3? Answer with a number."
    system = "..."                 # optional
    max_tokens = 32                # optional; the runner's default otherwise
    check = { kind = "number", expected = 5 }

    [[cases]]                      # a long-context case: {passage} in the prompt is replaced
    id = "long-cat"                # by a passage built with `build_passage` (deterministic)
    category = "long-context"
    prompt = "{passage}\\n\\nWhat is the cat's name?"
    passage = { filler = "harbor", fact = "The cat is named Biscuit.", words = 1800, depth = 0.6 }
    check = { kind = "contains", expected = "Biscuit" }

CSV pack: a header row with columns `prompt, category, checker, expected` and optionally `id,
tolerance, system, max_tokens`. `checker` is a kind; `expected` is the expected text (exact,
contains), the pattern (regex), the number (number; `tolerance` is absolute, or relative when
written like "5%"), a JSON schema or nothing (json), or items separated by "|" (contains_all,
contains_none). The pack's name is the file's stem.

Every problem raises `PackError` naming the file, the line and the reason. TOML and CSV are read with
files.text_formats' bounded readers (the prompt sets' too): deep nesting, huge numbers and stray quotes are
refused with their line instead of a traceback or a silently shorter pack.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core import paths
from workbench.files.text_formats import (
    TextFormatError,
    csv_records,
    load_toml,
    toml_key_line,
    toml_table_lines,
)
from workbench.quality.checkers import Checker, Verdict, build_checker

__all__ = [
    "CATEGORIES",
    "Case",
    "Example",
    "Pack",
    "PackError",
    "build_passage",
    "bundled_dir",
    "load_examples",
    "load_pack",
    "list_packs",
    "parse_pack",
]

CATEGORIES: tuple[str, ...] = (
    "summarization",
    "extraction",
    "classification",
    "math",
    "code",
    "reasoning",
    "long-context",
)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_TOP_KEYS = {"name", "description", "fillers", "cases"}
_CASE_KEYS = {"id", "category", "prompt", "system", "max_tokens", "check", "passage"}
_PASSAGE_KEYS = {"filler", "fact", "words", "depth"}
_CSV_REQUIRED = ("prompt", "category", "checker", "expected")
_CSV_OPTIONAL = ("id", "tolerance", "system", "max_tokens")
PASSAGE_PLACEHOLDER = "{passage}"


class PackError(ValueError):
    """A pack that cannot be used; the message reads "FILE, line N: reason" so it can be fixed at once."""

    def __init__(self, source: str | Path, line: int | None, reason: str) -> None:
        self.source = str(source)
        self.line = line
        self.reason = reason
        where = f"{self.source}, line {line}" if line else self.source
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Case:
    """One prompt and how its output is judged. `prompt` is final (long passages already built in)."""

    id: str
    category: str
    prompt: str
    system: str | None
    max_tokens: int | None
    checker_spec: dict[str, Any]
    checker: Checker

    def check(self, output: str) -> Verdict:
        """Judge one model output for this case, within the checker time limit (see check_runner).

        A check that overruns or raises comes back as an error verdict; it never hangs or raises.
        """
        from workbench.quality.check_runner import run_check

        return run_check(self.checker, output)


@dataclass(frozen=True)
class Pack:
    """A named set of cases and where it was loaded from (a path, or a label for uploads)."""

    name: str
    description: str
    cases: tuple[Case, ...]
    source: str

    def categories(self) -> list[str]:
        """Categories present, in the canonical CATEGORIES order."""
        present = {c.category for c in self.cases}
        return [c for c in CATEGORIES if c in present]

    def by_category(self) -> dict[str, list[Case]]:
        """Cases grouped by category, canonical order; what per-category pass rates are computed on."""
        return {cat: [c for c in self.cases if c.category == cat] for cat in self.categories()}

    def case(self, case_id: str) -> Case:
        """The case with this id (KeyError if none)."""
        for c in self.cases:
            if c.id == case_id:
                return c
        raise KeyError(case_id)


@dataclass(frozen=True)
class Example:
    """A ready-made prompt for the Compare page."""

    category: str
    title: str
    prompt: str
    system: str | None = None


# ------------------------------------------------------------------------------ long passages

_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")


def build_passage(seed_text: str, fact: str, words: int, depth: float) -> str:
    """A long passage of about `words` words made from `seed_text`, with `fact` inserted at `depth`.

    Why generated: long-context cases need 1,500-3,000 words of filler; writing that per case would
    bury the pack. The passage is deterministic (no RNG): the seed text is split into sentences and
    repeated pass after pass, each pass walking the sentences with a different stride so that the
    repeats do not line up into identical paragraphs. `fact` becomes its own sentence at the sentence
    boundary nearest `depth` (0.0 = start, 1.0 = end). Paragraphs of five sentences are separated by
    blank lines. The result depends only on the arguments, so the same pack gives the same prompts
    on every machine.
    """
    sentences = [" ".join(s.split()) for s in _SENTENCE_SPLIT_RE.split(seed_text.strip()) if s.strip()]
    if not sentences:
        raise ValueError("seed text has no sentences")
    if words <= 0:
        raise ValueError("words must be positive")
    if not 0.0 <= depth <= 1.0:
        raise ValueError("depth must be between 0 and 1")
    n = len(sentences)
    strides = [s for s in range(1, n + 1) if math.gcd(s, n) == 1]  # each stride visits every sentence once
    picked: list[str] = []
    count = 0
    rounds = 0
    while count < words:
        stride = strides[rounds % len(strides)]
        start = (rounds * 3) % n
        for i in range(n):
            sentence = sentences[(start + i * stride) % n]
            picked.append(sentence)
            count += len(sentence.split())
            if count >= words:
                break
        rounds += 1
    picked.insert(round(depth * len(picked)), fact.strip())
    paragraphs = [" ".join(picked[i : i + 5]) for i in range(0, len(picked), 5)]
    return "\n\n".join(paragraphs)


# ------------------------------------------------------------------------------ line finding


def _key_line(text: str, key: str, start: int = 1, end: int | None = None) -> int | None:
    """Line of `key = ...` (or a `[key]`/`[cases.key]` table) between lines start and end, outside strings."""
    return toml_key_line(text, key, start, end, table_parent="cases")


class _CaseLocator:
    """Finds the line to blame for a problem in case number i (its key's line, else its header's)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.headers = toml_table_lines(text, "cases")

    def header(self, index: int) -> int | None:
        return self.headers[index] if index < len(self.headers) else None

    def key(self, index: int, key: str) -> int | None:
        start = self.header(index)
        if start is None:
            return None
        end = self.headers[index + 1] if index + 1 < len(self.headers) else None
        return _key_line(self.text, key, start, end) or start


# ------------------------------------------------------------------------------ TOML packs

def _toml_data(text: str, source: str) -> dict[str, Any]:
    """The TOML text parsed within text_formats' bounds; any problem is a PackError on its line."""
    try:
        return load_toml(text)
    except TextFormatError as exc:
        raise PackError(source, exc.line, exc.reason) from None


def _parse_toml_pack(text: str, source: str, default_name: str) -> Pack:
    data = _toml_data(text, source)

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise PackError(
            source,
            _key_line(text, unknown[0]),
            f"unknown top-level key {unknown[0]!r}; a pack has {', '.join(sorted(_TOP_KEYS))}",
        )
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise PackError(source, _key_line(text, "name"), "'name' must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise PackError(source, _key_line(text, "description"), "'description' must be a string")

    fillers = data.get("fillers", {})
    if not isinstance(fillers, dict) or not all(isinstance(v, str) for v in fillers.values()):
        raise PackError(source, _key_line(text, "fillers"), "[fillers] must map names to seed texts (strings)")

    raw_cases = data.get("cases")
    if raw_cases is None:
        raise PackError(source, None, "no cases: add [[cases]] tables")
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        raise PackError(source, _key_line(text, "cases"), "'cases' must be written as [[cases]] tables")
    if not raw_cases:
        raise PackError(source, None, "no cases: add [[cases]] tables")

    where = _CaseLocator(text)
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_cases):
        label = f"case {index + 1}" + (f" ({raw['id']!r})" if isinstance(raw.get("id"), str) else "")

        def fail(key: str | None, reason: str, index: int = index, label: str = label) -> PackError:
            line = where.key(index, key) if key else where.header(index)
            return PackError(source, line, f"{label}: {reason}")

        case = _case_from_mapping(raw, fillers, fail)
        if case.id in seen:
            raise fail("id", f"duplicate id {case.id!r} (first used by case {seen[case.id] + 1})")
        seen[case.id] = index
        cases.append(case)
    return Pack(name.strip(), description.strip(), tuple(cases), source)


def _case_from_mapping(raw: Mapping[str, Any], fillers: Mapping[str, str], fail: Any) -> Case:
    """Validate one [[cases]] table; `fail(key, reason)` builds the PackError pointing at that key."""
    unknown = sorted(set(raw) - _CASE_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key {unknown[0]!r}; a case takes {', '.join(sorted(_CASE_KEYS))}")

    case_id = raw.get("id")
    if case_id is None:
        raise fail(None, "missing 'id'")
    if not isinstance(case_id, str) or not _ID_RE.match(case_id):
        raise fail("id", f"id {case_id!r} must be letters, digits and - _ . : (starting with a letter or digit)")

    category = raw.get("category")
    if category is None:
        raise fail(None, f"missing 'category' (one of: {', '.join(CATEGORIES)})")
    if category not in CATEGORIES:
        raise fail("category", f"unknown category {category!r}; use one of: {', '.join(CATEGORIES)}")

    prompt = raw.get("prompt")
    if prompt is None:
        raise fail(None, "missing 'prompt'")
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail("prompt", "'prompt' must be a non-empty string")

    system = raw.get("system")
    if system is not None and not isinstance(system, str):
        raise fail("system", "'system' must be a string")

    max_tokens = raw.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0):
        raise fail("max_tokens", f"'max_tokens' must be a positive whole number, got {max_tokens!r}")

    if "passage" in raw:
        prompt = _with_passage(prompt, raw["passage"], fillers, fail)

    spec = raw.get("check")
    if spec is None:
        raise fail(None, "missing 'check' (e.g. check = { kind = \"contains\", expected = \"...\" })")
    try:
        checker = build_checker(spec)
    except ValueError as exc:
        raise fail("check", str(exc)) from None
    return Case(case_id, category, prompt, system, max_tokens, dict(spec), checker)


def _with_passage(prompt: str, spec: Any, fillers: Mapping[str, str], fail: Any) -> str:
    """Replace {passage} in the prompt with the passage its `passage` table describes."""
    if not isinstance(spec, dict):
        raise fail(
            "passage", "'passage' must be a table like { filler = \"name\", fact = \"...\", words = 2000, depth = 0.5 }"
        )
    unknown = sorted(set(spec) - _PASSAGE_KEYS)
    missing = sorted(_PASSAGE_KEYS - set(spec))
    if unknown or missing:
        raise fail("passage", f"'passage' takes exactly {', '.join(sorted(_PASSAGE_KEYS))}"
                   + (f"; unknown {unknown}" if unknown else "") + (f"; missing {missing}" if missing else ""))
    names = spec["filler"] if isinstance(spec["filler"], list) else [spec["filler"]]
    absent = [n for n in names if n not in fillers]
    if absent or not names:
        have = ", ".join(sorted(fillers)) or "none"
        raise fail("passage", f"filler {absent or names!r} not found in [fillers] (have: {have})")
    if not isinstance(spec["fact"], str) or not spec["fact"].strip():
        raise fail("passage", "'passage.fact' must be a non-empty string")
    words, depth = spec["words"], spec["depth"]
    if isinstance(words, bool) or not isinstance(words, int) or not 1 <= words <= 20000:
        raise fail("passage", f"'passage.words' must be a whole number from 1 to 20000, got {words!r}")
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not 0 <= depth <= 1:
        raise fail("passage", f"'passage.depth' must be between 0 and 1, got {depth!r}")
    if PASSAGE_PLACEHOLDER not in prompt:
        raise fail("prompt", f"the case has a 'passage' but its prompt has no {PASSAGE_PLACEHOLDER} placeholder")
    seed = "\n".join(fillers[n] for n in names)
    return prompt.replace(PASSAGE_PLACEHOLDER, build_passage(seed, spec["fact"], words, float(depth)))


# ------------------------------------------------------------------------------ CSV packs


def _csv_spec(kind: str, expected: str, tolerance: str) -> dict[str, Any]:
    """The checker spec a CSV row describes (see the module docstring for the column meanings)."""
    if tolerance and kind != "number":
        raise ValueError(f"'tolerance' only applies to the number checker, not {kind!r}")
    if kind in ("exact", "contains"):
        return {"kind": kind, "expected": expected}
    if kind == "regex":
        return {"kind": kind, "pattern": expected}
    if kind == "number":
        spec: dict[str, Any] = {"kind": kind, "expected": expected}
        if tolerance.endswith("%"):
            spec["rel_tol"] = _csv_float(tolerance[:-1], "tolerance") / 100
        elif tolerance:
            spec["abs_tol"] = _csv_float(tolerance, "tolerance")
        return spec
    if kind == "json":
        if not expected.strip():
            return {"kind": kind}
        try:
            schema = json.loads(expected)
        except ValueError as exc:
            raise ValueError(f"'expected' for a json check must be a JSON schema or empty: {exc}") from None
        return {"kind": kind, "schema": schema}
    if kind in ("contains_all", "contains_none"):
        return {"kind": kind, "expected": [p.strip() for p in expected.split("|") if p.strip()]}
    return {"kind": kind, "expected": expected}  # unknown kinds are reported by build_checker


def _csv_float(value: str, column: str) -> float:
    try:
        return float(value.replace(",", ""))
    except ValueError:
        raise ValueError(f"'{column}' must be a number, got {value!r}") from None


def _parse_csv_pack(text: str, source: str, default_name: str) -> Pack:
    try:
        records = csv_records(text)  # (first line, values): a quoted field may span lines
    except TextFormatError as exc:
        raise PackError(source, exc.line, exc.reason) from None
    if not records:
        reason = "empty CSV: expected a header row with prompt, category, checker, expected"
        raise PackError(source, None, reason)
    header = records[0][1]
    columns = [h.strip().lower() for h in header]
    missing = [c for c in _CSV_REQUIRED if c not in columns]
    if missing:
        raise PackError(
            source, 1,
            f"missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'}); "
            "the file must be comma-separated with a header row",
        )
    unknown = [c for c in columns if c not in _CSV_REQUIRED + _CSV_OPTIONAL]
    if unknown:
        raise PackError(source, 1, f"unknown column(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(_CSV_REQUIRED + _CSV_OPTIONAL)}")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise PackError(source, 1, f"duplicate column(s) {', '.join(dupes)}")

    cases: list[Case] = []
    seen: dict[str, int] = {}
    for row_line, row in records[1:]:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            raise PackError(source, row_line, f"row has {len(row)} fields but the header has {len(columns)}")
        values = {c: v.strip() for c, v in zip(columns, row, strict=True)}

        def fail(_key: str | None, reason: str, row_line: int = row_line) -> PackError:
            return PackError(source, row_line, reason)

        try:
            spec = _csv_spec(values["checker"], values["expected"], values.get("tolerance", ""))
        except ValueError as exc:
            raise PackError(source, row_line, str(exc)) from None
        max_tokens: Any = values.get("max_tokens") or None
        if max_tokens is not None:
            max_tokens = int(max_tokens) if max_tokens.isdigit() else max_tokens
        raw = {
            "id": values.get("id") or f"row{row_line}",
            "category": values["category"] or None,
            "prompt": values["prompt"] or None,
            "system": values.get("system") or None,
            "max_tokens": max_tokens,
            "check": spec,
        }
        if not values["checker"]:
            raise PackError(source, row_line, "empty 'checker' column")
        case = _case_from_mapping({k: v for k, v in raw.items() if v is not None}, {}, fail)
        if case.id in seen:
            raise PackError(source, row_line, f"duplicate id {case.id!r} (first used on line {seen[case.id]})")
        seen[case.id] = row_line
        cases.append(case)
    if not cases:
        raise PackError(source, None, "no cases: the CSV has a header but no rows")
    return Pack(default_name, "", tuple(cases), source)


# ------------------------------------------------------------------------------ entry points


def parse_pack(text: str, fmt: str, source: str = "<upload>", name: str | None = None) -> Pack:
    """A pack from text (e.g. a file uploaded in the app). `fmt` is "toml" or "csv"."""
    default_name = name or Path(source).stem or "pack"
    text = text.lstrip("\ufeff")  # spreadsheets write a byte-order mark
    if fmt == "toml":
        return _parse_toml_pack(text, source, default_name)
    if fmt == "csv":
        return _parse_csv_pack(text, source, default_name)
    raise PackError(source, None, f"unknown pack format {fmt!r}; use .toml or .csv")


def load_pack(path: str | Path) -> Pack:
    """A pack from a .toml or .csv file."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("toml", "csv"):
        raise PackError(path, None, "a pack must be a .toml or .csv file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PackError(path, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise PackError(path, None, f"not UTF-8 text: {exc}") from None
    return parse_pack(text, fmt, str(path), path.stem)


def bundled_dir() -> Path:
    """The `prompts/` directory shipped beside the package (starter pack and examples)."""
    return paths.bundled_prompts_dir()


def list_packs(directory: str | Path | None = None) -> list[Path]:
    """Pack files in `directory` (default: the bundled prompts/), sorted by name.

    A .toml file counts as a pack when it has a `[[cases]]` header (so examples.toml is left
    out); every .csv file counts. Files are not validated here: loading one reports its errors.
    """
    directory = Path(directory) if directory is not None else bundled_dir()
    if not directory.is_dir():
        return []
    found: list[Path] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix == ".csv":
            found.append(path)
        elif suffix == ".toml":
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if toml_table_lines(text, "cases"):  # a real header, not one quoted inside a prompt
                found.append(path)
    return found


def load_examples(path: str | Path | None = None) -> dict[str, list[Example]]:
    """Compare-page examples grouped by category (canonical order), from `[[examples]]` tables.

    Each table has `category`, `title`, `prompt` and optionally `system`. Default path: the
    bundled prompts/examples.toml.
    """
    path = Path(path) if path is not None else bundled_dir() / "examples.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PackError(path, None, "file not found") from None
    source = str(path)
    data = _toml_data(text, source)
    raw = data.get("examples")
    if not isinstance(raw, list) or not raw or not all(isinstance(e, dict) for e in raw):
        raise PackError(source, None, "no examples: add [[examples]] tables with category, title, prompt")
    headers = toml_table_lines(text, "examples")
    grouped: dict[str, list[Example]] = {}
    for i, item in enumerate(raw):
        line = headers[i] if i < len(headers) else None
        unknown = sorted(set(item) - {"category", "title", "prompt", "system"})
        if unknown:
            raise PackError(source, line, f"example {i + 1}: unknown key {unknown[0]!r}")
        category = item.get("category")
        if category not in CATEGORIES:
            raise PackError(
                source, line, f"example {i + 1}: category {category!r} is not one of: {', '.join(CATEGORIES)}"
            )
        for key in ("title", "prompt"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise PackError(source, line, f"example {i + 1}: missing or empty {key!r}")
        system = item.get("system")
        if system is not None and not isinstance(system, str):
            raise PackError(source, line, f"example {i + 1}: 'system' must be a string")
        example = Example(category, item["title"].strip(), item["prompt"].strip(), system)
        grouped.setdefault(category, []).append(example)
    return {c: grouped[c] for c in CATEGORIES if c in grouped}
