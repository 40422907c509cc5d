"""Compare: one prompt through every chosen quantization, side by side, streamed live; then diffs,
metrics, ratings, charts and a table of the stored run."""

import streamlit as st

from ui import views
from ui.endpoint_views import endpoint_contestants, endpoint_editor
from ui.headline_views import run_pair_section
from ui.job_views import is_running, start_job_button
from ui.shared import (
    active_ladder,
    demo_note_box,
    jobs,
    ladders,
    pool,
    set_active_ladder,
    store,
    through_entrypoint,
)
from ui.variant_views import variant_picker
from workbench.core import hardware
from workbench.core.escaping import md_escape
from workbench.quality.packs import PackError, load_examples
from workbench.runs import timing
from workbench.runs.compare import (
    IMPORTED_NOTE,
    SEQUENTIAL_NOTE,
    contestants_for,
    is_imported,
    local_contestants_of_run,
)
from workbench.runs.contestants import MAX_TIMING_REPEATS, OFFLOAD_MODES, RunSettings, variant_contestants
from workbench.runs.jobs import ComparisonJob
from workbench.runs.noise import MAX_REPEATS
from workbench.storage.store import StoredRun

through_entrypoint()

views.css()
st.title("Compare quantizations")

# ---- what takes part -------------------------------------------------------------------------
all_ladders = ladders()
ladder = active_ladder()
names = [lad.name for lad in all_ladders]
picked = st.selectbox("Model (ladder)", names, index=names.index(ladder.name))
if picked != ladder.name:
    set_active_ladder(all_ladders[names.index(picked)])
    st.rerun()
demo_note_box(ladder)  # the embedded demo: why even Q8_0 reads "different answer" here

left, right = st.columns([3, 1])
reference = right.selectbox("Reference", ladder.labels(), index=ladder.labels().index(ladder.reference.label),
                            help="Diffs and divergence are measured against this one. Default: the highest precision.")
others = [label for label in ladder.labels() if label != reference]
defaults = [label for label in ladder.default_labels() if label in others]
chosen = left.multiselect("Quantizations", others, default=defaults, key=f"quants-{ladder.directory}-{reference}")

endpoint_editor()

# ---- the prompt ------------------------------------------------------------------------------
try:
    examples = load_examples()
except PackError as exc:
    examples = {}
    st.warning(f"Example prompts unavailable: {md_escape(exc)}")
options = ["(type your own)"] + [f"{cat} — {ex.title}" for cat, exs in examples.items() for ex in exs]
lookup = {f"{cat} — {ex.title}": ex for cat, exs in examples.items() for ex in exs}


def use_example() -> None:
    ex = lookup.get(st.session_state.example)
    if ex is not None:
        st.session_state.prompt = ex.prompt
        st.session_state.system_prompt = ex.system or ""
        st.session_state.category = ex.category


st.selectbox("Example prompt (grouped by task)", options, key="example", on_change=use_example)
if "prompt" not in st.session_state:
    first = next(iter(lookup.values()), None)
    st.session_state.prompt = first.prompt if first else "Explain what quantization does to a language model."
    st.session_state.category = first.category if first else None
prompt = st.text_area("Prompt", key="prompt", height=140)

with st.expander("Settings (the same for every contestant)"):
    c1, c2, c3, c4 = st.columns(4)
    system_prompt = c1.text_area("System prompt", key="system_prompt", height=68)
    max_tokens = c2.number_input("Max tokens", 1, 8192, 200)
    n_ctx = c2.number_input("Context size", 128, 131072, 2048, step=256)
    temperature = c3.number_input("Temperature", 0.0, 2.0, 0.0, step=0.1, help="0 = greedy: the fair default")
    top_p = c3.number_input("Top-p", 0.01, 1.0, 1.0, step=0.05)
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0)
    threads = c4.number_input("Threads", 1, 256, hardware.default_threads(beside_browser=True),
                                help="llama.cpp threads. The default leaves a core to this page and the browser on "
                                     "machines of up to 4 cores, so what you watch does not slow what is measured.")
    if hardware.gpu_offload_available():
        g1, g2 = st.columns([3, 1])
        offload = g1.radio("GPU offload", OFFLOAD_MODES, horizontal=True,
                           format_func={"auto": "automatic (what the fit prediction says fits)", "all": "all layers",
                                        "layers": "N layers", "cpu": "CPU only"}.get)
        gpu_layers = g2.number_input("N layers", 0, 999, 0, disabled=offload != "layers")
    else:
        offload, gpu_layers = "cpu", 0
        st.caption("GPU offload: no GPU usable here (no NVIDIA GPU found, or this llama.cpp build has no GPU support): "
                   "everything runs on the CPU.")
    st.number_input("Reference repeats (noise floor)", 0, MAX_REPEATS, 0, key="noise_repeats",
                    help="After every contestant has run, the reference runs this many more times: with other seeds "
                         "at temperature > 0, or greedy with the prompt evaluated in other micro-batch sizes. Each "
                         "column then says whether it differs from the reference more than the reference differs "
                         "from itself. The contestants' timings are not affected.")
    st.number_input("Timing repeats (speed spread)", 1, MAX_TIMING_REPEATS, 1, key="timing_repeats",
                    help="How many times each local file's decode is timed: its answer first, then the same answer "
                         "decoded again with nothing drawn. With more than one, decode speed is the median of the "
                         "undisturbed windows and the range is shown (a whisker on the chart).")
    st.checkbox("Run remote endpoints at the same time as each other (local files still run one at a time)",
                key="remote_concurrent")
    st.toggle("Hold each answer until it is done (the quietest measurement: nothing is drawn while a contestant "
              "is timed)", key="hold_text")
