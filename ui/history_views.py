"""Small pieces the History, Ratings, Compare and Prompt sets pages share about stored runs: how a run is named
in a picker, and the report downloads of runs and of set runs (generated only when clicked)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import streamlit as st

from ui.shared import fmt_time, store
from workbench.people.report import report_html, report_markdown
from workbench.people.set_report import set_report_html, set_report_markdown
from workbench.storage.store import FoundRun, StoredRun


def run_label(row: FoundRun | StoredRun, width: int = 60) -> str:
    """'#12 · 03 Mar 14:05 · SmolLM2 … · Name three colors.' for a run row (from search_runs or get_run).

    Names no quantization: pickers on the blind Ratings page use it too.
    """
    prompt = " ".join((row.prompt or "").split())
    prompt = prompt[:width] + ("…" if len(prompt) > width else "")
    kind = "" if row.kind in (None, "compare") else f" · {row.kind}"
    model = row.ladder_name or "local files"
    return f"#{row.id} · {fmt_time(row.created_at)} · {model}{kind} · {prompt}"


def _deferred(make: Callable[[], str], what: str, markdown: bool) -> Callable[[], bytes]:
    """Wrap a report maker so a failure (a run deleted meanwhile…) downloads a short explanation, not nothing."""

    def data() -> bytes:
        try:
            return make().encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - the user gets the reason in the file instead of a dead link
            reason = f"Could not make the {what}: {exc}"
            text = reason if markdown else f"<!DOCTYPE html><meta charset='utf-8'><p>{html.escape(reason)}</p>"
            return text.encode("utf-8")

    return data


def report_downloads(run_ids: Sequence[int], *, key: str, disabled: bool = False) -> None:
    """A 'Download report (HTML)' / '(Markdown)' pair for these runs; the report is made when clicked."""
    ids = [int(i) for i in run_ids]
    s = store()
    stem = f"run-{ids[0]}" if len(ids) == 1 else f"runs-{ids[-1]}-to-{ids[0]}" if ids else "runs"
    what = "report of " + (f"run {ids[0]}" if len(ids) == 1 else f"{len(ids)} runs")
    c1, c2 = st.columns(2)
    c1.download_button("Download report (HTML)", _deferred(lambda: report_html(s, ids), what, False),
                       file_name=f"{stem}-report.html", mime="text/html", key=f"{key}-html", on_click="ignore",
                       disabled=disabled or not ids, icon=":material/description:",
                       help="One self-contained file (charts embedded, works offline) to hand on. Takes a few "
                            "seconds to make.")
    c2.download_button("Download report (Markdown)", _deferred(lambda: report_markdown(s, ids), what, True),
                       file_name=f"{stem}-report.md", mime="text/markdown", key=f"{key}-md", on_click="ignore",
                       disabled=disabled or not ids, icon=":material/article:")


def set_report_downloads(set_run_id: int, *, key: str, pair: tuple[str, str] | None = None) -> None:
    """A 'Download set report (HTML)' / '(Markdown)' pair for a set run: its verdict, machine measures and every
    prompt in one file to hand on, about `pair` (candidate, baseline; the set's default pair if None); made when
    clicked."""
    s, sid = store(), int(set_run_id)
    cand, base = pair if pair is not None else (None, None)
    what = f"report of set run {sid}"
    c1, c2 = st.columns(2)
    c1.download_button("Download set report (HTML)", _deferred(lambda: set_report_html(s, sid, cand, base), what, False),
                       file_name=f"set-run-{sid}-report.html", mime="text/html", key=f"{key}-html",
                       on_click="ignore", icon=":material/description:",
                       help="One self-contained file (works offline) to hand to a stakeholder: the verdict in words, "
                            "machine measures per quantization, and every prompt with its outputs.")
    c2.download_button("Download set report (Markdown)", _deferred(lambda: set_report_markdown(s, sid, cand, base), what, True),
                       file_name=f"set-run-{sid}-report.md", mime="text/markdown", key=f"{key}-md",
                       on_click="ignore", icon=":material/article:")
