"""Hardware: can this machine run it? CPU, RAM, GPUs, what fits from the active ladder, and how good the memory
prediction has been against what stored runs measured."""

from __future__ import annotations

import time

import pandas as pd
import plotly.express as px
import streamlit as st

from ui import target_views
from ui.glossary_views import help_columns
from ui.shared import active_ladder, pool, store, through_entrypoint
from workbench.core import glossary, hardware
from workbench.core.escaping import md_escape
from workbench.core.text_units import format_bytes, format_gb
from workbench.decide import targets
from workbench.files import fit
from workbench.files.gguf_info import GgufError, read_header
from workbench.models import hub
from workbench.models.fit_report import fit_checks
from workbench.runs.benchmark import scaling_figure, scaling_results
from workbench.runs.variants import kv_types_text

through_entrypoint()

K = "hardware-"

st.title("Hardware: can this machine run it?")
m = hardware.machine()

# ---- the answer first: will the active ladder fit each target ----------------------------------------------
ladder = active_ladder()
st.subheader(f"Will {md_escape(ladder.name)} fit?")
profiles = target_views.all_targets(store())
n_ctx_lines, kv_k, kv_v = target_views.fit_answer(ladder, profiles)

# ---- the machine -------------------------------------------------------------------------------------------
st.subheader("This machine")
c1, c2, c3, c4 = st.columns(4)
c1.metric("CPU cores", f"{m.physical_cores or m.logical_cores} ({m.logical_cores} threads)")
c2.metric("RAM total", format_bytes(m.ram_total_bytes))
c3.metric("RAM free", format_bytes(m.ram_available_bytes))
c4.metric("Disk free (HF cache)", format_gb(hub.check_disk_space(0)[1], 1))
st.caption(f"CPU: {md_escape(m.cpu_model)}")

st.subheader("GPUs")
if m.gpus:
    st.dataframe(pd.DataFrame([{"GPU": g.index, "name": g.name, "VRAM total": format_bytes(g.total_bytes),
                                "VRAM free": format_bytes(g.free_bytes), "driver": g.driver} for g in m.gpus]),
                 hide_index=True, width="stretch")

    @st.cache_data(show_spinner="Asking llama.cpp whether this build can offload to a GPU…")
    def offload_supported() -> bool:
        return hardware.llama_gpu_offload_supported()

    if offload_supported():
        st.caption("This llama.cpp build can offload layers to the GPU (NVML figures; VRAM per worker includes its CUDA context).")
    else:
        st.warning("A GPU is present, but this llama.cpp build has no GPU support: everything runs on the CPU. "
                   'Rebuild with CMAKE_ARGS="-DGGML_CUDA=on" pip install llama-cpp-python to use it.')
else:
    st.info("no GPU (no NVIDIA driver/NVML found): every model runs on the CPU, from RAM.")

# ---- warm models ---------------------------------------------------------------------------------------------
st.subheader("Warm models")
warm_pool = pool()


def set_budget() -> None:  # only on a change: the pool (and its budget) is shared by every browser session
    gib = st.session_state[K + "budget"]
    warm_pool.set_memory_budget(int(gib * 2**30) if gib > 0 else None)


st.columns([1, 3])[0].number_input(
    "Warm-model memory budget (GiB, 0 = automatic)", 0.0, 4096.0, (warm_pool.memory_budget_override() or 0) / 2**30,
    step=0.5, key=K + "budget", on_change=set_budget,
    help="The most RAM the warm workers may hold together (by prediction). Least recently used models are "
         "unloaded to make room; a model bigger than the budget is refused with a clear message instead of "
         "being killed for lack of memory.")
try:
    budget = warm_pool.budget(gpus=m.gpus)
except ValueError as exc:  # a malformed WORKBENCH_MEMORY_BUDGET
    st.error(md_escape(exc))
else:
    in_use = warm_pool.memory_in_use()
    st.markdown(f"**Budget:** {format_bytes(budget.ram_bytes)} of RAM"
                + "".join(f" · GPU {g}: {format_bytes(b)}" for g, b in budget.vram_bytes.items())
                + f" · **held now (predicted):** {format_bytes(in_use.ram_bytes)} of RAM")
    st.caption(md_escape(budget.explanation))
warm = warm_pool.warm_models()
if warm:
    st.dataframe(pd.DataFrame([{
        "file": w["file"], "KV type": kv_types_text(w["type_k"], w["type_v"]),
        "context": w["n_ctx"], "predicted RAM": format_bytes(w["ram_bytes"]),
        "predicted VRAM": format_bytes(w["vram_bytes"]) if w["vram_bytes"] else "",
        "last used": time.strftime("%H:%M:%S", time.localtime(w["last_used"])), "in use": "yes" if w["in_use"] else "",
    } for w in warm]), hide_index=True, width="stretch", key=K + "warm",
        column_config={"KV type": st.column_config.TextColumn(help=glossary.help_text("kv_type")),
                       "context": st.column_config.NumberColumn(help=glossary.help_text("context"))})
    st.caption("One row per loaded worker: the same file loaded with another KV type or context is another worker.")
else:
    st.caption("No model is loaded right now: a run loads what it needs and keeps it warm within the budget.")

