"""What the numbers mean: every term the workbench shows, in one plain sentence with an example, grouped."""

from __future__ import annotations

import streamlit as st

from ui import glossary_views
from ui.shared import through_entrypoint
from workbench.core.escaping import md_escape
from workbench.models import demo_note

through_entrypoint()

st.title("What the numbers mean")
st.markdown("Every term the pages show, in one plain sentence with an example. The same words appear as a tooltip "
            "(the small question mark) wherever the term stands.")
glossary_views.glossary_page()

st.subheader("Why the demo model looks odd")
st.markdown(md_escape(demo_note.NOTE.short))
for reason in demo_note.NOTE.reasons:
    st.markdown(f"- {md_escape(reason)}")
st.caption(f"More in {md_escape(demo_note.NOTE.docs)}.")
