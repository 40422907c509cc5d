"""A report of a whole set run to hand on: one self-contained offline HTML file, or Markdown.

"Is Q4 good enough for our prompts?" ends in a file a product person gives a stakeholder. It reads top-down for
them: the answer first, the evidence next, the method and provenance last. It is about one pair (candidate vs
baseline: `verdict.default_set_pair` unless asked, e.g. "Q4_K_M vs Q8_0"), and every measure reads against that
baseline. In order:

1. the answer: the pair's headline (people.headline: one sentence from changed facts, noise floor and blind
   votes, saying where they disagree), what it means for the decision, its evidence in a few lines, and every
   other quantization's headline against the same baseline;
2. the verdict: for each quantization people judged against the baseline, the paragraph of
   `verdict.set_verdicts` (the words to paste, with their uncertainty), or plainly that nobody has judged yet;
3. machine measures per quantization (`verdict.QuantQuality`): identical / same answer / different answer and
   changed facts, each output measured against the baseline's output;
4. the noise floor, when the set run repeated its reference (quality.noise_floor, docs/noise-floor.md): how far the
   reference strays from itself (always the reference's, whatever the baseline), and per quantization on how many
   prompts it went beyond that;
5. each prompt: a table of every quantization's one-line summary (quality.summary) and changed facts, then per
   prompt (a collapsible <details> in HTML) every output as readable prose with its differences from the
   baseline highlighted (diff_html.prose_html) and the changed facts listed ("20 minutes → 2 minutes");
6. method and provenance: the set run (name and id, when, status), the ladder and where its files came from,
   the machine, the settings — file paths and setting names only here, after the answer.

Everything read from the database (the set's name, prompts, labels, outputs, errors, file paths) is untrusted:
in HTML it is escaped (report.esc, the diffing renderers), in Markdown table cells and lines go through
report.md_cell and model text sits in report.fence code fences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.escaping import esc, fence, md_cell
from workbench.core.text_units import counted
from workbench.models.demo_note import report_note
from workbench.people import report as rp
from workbench.people.headline import Headline, set_headline
from workbench.people.report_kit import generated_at, html_head, html_table, md_diff, md_table
from workbench.people.verdict import (
    QuantQuality,
    SetVerdict,
    default_set_pair,
    result_label,
    set_child_runs,
    set_labels,
    set_verdicts,
)
from workbench.quality.diff_html import plain_html, prose_html
from workbench.quality.diffing import WordDiff, word_diff
from workbench.quality.facts import FactChange
from workbench.quality.noise_floor import WITHIN, SetFloor, standing_of
from workbench.quality.summary import summarize
from workbench.storage.store import SET_PROMPT_FINISHED, Store, StoredResult, StoredRun, StoredSetRun

NO_VOTES = "No blind judgements yet: rate this set on the Ratings page (A prompt set)."
PROMPT_HEAD_CHARS = 100  # of a prompt, in tables and headings (the whole prompt is in its own section)

SET_CSS = """
details.wb-prompt { border: 1px solid #d0d7de; border-radius: .4rem; padding: .3rem .7rem; margin: .5rem 0; }
details.wb-prompt > summary { cursor: pointer; font-weight: 600; }
details.wb-prompt[open] > summary { margin-bottom: .5rem; }
.wb-headline { font-size: 1.2rem; }
"""


class UnknownSetRun(LookupError):
    """Asked to report on a set run the database does not have."""

    def __init__(self, set_run_id: int) -> None:
        super().__init__(f"no set run with id {set_run_id}")
        self.set_run_id = set_run_id


@dataclass(frozen=True)
class Cell:
    """One quantization's output for one prompt, against the reference: its summary line (or why there is none),
    changed facts, and the word diff to draw (None when there is no pair of outputs to diff)."""

    label: str
    sentence: str
    facts: tuple[FactChange, ...] = ()
    diff: WordDiff | None = None
    text: str | None = None  # the output, when there is one
    error: str | None = None


@dataclass(frozen=True)
class PromptEntry:
    """One prompt of the set: what was asked, its newest run and how it ended, and one Cell per quantization."""

    index: int
    prompt: str
    system: str | None
    category: str | None
    status: str  # the newest run's status; "not run" when it has none
    run_id: int | None
    reference_text: str | None
    reference_error: str | None
    cells: tuple[Cell, ...]

    @property
    def finished(self) -> bool:
        return self.status in SET_PROMPT_FINISHED

    @property
    def facts_changed(self) -> int:
        return sum(len(c.facts) for c in self.cells)

    @property
    def head(self) -> str:
        """The prompt on one line, cut to PROMPT_HEAD_CHARS."""
        one = " ".join(self.prompt.split())
        return one[:PROMPT_HEAD_CHARS] + ("…" if len(one) > PROMPT_HEAD_CHARS else "")


@dataclass
class SetReport:
    """Everything a set report shows, read once; `set_report_html` and `set_report_markdown` draw it."""

    set_run: StoredSetRun
    reference: str | None  # the set run's reference: its repeats are the noise floor
    candidates: list[str]  # the quantizations measured against the baseline, in the set's order
    machines: list[str]  # machine_line of each distinct machine the finished prompts ran on
    llama_cpp: str | None
    quality: list[QuantQuality]
    verdicts: list[SetVerdict]  # every candidate's; `judged` keeps those with votes
    prompts: list[PromptEntry]
    floor: SetFloor | None = None  # the reference's repeats; None when the set run asked for none
    baseline: str | None = None  # what every output is measured against (None: the reference)
    candidate: str | None = None  # the pair's candidate: the question the answer is about

    @property
    def base(self) -> str | None:
        return self.baseline or self.reference

    @property
    def base_role(self) -> str:
        """"reference" when the baseline is the set's reference, else "baseline"."""
        return "reference" if self.base == self.reference else "baseline"

    @property
    def focus(self) -> SetVerdict | None:
        """The verdict of the pair the report answers."""
        return next((sv for sv in self.verdicts if sv.verdict.candidate == self.candidate), None)

    @property
    def judged(self) -> list[SetVerdict]:
        return [sv for sv in self.verdicts if sv.verdict.votes]

    @property
    def total(self) -> int:
        return len(self.prompts)

    @property
    def finished(self) -> int:
        return sum(p.finished for p in self.prompts)

    @property
    def title(self) -> str:
        return f"{self.set_run.name or 'prompt set'} — set run {self.set_run.id}"

    @property
    def status_line(self) -> str:
        status = self.set_run.status or "unknown"
        if self.finished < self.total:
            return f"{status}; {self.finished} of {self.total} prompts finished"
        return f"{status}; all {self.total} prompts finished"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _find(results: Sequence[StoredResult], name: str) -> StoredResult | None:
    """The result that is `name` (by label first, then quant type), with or without an error."""
    return next((r for r in results if r.label == name), next((r for r in results if r.quant_type == name), None))


def _cells(run: StoredRun | None, status: str, reference: str | None, candidates: Sequence[str]
           ) -> tuple[str | None, str | None, tuple[Cell, ...]]:
    """(reference text, reference error, one Cell per candidate) of one prompt's newest run."""
    if run is None:
        why = "not run yet" if status == "not run" else f"not finished ({status})"
        return None, None, tuple(Cell(label, why) for label in candidates)
    results = run.results
    texts = {r.label: r.text for r in results if r.text is not None}
    ref_label = result_label(results, reference) if reference else None
    ref_text = texts.get(ref_label) if ref_label else None
    ref_row = _find(results, reference) if reference else None
    ref_error = ref_row.error if ref_row is not None and ref_text is None else None
    cells = []
    for label in candidates:
        own = result_label(results, label)
        if own is None:
            error = row.error if (row := _find(results, label)) is not None else None
            cells.append(Cell(label, f"no output: {error}" if error else "no output", error=error))
        elif ref_text is None:
            cells.append(Cell(label, "no reference output to compare with", text=texts[own]))
        else:
            d = word_diff(ref_text, texts[own])
            s = summarize(ref_text, texts[own], diff=d)
            cells.append(Cell(label, s.sentence, tuple(s.facts), d, texts[own]))
    return ref_text, ref_error, tuple(cells)


def build_set_report(store: Store, set_run_id: int, candidate: str | None = None,
                     baseline: str | None = None) -> SetReport:
    """Read a set run, its finished prompts' runs and its votes into a SetReport about candidate vs baseline (the
    set's default pair unless given); UnknownSetRun if there is none."""
    set_run = store.get_set_run(int(set_run_id))
    if set_run is None:
        raise UnknownSetRun(set_run_id)
    reference = set_run.reference_label or None
    for name in (candidate, baseline):
        if name is not None and name not in set_labels(set_run):
            raise ValueError(f"{name!r} is not a quantization of set run {set_run_id} (it compared: "
                             f"{', '.join(set_labels(set_run)) or 'none'})")
    if candidate is None and baseline is None:
        candidate, baseline = default_set_pair(store, int(set_run_id)) or (None, None)
    baseline = baseline or reference
    candidates = list(dict.fromkeys(x for x in set_labels(set_run) if x != baseline))
    candidate = candidate if candidate in candidates else next(iter(candidates), None)
    runs = {r.set_index: r for r in set_child_runs(store, set_run)}
    children = {c.index: c for c in set_run.children}
    verdicts = set_verdicts(store, int(set_run_id), baseline)
    prompts = []
    for index, item in enumerate(set_run.prompts):
        child = children.get(index)
        status = str(child.status or "running") if child else "not run"
        ref_text, ref_error, cells = _cells(runs.get(index), status, baseline, candidates)
        prompts.append(PromptEntry(index, _text(item.get("prompt")) or "", _text(item.get("system")),
                                   _text(item.get("category")), status, child.run_id if child else None,
                                   ref_text, ref_error, cells))
    machines = list(dict.fromkeys(rp.machine_line(r.machine) for r in runs.values()))
    llama = next((v for r in runs.values() if (v := r.llama_cpp_version)), None)
    quality = verdicts[0].quality if verdicts else []
    floor = verdicts[0].floor if verdicts else None
    return SetReport(set_run, reference, candidates, machines, llama, quality, verdicts, prompts, floor, baseline,
                     candidate)


# ---- the pieces, in words both formats share -------------------------------------------------------------
def _outcome(entry: PromptEntry) -> str:
    """A prompt in a few words: how many facts changed, or that it has not finished."""
    if entry.finished:
        return f"{counted(entry.facts_changed, 'fact')} changed"
    return "not run yet" if entry.status == "not run" else f"not finished ({entry.status})"


def _overview_rows(r: SetReport) -> list[tuple[str, str]]:
    s = r.set_run
    rows = [("when", s.created_at or "-"), ("status", r.status_line),
            ("reference", r.reference or "none recorded")]
    if r.base != r.reference:
        rows.append(("baseline (what each output is measured against)", r.base or "none"))
    rows += [("quantizations measured against it", ", ".join(r.candidates) or "none"),
            ("model (ladder)", s.ladder_name or "local files")]
    if s.imported_from:
        rows.append(("imported", f"from {s.imported_from}: its prompts ran on another machine"))
    return rows


def _settings(r: SetReport) -> list[tuple[str, str]]:
    return rp.settings_rows(r.set_run.settings, {"workbench": r.set_run.workbench_version, "llama.cpp": r.llama_cpp})


MEASURES_NOTE = ("Measured by the machine, not by people: each quantization's output against the {role}'s "
                 "({reference}) output on the same prompt. Identical: the same text; same answer: a few words "
                 "differ or the same answer is worded differently; different answer: the text took another path. "
                 "Changed facts: numbers, dates, times, durations, money and names that differ from the "
                 "reference's (docs/facts.md). Counted over the {finished} finished prompts.")
OUTPUTS_NOTE = ("Each output as it reads, its differences from the {role} highlighted; after each change, in "
                "‹muted italics›, what the {role} had there (hover for the same).")


# ---- HTML -------------------------------------------------------------------------------------------------
def _ladder(r: SetReport) -> dict[str, Any] | None:
    """The set run's stored ladder, its files narrowed to those that took part (all of them if none matches)."""
    ladder = r.set_run.ladder
    if ladder is None:
        return None
    files = ladder.get("files")
    files = files if isinstance(files, list) else []
    taking_part = {r.reference, r.base, *r.candidates}
    mine = [f for f in files if isinstance(f, dict) and f.get("label") in taking_part]
    return {**ladder, "files": mine or files}


def _overview_html(r: SetReport) -> str:
    ladder = _ladder(r)
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _overview_rows(r))
    parts = ['<section id="set-run"><h2>Method and provenance</h2><h3>The set run</h3>',
             f"<table><tbody>{facts}</tbody></table>",
             "<h3>Ladder and provenance</h3><ul>"
             + "".join(f"<li>{esc(x)}</li>" for x in rp.provenance_lines(ladder)) + "</ul>"]
    if files := rp.ladder_file_rows(ladder):
        parts.append(html_table(rp.LADDER_FILE_HEADERS, files))
    parts.append("<h3>Machine</h3>" + ("".join(f"<p>{esc(m)}</p>" for m in r.machines)
                                       or "<p>No prompt has finished, so no machine was recorded.</p>"))
    parts.append("<h3>Settings</h3>" + html_table(("setting", "value"), _settings(r)) + "</section>")
    return "".join(parts)


