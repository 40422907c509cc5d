"""Issue 14, smaller findings: labels that would mix models up, spreadsheet formulas in exports, secrets in workers."""

from __future__ import annotations

import pytest

from workbench.compare import Contestant, RunSettings, contestants_for, run_comparison
from workbench.jobs import JobRegistry
from workbench.remote import RemoteEndpoint, contestant_for


def test_an_endpoint_labelled_like_a_local_quantization_is_refused(demo_ladder, store):
    from workbench.pool import WorkerPool

    local = contestants_for(demo_ladder, ["Q8_0"])
    impostor = contestant_for(RemoteEndpoint("http://127.0.0.1:9/v1", model="m", label="Q8_0"))
    pool = WorkerPool()
    try:
        with pytest.raises(ValueError, match="two contestants are labelled 'Q8_0'"):
            run_comparison(pool, [*local, impostor], "hi", RunSettings(max_tokens=4), store=store)
        with pytest.raises(ValueError, match="labelled 'Q8_0'"):
            JobRegistry(pool, store).start([*local, impostor], "hi", RunSettings(max_tokens=4))
        assert store.list_runs(limit=5) == []  # refused before anything was stored or run
        assert not pool.pids()
    finally:
        pool.shutdown()
    two = [Contestant("ep", "http://a/", endpoint=None), Contestant("ep", "http://b/", endpoint=None)]
    with pytest.raises(ValueError, match="labelled 'ep'"):
        run_comparison(pool, two, "hi")

