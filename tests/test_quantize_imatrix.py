"""Quantizing with an importance matrix: the matrix reaches llama.cpp, the file says so, bad input says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models_helpers import header, skewed_matrix
from workbench.models.quantize import IMATRIX_ENTRIES_KEY, IMATRIX_FILE_KEY, QuantizeError, quantize


@pytest.fixture(scope="module")
def matrix(demo_ladder, tmp_path_factory) -> Path:
    return skewed_matrix(demo_ladder.reference.path, tmp_path_factory.mktemp("imx") / "skewed.imatrix.gguf")


def test_the_matrix_changes_the_weights_and_the_file_records_it(demo_ladder, matrix: Path, tmp_path: Path) -> None:
    ref = demo_ladder.reference.path
    static, weighted = quantize(ref, tmp_path / "s.gguf", "Q4_K_M", 2), quantize(ref, tmp_path / "i.gguf", "Q4_K_M", 2, imatrix=matrix)
    hs, hi = header(static), header(weighted)
    assert IMATRIX_FILE_KEY not in hs.metadata
    assert hi.metadata[IMATRIX_FILE_KEY] == "skewed.imatrix.gguf" and hi.metadata[IMATRIX_ENTRIES_KEY] > 100
    assert hi.metadata["workbench.calibration.name"] == "skewed"
    with open(static, "rb") as a, open(weighted, "rb") as b:
        t = next(t for t in hs.tensors if t.name == "blk.3.ffn_down.weight")
        u = next(u for u in hi.tensors if u.name == t.name)
        a.seek(t.offset)
        b.seek(u.offset)
        assert a.read(t.n_bytes) != b.read(u.n_bytes)  # same type, other rounding: the matrix was used


def test_an_iq_type_that_needs_a_matrix_is_refused_without_one_and_made_with_one(demo_ladder, matrix: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="needs an importance matrix"):
        quantize(demo_ladder.reference.path, tmp_path / "x.gguf", "IQ2_XXS")
    assert not (tmp_path / "x.gguf").exists()
    made = quantize(demo_ladder.reference.path, tmp_path / "iq2.gguf", "IQ2_XXS", 2, imatrix=matrix)
    assert header(made).metadata["general.file_type"] == 19  # LLAMA_FTYPE_MOSTLY_IQ2_XXS


def test_a_broken_matrix_fails_the_quantization_with_its_reason_and_leaves_no_file(demo_ladder, tmp_path: Path) -> None:
    bad = tmp_path / "bad.imatrix.gguf"
    bad.write_bytes(b"\x05\x00\x00\x00garbage")
    with pytest.raises(QuantizeError, match="bad.imatrix.gguf") as err:
        quantize(demo_ladder.reference.path, tmp_path / "q.gguf", "Q4_K_M", imatrix=bad)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.glob("q.gguf*"))
