"""Recommend: which quantization and KV-cache type to ship on a target machine, on one chart, with the reasons and
a report to hand on. The decision is the library's (workbench.decide); this page asks and shows."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import quality_views as qv
from ui.shared import active_ladder, jobs, md_escape, pool, store, through_entrypoint
from workbench.decide import actions, report, study
from workbench.decide.recommend import PREFERENCES, Constraints, ctx_words, gib
from workbench.decide.targets import THIS_MACHINE, list_targets, the
from workbench.files.gguf_info import GgufError
from workbench.runs import timing
from workbench.runs.jobs import ComparisonJob

through_entrypoint()

K = "recommend-"
CONTEXTS = [2048, 4096, 8192, 16384, 32768, 65536, 131072]
KV_CHOICES = ["f16", "q8_0", "q4_0"]
PREFER_WORDS = {"quality": "Best quality that meets these", "memory": "Smallest that meets these"}

st.title("Recommend: which one to ship?")
st.caption("Every file of the ladder with each KV-cache type is a candidate. Fit and memory on the target are "
           "**predicted** from the GGUF header; speed there is an **estimate** (bytes read per token over the "
           "target's memory bandwidth, calibrated on this machine); quality is **measured** here (divergence from "
           "the reference, evals, blind votes); the LLaMA-3-8B KLD is **published elsewhere**, for context.")
ladder = active_ladder()
profiles = list_targets(store())
names = [p.name for p in profiles]

with st.form(K + "form"):
    c1, c2, c3 = st.columns(3)
    if st.session_state.get(K + "target-pick") not in names:  # a saved target deleted since
        st.session_state[K + "target-pick"] = THIS_MACHINE
    target = c1.selectbox("Target machine", names, key=K + "target-pick", help="Edit or add targets on the Hardware page.")
    n_ctx = c2.selectbox("Context needed (tokens)", CONTEXTS, index=CONTEXTS.index(8192), format_func=ctx_words)
    kv_types = c3.multiselect("KV-cache types to consider", KV_CHOICES, default=KV_CHOICES,
                              help="q8_0 and q4_0 caches need flash attention (the workbench turns it on).")
    c4, c5, c6 = st.columns(3)
    min_tok_s = c4.number_input("Minimum decode speed (tok/s, estimated; 0 = none)", 0.0, 10_000.0, 0.0, step=1.0)
    max_kld = c5.number_input("Maximum mean KLD (measured; 0 = none)", 0.0, 10.0, 0.0, step=0.01, format="%.3f")
    prefer = c6.radio("Among those that meet them", PREFERENCES, format_func=PREFER_WORDS.__getitem__)
    st.form_submit_button("Recommend", type="primary")

constraints = Constraints(target, int(n_ctx), float(min_tok_s) or None, float(max_kld) or None, str(prefer))
try:
    s = study.study(store(), ladder, constraints, kv_types or ["f16"])
except (ValueError, GgufError, OSError) as exc:
    st.error(f"Cannot recommend: {md_escape(exc)}")
    st.stop()
rec = s.recommendation

# ---- the answer -------------------------------------------------------------------------------------------------
if rec.recommended is not None:
    st.success(f"Ship **{md_escape(rec.recommended.label)}** on {md_escape(the(target))} at {ctx_words(int(n_ctx))}.")
else:
    st.warning(md_escape(rec.reasons[0]))
st.markdown("\n".join(f"- {md_escape(r)}" for r in (rec.reasons if rec.recommended else rec.reasons[1:])))
if rec.would_change:
    with st.expander("What would change the pick", expanded=True):
        st.markdown("\n".join(f"- {md_escape(r)}" for r in rec.would_change))

# ---- evidence still missing, and the buttons that collect it --------------------------------------------------------
job = jobs().get(st.session_state.get(K + "job"))
running = job is not None and not job.finished
for action in rec.actions:
    c1, c2 = st.columns([4, 1])
    c1.info(md_escape(action.words[:1].upper() + action.words[1:]) + ".")
    if action.kind == "votes":
        c2.page_link("pages/sets.py", label="Judge a set blind", icon=":material/list_alt:")
    elif c2.button("Run it", key=K + "run-" + action.kind, disabled=running):
        try:
            job = jobs().start(actions.job_for(action, pool(), store(), ladder))
            st.session_state[K + "job"] = job.id
            running = True
        except ValueError as exc:
            st.error(f"Cannot run: {md_escape(exc)}")
if running and job is not None:
    qv.job_progress(job, K + "job")
elif job is not None:
    qv.job_outcome(job)
    stored = store().get_run(job.run_id) if isinstance(job, ComparisonJob) and job.run_id else None  # speed: quiet?
    if stored is not None and (why := timing.unmeasured(stored)):
        st.warning(md_escape(why), icon=":material/speed:")

# ---- the chart ------------------------------------------------------------------------------------------------------
st.subheader(f"Quality against memory on {md_escape(the(target))}")
svg, left_off = report.chart_svg(s)
if svg is not None:
    # st.html drops an inline <svg>; markdown keeps it (and its hover titles). decide.chart escapes every label.
    st.markdown(f'<div style="max-width: 900px">{svg}</div>', unsafe_allow_html=True)
    st.caption("Pareto front: no other candidate that fits is both smaller and closer to the reference. Hollow markers "
               "do not fit the target.")
if left_off:
    st.caption("Not on the chart (no divergence measured yet): " + md_escape(", ".join(left_off)))

# ---- per target, and the evidence -----------------------------------------------------------------------------------
st.subheader(f"Fit per target at {ctx_words(int(n_ctx))}")
headers, rows = report.target_rows(s)
st.dataframe(pd.DataFrame(rows, columns=headers), hide_index=True, width="stretch")
st.caption(report.KIND_NOTE + " " + report.calibration_line(s))

st.subheader("Evidence")
st.dataframe(pd.DataFrame(report.evidence_rows(s), columns=report.EVIDENCE_HEADERS), hide_index=True, width="stretch")
with st.expander("Memory on the target, line by line (predicted)"):
    st.dataframe(pd.DataFrame([{
        "candidate": f.label, "weights": gib(f.detail["fit"].weights_bytes), "KV cache": gib(f.detail["fit"].kv_bytes),
        "compute + other": gib(f.detail["fit"].compute_bytes + f.detail["fit"].overhead_bytes),
        "total": gib(f.needed_bytes), "verdict": f.verdict} for f in s.facts]), hide_index=True, width="stretch")

# ---- the report -----------------------------------------------------------------------------------------------------
c1, c2 = st.columns(2)
stem = f"recommendation-{ladder.name}-{target}".replace(" ", "-").replace("/", "-")[:80]
c1.download_button("Download the report (HTML, works offline)", report.report_html(s), f"{stem}.html", "text/html",
                   key=K + "html")
c2.download_button("Download the report (Markdown)", report.report_markdown(s), f"{stem}.md", "text/markdown",
                   key=K + "md")