def _verdict_html(r: SetReport) -> str:
    parts = ['<section id="verdict"><h2>Verdict</h2>']
    if r.base is None:
        parts.append("<p>This set run recorded no reference, so there is nothing to judge against.</p>")
    elif not r.judged:
        parts.append(f"<p><strong>{esc(NO_VOTES)}</strong></p>")
    else:
        parts += [rp.verdict_html(sv, level=3) for sv in r.judged]
        waiting = [sv.verdict.candidate for sv in r.verdicts if not sv.verdict.votes]
        if waiting:
            parts.append(f'<p class="wb-muted">Not judged yet: {esc(", ".join(waiting))}.</p>')
    parts.append("</section>")
    return "".join(parts)


def _measures_html(r: SetReport) -> str:
    parts = ['<section id="machine-measures"><h2>Machine measures per quantization</h2>']
    if not r.quality:
        parts.append("<p>Nothing to measure yet: the set needs a reference, another quantization and a finished "
                     "prompt.</p>")
    else:
        parts.append(f'<p class="wb-muted">{esc(MEASURES_NOTE.format(role=r.base_role, reference=r.base, finished=r.finished))}'
                     "</p>" + html_table(rp.QUALITY_HEADERS, rp.quality_rows(r.quality)))
    parts.append("</section>")
    return "".join(parts)


