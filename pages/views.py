"""Drawing comparisons: live columns while a job streams, and a stored run with diffs, metrics,
ratings, charts and a table. Pages call these; the numbers come from the library and the store."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from pages.shared import fmt_bytes, store
from workbench.diffing import DIFF_CSS, diff_html, plain_html, word_diff
from workbench.jobs import STATUS_TEXT
from workbench.metrics import METRIC_LABELS

MAX_COLUMNS = 5
# Material Symbols ship with Streamlit, so they render offline and in browsers without an emoji font.
STATUS_ICON = {"queued": ":material/schedule:", "waiting": ":material/hourglass_top:", "loading": ":material/upload:",
               "connecting": ":material/lan:", "retrying": ":material/replay:", "generating": ":material/edit_note:",
               "done": ":material/check_circle:", "cancelled": ":material/stop_circle:", "crashed": ":material/dangerous:",
               "error": ":material/error:"}


def css() -> None:
    st.html(f"<style>{DIFF_CSS}</style>")


def column_rows(items: list[Any]) -> list[list[tuple[Any, Any]]]:
    """Two to five columns side by side, wrapping onto new rows beyond five."""
    rows = []
    for start in range(0, len(items), MAX_COLUMNS):
        chunk = items[start : start + MAX_COLUMNS]
        cols = st.columns(max(2, len(chunk)) if len(items) > 1 else 1)
        rows.append(list(zip(cols, chunk)))
    return rows


def status_line(status: str, message: str = "", queue_position: int | None = None) -> str:
    text = f"{STATUS_ICON.get(status, '')} {STATUS_TEXT.get(status, status)}"
    if status == "waiting" and queue_position:
        text += f" — {queue_position} run{'s' if queue_position != 1 else ''} ahead of yours in the machine-wide queue"
    if message:
        text += f" — {message}"
    return text


def live_columns(snapshot: dict[str, Any]) -> None:
    """Each contestant's status and the text streamed so far (escaped: model output is untrusted)."""
    for row in column_rows(snapshot["columns"]):
        for col, c in row:
            with col:
                st.markdown(f"**{c['label']}**")
                st.caption(status_line(c["status"], c["message"], c["queue_position"]))
                if c["text"]:
                    st.html(plain_html(c["text"]))


