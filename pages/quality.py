"""Quality: how far each quantization drifts from the reference, token by token, on your prompt and on a
bundled reference text (the statistics llama-perplexity --kl-divergence reports)."""

import streamlit as st

from ui import quality_views as qv
from ui import views
from ui.glossary_views import help_columns
from ui.imatrix_gain_views import gain_section
from ui.job_views import is_running, job_view, start_job_button
from ui.shared import active_ladder, fmt_time, pool, store, through_entrypoint
from ui.variant_views import variant_picker
from workbench.core.escaping import md_escape
from workbench.core.hardware import default_threads
from workbench.people.divergence_words import ranking_sentence
from workbench.quality import divergence as dv
from workbench.quality.imatrix_gain import pair_files
from workbench.quality.quality_jobs import QualityJob, divergence_prompt_job, divergence_text_job
from workbench.runs.compare import SEQUENTIAL_NOTE
from workbench.runs.contestants import RunSettings, variant_contestants

through_entrypoint()

views.css()
st.title("Quality: divergence from the reference")
st.caption(qv.EXPLAIN)
ladder = active_ladder()
reference = ladder.reference.label
others = [label for label in ladder.labels() if label != reference]
defaults = [label for label in ladder.default_labels() if label in others]

# a ladder with files made with an importance matrix opens on the question its maker came with
tuned = bool(pair_files(ladder))
tabs = st.tabs((["Did the importance matrix help?"] if tuned else []) + ["Your prompt", "Bundled reference text"])
tab_prompt, tab_text = tabs[-2], tabs[-1]

# ---- your prompt -------------------------------------------------------------------------------
with tab_prompt:
    source = st.radio("Measure", ["A stored comparison", "A new prompt"], horizontal=True, key="quality-source",
                      help="A stored comparison re-uses the reference's output from the Compare page. A new prompt "
                           "lets only the reference generate, then measures every quantization on its output.")
    if source == "A stored comparison":
        runs = [r for r in store().list_runs(limit=100) if r.kind in ("compare", "diverge")]
        if not runs:
            st.info("No comparisons yet. Run one on the Compare page, or measure a new prompt here.")
        else:
            ids = [r.id for r in runs]
            wanted = st.session_state.get("quality_run_id") or st.session_state.get("run_id")
            measured = dv.measured_runs(store(), ids)
            by_id = {r.id: r for r in runs}

            def describe(run_id: int) -> str:
                r = by_id[run_id]
                prompt = " ".join((r.prompt or "").split())
                mark = " · measured" if run_id in measured else ""
                return f"#{run_id} · {fmt_time(r.created_at)} · {prompt[:60]}{'…' if len(prompt) > 60 else ''}{mark}"

            run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=describe,
                                  key="quality-run-pick")
            st.session_state.quality_run_id = run_id
            run = store().get_run(run_id)
            if run is not None:
                with st.expander("Prompt and reference output"):
                    st.text(run.prompt or "")
                    own = next((r for r in run.results if r.is_reference), None)
                    if own is not None:
                        st.html(views.plain_html(own.text or ""))
                qv.divergence_panel(run, key="quality", explain=False)
    else:
        prompt = st.text_area("Prompt", key="quality-prompt", height=120,
                              value="Explain in three sentences why bread rises.")
        c1, c2, c3 = st.columns([3, 1, 1])
        chosen = c1.multiselect("Quantizations", others, default=defaults, key=f"quality-quants-{ladder.directory}")
        max_tokens = c2.number_input("Max tokens", 8, 2048, 128, key="quality-max-tokens")
        n_ctx = c3.number_input("Context size", 256, 32768, 2048, step=256, key="quality-ctx")
        st.caption(f"Reference: {md_escape(reference)}. Only the reference generates; every quantization then reads its output. "
                   f"{SEQUENTIAL_NOTE}")
        prompt_variants, prompt_baseline = variant_picker("quality-prompt")

        def measure() -> QualityJob:
            settings = RunSettings(max_tokens=int(max_tokens), n_ctx=int(n_ctx), n_threads=default_threads(beside_browser=True))
            contestants = variant_contestants(qv.contestants_from(ladder, chosen), prompt_variants, int(n_ctx),
                                              baseline=prompt_baseline)
            return divergence_prompt_job(pool(), store(), contestants, prompt, settings, ladder=ladder)

        job = start_job_button("Measure", "quality-prompt-job", measure, of=QualityJob,
                               disabled=not chosen or not prompt.strip(), type="primary", key="quality-prompt-run")
        job_view(job, "quality-prompt")
        if job is not None and job.finished and job.run_id and not job.failure and not job.cancelled:
            report = dv.load_report(store(), job.run_id, "output")
            if report is not None:
                ref = report.reference
                st.html(views.plain_html("".join(ref.piece(t) for t in ref.tokens)))
                qv.report_view(report, f"quality-new-{job.run_id}")