FLOOR_NOTE = ("The reference was run again on each prompt ({how}) and measured against its own first answer "
              "with the same measures; a quantization is beyond the floor on a prompt when it changed more words or "
              "more facts than the farthest repeat (docs/noise-floor.md).")
FLOOR_HEADERS = ("quantization", "prompts with a floor", "within", "beyond", "mean words changed",
                 "reference repeats' mean words changed", "one-sided Wilcoxon p")


def _floor_how(r: SetReport) -> str:
    temperature = r.set_run.settings.get("temperature")
    if isinstance(temperature, (int, float)) and temperature > 0:
        return "other seeds at the same temperature"
    return "greedy, the prompt evaluated in other micro-batch sizes"


def _floor_rows(floor: SetFloor) -> list[list[Any]]:
    return [[q.label, q.prompts, q.within, q.beyond, f"{q.mean_changed_words:.1f}", f"{q.floor_mean_changed_words:.1f}",
             "-" if q.p_value is None else f"{q.p_value:.2g}"] for q in floor.quants]


def _floor_of_cell(r: SetReport, e: PromptEntry, c: Cell) -> str:
    """" (within the noise floor)" / " (beyond …)" after a cell's summary, "" without a floor for the prompt."""
    floor = r.floor.floors.get(e.index) if r.floor is not None else None
    if floor is None or c.diff is None:
        return ""
    where = standing_of(c.diff.changed_words, len(c.facts), floor)
    return " (within the noise floor)" if where == WITHIN else " (beyond the noise floor)"


