"""The star rating under an output, one widget for every page that rates (Compare, Ratings).

Stars are saved by the widget's callback the moment they are given (workbench.people.ratings), with the rater's
name (optional, trimmed: " Ana " and "Ana" are one rater) and this browser session's id, so one session's
ratings count once per output; an optional comment is saved with them.
"""

from __future__ import annotations

import uuid

import streamlit as st

from ui.shared import md_escape, store
from workbench.people import ratings as rt
from workbench.storage.store import StoreError


def session_id() -> str:
    """This browser session's rater id, the same on every page."""
    return st.session_state.setdefault("rater_session", uuid.uuid4().hex)


def rater() -> str | None:
    """The name this session rates under (the Ratings page asks for it), trimmed; None when anonymous."""
    return (st.session_state.get("rater") or "").strip() or None


def _save_stars(run_id: int, label: str, key: str, mode: str, shown_as: str | None, letter: str | None) -> None:
    value = st.session_state.get(f"{key}-stars")
    if value is None:
        return
    about = f" of {md_escape(shown_as)}" if shown_as is not None else ""  # Compare's column already names it
    try:
        rt.add_rating(store(), run_id=run_id, label=label, score=int(value) + 1, rater=rater(), mode=mode,
                      comment=st.session_state.get(f"{key}-comment") or None, session=session_id(),
                      display_letter=letter)
    except StoreError as exc:
        st.toast(f"Rating{about} not saved: {md_escape(exc)}", icon=":material/warning:")
        return
    except rt.RatingError as exc:
        st.toast(f"Rating{about} not saved: {md_escape(exc) if mode == 'open' else 'the run or output is gone'}",
                 icon=":material/warning:")
        return
    st.toast(f"Saved {int(value) + 1}★ for {md_escape(label if shown_as is None else shown_as)}")


def star_widget(run_id: int, label: str, key: str, *, mode: str = "open", shown_as: str | None = None,
                letter: str | None = None, saved: int | None = None, saved_comment: str | None = None) -> None:
    """Stars (saved at once) and an optional comment saved with them.

    `shown_as` is how the output is named to the rater (a letter while blind; None: by its label); `key` must carry
    no quantization name in blind mode, since widget keys reach the browser. `saved` (and `saved_comment`) preset
    what was saved before (a reload, another tab), once per session.
    """
    if saved is not None and f"{key}-stars" not in st.session_state:
        st.session_state[f"{key}-stars"] = saved - 1
        if saved_comment is not None:
            st.session_state[f"{key}-comment"] = saved_comment
    args = (run_id, label, key, mode, shown_as, letter)
    st.feedback("stars", key=f"{key}-stars", on_change=_save_stars, args=args)
    st.text_input("Comment (optional)", key=f"{key}-comment", on_change=_save_stars, args=args,
                  label_visibility="collapsed", placeholder="Comment (optional), saved with your stars")