# ---- bundled reference text -------------------------------------------------------------------
with tab_text:
    st.markdown(
        f"The bundled text (`{dv.reference_text_path().name}`, written for this project) is cut into chunks and "
        "scored the way `llama-perplexity --kl-divergence` does: only the second half of each chunk counts, so every "
        "scored token has at least half a chunk of context. The figures can be set beside those published for "
        "llama.cpp quantizations (which use Wikitext-2 and bigger models, so compare ratios and rankings, not values).")
    c1, c2, c3 = st.columns([3, 1, 1])
    text_chosen = c1.multiselect("Quantizations", others, default=defaults, key=f"quality-text-quants-{ladder.directory}")
    chunk = c2.selectbox("Chunk (tokens)", [256, 512, 1024], index=1, key="quality-chunk",
                         help="llama-perplexity's -c; 512 is what published KLD tables use.")
    max_chunks = c3.number_input("Max chunks (0 = all)", 0, 100, 0, key="quality-max-chunks")
    text_variants, text_baseline = variant_picker("quality-text")

    def score_text() -> QualityJob:
        settings = RunSettings(n_ctx=max(2048, int(chunk)), n_threads=default_threads(beside_browser=True))
        text_contestants = variant_contestants(qv.contestants_from(ladder, text_chosen), text_variants,
                                               settings.n_ctx, baseline=text_baseline)
        return divergence_text_job(pool(), store(), text_contestants, settings, chunk_tokens=int(chunk),
                                   max_chunks=int(max_chunks) or None, ladder=ladder)

    text_job = start_job_button("Score the reference text", "quality-text-job", score_text, of=QualityJob,
                                disabled=not text_chosen, type="primary", key="quality-text-run")
    job_view(text_job, "quality-text")
    if text_job is not None and text_job.finished and text_job.run_id \
            and st.session_state.get("quality-text-shown") != text_job.id:
        st.session_state["quality-text-pick"] = text_job.run_id  # show the measurement that just finished
        st.session_state["quality-text-shown"] = text_job.id
    stored = dv.list_text_reports(store())
    if stored:
        pick = st.selectbox("Measurement", [r["id"] for r in stored], key="quality-text-pick",
                            format_func=lambda i: next(f"#{r['id']} · {fmt_time(r['created_at'])} · "
                                                       f"{r['ladder_name'] or 'local files'} · {r['status']}"
                                                       for r in stored if r["id"] == i))
        text_report = dv.load_report(store(), pick, "text")
        if text_report is not None:
            m = text_report.meta
            st.markdown(md_escape(ranking_sentence(text_report)))
            st.caption(f"{m.get('text_tokens')} tokens of text, {m.get('chunks')} chunks of {m.get('chunk_tokens')}, "
                       f"{m.get('scored_per_chunk')} scored per chunk: {text_report.n_tokens} scored tokens. "
                       f"Reference {md_escape(text_report.reference_label)}.")
            stats = qv.text_stats_frame(text_report)
            st.dataframe(stats, hide_index=True, width="stretch", column_config=help_columns(
                stats.columns, {qv.PUBLISHED_COLUMN: st.column_config.NumberColumn(format="%.4f")}))
            st.caption(qv.PUBLISHED_CAPTION)
            per = int(m.get("scored_per_chunk") or text_report.n_tokens or 1)
            n_chunks = max(1, int(m.get("chunks") or 1))
            which = st.selectbox("Heatmap of chunk", list(range(1, n_chunks + 1)), key="quality-text-chunk",
                                 help="The scored half of one chunk, shaded by the chosen quantization's KLD.")
            qv.heatmap(text_report, f"quality-text-{pick}", (which - 1) * per, which * per)
    elif not is_running(text_job):
        st.caption("Not measured yet on this machine.")

# ---- did the importance matrix help? (only for a ladder with files made with one) ---------------
if tuned:
    with tabs[0]:
        gain_section(ladder)
