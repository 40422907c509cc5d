"""The Providers page's parts: the verdict banner, the add form (with what a check costs before saving), the
timeline and check table, opening a check's stored runs, removing a provider, and the in-page scheduler.

Every decision is the library's (workbench.watch); these draw it. A key typed here lives in this browser session's
memory only (st.session_state, under the provider's id): it is never written to the database, a log or a report.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from ui.endpoint_views import API_NAMES
from ui.shared import jobs, ladders, open_run, pool, store
from workbench.core.escaping import md_escape
from workbench.core.jobs import Job
from workbench.core.text_units import counted
from workbench.models.ladder import Ladder
from workbench.quality.packs import list_packs
from workbench.runs.prompt_sets import list_bundled_sets
from workbench.storage.watch_rows import ProbeSpec, ProviderCheck, WatchedProvider
from workbench.watch import report
from workbench.watch.change import Assessment
from workbench.watch.providers import DEMO, add_provider, ladder_of, remove_provider, tokens_per_check
from workbench.watch.schedule import due_checks_job
from workbench.watch.timeline import svg_timeline

K = "providers-"
NO_CHECKS = "No checks yet — press Check now."
PROBE_WORDS = {"pack": "a task pack (cases judged by their checkers)",
               "prompt_set": "a prompt set (each answer compared with the local reference's)", "none": "no probe"}
DUE_EVERY_S = 60  # how often the open page looks for due checks


def session_keys() -> dict[int, str]:
    """API keys typed into this session, by provider id (memory only)."""
    return st.session_state.setdefault(K + "keys", {})


def banner(a: Assessment | None) -> None:
    """The answer first: a change beyond noise warns, a move within noise informs calmly, steady is a success."""
    if a is None:
        st.info(NO_CHECKS)
    elif a.changed:
        st.warning(md_escape(a.sentence), icon=":material/warning:")
    elif a.within_noise or a.checks == 0:
        st.info(md_escape(a.sentence))
    else:
        st.success(md_escape(a.sentence))


def ladder_for(provider: WatchedProvider) -> Ladder | None:
    """The provider's local ladder, or None when it went missing (its checks then fail with the reason)."""
    try:
        return ladder_of(provider)
    except (ValueError, OSError):
        return None


def labels_biggest_first(ladder: Ladder | None) -> list[str]:
    return [f.label for f in sorted(ladder.files, key=lambda f: -f.size_bytes)] if ladder else []


def tokens_or_none(provider: WatchedProvider) -> int | None:
    try:
        return tokens_per_check(provider)
    except (ValueError, OSError):
        return None


def timeline(checks: list[ProviderCheck], a: Assessment | None, ladder: Ladder | None) -> None:
    svg = svg_timeline(checks, labels_biggest_first(ladder), changed_at=a.since_check_id if a and a.changed else None)
    # st.html drops an inline <svg>; markdown keeps it (and its hover titles). watch.timeline escapes every label.
    st.markdown(f'<div style="max-width: 900px">{svg}</div>', unsafe_allow_html=True)
    st.caption("Top: the local file the endpoint answered most like at each check, with the fingerprint's "
               "confidence. Bottom: the quality probe's pass rate with its 95% interval. A grey column is a check "
               "that failed (rate limit, server error, timeout) — left out of the verdict, never a drop.")


