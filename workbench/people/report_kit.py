"""The kit every report is made with: the page shell and its styles, tables in HTML and Markdown, the word diff
in Markdown, and plotly charts that work offline and show untrusted labels as text.

Run reports (people.report), set reports (people.set_report) and the recommendation (decide.report) share it,
so a page looks and escapes the same everywhere. Every value that reaches markup here is escaped by
core.escaping (esc, md_cell, fence, chart_text: the one home of escaping, the app's md_escape included): model
output, labels, file paths and comments are untrusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from workbench.core.escaping import esc, fence, md_cell
from workbench.quality.diff_html import DIFF_CSS
from workbench.quality.diffing import WordDiff

# The app's palette (its theme's primary colour, and the Compare page's measurement colours): charts in a report
# read like the page they came from. Orange always means "timed while other work competed".
PRIMARY = "#3b5bdb"
MEASURED_COLOURS = {"quiet": PRIMARY, "disturbed": "#e8590c", "not judged": "#868e96"}

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; max-width: 1100px; margin: 2rem auto;
       padding: 0 1rem; color: #1f2328; line-height: 1.5; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .85rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
pre.wb-text { white-space: pre-wrap; background: #f6f8fa; padding: .5rem; border-radius: .4rem; }
.wb-muted { color: #59636e; font-size: .85rem; }
.wb-error { color: #cf222e; }
.wb-output { margin-bottom: 1.2rem; }
.wb-verdict { font-size: 1.05rem; border-left: 4px solid #0969da; padding: .2rem 0 .2rem .8rem; }
"""


def generated_at() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def html_head(title: str, note: str, css: str = "") -> list[str]:
    """The opening of a self-contained report page up to its title and a muted note under it (both escaped);
    the caller appends sections and closes it with "</body></html>"."""
    return ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title><style>{CSS}{DIFF_CSS}{css}</style></head><body>",
            f"<h1>{esc(title)}</h1>", f'<p class="wb-muted">{esc(note)}</p>']


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---- charts ---------------------------------------------------------------------------------------------
class Charts:
    """Plotly figures as HTML; plotly.js goes inline with the first one only (the file works offline)."""

    def __init__(self) -> None:
        self.count = 0

    def html(self, fig: Any) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs=self.count == 0, default_height="380px",
                          default_width="100%", config={"displaylogo": False})
        self.count += 1
        return f'<div class="wb-chart">{out}</div>'


# ---- Markdown -------------------------------------------------------------------------------------------
def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def md_diff(d: WordDiff) -> str:
    """The word diff in a fence: [-reference only-] {+this output only+}."""
    marks = {"equal": "{}", "delete": "[-{}-]", "insert": "{{+{}+}}"}
    fenced = fence("".join(marks[op].format(text) for op, text in d.segments), "diff-words")
    return fenced + (f"\n\n_{md_cell(d.note)}_" if d.note else "")
