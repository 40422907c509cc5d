"""A verdict only from a header that was read (issue 24), on Recommend too: a ladder file whose header the bounded
parser refuses is left out of the candidates, named with the reason on the page, in the report, the CLI and its
JSON, and never gets a fit verdict; the other files are still recommended from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.gguf_factory import hostile_files
from workbench.decide import report
from workbench.decide.recommend import Constraints
from workbench.decide.study import study, study_json
from workbench.decide.targets import THIS_MACHINE
from workbench.models.ladder import Ladder, load_ladder
from workbench.storage.store import Store

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
REFUSED = "header unreadable: header declares an array of 1,073,741,824"


@pytest.fixture()
def ladder_with_a_bad_file(demo_ladder: Ladder, tmp_path: Path) -> Path:
    evil, _ = hostile_files(tmp_path)["huge array"]
    q2 = demo_ladder.by_label("Q2_K")
    bad = replace(q2, path=str(evil), label="Evil", size_bytes=evil.stat().st_size)
    folder = tmp_path / "with-a-bad-file"
    folder.mkdir()
    files = [asdict(demo_ladder.reference), asdict(q2), asdict(bad)]
    (folder / "ladder.json").write_text(json.dumps({"name": "with a bad file", "files": files}))
    return folder


def test_a_refused_header_is_left_out_and_named_everywhere(ladder_with_a_bad_file: Path, tmp_path: Path) -> None:
    lad = load_ladder(ladder_with_a_bad_file)
    s = study(Store(tmp_path / "db.sqlite3"), lad, Constraints(THIS_MACHINE, 4096))
    assert [label for label, _ in s.unreadable] == ["Evil"] and s.unreadable[0][1].startswith(REFUSED)
    assert all(f.key.base != "Evil" for rows in s.by_target.values() for f in rows)  # no verdict anywhere
    assert {f.key.base for f in s.facts} == {"F16", "Q2_K"}
    out = study_json(s)
    assert out["unreadable"] == [{"label": "Evil", "how": s.unreadable[0][1]}]
    assert all(c["label"].split(" · ")[0] != "Evil" for c in out["candidates"])
    for text in (report.report_html(s), report.report_markdown(s)):
        assert "Evil is left out, with no verdict: " + REFUSED in text


def test_the_cli_and_the_page_say_so(ladder_with_a_bad_file: Path, tmp_path: Path, models_env: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "workbench", "recommend", "--ladder", str(ladder_with_a_bad_file),
                           "--db", str(tmp_path / "db.sqlite3"), "--ctx", "4096", "--json"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr  # 1: nothing measured to pick
    out = json.loads(proc.stdout)
    assert out["unreadable"][0]["label"] == "Evil" and out["unreadable"][0]["how"].startswith(REFUSED)
    listed = models_env / "ladders" / "with-a-bad-file"  # among the ladders the app lists (models_env's own folder)
    shutil.copytree(ladder_with_a_bad_file, listed)
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["ladder_dir"] = str(listed)
    at.switch_page("pages/recommend.py")
    at.run()
    assert not at.exception, at.exception
    assert any(e.value.startswith("Evil is left out, with no verdict: " + REFUSED) for e in at.error)
