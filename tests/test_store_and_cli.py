"""The SQLite store's migrations and WAL, and the CLI's JSON contract on the real demo ladder."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from workbench.storage.store import Store


def test_migrations_apply_once_and_database_uses_wal(tmp_path):
    path = tmp_path / "db.sqlite3"
    first = Store(path)
    names = first.schema_version()
    assert names and names[0].startswith("m001")
    run_id = first.create_run(settings={"max_tokens": 5}, prompt="p")
    first.add_rating(run_id=run_id, label="Q8_0", score=4)
    again = Store(path)  # reopening applies nothing twice and keeps the rows
    assert again.schema_version() == names
    assert again.ratings(run_id)[0]["score"] == 4
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rating_bounds_are_enforced(store):
    run_id = store.create_run(settings={}, prompt="p")
    for bad in (0, 6):
        try:
            store.add_rating(run_id=run_id, label="x", score=bad)
        except ValueError:
            continue
        raise AssertionError(f"score {bad} accepted")


def test_compare_demo_json_returns_the_ladder_with_sane_metrics(demo_ladder):
    proc = subprocess.run(
        [sys.executable, "-m", "workbench", "compare", "--demo", "--prompt", "Name a fruit.", "--max-tokens", "16",
         "--ctx", "512", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["reference"] == "F16" and isinstance(out["run_id"], int)
    assert [r["quant_type"] for r in out["results"]] == ["F16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K"]
    required = {"label", "quant_type", "file", "size_bytes", "bits_per_weight", "is_reference", "load_s", "ttft_s", "prompt_tokens",
                "prefill_tok_s", "completion_tokens", "decode_tok_s", "stop_reason", "peak_rss_bytes", "gpu_mem_bytes",
                "text", "first_divergence_token", "fallback", "error"}
    sizes = []
    for r in out["results"]:
        assert required <= set(r), required - set(r)
        assert r["error"] is None and r["text"]
        assert r["load_s"] > 0 and r["ttft_s"] > 0 and r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0
        assert 0 < r["completion_tokens"] <= 16 and r["stop_reason"] in ("eos", "max_tokens")
        assert r["peak_rss_bytes"] > 50 * 2**20 and r["gpu_mem_bytes"] is None and not r["gpu_layers"]  # CPU: no VRAM, no GPU layers
        sizes.append(r["size_bytes"])
    assert sizes == sorted(sizes, reverse=True)  # F16 > Q8_0 > Q5_K_M > Q4_K_M > Q2_K
    assert out["results"][0]["first_divergence_token"] is None  # the reference


def test_demo_json_lists_files(demo_ladder):
    proc = subprocess.run([sys.executable, "-m", "workbench", "demo", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)
    assert {f["quant_type"] for f in files} == {"F16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K"}
    assert [f["is_reference"] for f in files].count(True) == 1
    assert all(set(f) == {"label", "quant_type", "file", "size_bytes", "bits_per_weight", "is_reference", "imatrix"}
               for f in files)
    assert all(f["imatrix"] is None for f in files)  # the demo's files are static; a matrix file says its provenance
    assert all(f["file"] == os.path.abspath(f["file"]) for f in files)
