"""The Models page's importance-matrix choice for "Make a ladder": none, a matrix file, or calibration text to
compute one from (the bundled text, a text file, a prompt set's seeded half)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from workbench.core.escaping import md_escape
from workbench.models.quantize import IQ_TYPES, NEEDS_IMATRIX
from workbench.runs import calibration as cal
from workbench.runs.prompt_sets import PromptSet, PromptSetError, list_bundled_sets, parse_upload

NONE, FILE, BUNDLED, TEXT, PROMPTS = ("none (static files only)", "an existing .imatrix or .gguf matrix file",
                                      "the bundled reference text", "a text file", "a prompt set")
EXPLAIN = ("An **importance matrix** records which weights matter most for the text you care about, so the "
           "quantizer spends its precision there; computing one runs that text through the full-precision model "
           "once (about a minute for the demo model, much longer for big ones) before the files are made.")
TYPES_HELP = (f"The IQ types ({', '.join(IQ_TYPES)}) are made for an importance matrix; "
              f"{', '.join(sorted(NEEDS_IMATRIX))} cannot be made without one.")


@dataclass(frozen=True)
class MatrixChoice:
    """What the person chose: a matrix file, calibration text to compute one from, or neither; `error` when the
    choice cannot be used yet (one line, for the Build button)."""

    file: str | None = None
    calibration: cal.Calibration | None = None
    error: str | None = None

    @property
    def chosen(self) -> bool:
        return bool(self.file or self.calibration)


def _prompt_set(key: str) -> PromptSet | None:
    bundled = {s.name: s for s in list_bundled_sets()}
    pick = st.selectbox("Prompt set", [*bundled, "upload a file…"], key=key + "imx-set")
    if pick in bundled:
        return bundled[pick]
    up = st.file_uploader("Prompt set file (.toml, .csv, .jsonl or .txt, one prompt a line)",
                          type=["toml", "csv", "jsonl", "ndjson", "txt"], key=key + "imx-upload")
    if up is None:
        return None
    return parse_upload(up.getvalue(), up.name)


def matrix_controls(key: str) -> MatrixChoice:
    """The importance-matrix controls; returns the choice (nothing happens until Build)."""
    kind = st.selectbox("Importance matrix", [NONE, FILE, BUNDLED, TEXT, PROMPTS], key=key + "imx-kind")
    try:
        if kind == FILE:
            path = st.text_input("Matrix file (a path on this machine)", key=key + "imx-file",
                                 placeholder="/path/to/model.imatrix.gguf").strip()
            return MatrixChoice(file=path) if path else MatrixChoice(error="enter the path of the matrix file")
        if kind == BUNDLED:
            return MatrixChoice(calibration=cal.bundled_text())
        if kind == TEXT:
            path = st.text_input("Text file (a path on this machine)", key=key + "imx-text").strip()
            return MatrixChoice(calibration=cal.from_text_file(path)) if path else \
                MatrixChoice(error="enter the path of the text file to calibrate on")
        if kind == PROMPTS:
            chosen = _prompt_set(key)
            seed = int(st.number_input("Split seed", 0, 2**31 - 1, cal.DEFAULT_SEED, key=key + "imx-seed",
                                       help="The same seed gives the same halves, so the split can be repeated"))
            if chosen is None:
                return MatrixChoice(error="choose or upload a prompt set")
            calibration = cal.from_prompt_set(chosen, seed)
            st.caption(f"The matrix is computed from one half of “{md_escape(chosen.name)}” "
                       f"({md_escape(calibration.split.describe() if calibration.split else '')}); the other half "
                       "is held out, so the comparison afterwards is on prompts the matrix never saw.")
            return MatrixChoice(calibration=calibration)
    except (cal.CalibrationError, PromptSetError) as exc:
        return MatrixChoice(error=" ".join(str(exc).split()))
    return MatrixChoice()


def refusal(types: list[str], choice: MatrixChoice) -> str | None:
    """Why Build cannot start with these types and this choice, or None."""
    needs = [t for t in types if t in NEEDS_IMATRIX]
    if needs and not choice.chosen:
        return (f"{', '.join(needs)} need{'s' if len(needs) == 1 else ''} an importance matrix: llama.cpp cannot "
                "make a usable file of that type without one. Choose a matrix above, or a K-quant such as Q3_K_M.")
    return choice.error
