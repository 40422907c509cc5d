"""Where the workbench keeps its files: one data directory, overridable for tests and users.

`WORKBENCH_DATA_DIR` wins; otherwise the platform's user data directory (platformdirs).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "quant-workbench"


def data_dir() -> Path:
    """The directory that holds the database, built ladders and machine notes (created on demand)."""
    override = os.environ.get("WORKBENCH_DATA_DIR")
    path = Path(override).expanduser() if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    """The SQLite database of runs, outputs, metrics and ratings."""
    return data_dir() / "workbench.sqlite3"


def ladders_dir() -> Path:
    """Parent directory of ladders the workbench built (the embedded demo ladder among them).

    `WORKBENCH_LADDERS_DIR` overrides it (tests share one built ladder across data directories).
    """
    override = os.environ.get("WORKBENCH_LADDERS_DIR")
    path = Path(override).expanduser() if override else data_dir() / "ladders"
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_notes_path() -> Path:
    """JSON file of facts learned about this machine (e.g. that llama.cpp's extra CPU buffers crash here)."""
    return data_dir() / "machine.json"


def hf_cache_dir() -> Path:
    """The standard HF hub cache, resolved like huggingface_hub does but at call time."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.path.expanduser(os.environ[var])))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def bundled_prompts_dir() -> Path:
    """The `prompts/` folder shipped beside the package: packs, prompt sets and the reference text."""
    return Path(__file__).resolve().parents[2] / "prompts"
