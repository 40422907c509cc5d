"""Prompt sets: put "our prompts" (pasted, uploaded or bundled) through the chosen quantizations as one set run in
the background, then read each quantization against the reference per prompt, in words and changed facts."""

import pandas as pd
import streamlit as st

from ui import set_views as sv
from ui.history_views import set_report_downloads
from ui.job_views import is_running, job_outcome, job_progress, start_job_button
from ui.shared import active_ladder, fmt_time, jobs, pool, store, through_entrypoint
from ui.variant_views import variant_picker
from workbench.core.escaping import md_escape
from workbench.core.hardware import default_threads
from workbench.core.text_units import counted, plural
from workbench.runs.contestants import RunSettings
from workbench.runs.noise import MAX_REPEATS
from workbench.runs.prompt_sets import (
    MAX_PROMPTS,
    PromptSet,
    PromptSetError,
    list_bundled_sets,
    parse_prompt_set,
    parse_upload,
)
from workbench.runs.set_runs import SetRunError, SetRunJob, running_job, start_set_run
from workbench.storage.store import StoreError

through_entrypoint()

st.title("Prompt sets")
st.caption("Your own prompts through the ladder as one batch: each prompt becomes an ordinary comparison run, and "
           "each quantization's answer is set against the reference's in words and changed facts. No checkers "
           f"needed. Up to {MAX_PROMPTS} prompts; a bad row refuses the whole set, with its line number.")
ladder = active_ladder()
reference = ladder.reference.label
others = [label for label in ladder.labels() if label != reference]
defaults = [label for label in ladder.default_labels() if label in others]

# ---- the prompts ------------------------------------------------------------------------------------------
st.subheader("New set run")
source = st.radio("Prompts from", ["Paste lines", "Upload a file", "A bundled set"], horizontal=True,
                  key="sets-source")
prompt_set: PromptSet | None = None
if source == "Paste lines":
    name = st.text_input("Set name", value="pasted prompts", key="sets-name")
    text = st.text_area("Prompts, one per line (lines starting with # are skipped)", key="sets-paste", height=160)
    if text.strip():
        try:
            prompt_set = parse_prompt_set(text, "lines", name=name or None)
        except PromptSetError as exc:
            sv.show_parse_errors(exc, "The pasted prompts")
elif source == "Upload a file":
    upload = st.file_uploader("CSV (a prompt column), TOML ([[prompts]]) or JSONL ({\"prompt\": …} per line)",
                              type=["txt", "csv", "toml", "jsonl", "ndjson"], key="sets-upload")
    if upload is not None:
        try:
            prompt_set = parse_upload(upload.getvalue(), upload.name)
        except PromptSetError as exc:
            sv.show_parse_errors(exc, upload.name)
else:
    try:
        bundled = list_bundled_sets()
    except PromptSetError as exc:
        bundled = []
        sv.show_parse_errors(exc, "A bundled set")
    if bundled:
        names = [s.name for s in bundled]
        pick = st.selectbox("Bundled set", range(len(bundled)), format_func=lambda i: names[i], key="sets-bundled")
        prompt_set = bundled[pick]
    else:
        st.info("No bundled sets found in prompts/sets/.")

if prompt_set is not None:
    n = len(prompt_set)
    st.caption(f"{counted(n, 'prompt')} in “{md_escape(prompt_set.name)}”.")
    for note in prompt_set.notes:
        st.caption(md_escape(note))
    with st.expander("Preview"):
        st.dataframe(pd.DataFrame([p.to_dict() for p in prompt_set.prompts]).drop(columns="check", errors="ignore"),
                     hide_index=True, width="stretch", key="sets-preview")

c1, c2, c3 = st.columns([3, 1, 1])
chosen = c1.multiselect("Quantizations", others, default=defaults, key=f"sets-quants-{ladder.directory}")
max_tokens = c2.number_input("Max tokens", 1, 8192, 200, key="sets-max-tokens")
repeats = c3.number_input("Reference repeats", 0, MAX_REPEATS, 2, key="sets-repeats",
                          help="The noise floor: the reference runs this many more times on each prompt, with the "
                               "prompt evaluated in other micro-batch sizes (1, 7, 64 … tokens), so each "
                               "quantization's difference is shown against the reference's own variation. "
                               "0 skips it.")
