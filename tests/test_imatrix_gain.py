"""Did the importance matrix help? Held-out prompts only, the recorded set or nothing, intervals, honest words.

The pair is real: the demo reference quantized to Q4_K_M twice, once static and once with a synthetic skewed
matrix (tests/test_quantize_imatrix.py), the imatrix file's provenance set by hand with a seeded split of a
small prompt set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.test_quantize_imatrix import skewed_matrix
from workbench.cli.main import main
from workbench.models.ladder import Ladder, LadderFile, save_ladder
from workbench.models.quantize import quantize
from workbench.quality.imatrix_gain import (
    FileGain,
    GainError,
    GainReport,
    TypeGain,
    change_sentence,
    held_out_prompts,
    measure_gain,
    pair_files,
)
from workbench.runs.calibration import prompt_set_digest, split_prompts
from workbench.runs.contestants import RunSettings
from workbench.runs.prompt_sets import PromptSet, SetPrompt, load_prompt_set

PROMPTS = ["Name a colour.", "Say hello.", "Count to three.", "Name a fruit."]


def _file(label: str, qt: str, imatrix: dict | None = None, reference: bool = False) -> LadderFile:
    return LadderFile(label, qt, f"/nowhere/{label}.gguf", 1, 4.0, reference, imatrix)


# ---- no model needed ------------------------------------------------------------------------------
def test_pairs_join_each_imatrix_file_with_its_static_twin() -> None:
    prov = {"name": "x", "kind": "prompt set", "sha256": "0" * 64, "tokens": 10, "split": "0:0|1", "file": "x.gguf"}
    ladder = Ladder("l", [_file("F16", "F16", reference=True), _file("Q4_K_M", "Q4_K_M"),
                          _file("Q4_K_M · imatrix (x)", "Q4_K_M", prov), _file("IQ3_M · imatrix (x)", "IQ3_M", prov),
                          _file("Q2_K", "Q2_K")])
    pairs = pair_files(ladder)
    assert [(p.quant_type, p.static and p.static.label, p.imatrix.label) for p in pairs] == [
        ("Q4_K_M", "Q4_K_M", "Q4_K_M · imatrix (x)"), ("IQ3_M", None, "IQ3_M · imatrix (x)")]
    assert pair_files(Ladder("s", [_file("F16", "F16", reference=True), _file("Q2_K", "Q2_K")])) == []


def test_held_out_prompts_are_the_split_s_other_half_and_only_the_recorded_set_fits() -> None:
    ps = PromptSet("p", [SetPrompt(f"prompt {i}") for i in range(6)])
    split = split_prompts(6, seed=3)
    held = held_out_prompts(ps, str(split), prompt_set_digest(ps))
    assert [i for i, _ in held] == list(split.held_out)
    assert not {p.prompt for _, p in held} & {ps.prompts[i].prompt for i in split.calibration}
    assert [i for i, _ in held_out_prompts(ps, split.swapped())] == list(split.calibration)  # the other direction
    other = PromptSet("p", [SetPrompt(f"prompt {i}!") for i in range(6)])
    with pytest.raises(GainError, match="not the prompt set the matrix was calibrated on"):
        held_out_prompts(other, split, prompt_set_digest(ps))
    with pytest.raises(GainError, match="does not fit"):
        held_out_prompts(PromptSet("p", ps.prompts[:5]), split)
    with pytest.raises(GainError, match="not a recorded prompt split"):
        held_out_prompts(ps, "nonsense")


def test_the_words_follow_the_numbers() -> None:
    less = change_sentence("Q4_K_M", "F16", "On 5 prompts", 0.053, 0.041, -0.23, (-0.33, -0.12))
    assert "23% less" in less and "12%–33% less" in less and "within noise" not in less
    more = change_sentence("Q4_K_M", "F16", "On 5 prompts", 0.041, 0.053, 0.29, (0.10, 0.40))
    assert "29% more" in more and "did not help" in more and "less" not in more
    unsure = change_sentence("Q4_K_M", "F16", "On 5 prompts", 0.053, 0.050, -0.06, (-0.2, 0.1))
    assert "within noise" in unsure and "includes no change" in unsure and "20% less to 10% more" in unsure
    floor = change_sentence("Q4_K_M", "F16", "On 5 prompts", 0.053, 0.050, -0.06, (-0.1, -0.03), noise_kld=0.004)
    assert "within noise" in floor and "differs from itself" in floor


def test_a_report_built_from_numbers_says_each_case_and_serialises() -> None:
    def fg(label: str, kld: list[float], imx: bool) -> FileGain:
        return FileGain(label, label.split()[0], f"/x/{label}", {"name": "n"} if imx else None, tuple(kld),
                        (9, 8, 9, 9), (10, 10, 10, 10))

    better = TypeGain("Q4_K_M", fg("Q4_K_M", [1.0, 1.1, 0.9, 1.0], False), fg("Q4_K_M i", [0.5, 0.6, 0.4, 0.5], True))
    lone = TypeGain("IQ3_M", None, fg("IQ3_M i", [0.9, 1.0, 0.8, 1.1], True))
    report = GainReport("held-out prompts", "F16", 4, [better, lone], fg("F16 (again)", [0, 0, 0, 0], False))
    words = report.sentences()
    assert words[0].startswith("On the 4 prompts the matrix never saw, the imatrix Q4_K_M drifts 50% less")
    assert words[1].startswith("IQ3_M has no static twin")
    assert any(s.startswith("Noise floor") and "repeats exactly" in s for s in words)
    change, (lo, hi) = better.change()  # type: ignore[misc]
    assert lo <= change <= hi < 0
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["types"][1]["static"] is None and doc["types"][0]["kld_change_interval"][1] < 0
    assert doc["reference"] == "F16" and doc["unit"] == "prompt" and doc["sentences"] == words


# ---- real files -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("set") / "tiny.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture(scope="module")
def gain_ladder(demo_ladder: Ladder, prompt_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Ladder:
    """The reference, a static Q4_K_M and an imatrix Q4_K_M whose provenance names the tiny set's split."""
    folder = tmp_path_factory.mktemp("gain")
    ref = demo_ladder.reference
    matrix = skewed_matrix(ref.path, folder / "skewed.imatrix.gguf")
    static = demo_ladder.by_label("Q4_K_M")
    made = quantize(ref.path, folder / "demo.Q4_K_M.imatrix-tiny.gguf", "Q4_K_M", 1, imatrix=matrix)
    ps = load_prompt_set(prompt_file)
    prov = {"name": ps.name, "kind": "prompt set", "sha256": prompt_set_digest(ps), "tokens": 100,
            "split": str(split_prompts(len(PROMPTS))), "file": matrix.name}
    imx = LadderFile("Q4_K_M · imatrix (tiny)", "Q4_K_M", str(made), made.stat().st_size, static.bits_per_weight,
                     False, prov)
    ladder = Ladder("gain", [ref, static, imx], directory=str(folder))
    save_ladder(ladder)
    return ladder


