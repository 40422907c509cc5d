"""Importance-matrix files: our GGUF form round-trips, llama.cpp's legacy form reads, broken files say so."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from workbench.files.imatrix_file import ImatrixEntry, ImatrixError, ImatrixFile, read_imatrix, write_imatrix


def sample() -> ImatrixFile:
    rng = np.random.default_rng(3)
    return ImatrixFile(
        {"blk.0.attn_q.weight": ImatrixEntry(rng.random((1, 8), dtype=np.float32) * 100, np.array([64])),
         "blk.0.ffn_down_exps.weight": ImatrixEntry(rng.random((3, 4), dtype=np.float32), np.array([10, 0, 5]))},
        datasets=("notes.txt",), chunk_count=2, chunk_size=32,
        metadata={"workbench.calibration.name": "support <tickets>", "workbench.calibration.tokens": 64})


def test_the_gguf_form_round_trips_with_its_provenance(tmp_path: Path) -> None:
    data = sample()
    got = read_imatrix(write_imatrix(tmp_path / "m.imatrix.gguf", data))
    assert not (tmp_path / "m.imatrix.gguf.partial").exists()
    assert got.datasets == ("notes.txt",) and (got.chunk_count, got.chunk_size, got.legacy) == (2, 32, False)
    assert got.metadata == data.metadata and got.n_tokens == 64
    for name, e in data.entries.items():
        assert np.array_equal(got.entries[name].sums, e.sums) and np.array_equal(got.entries[name].counts, e.counts)


def test_importance_is_the_mean_squared_activation_and_one_where_no_token_came() -> None:
    imp = sample().importance()
    e = sample().entries["blk.0.ffn_down_exps.weight"]
    assert np.allclose(imp["blk.0.ffn_down_exps.weight"][:4], e.sums[0] / 10)
    assert np.array_equal(imp["blk.0.ffn_down_exps.weight"][4:8], np.ones(4, dtype=np.float32))  # expert never routed
    assert imp["blk.0.attn_q.weight"].dtype == np.float32 and imp["blk.0.attn_q.weight"].shape == (8,)


def legacy_bytes(values: np.ndarray, ncall: int, dataset: str | None = "cal.txt") -> bytes:
    name = b"blk.0.attn_k.weight"
    out = struct.pack("<i", 1) + struct.pack("<i", len(name)) + name + struct.pack("<ii", ncall, values.size)
    out += values.astype("<f4").tobytes()
    if dataset is not None:
        out += struct.pack("<i", 7) + struct.pack("<i", len(dataset)) + dataset.encode()
    return out


def test_the_legacy_dat_form_reads_as_llama_quantize_reads_it(tmp_path: Path) -> None:
    values = np.array([2.0, 4.0, 6.0], dtype=np.float32)  # legacy files store mean * ncall
    (tmp_path / "old.dat").write_bytes(legacy_bytes(values, ncall=2))
    got = read_imatrix(tmp_path / "old.dat")
    assert got.legacy and got.chunk_count == 7 and got.datasets == ("cal.txt",)
    assert np.allclose(got.importance()["blk.0.attn_k.weight"], values / 2)


@pytest.mark.parametrize("content, words", [
    (b"", "cut short"),
    (struct.pack("<i", 2_000_000_000), "entry count"),
    (legacy_bytes(np.ones(4, dtype=np.float32), 1)[:30], "cut short"),
    (struct.pack("<i", 1) + struct.pack("<i", 10**8), "limit"),
    (legacy_bytes(np.array([np.nan], dtype=np.float32), 1, None), "non-finite"),
])
def test_a_broken_file_gets_one_line_naming_it(tmp_path: Path, content: bytes, words: str) -> None:
    bad = tmp_path / "bad.imatrix"
    bad.write_bytes(content)
    with pytest.raises(ImatrixError, match=words) as err:
        read_imatrix(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_a_model_file_is_not_taken_for_an_importance_matrix(demo_ladder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImatrixError, match="not an importance matrix"):
        read_imatrix(demo_ladder.by_label("Q2_K").path)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ImatrixError, match="cannot be read"):
        read_imatrix(tmp_path / "nope.gguf")