def _noise_floor_html(r: SetReport) -> str:
    """The noise floor, between the machine measures and the prompts; nothing when the set run asked for none."""
    if r.floor is None:
        return ""
    parts = ['<section id="noise-floor"><h2>Noise floor</h2>',
             f'<p class="wb-muted">{esc(FLOOR_NOTE.format(how=_floor_how(r)))}</p>',
             f"<p><strong>{esc(r.floor.sentence())}</strong></p>"]
    if r.floor.quants:
        parts.append("<ul>" + "".join(f"<li>{esc(q.sentence())}</li>" for q in r.floor.quants) + "</ul>")
        parts.append(html_table(FLOOR_HEADERS, _floor_rows(r.floor)))
    parts.append("</section>")
    return "".join(parts)


def _prompt_table_rows(r: SetReport) -> tuple[list[str], list[list[Any]]]:
    headers = ["#", "prompt", "status"]
    for label in r.candidates:
        headers += [label, f"{label}: facts changed"]
    rows = []
    for e in r.prompts:
        row: list[Any] = [e.index + 1, e.head, e.status]
        for c in e.cells:
            row += [c.sentence + _floor_of_cell(r, e, c), len(c.facts) if c.diff is not None else "-"]
        rows.append(row)
    return headers, rows


def _output_html(c: Cell) -> str:
    parts = [f'<div class="wb-output"><h4>{esc(c.label)}</h4>']
    if c.diff is not None:
        parts.append(f'<p class="wb-summary"><strong>{esc(c.sentence)}</strong></p>')
        parts.append(prose_html(c.diff, show_reference=True))
        parts.append(rp.facts_html(c.facts))
    elif c.error is not None:
        parts.append(f'<p class="wb-error">{esc(c.sentence)}</p>')
    else:
        parts.append(f'<p class="wb-muted">{esc(c.sentence)}</p>')
        if c.text is not None:
            parts.append(plain_html(c.text, prose=True))
    parts.append("</div>")
    return "".join(parts)


