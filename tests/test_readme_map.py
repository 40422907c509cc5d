"""README's "How it is built" map matches the tree: every module is named there, and every name there exists.

A newcomer answers "where is the code that decides X?" from that map, so a module missing from it is a module
nobody finds, and a stale line sends them to a file that is gone (issue 25).

The convention: the map is the first fenced block of the section, an indented tree. Each line is one entry: a
file or folder name first (folders end in `/`), indented two spaces under its folder, then what it owns. An
entry's path is the folders above it joined with its name, e.g. `workbench/engine/worker.py` is the line
`worker.py` under `engine/` under `workbench/`. Every module of `workbench/`, `ui/` and `pages/` must have its
own line (`__init__.py` excepted: the folder's line and the package's docstring say what it owns), and so must
`app.py` and every top-level folder that git tracks. Every entry must exist and say what it owns.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## How it is built"


def _map_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1]
    section = re.split(r"^#{2,3} ", section, maxsplit=1, flags=re.MULTILINE)[0]
    fence = re.search(r"^```[^\n]*\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert fence, f"{SECTION!r} has no fenced map"
    return [line for line in fence[1].splitlines() if line.strip()]


def _entries() -> dict[str, str]:
    """Path -> what the map says it owns, read from the indented tree (see the module docstring)."""
    entries: dict[str, str] = {}
    folders: list[str] = []  # the folder at each depth above the current line
    for line in _map_lines():
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, f"map line indented by {indent} spaces, not a multiple of 2: {line!r}"
        depth = indent // 2
        assert depth <= len(folders), f"map line deeper than the folder above it: {line!r}"
        name, _, owns = line.strip().partition(" ")
        folders = folders[:depth]
        path = "".join(folders) + name
        assert path.rstrip("/") not in entries, f"the map names {path} twice"
        entries[path.rstrip("/")] = owns.strip()
        if name.endswith("/"):
            folders.append(name)
    return entries


def _required() -> set[str]:
    """Every path the map must name: modules of workbench/, ui/ and pages/ (not __init__.py), app.py."""
    modules = [p for top in ("workbench", "ui", "pages") for p in (ROOT / top).rglob("*.py")]
    paths = {p.relative_to(ROOT).as_posix() for p in modules if p.name != "__init__.py" and "__pycache__" not in p.parts}
    return paths | {"app.py"}


def test_every_module_is_on_the_map() -> None:
    named = set(_entries())
    missing = sorted(_required() - named)
    assert not missing, f"README's {SECTION!r} does not name: {', '.join(missing)} (add one line each: what it owns)"


def test_every_top_level_folder_is_on_the_map() -> None:
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: which top-level folders belong to the project is unknown")
    folders = {line.split("/", 1)[0] for line in tracked.splitlines() if "/" in line}
    missing = sorted(folders - set(_entries()))
    assert not missing, f"README's {SECTION!r} does not name the folders: {', '.join(f + '/' for f in missing)}"


def test_every_entry_on_the_map_exists_and_says_what_it_owns() -> None:
    entries = _entries()
    assert len(entries) > 50  # the map was found and read, not an empty block
    stale = sorted(path for path in entries if not (ROOT / path).exists())
    folders = {path for line, path in zip(_map_lines(), entries, strict=True) if line.split()[0].endswith("/")}
    stale += sorted(path + "/ (not a folder)" for path in folders if (ROOT / path).is_file())
    assert not stale, f"README's {SECTION!r} names what is not in the tree: {', '.join(stale)}"
    silent = sorted(path for path, owns in entries.items() if not owns)
    assert not silent, f"these map lines do not say what they own: {', '.join(silent)}"