def check_table(checks: list[ProviderCheck]) -> None:
    st.dataframe(pd.DataFrame(report.check_rows(checks), columns=report.CHECK_HEADERS), hide_index=True,
                 width="stretch", key=K + "table")
    notes = {c.tokens_note for c in checks if c.tokens_note}
    if notes:
        st.caption("Tokens marked \"some estimated\": " + md_escape(sorted(notes)[-1]))
    with_runs = [c for c in reversed(checks) if c.run_ids]
    if not with_runs:
        return
    c1, c2 = st.columns([2, 3])
    # no key: a new check makes a new picker, so it starts on the newest check again
    cid = c1.selectbox("Open the stored runs of check", [c.id for c in with_runs], format_func=lambda i: f"#{i}")
    picked = next(c for c in with_runs if c.id == cid)
    with c2:
        for rid in picked.run_ids:
            run = store().get_run(rid)
            if run is None:
                st.caption(f"Run #{rid} was deleted.")
                continue
            compare = run.kind == "compare"
            if st.button(f"Open run #{rid} ({md_escape(run.kind)}) in {'Compare' if compare else 'History'}",
                         key=f"{K}open-{rid}"):
                if compare:
                    open_run(rid)
                    st.switch_page("pages/compare.py")
                st.session_state["hist-pick"] = rid  # the History page's run picker
                st.switch_page("pages/history.py")


def remove_control(provider: WatchedProvider, n_checks: int) -> None:
    confirm = K + "confirm-remove"
    if st.button("Stop watching…", key=K + "remove", icon=":material/delete:"):
        st.session_state[confirm] = provider.id
    if st.session_state.get(confirm) == provider.id:
        st.warning(f"Stop watching {md_escape(provider.name)} and forget its {counted(n_checks, 'check')}? "
                   "The runs its checks stored stay in History.")
        y, n = st.columns(2)
        if y.button("Yes, stop watching", key=K + "remove-yes", type="primary"):
            remove_provider(store(), provider.id)
            session_keys().pop(provider.id, None)
            st.session_state.pop(confirm, None)
            st.rerun()
        if n.button("Keep it", key=K + "remove-no"):
            st.session_state.pop(confirm, None)
            st.rerun()


# ---- adding ------------------------------------------------------------------------------------------------------
def _ladder_options() -> dict[str, str]:
    """Value stored on the provider -> how the picker names it: the demo ladder, then ladders on disk."""
    found = ladders()  # the embedded demo first (ui.shared.ladders)
    out = {DEMO: f"{found[0].name} (the demo ladder)"}
    out.update({str(lad.directory): lad.name for lad in found[1:]})
    return out


def _probe_names(kind: str) -> list[str]:
    if kind == "pack":
        return [p.stem for p in list_packs()]
    if kind == "prompt_set":
        return [s.name for s in list_bundled_sets()]
    return []


def _json_object(text: str) -> tuple[dict[str, Any], str | None]:
    """The extra request fields typed, or ({}, why not) in one line."""
    if not text.strip():
        return {}, None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}, "extra request fields are not valid JSON"
    return (value, None) if isinstance(value, dict) else ({}, 'extra request fields must be a JSON object, like {"top_k": 1}')