def _metric_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    def num(x: float | None, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    rows = [
        ("TTFT", f"{num(r['ttft_s'], '.3f')} s"),
        ("Prefill", f"{num(r['prefill_tok_s'], ',.0f')} tok/s"),
        ("Decode", f"{num(r['decode_tok_s'], ',.1f')} tok/s"),
        ("Tokens", f"{r['completion_tokens'] if r['completion_tokens'] is not None else '—'} ({r['stop_reason'] or '—'})"),
        ("Peak RAM", fmt_bytes(r["peak_rss_bytes"])),
    ]
    if r.get("gpu_mem_bytes") is not None:
        rows.append(("VRAM", f"{fmt_bytes(r['gpu_mem_bytes'])} (NVML, this worker incl. CUDA context)"))
    if r.get("gpu_layers"):
        n_layers = r["metrics"].get("settings", {}).get("n_layers")
        rows.append(("GPU layers", f"{r['gpu_layers']} of {n_layers + 1 if n_layers else '?'} (repeating + output)"))
    rows += [("File", fmt_bytes(r["size_bytes"])), ("Bits/weight", num(r["bits_per_weight"], ".2f")),
             ("Load", f"{num(r['load_s'], '.2f')} s{' (warm worker)' if r['metrics'].get('warm') else ''}")]
    return rows


def _save_rating(run_id: int, label: str, key: str) -> None:
    """Save the stars (and comment) the moment they are given, as an open-mode rating with rater and session."""
    import uuid

    from workbench.ratings import RatingError, add_rating

    value = st.session_state.get(f"{key}-stars")
    if value is None:
        return
    comment = st.session_state.get(f"{key}-comment") or None
    session = st.session_state.setdefault("rater_session", uuid.uuid4().hex)  # shared with the Ratings page
    try:
        add_rating(store(), run_id=run_id, label=label, score=int(value) + 1, comment=comment, mode="open",
                   rater=st.session_state.get("rater"), session=session)
    except RatingError as exc:
        st.toast(f"Rating not saved: {exc}", icon=":material/warning:")
        return
    st.toast(f"Saved {int(value) + 1}★ for {label}")


def rating_widget(run: dict[str, Any], r: dict[str, Any], saved: dict[str, Any] | None) -> None:
    key = f"rate-{run['id']}-{r['label']}"
    if saved and f"{key}-stars" not in st.session_state:
        st.session_state[f"{key}-stars"] = int(saved["score"]) - 1  # show what another tab or reload saved
        st.session_state[f"{key}-comment"] = saved.get("comment") or ""
    st.feedback("stars", key=f"{key}-stars", on_change=_save_rating, args=(run["id"], r["label"], key))
    st.text_input("Comment (optional)", key=f"{key}-comment", on_change=_save_rating, args=(run["id"], r["label"], key),
                  label_visibility="collapsed", placeholder="Comment (optional), saved with your stars")
    if saved:
        by = f" by {saved['rater']}" if saved.get("rater") else ""
        st.caption(f"Saved: {'★' * int(saved['score'])} at {saved['created_at'][11:19]} UTC{by}")


def result_columns(run: dict[str, Any]) -> None:
    """The finished outputs: diff against the reference, metric cards, and a star rating under each."""
    results = run["results"]
    ref = next((r for r in results if r["is_reference"] and not r["error"]), None)
    saved = store().latest_ratings(run["id"])
    for row in column_rows(results):
        for col, r in row:
            with col:
                st.markdown(f"**{r['label']}**{' · reference' if r['is_reference'] else ''}")
                if r["error"]:
                    st.error(r["error"])
                    continue
                if r["stop_reason"] == "cancelled":
                    st.caption("⏹️ cancelled")
                if r["fallback"]:
                    st.caption(f"ℹ️ {r['fallback']}")
                if r["is_reference"] or ref is None:
                    st.html(plain_html(r["text"] or ""))
                else:
                    d = word_diff(ref["text"] or "", r["text"] or "")
                    if d.identical:
                        st.success("identical to reference")
                        st.html(plain_html(r["text"] or ""))
                    else:
                        st.caption(f"{d.changed_words} words differ · similarity {d.similarity:.0%} · first divergence at "
                                   f"token {r['first_divergence_token']}")
                        st.html(diff_html(d))
                st.html("<table style='font-size:0.8rem;width:100%'>" + "".join(
                    f"<tr><td style='color:#666'>{k}</td><td style='text-align:right'>{v}</td></tr>"
                    for k, v in _metric_rows(r)) + "</table>")
                rating_widget(run, r, saved.get(r["label"]))


def metrics_frame(run: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for r in run["results"]:
        rows.append({
            "quantization": r["label"], "type": r["quant_type"], "reference": r["is_reference"],
            "file MiB": None if r["size_bytes"] is None else round(r["size_bytes"] / 2**20, 1),
            "bits/weight": r["bits_per_weight"], "load s": r["load_s"], "TTFT s": r["ttft_s"],
            "prefill tok/s": r["prefill_tok_s"], "decode tok/s": r["decode_tok_s"], "tokens": r["completion_tokens"],
            "stop": r["stop_reason"], "peak RAM MiB": None if r["peak_rss_bytes"] is None else round(r["peak_rss_bytes"] / 2**20, 1),
            "VRAM MiB": None if r["gpu_mem_bytes"] is None else round(r["gpu_mem_bytes"] / 2**20, 1),
            "first divergence (token)": r["first_divergence_token"], "error": r["error"],
        })
    return pd.DataFrame(rows)


def charts(frame: pd.DataFrame) -> None:
    ok = frame[frame["error"].isna()]
    if ok.empty:
        return
    specs = [("decode tok/s", METRIC_LABELS["decode_tok_s"]), ("TTFT s", METRIC_LABELS["ttft_s"]),
             ("peak RAM MiB", METRIC_LABELS["peak_rss_bytes"]), ("file MiB", "File size (MiB) on disk")]
    cols = st.columns(2)
    for i, (column, title) in enumerate(specs):
        fig = px.bar(ok, x="quantization", y=column, title=title, text_auto=".3g" if column == "TTFT s" else ".4g")
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=50, b=10), title_font_size=13)
        cols[i % 2].plotly_chart(fig, width="stretch", key=f"chart-{column}")
