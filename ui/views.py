"""Drawing comparisons: live columns while a job streams, and a stored run with diffs, metrics,
ratings, charts and a table. Pages call these; the numbers come from the library and the store."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from ui.glossary_views import card_cell
from ui.shared import fmt_num, follow, store
from ui.star_views import star_widget
from ui.variant_views import memory_rows, reported_kv_bytes, variant_line
from workbench.core import glossary
from workbench.core.disturbance import stored_decode
from workbench.core.escaping import html_text, md_escape
from workbench.core.text_units import format_bytes, is_number
from workbench.engine.metrics import METRIC_LABELS
from workbench.quality import noise_floor
from workbench.quality.diff_html import DIFF_CSS, diff_html, plain_html, prose_html, spans_html
from workbench.quality.diffing import MAX_SIDE_ROWS, SideBySide, WordDiff, side_by_side, word_diff
from workbench.quality.noise_floor import Floor
from workbench.quality.summary import summarize
from workbench.runs import timing
from workbench.runs.jobs import STATUS_TEXT, ComparisonJob
from workbench.storage.rows import StoredResult, StoredRun

MAX_COLUMNS = 5
# While a contestant is measured, its column's text is sent at most this often (and no other column's);
# measured on the 2-core machine: see docs/benchmarks.md, "Live page vs quiet CLI".
STREAM_TICK_S = 0.5
# Material Symbols ship with Streamlit, so they render offline and in browsers without an emoji font.
STATUS_ICON = {"queued": ":material/schedule:", "waiting": ":material/hourglass_top:", "loading": ":material/upload:",
               "connecting": ":material/lan:", "retrying": ":material/replay:", "generating": ":material/edit_note:",
               "timing": ":material/timer:",
               "done": ":material/check_circle:", "cancelled": ":material/stop_circle:", "crashed": ":material/dangerous:",
               "error": ":material/error:"}


SIDE_CSS = """
.wb-side { width: 100%; border-collapse: collapse; font-size: 0.92rem; }
.wb-side th { text-align: left; font-weight: 600; padding: 0.3rem 0.5rem; border-bottom: 1px solid rgba(127,127,127,0.3); }
.wb-side td { vertical-align: top; width: 50%; padding: 0.25rem 0.5rem; }
.wb-side td .wb-diff { padding: 0.15rem 0.3rem; background: none; }
.wb-side tr.wb-para td { border-top: 1px solid rgba(127,127,127,0.25); }
.wb-side tr.wb-changed td, .wb-side tr.wb-reference-only td, .wb-side tr.wb-output-only td {
    background: rgba(250,176,5,0.06); }
