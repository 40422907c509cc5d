"""A report to hand on: one self-contained HTML file (or Markdown) of one or more runs.

The HTML works offline: styles are inline and plotly.js is embedded once, in the first chart.
It holds, per run, the ladder and where its files came from, the machine, the settings, the
measured metrics (with how each was measured), charts, every output with its word-level diff
against the reference, its one-line summary and changed facts (quality.summary, quality.facts), optional extra sections (divergence, evaluations…) passed by the caller,
and the ratings summary (leaderboard) of the runs. A judged prompt set's verdict is a section of its own
(verdict_section_html / verdict_section_markdown of a people.verdict.SetVerdict).

Model output, prompts, labels and comments are untrusted text: every piece is escaped
(html.escape, or a code fence in Markdown) before it meets our markup, so an output holding
`<script>` shows as text and runs nothing.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.core.disturbance import of_result
from workbench.engine.metrics import METRIC_LABELS
from workbench.models.ladder import Ladder
from workbench.people.leaderboard import Leaderboard, leaderboard
from workbench.people.ratings import list_ratings, list_votes
from workbench.people.verdict import SetVerdict
from workbench.quality.diffing import DIFF_CSS, WordDiff, diff_html, plain_html, word_diff
from workbench.quality.facts import FactChange
from workbench.quality.summary import summarize
from workbench.storage.store import Store

Extras = dict[str, Any]


class UnknownRun(LookupError):
    """Asked to report on run ids the database does not have."""

    def __init__(self, missing: Sequence[int]) -> None:
        self.missing = list(missing)
        ids = ", ".join(str(i) for i in self.missing)
        super().__init__(f"no run with id {ids}" if len(self.missing) == 1 else f"no runs with ids {ids}")


def load_runs(store: Store, run_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The runs, in the order asked; UnknownRun naming every id that is missing."""
    if not run_ids:
        raise ValueError("name at least one run")
    runs = [store.get_run(int(i)) for i in run_ids]
    missing = [i for i, r in zip(run_ids, runs, strict=True) if r is None]
    if missing:
        raise UnknownRun(missing)
    return runs  # type: ignore[return-value]


# ---- shared facts -----------------------------------------------------------------------------
def _mib(n: Any) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def _num(x: Any, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def provenance_lines(ladder: dict[str, Any] | None) -> list[str]:
    """Where the run's files came from, worded as the app and CLI word it (Ladder.provenance_lines)."""
    if not ladder:
        return ["No ladder was recorded for this run."]
    provenance = ladder.get("provenance") or {}
    lines = Ladder(name=ladder.get("name") or "?", files=[], provenance=provenance).provenance_lines()
    return lines or ["No provenance was recorded for these files."]


def machine_line(machine: dict[str, Any] | None) -> str:
    """The machine the run was measured on, in one line (as hardware.Machine.one_line words it)."""
    if not machine:
        return "No machine was recorded for this run."
    cores = machine.get("physical_cores") or machine.get("logical_cores") or "?"
    ram = machine.get("ram_total_bytes")
    ram_s = f"{ram / 2**30:.0f} GiB RAM" if ram else "RAM unknown"
    gpus = "; ".join(f"{g.get('name', 'GPU')} {g.get('total_bytes', 0) / 2**30:.0f} GiB"
                     for g in machine.get("gpus") or [])
    return f"{machine.get('cpu_model') or 'unknown CPU'} · {cores} cores · {ram_s} · {gpus or 'no GPU'}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _divergence(r: dict[str, Any]) -> str:
    if r.get("is_reference"):
        return "reference"
    if r.get("error"):
        return "-"
    if r.get("first_divergence_token") is None:
        return "identical" if r.get("metrics", {}).get("identical_to_reference") else "-"
    return f"token {r['first_divergence_token']}"


METRIC_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("label", lambda r: r["label"] + (" (reference)" if r.get("is_reference") else "")),
    ("quant", lambda r: r.get("quant_type") or "-"),
    ("size", lambda r: _mib(r.get("size_bytes"))),
    ("bits/weight", lambda r: _num(r.get("bits_per_weight"), 2)),
    ("load s", lambda r: _num(r.get("load_s"), 2)),
    ("TTFT s", lambda r: _num(r.get("ttft_s"), 3)),
    ("prefill tok/s", lambda r: _num(r.get("prefill_tok_s"))),
    ("decode tok/s", lambda r: _num(r.get("decode_tok_s"))),
    ("tokens", lambda r: "-" if r.get("completion_tokens") is None else str(r["completion_tokens"])),
    ("stop", lambda r: r.get("stop_reason") or "-"),
    ("peak RAM", lambda r: _mib(r.get("peak_rss_bytes"))),
    ("VRAM", lambda r: _mib(r.get("gpu_mem_bytes"))),
    ("diverges at", _divergence),
    ("measured", lambda r: _measured(r)),
]


