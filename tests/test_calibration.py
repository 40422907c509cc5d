"""Calibration text for importance matrices: the seeded split never leaks a held-out prompt, sources say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.runs.calibration import (
    CalibrationError,
    PromptSplit,
    bundled_text,
    from_prompt_set,
    from_text_file,
    split_prompts,
)
from workbench.runs.prompt_sets import PromptSet, SetPrompt


@pytest.mark.parametrize("n", [2, 3, 10, 11, 400])
@pytest.mark.parametrize("seed", [0, 7])
def test_the_split_is_disjoint_complete_seeded_and_round_trips(n: int, seed: int) -> None:
    s = split_prompts(n, seed)
    assert not set(s.calibration) & set(s.held_out) and sorted(s.calibration + s.held_out) == list(range(n))
    assert s.calibration and s.held_out and s == split_prompts(n, seed)
    assert PromptSplit.parse(str(s)) == s and s.swapped().swapped() == s


def test_a_prompt_set_calibrates_on_its_half_only_and_the_other_direction_swaps() -> None:
    ps = PromptSet("support", [SetPrompt(f"prompt {i}", system="be brief") for i in range(10)])
    cal, other = from_prompt_set(ps, seed=3), from_prompt_set(ps, seed=3, use="held_out")
    assert cal.split is not None and other.split == cal.split.swapped()
    seen = {p.text for p in cal.pieces}
    assert seen == {f"prompt {i}" for i in cal.split.calibration}
    assert not seen & {f"prompt {i}" for i in cal.split.held_out}
    assert all(p.chat and p.system == "be brief" for p in cal.pieces)
    prov = cal.provenance(n_tokens=123)
    assert prov["workbench.calibration.split"] == str(cal.split) and prov["workbench.calibration.tokens"] == 123
    assert cal.sha256 == from_prompt_set(ps, seed=9).sha256  # the set's identity, whatever the split


def test_one_prompt_cannot_be_split() -> None:
    with pytest.raises(CalibrationError, match="at least two"):
        from_prompt_set(PromptSet("one", [SetPrompt("only")]))


def test_text_sources_name_themselves_and_refuse_bad_files(tmp_path: Path) -> None:
    assert bundled_text().kind == "bundled text" and len(bundled_text().pieces[0].text) > 1000
    (tmp_path / "notes.txt").write_text("our product's own words")
    assert from_text_file(tmp_path / "notes.txt").name == "notes"
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "empty.txt").write_text("  \n")
    for name, words in (("bin.txt", "not UTF-8"), ("empty.txt", "empty"), ("missing.txt", "cannot be read")):
        with pytest.raises(CalibrationError, match=words):
            from_text_file(tmp_path / name)
