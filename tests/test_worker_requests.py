"""Bad worker requests (issue 24) are an error for that request, never a wrong answer or a dead worker.

Two guards, both tested on the real SmolLM2 file: the library refuses a bad request before it is sent
(protocol.check_request, called by WorkerProcess.call; RunSettings.validate for the settings a person types),
and the worker checks again itself, since anything may write to its stdin. The worker-side tests switch the
library's guard off in this process to reach the worker with the bad request.
"""

from __future__ import annotations

import math

import pytest

from workbench.engine import protocol
from workbench.engine.pool import LoadSettings, WorkerError, WorkerProcess
from workbench.runs.contestants import RunSettings

MESSAGES = [{"role": "user", "content": "List three colours of the rainbow."}]


@pytest.fixture()
def worker(demo_ladder):
    w = WorkerProcess()
    w.load(LoadSettings(demo_ladder.by_label("Q4_K_M").path, n_ctx=512, n_seq=2))
    yield w
    w.shutdown()


def generate(w: WorkerProcess, **fields) -> dict:
    return w.call({"op": "generate", "max_tokens": 8, **fields}, {"done"})


@pytest.fixture()
def unguarded(monkeypatch):
    """Let bad requests through the library, so the worker's own checks are what is tested."""
    monkeypatch.setattr(protocol, "check_request", lambda request: None, raising=False)


@pytest.mark.parametrize("fields, reason", [
    ({"text": ""}, "empty"),  # no tokens: the worker read the previous request's logits
    ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens"),  # 0 meant 256
    ({"messages": MESSAGES, "max_tokens": -3}, "max_tokens"),
    ({"messages": MESSAGES, "temperature": math.nan}, "temperature"),
    ({"messages": MESSAGES, "temperature": math.inf}, "temperature"),
    ({"messages": MESSAGES, "top_p": math.nan}, "top_p"),
])
def test_the_worker_answers_a_bad_generate_with_an_error_and_stays_up(worker, unguarded, fields, reason) -> None:
    warm = generate(worker, messages=MESSAGES)  # someone else's context is in the KV cache and logits
    with pytest.raises(WorkerError, match=reason):
        generate(worker, **fields)
    assert worker.alive()
    again = generate(worker, messages=MESSAGES)
    assert again["token_ids"] == warm["token_ids"]


def test_an_empty_batch_item_is_an_error_for_that_item_only(worker, unguarded) -> None:
    items: list[dict] = []
    done = worker.call({"op": "generate_batch", "n_seq": 2, "temperature": 0.0,
                        "items": [{"messages": MESSAGES, "max_tokens": 8}, {"text": "", "max_tokens": 8},
                                  {"messages": MESSAGES, "max_tokens": 8}]},
                       {"done"}, lambda e: items.append(e) if e.get("event") == "item" else None)
    by_index = {e["index"]: e for e in items}
    assert "empty" in by_index[1]["error"]
    assert by_index[0]["token_ids"] and by_index[0]["token_ids"] == by_index[2]["token_ids"]
    assert done["metrics"]["n_items"] == 3 and worker.alive()


@pytest.mark.parametrize("fields, reason", [
    ({"n_batch": -1}, "n_batch"),  # segfaulted the worker
    ({"n_ctx": 0}, "n_ctx"),
    ({"n_threads": -2}, "n_threads"),
    ({"n_seq": 0}, "n_seq"),
])
def test_the_worker_refuses_a_bad_load_and_stays_up(demo_ladder, unguarded, fields, reason) -> None:
    w = WorkerProcess()
    try:
        with pytest.raises(WorkerError, match=reason):
            w.call({**LoadSettings(demo_ladder.by_label("Q4_K_M").path, n_ctx=512).to_wire(), **fields}, {"loaded"})
        assert w.alive()
        w.load(LoadSettings(demo_ladder.by_label("Q4_K_M").path, n_ctx=512))
        assert generate(w, messages=MESSAGES)["token_ids"]
    finally:
        w.shutdown()


def test_the_library_refuses_a_bad_request_before_sending_it(worker) -> None:
    for request, reason in (({"op": "generate", "text": "", "max_tokens": 8}, "empty"),
                            ({"op": "generate", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
                            ({"op": "generate", "messages": MESSAGES, "temperature": math.nan}, "temperature"),
                            ({"op": "generate_batch", "items": [{"messages": MESSAGES, "max_tokens": 0}]}, "max_tokens"),
                            ({"op": "load", "model_path": "x.gguf", "n_batch": -1}, "n_batch")):
        with pytest.raises(WorkerError, match=reason):
            worker.call(request, {"done", "loaded"})
    assert worker.decodes == 0 and worker.alive()  # nothing reached llama.cpp
    assert generate(worker, messages=MESSAGES)["token_ids"]


@pytest.mark.parametrize("field, value", [("temperature", math.nan), ("temperature", math.inf),
                                          ("top_p", math.nan), ("max_tokens", 0)])
def test_run_settings_refuse_numbers_that_are_not_finite(field, value) -> None:
    with pytest.raises(ValueError):
        RunSettings(**{field: value}).validate()


def test_a_worker_told_to_shut_down_exits_cleanly(demo_ladder) -> None:
    """It used to die of SIGABRT after a second: Python's finalization waited for the stdin lock that the reader
    thread held ("Fatal Python error: _enter_buffered_busy"), so every pool shutdown cost a second a worker."""
    w = WorkerProcess()
    w.load(LoadSettings(demo_ladder.by_label("Q4_K_M").path, n_ctx=512))
    assert generate(w, prompt_tokens=[1, 2, 3])["event"] == "done"
    w.shutdown()
    assert w.proc.returncode == 0


def test_a_pool_shuts_all_its_workers_down_cleanly(demo_ladder) -> None:
    from workbench.engine.pool import WorkerPool
    from workbench.runs.compare import contestants_for, run_comparison

    pool = WorkerPool()
    contestants = contestants_for(demo_ladder, ["Q8_0", "Q4_K_M"])
    run_comparison(pool, contestants, "Hi", RunSettings(max_tokens=4, n_ctx=512))
    workers = [s.worker for s in pool._slots.values() if s.worker is not None]
    assert len(workers) >= 2
    pool.shutdown()
    assert [w.proc.returncode for w in workers] == [0] * len(workers)
