"""A page's background job, drawn one way everywhere: the button that starts it, its live progress with a Stop
button, and what it left to say once it ended.

A session keeps only the job's id (under the page's key in st.session_state); the job itself lives in the
process-wide registry (`shared.jobs`), so it outlives reruns and page switches. While it runs, `job_progress`
redraws as its state changes and reruns the page once it ends (`shared.watch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from ui.shared import jobs, md_escape, watch
from workbench.core.jobs import Job
from workbench.runs.set_runs import SetRunJob

J = TypeVar("J", bound=Job)

SET_RUN_STOP_HELP = "Finished prompts are kept; Resume runs the rest."


def is_running(job: Job | None) -> bool:
    return job is not None and not job.finished


def start_job_button(label: str, state_key: str, make: Callable[[], J], *, of: type[J], disabled: bool = False,
                     refusals: tuple[type[Exception], ...] = (ValueError,), where: Any = None,
                     **button: Any) -> J | None:
    """The Run button of a page: this session's job kept under `state_key` (None before the first), started anew
    from `make()` on a click. The button is disabled while that job runs; a refusal (one of `refusals`, raised by
    `make`) reads "Cannot run: …" and starts nothing. `where` is the column the button goes in (default: the page).
    """
    job = jobs().get(st.session_state.get(state_key), of)
    if (where or st).button(label, disabled=is_running(job) or disabled, **button):
        try:
            job = jobs().start(make())
        except refusals as exc:
            st.error(f"Cannot run: {md_escape(exc)}")
        else:
            st.session_state[state_key] = job.id
    return job


def job_progress(job: Job, key: str) -> None:
    """A live progress bar with a Stop button; reruns the whole page once the job ends (see `shared.watch`).

    Any job's bar reads "its title: what it does now"; a set run's reads "prompt i of n …" with its contestants'
    states under it, and its Stop button says that finished prompts are kept.
    """
    set_run = isinstance(job, SetRunJob)
    if st.button("Stop", key=f"{key}-stop", disabled=job.cancel.is_set(), help=SET_RUN_STOP_HELP if set_run else None):
        job.stop()

    def draw(snap: dict[str, Any]) -> None:
        doing = md_escape(snap["message"]) if set_run else f"{md_escape(snap['title'])}: {md_escape(snap['message'])}"
        text = f"{doing} ({snap['elapsed_s']:.0f} s)"
        st.progress(min(1.0, snap["fraction"]), text="Stopping… " + text if snap["cancelling"] else text)
        columns = (snap.get("columns") or []) if set_run else []
        if columns:
            st.caption(" · ".join(f"{md_escape(c['label'])}: {md_escape(c['status'])}" for c in columns))

    watch(job.snapshot, draw)


def job_outcome(job: Job | None) -> None:
    """What a finished job left to say: stopped (and what was kept), or why it failed; nothing while it runs."""
    if job is None or not job.finished:
        return
    if job.cancelled and isinstance(job, SetRunJob):
        message = str(job.snapshot().get("message") or "stopped")
        st.info(f"{md_escape(message[:1].upper() + message[1:])}. Finished prompts are kept.")
    elif job.cancelled:
        st.info("Stopped. Nothing half-measured was kept.")
    elif job.failure:
        st.error(f"Could not finish: {md_escape(job.failure)}")


def job_view(job: Job | None, key: str) -> None:
    """The job's progress while it runs, else what it left to say."""
    if job is not None and not job.finished:
        job_progress(job, key)
    else:
        job_outcome(job)
