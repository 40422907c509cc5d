"""Word-level diffs of an output against the reference, and their safe HTML rendering.

Model output is untrusted text: every piece of it is passed through html.escape before it is
wrapped in our own markup, so `<script>` or `<img onerror=…>` in an output shows as text.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field

# Words, runs of whitespace, and single punctuation marks: the units a reader notices changing.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


@dataclass
class WordDiff:
    """Segments (op, text) with op in equal / insert / delete; insert is text only in the other output."""

    segments: list[tuple[str, str]] = field(default_factory=list)
    identical: bool = True
    first_divergence_word: int | None = None  # index in the reference's word sequence
    similarity: float = 1.0  # difflib ratio over words

    @property
    def changed_words(self) -> int:
        return sum(len([t for t in _TOKEN.findall(text) if not t.isspace()]) for op, text in self.segments if op != "equal")


def split_words(text: str) -> list[str]:
    return _TOKEN.findall(text)


def word_diff(reference: str, other: str) -> WordDiff:
    a, b = split_words(reference), split_words(other)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    segments: list[tuple[str, str]] = []
    first: int | None = None
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            segments.append(("equal", "".join(a[i1:i2])))
            continue
        if first is None:
            first = len([t for t in a[:i1] if not t.isspace()])
        if op in ("delete", "replace"):
            segments.append(("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            segments.append(("insert", "".join(b[j1:j2])))
    return WordDiff(segments, identical=(a == b), first_divergence_word=first, similarity=matcher.ratio())


DIFF_CSS = """
.wb-diff { white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem;
           line-height: 1.45; padding: 0.5rem; border-radius: 0.4rem; background: rgba(127,127,127,0.06); }
.wb-diff ins { background: rgba(46,160,67,0.25); text-decoration: none; border-bottom: 2px solid #2ea043; }
.wb-diff del { background: rgba(248,81,73,0.22); text-decoration: line-through; color: inherit; }
.wb-diff .wb-first { outline: 2px solid #d29922; outline-offset: 1px; }
.wb-diff .wb-first-label { font-size: 0.7rem; color: #d29922; font-weight: 600; vertical-align: super; }
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
    parts.append("</div>")
    return "".join(parts)


def plain_html(text: str) -> str:
    """Untrusted text as an escaped block, styled like a diff (used for the reference itself)."""
    return f'<div class="wb-diff">{html.escape(text)}</div>'
