"""Where a sentence ends: the one rule the side-by-side view (quality.diffing) and the summary line's
"different answer from sentence K" (quality.summary) both use, so they never disagree on where a sentence ends.

A paragraph is text between blank lines. A sentence ends after . ! ? or … (with any closing quotes or brackets)
followed by whitespace, and at every line break (list items, headings). Deliberately simple: "e.g. this" splits
after "e.g.", while "3.5" does not split.
"""

from __future__ import annotations

import re

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])([\"'”’)\]]*)\s+|\s*\n\s*")


def paragraphs(text: str) -> list[str]:
    """Paragraphs: text between blank lines, stripped, empty ones dropped."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph by the rule above, stripped, empty ones dropped."""
    out: list[str] = []
    start = 0
    for m in _SENTENCE_BREAK.finditer(paragraph):
        out.append(paragraph[start: m.start()] + (m.group(1) or ""))
        start = m.end()
    out.append(paragraph[start:])
    return [s.strip() for s in out if s.strip()]


def text_sentences(text: str) -> list[str]:
    """Every sentence of a whole text, paragraph by paragraph, in order."""
    return [s for p in paragraphs(text) for s in sentences(p)]
