"""Set runs (workbench.runs.set_runs) on the real embedded ladder: a prompt set runs in order, each prompt an
ordinary stored comparison run tagged with its set; Stop keeps finished prompts and resume runs only the rest;
a contestant failure stays that prompt's; `workbench batch --json` does the same from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from workbench.core.jobs import JobRegistry
from workbench.models.ladder import Ladder, LadderFile
from workbench.runs.contestants import RunSettings
from workbench.runs.prompt_sets import PromptSet, SetPrompt, parse_prompt_set
from workbench.runs.set_runs import (
    SetProgress,
    SetRunError,
    SetRunJob,
    run_set,
    running_job,
    start_set_run,
    stored_contestants,
)
from workbench.runs.variants import Variant
from workbench.storage.rows import SetRunSummary
from workbench.storage.store import SetRunChild, Store

ROOT = Path(__file__).resolve().parents[1]
SMALL = RunSettings(max_tokens=8, n_ctx=256, n_threads=1)
LABELS = ["Q2_K"]  # with the reference, F16: two contestants


def three_prompts() -> PromptSet:
    return PromptSet("three", [SetPrompt("What is 2+3?", id="math"),
                               SetPrompt("Name a colour.", system="Answer in one word.", category="short"),
                               SetPrompt("The bridge closes on 3 March. When does it close?")])


def stop_when(phase: str, index: int, cancel: threading.Event, seen: list[SetProgress]):
    def on_progress(p: SetProgress) -> None:
        seen.append(p)
        if p.phase == phase and p.index == index:
            cancel.set()
    return on_progress


def test_the_store_keeps_set_runs_and_the_newest_run_of_each_prompt(store: Store) -> None:
    assert "m007_set_runs" in store.schema_version()
    set_id = store.create_set_run(name="s", prompts=[{"prompt": "a"}, {"prompt": "b"}], labels=["F16", "Q2_K"],
                                  reference_label="F16", settings={"max_tokens": 8}, ladder={"name": "L", "files": []})
    first = store.create_run(settings={}, prompt="a")
    store.tag_set_run_child(first, set_id, 0)
    store.finish_run(first, "done")
    stopped = store.create_run(settings={}, prompt="b")
    store.tag_set_run_child(stopped, set_id, 1)
    store.finish_run(stopped, "cancelled")
    again = store.create_run(settings={}, prompt="b")
    store.tag_set_run_child(again, set_id, 1)
    got = store.get_set_run(set_id)
    assert got is not None and got.prompts == [{"prompt": "a"}, {"prompt": "b"}] and got.ladder["name"] == "L"
    assert got.children == (SetRunChild(index=0, run_id=first, status="done", attempts=1),
                            SetRunChild(index=1, run_id=again, status="running", attempts=2))
    assert replace(store.list_set_runs()[0], created_at="") == SetRunSummary(
        id=set_id, created_at="", name="s", status="running", ladder_name="L",
        reference_label="F16", n_prompts=2, n_finished=1)
    store.set_set_run_status(set_id, "cancelled")
    assert store.get_set_run(set_id).status == "cancelled"
    assert store.get_set_run(set_id + 1) is None


def test_stop_keeps_finished_prompts_and_resume_runs_only_the_rest(pool, store: Store, demo_ladder: Ladder,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One prompt at a time (WORKBENCH_BATCH=off, exact reproduction of sequential runs)."""
    monkeypatch.setenv("WORKBENCH_BATCH", "off")
    set_id = start_set_run(store, three_prompts(), demo_ladder, labels=LABELS, settings=replace(SMALL))
    cancel, seen = threading.Event(), []

    # Stop after the first prompt: it is kept, nothing else starts
    outcome = run_set(pool, store, demo_ladder, set_id, stop_when("prompt-done", 0, cancel, seen), cancel)
    assert (outcome.status, outcome.finished, outcome.total) == ("cancelled", 1, 3)
    first = store.get_set_run(set_id)
    assert first.status == "cancelled"
    assert [(c.index, c.status) for c in first.children] == [(0, "done")]
    kept = first.children[0].run_id
    assert [p.phase for p in seen] == ["prompt", "contestant", "contestant", "prompt-done", "end"]
    assert seen[2].done_labels == ("F16", "Q2_K") and seen[3].run_id == kept

    # Stop while the second prompt runs (its reference done): that run ends cancelled and is not finished
    cancel.clear()
    outcome = run_set(pool, store, None, set_id, stop_when("contestant", 1, cancel, []), cancel)  # ladder as stored
    assert outcome.status == "cancelled"
    children = store.get_set_run(set_id).children
    assert [(c.index, c.status) for c in children] == [(0, "done"), (1, "cancelled")]
    assert children[0].run_id == kept
    stopped = children[1].run_id
    assert [r.stop_reason for r in store.get_run(stopped).results][1] == "cancelled"

    # Resume as the app does, in the background: prompts 2 and 3 run; the finished first prompt is not re-run
    registry = JobRegistry()
    job = registry.start(SetRunJob(pool, store, set_id))
    assert running_job(registry, set_id) in (job, None)  # None only once it has already finished
    assert job.join(300) and job.status == "done", job.failure
    assert running_job(registry, set_id) is None
    done = store.get_set_run(set_id)
    assert done.status == "done"
    assert [(c.index, c.status) for c in done.children] == [(0, "done"), (1, "done"), (2, "done")]
    assert done.children[0] == SetRunChild(index=0, run_id=kept, status="done", attempts=1)
    assert done.children[1].attempts == 2 and done.children[1].run_id > stopped
    snap = job.snapshot()
    assert (snap["done"], snap["total"], snap["set_run_id"]) == (3, 3, set_id)
    assert snap["progress"]["phase"] == "end" and snap["progress"]["statuses"] == ["done"] * 3
    assert [c["label"] for c in snap["columns"]] == ["F16", "Q2_K"]

    # each prompt is an ordinary comparison run: its prompt, system prompt, category and both contestants
    second = store.get_run(done.children[1].run_id)
    assert (second.kind, second.prompt, second.system_prompt, second.category) == \
        ("compare", "Name a colour.", "Answer in one word.", "short")
    assert (second.set_run_id, second.set_index) == (set_id, 1)
    assert [(r.label, r.is_reference) for r in second.results] == [("F16", True), ("Q2_K", False)]
    assert all(r.text and not r.error for r in second.results)
    assert store.get_run(kept).system_prompt is None

    # a finished set run has nothing left: running it again changes nothing
    again = run_set(pool, store, demo_ladder, set_id)
    assert again.status == "done" and store.get_set_run(set_id).children == done.children