# ---- fit at a glance for the active ladder ---------------------------------------------------------------------
st.subheader(f"Fit at a glance: {md_escape(ladder.name)}")
n_ctx = int(st.columns([1, 3])[0].number_input("Context size (tokens)", 128, 1_048_576, fit.DEFAULT_N_CTX, step=256,
                                               key=K + "ctx"))
preds, unreadable = [], []
with st.spinner("Reading GGUF headers…"):
    for f in ladder.files:
        try:
            p = fit.predict(read_header(f.path), n_ctx=n_ctx, ram_available_bytes=m.ram_available_bytes, gpus=m.gpus)
        except (GgufError, OSError) as exc:  # no verdict without the file's own header: the row says why
            unreadable.append({"quantization": f.label, "verdict": fit.unreadable(exc, f.path)})
            continue
        p.file = f.label
        preds.append(p)
if preds or unreadable:
    glance = pd.DataFrame([{
        "quantization": p.file, "type": p.quant_type, "weights": format_bytes(p.weights_bytes),
        "KV cache": format_bytes(p.kv_bytes), "compute + runtime": format_bytes(p.compute_bytes + p.overhead_bytes),
        "predicted peak": format_bytes(p.predicted_bytes), "verdict": targets.verdict_words(p.verdict_code, p.verdict),
        "GPU layers": p.gpu_layers or "",
    } for p in preds] + unreadable)
    st.dataframe(glance, hide_index=True, width="stretch", key=K + "glance",
                 column_config=help_columns(glance.columns, {"verdict": st.column_config.Column(help=glossary.help_text("fit"))}))
    st.caption(f"Keeping all {len(preds)} warm at once would need about {format_bytes(fit.warm_together_bytes(preds))} "
               f"of RAM ({format_bytes(m.ram_available_bytes)} free); the pool keeps warm only what fits its budget "
               "(above) and reloads the rest when they run. Weights and KV cache come from each file's header; "
               "compute buffers and runtime are estimated.")

# ---- target machines -------------------------------------------------------------------------------------------
st.subheader("Target machines")
st.caption("Would it fit there, and how fast? This machine (measured), built-in presets and your own profiles. "
           "Every figure says where it comes from, or that it is an assumption.")
target_views.targets_table(profiles)
with st.expander("Add, edit or delete a target"):
    target_views.target_editor(store(), profiles)
st.markdown(f"**Memory as lines: {md_escape(ladder.name)}**")
target_views.memory_lines_section(store(), ladder, profiles, n_ctx_lines, kv_k, kv_v)

# ---- predicted vs measured -----------------------------------------------------------------------------------
st.subheader("Predicted vs measured memory")
st.caption("For every stored run, each worker's measured peak RSS (VmHWM) against the prediction recomputed from the "
           "file's header with that run's context size. Positive error = the prediction was high.")
limit = int(st.columns([1, 3])[0].number_input("Runs to include (newest first)", 1, 500, 20, key=K + "runs"))
with st.spinner("Recomputing predictions for stored runs…"):
    checks, notes = fit_checks(store(), limit=limit, gpus=m.gpus)
for note in notes:
    st.caption(md_escape(note))
if not checks:
    st.info("No measurements yet: run a comparison on the Compare page (or `workbench compare`); every run records "
            "each worker's peak memory, and it shows up here against the prediction.")
else:
    frame = pd.DataFrame([{
        "run": c.run_id, "kind": c.kind, "quantization": c.label, "type": c.quant_type, "context": c.n_ctx,
        "GPU layers": c.gpu_layers, "predicted MiB": round(c.predicted_bytes / 2**20, 1),
        "measured MiB": round(c.measured_bytes / 2**20, 1), "error %": round(c.error_pct, 1),
        **({"VRAM error %": None if c.vram_error_pct is None else round(c.vram_error_pct, 1)}
           if any(x.measured_vram_bytes for x in checks) else {}),
    } for c in checks])
    errs = frame["error %"].abs()
    st.markdown(f"**{len(checks)} measurements** · median |error| {errs.median():.1f}% · worst {errs.max():.1f}% · "
                f"{(errs <= 10).mean():.0%} within ±10%")
    st.dataframe(frame, hide_index=True, width="stretch", key=K + "checks", column_config=help_columns(frame.columns))
    chart = frame.drop_duplicates(["quantization", "context"])  # newest measurement of each quantization and context
    chart = chart.assign(name=chart["quantization"] + " · ctx " + chart["context"].astype(str))
    long = chart.melt(id_vars=["name"], value_vars=["predicted MiB", "measured MiB"], var_name="figure", value_name="MiB")
    fig = px.bar(long, x="name", y="MiB", color="figure", barmode="group",
                 title="Peak memory per quantization: predicted vs measured (newest run of each)")
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=50, b=10), xaxis_title=None, title_font_size=13)
    st.plotly_chart(fig, width="stretch", key=K + "chart")

st.subheader("How cost grows with model size")
st.caption("Recorded benchmark runs on synthetic llama models (random weights, a real tokenizer: for cost only, never "
           "for quality), from `benchmarks/scaling.py` — see docs/benchmarks.md for the machines and commands. "
           "Speeds on the shared 2-core CPU were taken while other jobs ran and are low; memory is not affected.")
scaling = scaling_results()
if scaling:
    st.plotly_chart(scaling_figure(scaling), width="stretch", key=K + "scaling")
else:
    st.info("No scaling runs recorded (docs/data/scaling-*.json).")