def _measured(r: dict[str, Any]) -> str:
    """Whether the speed figures were taken on a quiet machine (disturbance.py): quiet, DISTURBED, or -."""
    disturbed, _ = of_result(r)
    return "-" if disturbed is None else "DISTURBED" if disturbed else "quiet"


def _disturbance_note(r: dict[str, Any]) -> str | None:
    disturbed, words = of_result(r)
    return f"Speed figures {words}; they read lower than this machine gives." if disturbed else None


def _reference(run: dict[str, Any]) -> dict[str, Any] | None:
    for r in run["results"]:
        if r.get("is_reference") and not r.get("error"):
            return r
    return None


def _settings_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(str(k), json.dumps(v) if isinstance(v, (dict, list)) else str(v))
            for k, v in (run.get("settings") or {}).items()]
    for key, name in (("workbench_version", "workbench"), ("llama_cpp_version", "llama.cpp")):
        if run.get(key):
            rows.append((name, str(run[key])))
    return rows


def _title(runs: Sequence[dict[str, Any]]) -> str:
    models = sorted({r.get("ladder_name") or "unnamed model" for r in runs})
    ids = ", ".join(str(r["id"]) for r in runs)
    return f"Quant Workbench report — {' / '.join(models)} — run{'s' if len(runs) > 1 else ''} {ids}"


