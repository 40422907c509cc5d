"""Checkers have a time limit and turn exceptions into error verdicts (issue 14, finding 5a).

A pack regex can backtrack catastrophically on model output, and 1,000s of `[` used to raise a
RecursionError out of the JSON checker into the eval run. Every hostile output is made here.
"""

from __future__ import annotations

import time

import pytest

from workbench.quality import check_runner, evals
from workbench.quality.checkers import build_checker
from workbench.quality.packs import parse_pack
from workbench.runs.contestants import RemoteEndpoint, RunSettings
from workbench.runs.remote import contestant_for

BACKTRACKING = r"^\W*\S+(?:\s+\S+){0,14}\W*$"  # the starter pack's old fifteen-word check
BANG_OUTPUT = "!" * 2000 + " " + " ".join(["word"] * 16)


# ---- checkers ---------------------------------------------------------------------------------------
def test_a_backtracking_regex_times_out_as_an_error_verdict():
    checker = build_checker({"kind": "regex", "pattern": BACKTRACKING})
    t0 = time.monotonic()
    v = check_runner.run_check(checker, BANG_OUTPUT, timeout_s=1.0)
    took = time.monotonic() - t0
    print(f"\nbacktracking regex stopped after {took:.2f} s: {v.detail}")
    assert took < 5
    assert v.error and not v.passed
    assert v.detail == f"checker timed out after 1 s on a {len(BANG_OUTPUT):,}-character output"
    # the helper was replaced: the next check works at once
    ok = check_runner.run_check(build_checker({"kind": "contains", "expected": "word"}), BANG_OUTPUT)
    assert ok.passed and not ok.error


def test_deep_brackets_become_an_error_verdict_not_a_recursion_error():
    checker = build_checker({"kind": "json", "schema": {"type": "array"}})
    with pytest.raises(RecursionError):
        checker.check("[" * 100_000)  # what used to escape into the eval run
    v = check_runner.run_check(checker, "[" * 100_000)
    assert v.error and not v.passed and "nests too deeply" in v.detail
    assert check_runner.run_check(checker, "here: [1, 2]").passed


def test_the_bundled_fifteen_word_pattern_is_linear_now():
    from workbench.quality.packs import bundled_dir, load_pack

    case = next(c for c in load_pack(bundled_dir() / "starter.toml").cases if c.id == "sum-fifteen-words")
    t0 = time.monotonic()
    v = case.check(BANG_OUTPUT)
    assert time.monotonic() - t0 < 1 and not v.error and not v.passed
    assert case.check("Warmer water lets algae spread over the lake, harming its fish.").passed
    assert not case.check(" ".join(["word"] * 16)).passed


# ---- evals record the checker's error and go on ----------------------------------------------------------
PACK = """
name = "hostile"
[[cases]]
id = "loop"
category = "summarization"
prompt = "Summarize."
check = { kind = "regex", pattern = '^\\W*\\S+(?:\\s+\\S+){0,14}\\W*$' }

[[cases]]
id = "nested"
category = "extraction"
prompt = "Give JSON."
check = { kind = "json" }

[[cases]]
id = "plain"
category = "summarization"
prompt = "Say words."
check = { kind = "contains", expected = "word" }
"""


def test_evals_record_a_checker_error_and_continue(monkeypatch, serve, pool, store):
    monkeypatch.setattr(check_runner, "CHECK_TIMEOUT_S", 1.0)
    pack = parse_pack(PACK, "toml")
    bang = contestant_for(RemoteEndpoint(serve("answer", BANG_OUTPUT).url, model="m", label="bang"), is_reference=True)
    deep = contestant_for(RemoteEndpoint(serve("answer", "[" * 5000).url, model="m", label="deep"))
    t0 = time.monotonic()
    run = evals.run_eval(pool, pack, [bang, deep], RunSettings(max_tokens=16, n_ctx=512), store=store)
    print(f"\neval with a catastrophic regex and deep brackets: {time.monotonic() - t0:.1f} s")
    by = {(o.case_id, o.label): o for o in run.outcomes}
    assert len(by) == 6  # every case judged for both, none skipped
    hang = by[("loop", "bang")]
    assert not hang.passed and hang.detail == f"checker timed out after 1 s on a {len(BANG_OUTPUT):,}-character output"
    assert hang.error == hang.detail
    assert by[("nested", "deep")].error and "nests too deeply" in by[("nested", "deep")].detail
    assert by[("plain", "bang")].passed and by[("plain", "bang")].error is None
    stored = evals.load_eval(store, run.run_id)
    assert {(o.case_id, o.label): o.detail for o in stored.outcomes}[("loop", "bang")] == hang.detail
    assert run.status == "partial" and store.get_run(run.run_id).status == "partial"
