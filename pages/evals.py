"""Evals: a task pack across the ladder's quantizations, pass rates per category with 95% intervals,
differences inside the noise labelled, and each case's outputs side by side with the checker's verdict."""

import functools
from pathlib import Path

import streamlit as st

from ui import quality_views as qv
from ui import views
from ui.glossary_views import help_columns
from ui.job_views import job_view, start_job_button
from ui.shared import active_ladder, fmt_time, pool, store, through_entrypoint
from ui.variant_views import variant_picker
from workbench.core.escaping import md_escape
from workbench.core.hardware import default_threads
from workbench.core.text_units import counted
from workbench.quality import evals
from workbench.quality.packs import Pack, PackError, list_packs, load_pack, parse_pack
from workbench.quality.quality_jobs import QualityJob, eval_job
from workbench.runs.compare import SEQUENTIAL_NOTE
from workbench.runs.contestants import RunSettings, variant_contestants

through_entrypoint()

views.css()
st.title("Evals: where a quantization breaks, by task")
st.caption("Every case runs on every chosen quantization with the same greedy settings; a checker judges each "
           "output by patterns (model output is never executed). Pass rates carry Wilson 95% intervals, and each "
           "quantization is compared with the reference on the same cases (exact McNemar test): a difference that "
           "could be chance is labelled *within noise*.")
ladder = active_ladder()
reference = ladder.reference.label
others = [label for label in ladder.labels() if label != reference]
defaults = [label for label in ladder.default_labels() if label in others]


def show_pack_error(exc: PackError) -> None:
    where = f"line {exc.line}" if exc.line else "the file as a whole"
    st.error(f"This pack was refused. **{md_escape(Path(exc.source).name)}**, {where}: {md_escape(exc.reason)}")


# ---- the pack ----------------------------------------------------------------------------------
pack = None
job = None
source = st.radio("Task pack", ["Bundled pack", "Upload TOML or CSV"], horizontal=True, key="evals-source")
if source == "Bundled pack":
    paths = list_packs()
    if not paths:
        st.warning("No bundled packs were found in prompts/.")
    else:
        picked = st.selectbox("Pack", paths, format_func=lambda p: p.name, key="evals-pack")
        try:
            pack = load_pack(picked)
        except PackError as exc:
            show_pack_error(exc)