def _check_intervals(report: GainReport) -> None:
    for t in report.types:
        for f in (t.static, t.imatrix):
            assert f is not None and f.ok, f and f.error
            lo, hi = f.kld_interval()
            assert lo <= f.mean_kld <= hi and f.mean_kld > 0
            tlo, thi = f.top1_interval()
            assert tlo <= f.top1 <= thi
        change, (lo, hi) = t.change()  # type: ignore[misc]
        assert lo <= change <= hi
        sentence = report.sentences()[0]
        if hi < 0:
            assert "less" in sentence and "within noise" not in sentence
        elif lo > 0:
            assert "more" in sentence and "did not help" in sentence
        else:
            assert "within noise" in sentence


def test_only_held_out_prompts_are_measured_and_stored(pool, store, gain_ladder: Ladder, prompt_file: Path) -> None:
    ps = load_prompt_set(prompt_file)
    split = split_prompts(len(PROMPTS))
    steps: list[str] = []
    report = measure_gain(pool, gain_ladder, prompt_set=ps, store=store,
                          settings=RunSettings(max_tokens=12, n_ctx=256, n_threads=1),
                          on_progress=lambda d, t, m: steps.append(m))
    measured = [store.get_run(i).prompt for i in report.run_ids]  # type: ignore[union-attr]
    assert measured == [PROMPTS[i] for i in split.held_out]
    assert not set(measured) & {PROMPTS[i] for i in split.calibration}
    assert report.prompts == list(split.held_out) and report.units == len(split.held_out)
    assert report.noise is not None and report.noise.ok and report.noise.mean_kld == pytest.approx(0.0, abs=1e-6)
    assert report.sentences()[0].startswith(f"On the {len(split.held_out)} prompts the matrix never saw")
    assert steps and steps[-1] == "done"
    _check_intervals(report)
    doc = json.loads(json.dumps(report.to_dict()))
    row = doc["types"][0]
    assert row["quant_type"] == "Q4_K_M" and row["imatrix_file"]["imatrix"]["split"] == str(split)
    assert row["static"]["imatrix"] is None and len(row["static"]["mean_kld_interval"]) == 2


