"""The CLI's JSON is one vocabulary: the same GGUF is the same absolute path under `file` in every command's output,
with the same `label`, `quant_type` and `is_reference`, so a script can join `demo`, `ladder`, `fit`, `compare` and
`diverge` (README.md, "CLI JSON fields"). Real commands on the embedded demo ladder, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--max-tokens", "8", "--ctx", "256", "--threads", "1"]
TYPES = "F16,Q2_K"


def workbench(*argv: str, cwd: Path | None = None) -> Any:
    """Run `python -m workbench ARGV --json` (from `cwd`, to show relative paths come back absolute); its JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "workbench", *argv, "--json"], capture_output=True, text=True,
                          timeout=600, cwd=cwd or ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def by_file(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["file"]: r for r in rows}


def test_one_file_is_one_absolute_path_under_file_in_every_command(demo_ladder, tmp_path: Path) -> None:
    q2 = demo_ladder.by_label("Q2_K").path
    f16 = demo_ladder.by_label("F16").path
    assert os.path.isabs(q2) and os.path.isabs(f16)

    demo = by_file(workbench("demo"))
    fit = by_file(workbench("fit", "--demo", "--ctx", "256"))
    # a relative source path, from its own folder: the ladder still names it absolutely
    ladder = workbench("ladder", Path(q2).name, "--types", "", "--reference", "", "--out", str(tmp_path / "lad"),
                       cwd=Path(q2).parent)
    compare = workbench("compare", "--demo", "--types", TYPES, "--prompt", "Name a fruit.", *SMALL)
    diverge = workbench("diverge", "--demo", "--types", TYPES, "--prompt", "Name a fruit.", "--db",
                        str(tmp_path / "db.sqlite3"), *SMALL)

    for rows in (demo, fit, by_file(ladder["files"]), by_file(compare["results"]), by_file(diverge["results"])):
        assert q2 in rows, sorted(rows)  # the join key: the same absolute path, under `file`
        assert rows[q2]["quant_type"] == "Q2_K"
    for rows in (demo, by_file(compare["results"]), by_file(diverge["results"])):
        assert rows[q2]["label"] == "Q2_K" and rows[q2]["is_reference"] is False
        assert rows[f16]["label"] == "F16" and rows[f16]["is_reference"] is True
    for rows in (demo, by_file(compare["results"])):
        assert rows[q2]["size_bytes"] == os.path.getsize(q2)
        assert rows[q2]["bits_per_weight"] == demo_ladder.by_label("Q2_K").bits_per_weight

    assert set(demo[q2]) == {"label", "quant_type", "file", "size_bytes", "bits_per_weight", "is_reference", "imatrix"}
    assert demo[q2]["imatrix"] is None  # a static file
    assert fit[q2]["name"] == Path(q2).name and fit[q2]["predicted_bytes"] > os.path.getsize(q2)
    [source] = ladder["files"]
    assert source["file"] == q2 and source["is_reference"] is True and ladder["reference"] == source["label"]
    assert ladder["directory"] == str(tmp_path / "lad")
    assert compare["reference"] == diverge["reference"] == "F16"
    published = by_file(diverge["results"])[q2]["published"]  # another model's figure, labelled as such
    assert published["kind"] == "published elsewhere" and published["mean_kld"] == 0.445132
    assert published["model"] == "LLaMA-3-8B" and "llama.cpp" in published["source_url"]
    assert by_file(diverge["results"])[f16]["published"] is None  # none beside the reference
    assert isinstance(compare["run_id"], int) and isinstance(diverge["run_id"], int)
    assert not any("path" in r or "reference" in r for r in [*demo.values(), *ladder["files"]])  # the old keys


def test_batch_json_says_what_the_page_says(demo_ladder, tmp_path: Path) -> None:
    """Issue 24: each batch result carries the page's one-line summary against the reference and its changed facts
    (the reference's and the quantization's wording), made by the same library functions the page calls."""
    from workbench.quality.facts import compare_facts
    from workbench.quality.summary import summarize

    prompts = tmp_path / "numbers.txt"
    prompts.write_text("A train leaves at 9:15 and the trip takes 45 minutes. When does it arrive?\n"
                       "List three prime numbers and their sum.\n", encoding="utf-8")
    out = workbench("batch", "--prompts", str(prompts), "--demo", "--labels", "Q2_K", "--max-tokens", "24", "--ctx",
                    "256", "--threads", "1", "--db", str(tmp_path / "batch.sqlite3"))
    assert out["reference"] == "F16"
    for p in out["prompts"]:
        ref, q2 = (next(r for r in p["results"] if r["label"] == label) for label in ("F16", "Q2_K"))
        assert ref["summary"] is None and ref["facts"] == []  # the reference is what the others are read against
        page = summarize(ref["text"], q2["text"])
        assert q2["summary"] == page.sentence and q2["summary"]
        assert q2["facts"] == [{"kind": c.kind, "status": c.status, "reference": c.reference, "quantization": c.output}
                               for c in compare_facts(ref["text"], q2["text"])]


def test_compare_repeats_gives_each_file_a_median_and_range_and_refuses_a_bad_count(demo_ladder) -> None:
    out = workbench("compare", "--demo", "--types", "Q2_K", "--prompt", "Name three fruits.", "--repeats", "2",
                    "--max-tokens", "32", "--ctx", "256", "--threads", "1")
    assert out["settings"]["timing_repeats"] == 2
    for r in out["results"]:
        windows, s = r["decode_repeats"], r["decode_spread"]
        assert 2 <= len(windows) <= 5 and windows[0]["streamed"] and s["windows"] == len(windows) and s["wanted"] == 2
        assert r["decode_tok_s"] == s["median"] and s["min"] <= s["median"] <= s["max"]
        assert r["disturbed"] is (None if r["measurement"]["decode"]["disturbed"] is None else not s["quiet"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = subprocess.run([sys.executable, "-m", "workbench", "compare", "--demo", "--prompt", "x", "--repeats", "11"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "timing repeats must be a whole number from 1 to 10" in bad.stderr
    assert "Traceback" not in bad.stderr
