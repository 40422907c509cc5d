"""Recommend: which quantization and KV-cache type to ship on a target machine, on one chart, with the reasons and
a report to hand on. The decision is the library's (workbench.decide); this page asks and shows."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from ui.job_views import job_view, start_job_button
from ui.shared import active_ladder, jobs, pool, store, through_entrypoint
from workbench.core.escaping import md_escape
from workbench.core.jobs import Job
from workbench.core.text_units import bytes_in_words
from workbench.decide import actions, report, study
from workbench.decide.actions import Action
from workbench.decide.recommend import (
    DEFAULT_MAX_KLD,
    HOLDS_TYPE,
    PREFER_WORDS,
    PREFERENCES,
    Constraints,
    bar_words,
    ctx_words,
)
from workbench.decide.targets import THIS_MACHINE, list_targets, the
from workbench.files.gguf_info import GgufError
from workbench.runs import timing
from workbench.runs.jobs import ComparisonJob

through_entrypoint()

K = "recommend-"
SAVED = K + "saved"  # a plain copy of every choice: Streamlit drops a widget's key while its page is not shown
CONTEXTS = [2048, 4096, 8192, 16384, 32768, 65536, 131072]
KV_CHOICES = ["f16", "q8_0", "q4_0"]
DEFAULTS = {"target": THIS_MACHINE, "ctx": 8192, "kv": KV_CHOICES, "min-tok-s": 0.0, "max-kld": DEFAULT_MAX_KLD,
            "prefer": PREFERENCES[0]}

st.title("Recommend: which one to ship?")
st.caption("Every file of the ladder with each KV-cache type is an option. Fit and memory on the target are "
           "**predicted** from the GGUF header; speed there is an **estimate** (bytes read per token over the "
           "target's memory bandwidth, calibrated on this machine); quality is **measured** here (divergence from "
           "the reference, evals, blind votes); the LLaMA-3-8B KLD is **published elsewhere**, for context.")
ladder = active_ladder()
profiles = list_targets(store())
names = [p.name for p in profiles]

saved = {**DEFAULTS, **st.session_state.get(SAVED, {})}
if saved["target"] not in names:  # a saved target deleted since
    saved["target"] = THIS_MACHINE
for name, value in saved.items():  # restore what the widgets forgot while another page was shown
    if K + name not in st.session_state:
        st.session_state[K + name] = value
if st.session_state[K + "target"] not in names:
    st.session_state[K + "target"] = THIS_MACHINE

c1, c2, c3 = st.columns(3)
target = c1.selectbox("Target machine", names, key=K + "target",
                      help="The machine the model will run on. Edit or add targets on the Hardware page.")
n_ctx = c2.selectbox("Context needed (tokens)", CONTEXTS, key=K + "ctx", format_func=ctx_words,
                     help="The longest conversation the application must hold: prompt plus answer. The KV cache that "
                          "holds it grows with it, so it changes the memory each option needs.")
kv_types = c3.multiselect("KV-cache types to consider", KV_CHOICES, key=K + "kv",
                          help="The KV cache keeps the conversation so far in memory. f16 is full precision; q8_0 "
                               "stores it in 8 bits (about half the memory) and q4_0 in 4 bits (about a quarter), "
                               "which can cost quality too: it is measured like a file's. Both need flash attention "
                               "(the workbench turns it on).")
c4, c5, c6 = st.columns(3)
prefer = c4.radio("Pick", PREFERENCES, key=K + "prefer", format_func=PREFER_WORDS.__getitem__,
                  help="The smallest option whose quality holds answers \"which quantization?\"; the best quality is "
                       "the reference whenever it fits.")
max_kld = c5.number_input("Quality holds up to a mean KLD of (0 = no bar)", 0.0, 10.0, key=K + "max-kld", step=0.001,
                          format="%.4f",
                          help="Mean KLD (Kullback-Leibler divergence) measures how far an option's next-token "
                               "probabilities drift from the reference's, averaged over reference text: 0 is "
                               f"identical. The default {bar_words(DEFAULT_MAX_KLD)} is what llama.cpp published for "
                               f"{HOLDS_TYPE} on LLaMA-3-8B, the smallest type common GGUF guides call \"very low quality "
                               "loss\".")
min_tok_s = c6.number_input("Minimum decode speed (tok/s, estimated; 0 = none)", 0.0, 10_000.0, key=K + "min-tok-s",
                            step=1.0, help="Tokens generated per second on the target, estimated from its memory "
                                           "bandwidth; options below it are ruled out.")
st.session_state[SAVED] = {name: st.session_state[K + name] for name in DEFAULTS}

constraints = Constraints(str(target), int(n_ctx), float(min_tok_s) or None, float(max_kld) or None, str(prefer))
try:
    s = study.study(store(), ladder, constraints, kv_types or ["f16"])
except (ValueError, GgufError, OSError) as exc:
    st.error(f"Cannot recommend: {md_escape(exc)}")
    st.stop()
rec = s.recommendation

# ---- the answer -------------------------------------------------------------------------------------------------
say = st.warning if rec.recommended is None else st.info if rec.keeps_reference else st.success
say(md_escape(rec.answer))
st.caption(md_escape(rec.rule) + " Change the bar above.")
for line in report.left_out_lines(s):  # a file whose header was refused gets no verdict, and says why
    st.error(md_escape(line))
if rec.meaning:
    st.markdown(md_escape(rec.meaning))
why = rec.reasons if rec.recommended else rec.reasons[1:]
if why:
    with st.expander("Why", expanded=True):
        st.markdown("\n".join(f"- {md_escape(r)}" for r in why))
if rec.would_change:
    with st.expander("What would change the pick"):
        st.markdown("\n".join(f"- {md_escape(r)}" for r in rec.would_change))


# ---- evidence still missing, and the buttons that collect it --------------------------------------------------------
def collect(action: Action) -> Job:
    """The job that gathers the evidence `action` asks for, on this ladder."""
    return actions.job_for(action, pool(), store(), ladder)


job = jobs().get(st.session_state.get(K + "job"))
for action in rec.actions:
    c1, c2 = st.columns([4, 1])
    c1.info(md_escape(action.words[:1].upper() + action.words[1:]) + ".")
    if action.kind == "votes":
        c2.page_link("pages/sets.py", label="Judge a set blind", icon=":material/list_alt:")
    else:  # one job at a time: every Run it button waits while the one started runs
        job = start_job_button("Run it", K + "job", functools.partial(collect, action), of=Job, where=c2,
                               key=K + "run-" + action.kind)
job_view(job, K + "job")
if job is not None and job.finished:
    stored = store().get_run(job.run_id) if isinstance(job, ComparisonJob) and job.run_id else None  # speed: quiet?
    if stored is not None and (unquiet := timing.unmeasured(stored)):
        st.warning(md_escape(unquiet), icon=":material/speed:")

# ---- the chart ------------------------------------------------------------------------------------------------------
st.subheader(f"Quality against memory on {md_escape(the(target))}")
svg, left_off = report.chart_svg(s)
if svg is not None:
    # st.html drops an inline <svg>; markdown keeps it (and its hover titles). decide.chart escapes every label.
    st.markdown(f'<div style="max-width: 900px">{svg}</div>', unsafe_allow_html=True)
    st.caption(report.CHART_CAPTION)
if left_off:
    st.caption("Not on the chart (no divergence measured yet): " + md_escape(", ".join(left_off)))

# ---- per target, and the evidence -----------------------------------------------------------------------------------
st.subheader(f"Fit per target at {ctx_words(int(n_ctx))}")
headers, rows = report.target_rows(s)
st.dataframe(pd.DataFrame(rows, columns=headers), hide_index=True, width="stretch")
st.caption(report.KIND_NOTE + " " + report.calibration_line(s))

st.subheader("Evidence")
st.dataframe(pd.DataFrame(report.evidence_rows(s), columns=report.EVIDENCE_HEADERS), hide_index=True, width="stretch")
if imported := report.imported_rows(s):
    st.caption("Imported from other machines: shown for reference, never used for the pick (only what was measured "
               "here decides).")
    st.dataframe(pd.DataFrame(imported, columns=report.IMPORTED_HEADERS), hide_index=True, width="stretch")
with st.expander("Memory on the target, line by line (predicted)"):
    st.dataframe(pd.DataFrame([{
        "candidate": f.label, "weights": bytes_in_words(f.detail["fit"].weights_bytes), "KV cache": bytes_in_words(f.detail["fit"].kv_bytes),
        "compute + other": bytes_in_words(f.detail["fit"].compute_bytes + f.detail["fit"].overhead_bytes),
        "total": bytes_in_words(f.needed_bytes), "verdict": f.verdict} for f in s.facts]), hide_index=True, width="stretch")

# ---- the report -----------------------------------------------------------------------------------------------------
c1, c2 = st.columns(2)
stem = f"recommendation-{ladder.name}-{target}".replace(" ", "-").replace("/", "-")[:80]
c1.download_button("Download the report (HTML, works offline)", report.report_html(s), f"{stem}.html", "text/html",
                   key=K + "html")
c2.download_button("Download the report (Markdown)", report.report_markdown(s), f"{stem}.md", "text/markdown",
                   key=K + "md")
