"""What every page shares: process-wide resources, the active ladder, the sidebar, small widgets.

Process-wide resources live in `st.cache_resource`, so models stay loaded across reruns, page
switches and browser sessions; a session keeps only ids (of its ladder, jobs and run).
"""

from __future__ import annotations

import atexit
import runpy
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from workbench.core import hardware, heap
from workbench.core.escaping import md_escape
from workbench.core.jobs import JobRegistry
from workbench.core.text_units import format_bytes, is_number
from workbench.engine.pool import WorkerPool
from workbench.models.demo_note import demo_note
from workbench.models.ladder import Ladder, list_ladders
from workbench.storage.store import Store, StoreError

APP_PATH = Path(__file__).resolve().parents[1] / "app.py"
_entrypoint = threading.local()  # Streamlit runs each session's script in its own thread


def run_navigation(navigation: StreamlitPage) -> None:
    """Run the chosen page, marked as started by app.py (see `through_entrypoint`).

    A database error no page handles (StoreError) ends the page with the same box `store()` shows, never a traceback.
    """
    _entrypoint.active = True
    _entrypoint.followers = []
    try:
        try:
            navigation.run()
        except StoreError as exc:
            storage_failed(exc)
            return
        heap.freeze_long_lived()  # after a page's first imports: keeps Streamlit's per-run full GC cheap
        if _entrypoint.followers:
            _follow_loop(_entrypoint.followers)
    finally:
        _entrypoint.active = False
        _entrypoint.followers = None


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


# How often the page looks at the jobs it follows. Nothing is sent to the browser when a job's state did not
# change, so an idle look costs one snapshot per job.
WATCH_TICK_S = 0.5


def yield_point() -> None:
    """Let Streamlit act on a pending click or page switch now (reading session state is one of its yield points)."""
    st.session_state.get("_wb_yield")


def follow(tick: Callable[[], bool]) -> None:
    """Have this script run call `tick()` every WATCH_TICK_S once the page is drawn, until one returns True
    (its job ended); then the page reruns to show the outcome.

    Why not `st.fragment(run_every=...)`: every fragment run is a script run, and Streamlit ends each with a
    full garbage collection of the server's heap. A few a second per open session took a whole core on a 2-core
    machine and starved the very job being shown (issue 12: two viewers made a comparison 70x slower, an in-app
    ladder build 5x slower). Followed here, an unchanged job costs one snapshot per tick and sends nothing, and a
    click (Stop, another page) still interrupts at once. The loop runs after the whole page is drawn
    (`run_navigation`), so what is below a progress bar stays visible and usable.
    """
    followers = getattr(_entrypoint, "followers", None)
    if followers is None:  # a page run outside app.py (AppTest of one page): follow right away
        _follow_loop([tick])
    else:
        followers.append(tick)


def _follow_loop(ticks: list[Callable[[], bool]]) -> None:
    while True:
        ended = [t() for t in ticks]
        if any(ended):
            st.rerun()
        yield_point()
        time.sleep(WATCH_TICK_S)


def watch(snapshot: Callable[[], dict[str, Any]], draw: Callable[[dict[str, Any]], None]) -> None:
    """A placeholder here that `draw(snapshot())` fills, redrawn only when the job's state changed (see `follow`).

    `elapsed_s` alone changing does not count as a change.
    """
    slot = st.empty()
    last: list[dict[str, Any] | None] = [None]

    def tick() -> bool:
        snap = snapshot()
        view = {k: v for k, v in snap.items() if k != "elapsed_s"}
        if view != last[0]:
            with slot.container():
                draw(snap)
            last[0] = view
        return bool(snap.get("finished"))

    tick()
    follow(tick)


@st.cache_resource(show_spinner=False)
def pool() -> WorkerPool:
    p = WorkerPool()
    atexit.register(p.shutdown)
    return p


@st.cache_resource(show_spinner=False)
def _open_store() -> Store:
    return Store()


def store() -> Store:
    """The database, opened once per process. One that cannot be used stops the page with what is wrong and how
    to recover (not cached, so the next rerun tries again once it is fixed); a read-only one still opens."""
    try:
        return _open_store()
    except StoreError as exc:
        storage_failed(exc)
        st.stop()
        raise  # st.stop() raises; this line is for type checkers


def storage_failed(exc: StoreError) -> None:
    """The one way a database error reaches the user: its message (what is wrong, how to recover) in a box."""
    st.error(md_escape(exc), icon=":material/database:")


@st.cache_resource(show_spinner=False)
def jobs() -> JobRegistry:
    """Every background job of this process (comparisons, divergence, evals, downloads, ladder builds), by id:
    a session keeps only ids, so a job outlives page switches; finished ones are pruned (see JobRegistry)."""
    return JobRegistry()


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


def fmt_num(x: Any, fmt: str) -> str:
    """`x` formatted with `fmt` when it is a real number, else "—" (imported runs may carry anything)."""
    return format(x, fmt) if is_number(x) else "—"


def fmt_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%d %b %H:%M")
    except ValueError:
        return iso


def sidebar() -> None:
    lad = active_ladder()
    with st.sidebar:
        reason = store().read_only_reason()
        if reason:
            st.warning(md_escape(reason), icon=":material/lock:")
        st.markdown(f"**Model:** {md_escape(lad.name)}")
        st.caption(" · ".join(f"{md_escape(f.label)}{' (ref)' if f.reference else ''} {format_bytes(f.size_bytes)}"
                              for f in lad.files))
        demo_note_box(lad)
        with st.expander("Where these files came from"):
            for line in lad.provenance_lines():
                st.caption(md_escape(line))
            st.caption(f"Folder: {md_escape(lad.directory)}")
        st.caption(f":material/computer: {md_escape(machine_line())}")
        runs = store().list_runs(limit=8, kind="compare", standalone=True)  # a set's prompts are listed by set
        if runs:
            st.markdown("**Recent runs**")
            for r in runs:
                prompt = " ".join((r.prompt or "").split())
                label = (f"#{r.id} · {md_escape(fmt_time(r.created_at))} · "
                         f"{md_escape(prompt[:38])}{'…' if len(prompt) > 38 else ''}")
                if st.button(label, key=f"open-run-{r.id}", width="stretch"):
                    open_run(r.id)
                    st.switch_page("pages/compare.py")
        sets = store().list_set_runs(limit=4)
        if sets:
            st.markdown("**Recent prompt sets**")
            for s in sets:
                label = (f"#{s.id} · {md_escape(fmt_time(s.created_at))} · {md_escape(s.name[:30])} · "
                         f"{s.n_finished} of {s.n_prompts} prompts")
                if st.button(label, key=f"open-set-run-{s.id}", width="stretch"):
                    st.session_state["sets_run_id"] = s.id  # what ui.set_views.open_set_run sets
                    st.switch_page("pages/sets.py")


def demo_note_box(ladder: Ladder) -> None:
    """Under the model's name: what is unusual about the embedded demo (nothing for any other ladder)."""
    note = demo_note(ladder)
    if note is None:
        return
    st.caption(md_escape(note.short), help=" ".join(note.reasons) + f" More in {note.docs}.")