def test_the_reference_text_case_resamples_chunks(pool, gain_ladder: Ladder) -> None:
    report = measure_gain(pool, gain_ladder, text=True, chunk_tokens=64, max_chunks=3,
                          settings=RunSettings(n_ctx=256, n_threads=1))
    assert report.source == "reference text" and report.units == 3
    assert report.types[0].imatrix.tokens == (31, 31, 31)  # 64 - 32 - 1 scored per chunk
    _check_intervals(report)
    assert report.sentences()[0].startswith("On the bundled reference text (3 chunks)")


def test_a_set_that_is_not_the_calibration_set_is_refused(pool, gain_ladder: Ladder) -> None:
    other = PromptSet("tiny", [SetPrompt(p + " Please.") for p in PROMPTS])
    with pytest.raises(GainError, match="was calibrated on"):
        measure_gain(pool, gain_ladder, prompt_set=other)


def test_cli_measures_and_refuses_bad_input_in_one_line(gain_ladder: Ladder, prompt_file: Path, tmp_path: Path,
                                                         demo_ladder: Ladder, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "db.sqlite3")
    base = ["imatrix-gain", "--ladder", str(gain_ladder.directory), "--db", db, "--max-tokens", "8", "--threads", "1"]
    assert main([*base, "--prompts", str(prompt_file), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reports"][0]["source"] == "held-out prompts" and doc["reports"][0]["types"][0]["kld_change"] is not None
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("Another prompt.\nAnd another.\n")
    for argv, why in (([*base, "--prompts", str(wrong)], "calibrated on"),
                      ([*base], "say what to measure"),
                      (["imatrix-gain", "--ladder", str(demo_ladder.directory), "--reference-text"], "no files made with"),
                      (["imatrix-gain", "--ladder", str(tmp_path), "--reference-text"], "not a ladder directory")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert re.search(why, err) and "\n" not in err and "Traceback" not in err


def test_quality_page_measures_the_held_out_prompts_and_escapes_names(gain_ladder: Ladder, prompt_file: Path) -> None:
    """The part appears for a ladder with imatrix files; an uploaded set is checked against the recorded digest;
    a run's sentences come first; a hostile calibration name is drawn as text."""
    from streamlit.testing.v1 import AppTest

    hostile = Ladder(gain_ladder.name, [LadderFile(**{**f.__dict__}) for f in gain_ladder.files],
                     directory=gain_ladder.directory)
    imx = hostile.files[-1]
    imx.imatrix = {**(imx.imatrix or {}), "name": "<b>evil</b> set"}
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.session_state["ladders"] = [hostile]
    at.session_state["ladder_dir"] = hostile.directory
    at.switch_page("pages/quality.py")
    at.run()
    assert not at.exception, at.exception
    assert any(s.value == "Did the importance matrix help?" for s in at.subheader)
    key = f"imx-gain-{hostile.directory}"
    label = at.checkbox(key=key + "-prompts").label
    assert "<b>" not in label and "evil" in label
    wrong = b"Another prompt.\nAnd another.\nA third.\nA fourth.\n"
    at.file_uploader(key=key + "-upload").set_value(("tiny.txt", wrong, "text/plain"))
    at.run()
    assert any("not the prompt set the matrix was calibrated on" in e.value for e in at.error)
    at.file_uploader(key=key + "-upload").set_value(("tiny.txt", prompt_file.read_bytes(), "text/plain"))
    at.number_input(key=key + "-max-tokens").set_value(8)
    at.run()
    assert not at.error and any("2 held-out prompts of 4" in c.value for c in at.caption)
    at.button(key=key + "-run").click()
    at.run()
    for _ in range(120):  # the job runs in the background; each rerun redraws its progress, then the result
        if any(m.value == "#### On the held-out prompts" for m in at.markdown) or at.exception:
            break
        at.run()
    assert not at.exception, at.exception
    texts = [m.value for m in at.markdown]
    first = texts.index("#### On the held-out prompts") + 1
    assert texts[first].startswith("On the 2 prompts the matrix never saw")
    table = next(d.value for d in at.dataframe if "imatrix KLD (95%)" in d.value.columns)
    assert list(table["type"]) == ["Q4_K_M"]
