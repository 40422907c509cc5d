"""A report to hand on: one self-contained HTML file (or Markdown) of one or more runs, read top-down.

Per run, in the order a stakeholder reads: the conclusion (each quantization's one-line summary against the
reference, quality.summary), what it means for the decision (size and speed against the reference, measured
here), then the evidence: the prompt, every answer as prose with the phrases that differ from the reference
softly highlighted (diff_html.prose_html, as the Compare page shows them) and its changed facts, charts in the
app's palette (orange: timed while other work competed), the metrics and divergence tables. Optional extra
sections passed by the caller and the ratings follow; method and provenance (ladder, files, machine, settings
in plain words, versions) come last. A judged prompt set's verdict is a section of its own
(verdict_section_html / verdict_section_markdown of a people.verdict.SetVerdict).

The HTML works offline: styles are inline and plotly.js is embedded once, in the first chart. The page shell,
escaping and tables are people.report_kit's (shared with the set report and the recommendation).

Model output, prompts, labels and comments are untrusted text: every piece is escaped
(html.escape, or a code fence in Markdown) before it meets our markup, so an output holding
`<script>` shows as text and runs nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.escaping import chart_text, esc, fence, md_cell
from workbench.core.text_units import counted, format_bytes, format_gib
from workbench.engine.metrics import METRIC_LABELS
from workbench.models.demo_note import report_note
from workbench.models.ladder import Ladder
from workbench.people.divergence_words import ranking_sentence
from workbench.people.headline import Headline, default_run_pair, stored_run_headline
from workbench.people.leaderboard import Leaderboard, leaderboard
from workbench.people.ratings import list_ratings, list_votes
from workbench.people.report_kit import (
    MEASURED_COLOURS,
    PRIMARY,
    Charts,
    generated_at,
    html_head,
    html_table,
    md_diff,
    md_table,
)
from workbench.people.verdict import QuantQuality, SetVerdict
from workbench.quality.diff_html import plain_html, prose_html
from workbench.quality.diffing import word_diff
from workbench.quality.divergence import DivergenceReport, load_report
from workbench.quality.facts import FactChange
from workbench.quality.noise_floor import Floor, floor_of, standing_sentence
from workbench.quality.published import MODEL, NOTE, PUBLISHED_COLUMN, SOURCE_TITLE, SOURCE_URL, published_for_row
from workbench.quality.summary import summarize
from workbench.runs import timing
from workbench.storage.rows import StoredResult, StoredRun
from workbench.storage.store import Store

Extras = dict[str, Any]


class UnknownRun(LookupError):
    """Asked to report on run ids the database does not have."""

    def __init__(self, missing: Sequence[int]) -> None:
        self.missing = list(missing)
        ids = ", ".join(str(i) for i in self.missing)
        super().__init__(f"no run with id {ids}" if len(self.missing) == 1 else f"no runs with ids {ids}")


@dataclass(frozen=True)
class ReportRun:
    """A stored run as a report reads it: the run, the noise floor's repeats of its reference (rows of
    reference_repeats) and its stored divergence measurements."""

    run: StoredRun
    reference_repeats: list[dict[str, Any]]
    divergence_reports: list[DivergenceReport]


def load_runs(store: Store, run_ids: Sequence[int]) -> list[ReportRun]:
    """The runs, in the order asked; UnknownRun naming every id that is missing."""
    if not run_ids:
        raise ValueError("name at least one run")
    stored = [store.get_run(int(i)) for i in run_ids]
    missing = [i for i, r in zip(run_ids, stored, strict=True) if r is None]
    if missing:
        raise UnknownRun(missing)
    return [ReportRun(run, store.reference_repeats(run.id),
                      [d for source in ("output", "text") if (d := load_report(store, run.id, source)) is not None])
            for run in stored if run is not None]


def _floor(rr: ReportRun, ref: StoredResult | None) -> Floor | None:
    """The run's noise floor (quality.noise_floor) from its stored repeats; None without repeats or reference."""
    if ref is None or not rr.reference_repeats:
        return None
    return floor_of(ref.text or "", rr.reference_repeats)


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _floor_line(floor: Floor) -> str:
    return f"Noise floor: {floor.sentence()} ({', '.join(floor.perturbations)})."


# ---- shared facts -----------------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _mib(n: Any) -> str:
    """A size cell: "-" for None or whatever an imported ladder holds there."""
    return format_bytes(n, mib_digits=1, missing="-")


def _gib(n: Any) -> str:
    return format_gib(n if _is_number(n) else 0, 0)


