"""Automatic pass/fail checks for one model output, built from a small dict spec (as written in a pack).

Why patterns and not execution: a task pack is run against many quantizations on the user's machine,
so model output is treated as untrusted text. Nothing here executes, imports or `eval`s it; code
cases are judged by regular expressions over the text.

Every checker has a `kind`, a `spec` (the dict it was built from) and `check(output) -> Verdict`.
`build_checker(spec)` turns a pack's `check = { kind = "...", ... }` table into a checker and raises
`ValueError` with a message that names the kind and the offending option when the spec is wrong.

Kinds and their options (all option names are checked; a typo is an error, not a silent default):

- `exact`        `expected` (str); `ignore_case` (bool, default false). Whitespace at both ends of
                 the output is stripped and internal runs of whitespace collapse to one space.
- `contains`     `expected` (str); `ignore_case` (bool, default true).
- `regex`        `pattern` (str, Python `re`, searched anywhere); `flags` (list or string of
                 `i`/`m`/`s`/`x` or IGNORECASE/MULTILINE/DOTALL/VERBOSE, default none).
- `number`       `expected` (number or numeric string); `abs_tol` (alias `tolerance`, default 0);
                 `rel_tol` (fraction of |expected|, default 0). See `extract_answer_number` for which
                 number of the output is judged.
- `json`         `schema` (optional table, a small JSON-Schema subset: see `validate_schema`).
                 See `extract_json` for how the JSON is found in the output.
- `contains_all` `expected` (list of str); `ignore_case` (bool, default true).
- `contains_none` `expected` (list of str); `ignore_case` (bool, default true).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from workbench.core.registry import Registry, UnknownKind

__all__ = [
    "CHECKERS",
    "CHECKER_KINDS",
    "Checker",
    "ContainsAllChecker",
    "ContainsChecker",
    "ContainsNoneChecker",
    "ExactChecker",
    "JsonChecker",
    "NumberChecker",
    "RegexChecker",
    "Verdict",
    "build_checker",
    "describe_spec",
    "extract_answer_number",
    "extract_json",
    "extract_numbers",
    "validate_schema",
]


@dataclass(frozen=True)
class Verdict:
    """Outcome of one check: whether it passed and a one-line reason a person can read."""

    passed: bool
    detail: str
    error: bool = False  # the check itself could not be made (timed out, or the checker raised)

    def __bool__(self) -> bool:
        return self.passed


class Checker(Protocol):
    """What the eval runner needs from any checker (read-only: every checker is a frozen dataclass)."""

    @property
    def kind(self) -> str: ...

    @property
    def spec(self) -> dict[str, Any]: ...

    def check(self, output: str) -> Verdict: ...


def _short(text: str, limit: int = 60) -> str:
    """A quoted, single-line excerpt for verdict details (outputs can be long)."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


# --------------------------------------------------------------------------------------- exact


@dataclass(frozen=True)
class ExactChecker:
    """The whole answer must be the expected text, so a chatty answer fails on purpose."""

    expected: str
    ignore_case: bool = False
    spec: dict[str, Any] = field(default_factory=dict, compare=False)
    kind: str = field(default="exact", init=False)

    def check(self, output: str) -> Verdict:
        got = " ".join(output.split())
        want = " ".join(self.expected.split())
        same = got.casefold() == want.casefold() if self.ignore_case else got == want
        if same:
            return Verdict(True, f"output equals {_short(want)}")
        return Verdict(False, f"expected exactly {_short(want)}, got {_short(got)}")


# ------------------------------------------------------------------------------------ contains


@dataclass(frozen=True)
class ContainsChecker:
    """The expected text appears somewhere in the output."""

    expected: str
    ignore_case: bool = True
    spec: dict[str, Any] = field(default_factory=dict, compare=False)
    kind: str = field(default="contains", init=False)

    def check(self, output: str) -> Verdict:
        hay, needle = (output.casefold(), self.expected.casefold()) if self.ignore_case else (output, self.expected)
        if needle in hay:
            return Verdict(True, f"found {_short(self.expected)}")
        return Verdict(False, f"{_short(self.expected)} not found in {_short(output)}")


