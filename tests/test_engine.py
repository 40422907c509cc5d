"""The core engine on the real SmolLM2 ladder: determinism, metrics, crashes, cancellation, fallback."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from workbench.core import crash_fallback
from workbench.engine.pool import WorkerPool
from workbench.runs.compare import contestants_for, run_comparison, run_contestant
from workbench.runs.contestants import Contestant, RunSettings

PROMPT = "List three colours of the rainbow."
SHORT = RunSettings(max_tokens=24, n_ctx=512)


def contestant(ladder, label: str) -> Contestant:
    return Contestant.from_ladder_file(ladder.by_label(label), is_reference=False)


def test_greedy_output_is_identical_across_runs_and_warm_or_cold_workers(demo_ladder, pool):
    c = contestant(demo_ladder, "Q4_K_M")
    first = run_contestant(pool, c, SHORT, SHORT.messages(PROMPT))
    warm = run_contestant(pool, c, SHORT, SHORT.messages(PROMPT))
    fresh_pool = WorkerPool()
    try:
        cold = run_contestant(fresh_pool, c, SHORT, SHORT.messages(PROMPT))
    finally:
        fresh_pool.shutdown()
    assert first.ok and warm.ok and cold.ok, (first.error, warm.error, cold.error)
    assert warm.warm and not cold.warm
    assert first.token_ids and first.token_ids == warm.token_ids == cold.token_ids
    assert first.text == warm.text == cold.text


def test_metrics_are_self_consistent(demo_ladder, pool):
    r = run_contestant(pool, contestant(demo_ladder, "Q8_0"), SHORT, SHORT.messages(PROMPT))
    assert r.ok, r.error
    assert r.completion_tokens == len(r.token_ids) > 0
    # decode counts tokens after the first; an end-of-generation token is sampled but not output
    assert r.decode_steps in (r.completion_tokens - 1, r.completion_tokens)
    assert r.decode_tok_s == pytest.approx(r.decode_steps / r.decode_s)
    assert r.prefill_tok_s == pytest.approx(r.prompt_tokens / r.prefill_s)
    assert r.ttft_s >= r.prefill_s > 0  # prefill is inside TTFT ...
    assert r.total_s >= r.ttft_s + r.decode_s * 0.99  # ... and outside decode
    assert r.stop_reason in ("eos", "max_tokens")
    assert r.peak_rss_bytes > r.size_bytes * 0.5  # the worker really holds the model
    assert r.gpu_mem_bytes is None and r.gpu_layers == 0  # CPU-only: no GPU figure pretends to be zero
    assert r.template == "gguf"
    assert r.settings["temperature"] == 0.0 and r.settings["n_ctx"] == 512


def test_sigkill_mid_stream_fails_only_that_contestant_and_the_pool_recovers(demo_ladder, store):
    pool = WorkerPool()
    victim = "Q5_K_M"
    killed = threading.Event()

    def on_event(label: str, status: str, payload: dict) -> None:
        if label == victim and status == "tokens" and not killed.is_set():
            killed.set()
            os.kill(pool.pids()[demo_ladder.by_label(victim).path], signal.SIGKILL)

    try:
        contestants = contestants_for(demo_ladder, ["Q8_0", "Q5_K_M", "Q4_K_M"])
        comp = run_comparison(pool, contestants, PROMPT, SHORT, store=store, on_event=on_event)
        by = {r.label: r for r in comp.results}
        assert killed.is_set()
        assert not by[victim].ok and "SIGKILL" in by[victim].error
        assert all(by[label].ok for label in ("F16", "Q8_0", "Q4_K_M"))
        saved = {r.label: r for r in store.get_run(comp.run_id).results}
        assert "SIGKILL" in saved[victim].error and saved["Q4_K_M"].text
        again = run_contestant(pool, contestant(demo_ladder, victim), SHORT, SHORT.messages(PROMPT))
        assert again.ok and again.text and not again.warm  # a fresh worker replaced the dead one
    finally:
        pool.shutdown()


def test_cancel_stops_the_stream_and_the_rest(demo_ladder, pool):
    cancel = threading.Event()

    def on_event(label: str, status: str, payload: dict) -> None:
        if label == "F16" and status == "tokens":
            cancel.set()

    settings = RunSettings(max_tokens=200, n_ctx=512)
    comp = run_comparison(pool, contestants_for(demo_ladder, ["Q8_0"]), "Write a long story about a dragon.",
                          settings, on_event=on_event, cancel=cancel)
    assert [r.stop_reason for r in comp.results] == ["cancelled", "cancelled"]
    assert comp.results[0].completion_tokens < 200


def test_model_without_chat_template_runs_as_plain_completion(demo_ladder, pool, tmp_path):
    from gguf_factory import copy_gguf

    path = copy_gguf(demo_ladder.by_label("Q2_K").path, tmp_path / "base.gguf", drop_keys={"tokenizer.chat_template"})
    r = run_contestant(pool, Contestant("base", str(path), "Q2_K"), SHORT, SHORT.messages("The capital of France is"))
    assert r.ok, r.error
    assert r.template == "none" and r.completion_tokens > 0


def test_provenance_is_stored_with_the_run(demo_ladder, pool, store):
    from workbench.models.ladder import demo_source, sha256_file

    comp = run_comparison(pool, contestants_for(demo_ladder, ["Q2_K"]), PROMPT, SHORT, store=store, ladder=demo_ladder)
    run = store.get_run(comp.run_id)
    prov = run.ladder["provenance"]
    assert prov["source_sha256"] == sha256_file(demo_source())
    assert prov["source_quant_type"] == "Q4_1" and "Requantized from a Q4_1 source" in prov["note"]
    assert "llama-cpp-python" in prov["built_with"] and run.llama_cpp_version.startswith("llama-cpp-python")
    assert [r.label for r in run.results] == ["F16", "Q2_K"] and run.status == "done"


def test_crash_with_extra_buffers_falls_back_once_and_is_remembered(demo_ladder, tmp_path, monkeypatch):
    """Fault injection makes the worker die by SIGSEGV on its first decode with extra buffers on,
    as llama.cpp's AMX path does on some CPUs; the fallback must retry, report and remember it."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    assert crash_fallback.remembered() is None
    c = contestant(demo_ladder, "Q4_K_M")
    pool = WorkerPool(env={crash_fallback.INJECT_ENV: "1"})
    try:
        r = run_contestant(pool, c, SHORT, SHORT.messages(PROMPT))
        assert r.ok, r.error
        assert r.fallback and "SIGSEGV" in r.fallback
        assert r.settings["use_extra_bufts"] is False
        note = json.loads((tmp_path / "machine.json").read_text())
        assert list(note["extra_bufts_crash"].values())[0]["signal"] == "SIGSEGV"
    finally:
        pool.shutdown()
    pool = WorkerPool(env={crash_fallback.INJECT_ENV: "1"})
    try:  # the next run loads without extra buffers straight away: no crash first
        r2 = run_contestant(pool, c, SHORT, SHORT.messages(PROMPT))
        assert r2.ok and "loaded without" in r2.fallback and r2.token_ids == r.token_ids
    finally:
        pool.shutdown()


def test_no_fallback_when_nothing_crashes(demo_ladder, pool):
    r = run_contestant(pool, contestant(demo_ladder, "Q2_K"), SHORT, SHORT.messages(PROMPT))
    assert r.ok and (r.fallback is None or "loaded without" in r.fallback)