.wb-side td.wb-empty { color: #868e96; font-style: italic; font-size: 0.8rem; }
"""


def css() -> None:
    st.html(f"<style>{DIFF_CSS}{SIDE_CSS}</style>")


def column_rows(items: list[Any]) -> list[list[tuple[Any, Any]]]:
    """Two to five columns side by side, wrapping onto new rows beyond five."""
    rows = []
    for start in range(0, len(items), MAX_COLUMNS):
        chunk = items[start : start + MAX_COLUMNS]
        cols = st.columns(max(2, len(chunk)) if len(items) > 1 else 1)
        rows.append(list(zip(cols, chunk, strict=False)))
    return rows


def status_line(status: str, message: str = "", queue_position: int | None = None) -> str:
    text = f"{STATUS_ICON.get(status, '')} {STATUS_TEXT.get(status, status)}"
    if status == "waiting" and queue_position:
        text += f" — {queue_position} run{'s' if queue_position != 1 else ''} ahead of yours in the machine-wide queue"
    if message:
        text += f" — {md_escape(message)}"
    return text


def stream_columns(job: ComparisonJob, hold_text: bool = False, tick_s: float = STREAM_TICK_S) -> None:
    """Each contestant's status and streamed text until the job ends; then a rerun shows the stored run.

    Runs in this script run rather than as a fragment (see `shared.follow` for why), and sends only what
    changed: a column's status line when its status changes, the active column's text at most every `tick_s`
    seconds. With `hold_text` a column's text appears only once it is done, so nothing is drawn while a
    contestant is timed. Model output is untrusted: escaped.
    """
    snap = job.snapshot()
    slots: dict[str, tuple[Any, Any]] = {}
    for row in column_rows(snap["columns"]):
        for col, c in row:
            with col:
                st.markdown(f"**{md_escape(c['label'])}**")
                slots[c["label"]] = (st.empty(), st.empty())
    stopping, noise = st.empty(), st.empty()
    shown: dict[tuple[str, str], str] = {}
    last_text_at = [0.0]

    def put(label: str, part: str, value: str) -> bool:
        if shown.get((label, part)) == value:
            return False
        shown[(label, part)] = value
        return True

    def tick() -> bool:
        snap = job.snapshot()
        text_due = time.monotonic() - last_text_at[0] >= tick_s
        for c in snap["columns"]:
            status_slot, text_slot = slots[c["label"]]
            line = status_line(c["status"], c["message"], c["queue_position"])
            if put(c["label"], "status", line):
                status_slot.caption(line)
            timed = c["status"] in ("generating", "loading", "retrying", "timing")
            if timed and (hold_text or not text_due):
                continue
            text = c["text"]
            if put(c["label"], "text", text):
                if timed:
                    last_text_at[0] = time.monotonic()
                if text:
                    text_slot.html(plain_html(text))
                else:
                    text_slot.empty()
        if snap["cancelling"] and put("", "stopping", "yes"):
            stopping.caption("Stopping…")
        if snap.get("repeat") and put("", "noise", str(snap["repeat"])):
            noise.caption(f"Noise floor: the reference again, repeat {snap['repeat']} of {snap['noise_repeats']} "
                          "(after every contestant was timed)")
        if snap["finished"]:
            st.session_state.run_id = snap["run_id"]
        return bool(snap["finished"])

    tick()
    follow(tick)


def _metric_rows(r: StoredResult) -> list[tuple[str, str]]:
    """(name, value) rows of plain text; the caller escapes them. The row's figures were checked when it was read
    (storage.rows); what its metrics JSON holds was not, so those values are checked here."""
    metrics = r.metrics
    tokens = r.completion_tokens
    stop = r.stop_reason
    rows = [
        ("TTFT", f"{fmt_num(r.ttft_s, '.3f')} s"),
        ("Prefill", f"{fmt_num(r.prefill_tok_s, ',.0f')} tok/s"),
        ("Decode", f"{fmt_num(r.decode_tok_s, ',.1f')} tok/s"),
        *_spread_rows(r),
        ("Tokens", f"{fmt_num(tokens, 'd') if tokens is not None else '—'} ({stop if stop else '—'})"),
        ("Peak RAM", format_bytes(r.peak_rss_bytes)),
    ]
    if r.gpu_mem_bytes is not None:
        rows.append(("VRAM", f"{format_bytes(r.gpu_mem_bytes)} (NVML, this worker incl. CUDA context)"))
    if r.gpu_layers:
        settings = metrics.get("settings")
        settings = settings if isinstance(settings, dict) else {}
        n_layers = settings.get("n_layers")
        total = n_layers + 1 if isinstance(n_layers, int) and not isinstance(n_layers, bool) and n_layers else "?"
        rows.append(("GPU layers", f"{fmt_num(r.gpu_layers, 'd')} of {total} (repeating + output)"))
    rows += [("File", format_bytes(r.size_bytes)), ("Bits/weight", fmt_num(r.bits_per_weight, ".2f")),
             ("Load", f"{fmt_num(r.load_s, '.2f')} s{' (warm worker)' if metrics.get('warm') else ''}")]
    contention = r.cpu_contention
    if contention is not None:
        verdict = "disturbed" if r.disturbed else "quiet"
        decode = stored_decode(metrics.get("measurement"))
        free = ""
        if decode is not None and decode.spare_busy is not None:
            free = f" · free core{'s' if decode.spare_cpus > 1 else ''} {decode.spare_busy:.0%} busy"
        rows.append(("CPU contention", f"{contention:.0%}{free} ({verdict})"))
    return rows + memory_rows(r)


def _spread_rows(r: StoredResult) -> list[tuple[str, str]]:
    """The decode figure's spread when more than one window was timed (runs.timing): the figure above is their
    median; here the range and how many windows it took."""
    s = timing.of_result(r)
    if s is None or s["windows"] <= 1:
        return []
    if not s["quiet"]:
        return [("Decode range", f"{s['min']:,.1f}–{s['max']:,.1f} tok/s, no quiet window in {s['windows']}")]
    left_out = f", {s['disturbed_windows']} disturbed left out" if s["disturbed_windows"] else ""
    return [("Decode range", f"{s['min']:,.1f}–{s['max']:,.1f} tok/s, median of {s['n']}{left_out}")]


def speed_badge(r: StoredResult) -> None:
    """A small orange mark on a column whose speed figure was disturbed; the words on hover (one banner above the
    columns says what it means and offers to re-measure)."""
    disturbed, words = r.disturbance
    if not disturbed:
        return
    s = timing.of_result(r)
    tries = f" No quiet window came in {s['windows']} tries." if s is not None and not s["quiet"] else ""
    st.caption(":orange-badge[:material/speed: speed disturbed]",
               help=md_escape(f"Speed figures {words}.{tries} They can read lower than this machine gives."))


def rating_widget(run: StoredRun, r: StoredResult, saved: dict[str, Any] | None) -> None:
    """The stars under a Compare column (an open rating: the column names the quantization), and what was saved."""
    star_widget(run.id, r.label, f"rate-{run.id}-{r.label}", saved=int(saved["score"]) if saved else None,
                saved_comment=(saved.get("comment") or "") if saved else None)
    if saved:
        by = f" by {md_escape(saved['rater'])}" if saved.get("rater") else ""
        st.caption(f"Saved: {'★' * int(saved['score'])} at {md_escape(str(saved['created_at'])[11:19])} UTC{by}")


def _text(r: StoredResult) -> str:
    return r.text or ""


@functools.lru_cache(maxsize=64)
def _diff(ref_text: str, text: str) -> WordDiff:
    """One word diff per pair of texts, shared by a column's header and body across reruns (not mutated)."""
    return word_diff(ref_text, text)


def word_diff_of(ref_text: str, text: str) -> WordDiff:
    """The (cached) word diff a column's header used: draw the body from the same one."""
    return _diff(ref_text, text)


def column_header(ref_text: str, text: str, first_token: Any = None, floor: Floor | None = None,
                  base_name: str = "reference") -> None:
    """The line above a column's text, in words (quality.summary), the figures behind it, and the changed facts.

    Facts (numbers, dates, times, amounts, names: quality.facts, rules in docs/facts.md) are listed because a
    single changed number can leave a text 99% similar and still be the difference that matters.
    """
    d = _diff(ref_text, text)
    if d.identical:
        st.success(f"identical to {md_escape(base_name)}")
        return
    line = summarize(ref_text, text, diff=d)
    st.markdown(f"**{md_escape(line.sentence)}**", help=glossary.verdict_help(line.verdict, line.facts_changed))
    if floor is not None:
        words = noise_floor.standing_sentence(line, floor)
        st.caption(md_escape(words[:1].upper() + words[1:]))
    first = f" · first divergence at token {fmt_num(first_token, 'd')}" if isinstance(first_token, int) else ""
    st.caption(f"{d.changed_words} words differ · similarity {d.similarity:.0%}{first}")  # first: vs the reference only
    if line.facts:
        with st.expander(f"Changed facts ({line.facts_changed})", expanded=False):  # the same for every column
            st.markdown("\n".join(f"- {md_escape(f.describe())}" for f in line.facts))


def _reference(results: Sequence[StoredResult], baseline: str | None = None) -> StoredResult | None:
    """The output every other is read against: `baseline`'s (a label), else the reference's; None if it failed."""
    if baseline is not None:
        return next((r for r in results if r.label == baseline and not r.error), None)
    return next((r for r in results if r.is_reference and not r.error), None)


def result_columns(run: StoredRun, baseline: str | None = None) -> None:
    """The finished outputs: each quantization's text as prose with its changes against `baseline` (None: the
    reference) highlighted (or the full diff), metric cards, and a star rating under each. The noise floor stays
    the reference's own variation."""
    results = run.results
    ref = _reference(results, baseline)
    own = _reference(results)
    full, inline = False, False
    if ref is not None and any(not r.is_reference and not r.error for r in results):
        t1, t2 = st.columns(2)
        base = "the reference" if ref is own else md_escape(ref.label)  # what the columns are read against
        full = t1.toggle("Show deletions (full diff)", key="diff_full",
                         help=f"Every change: {base}'s words struck through beside this output's words.")
        inline = t2.toggle(f"Show {base}'s words inline", key="diff_ref_inline", disabled=full,
                           help=f"After each highlighted change, what {base} had there (muted). "
                                "Hovering a highlight shows the same.")
    saved = store().latest_ratings(run.id)
    floor = noise_floor.floor_of(_text(own), store().reference_repeats(run.id)) if own is not None else None
    base_label = ref.label if ref is not None and ref is not own else None
    for row in column_rows(list(results)):
        for col, r in row:
            with col:
                role = " · reference" if r.is_reference else " · baseline" if r.label == base_label else ""
                st.markdown(f"**{md_escape(r.label)}**{role}")
                if r.error:
                    st.error(md_escape(r.error))
                    continue
                if r.stop_reason == "cancelled":
                    st.caption("⏹️ cancelled")
                if r.fallback:
                    st.caption(f"ℹ️ {md_escape(r.fallback)}")
                speed_badge(r)
                text = _text(r)
                if r.is_reference and floor is not None:
                    st.caption(f"Noise floor: {md_escape(floor.sentence())} "
                               f"({md_escape(', '.join(floor.perturbations))})")
                if r is ref or ref is None:
                    st.html(plain_html(text, prose=not full))
                else:
                    first = r.first_divergence_token if ref is own else None  # measured against the reference
                    column_header(_text(ref), text, first, floor, "reference" if ref is own else ref.label)
                    d = _diff(_text(ref), text)
                    if d.identical:
                        st.html(plain_html(text, prose=not full))
                    else:
                        st.html(diff_html(d) if full else prose_html(d, show_reference=inline))
                st.html("<table style='font-size:0.8rem;width:100%'>" + "".join(
                    f"<tr>{card_cell(k, v)}<td style='text-align:right'>{html_text(v)}</td></tr>"
                    for k, v in _metric_rows(r)) + "</table>")
                rating_widget(run, r, saved.get(r.label))


def side_by_side_html(view: SideBySide, ref_label: str, label: str, role: str = "reference") -> str:
    """The aligned rows as a two-column table; changed words highlighted on both sides (hover: the other side's)."""
    def cell(spans: list[Any], other_name: str) -> str:
        if not spans:
            return "<td class='wb-empty'>(nothing here)</td>"
        return f"<td><div class='wb-diff wb-prose'>{spans_html(spans, other_name=other_name, mark_first=False)}</div></td>"

    rows = []
    for row in view.rows:
        cls = f"wb-{row.kind.replace(' ', '-')}{' wb-para' if row.new_paragraph else ''}"
        rows.append(f"<tr class='{cls}'>{cell(row.reference, label)}{cell(row.output, 'the ' + role)}</tr>")
    return (f"<table class='wb-side'><thead><tr><th>{html_text(ref_label)} ({html_text(role)})</th><th>{html_text(label)}</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def side_by_side_view(run: StoredRun, baseline: str | None = None) -> None:
    """The baseline (None: the reference) and one chosen quantization in two columns, aligned by paragraph then
    sentence."""
    ref = _reference(run.results, baseline)
    others = {r.label: r for r in run.results if r is not ref and not r.error}
    if ref is None or not others:
        return
    role = "reference" if ref.is_reference else "baseline"
    pick = st.selectbox(f"Side by side: read one quantization against the {role}, sentence by sentence",
                        ["(none)", *others], key=f"side-{run.id}")
    if pick not in others:
        return
    view = side_by_side(_text(ref), _text(others[pick]))
    st.html(side_by_side_html(view, ref.label, pick, role))
    if view.more:
        st.caption(f"Only the first {MAX_SIDE_ROWS} sentences are shown side by side; the columns above show "
                   "the whole text.")


def _mib(x: Any) -> float | None:
    """MiB for a table or chart cell, or None (a figure kept inside a result's metrics JSON may be anything)."""
    return round(x / 2**20, 1) if is_number(x) else None


def metrics_frame(run: StoredRun) -> pd.DataFrame:
    """One row per contestant: the figures of the run's table, charts and CSV."""
    rows = []
    for r in run.results:
        rows.append({
            "quantization": r.label, "type": r.quant_type, "reference": r.is_reference,
            "file MiB": _mib(r.size_bytes),
            "bits/weight": r.bits_per_weight, "load s": r.load_s, "TTFT s": r.ttft_s,
            "prefill tok/s": r.prefill_tok_s, "decode tok/s": r.decode_tok_s,
            **_spread_cells(r),
            "tokens": r.completion_tokens,
            "stop": r.stop_reason, "peak RAM MiB": _mib(r.peak_rss_bytes),
            "VRAM MiB": _mib(r.gpu_mem_bytes),
            "variant": variant_line(r) or "",
            "KV MiB (llama.cpp)": _mib(reported_kv_bytes(r)),
            "first divergence (token)": r.first_divergence_token,
            "CPU contention": r.cpu_contention,
            "measured": "not judged" if r.disturbed is None else "disturbed" if r.disturbed else "quiet",
            "error": r.error,
        })
    return pd.DataFrame(rows)


def _spread_cells(r: StoredResult) -> dict[str, Any]:
    """The decode figure's range and window count (runs.timing); one window: its figure, 1."""
    s = timing.of_result(r)
    if s is None:
        tok_s = r.decode_tok_s
        return {"decode min": tok_s, "decode max": tok_s, "decode windows": 1 if tok_s is not None else None}
    return {"decode min": s["min"], "decode max": s["max"], "decode windows": s["windows"]}


ROUNDING = {"bits/weight": 2, "load s": 2, "TTFT s": 3, "prefill tok/s": 0, "decode tok/s": 1, "decode min": 1,
            "decode max": 1, "CPU contention": 2}


def table_frame(frame: pd.DataFrame, run: StoredRun) -> pd.DataFrame:
    """`metrics_frame(run)` as a person reads it: numbers rounded, "—" where there is no figure, "no GPU" for VRAM
    where no layer ran on a GPU (the CSV keeps the full figures)."""
    shown = frame.copy()
    for column, digits in ROUNDING.items():
        if column in shown:
            shown[column] = shown[column].map(lambda x, d=digits: round(x, d) if is_number(x) else None)
    on_gpu = [bool(r.gpu_layers) for r in run.results]
    shown["VRAM MiB"] = [x if is_number(x) else None if gpu else "no GPU" for x, gpu in zip(shown["VRAM MiB"], on_gpu,
                                                                                           strict=True)]
    shown = shown.astype(object).where(shown.notna(), "—")
    for column in shown.columns:  # figures beside "—" are text: Arrow refuses a mixed column (and logs a traceback)
        values = list(shown[column])
        if any(isinstance(v, str) for v in values) and not all(isinstance(v, str) for v in values):
            shown[column] = [str(v) for v in values]
    return shown


def csv_bytes(frame: pd.DataFrame) -> str:
    """The metrics table as CSV, with text that a spreadsheet would run as a formula quoted (history.csv_safe)."""
    from workbench.people.history import csv_safe

    return frame.map(csv_safe).to_csv(index=False, lineterminator="\r\n")  # CRLF: a lone "\r" in text is quoted


def charts(frame: pd.DataFrame) -> None:
    ok = frame[frame["error"].isna()].copy()
    if ok.empty:
        return
    # Plotly renders a little HTML in axis labels (links among it): labels are untrusted text
    ok["quantization"] = [html_text(q) for q in ok["quantization"]]
    specs = [("decode tok/s", METRIC_LABELS["decode_tok_s"]), ("TTFT s", METRIC_LABELS["ttft_s"]),
             ("peak RAM MiB", METRIC_LABELS["peak_rss_bytes"]), ("file MiB", "File size (MiB) on disk")]
    cols = st.columns(2)
    speed = {"decode tok/s", "TTFT s"}
    colours = {"quiet": "#3b5bdb", "disturbed": "#e8590c", "not judged": "#868e96"}
    spread = bool((ok["decode windows"].fillna(1) > 1).any())
    ok["above"], ok["below"] = ok["decode max"] - ok["decode tok/s"], ok["decode tok/s"] - ok["decode min"]
    for i, (column, title) in enumerate(specs):
        bars = {"error_y": "above", "error_y_minus": "below"} if column == "decode tok/s" and spread else {}
        fig = px.bar(ok, x="quantization", y=column, title=title, text_auto=".3g" if column == "TTFT s" else ".4g",
                     color="measured" if column in speed else None, color_discrete_map=colours, **bars)
        if bars:
            title = (f"{title}<br><sup>bar: median of the undisturbed windows (of all, where none was quiet); "
                     "whisker: their range (min–max)</sup>")
        if column in speed:
            fig.update_layout(legend_title_text="measurement", legend=dict(orientation="h", y=-0.25))
            if (ok["measured"] == "disturbed").any():
                title = (f"{title}<br><sup>orange: timed while other work competed with the worker (can be slower "
                         "than this machine gives)</sup>")
        fig.update_layout(title_text=title, height=300 + 15 * title.count("<br>"), title_font_size=13,
                          margin=dict(l=10, r=10, t=50 + 15 * title.count("<br>"), b=10))
        cols[i % 2].plotly_chart(fig, width="stretch", key=f"chart-{column}")