variants, baseline = variant_picker("compare")
st.caption(f"ℹ️ {SEQUENTIAL_NOTE} Greedy decoding, one chat template (each file's own), same settings for all. "
           "Speed figures say whether other work on this machine disturbed them.")
st.caption(md_escape(timing.repeats_note(int(st.session_state.get("timing_repeats") or 1))))

# ---- run / stop ------------------------------------------------------------------------------
job = jobs().get(st.session_state.get("job_id"), ComparisonJob)
if job is not None and job.finished and job.run_id and st.session_state.get("run_id") is None:
    st.session_state.run_id = job.run_id  # the job ended between two reruns


def compare() -> ComparisonJob:
    """This page's settings, contestants and prompt as one comparison; the run shown so far gives way to it."""
    settings = RunSettings(max_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
                           seed=int(seed), n_ctx=int(n_ctx), n_threads=int(threads), system_prompt=system_prompt,
                           gpu_offload=offload, n_gpu_layers=int(gpu_layers),
                           remote_concurrent=bool(st.session_state.get("remote_concurrent")),
                           display="held" if st.session_state.get("hold_text") else "streamed",
                           timing_repeats=int(st.session_state.get("timing_repeats") or 1))
    contestants = variant_contestants(contestants_for(ladder, chosen, reference), variants, int(n_ctx),
                                      baseline=baseline) + endpoint_contestants()
    new = ComparisonJob(pool(), store(), contestants, prompt, settings, ladder=ladder,
                        category=st.session_state.get("category"),
                        noise_repeats=int(st.session_state.get("noise_repeats") or 0))
    st.session_state.run_id = None
    return new


b1, b2, _ = st.columns([1, 1, 6])
job = start_job_button("Run", "job_id", compare, of=ComparisonJob, disabled=not chosen or not prompt.strip(), where=b1,
                       type="primary")
running = is_running(job)
if b2.button("Stop", disabled=not running) and job is not None:
    job.stop()

# ---- results -----------------------------------------------------------------------------------

def remeasure(stored: StoredRun) -> None:
    """Run a stored comparison's local files again with nothing drawn while each is timed; show the new run."""
    contestants = local_contestants_of_run(stored)
    settings = RunSettings.from_dict(stored.settings, display="held")
    same = next((lad for lad in ladders() if lad.name == stored.ladder_name), None)
    new = jobs().start(ComparisonJob(pool(), store(), contestants, stored.prompt or "", settings, ladder=same,
                                     category=stored.category))
    st.session_state.job_id, st.session_state.run_id = new.id, None


if running and job is not None:  # running implies a job; the check tells the type checker so
    views.stream_columns(job, hold_text=job.display == "held")
elif job is not None and job.failure:
    st.error(f"The comparison could not run: {md_escape(job.failure)}")

run_id = st.session_state.get("run_id")
run = store().get_run(run_id) if run_id and not running else None
if run is not None:
    st.divider()
    st.subheader(f"Run #{run.id}")
    try:
        rs = RunSettings.from_dict(run.settings)
    except ValueError:  # an imported run whose stored variants cannot be read: a comparison never uses them
        rs = RunSettings.from_dict({**run.settings, "variants": ()})
    st.caption(md_escape(f"{run.created_at[:19]} UTC · {run.ladder_name or 'local files'} · "
                         f"reference {run.reference_label} · max {rs.max_tokens} tokens · "
                         f"temperature {rs.temperature} · seed {rs.seed} · context {rs.n_ctx} · "
                         f"{rs.n_threads} thread{'' if rs.n_threads == 1 else 's'}"))
    with st.expander("Prompt", expanded=False):
        st.text(run.prompt)
    vs = run_pair_section(run)  # the answer first: "Q4_K_M vs Q8_0" in one sentence; the columns follow it
    disturbed = [r.label for r in run.results if r.disturbance[0]]
    if disturbed:  # one banner for the run; each affected column carries a small mark with the details
        w1, w2 = st.columns([5, 1])
        w1.warning(md_escape(timing.banner(run.results, disturbed)), icon=":material/speed:")
        w2.button("Re-measure quietly", key=f"remeasure-{run.id}", on_click=remeasure, args=(run,),
                  disabled=not local_contestants_of_run(run),
                  help=f"This run {IMPORTED_NOTE}." if is_imported(run) else None)
    views.result_columns(run, vs)
    views.side_by_side_view(run, vs)
    st.divider()
    frame = views.metrics_frame(run)
    views.charts(frame)
    st.dataframe(views.table_frame(frame, run), width="stretch", hide_index=True)
    st.download_button("Download CSV", views.csv_bytes(frame), file_name=f"run-{run.id}.csv", mime="text/csv")
    with st.expander("Divergence from the reference", expanded=False):
        from ui.quality_views import divergence_panel

        divergence_panel(run)
    from ui.history_views import report_downloads

    report_downloads([run.id], key=f"compare-report-{run.id}")  # made when clicked: a few seconds
