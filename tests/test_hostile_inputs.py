"""Issue 14, smaller findings: labels that would mix models up, spreadsheet formulas in exports, secrets in workers."""

from __future__ import annotations

import pytest

from workbench.runs.compare import contestants_for, run_comparison
from workbench.runs.contestants import Contestant, RemoteEndpoint, RunSettings
from workbench.runs.jobs import ComparisonJob
from workbench.runs.remote import contestant_for


def test_an_endpoint_labelled_like_a_local_quantization_is_refused(demo_ladder, store):
    from workbench.engine.pool import WorkerPool

    local = contestants_for(demo_ladder, ["Q8_0"])
    impostor = contestant_for(RemoteEndpoint("http://127.0.0.1:9/v1", model="m", label="Q8_0"))
    pool = WorkerPool()
    try:
        with pytest.raises(ValueError, match="two contestants are labelled 'Q8_0'"):
            run_comparison(pool, [*local, impostor], "hi", RunSettings(max_tokens=4), store=store)
        with pytest.raises(ValueError, match="labelled 'Q8_0'"):
            ComparisonJob(pool, store, [*local, impostor], "hi", RunSettings(max_tokens=4))
        assert store.list_runs(limit=5) == []  # refused before anything was stored or run
        assert not pool.pids()
    finally:
        pool.shutdown()
    two = [Contestant("ep", "http://a/", endpoint=None), Contestant("ep", "http://b/", endpoint=None)]
    with pytest.raises(ValueError, match="labelled 'ep'"):
        run_comparison(pool, two, "hi")


FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def _formula_run(store) -> int:
    run_id = store.create_run(settings={"max_tokens": 4}, prompt=FORMULAS[0], reference_label=FORMULAS[1])
    for i, f in enumerate(FORMULAS):
        store.add_result(run_id, i, {"label": f"{f} #{i}", "quant_type": f, "file": "/x.gguf", "text": f,
                                     "stop_reason": f, "error": f if i == 5 else None, "completion_tokens": -3,
                                     "is_reference": i == 0})
    return run_id


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_csv_exports_quote_cells_a_spreadsheet_would_run_as_formulas(store):
    import csv
    import io
    import zipfile

    from ui import views
    from workbench.people import history

    run_id = _formula_run(store)
    with zipfile.ZipFile(io.BytesIO(history.export_csv_bytes(store, [run_id]))) as zf:
        tables = {n: list(csv.DictReader(io.StringIO(zf.read(n).decode(), newline=""))) for n in zf.namelist()}
    cells = [v for rows in tables.values() for row in rows for v in row.values() if v]
    texts = [row["text"] for row in tables["results.csv"]]
    assert sorted(texts) == sorted("'" + f for f in FORMULAS)  # kept, but as text
    assert tables["runs.csv"][0]["prompt"] == "'" + FORMULAS[0]
    assert not [c for c in cells if c.startswith(history.FORMULA_STARTS) and not _number(c)], cells
    assert {row["completion_tokens"] for row in tables["results.csv"]} == {"-3"}  # a real number stays a number

    page_csv = views.csv_bytes(views.metrics_frame(store.get_run(run_id)))
    page_cells = [v for row in csv.DictReader(io.StringIO(page_csv, newline="")) for k, v in row.items()
                  if v and k != "tokens"]
    assert any(c.startswith("'=HYPERLINK") for c in page_cells)
    assert not [c for c in page_cells if c.startswith(history.FORMULA_STARTS)], page_cells


def test_workers_start_without_tokens_or_api_keys(monkeypatch):
    from pathlib import Path

    from workbench.engine.pool import WorkerProcess

    secrets = {"HF_TOKEN": "hf_x", "HUGGING_FACE_HUB_TOKEN": "hf_y", "OPENAI_API_KEY": "sk-x", "GITHUB_TOKEN": "gh",
               "PROVIDER_SECRET": "s", "PLAINLY_NAMED": "endpoint key"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("WORKBENCH_HARMLESS", "1")
    RemoteEndpoint("http://127.0.0.1:9/v1", model="m", label="x", api_key_env="PLAINLY_NAMED")
    worker = WorkerProcess()
    try:
        raw = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        names = {item.split(b"=", 1)[0].decode() for item in raw if item}
        assert "WORKBENCH_HARMLESS" in names and "PATH" in names
        assert not names & set(secrets), names & set(secrets)
        assert not [item for item in raw if b"sk-x" in item or b"endpoint key" in item]
    finally:
        worker.shutdown()