def _prompt_html(r: SetReport, e: PromptEntry) -> str:
    parts = [f'<details class="wb-prompt" id="prompt-{e.index + 1}"><summary>{e.index + 1}. {esc(e.head)} · '
             f"{esc(_outcome(e))}</summary>"]
    meta = [f"status {e.status}"] + ([f"category {e.category}"] if e.category else []) + \
        ([f"run {e.run_id}"] if e.run_id is not None else [])
    parts.append(f'<p class="wb-muted">{esc(" · ".join(meta))}</p>')
    if e.system:
        parts.append(f'<h4>System prompt</h4><pre class="wb-text">{esc(e.system)}</pre>')
    parts.append(f'<h4>Prompt</h4><pre class="wb-text">{esc(e.prompt)}</pre>')
    if e.finished and r.base:
        parts.append(f'<div class="wb-output"><h4>{esc(r.base)} ({r.base_role})</h4>')
        if e.reference_text is not None:
            parts.append(plain_html(e.reference_text, prose=True))
        else:
            parts.append(f'<p class="wb-error">{esc("no output: " + (e.reference_error or "missing"))}</p>')
        parts.append("</div>")
    if e.finished:
        parts += [_output_html(c) for c in e.cells]
    parts.append("</details>")
    return "".join(parts)


def _prompts_html(r: SetReport) -> str:
    headers, rows = _prompt_table_rows(r)
    parts = ['<section id="prompts"><h2>Each prompt</h2>',
             f'<p class="wb-muted">Each quantization against the {r.base_role} ({esc(r.base or "none")}), '
             "in one line per prompt; open a prompt below for the outputs themselves.</p>",
             html_table(headers, rows),
             f'<h3>Outputs</h3><p class="wb-muted">{esc(OUTPUTS_NOTE.format(role=r.base_role))}</p>']
    parts += [_prompt_html(r, e) for e in r.prompts]
    parts.append("</section>")
    return "".join(parts)


def _note(r: SetReport) -> str:
    from workbench import __version__

    return (f"Generated {generated_at()} by Quant Workbench {__version__}. Every prompt of the set ran through "
            f"each quantization, one after another, on one machine (method and provenance at the end); the outputs "
            f"are compared with the {r.base_role}'s ({r.base or 'none'}) by the machine (summaries, changed facts, "
            "the reference's own variation) and by people (blind votes).")


