"""The stakeholder report: the recommendation, its chart, the per-target fit table and the evidence behind it, as
one self-contained HTML file (inline SVG, no scripts, works offline) or Markdown.

It reads top-down for a stakeholder: the answer in one sentence and the rule that chose it, then what it means
for the decision (memory and speed, why, what would change it), then the evidence (chart and tables), and the
method, settings, target sources and file provenance last: nothing technical stands before the verdict.

Every figure says what it is: predicted (fit, memory), estimate (speed on a target), measured (here), or
published elsewhere (another model's KLD). Labels, ladder names, target names and sources come from files and
the database: every one is escaped (people.report's esc / md_cell).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workbench.core.escaping import esc, md_cell
from workbench.core.text_units import bytes_in_words
from workbench.decide.chart import ChartPoint, mark_front, svg_chart
from workbench.decide.recommend import PREFER_WORDS, Facts, Recommendation, bar_words, ctx_words, kld_words
from workbench.decide.study import Study
from workbench.decide.targets import the
from workbench.models.demo_note import demo_note
from workbench.people.report import provenance_lines
from workbench.people.report_kit import generated_at, html_head, html_table, md_table

CSS = """
.wb-pick { font-size: 1.15rem; border-left: 4px solid #1a7f37; padding: .3rem 0 .3rem .8rem; background: #f0fff4; }
.wb-none { font-size: 1.15rem; border-left: 4px solid #9a6700; padding: .3rem 0 .3rem .8rem; background: #fff8c5; }
.wb-chart svg { max-width: 100%; height: auto; }
.wb-rule { color: #424a53; }
"""
KIND_NOTE = ("Fit and memory are predicted from each GGUF header; speed on a target is an estimate; divergence, eval "
             "pass rates, votes and speeds here are measured on this machine; the LLaMA-3-8B KLD is published "
             "elsewhere, for another model, for context only.")


#: One sentence under the chart, on the page and in the report: how to read it, terms explained.
CHART_CAPTION = ("Each point is one option: further right needs more memory on the target, higher loses more quality "
                 "(mean KLD: how far its next-token probabilities drift from the reference's); the colour is the "
                 "estimated decode speed, the ring marks the pick, the step line is the Pareto front (the options no "
                 "other option beats on both memory and quality), and hollow points do not fit the target.")


def _sentence(words: str) -> str:
    return words[:1].upper() + words[1:] + ("" if words.endswith(".") else ".")


def chart_points(facts: Sequence[Facts], recommended: str | None) -> tuple[list[ChartPoint], list[str]]:
    """One point per candidate with a measured quality figure; the labels of those left off (no divergence yet)."""
    points, left_off = [], []
    for f in facts:
        if f.kld is None:
            left_off.append(f.label)
            continue
        points.append(ChartPoint(f.label, f.needed_bytes, f.kld, f.est_tok_s, f.verdict_code != "no_fit", False,
                                 f.label == recommended))
    # the front is of what fits the target: a smaller file that does not fit dominates nothing there
    return mark_front([p for p in points if p.fits]) + [p for p in points if not p.fits], left_off


def chart_svg(s: Study) -> tuple[str | None, list[str]]:
    """The quality-vs-memory chart for the chosen target (None when no candidate has a measured quality figure)."""
    rec = s.recommendation.recommended
    points, left_off = chart_points(s.facts, rec.label if rec else None)
    if not points:
        return None, left_off
    c = s.constraints
    svg = svg_chart(points, x_title=f"Predicted memory on {the(c.target)} at {ctx_words(c.n_ctx)} (GiB, predicted)",
                    y_title="Mean KLD vs the reference (measured)",
                    title=f"Quality loss against memory: {s.ladder.name} on {the(c.target)}")
    return svg, left_off


def _fit_cell(f: Facts) -> str:
    speed = "" if f.est_tok_s is None else f", est. {f.est_tok_s:.1f} tok/s"
    return f"{f.verdict}: {bytes_in_words(f.needed_bytes)}{speed}"


def target_rows(s: Study) -> tuple[list[str], list[list[Any]]]:
    """Candidates down, targets across: verdict, predicted memory and estimated speed on each."""
    headers = ["candidate", *(p.name for p in s.profiles)]
    rows = [[f.label, *(_fit_cell(s.by_target[p.name][i]) for p in s.profiles)] for i, f in enumerate(s.facts)]
    return headers, rows


EVIDENCE_HEADERS = ["candidate", "mean KLD (measured)", "how", "KLD, LLaMA-3-8B (published)", "top-1 agreement",
                    "your prompts vs the noise floor (measured)", "evals (measured)", "blind votes vs reference",
                    "ratings", "decode here (measured)"]


def published_cell(f: Facts) -> str:
    """Another model's KLD for the same type, saying when the source's file was made with a matrix (or not, against
    the file's own kind): quality.published.PublishedFigure.kld_cell."""
    figure = (f.detail or {}).get("published") if isinstance(f.detail, dict) else None
    if figure is not None:
        return str(figure.kld_cell())
    return "-" if f.published_kld is None else f"{f.published_kld:.4f}"


def evidence_rows(s: Study) -> list[list[Any]]:
    rows = []
    for f in s.facts:
        e = f.evidence
        d, ev, v, here = e.divergence, e.evals, e.verdict, e.speed_here
        rows.append([
            f.label,
            "-" if d is None else kld_words(d.mean_kld),
            "-" if d is None else d.how,
            published_cell(f),
            "-" if d is None or d.top1_agreement is None else f"{d.top1_agreement:.1%}",
            "-" if e.prompts is None else e.prompts.words().removeprefix("on your prompts its answers "),
            "-" if ev is None else f"{ev.passed}/{ev.cases} ({ev.pack}, run #{ev.run_id})",
            "-" if v is None or not v.votes else
            f"{v.prefer_reference} prefer {v.reference}, {v.prefer_candidate} prefer it, {v.ties} ties ({v.outcome})",
            "-" if e.rating_mean is None else f"{e.rating_mean:.2f} / 5 ({e.n_ratings})",
            "-" if here is None else f"{here.median_tok_s:.1f} tok/s median, {here.low_tok_s:.1f}–{here.high_tok_s:.1f} ({here.n} runs)",
        ])
    return rows


IMPORTED_HEADERS = ["candidate", "imported figures (not used for the decision)", "where they came from"]


def imported_rows(s: Study) -> list[list[Any]]:
    """Figures imported from other machines, one row per candidate and origin, labelled: shown, never decisive."""
    return [[f.label, i.figures(), i.label] for f in s.facts for i in f.evidence.imported]


def target_profile_rows(s: Study) -> list[list[Any]]:
    return [[p.name, bytes_in_words(p.ram_bytes), bytes_in_words(p.vram_bytes) if p.vram_bytes else "none", f"{p.ram_bandwidth_gbs:g} GB/s",
             "-" if not p.vram_bandwidth_gbs else f"{p.vram_bandwidth_gbs:g} GB/s", p.cores,
             "; ".join(f"{k}: {v}" for k, v in p.sources.items())] for p in s.profiles]


PROFILE_HEADERS = ["target", "RAM", "VRAM", "RAM bandwidth", "VRAM bandwidth", "cores", "sources and assumptions"]


def _constraint_rows(s: Study) -> list[list[Any]]:
    c = s.constraints
    return [["Target machine", c.target], ["Context needed", f"{c.n_ctx:,} tokens"],
            ["Minimum decode speed", "none" if c.min_tok_s is None else f"{c.min_tok_s:g} tok/s (estimated on the target)"],
            ["Quality holds up to a mean KLD of", "no bar" if c.max_kld is None else f"{bar_words(c.max_kld)} (measured)"],
            ["Pick", PREFER_WORDS[c.prefer]]]


def calibration_line(s: Study) -> str:
    cal = s.calibration
    if cal.efficiency is None:
        return f"Speed estimates are not calibrated on this machine yet ({cal.source})."
    return (f"Speed estimates are calibrated by the ratio measured on this machine: {cal.efficiency:.0%} of "
            f"{cal.bandwidth_gbs or 0:.1f} GB/s measured memory bandwidth, from {cal.samples} run(s) ({cal.source}).")


def title_of(s: Study) -> str:
    return f"Which quantization to ship: {s.ladder.name} on {the(s.constraints.target)}"


def left_out_lines(s: Study) -> list[str]:
    """One line per ladder file that is not a candidate because its header could not be read: no verdict for it."""
    return [f"{label} is left out, with no verdict: {how}" for label, how in s.unreadable]


def _why(rec: Recommendation) -> list[str]:
    """The reasons under "What it means": the first repeats the answer's own words when nothing was picked."""
    return rec.reasons if rec.recommended else rec.reasons[1:]


def report_html(s: Study) -> str:
    rec = s.recommendation
    out = html_head(title_of(s), f"Quant Workbench recommendation, generated {generated_at()}.", CSS)
    out.append(f'<p class="{"wb-pick" if rec.recommended else "wb-none"}">{esc(rec.answer)}</p>')
    out.append(f'<p class="wb-rule">{esc(rec.rule)}</p>')
    out += [f'<p class="wb-none">{esc(line)}</p>' for line in left_out_lines(s)]
    out.append("<h2>What it means</h2>")
    if rec.meaning:
        out.append(f"<p>{esc(rec.meaning)}</p>")
    if note := demo_note(s.ladder):  # the embedded demo: why its figures look odd
        out.append(f'<p class="wb-muted"><strong>About this model:</strong> {esc(note.text())}</p>')
    out.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in _why(rec)) + "</ul>")
    if rec.would_change:
        out.append("<h3>What would change the pick</h3><ul>" + "".join(f"<li>{esc(r)}</li>" for r in rec.would_change) + "</ul>")
    if rec.actions:
        out.append("<h3>Evidence still missing</h3><ul>" + "".join(f"<li>{esc(_sentence(a.words))}</li>" for a in rec.actions) + "</ul>")
    svg, left_off = chart_svg(s)
    out.append("<h2>Quality against memory</h2>")
    if svg is not None:
        out.append(f'<div class="wb-chart">{svg}</div>')  # svg_chart escapes every label it writes
        out.append(f'<p class="wb-muted">{esc(CHART_CAPTION)}</p>')
    if left_off:
        out.append(f'<p class="wb-muted">Not on the chart (no divergence measured yet): {esc(", ".join(left_off))}.</p>')
    headers, rows = target_rows(s)
    out.append(f"<h2>Fit per target at {esc(ctx_words(s.constraints.n_ctx))} (predicted; speed estimated)</h2>"
               + html_table(headers, rows) + f'<p class="wb-muted">{esc(calibration_line(s))}</p>')
    out.append("<h2>Evidence</h2>" + html_table(EVIDENCE_HEADERS, evidence_rows(s)))
    if imported_rows(s):
        out.append("<h2>Imported evidence</h2>" + html_table(IMPORTED_HEADERS, imported_rows(s)))
    out.append("<h2>How this was decided</h2>" + html_table(["choice", "value"], _constraint_rows(s))
               + f'<p class="wb-muted">{esc(KIND_NOTE)}</p>')
    out.append("<h2>Target machines</h2>" + html_table(PROFILE_HEADERS, target_profile_rows(s)))
    lines = provenance_lines(s.ladder.to_dict())
    if lines:
        out.append("<h2>Files</h2><ul>" + "".join(f"<li>{esc(x)}</li>" for x in lines) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)


def report_markdown(s: Study) -> str:
    rec = s.recommendation
    out = [f"# {md_cell(title_of(s))}", "", f"**{md_cell(rec.answer)}**", "", md_cell(rec.rule), ""]
    out += [x for line in left_out_lines(s) for x in (f"**{md_cell(line)}**", "")]
    out += ["## What it means", ""]
    if rec.meaning:
        out += [md_cell(rec.meaning), ""]
    if note := demo_note(s.ladder):  # the embedded demo: why its figures look odd
        out += [f"_About this model: {md_cell(note.text())}_", ""]
    out += [f"- {md_cell(r)}" for r in _why(rec)]
    if rec.would_change:
        out += ["", "### What would change the pick", "", *(f"- {md_cell(r)}" for r in rec.would_change)]
    if rec.actions:
        out += ["", "### Evidence still missing", "", *(f"- {md_cell(_sentence(a.words))}" for a in rec.actions)]
    headers, rows = target_rows(s)
    out += ["", f"## Fit per target at {ctx_words(s.constraints.n_ctx)} (predicted; speed estimated)", "",
            md_table(headers, rows), "", md_cell(calibration_line(s))]
    out += ["", "## Evidence", "", md_table(EVIDENCE_HEADERS, evidence_rows(s))]
    if imported_rows(s):
        out += ["", "## Imported evidence", "", md_table(IMPORTED_HEADERS, imported_rows(s))]
    out += ["", "## How this was decided", "", md_table(["choice", "value"], _constraint_rows(s)), "", md_cell(KIND_NOTE)]
    out += ["", "## Target machines", "", md_table(PROFILE_HEADERS, target_profile_rows(s))]
    lines = provenance_lines(s.ladder.to_dict())
    if lines:
        out += ["", "## Files", "", *(f"- {md_cell(x)}" for x in lines)]
    out += ["", f"_Quant Workbench recommendation, generated {generated_at()}._"]
    return "\n".join(out) + "\n"
