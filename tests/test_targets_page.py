"""The Hardware page's target machines in Streamlit's AppTest: the profiles with their sources, the form that adds
a profile (and refuses a bad one with a plain error), deleting it, and the ladder's memory lines and per-target
verdicts with estimated speeds labelled as estimates."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from workbench.decide import targets
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def hardware_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.switch_page("pages/hardware.py")
    at.run()
    assert not at.exception, at.exception
    return at


def frame(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def submit(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Save target").click()
    at.run()
    assert not at.exception, at.exception


def test_targets_table_form_and_verdicts(demo_ladder) -> None:
    at = hardware_page()
    # the page answers first: one sentence per target, before the machine's own figures
    assert at.subheader[0].value.startswith("Will ") and at.subheader[1].value == "This machine"
    answers = [m.value for m in at.markdown if "of RAM for models" in m.value]
    assert len(answers) == 4 and all("All 5 fit; the tightest, F16, fits" in a for a in answers)
    assert "fits on the GPU, with" in answers[3] and "of VRAM to spare" in answers[3]
    assert any(s.value == "Target machines" for s in at.subheader)
    table = frame(at, "RAM bandwidth")
    assert list(table["target"])[:4] == [targets.THIS_MACHINE, "8 GB laptop", "16 GB laptop", "24 GB GPU desktop"]
    sources = frame(at, "source")
    assert sources[sources["target"] == "24 GB GPU desktop"]["source"].str.contains("nvidia.com").any()

    lines = frame(at, "compute + other")
    assert list(lines["quantization"]) == demo_ladder.labels()
    assert {"KV at 4k", "KV at 8k"} <= set(lines.columns)  # SmolLM2 was trained for 8k: no 32k column
    verdicts = frame(at, "est. tok/s (estimate)")
    assert set(verdicts["target"]) == set(table["target"])
    assert set(verdicts["verdict"]) <= set(targets.VERDICT_WORDS.values())
    assert verdicts["est. tok/s (estimate)"].notna().all()  # a 135M model fits everywhere
    assert any("estimates" in c.value and "bandwidth" in c.value for c in at.caption)
    by_target = frame(at, "24 GB GPU desktop")  # one row per quantization, one column per target
    assert list(by_target["quantization"]) == demo_ladder.labels()
    assert by_target["16 GB laptop"].str.fullmatch(r"fits \(CPU\) · ~[\d,]+ tok/s").all()  # short enough to fit
    assert by_target["24 GB GPU desktop"].str.fullmatch(r"fits on GPU · ~[\d,]+ tok/s").all()
    assert verdicts["spare"].str.match(r"[\d.]+ (MiB|GiB) (RAM|VRAM) spare").all()  # the margins, in the details
    assert any("Assumption: a small model" in c.value for c in at.caption)

    # a quantized KV cache shrinks the KV line
    before = lines.iloc[0, 2]
    at.selectbox(key="hardware-lines-kv-k").set_value("q8_0")
    at.selectbox(key="hardware-lines-kv-v").set_value("q8_0")
    at.run()
    assert frame(at, "compute + other").iloc[0, 2] != before

    # a bad profile is refused in words; a good one is saved, listed and then deleted
    at.text_input(key="hardware-target-name").set_value("")
    submit(at)
    assert any("needs a name" in e.value for e in at.error)
    at.text_input(key="hardware-target-name").set_value("16 GB laptop")
    submit(at)
    assert any("built-in target" in e.value for e in at.error)
    at.text_input(key="hardware-target-name").set_value("Office <b>PC</b>")
    at.number_input(key="hardware-target-ram").set_value(12.0)
    at.text_input(key="hardware-target-src-ram").set_value("assumption: what IT bought")
    submit(at)
    assert any("Saved" in s.value and "\\<b\\>" in s.value for s in at.success)  # the name shown escaped
    saved = targets.get_target(Store(), "office <b>pc</b>")
    assert saved.ram_bytes == 12 * 2**30 and saved.sources["ram_bytes"] == "assumption: what IT bought"
    at.run()
    assert "Office <b>PC</b>" in list(frame(at, "RAM bandwidth")["target"])
    next(b for b in at.button if b.label == "Delete").click()
    at.run()
    assert not at.exception, at.exception
    assert targets.saved_targets(Store()) == ([], [])