@dataclass(frozen=True)
class _TextsChecker:
    """A list of texts looked for in the output; a subclass says which outcome passes."""

    expected: tuple[str, ...]
    ignore_case: bool = True
    spec: dict[str, Any] = field(default_factory=dict, compare=False)

    def present(self, output: str) -> list[bool]:
        """For each expected text, whether it appears (case-folded on both sides when ignore_case)."""
        fold = str.casefold if self.ignore_case else str
        hay = fold(output)
        return [fold(s) in hay for s in self.expected]


@dataclass(frozen=True)
class ContainsAllChecker(_TextsChecker):
    """Every listed text appears (e.g. all names an extraction should return)."""

    kind: str = field(default="contains_all", init=False)

    def check(self, output: str) -> Verdict:
        missing = [s for s, here in zip(self.expected, self.present(output), strict=True) if not here]
        if not missing:
            return Verdict(True, f"found all {len(self.expected)}: {', '.join(map(repr, self.expected))}")
        return Verdict(False, f"missing {len(missing)} of {len(self.expected)}: {', '.join(map(repr, missing))}")


@dataclass(frozen=True)
class ContainsNoneChecker(_TextsChecker):
    """None of the listed texts appears (e.g. a summary must not leak a detail it was told to drop)."""

    kind: str = field(default="contains_none", init=False)

    def check(self, output: str) -> Verdict:
        found = [s for s, here in zip(self.expected, self.present(output), strict=True) if here]
        if not found:
            return Verdict(True, f"none of {len(self.expected)} forbidden texts found")
        return Verdict(False, f"found forbidden {', '.join(map(repr, found))}")


# --------------------------------------------------------------------------------------- regex

_FLAG_NAMES: dict[str, re.RegexFlag] = {
    "i": re.IGNORECASE,
    "ignorecase": re.IGNORECASE,
    "m": re.MULTILINE,
    "multiline": re.MULTILINE,
    "s": re.DOTALL,
    "dotall": re.DOTALL,
    "x": re.VERBOSE,
    "verbose": re.VERBOSE,
}


def _parse_flags(value: Any) -> re.RegexFlag:
    """Accept ["IGNORECASE", "m"], "im" or "IGNORECASE|DOTALL" so packs can write what they know."""
    if value is None:
        return re.RegexFlag(0)
    if isinstance(value, str):
        compact = value.strip()
        if compact and set(compact.lower()) <= set("imsx"):
            items = list(compact)  # "im": one letter per flag, as in (?im)
        else:
            items = [p for p in re.split(r"[|,\s]+", compact) if p]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ValueError(f"regex checker: 'flags' must be a list of flag names or a string like \"im\", got {value!r}")
    flags = re.RegexFlag(0)
    for item in items:
        key = item.strip().lower().removeprefix("re.")
        if key not in _FLAG_NAMES:
            raise ValueError(
                f"regex checker: unknown flag {item!r} (use i/IGNORECASE, m/MULTILINE, s/DOTALL, x/VERBOSE)"
            )
        flags |= _FLAG_NAMES[key]
    return flags


