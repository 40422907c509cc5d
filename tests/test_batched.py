"""Batched generation (issue 17): many prompts through one file, several sequences decoding together in one
llama.cpp context, on the real embedded ladder. Slots are reused, each prompt keeps its own stop rules,
a cancel keeps what was answered, and a worker that dies mid-batch fails only the unanswered prompts."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from workbench.runs import batched
from workbench.runs.batched import BatchItem, generate_many
from workbench.runs.compare import contestants_for, run_contestant
from workbench.runs.contestants import RunSettings

SETTINGS = RunSettings(max_tokens=16, n_ctx=256, n_threads=1)
PROMPTS = ["What is 2+3?", "Name a colour.", "Say hello in French.", "Count to five.", "Name a river in Spain.",
           "What is the capital of Italy?", "Spell 'cat' backwards."]


def items(n: int = len(PROMPTS), max_tokens: int = 16) -> list[BatchItem]:
    return [BatchItem(SETTINGS.messages(p), max_tokens) for p in PROMPTS[:n]]


@pytest.fixture()
def q8(demo_ladder):
    return next(c for c in contestants_for(demo_ladder, ["Q8_0"]) if c.label == "Q8_0")


def test_more_prompts_than_slots_all_answered_as_sequential_greedy_decoding_answers_them(pool, q8) -> None:
    seq = [run_contestant(pool, q8, SETTINGS, SETTINGS.messages(p)) for p in PROMPTS]
    seen: list[int] = []
    out = generate_many(pool, q8, SETTINGS, items(), n_seq=3, on_item=lambda r: seen.append(r.index))
    assert out.error is None and not out.cancelled and out.n_seq == 3
    assert sorted(seen) == list(range(len(PROMPTS)))  # every prompt reported once, as it finished
    assert all(r is not None and r.ok for r in out.results)
    # the measured agreement with single-sequence decoding (docs/benchmarks.md): on these prompts, all of them
    same = [a.text == b.text for a, b in zip(seq, out.results, strict=True) if b is not None]
    assert sum(same) == len(PROMPTS), [(a.text, b.text) for a, b in zip(seq, out.results, strict=True) if b and a.text != b.text]
    assert [b.completion_tokens for b in out.results if b] == [a.completion_tokens for a in seq]
    assert out.metrics["finished"] == len(PROMPTS) and out.metrics["n_seq"] == 3
    assert out.metrics["generated_tokens"] == sum(a.completion_tokens for a in seq)
    assert out.measurement()["batched"]["n_seq"] == 3


def test_each_prompt_keeps_its_own_stop_rules(pool, q8) -> None:
    mixed = [BatchItem(SETTINGS.messages("Count to twenty."), 1),        # ends at once: one token
             BatchItem(SETTINGS.messages("Count to twenty."), 40),       # runs on
             BatchItem(SETTINGS.messages("word " * 300), 8),             # longer than a sequence's context
             BatchItem(SETTINGS.messages("Say yes."), 12)]
    settings = RunSettings(max_tokens=40, n_ctx=128, n_threads=1)
    out = generate_many(pool, q8, settings, mixed, n_seq=2)
    one, long, too_long, short = out.results
    assert one is not None and one.completion_tokens == 1 and one.stop_reason == "max_tokens"
    assert long is not None and long.stop_reason in ("max_tokens", "eos", "context_full") and long.completion_tokens > 1
    assert too_long is not None and too_long.error and "each sequence's context holds 128" in too_long.error
    assert short is not None and short.ok
    story = SETTINGS.messages("Write a very long story about a dragon named Fred who lives in a castle by the sea, "
                              "with many chapters.")
    full = generate_many(pool, q8, RunSettings(max_tokens=100, n_ctx=64, n_threads=1), [BatchItem(story, 100)] * 2,
                         n_seq=2)
    assert [r.stop_reason for r in full.results if r] == ["context_full"] * 2, full.results
    assert all(r is not None and r.prompt_tokens + r.completion_tokens == 64 for r in full.results)


def test_a_cancel_mid_batch_keeps_the_answered_prompts(pool, q8) -> None:
    cancel = threading.Event()

    def on_item(r: batched.ItemResult) -> None:
        cancel.set()  # the first answer stops the batch

    out = generate_many(pool, q8, SETTINGS, items(), n_seq=2, on_item=on_item, cancel=cancel)
    assert out.cancelled
    answered = [r for r in out.results if r is not None and r.ok]
    assert 1 <= len(answered) < len(PROMPTS)
    assert any(r is None for r in out.results)  # never started


def test_a_worker_that_dies_mid_batch_fails_only_the_unanswered_prompts(pool, q8) -> None:
    def on_item(r: batched.ItemResult) -> None:
        for w in pool.warm_models():
            if w["file"] == os.path.basename(q8.path):
                os.kill(w["pid"], signal.SIGKILL)

    out = generate_many(pool, q8, SETTINGS, items(), n_seq=2, on_item=on_item)
    assert out.error is not None and "SIGKILL" in out.error
    kept = [r for r in out.results if r is not None and r.ok]
    failed = [r for r in out.results if r is not None and r.error]
    assert kept and failed and len(kept) + len(failed) == len(PROMPTS)
    assert all(r.text for r in kept)


def test_batching_off_runs_one_sequence(pool, q8, monkeypatch) -> None:
    monkeypatch.setenv(batched.BATCH_ENV, "off")
    out = generate_many(pool, q8, SETTINGS, items(3), n_seq=8)
    assert out.n_seq == 1 and all(r is not None and r.ok for r in out.results)


def test_the_sequences_are_sized_to_the_memory_budget(pool, q8, monkeypatch) -> None:
    assert batched.choose_n_seq(pool, q8.path, SETTINGS, 8, 3) == 3  # never more sequences than prompts
    monkeypatch.setenv("WORKBENCH_MEMORY_BUDGET", str(400 * 2**20))  # room for the file, not for 64 contexts
    n = batched.choose_n_seq(pool, q8.path, RunSettings(n_ctx=8192), 64, 100)
    assert 1 <= n < 64


def test_a_small_micro_batch_bounds_the_sequences_instead_of_aborting_llama_cpp(pool, q8) -> None:
    """llama.cpp aborts (SIGABRT) when a step's sequences exceed the micro-batch: the noise floor's greedy repeats
    evaluate prompts in micro-batches of 1 or 7 tokens, so those batches run with at most that many sequences."""
    out = generate_many(pool, q8, SETTINGS, items(4), n_seq=4, n_batch=1)
    assert out.error is None and out.n_seq == 1 and all(r is not None and r.ok for r in out.results)
    from workbench.engine.pool import LoadSettings, WorkerError, WorkerProcess

    worker = WorkerProcess()
    try:
        with pytest.raises(WorkerError, match="4 sequences need a micro-batch of at least 4 tokens, not 2"):
            worker.load(LoadSettings(q8.path, 256, 1, 0, None, n_batch=2, n_seq=4))
        assert worker.alive()  # refused, not crashed
    finally:
        worker.shutdown()


def test_prompts_enter_together_and_a_long_one_rides_in_chunks_beside_the_others(pool, q8) -> None:
    """Issue 28: the waiting prompts are decoded in shared steps (not one llama_decode each), and with a small
    per-step budget a newcomer's prompt is fed in chunks beside the other sequences' tokens; greedy answers stay
    those of one-at-a-time decoding (Q8_0 has no kernel switch with the batch size, docs/benchmarks.md)."""
    seq = [run_contestant(pool, q8, SETTINGS, SETTINGS.messages(p)) for p in PROMPTS]
    together = generate_many(pool, q8, SETTINGS, items(), n_seq=3)
    assert together.metrics["prompt_steps"] < len(PROMPTS)  # admitted one by one, each prompt was its own decode
    chunked = generate_many(pool, q8, SETTINGS, items(), n_seq=3, n_batch=8)
    assert chunked.n_seq == 3 and chunked.error is None
    prompt_total = sum(r.prompt_tokens for r in chunked.results if r)
    assert chunked.metrics["prompt_steps"] >= prompt_total / 8  # no step carried more than its budget
    for out in (together, chunked):
        assert [r.text if r else None for r in out.results] == [a.text for a in seq]


def test_sampled_items_draw_as_they_would_alone(pool, q8) -> None:
    """Each item's sampler is its own, seeded alike: its draw does not depend on the neighbours it shares steps with."""
    hot = RunSettings(max_tokens=16, n_ctx=256, n_threads=1, temperature=0.9, seed=5)
    alone = [generate_many(pool, q8, hot, [BatchItem(hot.messages(p), 16)], n_seq=1).results[0] for p in PROMPTS[:4]]
    together = generate_many(pool, q8, hot, [BatchItem(hot.messages(p), 16) for p in PROMPTS[:4]], n_seq=4)
    assert [r.text if r else None for r in together.results] == [r.text if r else None for r in alone]