def add_form() -> WatchedProvider | None:
    """The fields of a watched endpoint, what a check would send (before saving), and Save. Returns the new
    provider once saved (its typed key kept in this session only)."""
    c1, c2, c3 = st.columns([2, 2, 3])
    name = c1.text_input("Name", key=K + "name", placeholder="e.g. Acme (production)")
    api = c2.selectbox("API", list(API_NAMES), key=K + "api", format_func=API_NAMES.__getitem__)
    url = c3.text_input("Base URL", key=K + "url", placeholder="https://api.example.com/v1")
    c4, c5, c6 = st.columns([2, 2, 3])
    model = c4.text_input("Model", key=K + "model", placeholder="as the provider names it")
    key_env = c5.text_input("API key from environment variable (its name)", key=K + "key-env",
                            placeholder="e.g. ACME_API_KEY", help="Only the variable's NAME is stored; its value is "
                            "read when a check runs.")
    typed_key = c6.text_input("…or type the key (kept in this session only, never stored)", key=K + "key",
                              type="password", help="Held in this browser session's memory; gone when the app restarts. "
                              "Scheduled checks need the environment variable.")
    options = _ladder_options()
    c7, c8, c9, c10 = st.columns([3, 2, 2, 1])
    ladder = c7.selectbox("Compared with the local ladder", list(options), key=K + "ladder", format_func=options.__getitem__,
                          help="The same model, quantized several ways, on this machine: the check finds which of its "
                               "files the endpoint answers most like.")
    kind = c8.selectbox("Quality probe", list(PROBE_WORDS), key=K + "probe-kind", format_func=PROBE_WORDS.__getitem__)
    names = _probe_names(kind)
    probe_name = c9.selectbox("Which", names, key=K + "probe-name-" + kind, disabled=not names) if names else ""
    cases = c10.number_input("Cases", 1, 200, 2, key=K + "cases", disabled=kind == "none",
                             help="How many cases or prompts one check runs: more is a tighter pass rate, and more tokens.")
    c11, c12, c13, c14 = st.columns(4)
    every_h = c11.number_input("Check every N hours (0 = manual only)", 0.0, 24.0 * 30, 0.0, step=1.0, key=K + "every")
    webhook_env = c12.text_input("Webhook URL from environment variable (optional)", key=K + "hook-env",
                                 placeholder="e.g. ACME_WEBHOOK", help="A Slack-compatible webhook gets the sentence when "
                                 "the provider changes. Only the variable's NAME is stored.")
    n_prompts = c13.number_input("Reference prompts per check", 1, 8, 8, key=K + "prompts",
                                 help="The fingerprint's prompts: more tell files apart better, and cost more tokens.")
    max_tokens = c14.number_input("Longest answer (tokens)", 1, 512, 48, key=K + "max-tokens")
    extra = st.text_input("Extra request fields (JSON object, optional)", key=K + "extra",
                          placeholder='e.g. {"repeat_penalty": 1.0}', help="Sent with every request of a check, "
                          "e.g. to turn off a server's own sampling defaults.")

    extra_body, extra_error = _json_object(extra)
    values: dict[str, Any] = dict(
        name=name, base_url=url.strip(), model=model.strip(), api=api, key_env=key_env.strip() or None,
        extra_body=extra_body, ladder=ladder, probe=ProbeSpec(kind, probe_name or "", int(cases) if kind != "none" else None),
        fingerprint_prompts=int(n_prompts), max_tokens=int(max_tokens), every_s=every_h * 3600 or None,
        webhook_env=webhook_env.strip() or None)
    draft = WatchedProvider(0, **{k: v for k, v in values.items()})
    tokens = tokens_or_none(draft)
    st.caption(f"A check sends about **{tokens:,} tokens** (prompts and answers at their full length; an upper "
               "estimate) — what it costs at the provider's per-token price." if tokens is not None else
               "A check's token count shows once the probe is valid.")
    if not st.button("Save and watch", key=K + "save", type="primary", disabled=not (name.strip() and url.strip())):
        return None
    if extra_error:
        st.error(f"Not saved: {md_escape(extra_error)}")
        return None
    try:
        provider = add_provider(store(), **values)
    except ValueError as exc:
        st.error(f"Not saved: {md_escape(exc)}")
        return None
    if typed_key:
        session_keys()[provider.id] = typed_key
    return provider


# ---- the in-page scheduler ---------------------------------------------------------------------------------------
def due_checks_runner() -> None:
    """While the toggle is on, every DUE_EVERY_S a due provider's check starts (one job at a time, through the same
    run queue as everything else); the page redraws when one ends."""

    @st.fragment(run_every=DUE_EVERY_S)
    def tick() -> None:
        job = jobs().get(st.session_state.get(K + "due-job"))
        if job is not None and job.finished and st.session_state.get(K + "due-seen") != job.id:
            st.session_state[K + "due-seen"] = job.id
            st.rerun(scope="app")  # show the new check
        if job is None or job.finished:
            new: Job | None = due_checks_job(pool(), store())
            if new is not None:
                job = jobs().start(new)
                st.session_state[K + "due-job"] = job.id
        if job is not None and not job.finished:
            snap = job.snapshot()
            st.caption(f"Running: {md_escape(snap['title'])} — {md_escape(snap['message'])}")
        else:
            st.caption(f"Nothing is due now; looking again every {DUE_EVERY_S} s while this page is open.")

    tick()
