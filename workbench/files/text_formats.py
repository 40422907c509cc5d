"""Bounded readers for the TOML and CSV a person uploads (prompt sets, task packs): one home for the limits.

An uploaded file is untrusted. Python's own parsers have edges a hostile or careless file finds:
- tomllib recurses once per nested array or inline table, so a 6 KB file of `[[[[…` raises RecursionError;
- tomllib turns a 5,000-digit integer into an int and Python refuses it with a bare ValueError;
- csv's default (non-strict) mode lets a stray `"` open a quoted field that swallows the rest of the file;
- str.splitlines() also splits on U+2028, U+0085, \\x1c and friends, which a TOML or JSON line may hold,
  so its line numbers drift from the parser's.
Every reader here raises `TextFormatError(line, reason)` instead: the caller turns it into its own error
(PromptSetError, PackError) naming the line. Imports nothing from the workbench.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

MAX_NESTING = 20  # arrays/inline tables/tables inside each other; real prompt sets and packs use 3
MAX_NUMBER_DIGITS = 100  # a TOML integer is 64-bit (19 digits); this only keeps Python's converter away


class TextFormatError(ValueError):
    """A file that cannot be read: `line` (1-based, None when the problem is the whole file) and `reason`."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.line = line
        self.reason = reason


def split_lines(text: str) -> list[str]:
    """Lines split on "\\n" only (a trailing "\\r" dropped), as TOML, JSON Lines and CSV count them."""
    return [line.removesuffix("\r") for line in text.split("\n")]


# ---- TOML ------------------------------------------------------------------------------------------------
def toml_lines(text: str) -> list[tuple[int, str, bool]]:
    """(line number, line, starts inside a multi-line string) for every line of a TOML text.

    Lets errors point at a `[[cases]]` header or a key without being fooled by the same text inside a
    triple-quoted prompt. Lines are numbered as tomllib numbers them (split on "\\n" only).
    """
    return [(n, line, inside) for n, line, inside, _ in _toml_scan(text)]


def toml_table_lines(text: str, name: str) -> list[int]:
    """Line numbers of the `[[name]]` headers (an array of tables), in order, none inside a multi-line string."""
    header = re.compile(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]")
    return [n for n, line, inside in toml_lines(text) if not inside and header.match(line)]


def toml_key_line(text: str, key: str, start: int = 1, end: int | None = None,
                  table_parent: str | None = None) -> int | None:
    """Line of `key = …` from line `start` up to (not including) `end`, outside multi-line strings, or None.
    With `table_parent`, a `[key]` or `[table_parent.key]` table header counts too (a pack's `[fillers]`)."""
    tables = rf"|\[\s*(?:{re.escape(table_parent)}\.)?{re.escape(key)}\s*\]" if table_parent is not None else ""
    key_re = re.compile(rf"^\s*(?:{re.escape(key)}\s*={tables})")
    for n, line, inside in toml_lines(text):
        if n < start or (end is not None and n >= end) or inside:
            continue
        if key_re.match(line):
            return n
    return None


