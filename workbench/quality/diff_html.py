"""Diffs drawn as escaped HTML fragments, and their CSS: the app's Compare, Sets and Ratings pages and the
offline reports (people.report_kit) show the same markup.

Model output is untrusted text: every piece of it is passed through html.escape before it is wrapped in our own
markup, so `<script>` or `<img onerror=…>` in an output shows as text. What a diff is (its segments and spans)
is worked out in quality.diffing; this module only draws it.
"""

from __future__ import annotations

import html

from workbench.quality.diffing import Span, WordDiff, output_spans

MAX_TITLE_CHARS = 300  # a hover text longer than this is cut (the inline toggle shows it whole)

DIFF_CSS = """
.wb-diff { white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem;
           line-height: 1.45; padding: 0.5rem; border-radius: 0.4rem; background: rgba(127,127,127,0.06); }
.wb-diff ins { background: rgba(46,160,67,0.25); text-decoration: none; border-bottom: 2px solid #2ea043; }
.wb-diff del { background: rgba(248,81,73,0.22); text-decoration: line-through; color: inherit; }
.wb-diff .wb-first { outline: 2px solid #d29922; outline-offset: 1px; }
.wb-diff .wb-diff-note { font-family: sans-serif; font-size: 0.75rem; color: #868e96; margin-top: 0.4rem; }
.wb-diff .wb-first-label { font-size: 0.7rem; color: #d29922; font-weight: 600; vertical-align: super; }
.wb-diff.wb-prose { font-family: inherit; font-size: 0.92rem; line-height: 1.55; }
.wb-diff mark.wb-chg { background: rgba(250,176,5,0.24); color: inherit; border-radius: 2px; cursor: help; }
.wb-diff .wb-gap { cursor: help; }
.wb-diff .wb-gap::before { content: "‸"; color: #e8590c; font-weight: 700; font-size: 0.8em; }
.wb-diff .wb-ref { color: #868e96; font-size: 0.85em; font-style: italic; margin: 0 0.25em; }
.wb-diff .wb-ref::before { content: "‹"; }
.wb-diff .wb-ref::after { content: "›"; }
.wb-diff .wb-first-mark { display: inline-block; width: 0; height: 1.15em; vertical-align: text-bottom;
                          border-left: 2px solid #d29922; margin: 0 1px; position: relative; }
.wb-diff .wb-first-mark::before { content: "▾"; color: #d29922; font-size: 0.7rem; position: absolute;
                                  top: -0.85em; left: -0.38em; }
"""


def diff_html(diff: WordDiff) -> str:
    """The diff as HTML: <ins> for words only in this output, <del> for reference words it lacks.

    The first divergence carries class `wb-first` and a small "first divergence" label.
    """
    parts = ['<div class="wb-diff">']
    marked = False
    for op, text in diff.segments:
        safe = html.escape(text)
        if op == "equal":
            parts.append(safe)
            continue
        cls = ""
        if not marked:
            parts.append('<span class="wb-first-label" title="first divergence from the reference">▼first divergence</span>')
            cls = ' class="wb-first"'
            marked = True
        tag = "ins" if op == "insert" else "del"
        title = "only in this output" if op == "insert" else "in the reference, not in this output"
        parts.append(f'<{tag}{cls} title="{title}">{safe}</{tag}>')
    if diff.note:
        parts.append(f'<div class="wb-diff-note">ℹ️ {html.escape(diff.note)}</div>')
    parts.append("</div>")
    return "".join(parts)


def plain_html(text: str, prose: bool = False) -> str:
    """Untrusted text as an escaped block, styled like a diff (used for the reference itself).

    `prose` uses the reading font of `prose_html`, so the reference reads like the columns beside it.
    """
    return f'<div class="wb-diff{" wb-prose" if prose else ""}">{html.escape(text)}</div>'


def _title(span: Span, other_name: str) -> str:
    other = span.other if len(span.other) <= MAX_TITLE_CHARS else span.other[:MAX_TITLE_CHARS] + "…"
    if span.kind == "gap":
        if not other.strip():
            return f"{other_name} had different spacing or line breaks here"
        return f"{other_name} had here: {other}"
    if not other:
        return f"not in {other_name}: it had nothing at this point"
    return f"{other_name} had: {other}"


def spans_html(spans: list[Span], show_other: bool = False, other_name: str = "the reference",
               mark_first: bool = True) -> str:
    """Spans as HTML: plain text, changed spans in <mark> with the other side's words in the title (hover).

    With `show_other` those words also follow each change inline, muted. The first-divergence marker and the
    gap markers are empty elements (drawn by CSS), so the HTML's text is exactly the spans' text.
    Everything from a model, attributes included, goes through html.escape.
    """
    parts: list[str] = []
    for s in spans:
        if s.first and mark_first:
            parts.append(f'<span class="wb-first-mark" title="first divergence from {html.escape(other_name)}"></span>')
        if s.kind == "equal":
            parts.append(html.escape(s.text))
            continue
        title = html.escape(_title(s, other_name), quote=True)
        if s.kind == "changed":
            parts.append(f'<mark class="wb-chg" title="{title}">{html.escape(s.text)}</mark>')
        else:
            parts.append(f'<span class="wb-gap" title="{title}"></span>')
        if show_other and s.other.strip():
            parts.append(f'<span class="wb-ref">{html.escape(s.other)}</span>')
    return "".join(parts)


def prose_html(diff: WordDiff, show_reference: bool = False) -> str:
    """This output as readable prose: its own text only, changed spans softly highlighted, the reference's words
    on hover (and inline, muted, with `show_reference`), the first divergence a thin marker between words."""
    note = f'<div class="wb-diff-note">ℹ️ {html.escape(diff.note)}</div>' if diff.note else ""
    return f'<div class="wb-diff wb-prose">{spans_html(output_spans(diff), show_reference)}{note}</div>'
