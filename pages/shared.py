"""What every page shares: process-wide resources, the active ladder, the sidebar, small widgets.

Process-wide resources live in `st.cache_resource`, so models stay loaded across reruns, page
switches and browser sessions; a session keeps only ids (of its ladder, job and run).
"""

from __future__ import annotations

import atexit
import runpy
import threading
from datetime import datetime
from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from workbench import hardware
from workbench.jobs import JobRegistry
from workbench.ladder import Ladder, list_ladders
from workbench.pool import WorkerPool
from workbench.store import Store


APP_PATH = Path(__file__).resolve().parents[1] / "app.py"
_entrypoint = threading.local()  # Streamlit runs each session's script in its own thread


def run_navigation(navigation: StreamlitPage) -> None:
    """Run the chosen page, marked as started by app.py (see `through_entrypoint`)."""
    _entrypoint.active = True
    try:
        navigation.run()
    finally:
        _entrypoint.active = False


def through_entrypoint() -> None:
    """Make sure this page runs inside app.py's navigation and sidebar; every page calls it first.

    With a `pages/` folder beside app.py, the first request a fresh server gets runs in
    Streamlit's legacy multipage mode until app.py has called `st.navigation` once: a deep link
    such as /quality ran pages/quality.py alone, without our sidebar, and listed helper modules as
    pages. Here the page runs app.py instead, which switches to `st.navigation` and runs this page
    again (same URL path, so the same page), then stops the stray run.
    """
    if getattr(_entrypoint, "active", False):
        return
    runpy.run_path(str(APP_PATH), run_name="__main__")
    st.stop()


@st.cache_resource(show_spinner=False)
def pool() -> WorkerPool:
    p = WorkerPool()
    atexit.register(p.shutdown)
    return p


@st.cache_resource(show_spinner=False)
def store() -> Store:
    return Store()


@st.cache_resource(show_spinner=False)
def jobs() -> JobRegistry:
    return JobRegistry(pool(), store())


@st.cache_data(ttl=30, show_spinner=False)
def machine_line() -> str:
    return hardware.machine().one_line()


def ladders() -> list[Ladder]:
    if "ladders" not in st.session_state:
        with st.spinner("Preparing the embedded demo ladder (first start only)…"):
            st.session_state.ladders = list_ladders()
    return st.session_state.ladders


def refresh_ladders() -> None:
    st.session_state.pop("ladders", None)


def active_ladder() -> Ladder:
    """The ladder this session works with (the embedded demo until the user picks another)."""
    all_ladders = ladders()
    wanted = st.session_state.get("ladder_dir")
    for lad in all_ladders:
        if lad.directory == wanted:
            return lad
    st.session_state.ladder_dir = all_ladders[0].directory
    return all_ladders[0]


def set_active_ladder(ladder: Ladder) -> None:
    st.session_state.ladder_dir = ladder.directory


def open_run(run_id: int) -> None:
    """Show a stored run on the Compare page."""
    st.session_state.run_id = run_id
    st.session_state.job_id = None


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def fmt_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%d %b %H:%M")
    except ValueError:
        return iso


def sidebar() -> None:
    lad = active_ladder()
    with st.sidebar:
        st.markdown(f"**Model:** {lad.name}")
        st.caption(" · ".join(f"{f.label}{' (ref)' if f.reference else ''} {fmt_bytes(f.size_bytes)}" for f in lad.files))
        with st.expander("Where these files came from"):
            for line in lad.provenance_lines():
                st.caption(line)
            st.caption(f"Folder: {lad.directory}")
        st.caption(f":material/computer: {machine_line()}")
        runs = store().list_runs(limit=8, kind="compare")
        if runs:
            st.markdown("**Recent runs**")
            for r in runs:
                prompt = (r["prompt"] or "").replace("\n", " ")
                label = f"#{r['id']} · {fmt_time(r['created_at'])} · {prompt[:38]}{'…' if len(prompt) > 38 else ''}"
                if st.button(label, key=f"open-run-{r['id']}", width="stretch"):
                    open_run(r["id"])
                    st.switch_page("pages/compare.py")
