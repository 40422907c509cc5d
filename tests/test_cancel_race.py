"""Issue 13, "Cancel race": Stop pressed while a model loads must stop, and events never cross requests.

A fake worker (tests/fake_worker.py: the real request loop around a fake engine) makes the load slow and
the timing exact, so the race is reproduced every time instead of now and then.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest
from fake_worker import COMMAND as FAKE_WORKER

from workbench.engine.pool import LoadSettings, WorkerPool, WorkerProcess
from workbench.runs.compare import run_contestant
from workbench.runs.contestants import Contestant, RunSettings

MAX_TOKENS = 200  # at 10 ms a token, a lost cancel shows as ~2 s of output


def _events_until_end(w: WorkerProcess, rid: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Every event the worker sends until request `rid` ends (done or error)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = w.events.get(timeout=0.1)
        except queue.Empty:
            continue
        assert event is not None, "the fake worker died"
        seen.append(event)
        if event.get("id") == rid and event.get("event") in ("done", "error"):
            return seen
    raise AssertionError(f"request {rid} did not end: {seen}")


@pytest.fixture()
def fake(tmp_path) -> Any:
    started: list[WorkerProcess] = []

    def make(load_s: float = 0.0) -> WorkerProcess:
        w = WorkerProcess(env={"FAKE_LOAD_S": str(load_s)}, command=FAKE_WORKER)
        started.append(w)
        return w

    yield make
    for w in started:
        w.shutdown()


def test_a_cancel_that_arrives_during_the_load_stops_the_generate_queued_behind_it(fake):
    w = fake(load_s=1.0)
    w.send({"op": "load", "id": 101, "model_path": "fake.gguf", "n_ctx": 512})
    w.send({"op": "generate", "id": 102, "text": "hello", "max_tokens": MAX_TOKENS})
    time.sleep(0.3)  # the load is still running
    w.send({"op": "cancel", "id": 102})
    seen = _events_until_end(w, 102)
    assert any(e.get("event") == "loaded" and e.get("id") == 101 for e in seen), seen
    assert not [e for e in seen if e.get("event") == "tokens"], "the cancelled generate produced output"
    assert seen[-1] == {"event": "error", "id": 102, "during": "generate", "message": "cancelled"}


def test_a_cancel_for_a_finished_request_does_not_touch_the_next_one(fake):
    w = fake()
    w.send({"op": "load", "id": 1, "model_path": "fake.gguf"})
    w.send({"op": "generate", "id": 2, "text": "a", "max_tokens": 3})
    _events_until_end(w, 2)
    w.send({"op": "cancel", "id": 2})  # late: request 2 is over
    w.send({"op": "generate", "id": 3, "text": "b", "max_tokens": 5})
    done = _events_until_end(w, 3)[-1]
    assert done["event"] == "done" and done["metrics"]["stop_reason"] == "max_tokens" and len(done["token_ids"]) == 5


def test_stop_during_loading_never_starts_the_generate(demo_ladder):
    pool = WorkerPool(env={"FAKE_LOAD_S": "1.5"}, worker_command=FAKE_WORKER)
    cancel = threading.Event()
    statuses: list[str] = []
    pressed: list[float] = []

    def on_event(label: str, status: str, payload: dict) -> None:
        statuses.append(status)
        if status == "loading" and not pressed:
            threading.Timer(0.5, lambda: (pressed.append(time.monotonic()), cancel.set())).start()

    try:
        c = Contestant.from_ladder_file(demo_ladder.by_label("Q2_K"), is_reference=False)
        settings = RunSettings(max_tokens=MAX_TOKENS, n_ctx=512)
        r = run_contestant(pool, c, settings, settings.messages("hi"), on_event, cancel)
        assert pressed and time.monotonic() - pressed[0] < 2.5  # the rest of the load, not 200 tokens more
        assert r.stop_reason == "cancelled", (r.stop_reason, r.error, r.completion_tokens)
        assert not r.token_ids and "generating" not in statuses and "tokens" not in statuses, statuses
        assert statuses[-1] == "cancelled"
        assert pool.pids(), "the loaded worker stays warm for the next run"
    finally:
        pool.shutdown()


def _loaded(w: WorkerProcess) -> None:
    w.load(LoadSettings("fake.gguf", n_ctx=512))


def test_events_of_an_abandoned_generate_are_not_delivered_to_the_next_request(fake):
    w = fake()
    _loaded(w)

    class Abandon(Exception):
        pass

    def give_up(event: dict[str, Any]) -> None:
        if event.get("event") == "tokens":
            raise Abandon  # a caller whose callback fails leaves the rest of this generate unread

    with pytest.raises(Abandon):
        w.call({"op": "generate", "text": "first", "max_tokens": 50}, {"done"}, give_up)
    forwarded: list[dict[str, Any]] = []
    done = w.call({"op": "generate", "text": "second", "max_tokens": 4}, {"done"}, forwarded.append)
    assert done["echo"] == "second" and done["token_ids"] == [0, 1, 2, 3]
    assert {e.get("id") for e in forwarded} == {done["id"]}, forwarded


def test_a_late_cancelled_error_of_an_earlier_request_is_not_this_requests_error(fake):
    w = fake()
    _loaded(w)
    w.events.put({"event": "error", "id": 1, "during": "generate", "message": "cancelled"})  # arrived late
    done = w.call({"op": "generate", "text": "x", "max_tokens": 3}, {"done"})
    assert done["metrics"]["stop_reason"] == "max_tokens" and len(done["token_ids"]) == 3