else:
    upload = st.file_uploader("Pack file", type=["toml", "csv"], key="evals-upload",
                              help="TOML: name, description and [[cases]] (see prompts/starter.toml). CSV: a header "
                                   "row with prompt, category, checker, expected (and optionally id, tolerance, "
                                   "system, max_tokens).")
    if upload is not None:
        fmt = Path(upload.name).suffix.lower().lstrip(".")
        try:
            try:
                text = upload.getvalue().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PackError(upload.name, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            pack = parse_pack(text, fmt, source=upload.name, name=Path(upload.name).stem)
        except PackError as exc:
            show_pack_error(exc)

if pack is not None:
    counts = {cat: len(cases) for cat, cases in pack.by_category().items()}
    st.caption(f"**{md_escape(pack.name)}** · {len(pack.cases)} cases: "
               + ", ".join(f"{cat} {n}" for cat, n in counts.items())
               + (f" · {md_escape(pack.description)}" if pack.description else ""))
    c1, c2, c3 = st.columns([3, 3, 1])
    chosen = c1.multiselect("Quantizations", others, default=defaults, key=f"evals-quants-{ladder.directory}",
                            help=f"The reference, {reference}, always takes part.")
    categories = c2.multiselect("Categories", pack.categories(), default=pack.categories(), key="evals-categories")
    limit = c3.number_input("Max cases (0 = all)", 0, 10_000, 0, key="evals-limit",
                            help="Spread across the chosen categories: the first case of each, then the second …")
    with st.expander("Settings (the same for every quantization)"):
        s1, s2, s3 = st.columns(3)
        max_tokens = s1.number_input("Max tokens (cases without their own)", 8, 4096, evals.DEFAULT_MAX_TOKENS,
                                     key="evals-max-tokens")
        auto_ctx = evals.LONG_CONTEXT_N_CTX if "long-context" in categories else 2048
        n_ctx = s2.number_input("Context size", 512, 32768, auto_ctx, step=512, key=f"evals-ctx-{auto_ctx}",
                                help="Long-context cases need about 4,096 tokens.")
        threads = s3.number_input("Threads", 1, 256, default_threads(beside_browser=True), key="evals-threads")
    variants, baseline = variant_picker("evals")
    n_contestants = len(variant_contestants(qv.contestants_from(ladder, chosen), variants, int(n_ctx), baseline=baseline))
    try:
        selected = evals.select_cases(pack, categories or None, int(limit) or None) if categories else []
    except ValueError as exc:
        selected = []
        st.error(f"Cannot choose these cases: {md_escape(exc)}")
    n_long = sum(1 for c in selected if c.category == "long-context")
    st.caption(f"{len(selected)} cases × {n_contestants} quantizations = {len(selected) * n_contestants} "
               f"generations. {SEQUENTIAL_NOTE}"
               + (f" {counted(n_long, 'long-context case')}: about 1–2 minutes each per quantization "
                  "on a laptop CPU." if n_long else ""))

    def evaluate(pack: Pack) -> QualityJob:
        settings = RunSettings(max_tokens=int(max_tokens), n_ctx=int(n_ctx), n_threads=int(threads))
        contestants = variant_contestants(qv.contestants_from(ladder, chosen), variants, int(n_ctx), baseline=baseline)
        return eval_job(pool(), store(), pack, contestants, settings, categories=categories,
                        limit=int(limit) or None, ladder=ladder)

    job = start_job_button("Run eval", "evals-job", functools.partial(evaluate, pack), of=QualityJob, disabled=not selected, type="primary",
                           key="evals-run")
    job_view(job, "evals")

# ---- results -----------------------------------------------------------------------------------
stored = evals.list_evals(store())
if stored:
    st.divider()
    ids = [r["run_id"] for r in stored]
    latest = job.run_id if pack is not None and job is not None and job.run_id in ids else None
    by_id = {r["run_id"]: r for r in stored}
    run_id = st.selectbox(
        "Eval run", ids, index=ids.index(latest) if latest else 0, key=f"evals-pick-{latest}",
        format_func=lambda i: (f"#{i} · {fmt_time(by_id[i]['created_at'])} · {by_id[i]['pack_name']} · "
                               f"{by_id[i]['n_cases']} cases · {', '.join(by_id[i]['labels'])} · {by_id[i]['status']}"))
    run = evals.load_eval(store(), run_id)
    if run is not None:
        if run.status == "running" and not (pack is not None and job is not None and not job.finished
                                            and job.run_id == run_id):
            st.caption("This run did not finish (the app stopped while it ran); what it finished is shown.")
        complete = run.complete_case_ids()
        st.subheader(f"{md_escape(run.pack_name)}: pass rates")
        st.caption(f"{len(complete)} of {len(run.cases)} cases finished on every quantization (only those are counted) "
                   f"· reference {md_escape(run.reference_label)} · max tokens {run.settings.get('max_tokens')} "
                   f"· context {run.settings.get('n_ctx')} · greedy")
        st.dataframe(qv.matrix_frame(run), hide_index=True, width="stretch")
        if complete:
            st.plotly_chart(qv.pass_rate_chart(run), width="stretch", key=f"evals-chart-{run_id}")
            paired = qv.paired_frame(run)
            if not paired.empty:
                st.markdown("**Against the reference, on the same cases**")
                st.dataframe(paired, hide_index=True, width="stretch", column_config=help_columns(paired.columns))
                beyond = sum(1 for p in run.paired() if not p.within_noise)
                st.caption(("No difference is beyond noise: with this many cases, what differs could be chance. "
                            if not beyond else f"{beyond} of {len(paired)} rows are *beyond noise*. ")
                           + "Only a row marked *beyond noise* is evidence that a quantization behaves differently "
                             "from the reference on that kind of task; more cases narrow the intervals.")
        st.subheader("Case by case")
        qv.case_drilldown(run, f"evals-{run_id}")
elif pack is not None:
    st.caption("No eval runs stored yet.")