variants, baseline = variant_picker("sets")
st.caption(f"Reference: {md_escape(reference)} (always runs). Greedy decoding; prompts run one after another"
           + (f"; the reference {int(repeats)} more {plural(int(repeats), 'time')} per prompt for the noise floor."
              if repeats else "."))


def run_set() -> SetRunJob:
    """The set run stored first (so a stopped one can resume), then run in the background; shown below."""
    if prompt_set is None:  # the button waits for prompts; this tells the type checker so
        raise ValueError("choose the prompts first")
    settings = RunSettings(max_tokens=int(max_tokens), n_threads=default_threads(beside_browser=True))
    set_run_id = start_set_run(store(), prompt_set, ladder, labels=list(chosen), reference=reference, settings=settings,
                               noise_repeats=int(repeats), variants=variants, variant_baseline=baseline)
    sv.open_set_run(set_run_id)
    return SetRunJob(pool(), store(), set_run_id, ladder=ladder)


job = start_job_button("Run set", "sets-job", run_set, of=SetRunJob,
                       disabled=prompt_set is None or not chosen, refusals=(SetRunError, StoreError, ValueError),
                       type="primary", key="sets-run")
running = is_running(job)

# ---- set runs ---------------------------------------------------------------------------------------------
st.divider()
st.subheader("Set runs")
if job is not None and job.finished and st.session_state.get("sets-job-shown") != job.id:
    st.session_state["sets-job-shown"] = job.id
    sv.open_set_run(job.set_run_id)  # show the set run that just ended
job_outcome(job)
past = store().list_set_runs(limit=200)
if not past:
    st.info("No set runs yet: choose prompts above and press Run set.")
else:
    by_id = {r.id: r for r in past}
    ids = list(by_id)
    wanted = st.session_state.get("sets_run_id")

    def describe(set_run_id: int) -> str:
        r = by_id[set_run_id]
        return f"#{r.id} · {fmt_time(r.created_at)} · {r.name} · {r.n_finished} of {r.n_prompts} prompts · {r.status}"

    if wanted in ids:  # a set run just started, or opened from History: select it (before the widget exists)
        st.session_state["sets-pick"] = wanted
    picked = st.selectbox("Set run", ids, format_func=describe, key="sets-pick")
    sv.open_set_run(picked)
    set_run = store().get_set_run(picked)
    if set_run is not None:
        live = job if running and job is not None and job.set_run_id == picked else running_job(jobs(), picked)
        if live is not None:
            job_progress(live, f"sets-{picked}")
        elif set_run.imported_from:
            st.caption(f"Imported ({md_escape(set_run.imported_from)}): its prompts ran on another machine. Its "
                       "results, verdict and report are here; its prompts cannot be run again here.")
        elif set_run.status != "done":
            left = len(set_run.prompts) - by_id[picked].n_finished
            label = (f"Resume: run the {left} unfinished {plural(left, 'prompt')}" if left > 0 else
                     "Resume: finish the reference repeats" if set_run.noise_repeats else None)
            if label and st.button(label, key=f"sets-resume-{picked}", icon=":material/play_arrow:"):
                try:
                    job = jobs().start(SetRunJob(pool(), store(), picked))
                    st.session_state["sets-job"] = job.id
                    st.rerun()
                except (SetRunError, StoreError) as exc:
                    st.error(f"Cannot resume: {md_escape(exc)}")
        pair = sv.pair_section(set_run, key=f"sets-pair-{picked}")  # "Q4_K_M vs Q8_0" and its headline
        if live is None:
            set_report_downloads(picked, key=f"sets-report-{picked}", pair=pair)
        sv.results_view(set_run, key=f"sets-results-{picked}", pair=pair)
