"""Shared fixtures: the real embedded ladder, a warm worker pool, and an isolated data directory.

The demo ladder is built once in the user's data directory (as `scripts/setup.sh` does) and
reused; everything a test writes (database, machine notes) goes to a per-session temporary
directory so tests never touch a user's runs and ratings.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench.models.ladder import Ladder, ensure_demo_ladder

# Fixtures several test modules share, registered here rather than imported into each module (an
# imported fixture is an unused name that a test's argument then shadows, which linters rightly flag).
pytest_plugins = ["tests.hostile_servers", "tests.models_helpers"]


@pytest.fixture(scope="session")
def demo_ladder() -> Ladder:
    return ensure_demo_ladder(print)


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, demo_ladder: Ladder) -> Path:
    """Point WORKBENCH_DATA_DIR at a fresh directory once the demo ladder exists."""
    from workbench.core.paths import ladders_dir

    path = tmp_path_factory.mktemp("data")
    saved = {k: os.environ.get(k) for k in ("WORKBENCH_DATA_DIR", "WORKBENCH_LADDERS_DIR")}
    os.environ["WORKBENCH_LADDERS_DIR"] = str(ladders_dir())
    os.environ["WORKBENCH_DATA_DIR"] = str(path)
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def pool():
    from workbench.engine.pool import WorkerPool

    p = WorkerPool()
    yield p
    p.shutdown()


@pytest.fixture()
def store(tmp_path: Path):
    from workbench.storage.store import Store

    return Store(tmp_path / "workbench.sqlite3")


@pytest.fixture(scope="session")
def test_output() -> Path:
    """Where tests leave artefacts a person may want to look at (screenshots, reports)."""
    path = Path(os.environ.get("WORKBENCH_TEST_OUTPUT", "test-output"))
    path.mkdir(parents=True, exist_ok=True)
    return path
