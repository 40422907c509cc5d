"""The readable comparison view (issue 15): each output as prose with its changes marked, and side by side."""

from __future__ import annotations

import time
from html.parser import HTMLParser
from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_diff_speed import looping

from workbench.quality.diff_html import DIFF_CSS, diff_html, prose_html
from workbench.quality.diffing import output_spans, reference_spans, side_by_side, word_diff
from workbench.quality.sentences import sentences
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
REF = "The notice states that no meetings will be held on Monday 3 March.\n\nPlease reply by Friday. Thanks!"
OUT = "The notice is to postpone meetings on Monday 3 March.\n\nPlease reply by Friday. Thanks a lot!\nBye"


class _Parsed(HTMLParser):
    """Text content and every attribute value of an HTML fragment, and the tags it opens."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.attrs: list[str] = []
        self.attr_names: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [v or "" for _, v in attrs]
        self.attr_names |= {k for k, _ in attrs}

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(fragment: str) -> _Parsed:
    p = _Parsed()
    p.feed(fragment)
    p.close()
    return p


def test_output_spans_reconstruct_the_output_and_carry_the_references_words():
    d = word_diff(REF, OUT)
    spans = output_spans(d)
    assert "".join(s.text for s in spans) == OUT  # whitespace and newlines kept: reads as prose
    assert "".join(s.text for s in reference_spans(d)) == REF
    changed = [(s.kind, s.text, s.other) for s in spans if s.kind != "equal"]
    assert changed == [
        ("changed", "is to postpone", "states that no"),  # one phrase, not one highlight per word
        ("gap", "", "will be held"),  # deleted reference words: a marker, no text
        ("changed", "a lot", ""),  # words only in this output
        ("changed", "Bye", ""),
    ]
    assert [s.first for s in spans if s.kind != "equal"] == [True, False, False, False]
    assert all(s.text == s.text.strip() for s in spans if s.kind == "changed")  # spaces at edges stay plain


def test_prose_html_is_the_output_text_with_no_strike_through_and_the_reference_on_hover_or_inline():
    d = word_diff(REF, OUT)
    page = prose_html(d)
    parsed = parse(page)
    assert "".join(parsed.text) == OUT  # the first-divergence and gap markers add no words
    assert "del" not in parsed.tags and "ins" not in parsed.tags and "line-through" not in page
    assert "wb-first-mark" in page and page.count("wb-first-mark") == 1
    assert "the reference had: states that no" in parsed.attrs
    assert "the reference had here: will be held" in parsed.attrs
    inline = "".join(parse(prose_html(d, show_reference=True)).text)
    assert "states that no" in inline and "will be held" in inline and inline != OUT
    assert all(c.isprintable() or c.isspace() for c in DIFF_CSS)  # the markers' CSS glyphs arrive intact
    assert "<del" in diff_html(d)  # the full diff is still there for the "show deletions" toggle


def test_hostile_text_is_escaped_in_text_and_in_every_attribute():
    from ui.views import side_by_side_html

    hostile = 'Q" onmouseover="alert(2) </span></mark><img src=x onerror=alert(3)> \'<script>alert(4)</script>'
    plain = "Totally other words"
    for a, b in ((f"Fine. {hostile} end.", f"Fine. {plain} end."), (f"Fine. {plain} end.", f"Fine. {hostile} end.")):
        d = word_diff(a, b)
        for show in (False, True):
            parsed = parse(prose_html(d, show_reference=show))
            assert set(parsed.tags) <= {"div", "span", "mark"}, parsed.tags  # no element from the model
            assert parsed.attr_names <= {"class", "title"}, parsed.attr_names  # no attribute broken out of a title
            if not show:
                assert "".join(parsed.text) == b
        # the title holds the reference's words whole, quotes and markup included (escaped, then read back)
        titles = [t for t in parse(prose_html(d)).attrs if t.startswith("the reference had")]
        assert titles == [f"the reference had: {hostile if a.startswith('Fine. Q') else plain}"], titles
        table = parse(side_by_side_html(side_by_side(a, b), 'F16 "<b>', "Q2 '</td><script>"))
        assert set(table.tags) <= {"table", "thead", "tbody", "tr", "th", "td", "div", "span", "mark"}, table.tags
        assert table.attr_names <= {"class", "title"}
        assert 'F16 "<b> (reference)' in table.text and "Q2 '</td><script>" in table.text


def test_side_by_side_aligns_paragraphs_then_sentences():
    assert sentences('He said "Stop." Then left. Pi is 3.14! Really?\n- one\n- two') == [
        'He said "Stop."', "Then left.", "Pi is 3.14!", "Really?", "- one", "- two"]
    ref = "Intro stays. Second one.\n\nA middle paragraph.\n\nClosing words here. The end."
    out = "Intro stays. Second two. An extra sentence.\n\nA middle paragraph.\n\nClosing words there. The end."
    view = side_by_side(ref, out)
    got = [(r.kind, "".join(s.text for s in r.reference), "".join(s.text for s in r.output), r.new_paragraph)
           for r in view.rows]
    assert got == [
        ("same", "Intro stays.", "Intro stays.", False),
        ("changed", "Second one.", "Second two.", False),
        ("output only", "", "An extra sentence.", False),
        ("same", "A middle paragraph.", "A middle paragraph.", True),
        ("changed", "Closing words here.", "Closing words there.", True),
        ("same", "The end.", "The end.", False),
    ]
    changed = view.rows[1]
    assert [(s.text, s.other) for s in changed.output if s.kind == "changed"] == [("two", "one")]
    assert [(s.text, s.other) for s in changed.reference if s.kind == "changed"] == [("one", "two")]
    assert not view.more
    capped = side_by_side(ref, out, max_rows=2)
    assert len(capped.rows) == 2 and capped.more


def test_readable_views_stay_fast_on_two_looping_2400_word_outputs():
    ref, other = looping(2400), looping(2400, changed_at=tuple(range(7, 2400, 40)))
    t0 = time.perf_counter()
    d = word_diff(ref, other)
    spans = output_spans(d)
    page = prose_html(d, show_reference=True)
    view = side_by_side(ref.replace("loop ", "loop. "), other.replace("loop ", "loop. "))
    took = time.perf_counter() - t0
    print(f"\nword diff + spans + prose + side by side on two 2,400-word loops: {took * 1000:.1f} ms")
    assert took < 2
    assert "".join(s.text for s in spans) == other
    assert page.count("wb-chg") == 60 and view.rows


def _stored_run() -> int:
    store = Store()
    run_id = store.create_run(settings={"max_tokens": 32, "temperature": 0.0, "seed": 0, "n_ctx": 256, "n_threads": 1},
                              prompt="summarise the notice", reference_label="F16")
    for i, (label, text) in enumerate([("F16", REF), ("Q4_K_M", OUT)]):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "file": f"/x/{label}.gguf",
                                     "is_reference": label == "F16", "text": text, "stop_reason": "eos",
                                     "token_ids": [1, 2, 3] if label == "F16" else [1, 5]})
    return run_id


def test_compare_page_shows_prose_by_default_and_the_toggles_switch_views():
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = _stored_run()
    at.run()
    assert not at.exception, at.exception

    def bodies() -> str:
        return " ".join(h.proto.body for h in at.get("html"))

    assert "wb-prose" in bodies() and 'class="wb-chg"' in bodies() and "<del" not in bodies()
    assert any("words differ" in c.value for c in at.caption)  # the column header above the text
    toggles = {t.label: t for t in at.toggle}
    toggles["Show the reference's words inline"].set_value(True)
    at.run()
    assert 'class="wb-ref"' in bodies() and "<del" not in bodies()
    {t.label: t for t in at.toggle}["Show deletions (full diff)"].set_value(True)
    at.run()
    assert "<del" in bodies() and "<ins" in bodies() and 'class="wb-chg"' not in bodies()

    picker = next(s for s in at.selectbox if s.label.startswith("Side by side"))
    assert picker.value == "(none)" and "class='wb-side'" not in bodies()
    picker.set_value("Q4_K_M")
    at.run()
    assert not at.exception, at.exception
    assert "class='wb-side'" in bodies() and "F16 (reference)" in bodies()
    assert "<td class='wb-empty'>(nothing here)</td>" in bodies()  # "Bye": only in the output


def test_compare_columns_say_in_words_how_each_answer_differs_and_list_changed_facts():
    store = Store()
    run_id = store.create_run(settings={"max_tokens": 32, "temperature": 0.0, "seed": 0, "n_ctx": 256, "n_threads": 1},
                              prompt="summarise the notice", reference_label="F16")
    texts = [("F16", "Buses leave every 30 minutes and journeys take about 20 minutes longer."),
             ("Q4_K_M", "Buses leave every 30 minutes and journeys take about 2 minutes longer.")]
    for i, (label, text) in enumerate(texts):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "file": f"/x/{label}.gguf",
                                     "is_reference": label == "F16", "text": text, "stop_reason": "eos"})
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = run_id
    at.run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("**same answer") for m in at.markdown), [m.value for m in at.markdown][:20]
    facts = next(e for e in at.expander if e.label.startswith("Changed facts"))
    assert "20 minutes → 2 minutes" in " ".join(m.value for m in facts.markdown)
