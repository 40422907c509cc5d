"""Drawing divergence measurements and eval runs; the Quality, Evals and Compare pages call these.

Numbers come from workbench.quality.divergence / workbench.quality.evals; long work runs as a background job
(workbench.quality.quality_jobs) in the app's one job registry that the page follows, so no page blocks while
models work.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from ui.glossary_views import help_columns
from ui.job_views import is_running, job_outcome, job_progress, start_job_button
from ui.shared import jobs, pool, store
from workbench.core import glossary
from workbench.core.escaping import md_escape
from workbench.core.text_units import counted
from workbench.people.divergence_words import ranking_sentence
from workbench.quality import divergence as dv
from workbench.quality.evals import ALL, EvalRun
from workbench.quality.heatmap import heatmap_html
from workbench.quality.published import MODEL, NOTE, PUBLISHED_COLUMN, SOURCE_TITLE, SOURCE_URL, published_for_row
from workbench.quality.quality_jobs import QualityJob, divergence_run_job
from workbench.runs.contestants import Contestant
from workbench.storage.store import StoredRun

EXPLAIN = ("How far each quantization's word-by-word choices drift from the reference file's, on the same text. "
           "How: the reference's tokens are fed to every quantization (teacher forcing), and at each position the two "
           "next-token distributions are compared: **KLD** is KL(reference ‖ quantization) in nats (0 = identical), "
           "**same top-1** is how often both would pick the same next token, **PPL** is the perplexity of the "
           "reference's text under each model. Definitions: docs/quality.md.")


# ---- divergence --------------------------------------------------------------------------------
# Beside each measured mean KLD: the one published elsewhere for the same type (workbench.quality.published).
PUBLISHED_CAPTION = (f"**{PUBLISHED_COLUMN}** is published elsewhere, not measured here: "
                     f"[{md_escape(SOURCE_TITLE)}]({SOURCE_URL}), the same quantization type on {MODEL} over "
                     f"Wikitext-2 (made with an importance matrix for a file made with one, without one otherwise, "
                     f"wherever the source lists that row). It is {md_escape(NOTE)}: "
                     "compare rankings and ratios, not values. Every other column is measured here; a type the source "
                     "does not list has no published figure.")


def published_kld(quant_type: str | None, is_reference: bool = False, label: str | None = None) -> float | None:
    """The published mean KLD for a row's type (the imatrix row for an imatrix file's label); none for the
    reference, which every row is measured against."""
    figure = published_for_row(quant_type, is_reference, label)
    return None if figure is None else figure.mean_kld


def summary_frame(report: dv.DivergenceReport) -> pd.DataFrame:
    rows = []
    for r in report.results:
        s = r.summary
        rows.append({
            "quantization": r.label + (" (reference)" if r.is_reference else ""), "type": r.quant_type,
            "tokens": s.get("n_tokens"), "mean KLD": s.get("mean_kld"), "median KLD": s.get("median_kld"),
            "p99 KLD": s.get("p99_kld"), "max KLD": s.get("max_kld"),
            "same top-1 %": None if s.get("top1_agreement") is None else 100 * s["top1_agreement"],
            "PPL": s.get("ppl"), "mean p(ref token)": s.get("mean_p_token"),
            PUBLISHED_COLUMN: published_kld(r.quant_type, r.is_reference, r.label), "error": r.error,
        })
    return _drop_empty_errors(pd.DataFrame(rows))


def _drop_empty_errors(frame: pd.DataFrame) -> pd.DataFrame:
    if "error" in frame.columns and frame["error"].isna().all():
        return frame.drop(columns=["error"])
    return frame


def text_stats_frame(report: dv.DivergenceReport) -> pd.DataFrame:
    """The bundled text's statistics laid out like llama-perplexity --kl-divergence prints them."""
    rows: list[dict[str, Any]] = []
    for r in report.results:
        s = r.summary
        if r.error:
            rows.append({"quantization": r.label, PUBLISHED_COLUMN: None, "error": r.error})
            continue
        rows.append({
            "quantization": r.label + (" (reference)" if r.is_reference else ""), "type": r.quant_type,
            "PPL(Q)": f"{s['ppl']:.3f} ± {s['ppl_stderr']:.3f}", "ln(PPL(Q)/PPL(ref))": round(s["ln_ppl_ratio"], 5),
            "mean KLD": f"{s['mean_kld']:.5f} ± {s['kld_stderr']:.5f}", "max KLD": round(s["max_kld"], 4),
            "99.9% KLD": round(s["p999_kld"], 4), "99% KLD": round(s["p99_kld"], 4), "90% KLD": round(s["p90_kld"], 4),
            "median KLD": round(s["median_kld"], 5), "same top p %": f"{100 * s['top1_agreement']:.2f} ± "
                                                                     f"{100 * s['top1_stderr']:.2f}",
            "RMS Δp %": round(100 * s["rms_delta_p"], 3),
            PUBLISHED_COLUMN: published_kld(r.quant_type, r.is_reference, r.label), "error": None,
        })
    return _drop_empty_errors(pd.DataFrame(rows))


