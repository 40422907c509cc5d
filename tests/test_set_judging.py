"""A blind session over a whole prompt set on the Ratings page (Streamlit's AppTest), and its verdict.

The set run is written by the test through the store (3 prompts, Q8_0 and Q4_K_M, texts that name neither),
so what is checked is the session: names hidden until every prompt is judged, each vote saved at once,
resume after a reload skipping judged prompts, and a verdict computed from the saved votes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.people import ratings
from workbench.people.set_session import load_session, previous_sessions
from workbench.people.verdict import SET_MODE, count_votes
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
NAMES = ("Q8_0", "Q4_K_M")
TEXTS = [("The reference answer to the first prompt.", "The candidate answer to the first prompt."),
         ("Walk 20 minutes to the station.", "Walk 2 minutes to the station."),
         ("Paris is the capital of France.", "Paris is the capital of France.")]


def make_set(store: Store) -> int:
    prompts = [{"prompt": f"Question number {i + 1}?"} for i in range(len(TEXTS))]
    set_id = store.create_set_run(name="our prompts", prompts=prompts, labels=list(NAMES), reference_label="Q8_0",
                                  settings={})
    for i, texts in enumerate(TEXTS):
        run_id = store.create_run(settings={}, prompt=prompts[i]["prompt"], reference_label="Q8_0")
        store.tag_set_run_child(run_id, set_id, i)
        for pos, (label, text) in enumerate(zip(NAMES, texts, strict=True)):
            store.add_result(run_id, pos, {"label": label, "quant_type": label, "text": text,
                                           "is_reference": label == "Q8_0"})
        store.finish_run(run_id, "done")
    store.set_set_run_status(set_id, "done")
    return set_id


@pytest.fixture()
def set_id():
    """The set run, its runs deleted afterwards: other page tests expect their own run to be the newest."""
    store = Store()
    made = make_set(store)
    yield made
    for child in store.get_set_run(made).children:
        store.delete_run(child.run_id)


def main_text(at: AppTest) -> str:
    """What the main area sends to the browser, pickers left out (they name the two contestants by design)."""
    parts = []

    def walk(node) -> None:
        if getattr(node, "type", None) == "selectbox":
            return
        if getattr(node, "proto", None) is not None:
            parts.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    return "\n".join(parts).replace("\\\\", "").replace("\\", "")


def open_session(set_id: int, rater: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/ratings.py")
    at.run()
    at.text_input(key="rater-input").set_value(rater)
    at.radio(key="ratings-what").set_value("A prompt set")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="set-pick").value == set_id
    assert at.selectbox(key=f"set-reference-{set_id}").value == "Q8_0"  # the set's reference by default
    assert at.selectbox(key=f"set-candidate-{set_id}").value == "Q4_K_M"
    return at


def token_of(at: AppTest, set_id: int) -> str:
    return at.session_state[f"set-token-{set_id}-Q8_0-Q4_K_M"]


def vote(at: AppTest, set_id: int, pick: str) -> int:
    """Vote on the prompt shown now; returns its run id."""
    session = load_session(Store(), set_id, token_of(at, set_id), "Q8_0", "Q4_K_M")
    item = session.next_item
    assert item is not None
    assert item.first_text in main_text(at) and item.second_text in main_text(at)
    at.button(key=f"set-vote-{item.run_id}-{pick}").click().run()
    assert not at.exception, at.exception
    return item.run_id


def test_a_blind_set_session_hides_names_resumes_and_ends_with_the_verdict_of_its_votes(set_id: int):
    store = Store()
    at = open_session(set_id, "ann")
    assert not any(n in main_text(at) for n in NAMES)
    assert "Prompt 1 of 3" in main_text(at)
    assert [b.proto.shortcut for b in at.button if b.key.startswith("set-vote-")] == ["1", "3", "2"]
    first = vote(at, set_id, "1")
    token = token_of(at, set_id)
    assert "Prompt 2 of 3" in main_text(at)
    assert not any(n in main_text(at) for n in NAMES), "a name showed after 1 of 3 votes"
    saved = ratings.list_votes(store, session=token)
    assert [(v["run_id"], v["mode"], v["rater"]) for v in saved] == [(first, SET_MODE, "ann")]

    # a reload (a fresh browser session): the same rater's session resumes, the judged prompt is skipped
    at = open_session(set_id, "ann")
    assert token_of(at, set_id) == token
    assert "Prompt 2 of 3" in main_text(at)
    assert previous_sessions(store, set_id, "Q8_0", "Q4_K_M", "ann")[0]["votes"] == 1
    second = vote(at, set_id, "2")
    assert second != first
    assert not any(n in main_text(at) for n in NAMES), "a name showed after 2 of 3 votes"
    vote(at, set_id, "tie")

    # the end: names revealed, and the verdict is what the saved votes say
    text = main_text(at)
    assert all(n in text for n in NAMES)
    votes = ratings.list_votes(store, session=token, mode=SET_MODE)
    assert len(votes) == 3 and len({v["run_id"] for v in votes}) == 3
    ref, cand, ties, raters = count_votes(votes, "Q8_0", "Q4_K_M")
    assert (ref + cand, ties, raters) == (2, 1, 1)
    paragraph = at.code[0].value
    times = {0: "0 times", 1: "once", 2: "2 times"}
    assert paragraph.startswith(f"On your 3 prompts, raters preferred Q8_0 {times[ref]}, Q4_K_M {times[cand]}, "
                                "1 tie: too few decided votes")
    assert "Q4_K_M's answers were identical on 1, the same answer on" in paragraph
    assert "1 changed fact on 1 prompt" in paragraph  # 20 minutes → 2 minutes
    assert paragraph.replace("\\", "") in text  # shown as text too, not only in the copy box
    # the answer first: the pair's headline (every rater's votes and the machine's measures) above "Your verdict"
    from workbench.people.headline import set_headline
    from workbench.people.verdict import set_verdict

    head = set_headline(set_verdict(store, set_id, "Q4_K_M", "Q8_0"))
    assert head.people == "too-few" and "too few to say whether people notice" in head.sentence
    boxes = [b.value for b in at.info] + [b.value for b in at.warning]
    assert any(head.sentence.replace("_", "\\_") in b for b in boxes), boxes
    assert text.index("Q4_K_M changed facts on 1 of 3 prompts") < text.index("Your verdict")
