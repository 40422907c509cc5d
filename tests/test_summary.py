"""The one-line column summary, its sentence numbering, and how reports show it with the changed facts."""

from __future__ import annotations

import pytest

from workbench.people.report import report_html, report_markdown
from workbench.quality.summary import REWORDED, SAME_ANSWER, sentence_of_word, summarize
from workbench.storage.store import Store

REFERENCE = ("Preheat the oven to 180 degrees. Mix the flour and sugar in a bowl. "
             "Bake for 20 minutes until golden. Serve warm with cream.")
REWORDED_TEXT = ("Preheat the oven to 180 degrees. Mix flour with sugar in a large bowl. "
                 "Bake it 20 minutes till golden brown. Serve it warm, with some cream.")
WANDERS_OFF = ("Preheat the oven to 180 degrees. Then you should go outside and enjoy a nice walk in the park "
               "with your dog.")


@pytest.mark.parametrize(("output", "sentence", "verdict"), [
    (REFERENCE, "identical", "identical"),
    (REFERENCE.replace("oven to", "oven  to"), "same words, spacing differs", "spacing"),
    (REFERENCE.replace("bowl", "dish"), "same answer, 2 words differ", "same"),
    (REFERENCE.replace("20 minutes", "2 minutes"), "same answer, 2 words differ; 1 fact changed", "same"),
    (REWORDED_TEXT, "same answer worded differently (84% similar)", "reworded"),
    (WANDERS_OFF, "different answer from sentence 2; 1 fact changed", "different"),
    ("", "empty output; 2 facts changed", "empty"),
])
def test_sentences(output: str, sentence: str, verdict: str) -> None:
    s = summarize(REFERENCE, output)
    assert (s.sentence, s.verdict) == (sentence, verdict)


def test_the_numbers_behind_the_sentence() -> None:
    s = summarize(REFERENCE, WANDERS_OFF)
    assert s.similarity < REWORDED <= SAME_ANSWER
    assert s.first_divergence_sentence == 2 and s.first_divergence_word == 7  # "Mix" is the 8th token
    assert [f.describe() for f in s.facts] == ["20 minutes → missing"] and s.facts_changed == 1
    same = summarize(REFERENCE, REFERENCE.replace("bowl", "dish"))
    assert same.similarity >= SAME_ANSWER and same.changed_words == 2 and same.first_divergence_sentence == 2


def test_one_word_is_singular() -> None:
    assert summarize("a b c d e f g h i j k l m n o p q r s t", "a b c d e f g h i j k l m n o p q r s").sentence \
        == "same answer, 1 word differs"


@pytest.mark.parametrize(("text", "word", "sentence"), [
    ("One. Two three. Four?", 0, 1),
    ("One. Two three. Four?", 2, 2),   # "Two"
    ("One. Two three. Four?", 5, 3),   # "Four"
    ("Pi is 3.14 today. Yes", 6, 1),   # the "." inside 3.14 does not end a sentence
    ("Pi is 3.14 today. Yes", 7, 2),
    ("A list\nsecond line\n\nthird", 3, 2),
    ("A list\nsecond line\n\nthird", 4, 3),
])
def test_sentence_of_word(text: str, word: int, sentence: int) -> None:
    assert sentence_of_word(text, word) == sentence


def _run_with_facts(store: Store) -> int:
    run_id = store.create_run(settings={"max_tokens": 8}, prompt="Plan the meeting", system_prompt=None,
                              category="chat", reference_label="Q8_0",
                              ladder={"name": "Tiny", "files": []}, machine={}, versions={})
    store.add_result(run_id, 0, {"label": "Q8_0", "text": "We meet Jane O'Brien on Monday 3 March for 20 minutes.",
                                 "is_reference": True})
    store.add_result(run_id, 1, {"label": "Q2_K", "text": "We meet Jane O'Brien on Monday 3 March for 2 minutes."})
    store.add_result(run_id, 2, {"label": "Q4_K_M", "text": "We meet Sam O'Neil <b>soon</b> at <i>Acme</i> Corp."})
    store.finish_run(run_id, "done")
    return run_id


def test_reports_show_the_summary_and_changed_facts_escaped(store: Store) -> None:
    run_id = _run_with_facts(store)
    page = report_html(store, [run_id])
    assert "<strong>same answer, 2 words differ; 1 fact changed</strong>" in page
    assert '<ul class="wb-facts"><li>duration: 20 minutes → 2 minutes</li></ul>' in page
    assert "name: Jane O&#x27;Brien → Sam O&#x27;Neil" in page  # fact text is escaped like all model text
    assert "<i>Acme</i>" not in page and "<b>soon</b>" not in page
    md = report_markdown(store, [run_id])
    assert "**same answer, 2 words differ; 1 fact changed**" in md
    assert "- duration: 20 minutes → 2 minutes" in md
    assert "- name: Jane O'Brien → Sam O'Neil" in md


def test_the_summary_and_the_side_by_side_view_agree_where_sentences_end() -> None:
    """One splitter (quality.sentences): a closing quote or bracket after the end mark, and the ellipsis, end a
    sentence for the summary's "from sentence K" exactly as they do for the side-by-side rows."""
    from workbench.quality.diffing import split_words
    from workbench.quality.sentences import text_sentences

    text = 'He said "Stop." Then he left… (It was late.) Pi is 3.5 today.\nLast line'
    rows = text_sentences(text)
    assert rows == ['He said "Stop."', "Then he left…", "(It was late.)", "Pi is 3.5 today.", "Last line"]
    word = 0
    for number, sentence in enumerate(rows, start=1):
        for token in split_words(sentence):
            if not token.isspace():
                assert sentence_of_word(text, word) == number, (word, token)
                word += 1
