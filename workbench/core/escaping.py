"""Every escape for untrusted text, in one place: HTML text, a Markdown report's lines and cells, code fences,
plotly labels (the offline reports, people.report_kit), and Markdown for Streamlit's st.markdown / st.caption /
widget labels (the app, ui/).

Model output, labels, file paths, comments and every value from a file, an endpoint, an import or the database are
untrusted: they pass through one of these before they meet markup. Two Markdown escapes, for two readers: `md_cell`
for a Markdown file (HTML's characters as entities, renderers differ) and `md_escape` for Streamlit (which also
turns bare links and :directives: into markup, so those are broken too). Imports nothing from the workbench.
"""

from __future__ import annotations

import html
import re
from typing import Any


# ---- HTML ------------------------------------------------------------------------------------------------------
def esc(x: Any) -> str:
    """Any value as escaped HTML text, quotes included (safe in an attribute too); "" for None."""
    return html.escape("" if x is None else str(x))


def html_text(value: Any) -> str:
    """Any value as escaped HTML text ("—" for None), as the app's tables show a missing value."""
    return "—" if value is None else esc(value)


_TAG = re.compile(r"<[^>]*>?")


def chart_text(x: Any) -> str:
    """Untrusted text for a plotly label, title or hover: plotly renders a little HTML there (`<a href>` becomes a
    clickable link inside the offline report), so tags are stripped and what is left is escaped."""
    return html.escape(_TAG.sub("", "" if x is None else str(x)), quote=False)


# ---- Markdown --------------------------------------------------------------------------------------------------
def fence(text: str, info: str = "text") -> str:
    """A code fence longer than any backtick run inside, so the text can never close it early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return f"{bar}{info}\n{text}\n{bar}"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")


def md_cell(x: Any) -> str:
    """Untrusted text for one line or table cell of Markdown: Markdown's special characters backslash-escaped,
    HTML's (<, >, &) as entities, line breaks as spaces; it shows as written and never becomes markup. Quotes stay
    as they are: Markdown text holds no attribute they could end."""
    text = " ".join(("" if x is None else str(x)).splitlines())
    return html.escape(_MD_SPECIAL.sub(r"\\\1", text), quote=False)


# ---- Markdown for Streamlit (the app's pages) ---------------------------------------------------------------
# What Markdown (CommonMark + GFM + Streamlit's :directives[]) or HTML could act on in the middle of a line ...
_MD_INLINE = re.compile(r"([\\`*_{}\[\]<>~$|])")
# ... what makes a bare link (GFM autolinks: scheme://, www., user@host). Streamlit finds these after backslash escapes
# are gone, so they are broken with an invisible WORD JOINER instead ("http\u2060://" shows as "http://") ...
_MD_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto|file|javascript|data|vbscript)(?=:)|\b(www)(?=\.)|(@)"
                          # ... and Streamlit's :red[…] / :material/icon: / :emoji: (also found after escapes)
                          r"|(:)(?=[a-z])")
_JOINER = "\u2060"
# ... and what acts at the start of a line (headings, quotes, lists, setext/thematic breaks).
_MD_LINE_START = re.compile(r"^(\d+)([.)])|^([#>+=-])")


def md_escape(text: Any) -> str:
    """Untrusted text (labels, model and file names, error messages, prompts, anything from a run, an import, an
    endpoint or a ladder) made safe inside st.markdown / st.caption / st.error… / st.toast / widget labels.

    The one helper every page uses. Whitespace collapses to single spaces (so no line but the first), every
    character that could make Markdown or HTML act is backslash-escaped, and bare links are broken by an invisible
    word joiner: the text cannot become a link (bracketed or bare), an image, a raw HTML element, emphasis, code,
    math, a table, a heading or list, or a Streamlit colour directive; it shows as written.
    """
    out = _MD_INLINE.sub(r"\\\1", " ".join(str(text).split()))
    out = _MD_AUTOLINK.sub(lambda m: m.group(0) + _JOINER, out)
    return _MD_LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(1) else f"\\{m.group(3)}", out)