@dataclass(frozen=True)
class RegexChecker:
    """A pattern is found anywhere in the output (`re.search`); how code cases are judged."""

    pattern: str
    flags: re.RegexFlag = re.RegexFlag(0)
    spec: dict[str, Any] = field(default_factory=dict, compare=False)
    kind: str = field(default="regex", init=False)
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.pattern, self.flags)
        except re.error as exc:
            raise ValueError(f"regex checker: pattern {self.pattern!r} does not compile: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)

    def check(self, output: str) -> Verdict:
        m = self._compiled.search(output)
        if m:
            # Lookahead-only patterns match the empty string: show where instead.
            shown = m.group(0) or output[m.start() : m.start() + 60]
            return Verdict(True, f"pattern matched {_short(shown)}")
        return Verdict(False, f"pattern {self.pattern!r} not found in {_short(output)}")


# -------------------------------------------------------------------------------------- number

# A number as people and models write it: optional sign (ASCII or Unicode minus), thousands
# separated by commas in groups of three ("1,234,567"), optional decimals and exponent.
# "1,2,3" is read as three numbers; "1,234" as one. Digits glued to letters ("Q4", "x2") are not
# numbers, so labels and identifiers in an answer do not count.
_NUMBER_RE = re.compile(
    r"""
    (?<![\w.])                                # not the tail of a word or a decimal
    (?P<sign>[-\u2212+])?
    (?P<body>
        \d{1,3}(?:,\d{3})+(?:\.\d+)?          # 1,234 or 1,234.5
      | \d+(?:\.\d+)?                         # 1234 or 1234.5
      | \.\d+                                 # .5
    )
    (?P<exp>[eE][-+]?\d+)?
    (?![\d])
    """,
    re.VERBOSE,
)

# A sign is a minus only when it is not a binary operator between two numbers ("7-2" is not -2).
_OPERAND_BEFORE_RE = re.compile(r"[\d)\]]\s*$")

# Phrases after which the final answer is stated; the number judged is the first one after the
# last such marker. Covers "Answer: 42", "The answer is 42", "Final answer: 42", "#### 42" and
# "\boxed{42}".
_ANSWER_MARKER_RE = re.compile(
    r"(?:\banswer\b\s*(?:is|=|:)?|####|\\boxed\{|\bresult\s*(?:is|=|:)|\btotal\s*(?:is|=|:))",
    re.IGNORECASE,
)


def extract_numbers(text: str) -> list[float]:
    """All numbers in `text`, in order, as floats ("1,234" -> 1234.0, "−3.5" -> -3.5, "2e3" -> 2000.0)."""
    values: list[float] = []
    for m in _NUMBER_RE.finditer(text):
        sign = m.group("sign") or ""
        if sign and _OPERAND_BEFORE_RE.search(text[: m.start()]):
            sign = ""  # "10-4": subtraction, the number is 4
        literal = m.group("body").replace(",", "") + (m.group("exp") or "")
        value = float(literal)
        values.append(-value if sign in ("-", "\u2212") else value)
    return values


# End of the sentence that states the answer: a newline, or a full stop not inside a decimal.
_SENTENCE_END_RE = re.compile(r"\n|\.(?!\d)")
# "2 + 3 = 5", "(4 × 3) - 2 = 10": only digits, operators and brackets before an "=".
_WORKED_EQUATION_RE = re.compile(r"[\s\d.,+\-\u2212*/x\u00d7\u00f7^()$%:]*\d[\s\d.,+\-\u2212*/x\u00d7\u00f7^()$%]*=")


def extract_answer_number(text: str) -> tuple[float | None, str]:
    """The number a reader would take as the answer, and how it was chosen.

    Rule: if the output states an answer with a marker ("answer is", "Answer:", "####", "\\boxed{",
    "result is", "total is"), judge the first number after the *last* marker, except that when the
    rest of that sentence is a worked equation ("The answer is 2 + 3 = 5.", only digits and
    operators before the "=") the number after its
    last "=" is judged. Without a marker, judge the *last* number in the text. Why: models that show
    their work end on the answer, and a model that announces "The answer is 12" and then explains
    ("because 3 times 4 ...") should be judged on 12. Number words ("twelve") and fractions ("3/4"
    reads as 3 and 4) are not interpreted.
    """
    markers = list(_ANSWER_MARKER_RE.finditer(text))
    if markers:
        tail = text[markers[-1].end():]
        end = _SENTENCE_END_RE.search(tail)
        sentence = tail[: end.start()] if end else tail
        if _WORKED_EQUATION_RE.match(sentence):
            after_eq = extract_numbers(sentence.rsplit("=", 1)[1])
            if after_eq:
                return after_eq[0], "number after '=' in the answer sentence"
        after = extract_numbers(tail)
        if after:
            return after[0], "first number after the answer marker"
    numbers = extract_numbers(text)
    if numbers:
        return numbers[-1], "last number in the output"
    return None, "no number in the output"


def _as_number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"number checker: '{what}' must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"number checker: '{what}' must be finite, got {value!r}")
        return float(value)
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
        return extract_numbers(value.strip())[0]  # "1,234", "-7", "4.5" as written in a CSV
    raise ValueError(f"number checker: '{what}' must be a number, got {value!r}")


def _fmt(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


@dataclass(frozen=True)
class NumberChecker:
    """The answer number equals `expected` within max(abs_tol, rel_tol*|expected|) (inclusive)."""

    expected: float
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    spec: dict[str, Any] = field(default_factory=dict, compare=False)
    kind: str = field(default="number", init=False)

    @property
    def tolerance(self) -> float:
        return max(self.abs_tol, self.rel_tol * abs(self.expected))

    def check(self, output: str) -> Verdict:
        got, how = extract_answer_number(output)
        if got is None:
            return Verdict(False, f"expected {_fmt(self.expected)}, but the output has no number: {_short(output)}")
        tol = self.tolerance
        # A hair of slack so that 0.1+0.2 style float noise does not flip an edge case.
        slack = 1e-9 * max(1.0, abs(self.expected))
        ok = abs(got - self.expected) <= tol + slack
        within = f" (±{_fmt(tol)})" if tol else ""
        verdict = "matches" if ok else "does not match"
        return Verdict(ok, f"{_fmt(got)} ({how}) {verdict} {_fmt(self.expected)}{within}")


# ---------------------------------------------------------------------------------------- json

_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)


def _json_candidates(text: str) -> list[Any]:
    """Every JSON object/array that parses, in order of appearance; fenced blocks first."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    for block in _FENCE_RE.findall(text):
        try:
            found.append(json.loads(block.strip()))
        except ValueError:
            pass
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except ValueError:
                i += 1
                continue
            found.append(value)
            i = end
        else:
            i += 1
    return found


def extract_json(text: str, want_type: str | None = None) -> Any:
    """The first JSON object or array in `text`, or raise ValueError.

    Looks inside ``` fenced blocks first (where models usually put JSON), then scans the prose for
    the first `{` or `[` that starts a valid JSON value. If `want_type` is "object" or "array", the
    first value of that type wins, so a stray "[1]" in prose does not hide the object after it.
    """
    candidates = [c for c in _json_candidates(text) if isinstance(c, (dict, list))]
    if not candidates:
        raise ValueError("no JSON object or array found")
    if want_type in ("object", "array"):
        py = dict if want_type == "object" else list
        typed = [c for c in candidates if isinstance(c, py)]
        if typed:
            return typed[0]
    return candidates[0]


_SCHEMA_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")
_SCHEMA_KEYWORDS = {"type", "required", "properties", "items", "enum", "minimum", "maximum"}
_SCHEMA_ANNOTATIONS = {"title", "description", "$schema", "$comment", "examples", "default"}


def _check_schema_spec(schema: Any, where: str = "schema") -> None:
    """Reject schemas using keywords this subset does not enforce, so nobody trusts a check that is not made."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"json checker: {where} must be a table/object, got {type(schema).__name__}")
    unknown = set(schema) - _SCHEMA_KEYWORDS - _SCHEMA_ANNOTATIONS
    if unknown:
        raise ValueError(
            f"json checker: {where} uses unsupported keyword(s) {sorted(unknown)}; "
            f"supported: {sorted(_SCHEMA_KEYWORDS)}"
        )
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        bad = [t for t in types if t not in _SCHEMA_TYPES]
        if bad or not types:
            raise ValueError(f"json checker: {where}.type must be one of {list(_SCHEMA_TYPES)}, got {schema['type']!r}")
    if "required" in schema and not (
        isinstance(schema["required"], list) and all(isinstance(k, str) for k in schema["required"])
    ):
        raise ValueError(f"json checker: {where}.required must be a list of property names")
    if "properties" in schema:
        if not isinstance(schema["properties"], Mapping):
            raise ValueError(f"json checker: {where}.properties must be a table of schemas")
        for key, sub in schema["properties"].items():
            _check_schema_spec(sub, f"{where}.properties.{key}")
    if "items" in schema:
        _check_schema_spec(schema["items"], f"{where}.items")
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise ValueError(f"json checker: {where}.enum must be a list")
    for bound in ("minimum", "maximum"):
        if bound in schema and (isinstance(schema[bound], bool) or not isinstance(schema[bound], (int, float))):
            raise ValueError(f"json checker: {where}.{bound} must be a number")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, want: str) -> bool:
    got = _json_type(value)
    if want == "number":
        return got in ("integer", "number")
    if want == "integer":
        return got == "integer" or (got == "number" and float(value).is_integer())
    return got == want


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: true is not 1, but 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def validate_schema(value: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """Problems with `value` under a small JSON-Schema subset; an empty list means valid.

    Supported: type (one name or a list), required, properties, items (one schema for every
    element), enum, minimum, maximum (inclusive). Properties not listed are allowed, as in JSON
    Schema. Written here to keep the dependency list short and the messages plain.
    """
    problems: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(value, t) for t in types):
            problems.append(f"{path}: expected {' or '.join(types)}, got {_json_type(value)}")
            return problems  # further keywords would only add noise
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        problems.append(f"{path}: {json.dumps(value)} is not one of {json.dumps(schema['enum'])}")
    is_num = _json_type(value) in ("integer", "number")
    if is_num and "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if is_num and "maximum" in schema and value > schema["maximum"]:
        problems.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}: missing required property {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems.extend(validate_schema(value[key], sub, f"{path}.{key}"))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems.extend(validate_schema(item, schema["items"], f"{path}[{i}]"))
    return problems


@dataclass(frozen=True)
class JsonChecker:
    """The output contains valid JSON that fits the (optional) schema."""

    schema: Mapping[str, Any] | None = None
    spec: dict[str, Any] = field(default_factory=dict, compare=False)
    kind: str = field(default="json", init=False)

    def __post_init__(self) -> None:
        if self.schema is not None:
            _check_schema_spec(self.schema)

    def check(self, output: str) -> Verdict:
        top = self.schema.get("type") if self.schema else None
        try:
            value = extract_json(output, top if isinstance(top, str) else None)
        except ValueError as exc:
            return Verdict(False, f"{exc} in {_short(output)}")
        if not self.schema:
            return Verdict(True, "output contains valid JSON")
        problems = validate_schema(value, self.schema)
        if problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            return Verdict(False, "; ".join(problems[:3]) + more)
        return Verdict(True, "JSON is valid and fits the schema")


# ------------------------------------------------------------------------------------- builder


def _opt_bool(spec: Mapping[str, Any], kind: str, key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{kind} checker: '{key}' must be true or false, got {value!r}")
    return value


def _req_str(spec: Mapping[str, Any], kind: str, key: str) -> str:
    if key not in spec:
        raise ValueError(f"{kind} checker needs '{key}'")
    value = spec[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} checker: '{key}' must be a non-empty string, got {value!r}")
    return value


def _req_str_list(spec: Mapping[str, Any], kind: str, key: str) -> tuple[str, ...]:
    if key not in spec:
        raise ValueError(f"{kind} checker needs '{key}' (a list of strings)")
    value = spec[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{kind} checker: '{key}' must be a non-empty list of non-empty strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class CheckerKind:
    """One kind of check: the options a spec of it may carry (besides `kind`) and how it is built from one."""

    options: frozenset[str]
    build: Callable[[Mapping[str, Any]], Checker]


# Every checker kind, registered beside its builder below, in the order packs and messages list them.
CHECKERS: Registry[CheckerKind] = Registry("checker kind")


def checker_kind(name: str, *options: str) -> Callable[[Callable[[Mapping[str, Any]], Checker]], Callable[[Mapping[str, Any]], Checker]]:
    """Register the decorated builder as checker kind `name`, taking `options`: the one way to add a kind."""
    def register(build: Callable[[Mapping[str, Any]], Checker]) -> Callable[[Mapping[str, Any]], Checker]:
        CHECKERS.add(name, CheckerKind(frozenset(options), build))
        return build

    return register


@checker_kind("exact", "expected", "ignore_case")
def _build_exact(spec: Mapping[str, Any]) -> Checker:
    return ExactChecker(_req_str(spec, "exact", "expected"), _opt_bool(spec, "exact", "ignore_case", False), dict(spec))


@checker_kind("contains", "expected", "ignore_case")
def _build_contains(spec: Mapping[str, Any]) -> Checker:
    return ContainsChecker(
        _req_str(spec, "contains", "expected"), _opt_bool(spec, "contains", "ignore_case", True), dict(spec)
    )


@checker_kind("regex", "pattern", "flags")
def _build_regex(spec: Mapping[str, Any]) -> Checker:
    return RegexChecker(_req_str(spec, "regex", "pattern"), _parse_flags(spec.get("flags")), dict(spec))


@checker_kind("number", "expected", "abs_tol", "tolerance", "rel_tol")
def _build_number(spec: Mapping[str, Any]) -> Checker:
    if "expected" not in spec:
        raise ValueError("number checker needs 'expected'")
    if "abs_tol" in spec and "tolerance" in spec:
        raise ValueError("number checker: give 'abs_tol' or its alias 'tolerance', not both")
    tol_key = "tolerance" if "tolerance" in spec else "abs_tol"
    abs_tol = _as_number(spec.get(tol_key, 0), tol_key)
    rel_tol = _as_number(spec.get("rel_tol", 0), "rel_tol")
    if abs_tol < 0 or rel_tol < 0:
        raise ValueError("number checker: tolerances must not be negative")
    return NumberChecker(_as_number(spec["expected"], "expected"), abs_tol, rel_tol, dict(spec))


@checker_kind("json", "schema")
def _build_json(spec: Mapping[str, Any]) -> Checker:
    schema = spec.get("schema")
    return JsonChecker(dict(schema) if isinstance(schema, Mapping) else schema, dict(spec))


@checker_kind("contains_all", "expected", "ignore_case")
def _build_contains_all(spec: Mapping[str, Any]) -> Checker:
    return ContainsAllChecker(
        _req_str_list(spec, "contains_all", "expected"),
        _opt_bool(spec, "contains_all", "ignore_case", True),
        dict(spec),
    )


@checker_kind("contains_none", "expected", "ignore_case")
def _build_contains_none(spec: Mapping[str, Any]) -> Checker:
    return ContainsNoneChecker(
        _req_str_list(spec, "contains_none", "expected"),
        _opt_bool(spec, "contains_none", "ignore_case", True),
        dict(spec),
    )


CHECKER_KINDS: tuple[str, ...] = CHECKERS.names()


def build_checker(spec: Mapping[str, Any]) -> Checker:
    """A checker from its spec, e.g. {"kind": "number", "expected": 42, "abs_tol": 0.5}.

    Raises ValueError naming the problem: missing or unknown kind, missing option, an option the
    kind does not take (typos are caught, not ignored), a wrong type, a regex that does not compile
    or a schema keyword this subset does not enforce.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"a check must be a table like {{ kind = \"contains\", expected = \"...\" }}, got {spec!r}")
    kind = spec.get("kind")
    if kind is None:
        raise ValueError(f"check has no 'kind'; use one of: {', '.join(CHECKER_KINDS)}")
    try:
        checker = CHECKERS.get(kind)
    except UnknownKind as exc:  # "unknown checker kind 'x'; use one of: …", a ValueError as every spec mistake is
        raise ValueError(str(exc)) from None
    allowed = checker.options
    unknown = sorted(set(spec) - allowed - {"kind"})
    if unknown:
        raise ValueError(
            f"{kind} checker does not take {', '.join(map(repr, unknown))}; it takes: {', '.join(sorted(allowed))}"
        )
    return checker.build(spec)


def describe_spec(spec: Mapping[str, Any]) -> str:
    """A short human label for a check, for tables ("number = 42 ±0.5", "regex /def\\s+add/")."""
    kind = spec.get("kind", "?")
    if kind == "number":
        tol = spec.get("abs_tol", spec.get("tolerance"))
        rel = spec.get("rel_tol")
        extra = (f" ±{tol}" if tol else "") + (f" ±{rel:.0%}" if rel else "")
        return f"number = {spec.get('expected')}{extra}"
    if kind == "regex":
        return f"regex /{spec.get('pattern')}/"
    if kind == "json":
        return "json (schema)" if spec.get("schema") else "json"
    if kind in ("contains_all", "contains_none"):
        items = spec.get("expected") or []
        items = [items] if isinstance(items, str) else items
        return f"{kind} [{', '.join(map(str, items))}]"
    return f"{kind} {spec.get('expected')!r}"
