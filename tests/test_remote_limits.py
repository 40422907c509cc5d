"""Remote endpoints have a byte limit, an overall deadline and type-checked fields (issue 14, finding 5b).

Each hostile server (tests/hostile_servers.py, on 127.0.0.1) must end within the deadline as that
contestant's error while the others finish, and the run must never stay "running" in the store.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from workbench.runs import remote
from workbench.runs.compare import run_comparison
from workbench.runs.contestants import RemoteEndpoint, RunSettings
from workbench.runs.remote import contestant_for


def test_hostile_endpoints_end_within_the_deadline_as_their_own_errors(monkeypatch, serve, pool, store):
    monkeypatch.setattr(remote, "MIN_DEADLINE_S", 2.0)
    monkeypatch.setattr(remote, "DEADLINE_S_PER_TOKEN", 0.0)
    eps = {mode: RemoteEndpoint(serve(mode).url, model="m", label=mode, read_timeout_s=5)
           for mode in ("endless_tokens", "pings", "bad_fields", "bad_usage", "huge", "padded")}
    good = RemoteEndpoint(serve("answer", "Red, green and blue.").url, model="m", label="good")
    contestants = [contestant_for(good, is_reference=True)] + [contestant_for(ep) for ep in eps.values()]
    t0 = time.monotonic()
    comp = run_comparison(pool, contestants, "Name three colours.", RunSettings(max_tokens=8, n_ctx=256), store=store)
    took = time.monotonic() - t0
    print(f"\nfive hostile endpoints and one good one, one after another: {took:.1f} s")
    assert took < 30  # three deadlines of 2 s, the rest immediate; nothing waits for the 120 s default
    by = {r.label: r for r in comp.results}
    assert by["good"].ok and by["good"].text == "Red, green and blue."
    expected = {
        "endless_tokens": "did not finish within 2 s",
        "pings": "did not finish within 2 s",
        "bad_fields": "finish_reason must be a short text or null, got an object of 0 item(s)",
        "bad_usage": "usage.completion_tokens must be a whole number >= 0, got text '6'",
        "huge": "the answer grew past 1 MiB of text, the most one stored answer may hold",
        "padded": "sent more than 8 MiB",
    }
    for label, phrase in expected.items():
        r = by[label]
        assert not r.ok and r.stop_reason == "error" and phrase in r.error, (label, r.error)
        assert "\n" not in r.error and r.error.startswith(f"{label}: ")
    assert by["endless_tokens"].text.startswith("again again")  # what arrived stays visible
    assert store.get_run(comp.run_id).status == "partial"
    assert 0 < len(by["huge"].text.encode()) <= 1024 * 1024  # kept up to the piece that would cross the line
    # what was stored imports back whole (an answer over the import's 1 MiB per text refused the whole backup)
    from workbench.people import history
    from workbench.storage.store import Store

    copy = Store(store.path.parent / "copy.sqlite3")
    assert history.import_json(copy, history.export_json_bytes(store, [comp.run_id])).runs == 1


def test_a_comparison_whose_runner_raises_is_marked_failed(monkeypatch, serve, pool, store):
    import workbench.runs.compare as compare

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the runner")

    monkeypatch.setattr(compare, "run_contestant", broken)
    ep = RemoteEndpoint(serve("answer", "fine").url, model="m", label="good")
    created: list[int] = []
    with pytest.raises(RuntimeError):
        run_comparison(pool, [contestant_for(ep)], "hi", RunSettings(max_tokens=8, n_ctx=256), store=store,
                       on_run_created=created.append)
    assert store.get_run(created[0]).status == "failed"
