"""Providers: is my API provider still serving what I pay for? The verdict in words first, then the check button,
the history at a glance, the report to forward, and the form to watch another endpoint. The library
(workbench.watch) checks and decides; this page asks and shows."""

from __future__ import annotations

import functools

import streamlit as st

from ui import provider_views as views
from ui.job_views import job_view, start_job_button
from ui.shared import pool, store, through_entrypoint
from workbench.core.escaping import md_escape
from workbench.watch import report
from workbench.watch.change import assess
from workbench.watch.checks import CheckJob, check_job, checks_of
from workbench.watch.providers import list_providers

through_entrypoint()

K = views.K
st.title("Providers: is my provider still serving what I pay for?")
providers = {p.id: p for p in list_providers(store())}

if not providers:
    st.info("No provider is watched yet — add one below. A provider is an API endpoint (OpenAI-compatible or "
            "llama.cpp) serving a model you also have on this machine in several quantizations.")
else:
    if K + "pick-next" in st.session_state:  # a provider just added: shown first (set before the picker exists)
        st.session_state[K + "pick"] = st.session_state.pop(K + "pick-next")
    if st.session_state.get(K + "pick") not in providers:
        st.session_state[K + "pick"] = next(iter(providers))
    pid = st.selectbox("Provider", list(providers), key=K + "pick", format_func=lambda i: providers[i].name)
    provider = providers[pid]
    checks = checks_of(store(), provider.id)
    verdict = assess(checks, provider.name) if checks else None
    views.banner(verdict)
    ladder = views.ladder_for(provider)
    tokens = views.tokens_or_none(provider)
    st.caption(f"Each check asks {md_escape(report.safe_url(provider.base_url))} (model "
               f"{md_escape(provider.model or 'the server default')}) a few fixed prompts and finds which local file of "
               f"{md_escape(ladder.name if ladder else provider.ladder)} answers most like it (the fingerprint)"
               + ("." if provider.probe.kind == "none" else
                  f", then puts the quality probe ({md_escape(provider.probe.name)}, "
                  f"{provider.probe.cases or 'all'} {'cases' if provider.probe.kind == 'pack' else 'prompts'}) to it "
                  "and to the local reference.")
               + (f" A check sends about {tokens:,} tokens (an upper estimate; each check below counts its own)."
                  if tokens is not None else ""))

    # ---- check now ----------------------------------------------------------------------------------------------
    c1, c2 = st.columns([1, 3])
    if not provider.key_env:
        typed = c2.text_input("API key for this session (kept in memory only, never stored)", type="password",
                              value=views.session_keys().get(provider.id, ""), key=f"{K}key-{provider.id}")
        if typed:
            views.session_keys()[provider.id] = typed
    job = start_job_button("Check now", K + "job", functools.partial(
        check_job, pool(), store(), provider, views.session_keys().get(provider.id)), of=CheckJob, where=c1,
        type="primary", key=K + "check-now")
    job_view(job, K + "job")

    # ---- history --------------------------------------------------------------------------------------------------
    st.subheader("History")
    views.timeline(checks, verdict, ladder)
    if checks:
        views.check_table(checks)
        labels = views.labels_biggest_first(ladder)
        stem = "provider-" + "".join(ch if ch.isalnum() else "-" for ch in provider.name)[:60]
        d1, d2 = st.columns(2)
        a = verdict or assess(checks, provider.name)
        d1.download_button("Download provider report (HTML, works offline)", report.report_html(
            provider, checks, a, ladder_name=ladder.name if ladder else provider.ladder, ladder_labels=labels,
            tokens=tokens), f"{stem}.html", "text/html", key=K + "html")
        d2.download_button("Download provider report (Markdown)", report.report_markdown(
            provider, checks, a, ladder_name=ladder.name if ladder else provider.ladder, tokens=tokens),
            f"{stem}.md", "text/markdown", key=K + "md")
    views.remove_control(provider, len(checks))

# ---- add ----------------------------------------------------------------------------------------------------------
with st.expander("Add a watched endpoint", expanded=not providers):
    added = views.add_form()
    if added is not None:
        st.session_state[K + "pick-next"] = added.id
        st.rerun()

# ---- scheduled checks while the page is open ----------------------------------------------------------------------
if st.toggle("Run due checks while this page is open", key=K + "auto",
             help="Providers with a schedule are checked when due, one at a time, through the same queue as every "
                  "other run (so a check never disturbs a timed local run). With the page closed, use "
                  "`workbench watch` from cron (see the README)."):
    views.due_checks_runner()