def kld_chart(report: dv.DivergenceReport, start: int = 0, end: int | None = None) -> go.Figure:
    rows = []
    for r in report.contestants():
        if r.kld is None:
            continue
        for i, k in enumerate(r.kld[start:end], start=start):
            rows.append({"token": i + 1, "KLD (nats)": k, "quantization": r.label})
    fig = px.line(pd.DataFrame(rows or [{"token": 0, "KLD (nats)": 0.0, "quantization": "-"}]), x="token",
                  y="KLD (nats)", color="quantization", title="KL divergence from the reference, token by token")
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=45, b=10), title_font_size=13)
    return fig


def heatmap(report: dv.DivergenceReport, key: str, start: int = 0, end: int | None = None) -> None:
    """A selectbox of contestants and the chosen one's token heatmap."""
    others = [r.label for r in report.contestants() if r.ok and r.kld is not None]
    if not others:
        st.info("No quantization besides the reference was measured.")
        return
    default = others.index(max(others, key=lambda lab: report.result(lab).summary.get("mean_kld") or 0))
    label = st.selectbox("Heatmap for", others, index=default, key=f"{key}-heat-pick",
                         help="Each token of the reference's text is shaded by this quantization's KL divergence there.")
    st.html(heatmap_html(report, label, start, end))


def report_view(report: dv.DivergenceReport, key: str) -> None:
    """Summary table, token heatmap (switchable) and per-token KLD chart of one measurement."""
    frame = summary_frame(report)
    st.markdown(md_escape(ranking_sentence(report)))
    st.dataframe(frame, hide_index=True, width="stretch", column_config=help_columns(frame.columns, {
                                "mean KLD": st.column_config.NumberColumn(format="%.4f"),
                                "median KLD": st.column_config.NumberColumn(format="%.4f"),
                                "p99 KLD": st.column_config.NumberColumn(format="%.4f"),
                                "max KLD": st.column_config.NumberColumn(format="%.3f"),
                                "same top-1 %": st.column_config.NumberColumn(format="%.1f"),
                                "PPL": st.column_config.NumberColumn(format="%.2f"),
                                "mean p(ref token)": st.column_config.NumberColumn(format="%.3f"),
                                PUBLISHED_COLUMN: st.column_config.NumberColumn(format="%.4f")}))
    st.caption(PUBLISHED_CAPTION)
    note = report.meta.get("note")
    st.caption(f"{report.n_tokens} tokens of {md_escape(report.reference_label)}'s output, measured "
               f"{(report.created_at or '')[:19].replace('T', ' ')} UTC" + (f" · {md_escape(note)}" if note else ""))
    heatmap(report, key)
    if report.n_tokens > 1:
        st.plotly_chart(kld_chart(report), width="stretch", key=f"{key}-kld-chart")


def divergence_panel(run: StoredRun, key: str = "cmp", explain: bool = True) -> None:
    """Measure (in the background) and show how far each contestant of a stored run drifts from the reference."""
    run_id = run.id
    state_key = f"divergence-job-{run_id}"
    job = jobs().get(st.session_state.get(state_key), QualityJob)
    if job is not None and not job.finished:
        job_progress(job, f"{key}-{run_id}-job")
        return
    job_outcome(job)
    ref = next((r for r in run.results if r.is_reference), None)
    if ref is None or ref.error or not ref.token_ids:
        st.caption("Divergence needs the reference's output; this run has none to follow.")
        return
    report = dv.load_report(store(), run_id, "output")
    if report is None:
        if explain:  # the Quality page says it once at the top
            st.caption(EXPLAIN)
        st.caption("Takes one pass per quantization over the reference's output (seconds for a short answer).")
    else:
        report_view(report, f"{key}-{run_id}")
    if dv.is_imported(run):
        st.caption(f"This run {dv.IMPORTED_NOTE}, so its divergence cannot be measured here: run the same prompt with "
                   "your own files on the Quality page.")
        return
    label = "Measure divergence" if report is None else "Measure again"
    job = start_job_button(label, state_key, lambda: divergence_run_job(pool(), store(), run_id), of=QualityJob,
                           key=f"{key}-{run_id}-measure", type="primary" if report is None else "secondary")
    if is_running(job):
        st.rerun()  # its progress shows in place of the panel