# ---- HTML -------------------------------------------------------------------------------------
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
"""


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Charts:
    """Plotly figures as HTML; plotly.js goes inline with the first one only (the file works offline)."""

    def __init__(self) -> None:
        self.count = 0

    def html(self, fig: Any) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs=self.count == 0, default_height="380px",
                          default_width="100%", config={"displaylogo": False})
        self.count += 1
        return f'<div class="wb-chart">{out}</div>'


def metrics_figure(run: dict[str, Any]) -> Any | None:
    """Bars of file size, decode speed and peak RAM per contestant; None when nothing was measured."""
    ok = [r for r in run["results"] if not r.get("error")]
    if not ok:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = [r["label"] for r in ok]
    panels = [
        ("File size (MiB)", [None if r.get("size_bytes") is None else r["size_bytes"] / 2**20 for r in ok]),
        ("Decode (tok/s)", [r.get("decode_tok_s") for r in ok]),
        ("Peak RAM of the worker (MiB)", [None if r.get("peak_rss_bytes") is None else r["peak_rss_bytes"] / 2**20
                                          for r in ok]),
    ]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    for i, (name, values) in enumerate(panels, 1):
        fig.add_trace(go.Bar(x=labels, y=values, name=name, showlegend=False), row=1, col=i)
    fig.update_layout(margin={"l": 40, "r": 20, "t": 50, "b": 40}, title=f"Run {run['id']}: measured per quantization")
    return fig


def _extra_html(value: Any, charts: _Charts) -> str:
    """Render one extra section's content: a DataFrame, plotly figure, rows, mapping or text; all escaped."""
    if hasattr(value, "to_plotly_json"):
        return charts.html(value)
    if hasattr(value, "to_html") and hasattr(value, "columns"):  # a pandas DataFrame
        return value.to_html(index=False, escape=True, border=0, na_rep="-")
    if isinstance(value, dict):
        return _table(["", ""], [(k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                                 for k, v in value.items()])
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        headers = list(dict.fromkeys(k for row in value for k in row))
        return _table(headers, [[row.get(h, "") for h in headers] for row in value])
    if isinstance(value, list):
        return "<ul>" + "".join(f"<li>{_esc(v)}</li>" for v in value) + "</ul>"
    return f'<pre class="wb-text">{_esc(value)}</pre>'


def _run_html(run: dict[str, Any], charts: _Charts) -> str:
    ladder = run.get("ladder") or {}
    parts = [f'<section id="run-{run["id"]}">',
             f"<h2>Run {run['id']} · {_esc(run.get('ladder_name') or 'unnamed model')}</h2>",
             f'<p class="wb-muted">{_esc(run.get("created_at"))} · {_esc(run.get("kind"))} · status '
             f'{_esc(run.get("status"))}{" · category " + _esc(run["category"]) if run.get("category") else ""}</p>']
    if run.get("system_prompt"):
        parts.append(f'<h3>System prompt</h3><pre class="wb-text">{_esc(run["system_prompt"])}</pre>')
    parts.append(f'<h3>Prompt</h3><pre class="wb-text">{_esc(run.get("prompt"))}</pre>')

    parts.append("<h3>Ladder and provenance</h3><ul>" + "".join(f"<li>{_esc(x)}</li>" for x in provenance_lines(ladder))
                 + "</ul>")
    if ladder.get("files"):
        parts.append(_table(["label", "type", "size", "bits/weight", "reference", "file"],
                            [[f.get("label"), f.get("quant_type"), _mib(f.get("size_bytes")),
                              _num(f.get("bits_per_weight"), 2), "yes" if f.get("reference") else "", f.get("path")]
                             for f in ladder["files"]]))
    parts.append(f"<h3>Machine</h3><p>{_esc(machine_line(run.get('machine')))}</p>")
    parts.append("<h3>Settings</h3>" + _table(["setting", "value"], _settings_rows(run)))

    parts.append("<h3>Metrics</h3>")
    parts.append(_table([h for h, _ in METRIC_COLUMNS], [[fn(r) for _, fn in METRIC_COLUMNS] for r in run["results"]]))
    parts.append('<p class="wb-muted">How each figure was measured: ' +
                 "; ".join(_esc(v) for v in METRIC_LABELS.values()) + ".</p>")
    fig = metrics_figure(run)
    if fig is not None:
        parts.append(charts.html(fig))

    parts.append("<h3>Outputs</h3>")
    ref = _reference(run)
    if ref is None:
        parts.append('<p class="wb-muted">No reference output to diff against: outputs are shown as they are.</p>')
    else:
        parts.append(f'<p class="wb-muted">Each output is diffed word by word against the reference '
                     f'({_esc(ref["label"])}): <ins>only in this output</ins>, <del>in the reference only</del>.</p>')
    for r in run["results"]:
        parts.append('<div class="wb-output">')
        parts.append(f"<h4>{_esc(r['label'])}{' (reference)' if r.get('is_reference') else ''}</h4>")
        if r.get("error"):
            parts.append(f'<p class="wb-error">{_esc(r["error"])}</p>')
        elif ref is None or r is ref:
            parts.append(plain_html(r.get("text") or ""))
        else:
            d = word_diff(ref.get("text") or "", r.get("text") or "")
            summary = ("identical to the reference" if d.identical else
                       f"first divergence at word {d.first_divergence_word}; {100 * d.similarity:.0f}% of words shared")
            column = summarize(ref.get("text") or "", r.get("text") or "", diff=d)
            parts.append(f'<p class="wb-summary"><strong>{_esc(column.sentence)}</strong></p>')
            parts.append(f'<p class="wb-muted">{_esc(summary)}</p>{diff_html(d)}')
            parts.append(_facts_html(column.facts))
        if r.get("fallback"):
            parts.append(f'<p class="wb-muted">Note: {_esc(r["fallback"])}</p>')
        if note := _disturbance_note(r):
            parts.append(f'<p class="wb-error">{_esc(note)}</p>')
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _facts_html(facts: Sequence[FactChange]) -> str:
    """Changed facts as a list (model text, so escaped); nothing when no fact changed."""
    if not facts:
        return ""
    items = "".join(f"<li>{_esc(f.kind)}: {_esc(f.describe())}</li>" for f in facts)
    return f'<p class="wb-muted">Changed facts (docs/facts.md):</p><ul class="wb-facts">{items}</ul>'


def _ratings_html(board: Leaderboard, ratings: list[dict[str, Any]], votes: list[dict[str, Any]]) -> str:
    parts = ['<section id="ratings"><h2>Ratings</h2>']
    if board.empty:
        parts.append("<p>No ratings or votes for these runs yet.</p></section>")
        return "".join(parts)
    counts = (f'{_count(board.n_ratings, "rating")}, {_count(board.n_votes, "pairwise vote")} and '
              f'{_count(board.n_rating_pairs, "comparison")} implied by ratings (one rater, two outputs of one run)')
    parts.append(f'<p class="wb-muted">{counts}. Mean ratings carry a 95% t-interval; Bradley–Terry strengths '
                 "(1 = average) a parametric-bootstrap 95% interval.</p>")
    parts.append(board.to_frame().to_html(index=False, escape=True, border=0, na_rep="-"))
    parts.append("<ul>" + "".join(f"<li>{_esc(s)}</li>" for s in board.sentences + board.notes) + "</ul>")
    if ratings:
        parts.append("<h3>Every rating</h3>")
        parts.append(_table(["run", "output", "score", "rater", "mode", "when", "comment"],
                            [[r["run_id"], r["label"], r["score"], r.get("rater") or "-", r["mode"], r["created_at"],
                              r.get("comment") or ""] for r in ratings]))
    if votes:
        parts.append("<h3>Every pairwise vote</h3>")
        parts.append(_table(["run", "A", "B", "winner", "rater", "mode", "when", "comment"],
                            [[v["run_id"], v["label_a"], v["label_b"], v["winner"], v.get("rater") or "-", v["mode"],
                              v["created_at"], v.get("comment") or ""] for v in votes]))
    parts.append("</section>")
    return "".join(parts)


def report_html(store: Store, run_ids: Sequence[int], *, extras: Extras | None = None, title: str | None = None,
                n_boot: int = 500) -> str:
    """One self-contained HTML page (str) for these runs; `extras` maps a section title to its content."""
    runs = load_runs(store, run_ids)
    ids = [r["id"] for r in runs]
    title = title or _title(runs)
    charts = _Charts()
    from workbench import __version__

    generated = datetime.now(UTC).isoformat(timespec="seconds")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_esc(title)}</title><style>{CSS}{DIFF_CSS}</style></head><body>",
             f"<h1>{_esc(title)}</h1>",
             f'<p class="wb-muted">Generated {generated} by Quant Workbench {_esc(__version__)}. Figures were measured '
             "on the machine named in each run, not estimated. Contestants ran one after another.</p>"]
    parts += [_run_html(run, charts) for run in runs]
    for name, value in (extras or {}).items():
        parts.append(f"<section><h2>{_esc(name)}</h2>{_extra_html(value, charts)}</section>")
    ratings, votes = list_ratings(store, run_ids=ids), list_votes(store, run_ids=ids)
    parts.append(_ratings_html(leaderboard(store, run_ids=ids, n_boot=n_boot), ratings, votes))
    parts.append("</body></html>")
    return "\n".join(parts)


