"""Stop must stop a worker that never reads the cancel message: it is killed after a grace period."""

from __future__ import annotations

import threading
import time

from workbench.engine import pool as pool_mod
from workbench.engine.generation import INJECT_STUCK_ENV
from workbench.engine.pool import WorkerPool
from workbench.runs.compare import contestants_for, run_comparison
from workbench.runs.contestants import RunSettings

PROMPT = "List three colours of the rainbow."
SHORT = RunSettings(max_tokens=16, n_ctx=512)


def test_stop_kills_a_stuck_worker_and_the_next_run_gets_a_fresh_one(demo_ladder, store):
    env = {INJECT_STUCK_ENV: "120"}  # every generate sleeps 2 minutes, deaf to cancel
    pool = WorkerPool(env=env)
    cancel = threading.Event()
    stuck_at: list[float] = []
    events: list[tuple[str, str, dict]] = []

    def on_event(label: str, status: str, payload: dict) -> None:
        events.append((label, status, payload))
        if status == "loading" and not stuck_at:
            # the load itself answers; press Stop shortly after the (stuck) generate has been sent
            threading.Timer(3.0, lambda: (stuck_at.append(time.monotonic()), cancel.set())).start()

    try:
        contestants = contestants_for(demo_ladder, ["Q8_0"])
        t0 = time.monotonic()
        comp = run_comparison(pool, contestants, PROMPT, SHORT, store=store, on_event=on_event, cancel=cancel)
        elapsed_after_stop = time.monotonic() - stuck_at[0]
        assert elapsed_after_stop < pool_mod.CANCEL_GRACE_S + 5, elapsed_after_stop
        assert time.monotonic() - t0 < 60
        first = comp.results[0]
        assert first.stop_reason == "cancelled"
        assert "did not answer the cancel within 5 s and was killed" in first.error
        assert [r.stop_reason for r in comp.results] == ["cancelled", "cancelled"]  # the queue moved on
        assert store.get_run(comp.run_id).status == "cancelled"
        assert any(s == "cancelled" and "was killed" in p.get("message", "") for _, s, p in events)
        assert not pool.pids(), "the killed worker is not counted as live"

        env.pop(INJECT_STUCK_ENV)  # the next worker this pool starts is healthy
        again = run_comparison(pool, contestants, PROMPT, SHORT, store=store)
        assert all(r.ok and r.text for r in again.results), [r.error for r in again.results]
        assert not again.results[0].warm  # a fresh worker replaced the killed one
    finally:
        pool.shutdown()
