"""History: find past runs, reopen one in Compare, rate it, delete it (after a confirmation), hand on a
report, and export or import runs with their ratings (JSON, or CSV tables in a ZIP)."""

from datetime import date

import pandas as pd
import streamlit as st

from ui.history_views import report_downloads, run_label, set_report_downloads
from ui.set_views import open_set_run
from ui.shared import open_run, store, through_entrypoint
from workbench.core.escaping import md_escape
from workbench.core.text_units import counted
from workbench.people.history import (
    ImportFileError,
    delete_runs,
    export_csv_bytes,
    export_json_bytes,
    import_json,
    search_runs,
)
from workbench.storage.store import FoundRun, StoreError

through_entrypoint()

LIMIT = 500

st.title("History")
flash = st.session_state.pop("history-flash", None)
if flash:
    (st.warning if flash.startswith("Nothing was deleted") else st.success)(md_escape(flash))

# ---- search -----------------------------------------------------------------------------------
c1, c2, c3, c4, c5 = st.columns([3, 2, 1.4, 1.4, 1.4])
text = c1.text_input("Prompt contains", key="hist-text")
model = c2.text_input("Model contains", key="hist-model")
since = c3.date_input("From", value=None, key="hist-since", format="YYYY-MM-DD")
until = c4.date_input("To", value=None, key="hist-until", format="YYYY-MM-DD")
kinds = sorted({r.kind for r in store().list_runs(limit=100_000) if r.kind})
kind = c5.selectbox("Kind", ["all", *kinds], key="hist-kind",
                    help="compare: Compare-page runs; eval, diverge…: runs made by the Evals and Quality pages")

runs: list[FoundRun] = []
if since and until and since > until:
    st.error(f"“From” ({since:%d %b %Y}) is after “To” ({until:%d %b %Y}): no run can match.")
else:
    runs = search_runs(store(), text=text or None, model=model or None, since=since, until=until,
                       kind=None if kind == "all" else kind, limit=LIMIT)
by_id = {r.id: r for r in runs}

if not runs:
    st.info("No runs yet: make one on the Compare page." if not (text or model or since or until or kind != "all")
            else "No run matches this search.")
else:
    st.caption(f"{counted(len(runs), 'run')}, newest first"
               + (f" (the newest {LIMIT}: narrow the search to see older ones)" if len(runs) == LIMIT else ""))
    table = pd.DataFrame([{
        "run": r.id, "created (UTC)": r.created_at[:16].replace("T", " "), "kind": r.kind,
        "status": r.status, "model": r.ladder_name or "local files", "category": r.category or "",
        "prompt": " ".join((r.prompt or "").split())[:120], "outputs": r.n_results, "ratings": r.n_ratings,
        "votes": r.n_votes} for r in runs])
    st.dataframe(table, hide_index=True, width="stretch", key="hist-table")

    # ---- one run ------------------------------------------------------------------------------
    st.subheader("One run")
    rid = st.selectbox("Run", list(by_id), key="hist-pick", format_func=lambda i: run_label(by_id[i]))
    picked = by_id[rid]
    a1, a2, a3 = st.columns(3)
    comparison = picked.kind == "compare"
    if a1.button("Open in Compare", key="hist-open", icon=":material/compare_arrows:", width="stretch", disabled=not comparison,
                 help="Show this run's outputs, diffs, metrics and ratings on the Compare page." if comparison
                 else "Only comparison runs open in Compare."):
        open_run(rid)
        st.switch_page("pages/compare.py")
    if a2.button("Rate it", key="hist-rate", icon=":material/star:", width="stretch", disabled=not comparison,
                 help="Rate this run's outputs (blind, pairwise or open) on the Ratings page."):
        st.session_state["ratings_run_id"] = rid
        st.switch_page("pages/ratings.py")
    if a3.button("Delete…", key="hist-delete", icon=":material/delete:", width="stretch"):
        st.session_state["hist-confirm-delete"] = rid

    if st.session_state.get("hist-confirm-delete") == rid:

        def really_delete(run_id: int) -> None:
            st.session_state.pop("hist-confirm-delete", None)
            try:
                n = delete_runs(store(), [run_id])
            except StoreError as exc:
                st.session_state["history-flash"] = f"Nothing was deleted: {exc}"
                return
            for key in ("run_id", "ratings_run_id"):
                if st.session_state.get(key) == run_id:
                    st.session_state[key] = None
            st.session_state["history-flash"] = (f"Deleted run #{run_id} with its outputs, ratings and votes." if n
                                                 else f"Run #{run_id} was already gone.")

        def cancel() -> None:
            st.session_state.pop("hist-confirm-delete", None)

        st.warning(f"Delete run #{rid} with its {picked.n_results} outputs, {picked.n_ratings} ratings and "
                   f"{picked.n_votes} votes? This cannot be undone: export it first if you may want it back.")
        d1, d2, _ = st.columns([1, 1, 2])
        d1.button(f"Yes, delete run #{rid}", key="hist-delete-confirm", type="primary", on_click=really_delete,
                  args=(rid,), width="stretch")
        d2.button("Cancel", key="hist-delete-cancel", on_click=cancel, width="stretch")

    report_downloads([rid], key=f"hist-report-{rid}")

