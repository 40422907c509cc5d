"""Ladders that hold importance-matrix files beside static ones: labels, provenance, reuse, files made elsewhere.

Real quantizations of the demo model with a synthetic "skewed" matrix (tests.models_helpers): computing a real
matrix is not what these tests are about. IQ4_NL stands for the IQ types (the quickest to make).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.hubserver import make_gguf
from tests.models_helpers import header, skewed_matrix
from workbench.core.jobs import Cancelled
from workbench.files import json_fields as jf
from workbench.models.discover import group_by_model, scan_folder
from workbench.models.ladder import (
    LADDER_FILE,
    Ladder,
    build_ladder,
    imatrix_label,
    ladder_from_files,
    load_ladder,
    sha256_file,
)
from workbench.models.quantize import QuantizeError

ROOT = Path(__file__).resolve().parents[1]
NAME = "Product support"
IMX = f" · imatrix ({NAME})"


@pytest.fixture(scope="module")
def matrices(demo_ladder, tmp_path_factory) -> tuple[Path, Path]:
    """Two matrices with the same calibration name and different content (another seed, say)."""
    d = tmp_path_factory.mktemp("matrices")
    ref = demo_ladder.by_label("F16").path
    return skewed_matrix(ref, d / "a.imatrix.gguf", NAME, seed=5), skewed_matrix(ref, d / "b.imatrix.gguf", NAME, seed=6)


@pytest.fixture(scope="module")
def built(demo_ladder, matrices, tmp_path_factory) -> Ladder:
    out = tmp_path_factory.mktemp("imatrix-ladder")
    return build_ladder(demo_ladder.by_label("F16").path, ["Q4_K_M", "IQ4_NL"], out, reference_type=None,
                        imatrix=matrices[0], threads=2)


def copy_ladder(ladder: Ladder, to: Path) -> Path:
    to.mkdir()
    for f in [*Path(ladder.directory or "").glob("*.gguf"), Path(ladder.directory or "") / LADDER_FILE]:
        shutil.copy(f, to / f.name)
    return to


def test_static_and_imatrix_files_of_a_type_sit_side_by_side_with_their_provenance(built: Ladder, matrices) -> None:
    assert built.labels() == ["F16 (source)", "Q4_K_M", "Q4_K_M" + IMX, "IQ4_NL", "IQ4_NL" + IMX]
    assert imatrix_label("Q4_K_M", NAME) == "Q4_K_M" + IMX
    again = load_ladder(built.directory or "")  # what ladder.json keeps
    prov = again.provenance["imatrix"]
    assert prov["file"] == "a.imatrix.gguf" and prov["sha256"] == sha256_file(matrices[0])
    assert prov["calibration"]["name"] == NAME
    for f in again.files[1:]:
        meta = header(Path(f.path)).metadata
        if "imatrix" in f.label:
            assert Path(f.path).name.endswith(f".{f.quant_type}.imatrix-product-support.gguf")
            assert f.imatrix is not None and f.imatrix["name"] == NAME and f.imatrix["file"] == "a.imatrix.gguf"
            assert meta["workbench.calibration.name"] == NAME and meta["quantize.imatrix.file"] == "a.imatrix.gguf"
        else:
            assert f.imatrix is None and "quantize.imatrix.file" not in meta
    assert any(line.startswith("Importance matrix a.imatrix.gguf") for line in again.provenance_lines())


def test_reuse_never_takes_a_file_made_with_another_matrix(built: Ladder, matrices, tmp_path: Path) -> None:
    out = copy_ladder(built, tmp_path / "lad")
    imx = out / Path(built.by_label("Q4_K_M" + IMX).path).name
    before = sha256_file(imx)
    said: list[str] = []
    lad = build_ladder(built.reference.path, ["Q4_K_M"], out, reference_type=None, imatrix=matrices[1], threads=2,
                       progress=said.append)
    assert "[1/2] Q4_K_M: already built" in said  # the static file does not depend on the matrix
    assert f"[2/2] Q4_K_M{IMX}: quantizing…" in said  # same name, other matrix: made again
    assert sha256_file(imx) != before
    assert lad.provenance["imatrix"]["sha256"] == sha256_file(matrices[1])
    said.clear()
    build_ladder(built.reference.path, ["Q4_K_M"], out, reference_type=None, imatrix=matrices[1], progress=said.append)
    assert f"[2/2] Q4_K_M{IMX}: already built" in said


def test_a_type_that_needs_a_matrix_is_refused_without_one_and_has_no_static_twin_with_one(
        built: Ladder, matrices, tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="IQ2_XXS needs an importance matrix"):
        build_ladder(built.reference.path, ["Q4_K_M", "IQ2_XXS"], tmp_path / "no")
    assert not (tmp_path / "no").exists()  # refused before anything was made
    said: list[str] = []
    stop = threading.Event()
    stop.set()  # the plan is told, then the build stops before its first file
    with pytest.raises(Cancelled, match="stopped after 0 of 1 files"):
        build_ladder(built.reference.path, ["IQ2_XXS"], tmp_path / "yes", reference_type=None, imatrix=matrices[0],
                     progress=said.append, cancel=stop)
    assert any(line.startswith("IQ2_XXS: no static file to compare with") for line in said)
    assert not list((tmp_path / "yes").glob("*.gguf"))


def test_files_made_with_a_matrix_anywhere_are_labelled_as_such(built: Ladder, tmp_path: Path) -> None:
    lad, errors = ladder_from_files([f.path for f in built.files[1:]])
    assert not errors and lad.labels() == built.labels()[1:]
    assert lad.by_label("IQ4_NL" + IMX).imatrix == built.by_label("IQ4_NL" + IMX).imatrix
    # a file quantized elsewhere with llama-imatrix's matrix (bartowski's style): llama-quantize's keys only
    theirs = make_gguf(tmp_path / "Tiny-Q4_K_M.gguf", file_type=15, metadata={
        "quantize.imatrix.file": "/models/Tiny.imatrix", "quantize.imatrix.dataset": "/data/calibration_datav3.txt",
        "quantize.imatrix.entries_count": 196, "quantize.imatrix.chunks_count": 125})
    static = make_gguf(tmp_path / "Tiny-static-Q4_K_M.gguf", file_type=15)
    lad, errors = ladder_from_files([theirs, static])
    assert not errors and sorted(lad.labels()) == ["Q4_K_M", "Q4_K_M · imatrix (calibration_datav3)"]
    imx = lad.by_label("Q4_K_M · imatrix (calibration_datav3)").imatrix
    assert imx is not None and imx["entries"] == 196 and imx["chunks"] == 125 and imx["file"] == "/models/Tiny.imatrix"


def test_discovery_groups_imatrix_files_with_their_static_ones_and_skips_the_matrix(built: Ladder, matrices,
                                                                                    tmp_path: Path) -> None:
    out = copy_ladder(built, tmp_path / "found")
    shutil.copy(matrices[0], out / "product-support.imatrix.gguf")
    (group,) = group_by_model(scan_folder(out))
    labels = sorted(f.label or f.quant_type or "?" for f in group.files)
    assert labels == sorted(["Q4_K_M", "Q4_K_M" + IMX, "IQ4_NL", "IQ4_NL" + IMX]) and group.comparable


def test_cli_ladder_json_carries_imatrix_objects(built: Ladder, matrices, tmp_path: Path) -> None:
    out = copy_ladder(built, tmp_path / "cli")  # every file is reused: the command's JSON is what is tested here
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "workbench", "ladder", built.reference.path, "--types", "Q4_K_M,IQ4_NL",
           "--imatrix", str(matrices[0]), "--reference", "", "--out", str(out), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["label"]: r for r in json.loads(proc.stdout)["files"]}
    assert rows["Q4_K_M"][jf.IMATRIX] is None
    obj = rows["IQ4_NL" + IMX][jf.IMATRIX]
    assert tuple(obj) == jf.IMATRIX_KEYS and obj["name"] == NAME and obj["file"] == "a.imatrix.gguf"
    refused = subprocess.run([sys.executable, "-m", "workbench", "ladder", "--demo", "--types", "IQ2_XXS"],
                             capture_output=True, text=True, timeout=600, env=env)
    assert refused.returncode == 2 and "IQ2_XXS needs an importance matrix" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_apps_job_computes_the_matrix_then_builds_and_can_be_stopped(models_env: Path, demo_ladder,
                                                                         tmp_path: Path) -> None:
    from workbench.runs.calibration import bundled_text, from_text
    from workbench.runs.imatrix_ladder_job import ImatrixLadderJob

    src = tmp_path / "SmolLM2-135M-Instruct.F16.gguf"  # its own folder: the matrix is written beside it
    shutil.copy(demo_ladder.by_label("F16").path, src)
    text = from_text(bundled_text().pieces[0].text[:6000], "Support notes")
    job = ImatrixLadderJob(str(src), ["Q4_K_M"], text, reference_type=None, with_static=False).start()
    assert job.join(600) and job.status == "done", job.failure
    messages = job.snapshot()["messages"]
    assert messages[0].startswith("Computing the importance matrix from text file “Support notes”")
    assert job.result.labels() == ["F16 (source)", "Q4_K_M · imatrix (Support notes)"]
    imx = job.result.files[1].imatrix
    assert imx["file"] == "support-notes.imatrix.gguf" and imx["tokens"] > 0 and imx["kind"] == "text file"
    assert (tmp_path / "support-notes.imatrix.gguf").is_file()

    stopped = ImatrixLadderJob(str(src), ["Q4_K_M"], from_text("other " * 2000, "Other"), reference_type=None).start()
    stopped.stop()
    assert stopped.join(600) and stopped.status == "cancelled"
    assert not (tmp_path / "other.imatrix.gguf").exists()


def test_labels_typed_with_commas_keep_a_calibration_name_that_holds_one(tmp_path: Path) -> None:
    with_comma = make_gguf(tmp_path / "Tiny-Q4_K_M.gguf", file_type=15, metadata={
        "quantize.imatrix.dataset": "/data/support, v2.txt", "quantize.imatrix.entries_count": 196})
    static = make_gguf(tmp_path / "Tiny-static-Q4_K_M.gguf", file_type=15)
    lad, errors = ladder_from_files([with_comma, static])
    label = "Q4_K_M · imatrix (support, v2)"
    assert not errors and sorted(lad.labels()) == ["Q4_K_M", label]
    assert lad.split_labels(f"Q4_K_M, {label}") == ["Q4_K_M", label]
    assert lad.split_labels(f"{label},Q9_X,") == [label, "Q9_X"]  # an unknown piece is kept for the caller to report
    assert lad.split_labels("Q4_K_M · imatrix (support") == ["Q4_K_M · imatrix (support"]