def _num(x: Any, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if _is_number(x) else "-"


def provenance_lines(ladder: dict[str, Any] | None) -> list[str]:
    """Where the run's files came from, worded as the app and CLI word it (Ladder.provenance_lines)."""
    if not ladder:
        return ["No ladder was recorded for this run."]
    provenance = ladder.get("provenance")
    provenance = provenance if isinstance(provenance, dict) else {}
    lines = Ladder(name=ladder.get("name") or "?", files=[], provenance=provenance).provenance_lines()
    return lines or ["No provenance was recorded for these files."]


def machine_line(machine: dict[str, Any] | None) -> str:
    """The machine the run was measured on, in one line (as hardware.Machine.one_line words it); what is inside the
    stored machine is as the run recorded it, so each field is checked."""
    if not machine:
        return "No machine was recorded for this run."
    cores = machine.get("physical_cores") or machine.get("logical_cores") or "?"
    ram = machine.get("ram_total_bytes")
    ram_s = f"{format_gib(ram, 0)} RAM" if _is_number(ram) and ram else "RAM unknown"
    gpu_list = machine.get("gpus")
    gpu_list = gpu_list if isinstance(gpu_list, list) else []
    gpus = "; ".join(f"{g.get('name', 'GPU')} {_gib(g.get('total_bytes'))}" for g in gpu_list if isinstance(g, dict))
    return f"{machine.get('cpu_model') or 'unknown CPU'} · {cores} cores · {ram_s} · {gpus or 'no GPU'}"


def _divergence(r: StoredResult) -> str:
    if r.is_reference:
        return "reference"
    if r.error:
        return "-"
    if r.first_divergence_token is None:
        return "identical" if r.metrics.get("identical_to_reference") else "-"
    return f"token {r.first_divergence_token}"


METRIC_COLUMNS: list[tuple[str, Callable[[StoredResult], str]]] = [
    ("label", lambda r: r.label + (" (reference)" if r.is_reference else "")),
    ("quant", lambda r: r.quant_type or "-"),
    ("size", lambda r: _mib(r.size_bytes)),
    ("bits/weight", lambda r: _num(r.bits_per_weight, 2)),
    ("load s", lambda r: _num(r.load_s, 2)),
    ("TTFT s", lambda r: _num(r.ttft_s, 3)),
    ("prefill tok/s", lambda r: _num(r.prefill_tok_s)),
    ("decode tok/s", lambda r: _num(r.decode_tok_s) + _spread(r)),
    ("tokens", lambda r: "-" if r.completion_tokens is None else str(r.completion_tokens)),
    ("stop", lambda r: r.stop_reason or "-"),
    ("peak RAM", lambda r: _mib(r.peak_rss_bytes)),
    ("VRAM", lambda r: _mib(r.gpu_mem_bytes)),
    ("diverges at", _divergence),
    ("measured", lambda r: _measured(r)),
]


def _measured(r: StoredResult) -> str:
    """Whether the speed figures were taken on a quiet machine (disturbance.py): quiet, DISTURBED, or -."""
    disturbed, _ = r.disturbance
    return "-" if disturbed is None else "DISTURBED" if disturbed else "quiet"


def _spread(r: StoredResult) -> str:
    """With several decode windows timed (runs.timing): the figure is their median; " (min-max, n=N)"."""
    s = timing.of_result(r)
    return "" if s is None or s["windows"] <= 1 else f" ({s['min']:.1f}-{s['max']:.1f}, n={s['n']})"


def _disturbance_note(r: StoredResult) -> str | None:
    disturbed, words = r.disturbance
    s = timing.of_result(r)
    tries = f" No quiet window came in {s['windows']} tries." if s is not None and not s["quiet"] else ""
    return f"Speed figures {words}.{tries} They can read lower than this machine gives." if disturbed else None


def _reference(run: StoredRun) -> StoredResult | None:
    return next((r for r in run.results if r.is_reference and not r.error), None)


def settings_rows(settings: dict[str, Any], versions: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(setting, value) rows of a run's or set run's settings, then the versions that made it (name → version,
    unknown ones left out)."""
    rows = [(str(k), json.dumps(v) if isinstance(v, (dict, list)) else str(v)) for k, v in settings.items()]
    rows += [(name, str(version)) for name, version in (versions or {}).items() if version]
    return rows


def _settings_rows(run: StoredRun) -> list[tuple[str, str]]:
    return settings_rows(run.settings, {"workbench": run.workbench_version, "llama.cpp": run.llama_cpp_version})


LADDER_FILE_HEADERS = ("label", "type", "size", "bits/weight", "reference", "file")


def ladder_file_rows(ladder: dict[str, Any] | None) -> list[list[Any]]:
    """One row per file of a stored ladder (LADDER_FILE_HEADERS); none when no files were recorded."""
    files = (ladder or {}).get("files")
    return [[f.get("label"), f.get("quant_type"), _mib(f.get("size_bytes")), _num(f.get("bits_per_weight"), 2),
             "yes" if f.get("reference") else "", f.get("path")]
            for f in (files if isinstance(files, list) else []) if isinstance(f, dict)]


# ---- divergence from the reference, with the figure published elsewhere beside each measured one ----------
DIVERGENCE_HEADERS = ("quantization", "type", "tokens", "mean KLD (measured)", "same top-1 % (measured)",
                      "PPL (measured)", f"{PUBLISHED_COLUMN} (published elsewhere)")
PUBLISHED_NOTE = (f"The last column is published elsewhere, not measured here: {SOURCE_TITLE}, the same quantization type "
                  f"on {MODEL} over Wikitext-2 (without an importance matrix where the source lists one); it is {NOTE}. "
                  "Compare rankings and ratios, not values. A type the source does not list has no published figure.")


def _fmt(x: Any, spec: str) -> str:
    return format(x, spec) if _is_number(x) else "-"


def divergence_rows(report: DivergenceReport) -> list[list[Any]]:
    """DIVERGENCE_HEADERS rows of one stored divergence measurement."""
    rows = []
    for r in report.results:
        s = r.summary
        figure = published_for_row(r.quant_type, r.is_reference, r.label)
        top1 = s.get("top1_agreement")
        top1_pct = 100 * top1 if isinstance(top1, (int, float)) else None
        rows.append([r.label + (" (reference)" if r.is_reference else ""), r.quant_type or "-",
                     s.get("n_tokens") if not r.error else "-",
                     r.error or _fmt(s.get("mean_kld"), ".4f"), _fmt(top1_pct, ".1f"),
                     _fmt(s.get("ppl"), ".2f"), "-" if figure is None else _fmt(figure.mean_kld, ".4f")])
    return rows


def _divergence_caption(report: DivergenceReport) -> str:
    what = ("the bundled reference text, scored in chunks like llama-perplexity --kl-divergence"
            if report.source == "text" else "the reference's output on this run's prompt")
    return (f"{report.n_tokens} tokens of {what}, teacher-forced through each quantization; KLD is "
            f"KL(reference || quantization) in nats, measured on this machine.")


def _title(runs: Sequence[StoredRun]) -> str:
    models = sorted({r.ladder_name or "unnamed model" for r in runs})
    ids = ", ".join(str(r.id) for r in runs)
    return f"Quant Workbench report — {' / '.join(models)} — run{'s' if len(runs) > 1 else ''} {ids}"


# ---- HTML -------------------------------------------------------------------------------------
def metrics_figure(run: StoredRun) -> Any | None:
    """Bars of file size, decode speed and peak RAM per contestant, in the app's palette (decode speed coloured
    by how it was timed: orange when other work competed); None when nothing was measured. Labels are untrusted:
    they reach the chart through chart_text, never as markup."""
    ok = [r for r in run.results if not r.error]
    if not ok:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = [chart_text(r.label) for r in ok]
    speed_colours = [MEASURED_COLOURS[_measured_word(r)] for r in ok]
    panels = [
        ("File size (MiB)", [None if r.size_bytes is None else r.size_bytes / 2**20 for r in ok], PRIMARY),
        ("Decode (tok/s)", [r.decode_tok_s for r in ok], speed_colours),
        ("Peak RAM of the worker (MiB)", [None if r.peak_rss_bytes is None else r.peak_rss_bytes / 2**20
                                          for r in ok], PRIMARY),
    ]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    spreads = [timing.of_result(r) for r in ok]
    whiskers = None  # decode: the range of the windows its median came from (runs.timing), where there were several
    if any(s is not None and s["windows"] > 1 for s in spreads):
        whiskers = go.bar.ErrorY(type="data", symmetric=False, array=[
            s["max"] - r.decode_tok_s if s and r.decode_tok_s is not None else 0 for s, r in zip(spreads, ok, strict=True)],
            arrayminus=[r.decode_tok_s - s["min"] if s and r.decode_tok_s is not None else 0
                        for s, r in zip(spreads, ok, strict=True)])
    for i, (name, values, colour) in enumerate(panels, 1):
        fig.add_trace(go.Bar(x=labels, y=values, name=name, showlegend=False, marker_color=colour,
                             error_y=whiskers if i == 2 else None), row=1, col=i)
    title = f"Run {run.id}: measured per quantization"
    if "disturbed" in (_measured_word(r) for r in ok):
        title += "<br><sup>orange: timed while other work competed (can read slower than this machine gives)</sup>"
    fig.update_layout(margin={"l": 40, "r": 20, "t": 90, "b": 40}, title=title, template="plotly_white")
    return fig


def _measured_word(r: StoredResult) -> str:
    disturbed, _ = r.disturbance
    return "not judged" if disturbed is None else "disturbed" if disturbed else "quiet"


def _extra_html(value: Any, charts: Charts) -> str:
    """Render one extra section's content: a DataFrame, plotly figure, rows, mapping or text; all escaped."""
    if hasattr(value, "to_plotly_json"):
        return charts.html(value)
    if hasattr(value, "to_html") and hasattr(value, "columns"):  # a pandas DataFrame
        return value.to_html(index=False, escape=True, border=0, na_rep="-")
    if isinstance(value, dict):
        return html_table(["", ""], [(k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                                 for k, v in value.items()])
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        headers = list(dict.fromkeys(k for row in value for k in row))
        return html_table(headers, [[row.get(h, "") for h in headers] for row in value])
    if isinstance(value, list):
        return "<ul>" + "".join(f"<li>{esc(v)}</li>" for v in value) + "</ul>"
    return f'<pre class="wb-text">{esc(value)}</pre>'


# ---- the answer first: one line per quantization, then what it means for the decision ---------------------
def conclusion_lines(run: StoredRun) -> list[tuple[str, str]]:
    """(label, sentence) per contestant: its summary against the reference (quality.summary), the reference
    named as such, a failure as what happened."""
    ref = _reference(run)
    out = []
    for r in run.results:
        if r.error:
            out.append((r.label, f"no answer: {r.error}"))
        elif ref is None:
            out.append((r.label, "answered (no reference answer to compare with)"))
        elif r is ref:
            out.append((r.label, "the reference: the answer the others are compared with"))
        else:
            out.append((r.label, summarize(ref.text or "", r.text or "").sentence))
    return out


def decision_lines(run: StoredRun) -> list[str]:
    """What each answer costs and gives against the reference: file size and decode speed as ratios, measured
    here (a speed timed while other work competed says so)."""
    ref = _reference(run)
    if ref is None:
        return []
    lines = []
    for r in run.results:
        if r is ref or r.error:
            continue
        parts = []
        if r.size_bytes is not None and ref.size_bytes:
            parts.append(f"{r.size_bytes / ref.size_bytes:.0%} of the reference's file size")
        if r.decode_tok_s is not None and ref.decode_tok_s:
            busy = "disturbed" in (_measured_word(r), _measured_word(ref))
            parts.append(f"{r.decode_tok_s / ref.decode_tok_s:.2g}× its decode speed"
                         + (" (timed while other work competed: treat the speed as rough)" if busy else ""))
        if parts:
            lines.append(f"{r.label}: {', '.join(parts)}, measured on this machine.")
    return lines


def _conclusion_html(run: StoredRun) -> str:
    ref = _reference(run)
    against = f", against the reference, {esc(ref.label)}" if ref is not None else ""
    items = "".join(f"<li><strong>{esc(label)}</strong>: {esc(sentence)}</li>" for label, sentence in conclusion_lines(run))
    parts = [f'<p class="wb-lede">On this prompt{against}:</p><ul class="wb-answer">{items}</ul>']
    if decision := decision_lines(run):
        parts.append("<h3>What it means for the decision</h3><ul>"
                     + "".join(f"<li>{esc(x)}</li>" for x in decision) + "</ul>"
                     '<p class="wb-muted">A smaller file that gives the same answer is the cheaper choice; a changed '
                     "fact or a different answer is the risk to weigh against it. One prompt is one sample: a prompt "
                     "set tells more.</p>")
    return "".join(parts)


# ---- the evidence ---------------------------------------------------------------------------------------------
def _answers_html(rr: ReportRun) -> str:
    ref = _reference(rr.run)
    parts = ["<h3>The answers</h3>"]
    if ref is None:
        parts.append('<p class="wb-muted">No reference answer to compare with: answers are shown as they are.</p>')
    else:
        parts.append(f'<p class="wb-muted wb-key">Each answer as written; <mark class="wb-chg">highlighted</mark> words differ '
                     f"from the reference ({esc(ref.label)}). Hover a highlight to see what the reference had.</p>")
    floor = _floor(rr, ref)
    if floor is not None:
        parts.append(f'<p class="wb-summary">{esc(_floor_line(floor))}</p>')
    for r in rr.run.results:
        parts.append('<div class="wb-output">')
        parts.append(f"<h4>{esc(r.label)}{' (reference)' if r is ref else ''}</h4>")
        if r.error:
            parts.append(f'<p class="wb-error">{esc(r.error)}</p>')
        elif ref is None or r is ref:
            parts.append(plain_html(r.text or "", prose=True))
        else:
            d = word_diff(ref.text or "", r.text or "")
            column = summarize(ref.text or "", r.text or "", diff=d)
            parts.append(f'<p class="wb-summary"><strong>{esc(column.sentence)}</strong></p>')
            if floor is not None:
                parts.append(f'<p class="wb-muted">{esc(_upper_first(standing_sentence(column, floor)))}</p>')
            parts.append(plain_html(r.text or "", prose=True) if d.identical else prose_html(d))
            parts.append(facts_html(column.facts))
        if r.fallback:
            parts.append(f'<p class="wb-muted">Note: {esc(r.fallback)}</p>')
        if note := _disturbance_note(r):
            parts.append(f'<p class="wb-error">{esc(note)}</p>')
        parts.append("</div>")
    return "".join(parts)


def _run_html(rr: ReportRun, charts: Charts) -> str:
    """A run's conclusion and evidence (its method and provenance are in the page's last section)."""
    run = rr.run
    parts = [f'<section id="run-{run.id}">',
             f"<h2>{esc(run.ladder_name or 'unnamed model')}: what changed between quantizations</h2>",
             _conclusion_html(run)]
    if about := report_note(run.ladder):  # the embedded demo: why its figures look odd
        parts.append(f'<p class="wb-muted"><strong>About this model:</strong> {esc(about)}</p>')
    if run.system_prompt:
        parts.append(f'<h3>System prompt</h3>{plain_html(run.system_prompt, prose=True)}')
    parts.append(f'<h3>The prompt</h3>{plain_html(run.prompt or "", prose=True)}')
    parts.append(_answers_html(rr))
    parts.append("<h3>Speed and memory, measured</h3>")
    fig = metrics_figure(run)
    if fig is not None:
        parts.append(charts.html(fig))
    parts.append(html_table([h for h, _ in METRIC_COLUMNS], [[fn(r) for _, fn in METRIC_COLUMNS] for r in run.results]))
    for report in rr.divergence_reports:
        parts.append("<h3>Divergence from the reference</h3>")
        parts.append(f"<p>{esc(ranking_sentence(report))}</p>")
        parts.append(f'<p class="wb-muted">{esc(_divergence_caption(report))}</p>')
        parts.append(html_table(DIVERGENCE_HEADERS, divergence_rows(report)))
        parts.append(f'<p class="wb-muted">{esc(PUBLISHED_NOTE)} Source: <a href="{esc(SOURCE_URL)}">'
                     f"{esc(SOURCE_URL)}</a></p>")
    parts.append("</section>")
    return "".join(parts)


# ---- method and provenance, last ------------------------------------------------------------------------------
SETTING_WORDS = {
    "max_tokens": "Most tokens per answer", "temperature": "Temperature (0: always the most likely word)",
    "top_p": "Top-p (share of likely words sampled from)", "seed": "Random seed", "n_ctx": "Context size (tokens)",
    "n_threads": "CPU threads", "n_gpu_layers": "Layers on the GPU", "gpu_offload": "GPU offload",
    "system_prompt": "System prompt", "remote_concurrent": "Endpoints answered at the same time",
    "display": "What the screen showed while timing",
}


def plain_settings_rows(run: StoredRun) -> list[tuple[str, str]]:
    """The run's settings named in plain words, the stored name after them (to reproduce the run), then versions."""
    return [(f"{SETTING_WORDS[k]} ({k})" if k in SETTING_WORDS else k, v) for k, v in _settings_rows(run)]


def _method_html(run: StoredRun) -> str:
    ladder = run.ladder or {}
    parts = [f"<h3>Run {esc(run.id)} · {esc(run.ladder_name or 'unnamed model')}</h3>",
             f'<p class="wb-muted">{esc(run.created_at)} · {esc(run.kind)} · status '
             f'{esc(run.status)}{" · category " + esc(run.category) if run.category else ""}. '
             "Contestants ran one after another on this machine.</p>",
             "<h4>Where the files came from</h4><ul>"
             + "".join(f"<li>{esc(x)}</li>" for x in provenance_lines(ladder)) + "</ul>"]
    if files := ladder_file_rows(ladder):
        parts.append(html_table(LADDER_FILE_HEADERS, files))
    parts.append(f"<h4>Machine</h4><p>{esc(machine_line(run.machine))}</p>")
    parts.append("<h4>Settings</h4>" + html_table(["setting", "value"], plain_settings_rows(run)))
    parts.append('<p class="wb-muted">How each figure was measured: ' +
                 "; ".join(esc(v) for v in METRIC_LABELS.values()) + ".</p>")
    return "".join(parts)


def facts_html(facts: Sequence[FactChange]) -> str:
    """Changed facts as a list (model text, so escaped); nothing when no fact changed."""
    if not facts:
        return ""
    items = "".join(f"<li>{esc(f.kind)}: {esc(f.describe())}</li>" for f in facts)
    return (f'<p class="wb-muted">Changed facts (numbers, dates, times, amounts and names that differ from the '
            f'reference):</p><ul class="wb-facts">{items}</ul>')


def _ratings_html(board: Leaderboard, ratings: list[dict[str, Any]], votes: list[dict[str, Any]]) -> str:
    parts = ['<section id="ratings"><h2>Ratings</h2>']
    if board.empty:
        parts.append("<p>No ratings or votes for these runs yet.</p></section>")
        return "".join(parts)
    from_sets = f" ({board.n_set_votes} of them from blind set sessions)" if board.n_set_votes else ""
    counts = (f'{counted(board.n_ratings, "rating")}, {counted(board.n_votes, "pairwise vote")}{from_sets} and '
              f'{counted(board.n_rating_pairs, "comparison")} implied by ratings (one rater, two outputs of one run)')
    parts.append(f'<p class="wb-muted">{counts}. Mean ratings carry a 95% t-interval; Bradley–Terry strengths '
                 "(1 = average) a parametric-bootstrap 95% interval.</p>")
    parts.append(board.to_frame().to_html(index=False, escape=True, border=0, na_rep="-"))
    parts.append("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in board.sentences + board.notes) + "</ul>")
    if ratings:
        parts.append("<h3>Every rating</h3>")
        parts.append(html_table(["run", "output", "score", "rater", "mode", "when", "comment"],
                            [[r["run_id"], r["label"], r["score"], r.get("rater") or "-", r["mode"], r["created_at"],
                              r.get("comment") or ""] for r in ratings]))
    if votes:
        parts.append("<h3>Every pairwise vote</h3>")
        parts.append(html_table(["run", "A", "B", "winner", "rater", "mode", "when", "comment"],
                            [[v["run_id"], v["label_a"], v["label_b"], v["winner"], v.get("rater") or "-", v["mode"],
                              v["created_at"], v.get("comment") or ""] for v in votes]))
    parts.append("</section>")
    return "".join(parts)


RUN_CSS = """
.wb-lede { font-size: 1.05rem; margin-bottom: .2rem; }
ul.wb-answer { font-size: 1.05rem; border-left: 4px solid #3b5bdb; padding: .2rem 0 .2rem 2rem; margin-top: 0; }
.wb-output .wb-diff.wb-prose { background: #f8f9fa; }
.wb-key mark.wb-chg { background: rgba(250,176,5,0.24); color: inherit; border-radius: 2px; }
"""


def run_answers(store: Store, runs: Sequence[StoredRun]) -> list[tuple[StoredRun, str, Headline]]:
    """(run, "Q4_K_M vs Q8_0", headline) of each run with two outputs to compare: the answer a report opens with."""
    return [(run, f"{pair[0]} vs {pair[1]}", stored_run_headline(store, run, *pair))
            for run in runs if (pair := default_run_pair(run)) is not None]


def _headlines_html(store: Store, runs: Sequence[StoredRun]) -> str:
    """The answer first: each run's headline and what it means, before the runs' evidence (docs/headlines.md)."""
    answers = run_answers(store, runs)
    if not answers:
        return ""
    items = "".join(f"<li><strong>Run {run.id}, {esc(pair)}:</strong> {esc(h.sentence)} <em>{esc(h.advice)}</em>"
                    "</li>" for run, pair, h in answers)
    return (f'<section id="answer"><h2>The answer</h2><ul class="wb-verdict">{items}</ul>'
            '<p class="wb-muted">Built from changed facts, the reference\'s own variation (noise floor), divergence and '
            "blind votes (docs/headlines.md); each run's evidence follows.</p></section>")


def _headlines_markdown(store: Store, runs: Sequence[StoredRun]) -> list[str]:
    answers = run_answers(store, runs)
    if not answers:
        return []
    return (["## The answer", ""] + [f"- **Run {run.id}, {md_cell(pair)}:** {md_cell(h.sentence)} "
                                     f"_{md_cell(h.advice)}_" for run, pair, h in answers]
            + ["", "Built from changed facts, the reference's own variation (noise floor), divergence and blind votes "
                   "(docs/headlines.md); each run's evidence follows.", ""])


def report_html(store: Store, run_ids: Sequence[int], *, extras: Extras | None = None, title: str | None = None,
                n_boot: int = 500) -> str:
    """One self-contained HTML page (str) for these runs; `extras` maps a section title to its content."""
    loaded = load_runs(store, run_ids)
    runs = [rr.run for rr in loaded]
    ids = [r.id for r in runs]
    title = title or _title(runs)
    charts = Charts()
    from workbench import __version__

    parts = html_head(title, "Measured on this machine, not estimated. How, with which files and settings: the last "
                             "section.", RUN_CSS)


    parts = html_head(title, f"Generated {generated_at()} by Quant Workbench {__version__}. Figures were measured "
                             "on the machine named in each run, not estimated. Contestants ran one after another.")
    parts.append(_headlines_html(store, runs))
    parts += [_run_html(rr, charts) for rr in loaded]
    for name, value in (extras or {}).items():
        parts.append(f"<section><h2>{esc(name)}</h2>{_extra_html(value, charts)}</section>")
    ratings, votes = list_ratings(store, run_ids=ids), list_votes(store, run_ids=ids)
    parts.append(_ratings_html(leaderboard(store, run_ids=ids, n_boot=n_boot), ratings, votes))
    parts.append('<section id="method"><h2>Method and provenance</h2>'
                 f'<p class="wb-muted">Generated {esc(generated_at())} by Quant Workbench {esc(__version__)}. '
                 "Figures were measured on the machine named below, not estimated.</p>"
                 + "".join(_method_html(run) for run in runs) + "</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---- Markdown ---------------------------------------------------------------------------------
def _md_extra(value: Any) -> str:
    if hasattr(value, "to_plotly_json"):
        return "_(chart: see the HTML report)_"
    if hasattr(value, "columns") and hasattr(value, "itertuples"):
        return md_table([str(c) for c in value.columns], [list(row) for row in value.itertuples(index=False)])
    if isinstance(value, dict):
        return md_table(["", ""], list(value.items()))
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        headers = list(dict.fromkeys(k for row in value for k in row))
        return md_table(headers, [[row.get(h, "") for h in headers] for row in value])
    if isinstance(value, list):
        return "\n".join(f"- {md_cell(v)}" for v in value)
    return fence(str(value))


def _run_markdown(rr: ReportRun) -> list[str]:
    """A run's conclusion and evidence in Markdown (its method and provenance go in the last section)."""
    run = rr.run
    ref = _reference(run)
    against = f", against the reference, {md_cell(ref.label)}" if ref is not None else ""
    out = [f"## {md_cell(run.ladder_name or 'unnamed model')}: what changed between quantizations", "",
           f"On this prompt{against}:", ""]
    out += [f"- **{md_cell(label)}**: {md_cell(sentence)}" for label, sentence in conclusion_lines(run)] + [""]
    if decision := decision_lines(run):
        out += ["### What it means for the decision", "", *(f"- {md_cell(x)}" for x in decision), ""]
    if about := report_note(run.ladder):  # the embedded demo: why its figures look odd
        out += [f"_About this model: {md_cell(about)}_", ""]
    if run.system_prompt:
        out += ["### System prompt", "", fence(run.system_prompt), ""]
    out += ["### The prompt", "", fence(run.prompt or ""), "", "### The answers", ""]
    if ref is not None:
        out += [f"Each answer against the reference ({md_cell(ref.label)}): `[-reference only-]`, "
                "`{+this answer only+}`.", ""]
    floor = _floor(rr, ref)
    if floor is not None:
        out += [md_cell(_floor_line(floor)), ""]
    for r in run.results:
        out += [f"#### {md_cell(r.label)}{' (reference)' if r is ref else ''}", ""]
        if note := _disturbance_note(r):
            out += [f"**{md_cell(note)}**", ""]
        if r.error:
            out += [f"Error: {md_cell(r.error)}", ""]
        elif ref is None or r is ref:
            out += [fence(r.text or ""), ""]
        else:
            d = word_diff(ref.text or "", r.text or "")
            column = summarize(ref.text or "", r.text or "", diff=d)
            out += [f"**{md_cell(column.sentence)}**", ""]
            if floor is not None:
                out += [md_cell(_upper_first(standing_sentence(column, floor))), ""]
            out += [md_diff(d), ""]
            if column.facts:
                out += ["Changed facts:", ""] + [f"- {md_cell(f.kind)}: {md_cell(f.describe())}"
                                                 for f in column.facts] + [""]
    out += ["### Speed and memory, measured", "",
            md_table([h for h, _ in METRIC_COLUMNS], [[fn(r) for _, fn in METRIC_COLUMNS] for r in run.results]), ""]
    for report in rr.divergence_reports:
        out += ["### Divergence from the reference", "", md_cell(ranking_sentence(report)), "",
                md_cell(_divergence_caption(report)), "",
                md_table(DIVERGENCE_HEADERS, divergence_rows(report)), "",
                f"{md_cell(PUBLISHED_NOTE)} Source: <{SOURCE_URL}>", ""]
    return out


def _method_markdown(run: StoredRun) -> list[str]:
    out = [f"### Run {run.id} · {md_cell(run.ladder_name or 'unnamed model')}", "",
           f"{md_cell(run.created_at)} · {md_cell(run.kind)} · status {md_cell(run.status)}"
           + (f" · category {md_cell(run.category)}" if run.category else "")
           + ". Contestants ran one after another on this machine.", "", "#### Where the files came from", ""]
    out += [f"- {md_cell(x)}" for x in provenance_lines(run.ladder)] + [""]
    if files := ladder_file_rows(run.ladder):
        out += [md_table(LADDER_FILE_HEADERS, files), ""]
    return out + ["#### Machine", "", md_cell(machine_line(run.machine)), "", "#### Settings", "",
                  md_table(["setting", "value"], plain_settings_rows(run)), "",
                  "How each figure was measured: " + "; ".join(md_cell(v) for v in METRIC_LABELS.values()) + ".", ""]


def report_markdown(store: Store, run_ids: Sequence[int], *, extras: Extras | None = None, title: str | None = None,
                    n_boot: int = 500) -> str:
    """The same report as Markdown (no charts), in the same order; model text sits in code fences, table cells are
    escaped."""
    loaded = load_runs(store, run_ids)
    runs = [rr.run for rr in loaded]
    ids = [r.id for r in runs]
    out = [f"# {md_cell(title or _title(runs))}", "",
           "_Measured on this machine, not estimated. How, with which files and settings: the last section._", ""]
    out += _headlines_markdown(store, runs)
    for rr in loaded:
        out += _run_markdown(rr)
    for name, value in (extras or {}).items():
        out += [f"## {md_cell(name)}", "", _md_extra(value), ""]
    board = leaderboard(store, run_ids=ids, n_boot=n_boot)
    out += ["## Ratings", ""]
    if board.empty:
        out += ["No ratings or votes for these runs yet.", ""]
    else:
        frame = board.to_frame()
        out += [f"{counted(board.n_ratings, 'rating')}, {counted(board.n_votes, 'pairwise vote')}, "
                f"{counted(board.n_rating_pairs, 'comparison')} implied by ratings.", "", _md_extra(frame), ""]
        out += [f"- {md_cell(s)}" for s in board.sentences + board.notes] + [""]
    from workbench import __version__

    out += ["## Method and provenance", "", f"Generated {generated_at()} by Quant Workbench {md_cell(__version__)}. "
            "Figures were measured on the machine named below, not estimated.", ""]
    for run in runs:
        out += _method_markdown(run)
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
QUALITY_HEADERS = ("quantization", "prompts", "identical", "same answer", "different answer", "changed facts",
                   "prompts with changed facts")
_TEST_NOTE = ("Exact two-sided sign test on the decided votes; 95% Wilson interval of the share preferring the "
              "candidate.")


def quality_rows(quality: Sequence[QuantQuality]) -> list[list[Any]]:
    """QUALITY_HEADERS rows: each quantization's summary groups and changed facts over a set."""
    return [[q.label, q.prompts, q.identical, q.same_answer, q.different_answer, q.facts_changed,
             q.prompts_with_changed_facts] for q in quality]


def verdict_html(sv: SetVerdict, level: int = 2) -> str:
    """The verdict's heading (reference vs candidate) and the paragraph to paste, escaped, without the table."""
    v = sv.verdict
    return (f"<h{level}>Verdict: {esc(v.reference)} vs {esc(v.candidate)}</h{level}>"
            f'<p class="wb-verdict">{esc(sv.paragraph)}</p>'
            f'<p class="wb-muted">{esc(_TEST_NOTE)}</p>')


def verdict_markdown(sv: SetVerdict, level: int = 2) -> str:
    """The same in Markdown: the paragraph as a quote with Markdown's special characters escaped."""
    v = sv.verdict
    text = re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", " ".join(sv.paragraph.splitlines()))
    return "\n".join([f"{'#' * level} Verdict: {md_cell(v.reference)} vs {md_cell(v.candidate)}", "", f"> {text}",
                      "", f"_{_TEST_NOTE}_"])


def verdict_section_html(sv: SetVerdict) -> str:
    """The set's verdict paragraph and its per-quantization facts and summary counts, as an escaped HTML section."""
    v = sv.verdict
    return (f"<section>{verdict_html(sv)}{html_table(QUALITY_HEADERS, quality_rows(sv.quality))}"
            f'<p class="wb-muted">Summary and changed facts are each output against '
            f"{esc(v.reference)}'s, per prompt.</p></section>")


def verdict_section_markdown(sv: SetVerdict) -> str:
    """The same section in Markdown: the paragraph with Markdown's special characters escaped, then the table."""
    return "\n".join([verdict_markdown(sv), "", md_table(QUALITY_HEADERS, quality_rows(sv.quality)), "",
                      "_Summary and changed facts are each output against the reference's, per prompt._"])