# ---- evals -------------------------------------------------------------------------------------
def matrix_frame(run: EvalRun) -> pd.DataFrame:
    cells = run.matrix()
    rows = []
    for cat in [*run.categories_present(), ALL]:
        row: dict[str, Any] = {"category": cat}
        for label in run.labels:
            c = next(x for x in cells if x.category == cat and x.label == label)
            name = label + (" (ref)" if label == run.reference_label else "")
            row[name] = c.text + (f" · {counted(c.errors, 'error')}" if c.errors else "")
        rows.append(row)
    return pd.DataFrame(rows)


def pass_rate_chart(run: EvalRun) -> go.Figure:
    rows = [{"category": c.category, "quantization": c.label, "pass rate": c.rate or 0.0,
             "plus": c.high - (c.rate or 0.0), "minus": (c.rate or 0.0) - c.low, "counts": f"{c.passed}/{c.total}"}
            for c in run.matrix() if c.total]
    frame = pd.DataFrame(rows or [{"category": "-", "quantization": "-", "pass rate": 0.0, "plus": 0.0, "minus": 0.0,
                                   "counts": ""}])
    fig = px.bar(frame, x="category", y="pass rate", color="quantization", barmode="group", text="counts",
                 error_y="plus", error_y_minus="minus", title="Pass rate per category (error bars: Wilson 95% interval)",
                 category_orders={"quantization": run.labels})
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10), title_font_size=13, yaxis_tickformat=".0%",
                      yaxis_range=[0, 1.05])
    return fig


def paired_frame(run: EvalRun) -> pd.DataFrame:
    return pd.DataFrame([{"category": p.category, "quantization": p.label,
                          "passed": f"{p.passed}/{p.total}", f"{run.reference_label} passed": f"{p.reference_passed}/{p.total}",
                          "only this passed": p.only_this, "only reference passed": p.only_reference,
                          "could be chance": glossary.chance_words(p.p_value), "p (exact McNemar)": round(p.p_value, 3),
                          "verdict": p.verdict} for p in run.paired()])


def case_drilldown(run: EvalRun, key: str) -> None:
    """One case: the prompt, the check, and each quantization's output with the checker's verdict, side by side."""
    ids = [c["id"] for c in run.cases if any(o.case_id == c["id"] for o in run.outcomes)]
    if not ids:
        st.caption("No case finished yet.")
        return
    cases = {c["id"]: c for c in run.cases}

    def fmt(cid: str) -> str:
        marks = "".join("✓" if (o := run.outcome(cid, lab)) and o.passed else "✗" if o else "·" for lab in run.labels)
        return f"{cid} · {cases[cid]['category']} · {marks}"

    cid = st.selectbox("Case", ids, format_func=fmt, key=f"{key}-case",
                       help="Marks are per quantization, in column order: ✓ passed, ✗ failed, · not run.")
    case = cases[cid]
    st.caption(f"Check: {md_escape(case.get('check_text') or case['check'].get('kind'))}"
               + (f" · max {case['max_tokens']} tokens" if case.get("max_tokens") else ""))
    with st.expander(f"Prompt ({len(case['prompt']):,} characters)"):
        st.html(f'<div class="wb-diff">{html.escape(case["prompt"])}</div>')
    cols = st.columns(max(2, len(run.labels)))
    for col, label in zip(cols, run.labels, strict=False):
        o = run.outcome(cid, label)
        with col:
            st.markdown(f"**{md_escape(label)}**{' · reference' if label == run.reference_label else ''}")
            if o is None:
                st.caption("not run")
                continue
            (st.success if o.passed else st.error)(("passed: " if o.passed else "failed: ") + md_escape(o.detail))
            st.html(f'<div class="wb-diff">{html.escape(o.output or o.error or "")}</div>')
            st.caption(f"{o.completion_tokens if o.completion_tokens is not None else '—'} tokens · "
                       f"stopped: {md_escape(o.stop_reason or '—')}")


def contestants_from(ladder: Any, chosen: list[str]) -> list[Contestant]:
    """The ladder's reference plus the chosen quantizations (none chosen: the reference alone)."""
    from workbench.runs.compare import contestants_for

    return contestants_for(ladder, chosen or [ladder.reference.label], ladder.reference.label)