def _answer(r: SetReport) -> tuple[Headline | None, list[tuple[str, Headline]]]:
    """The pair's headline, and every other quantization's against the same baseline."""
    focus = r.focus
    # the reference is not a quantization to ship against a smaller baseline ("keep Q8_0" would read backwards); its
    # own relation to the baseline is in the machine measures and the noise floor below
    others = [(sv.verdict.candidate, set_headline(sv)) for sv in r.verdicts
              if sv is not focus and sv.verdict.candidate != r.reference]
    return (set_headline(focus) if focus is not None else None), others


def _answer_html(r: SetReport) -> str:
    head, others = _answer(r)
    parts = ['<section id="answer"><h2>The answer</h2>']
    if head is None:
        parts.append("<p>There is no pair to answer about: the set needs a reference and another quantization.</p>")
    else:
        focus = r.focus
        assert focus is not None
        parts += [f"<h3>{esc(focus.verdict.candidate)} vs {esc(focus.verdict.reference)}</h3>",
                  f'<p class="wb-verdict wb-headline"><strong>{esc(head.sentence)}</strong></p>',
                  f"<p><strong>What it means for the decision:</strong> {esc(head.advice)}</p>",
                  "<ul>" + "".join(f"<li>{esc(d)}</li>" for d in head.details) + "</ul>"]
    if others:
        parts.append(f"<h3>Every other quantization against {esc(r.base)}</h3><ul>"
                     + "".join(f"<li><strong>{esc(label)}</strong>: {esc(h.text)}</li>" for label, h in others)
                     + "</ul>")
    if note := report_note(r.set_run.ladder):  # the embedded demo: why its figures look odd
        parts.append(f'<p class="wb-muted"><strong>About this model:</strong> {esc(note)}</p>')
    parts.append('<p class="wb-muted">How these sentences are built: docs/headlines.md.</p></section>')
    return "".join(parts)


def _answer_markdown(r: SetReport) -> list[str]:
    head, others = _answer(r)
    out = ["## The answer", ""]
    focus = r.focus
    if head is None or focus is None:
        out += ["There is no pair to answer about: the set needs a reference and another quantization.", ""]
    else:
        out += [f"### {md_cell(focus.verdict.candidate)} vs {md_cell(focus.verdict.reference)}", "",
                f"**{md_cell(head.sentence)}**", "",
                f"What it means for the decision: {md_cell(head.advice)}", ""]
        out += [f"- {md_cell(d)}" for d in head.details] + [""]
    if others:
        out += [f"### Every other quantization against {md_cell(r.base)}", ""]
        out += [f"- **{md_cell(label)}**: {md_cell(h.text)}" for label, h in others] + [""]
    if note := report_note(r.set_run.ladder):  # the embedded demo: why its figures look odd
        out += [f"_About this model: {md_cell(note)}_", ""]
    return out + ["_How these sentences are built: docs/headlines.md._", ""]


def _html(r: SetReport) -> str:
    parts = html_head(r.title, _note(r), SET_CSS)
    parts += [_answer_html(r), _verdict_html(r), _measures_html(r), _noise_floor_html(r), _prompts_html(r),
              _overview_html(r), "</body></html>"]
    return "\n".join(p for p in parts if p)


def set_report_html(store: Store, set_run_id: int, candidate: str | None = None, baseline: str | None = None) -> str:
    """One self-contained HTML page (str) reporting a set run about candidate vs baseline (the set's default pair
    unless given); UnknownSetRun when there is no such set run."""
    return _html(build_set_report(store, set_run_id, candidate, baseline))


# ---- Markdown ---------------------------------------------------------------------------------------------
def _noise_floor_markdown(r: SetReport) -> list[str]:
    """The noise floor's Markdown lines (see `_noise_floor_html`); none when the set run asked for none."""
    if r.floor is None:
        return []
    out = ["## Noise floor", "", md_cell(FLOOR_NOTE.format(how=_floor_how(r))), "",
           f"**{md_cell(r.floor.sentence())}**", ""]
    if r.floor.quants:
        out += [f"- {md_cell(q.sentence())}" for q in r.floor.quants] + [""]
        out += [md_table(FLOOR_HEADERS, _floor_rows(r.floor)), ""]
    return out


