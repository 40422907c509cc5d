"""Computing an importance matrix from the demo reference: what it holds, its file, cancel, bad input, and a
prompt-set split that never lets held-out prompts into the matrix. Runs real llama.cpp on short chunks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import psutil
import pytest

from workbench.cli.main import main
from workbench.files.gguf_header import file_fetch, parse_header
from workbench.files.imatrix_file import read_imatrix
from workbench.runs import calibration as cal
from workbench.runs.imatrix import (
    ImatrixCancelled,
    ImatrixComputeError,
    ImatrixInputError,
    ImatrixJob,
    check_reference,
    compute_imatrix,
)
from workbench.runs.prompt_sets import parse_prompt_set

SMALL = {"chunk_tokens": 64, "threads": 1}  # short chunks keep each run to a few seconds


def matmul_weights(reference: str) -> set[str]:
    with open(reference, "rb") as fh:
        return {t.name for t in parse_header(file_fetch(fh), reference).tensors
                if t.name.startswith("blk.") and len(t.shape) == 2}


def test_the_matrix_covers_every_block_weight_counts_the_tokens_and_is_deterministic(demo_ladder, tmp_path: Path) -> None:
    ref = demo_ladder.reference.path
    untouched = threading.Event()
    runs = [compute_imatrix(ref, cal.bundled_text(), tmp_path / f"{i}.imatrix.gguf", max_chunks=2, cancel=untouched,
                            **SMALL) for i in range(2)]
    assert not untouched.is_set()  # a caller's stop event is read, never set: a job goes on to build with it
    first, second = (read_imatrix(r.path) for r in runs)
    assert runs[0].n_tokens == 128 and runs[0].n_chunks == 2
    assert set(first.entries) == matmul_weights(ref)  # every blk.* matrix product, output.weight left out
    for name, e in first.entries.items():
        assert e.counts.tolist() == [128], name  # each token seen once per weight
        assert np.isfinite(e.sums).all() and (e.sums >= 0).all() and e.sums.sum() > 0, name
        np.testing.assert_array_equal(e.sums, second.entries[name].sums)
    assert (first.chunk_count, first.chunk_size) == (2, 64)
    assert first.metadata["workbench.calibration.tokens"] == 128
    assert first.metadata["workbench.calibration.sha256"] == cal.bundled_text().sha256
    assert "Q4_1" in runs[0].note  # the demo F16 was made from a Q4_1 file, and the result says so


def test_the_cli_writes_a_matrix_that_reads_back_with_its_provenance(demo_ladder, tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("The quick brown fox jumps over the lazy dog near the riverbank at dawn. " * 20, encoding="utf-8")
    out = tmp_path / "notes.imatrix.gguf"
    code = main(["imatrix", "--demo", "--text", str(text), "--chunks", "1", "--chunk-tokens", "64", "--out", str(out),
                 "--json"])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    data = read_imatrix(out)
    assert shown["path"] == str(out.resolve()) and shown["chunks"] == data.chunk_count == 1
    c = shown["calibration"]
    assert (c["name"], c["kind"], c["tokens"], c["split"]) == ("notes", "text file", 64, None)
    assert c["sha256"] == hashlib.sha256(text.read_bytes()).hexdigest() == data.metadata["workbench.calibration.sha256"]
    assert data.n_tokens == 64 and len(data.entries) == len(matmul_weights(demo_ladder.reference.path))


def test_a_cancelled_computation_leaves_no_file(demo_ladder, tmp_path: Path) -> None:
    out = tmp_path / "c.imatrix.gguf"
    stop = threading.Event()

    def progress(done: int, total: int, msg: str) -> None:
        if done >= 1:
            stop.set()

    with pytest.raises(ImatrixCancelled):
        compute_imatrix(demo_ladder.reference.path, cal.bundled_text(), out, on_progress=progress, cancel=stop, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_the_apps_job_reports_a_cancel_as_cancelled(demo_ladder, tmp_path: Path) -> None:
    job = ImatrixJob(demo_ladder.reference.path, cal.bundled_text(), tmp_path / "j.imatrix.gguf", **SMALL).start()
    while not job.finished and job.progress.done < 1:
        job.join(0.05)
    job.stop()
    assert job.join(60)
    assert job.status == "cancelled" and job.result is None
    assert list(tmp_path.iterdir()) == []


def test_a_crash_of_the_collector_is_one_line_and_leaves_no_file(demo_ladder, tmp_path: Path) -> None:
    out = tmp_path / "k.imatrix.gguf"

    def kill_child(done: int, total: int, msg: str) -> None:  # llama.cpp dying mid-run, as a SIGKILL does
        if done >= 1:
            for child in psutil.Process().children():
                if "workbench.engine.imatrix_collect" in child.cmdline():
                    os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(ImatrixComputeError, match="SIGKILL") as caught:
        compute_imatrix(demo_ladder.reference.path, cal.bundled_text(), out, on_progress=kill_child, **SMALL)
    assert "\n" not in str(caught.value) and "collector was killed" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_reference_that_is_not_full_precision_is_refused_with_what_it_means(demo_ladder, tmp_path: Path, capsys) -> None:
    q8 = demo_ladder.by_label("Q8_0").path
    with pytest.raises(ImatrixInputError, match="already-rounded model.*compounds the rounding"):
        check_reference(q8)
    code = main(["imatrix", q8, "--reference-text", "--out", str(tmp_path / "q.imatrix.gguf")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Q8_0" in err and "F16/BF16 source" in err
    assert not (tmp_path / "q.imatrix.gguf").exists()


def test_text_too_short_to_measure_says_so_instead_of_writing_an_empty_matrix(demo_ladder, tmp_path: Path) -> None:
    out = tmp_path / "short.imatrix.gguf"
    with pytest.raises(ImatrixInputError, match="at least 16 tokens"):
        compute_imatrix(demo_ladder.reference.path, cal.from_text("Hello there.", "hi"), out, **SMALL)
    assert not out.exists()


def test_prompt_set_calibration_never_sees_held_out_prompts(demo_ladder, tmp_path: Path) -> None:
    n, seed = 6, 3
    split = cal.split_prompts(n, seed)
    lines = [f"Held-out question {i}: what does ZEBRAMARKER mean in a shipping label?" if i in split.held_out
             else f"Calibration question {i}: how do I reset my router after a power cut?" for i in range(n)]
    prompts = parse_prompt_set("\n".join(lines), "lines", name="markers")
    result = compute_imatrix(demo_ladder.reference.path, cal.from_prompt_set(prompts, seed=seed),
                             tmp_path / "p.imatrix.gguf", threads=1)
    seen = set(result.piece_sha256)
    assert result.pieces == split.calibration  # indices into the set: the calibration half, each one
    assert seen == {hashlib.sha256(lines[i].encode()).hexdigest() for i in split.calibration}
    assert not seen & {hashlib.sha256(lines[i].encode()).hexdigest() for i in split.held_out}
    data = read_imatrix(result.path)
    assert cal.PromptSplit.parse(str(data.metadata["workbench.calibration.split"])) == split
    assert data.n_tokens == result.n_tokens and data.chunk_count == len(split.calibration)
