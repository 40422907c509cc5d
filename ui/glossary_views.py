"""The glossary where terms stand: tooltips for table columns, and the "What the numbers mean" page's body.

The words live in `workbench.core.glossary`; this module only puts them on the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import streamlit as st

from workbench.core import glossary
from workbench.core.escaping import html_text, md_escape


def term_help(name: str) -> str | None:
    """The tooltip for a term as the page shows it, None when the glossary has no entry."""
    entry = glossary.lookup(name)
    return entry.help() if entry else None


def card_cell(name: str, value: str) -> str:
    """A metric card's name cell as HTML: the term's words as its hover text (dotted underline) where the glossary
    has it, a busy free core explained beside the contention it qualifies; plain text otherwise."""
    texts = [t for t in (term_help(name), term_help("free core") if "free core" in value else None) if t]
    if not texts:
        return f"<td style='color:#666'>{html_text(name)}</td>"
    return (f"<td style='color:#666;text-decoration:underline dotted;cursor:help' title='{html_text(' '.join(texts))}'>"
            f"{html_text(name)}</td>")


def help_columns(columns: Iterable[Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """`column_config` giving every column whose header is a glossary term a tooltip with the term's words; a
    column's own config in `config` (a number format …) is kept, and its own help wins."""
    out = dict(config or {})
    for column in map(str, columns):
        text = term_help(column)
        if not text:
            continue
        own = out.get(column)
        if isinstance(own, dict):
            out[column] = {**own, "help": own.get("help") or text}
        elif column not in out:
            out[column] = st.column_config.Column(help=text)
    return out


def glossary_page() -> None:
    """Every term with its sentence and example, grouped; the details for who wants the method."""
    for group, terms in glossary.by_group():
        st.subheader(glossary.GROUP_TITLES[group])
        for t in terms:
            st.markdown(f"**{md_escape(t.name)}**: {md_escape(t.sentence)}  \n*Example:* {md_escape(t.example)}")
            if t.details:
                st.caption(md_escape(t.details))