def _toml_scan(text: str) -> list[tuple[int, str, bool, list[tuple[str, int]]]]:
    """toml_lines plus, per line, the code outside strings and comments as (kind, position) marks:
    ("open"/"close" for [ { ] }, "header" for a table header line, "digits" with the run's length)."""
    out: list[tuple[int, str, bool, list[tuple[str, int]]]] = []
    open_delim: str | None = None
    depth = 0
    for number, line in enumerate(split_lines(text), start=1):
        marks: list[tuple[str, int]] = []
        out.append((number, line, open_delim is not None, marks))
        i = 0
        if open_delim is None and depth == 0 and line.lstrip().startswith("["):
            marks.append(("header", 0))  # `[table]` / `[[array]]`: a header, not a value's brackets
            i = len(line) - len(line.lstrip()) + 1
            while i < len(line) and line[i] == "[":
                i += 1
        while i < len(line):
            ch = line[i]
            if open_delim is None:
                if ch == "#":
                    break
                if line.startswith('"""', i) or line.startswith("'''", i):
                    open_delim = line[i : i + 3]
                    i += 3
                    continue
                if ch in "\"'":  # a one-line string: skip to its closing quote
                    j = i + 1
                    while j < len(line) and line[j] != ch:
                        j += 2 if (ch == '"' and line[j] == "\\") else 1
                    i = j + 1
                    continue
                if ch in "[{":
                    depth += 1
                    marks.append(("open", depth))
                elif ch in "]}":
                    depth = max(0, depth - 1)
                elif ch.isdigit():
                    j = i
                    while j < len(line) and (line[j].isdigit() or line[j] == "_"):
                        j += 1
                    marks.append(("digits", j - i))
                    i = j
                    continue
                i += 1
            else:
                if open_delim == '"""' and ch == "\\":
                    i += 2
                    continue
                if line.startswith(open_delim, i):
                    i += 3
                    while i < len(line) and line[i] == open_delim[0]:  # """" ends with one quote inside
                        i += 1
                    open_delim = None
                    continue
                i += 1
    return out


_TOML_LINE_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_EOF_RE = re.compile(r"\s*\(at end of document\)\s*$")


def load_toml(text: str) -> dict[str, Any]:
    """tomllib.loads within bounds: nesting, number length and tomllib's own errors all become TextFormatError."""
    for number, _line, _inside, marks in _toml_scan(text):
        for kind, size in marks:
            if kind == "open" and size > MAX_NESTING:
                raise TextFormatError(number, f"arrays or tables nested deeper than {MAX_NESTING} levels")
            if kind == "digits" and size > MAX_NUMBER_DIGITS:
                raise TextFormatError(number, f"a number {size} digits long (at most {MAX_NUMBER_DIGITS})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(exc, text) from None
    except RecursionError:
        raise TextFormatError(None, f"nested deeper than {MAX_NESTING} levels") from None
    except ValueError as exc:  # a number Python will not convert; the scan above should have caught it
        raise TextFormatError(None, f"invalid TOML: {str(exc)[:120]}") from None
    if _depth(data) > MAX_NESTING:  # dotted keys and [a.b.c…] headers nest without brackets
        raise TextFormatError(None, f"tables nested deeper than {MAX_NESTING} levels")
    return data


def _toml_error(exc: Exception, text: str) -> TextFormatError:
    """tomllib's "Reason (at line 3, column 9)" as line 3; "(at end of document)" is the last line."""
    message = str(exc)
    line = getattr(exc, "lineno", None)  # Python 3.14+ has it as an attribute
    m = _TOML_LINE_RE.search(message)
    eof = _TOML_EOF_RE.search(message)
    if m:
        line = line or int(m.group(1))
        reason = message[: m.start()] + f" (column {m.group(2)})"
    elif eof:
        line = line or max(1, len(split_lines(text.rstrip("\n"))))
        reason = message[: eof.start()] + " (at the end of the file)"
    else:
        reason = message
    return TextFormatError(line, f"invalid TOML: {reason}")


def _depth(value: Any) -> int:
    """How deeply dicts and lists nest in `value`, counted without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


# ---- CSV -------------------------------------------------------------------------------------------------
def csv_records(text: str) -> list[tuple[int, list[str]]]:
    """Every CSV record as (the line it starts on, its values), read strictly.

    A quoted field may span lines (a multi-line prompt); a quote that is never closed, or text after a
    closing quote, is refused with the line of the record it broke instead of swallowing what follows.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out: list[tuple[int, list[str]]] = []
    start = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return out
        except csv.Error as exc:
            reason, hint = str(exc), '; write "" for a quote inside a quoted field'
            if "end of data" in reason:
                reason = 'a quote (") opens a field that is never closed' + hint
            elif reader.line_num > start:
                reason = f'a quote (") opens a field that runs on to line {reader.line_num}' + hint
            elif "expected after" in reason:
                reason = 'text after a closing quote (")' + hint
            raise TextFormatError(start, f"invalid CSV: {reason}") from None
        out.append((start, values))
        start = reader.line_num + 1
