"""The Quality page's "Did the importance matrix help?": static vs imatrix files of each type, measured on the
prompts the matrix never saw and/or the bundled text (workbench.quality.imatrix_gain), as a background job.

Drawn only for a ladder that holds files made with an importance matrix. The words come first, then a table per
type, then the noise floor and the method. Every label, name and message from a file or a prompt set is escaped.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui.job_views import job_view, start_job_button
from ui.shared import pool, store
from workbench.core.escaping import md_escape
from workbench.core.hardware import default_threads
from workbench.models.ladder import Ladder
from workbench.quality.imatrix_gain import GainReport, held_out_prompts, pair_files
from workbench.quality.quality_jobs import QualityJob, imatrix_gain_job
from workbench.runs.calibration import prompt_set_digest
from workbench.runs.contestants import RunSettings
from workbench.runs.prompt_sets import PromptSet, PromptSetError, list_bundled_sets, parse_upload

EXPLAIN = ("A file quantized with an importance matrix is tuned to its calibration text, so it is measured here only "
           "on text the matrix never saw: the **held-out** half of the prompt set it was made from (the split was "
           "seeded and recorded with the matrix), and the bundled reference text. Each file is compared with the "
           "reference token by token (KLD: 0 = identical; lower is closer). Intervals are 95%, from resampling whole "
           "prompts (or chunks of the text).")


def _recorded_set(ladder: Ladder) -> tuple[dict[str, Any] | None, PromptSet | None]:
    """The prompt-set provenance the ladder's imatrix files recorded, and the bundled set with that digest, if any."""
    recorded = next((p.imatrix.imatrix for p in pair_files(ladder)
                     if (p.imatrix.imatrix or {}).get("kind") == "prompt set" and (p.imatrix.imatrix or {}).get("split")),
                    None)
    if recorded is None:
        return None, None
    for s in list_bundled_sets():
        if prompt_set_digest(s) == recorded.get("sha256"):
            return recorded, s
    return recorded, None


def _file_cell(f: Any) -> tuple[str, str]:
    if f is None:
        return "none in this ladder", "—"
    if not f.ok:
        return f"failed: {f.error}", "—"
    lo, hi = f.kld_interval()
    tlo, thi = f.top1_interval()
    return f"{f.mean_kld:.4f} ({lo:.4f}–{hi:.4f})", f"{f.top1:.1%} ({tlo:.1%}–{thi:.1%})"


def gain_frame(report: GainReport) -> pd.DataFrame:
    """One row per type: static and imatrix KLD with intervals, top-1 agreement, and the change."""
    rows = []
    for t in report.types:
        s_kld, s_top = _file_cell(t.static)
        i_kld, i_top = _file_cell(t.imatrix)
        ch = t.change()
        rows.append({"type": t.quant_type, "static KLD (95%)": s_kld, "imatrix KLD (95%)": i_kld,
                     "KLD change (95%)": "—" if ch is None else
                     f"{100 * ch[0]:+.0f}% ({100 * ch[1][0]:+.0f}% to {100 * ch[1][1]:+.0f}%)",
                     "static same top-1": s_top, "imatrix same top-1": i_top})
    return pd.DataFrame(rows)


def report_view(report: GainReport) -> None:
    """The sentences first, then the table, then the noise floor's figure."""
    title = "On the held-out prompts" if report.unit == "prompt" else "On the bundled reference text"
    st.markdown(f"#### {title}")
    for line in report.sentences():
        st.markdown(md_escape(line))
    st.dataframe(gain_frame(report), hide_index=True, width="stretch")
    if report.noise is not None and report.noise.ok:
        lo, hi = report.noise.kld_interval()
        st.caption(f"Noise floor: {md_escape(report.reference_label)} scored again against itself, KLD "
                   f"{report.noise.mean_kld:.4f} ({lo:.4f}–{hi:.4f}). Measured here"
                   + (f"; stored as runs {', '.join(map(str, report.run_ids))}." if report.run_ids else "."))


def gain_section(ladder: Ladder) -> None:
    """The whole part: what to measure on, Run (a background job with progress and Stop), the result."""
    st.subheader("Did the importance matrix help?")
    st.caption(EXPLAIN)
    pairs = pair_files(ladder)
    st.markdown("Types made with a matrix: " + ", ".join(
        md_escape(p.quant_type) + ("" if p.static else " (no static twin)") for p in pairs) + ".")
    recorded, prompt_set = _recorded_set(ladder)
    key = f"imx-gain-{ladder.directory}"
    use_prompts = False
    if recorded is not None:
        use_prompts = st.checkbox(f"The held-out prompts of “{md_escape(recorded.get('name'))}”", value=True,
                                  key=key + "-prompts")
        if use_prompts and prompt_set is None:
            upload = st.file_uploader("This set is not bundled: upload the same prompt set the matrix was made from",
                                      type=["txt", "csv", "toml", "jsonl"], key=key + "-upload")
            if upload is not None:
                try:
                    prompt_set = parse_upload(upload.getvalue(), upload.name)
                except PromptSetError as exc:
                    st.error(md_escape(str(exc).splitlines()[0]))
        if use_prompts and prompt_set is not None:
            try:
                held = held_out_prompts(prompt_set, str(recorded.get("split")), recorded.get("sha256"))
                st.caption(f"{len(held)} held-out prompts of {len(prompt_set.prompts)} (the split recorded with the "
                           "matrix); the others calibrated it and are never measured here.")
            except ValueError as exc:
                st.error(md_escape(exc))
                prompt_set = None
    else:
        st.caption("The matrix was not made from a prompt set, so there are no held-out prompts; the bundled text is "
                   "the held-out measurement (unless the matrix came from it).")
    use_text = st.checkbox("The bundled reference text", value=recorded is None, key=key + "-text")
    c1, c2, c3 = st.columns(3)
    max_tokens = c1.number_input("Tokens per held-out prompt", 8, 1024, 128, key=key + "-max-tokens",
                                 help="How much the reference writes on each held-out prompt; every file then reads it.")
    chunk = c2.selectbox("Text chunk (tokens)", [256, 512], index=1, key=key + "-chunk",
                         help="llama-perplexity's -c; 512 is what published KLD tables use, 256 gives more chunks.")
    max_chunks = c3.number_input("Max chunks (0 = all)", 0, 100, 0, key=key + "-max-chunks")

    def make() -> QualityJob:
        settings = RunSettings(max_tokens=int(max_tokens), n_threads=default_threads(beside_browser=True))
        return imatrix_gain_job(pool(), store(), ladder, prompt_set=prompt_set if use_prompts else None,
                                text=use_text, settings=settings, chunk_tokens=int(chunk),
                                max_chunks=int(max_chunks) or None)

    job = start_job_button("Measure static vs imatrix", key + "-job", make, of=QualityJob,
                           disabled=not ((use_prompts and prompt_set is not None) or use_text), key=key + "-run")
    job_view(job, key)
    if job is not None and job.finished and not job.failure and not job.cancelled and job.result:
        for report in job.result:
            report_view(report)