# ---- Markdown ---------------------------------------------------------------------------------
def _fence(text: str, info: str = "text") -> str:
    """A code fence longer than any backtick run inside, so the text can never close it early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return f"{bar}{info}\n{text}\n{bar}"


def _md_cell(x: Any) -> str:
    return html.escape("" if x is None else str(x)).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_diff(d: WordDiff) -> str:
    """The word diff in a fence: [-reference only-] {+this output only+}."""
    marks = {"equal": "{}", "delete": "[-{}-]", "insert": "{{+{}+}}"}
    fenced = _fence("".join(marks[op].format(text) for op, text in d.segments), "diff-words")
    return fenced + (f"\n\n_{_md_cell(d.note)}_" if d.note else "")


def _md_extra(value: Any) -> str:
    if hasattr(value, "to_plotly_json"):
        return "_(chart: see the HTML report)_"
    if hasattr(value, "columns") and hasattr(value, "itertuples"):
        return _md_table([str(c) for c in value.columns], [list(row) for row in value.itertuples(index=False)])
    if isinstance(value, dict):
        return _md_table(["", ""], list(value.items()))
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        headers = list(dict.fromkeys(k for row in value for k in row))
        return _md_table(headers, [[row.get(h, "") for h in headers] for row in value])
    if isinstance(value, list):
        return "\n".join(f"- {_md_cell(v)}" for v in value)
    return _fence(str(value))


def report_markdown(store: Store, run_ids: Sequence[int], *, extras: Extras | None = None, title: str | None = None,
                    n_boot: int = 500) -> str:
    """The same report as Markdown (no charts); model text sits in code fences, table cells are escaped."""
    runs = load_runs(store, run_ids)
    ids = [r["id"] for r in runs]
    out = [f"# {_md_cell(title or _title(runs))}", "",
           f"Generated {datetime.now(UTC).isoformat(timespec='seconds')}. "
           "Figures were measured on the machine "
           "named in each run, not estimated. Contestants ran one after another.", ""]
    for run in runs:
        out += [f"## Run {run['id']} · {_md_cell(run.get('ladder_name') or 'unnamed model')}", "",
                f"{_md_cell(run.get('created_at'))} · {_md_cell(run.get('kind'))} · "
                f"status {_md_cell(run.get('status'))}"
                + (f" · category {_md_cell(run['category'])}" if run.get("category") else ""), ""]
        if run.get("system_prompt"):
            out += ["### System prompt", "", _fence(run["system_prompt"]), ""]
        out += ["### Prompt", "", _fence(run.get("prompt") or ""), "", "### Ladder and provenance", ""]
        out += [f"- {_md_cell(x)}" for x in provenance_lines(run.get("ladder"))] + [""]
        out += ["### Machine", "", _md_cell(machine_line(run.get("machine"))), "", "### Settings", "",
                _md_table(["setting", "value"], _settings_rows(run)), "", "### Metrics", "",
                _md_table([h for h, _ in METRIC_COLUMNS],
                          [[fn(r) for _, fn in METRIC_COLUMNS] for r in run["results"]]),
                "", "How each figure was measured: " + "; ".join(_md_cell(v) for v in METRIC_LABELS.values()) + ".", "",
                "### Outputs", ""]
        ref = _reference(run)
        if ref is not None:
            out += [f"Diffs against the reference ({_md_cell(ref['label'])}): `[-reference only-]`, "
                    "`{+this output only+}`.", ""]
        for r in run["results"]:
            out += [f"#### {_md_cell(r['label'])}{' (reference)' if r.get('is_reference') else ''}", ""]
            if note := _disturbance_note(r):
                out += [f"**{_md_cell(note)}**", ""]
            if r.get("error"):
                out += [f"Error: {_md_cell(r['error'])}", ""]
            elif ref is None or r is ref:
                out += [_fence(r.get("text") or ""), ""]
            else:
                d = word_diff(ref.get("text") or "", r.get("text") or "")
                column = summarize(ref.get("text") or "", r.get("text") or "", diff=d)
                out += [f"**{_md_cell(column.sentence)}**", ""]
                out += [_md_diff(d), ""]
                if column.facts:
                    out += ["Changed facts:", ""] + [f"- {_md_cell(f.kind)}: {_md_cell(f.describe())}"
                                                     for f in column.facts] + [""]
    for name, value in (extras or {}).items():
        out += [f"## {_md_cell(name)}", "", _md_extra(value), ""]
    board = leaderboard(store, run_ids=ids, n_boot=n_boot)
    out += ["## Ratings", ""]
    if board.empty:
        out += ["No ratings or votes for these runs yet.", ""]
    else:
        frame = board.to_frame()
        out += [f"{_count(board.n_ratings, 'rating')}, {_count(board.n_votes, 'pairwise vote')}, "
                f"{_count(board.n_rating_pairs, 'comparison')} implied by ratings.", "", _md_extra(frame), ""]
        out += [f"- {_md_cell(s)}" for s in board.sentences + board.notes] + [""]
    return "\n".join(out)


def write_report(store: Store, run_ids: Sequence[int], *, html_path: str | Path | None = None,
                 markdown_path: str | Path | None = None, extras: Extras | None = None) -> list[Path]:
    """Write the HTML and/or Markdown report; returns the paths written."""
    written = []
    if html_path:
        p = Path(html_path)
        p.write_text(report_html(store, run_ids, extras=extras), encoding="utf-8")
        written.append(p)
    if markdown_path:
        p = Path(markdown_path)
        p.write_text(report_markdown(store, run_ids, extras=extras), encoding="utf-8")
        written.append(p)
    return written


# ---- the verdict of a judged prompt set (people.verdict) --------------------------------------
_QUALITY_HEADERS = ("quantization", "prompts", "identical", "same answer", "different answer", "changed facts",
                    "prompts with changed facts")


def _quality_rows(sv: SetVerdict) -> list[list[Any]]:
    return [[q.label, q.prompts, q.identical, q.same_answer, q.different_answer, q.facts_changed,
             q.prompts_with_changed_facts] for q in sv.quality]


def verdict_section_html(sv: SetVerdict) -> str:
    """The set's verdict paragraph and its per-quantization facts and summary counts, as an escaped HTML section."""
    v = sv.verdict
    return (f"<section><h2>Verdict: {_esc(v.reference)} vs {_esc(v.candidate)}</h2><p>{_esc(sv.paragraph)}</p>"
            f"{_table(_QUALITY_HEADERS, _quality_rows(sv))}"
            f'<p class="wb-muted">Exact two-sided sign test on the decided votes; 95% Wilson interval of the share '
            f"preferring {_esc(v.candidate)}. Summary and changed facts are each output against "
            f"{_esc(v.reference)}'s, per prompt.</p></section>")


def verdict_section_markdown(sv: SetVerdict) -> str:
    """The same section in Markdown: the paragraph with Markdown's special characters escaped, then the table."""
    v = sv.verdict
    text = re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", sv.paragraph)
    return "\n".join([f"## Verdict: {_md_cell(v.reference)} vs {_md_cell(v.candidate)}", "", f"> {text}", "",
                      _md_table(_QUALITY_HEADERS, _quality_rows(sv)), "",
                      "_Exact two-sided sign test on the decided votes; 95% Wilson interval of the share preferring "
                      "the candidate. Summary and changed facts are each output against the reference's, per "
                      "prompt._"])
