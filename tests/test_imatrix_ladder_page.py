"""Models → Make a ladder with an importance matrix, in Streamlit's headless AppTest: a type that needs a matrix is
refused without one (with the reason), a prompt set says which half is held out, and a matrix file builds a ladder
of static and imatrix files that becomes the active one."""

from __future__ import annotations

from pathlib import Path

from tests.models_helpers import skewed_matrix
from tests.test_models_pages import button, models_page, wait_until
from workbench.models.ladder import load_ladder


def test_make_an_imatrix_ladder_from_the_page(models_env: Path, demo_ladder, tmp_path: Path) -> None:
    at = models_page()
    at.radio(key="models-src-kind").set_value("the demo model's F16 reference")
    at.multiselect(key="models-types").set_value(["Q4_K_M", "IQ2_XXS"])
    at.run()
    button(at, "Build ladder").click()
    at.run()
    assert len(at.error) == 1 and at.error[0].value.startswith(r"IQ2\_XXS needs an importance matrix")
    assert "models-build" not in at.session_state  # nothing was started

    at.selectbox(key="models-imx-kind").set_value("a prompt set")
    at.run()
    assert any("held out" in c.value and "seeded with 0" in c.value for c in at.caption)

    matrix = skewed_matrix(demo_ladder.by_label("F16").path, tmp_path / "support.imatrix.gguf", "support")
    at.selectbox(key="models-imx-kind").set_value("an existing .imatrix or .gguf matrix file")
    at.run()
    at.text_input(key="models-imx-file").set_value(str(matrix))
    at.multiselect(key="models-types").set_value(["Q4_K_M"])
    at.selectbox(key="models-ref").set_value("the source file itself")
    at.run()
    assert at.checkbox(key="models-imx-static").value  # static twins by default, for the comparison
    button(at, "Build ladder").click()
    at.run()
    wait_until(at, lambda a: any("active ladder" in s.value for s in a.success), timeout=300)
    lad = load_ladder(at.session_state["ladder_dir"])
    assert lad.labels() == ["F16 (source)", "Q4_K_M", "Q4_K_M · imatrix (support)"]
    assert lad.name == "SmolLM2-135M-Instruct (made from the demo's F16)"
    assert lad.provenance["imatrix"]["file"] == "support.imatrix.gguf"
