"""Ratings: judge the outputs of any stored run (blind, pairwise or open), or a whole prompt set blind with a
verdict at the end, then see the leaderboard with its uncertainty. Each star or vote is saved the moment it is
given."""

import streamlit as st

from ui import rating_views as rv
from ui import views
from ui.history_views import run_label
from ui.shared import store, through_entrypoint
from workbench.core.escaping import md_escape
from workbench.people import ratings as rt
from workbench.people.history import search_runs
from workbench.storage.store import FoundRun, StoredRun

through_entrypoint()

views.css()
st.title("Rate outputs")
st.caption("Rate without knowing which file wrote what: in Blind and Pairwise modes the outputs are letters, shuffled "
           "for you, and the names appear once you have judged them all. Everything is saved as you click.")

# ---- which run, who rates, how ----------------------------------------------------------------
top1, top2 = st.columns([3, 1])
with top2:
    rv.rater_input()
what = top1.radio("Rate", list(rv.WHAT), key="ratings-what", horizontal=True, captions=list(rv.WHAT.values()))


def one_run() -> tuple[StoredRun | None, bool]:
    """Pick a stored run and rate it (blind, pairwise or open); (the run, whether its names are still hidden)."""
    find = top1.text_input("Find a run (prompt or model)", key="ratings-find", placeholder="all runs, newest first")
    runs: list[FoundRun | StoredRun] = list(search_runs(store(), text=find or None, kind="compare"))
    if find:  # the prompt or the model name
        seen = {r.id for r in runs}
        runs = sorted(runs + [r for r in search_runs(store(), model=find, kind="compare") if r.id not in seen],
                      key=lambda r: -r.id)
    ids = [r.id for r in runs]
    wanted = st.session_state.pop("ratings_run_id", None)  # set by History's "Rate" button
    if wanted is not None and wanted not in ids and (row := store().get_run(int(wanted))) is not None:
        runs.insert(0, row)
        ids.insert(0, row.id)
    if wanted in ids:
        st.session_state["ratings-run-pick"] = wanted
    labels_of = {r.id: run_label(r) for r in runs}

    run = None
    if not runs:
        st.info("No comparison runs to rate yet: run one on the Compare page." if not find
                else f"No run matches “{md_escape(find)}”.")
    else:
        run_id = top1.selectbox("Run", ids, key="ratings-run-pick", format_func=labels_of.__getitem__,
                                help="The newest run is picked first; any past run can be rated.")
        run = store().get_run(run_id)
        if run is None:
            st.warning(f"Run #{run_id} was deleted meanwhile.")

    view, mode = None, None
    if run is not None:
        outputs = {r.label: r for r in run.results if not r.error}
        failed = len(run.results) - len(outputs)
        mode = st.radio("Mode", list(rv.MODES), key="ratings-mode", horizontal=True, captions=list(rv.MODES.values()))
        s = run.settings
        st.caption(md_escape(f"Run #{run.id} · {run.created_at[:19]} UTC · {run.ladder_name or 'local files'}"
                             f"{' · ' + run.category if run.category else ''} · {len(outputs)} outputs · "
                             f"max {s.get('max_tokens', '?')} tokens · temperature {s.get('temperature', '?')} · "
                             f"seed {s.get('seed', '?')}" + (f" · {failed} failed and left out" if failed else "")))
        with st.expander("Prompt", expanded=True):
            if run.system_prompt:
                st.caption("System prompt")
                st.text(run.system_prompt)
            st.text(run.prompt or "")
        if not outputs:
            st.warning("No output of this run finished without an error: there is nothing to rate.")
        else:
            view = rt.blind_view(store(), run.id, session=rv.session_id(), labels=list(outputs))
            if mode == "Blind":
                rv.blind(run, outputs, view)
            elif mode == "Pairwise":
                rv.pairwise(run, outputs, view)
            else:
                rv.open_mode(run, outputs)
    return run, view is not None and not view.revealed and mode != "Open"


# ---- one run or a whole set, then the leaderboard (no st.stop: the app's after-run work must still run) ----
if what == rv.SET:  # a whole prompt set, blind, prompt by prompt, with a verdict at the end
    run, hidden = None, rv.set_judging()
else:
    run, hidden = one_run()
st.divider()
rv.leaderboard_section(run.id if run is not None else None, hidden=hidden)