def test_batched_stop_keeps_every_answer_and_resume_asks_only_for_the_missing_ones(pool, store: Store,
                                                                                  demo_ladder: Ladder) -> None:
    """Batched (the default): each file answers the prompts together. Stopped while Q2_K answers, the reference's
    answers are kept; resume carries on in the same runs and asks Q2_K only for what it had not answered."""
    set_id = start_set_run(store, three_prompts(), demo_ladder, labels=LABELS, settings=replace(SMALL))
    cancel, seen = threading.Event(), []

    def on_progress(p: SetProgress) -> None:
        seen.append(p)
        if p.phase == "batch" and p.label == "Q2_K" and p.answered >= 1:
            cancel.set()

    outcome = run_set(pool, store, demo_ladder, set_id, on_progress, cancel, n_seq=1)  # one slot: stoppable midway
    assert outcome.status == "cancelled"
    assert seen[0].message().startswith("prompts 1–3 of 3: F16, batched (0 of 3 answered)")
    first = store.get_set_run(set_id).children
    runs = [store.get_run(c.run_id) for c in first]
    assert all(r.results[0].label == "F16" and r.results[0].text for r in runs)  # every reference kept
    answered = [c.index for c, r in zip(first, runs, strict=True) if len(r.results) == 2]
    assert 1 <= len(answered) < 3

    seen.clear()
    again = run_set(pool, store, None, set_id, seen.append)
    assert again.status == "done" and again.finished == 3
    batches = [p for p in seen if p.phase == "batch"]
    assert {p.label for p in batches} <= {"Q2_K"}  # the reference is not asked again
    done = store.get_set_run(set_id).children
    assert [c.run_id for c in done] == [c.run_id for c in first]  # carried on in the same runs
    assert [c.status for c in done] == ["done"] * 3 and all(c.attempts == 1 for c in done)
    for c in done:
        results = store.get_run(c.run_id).results
        assert [r.label for r in results] == ["F16", "Q2_K"] and all(r.text for r in results)
        assert all(r.metrics["measurement"]["batched"]["n_seq"] >= 1 for r in results)
        assert results[1].decode_tok_s is None  # no single-stream speed from a batch


