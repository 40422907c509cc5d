"""Evals on the real SmolLM2 ladder: a small pack end to end, stored, counted, compared; the CLI's JSON."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.cli import main as cli
from workbench.quality import evals
from workbench.quality.packs import load_pack, parse_pack
from workbench.runs.compare import contestants_for
from workbench.runs.contestants import RunSettings
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")

SMALL_PACK = """
name = "Tiny"
description = "Three quick cases for tests."

[[cases]]
id = "add"
category = "math"
max_tokens = 12
prompt = "What is 2+3? Answer with the number only."
check = { kind = "number", expected = 5 }

[[cases]]
id = "capital"
category = "extraction"
max_tokens = 12
prompt = "Text: 'Lena moved to Oslo in 2019.' Which city did Lena move to? Answer with the city only."
check = { kind = "contains", expected = "Oslo" }

[[cases]]
id = "sentiment"
category = "classification"
max_tokens = 8
prompt = "Is this review positive or negative? 'I hated every minute of it.' Answer with one word."
check = { kind = "regex", pattern = "negative", flags = "i" }
"""


def test_select_cases_round_robin_and_filters():
    pack = load_pack(Path(__file__).resolve().parents[1] / "prompts" / "starter.toml")
    picked = evals.select_cases(pack, None, 7)
    assert len(picked) == 7 and sorted({c.category for c in picked}) == sorted(pack.categories())
    math_only = evals.select_cases(pack, ["math"], 3)
    assert [c.category for c in math_only] == ["math"] * 3
    assert [c.id for c in math_only] == [c.id for c in pack.cases if c.category == "math"][:3]
    with pytest.raises(ValueError, match="unknown category"):
        evals.select_cases(pack, ["cooking"])
    with pytest.raises(ValueError, match="at least 1"):
        evals.select_cases(pack, None, 0)
    long = evals.select_cases(pack, ["long-context"], 1)
    assert evals.default_settings(long).n_ctx >= evals.LONG_CONTEXT_N_CTX
    assert evals.default_settings(math_only).n_ctx == 2048


def test_eval_run_end_to_end_is_stored_counted_and_shown(pool, demo_ladder):
    store = Store()  # the app's (isolated) database, so the Evals page below shows this run
    pack = parse_pack(SMALL_PACK, "toml", source="tiny.toml")
    contestants = contestants_for(demo_ladder, ["Q2_K"])
    seen: list[evals.EvalProgress] = []
    run = evals.run_eval(pool, pack, contestants, RunSettings(max_tokens=16, n_ctx=512), store=store,
                         ladder=demo_ladder, on_progress=seen.append)
    assert run.status == "done", [o.error for o in run.outcomes]
    assert len(run.outcomes) == 6 and all(o.error is None for o in run.outcomes)
    assert [o.label for o in run.outcomes] == ["F16"] * 3 + ["Q2_K"] * 3  # file by file (batched), the reference first
    assert "cases/s" in seen[-2].message  # the page shows the rate while it runs
    assert seen[-1].done == seen[-1].total == 6

    stored = evals.load_eval(store, run.run_id)
    assert stored.status == "done" and stored.labels == ["F16", "Q2_K"] and stored.reference_label == "F16"
    assert [(o.case_id, o.label, o.passed, o.output) for o in stored.outcomes] == \
           [(o.case_id, o.label, o.passed, o.output) for o in run.outcomes]
    assert {c["id"] for c in stored.cases} == {"add", "capital", "sentiment"}

    cells = {(c.category, c.label): c for c in stored.matrix()}
    assert cells[("all", "F16")].total == 3 and cells[("math", "Q2_K")].total == 1
    for c in cells.values():
        assert 0 <= c.low <= (c.rate or 0) <= c.high <= 1
    paired = [p for p in stored.paired() if p.category == "all"]
    assert len(paired) == 1 and paired[0].label == "Q2_K" and paired[0].total == 3
    assert paired[0].within_noise  # three cases can never show a difference beyond noise
    assert "noise" in paired[0].verdict or paired[0].verdict == "same cases passed"

    out = stored.to_json()
    assert out["pack"] == "Tiny"
    assert {(r["label"], r["category"]) for r in out["results"]} == {
        (lab, cat) for lab in ("F16", "Q2_K") for cat in ("math", "extraction", "classification")}
    assert all(set(r) >= {"label", "quant_type", "category", "passed", "total"} for r in out["results"])
    assert evals.list_evals(store)[0]["run_id"] == run.run_id

    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/evals.py")
    at.run()
    assert not at.exception, at.exception
    frames = [d.value for d in at.dataframe]
    matrix = next(f for f in frames if "category" in f.columns and "F16 (ref)" in f.columns)
    assert list(matrix["category"]) == ["extraction", "classification", "math", "all"]  # canonical order
    case_pick = at.selectbox(key=f"evals-{run.run_id}-case")
    assert case_pick.value == "add"
    verdicts = [e.value for e in at.success] + [e.value for e in at.error]
    assert sum(v.startswith(("passed", "failed")) for v in verdicts) == 2  # one verdict per quantization


def test_eval_stops_when_cancelled(pool, demo_ladder, store):
    pack = parse_pack(SMALL_PACK, "toml", source="tiny.toml")
    cancel = threading.Event()

    def progress(p: evals.EvalProgress) -> None:
        if p.done >= 2:
            cancel.set()

    run = evals.run_eval(pool, pack, contestants_for(demo_ladder, ["Q2_K"]), RunSettings(max_tokens=16, n_ctx=512),
                         store=store, on_progress=progress, cancel=cancel)
    assert run.status == "cancelled"
    # the reference's batch stops at its next step: the cases it answered are kept, Q2_K never starts
    assert 2 <= len(run.outcomes) <= 3 and {o.label for o in run.outcomes} == {"F16"}
    assert run.complete_case_ids() == [] and len(evals.load_eval(store, run.run_id).outcomes) == len(run.outcomes)
    assert evals.load_eval(store, run.run_id).status == "cancelled"


def test_eval_one_case_at_a_time_when_batching_is_off(pool, demo_ladder, store, monkeypatch):
    """WORKBENCH_BATCH=off reproduces sequential runs exactly; greedy answers here match the batched ones."""
    pack = parse_pack(SMALL_PACK, "toml", source="tiny.toml")
    settings = RunSettings(max_tokens=16, n_ctx=512)
    batched_run = evals.run_eval(pool, pack, contestants_for(demo_ladder, ["Q2_K"]), settings, store=store)
    monkeypatch.setenv("WORKBENCH_BATCH", "off")
    one_by_one = evals.run_eval(pool, pack, contestants_for(demo_ladder, ["Q2_K"]), settings, store=store)
    assert one_by_one.status == batched_run.status == "done"
    key = lambda o: (o.label, o.case_id)  # noqa: E731
    assert [(o.label, o.case_id, o.output) for o in sorted(one_by_one.outcomes, key=key)] == \
        [(o.label, o.case_id, o.output) for o in sorted(batched_run.outcomes, key=key)]
    assert all(o.decode_tok_s for o in one_by_one.outcomes) and not any(o.decode_tok_s for o in batched_run.outcomes)


def test_cli_json_shapes(demo_ladder, tmp_path, capsys):
    db = str(tmp_path / "cli.sqlite3")
    code = cli.main(["diverge", "--demo", "--types", "Q2_K", "--prompt", "Say hello in five words.",
                     "--max-tokens", "12", "--ctx", "512", "--json", "--db", db])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["reference"] == "F16"
    assert [r["label"] for r in out["results"]] == ["F16", "Q2_K"]
    for r in out["results"]:
        assert set(r) >= {"label", "quant_type", "mean_kld", "p99_kld", "top1_agreement", "ppl"}
        assert 0 <= r["top1_agreement"] <= 1 and r["ppl"] >= 1
    assert out["results"][1]["mean_kld"] > 0

    code = cli.main(["diverge", "--demo", "--types", "Q2_K", "--reference-text", "--chunk", "64", "--max-chunks", "1",
                     "--ctx", "512", "--json", "--db", db])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["source"] == "text" and out["n_tokens"] == 31
    assert out["meta"]["text"] == "prompts/reference_text.txt" and out["meta"]["chunk_tokens"] == 64
    assert [r["label"] for r in out["results"]] == ["F16", "Q2_K"] and out["results"][1]["mean_kld"] > 0

    code = cli.main(["diverge", "--demo", "--types", "Q2_K", "--reference-text", "--chunk", "64", "--max-chunks", "1",
                     "--ctx", "512", "--db", db])
    human = capsys.readouterr().out
    assert code == 0 and "On the bundled text (31 tokens scored), against F16: Q2_K's next-token odds moved" in human

    pack = tmp_path / "tiny.toml"
    pack.write_text(SMALL_PACK)
    code = cli.main(["eval", "--pack", str(pack), "--demo", "--types", "Q2_K", "--categories", "math,classification",
                     "--ctx", "512", "--json", "--db", db])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["pack"] == "Tiny"
    assert {(r["label"], r["category"]) for r in out["results"]} == {
        (lab, cat) for lab in ("F16", "Q2_K") for cat in ("math", "classification")}
    for r in out["results"]:
        assert set(r) >= {"label", "quant_type", "category", "passed", "total"} and r["total"] == 1
    assert {f["label"]: f["file"] for f in out["files"]} == {  # who took part, joinable on `file` (README)
        lab: demo_ladder.by_label(lab).path for lab in ("F16", "Q2_K")}

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "Bad"\n[[cases]]\nid = "x"\ncategory = "math"\nprompt = "hi"\n')
    assert cli.main(["eval", "--pack", str(bad), "--demo"]) == 2
    assert "bad.toml, line 2" in capsys.readouterr().err
    assert cli.main(["diverge", "--demo"]) == 2  # nothing to measure named
