"""The decision end to end on the real embedded ladder: evidence collected by the recommendation's own "Run it"
jobs (divergence with a KV-cache variant, a comparison for speed), then the study, its JSON, its report, the CLI
and the Recommend page."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.core.jobs import Job
from workbench.decide import actions, report
from workbench.decide.recommend import Action, Constraints
from workbench.decide.study import study, study_json
from workbench.models.ladder import Ladder
from workbench.runs import timing
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LAPTOP = "16 GB laptop"
KV = ("f16", "q8_0")
CANDIDATES = ("Q8_0", "Q4_K_M", "Q4_K_M · KV q8_0")


def _finish(job: Job) -> None:
    job.start()
    assert job.join(600), "the job did not finish in time"
    assert job.failure is None and not job.cancelled, job.failure


@pytest.fixture(scope="module")
def evidence_db(tmp_path_factory: pytest.TempPathFactory, pool, demo_ladder: Ladder) -> Path:
    """A database holding what the recommendation's own buttons collect for three candidates."""
    path = tmp_path_factory.mktemp("decide") / "workbench.db"
    store = Store(path)
    small = Ladder(demo_ladder.name, [f for f in demo_ladder.files if f.label in ("F16", "Q8_0", "Q4_K_M")],
                   demo_ladder.provenance, demo_ladder.directory)
    first = study(store, small, Constraints(LAPTOP, 8192, min_tok_s=1), KV)
    kinds = {a.kind: a for a in first.recommendation.actions}
    assert first.recommendation.recommended is None or "divergence" in kinds
    for kind in ("divergence", "speed"):
        _finish(actions.job_for(Action(kind, CANDIDATES, ""), pool, store, small))
    return path


def test_the_study_recommends_from_measured_evidence(evidence_db: Path, demo_ladder: Ladder) -> None:
    store = Store(evidence_db)
    s = study(store, demo_ladder, Constraints(LAPTOP, 8192, min_tok_s=1), KV)
    by_label = {f.label: f for f in s.facts}
    # the KV variant was measured as itself: its own divergence, apart from the plain file's
    q4, q4kv = by_label["Q4_K_M"], by_label["Q4_K_M · KV q8_0"]
    assert q4.kld is not None and q4kv.kld is not None and q4kv.kld != q4.kld
    assert q4kv.evidence.divergence is not None and "reference text" in q4kv.evidence.divergence.how
    # speed: the median of quiet windows; on a busy machine (every window disturbed, each timed again up to the
    # limit) there is none, and the speed run says so in words instead
    speed_runs = [store.get_run(r["id"]) for r in store.list_runs(kind="compare")]
    lost = {r["label"] for run in speed_runs for r in run["results"] if r["disturbed"] == 1}
    missing = " ".join(timing.unmeasured(run) or "" for run in speed_runs)
    for fact in (q4, q4kv):
        assert fact.evidence.speed_here is not None or (fact.label in lost and "Run it again" in missing), \
            (fact.label, missing)
    # the KV cache is part of the memory on the target: q8_0 needs less than f16 at 8k
    assert q4kv.needed_bytes < q4.needed_bytes
    assert q4kv.detail["fit"].kv_bytes < q4.detail["fit"].kv_bytes * 0.6
    rec = s.recommendation
    assert rec.recommended is not None and rec.recommended.label == "F16"  # best quality, and it fits the laptop
    assert rec.reasons[0].startswith("F16: fits") or rec.reasons[0].startswith("F16: CPU only")
    # smallest that keeps the mean KLD at most the plain Q4_K_M's: the q8_0 cache wins on memory
    s2 = study(store, demo_ladder, Constraints(LAPTOP, 8192, max_kld=max(q4.kld, q4kv.kld) + 1e-9, prefer="memory"), KV)
    assert s2.recommendation.recommended is not None
    assert s2.recommendation.recommended.label in ("Q4_K_M · KV q8_0", "Q2_K", "Q2_K · KV q8_0")
    # candidates that were never measured are said to be missing, not guessed
    assert any(a.kind == "divergence" and "Q2_K" in a.labels for a in s2.recommendation.actions) or \
        s2.recommendation.recommended.label.startswith("Q4_K_M")


def test_json_and_report_carry_the_recommendation(evidence_db: Path, demo_ladder: Ladder) -> None:
    s = study(Store(evidence_db), demo_ladder, Constraints(LAPTOP, 8192, min_tok_s=1), KV)
    out = study_json(s)
    assert out["recommended"] == s.recommendation.recommended.label
    row = next(c for c in out["candidates"] if c["label"] == "Q4_K_M · KV q8_0")
    assert row["kv_type"] == "q8_0" and row["n_ctx"] == 8192
    assert set(row["predicted_bytes_by_target"]) >= {"this machine", "8 GB laptop", LAPTOP, "24 GB GPU desktop"}
    assert row["verdict_by_target"]["24 GB GPU desktop"] == "gpu_full"
    assert row["quality"]["mean_kld"] is not None and row["quality"]["published_kld"] is None  # no published KV figure
    q4 = next(c for c in out["candidates"] if c["label"] == "Q4_K_M")
    assert q4["quality"]["published_kld"] == pytest.approx(0.031273)
    json.dumps(out)  # plain data

    html = report.report_html(s)
    assert f"Ship <strong>{s.recommendation.recommended.label}</strong>" in html
    svg = html[html.index("<svg"): html.index("</svg>") + 6]
    ET.fromstring(svg)  # well-formed
    assert "<script" not in html and "Fit per target at 8k" in html and "24 GB GPU desktop" in html
    assert "published" in html and "predicted" in html and "estimate" in html and "measured" in html
    md = report.report_markdown(s)
    assert md.startswith("# Which quantization to ship") and "## Evidence" in md


def test_cli_recommend_json_and_exit_codes(evidence_db: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workbench", "recommend", "--demo", "--db", str(evidence_db), *args],
                              capture_output=True, text=True, timeout=300)

    html = evidence_db.parent / "rec.html"
    proc = run("--target", LAPTOP, "--ctx", "8192", "--min-tok-s", "1", "--kv", "f16,q8_0", "--json", "--out", str(html))
    assert proc.returncode == 0, proc.stderr
    assert "<svg" in html.read_text() and "Ship <strong>" in html.read_text()
    out = json.loads(proc.stdout)
    assert out["recommended"] and out["reasons"] and out["candidates"]
    assert {"label", "file", "kv_type", "n_ctx", "predicted_bytes_by_target", "verdict_by_target",
            "est_decode_tok_s_by_target", "quality"} <= set(out["candidates"][0])
    # an impossible speed: nothing to recommend, exit 1 with the reasons
    proc = run("--target", "8 GB laptop", "--min-tok-s", "100000", "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["recommended"] is None
    bad = run("--target", "a toaster")
    assert bad.returncode == 2 and "unknown target" in bad.stderr and "Traceback" not in bad.stderr


def test_recommend_page(demo_ladder: Ladder) -> None:
    """The page on the app's own database (whatever earlier tests stored): an answer, the chart, two downloads."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/recommend.py")
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Recommend: which one to ship?"
    at.selectbox(key="recommend-target-pick").set_value(LAPTOP)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    answer = [s.value for s in at.success] + [w.value for w in at.warning]
    assert answer and ("Ship **" in answer[0] or "evidence" in answer[0])
    assert any("<svg" in m.value for m in at.markdown)
    assert len(at.get("download_button")) == 2