# ---- prompt set runs ----------------------------------------------------------------------------
st.divider()
st.subheader("Prompt set runs")
set_runs = store().list_set_runs(limit=LIMIT)
if not set_runs:
    st.caption("None yet: run a set of prompts on the Prompt sets page.")
else:
    sets_by_id = {r.id: r for r in set_runs}
    st.dataframe(pd.DataFrame([{
        "set run": r.id, "created (UTC)": r.created_at[:16].replace("T", " "), "name": r.name,
        "status": r.status, "prompts finished": f"{r.n_finished} of {r.n_prompts}",
        "model": r.ladder_name or "local files"} for r in set_runs]),
        hide_index=True, width="stretch", key="hist-sets-table")
    s1, s2 = st.columns([3, 1])
    set_pick = s1.selectbox("Set run", list(sets_by_id), key="hist-sets-pick", label_visibility="collapsed",
                            format_func=lambda i: f"#{i} · {sets_by_id[i].name}")
    if s2.button("Open on Prompt sets", key="hist-sets-open", icon=":material/list_alt:", width="stretch"):
        open_set_run(set_pick)
        st.switch_page("pages/sets.py")
    set_report_downloads(set_pick, key=f"hist-set-report-{set_pick}")

# ---- export -------------------------------------------------------------------------------------
st.divider()
st.subheader("Export")
scope = st.radio("What to export", ["Every run in the database", "The runs chosen below"], key="hist-export-scope",
                 horizontal=True)
chosen: list[int] = []
if scope == "The runs chosen below":
    chosen = st.multiselect("Runs", list(by_id), key="hist-export-pick", format_func=lambda i: run_label(by_id[i]),
                            placeholder="Choose runs from the search above")
export_ids = None if scope == "Every run in the database" else chosen
nothing = export_ids is not None and not export_ids
s = store()
stamp = date.today().isoformat()
e1, e2 = st.columns(2)
e1.download_button("Export JSON", lambda: export_json_bytes(s, export_ids), file_name=f"quant-workbench-{stamp}.json",
                   mime="application/json", key="hist-export-json", on_click="ignore", disabled=nothing, icon=":material/download:",
                   width="stretch", help="Lossless: runs with everything they own (outputs, metrics, ratings, votes, "
                                         "divergence measurements, eval results). Import it here (or on another "
                                         "machine) to get them back.")
e2.download_button("Export CSV (zip)", lambda: export_csv_bytes(s, export_ids),
                   file_name=f"quant-workbench-{stamp}-csv.zip", mime="application/zip", key="hist-export-csv",
                   on_click="ignore", disabled=nothing, icon=":material/download:", width="stretch",
                   help="runs.csv, results.csv, ratings.csv and votes.csv in one ZIP, for spreadsheets and pandas.")
if nothing:
    st.caption("Choose at least one run to export.")
elif export_ids and len(export_ids) > 1:
    st.caption("A report of the chosen runs together:")
    report_downloads(export_ids, key="hist-report-chosen")
st.caption("Exports never hold secrets: settings named like a token, key or password are replaced by “[removed]”.")

# ---- import -------------------------------------------------------------------------------------
st.subheader("Import")
upload = st.file_uploader("A JSON export from Quant Workbench", type=["json"], key="hist-import")
st.caption("Every value is checked before anything is added, and a file holding a figure no measurement could give "
           "(a negative KLD, an agreement above 100%) is refused whole. Imported runs are marked, their file paths "
           "(from another machine) are never loaded as models, and their figures are shown as imported: they never "
           "decide a recommendation or calibrate a speed estimate.")
if upload is not None:
    already = st.session_state.get("hist-imported") == upload.file_id
    if already:
        st.caption(f"{md_escape(upload.name)} was imported in this session; importing it again adds its runs a second time.")
    if st.button("Import again" if already else "Import", key="hist-import-go", type="secondary" if already else
                 "primary"):
        try:
            summary = import_json(store(), upload.getvalue(), origin=upload.name)
        except (ImportFileError, StoreError) as exc:
            st.error(f"Could not import {md_escape(upload.name)}: {md_escape(exc)}. Nothing was added.")
        else:
            st.session_state["hist-imported"] = upload.file_id
            st.session_state["history-flash"] = (
                f"Imported {counted(summary.runs, 'run')} with {summary.results} outputs, "
                f"{summary.ratings} ratings and {summary.votes} votes (new run numbers: "
                + ", ".join(f"#{new}" for new in summary.run_ids.values()) + ")"
                + (f", and {counted(summary.set_runs, 'prompt set run')} (new numbers: "
                   + ", ".join(f"#{new}" for new in summary.set_run_ids.values()) + ")" if summary.set_runs else "")
                + ".")
            st.rerun()
