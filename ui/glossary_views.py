"""The glossary where terms stand: tooltips for table columns, and the "What the numbers mean" page's body.

The words live in `workbench.core.glossary`; this module only puts them on the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import streamlit as st

from ui.shared import md_escape
from workbench.core import glossary


def term_help(name: str) -> str | None:
    """The tooltip for a term as the page shows it, None when the glossary has no entry."""
    entry = glossary.lookup(name)
    return entry.help() if entry else None


def help_columns(columns: Iterable[Any]) -> dict[str, Any]:
    """`column_config` giving every column whose header is a glossary term a tooltip with the term's words."""
    out: dict[str, Any] = {}
    for column in columns:
        text = term_help(str(column))
        if text:
            out[str(column)] = st.column_config.Column(help=text)
    return out


def glossary_page() -> None:
    """Every term with its sentence and example, grouped; the details for who wants the method."""
    for group, terms in glossary.by_group():
        st.subheader(glossary.GROUP_TITLES[group])
        for t in terms:
            st.markdown(f"**{md_escape(t.name)}**: {md_escape(t.sentence)}  \n*Example:* {md_escape(t.example)}")
            if t.details:
                st.caption(md_escape(t.details))