def _prompt_markdown(r: SetReport, e: PromptEntry) -> list[str]:
    meta = [f"status {e.status}"] + ([f"category {e.category}"] if e.category else []) + \
        ([f"run {e.run_id}"] if e.run_id is not None else [])
    out = [f"### Prompt {e.index + 1}", "", md_cell(" · ".join(meta)), ""]
    if e.system:
        out += ["System prompt:", "", fence(e.system), ""]
    out += [fence(e.prompt), ""]
    if not e.finished:
        return out
    if r.base:
        out += [f"#### {md_cell(r.base)} ({r.base_role})", ""]
        out += [fence(e.reference_text) if e.reference_text is not None
                else f"No output: {md_cell(e.reference_error or 'missing')}", ""]
    for c in e.cells:
        out += [f"#### {md_cell(c.label)}", "", f"**{md_cell(c.sentence)}**", ""]
        if c.diff is not None:
            out += [md_diff(c.diff), ""]
            if c.facts:
                out += ["Changed facts:", ""] + [f"- {md_cell(f.kind)}: {md_cell(f.describe())}"
                                                 for f in c.facts] + [""]
        elif c.text is not None:
            out += [fence(c.text), ""]
    return out


def _method_markdown(r: SetReport) -> list[str]:
    """The set run, its ladder, machine and settings: the last section, after the answer and its evidence."""
    ladder = _ladder(r)
    out = ["## Method and provenance", "", "### The set run", ""]
    out += [f"- {md_cell(k)}: {md_cell(v)}" for k, v in _overview_rows(r)] + ["", "### Ladder and provenance", ""]
    out += [f"- {md_cell(x)}" for x in rp.provenance_lines(ladder)] + [""]
    if files := rp.ladder_file_rows(ladder):
        out += [md_table(rp.LADDER_FILE_HEADERS, files), ""]
    out += ["### Machine", ""] + ([f"- {md_cell(m)}" for m in r.machines]
                                  or ["No prompt has finished, so no machine was recorded."]) + [""]
    return out + ["### Settings", "", md_table(("setting", "value"), _settings(r)), ""]


def _markdown(r: SetReport) -> str:
    out = [f"# {md_cell(r.title)}", "", md_cell(_note(r)), ""]
    out += _answer_markdown(r)
    out += ["## Verdict", ""]
    if r.base is None:
        out += ["This set run recorded no reference, so there is nothing to judge against.", ""]
    elif not r.judged:
        out += [f"**{NO_VOTES}**", ""]
    else:
        for sv in r.judged:
            out += [rp.verdict_markdown(sv, level=3), ""]
        waiting = [sv.verdict.candidate for sv in r.verdicts if not sv.verdict.votes]
        if waiting:
            out += [f"Not judged yet: {md_cell(', '.join(waiting))}.", ""]
    out += ["## Machine measures per quantization", ""]
    if not r.quality:
        out += ["Nothing to measure yet: the set needs a reference, another quantization and a finished prompt.", ""]
    else:
        out += [MEASURES_NOTE.format(role=r.base_role, reference=md_cell(r.base), finished=r.finished), "",
                md_table(rp.QUALITY_HEADERS, rp.quality_rows(r.quality)), ""]
    out += _noise_floor_markdown(r)
    headers, rows = _prompt_table_rows(r)
    out += ["## Each prompt", "", md_table(headers, rows), "",
            f"Diffs against the {r.base_role}: `[-{r.base_role} only-]`, `{{+this output only+}}`.", ""]
    for e in r.prompts:
        out += _prompt_markdown(r, e)
    out += _method_markdown(r)
    return "\n".join(out)


def set_report_markdown(store: Store, set_run_id: int, candidate: str | None = None,
                        baseline: str | None = None) -> str:
    """The same report in Markdown: model text in code fences, every other value escaped."""
    return _markdown(build_set_report(store, set_run_id, candidate, baseline))


def write_set_report(store: Store, set_run_id: int, *, html_path: str | Path | None = None,
                     markdown_path: str | Path | None = None, candidate: str | None = None,
                     baseline: str | None = None) -> list[Path]:
    """Write the HTML and/or Markdown report of a set run (read once); returns the paths written."""
    report = build_set_report(store, set_run_id, candidate, baseline)
    written = []
    for target, draw in ((html_path, _html), (markdown_path, _markdown)):
        if target:
            path = Path(target)
            path.write_text(draw(report), encoding="utf-8")
            written.append(path)
    return written