def test_a_failing_contestant_affects_only_its_own_results(pool, store: Store, demo_ladder: Ladder,
                                                           tmp_path: Path) -> None:
    broken = tmp_path / "broken.Q4_0.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 60)
    ladder = Ladder("with a broken file", [demo_ladder.reference,
                                           LadderFile("broken", "Q4_0", str(broken), 64, 4.5)])
    set_id = start_set_run(store, parse_prompt_set("What is 2+3?\nName a colour.", "lines"), ladder,
                           labels=["broken"], settings=replace(SMALL, max_tokens=4))
    outcome = run_set(pool, store, ladder, set_id)
    assert (outcome.status, outcome.finished) == ("done", 2)
    for child in store.get_set_run(set_id).children:
        assert child.status == "partial"
        ref, bad = store.get_run(child.run_id).results
        assert ref.text and not ref.error
        assert bad.error and bad.stop_reason == "error"


def test_a_set_run_is_refused_before_anything_runs(store: Store, demo_ladder: Ladder) -> None:
    with pytest.raises(SetRunError, match="Q9: not in the ladder"):
        start_set_run(store, three_prompts(), demo_ladder, labels=["Q9"])
    with pytest.raises(SetRunError, match="empty"):
        start_set_run(store, PromptSet("none", []), demo_ladder)
    with pytest.raises(ValueError):
        start_set_run(store, three_prompts(), demo_ladder, settings=RunSettings(max_tokens=0))
    assert store.list_set_runs() == []
    with pytest.raises(SetRunError, match="no set run with id 42"):
        run_set(None, store, demo_ladder, 42)  # type: ignore[arg-type]


def batch(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "workbench", "batch", *argv], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)


def test_cli_batch_json_on_two_prompts_then_resume_reruns_nothing(demo_ladder: Ladder, tmp_path: Path) -> None:
    prompts = tmp_path / "ours.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 2+3?", "id": "math"}) + "\n"
                       + json.dumps({"prompt": "Name a colour.", "category": "short"}) + "\n", encoding="utf-8")
    db = str(tmp_path / "cli.sqlite3")
    small = ["--max-tokens", "8", "--ctx", "256", "--threads", "1", "--db", db, "--json"]
    proc = batch("--prompts", str(prompts), "--demo", "--labels", "Q2_K", *small)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    assert (out["name"], out["status"], out["reference"], out["labels"]) == ("ours", "done", "F16", ["F16", "Q2_K"])
    assert [(p["index"], p["prompt"], p["status"]) for p in out["prompts"]] == \
        [(0, "What is 2+3?", "done"), (1, "Name a colour.", "done")]
    assert out["prompts"][0]["id"] == "math" and out["prompts"][1]["category"] == "short"
    files = {f.label: f.path for f in demo_ladder.files}
    for p in out["prompts"]:
        assert isinstance(p["run_id"], int)
        assert [(r["label"], r["file"], r["is_reference"]) for r in p["results"]] == \
            [("F16", files["F16"], True), ("Q2_K", files["Q2_K"], False)]
        assert all(r["text"] and r["error"] is None and r["stop_reason"] for r in p["results"])
    stored = Store(db).get_set_run(out["set_run_id"])
    assert [c.run_id for c in stored.children] == [p["run_id"] for p in out["prompts"]]

    again = batch("--resume", str(out["set_run_id"]), "--db", db, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["prompts"] == out["prompts"]

    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,id\nfine,a\n,b\n", encoding="utf-8")
    refused = batch("--prompts", str(bad), "--demo", *small)
    assert refused.returncode == 2 and "line 3: empty prompt" in refused.stderr
    assert batch("--resume", "999", "--db", db).returncode == 1
    assert len(Store(db).list_set_runs()) == 1  # the refused file stored nothing


def test_a_set_run_keeps_its_variants_and_its_prompts_runs_do_not(pool, store: Store, demo_ladder: Ladder) -> None:
    set_id = start_set_run(store, PromptSet("one", [SetPrompt("Name a colour.")]), demo_ladder, labels=LABELS,
                           settings=replace(SMALL), variants=[Variant("q8_0", "q8_0")], variant_baseline=False)
    set_run = store.get_set_run(set_id)
    assert set_run is not None
    settings = RunSettings.from_dict(set_run.settings)
    assert settings.variants == (Variant("q8_0", "q8_0"),) and not settings.variant_baseline
    assert set_run.settings["file_labels"] == ["F16", "Q2_K"]
    labels = [c.label for c in stored_contestants(demo_ladder, set_run)]
    assert labels == ["F16", "F16 · KV q8_0", "Q2_K · KV q8_0"] == set_run.labels
    assert run_set(pool, store, demo_ladder, set_id).status == "done"
    child = store.get_run(store.set_run_children(set_id)[0].run_id)
    assert child is not None and [r.label for r in child.results] == labels
    assert child.settings == SMALL.to_dict()  # each prompt's run: the plain settings, the variants in its labels
