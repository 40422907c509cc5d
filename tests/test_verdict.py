"""The verdict of a judged prompt set (workbench.people.verdict) on handwritten vote lists and a stored set run."""

from __future__ import annotations

import pytest

from workbench.people import ratings
from workbench.people.verdict import MIN_DECIDED, SET_MODE, count_votes, decide, set_verdict
from workbench.storage.store import Store


def vote(run_id: int, a: str, b: str, winner: str, rater: str = "ann", qa: str | None = None,
         qb: str | None = None) -> dict:
    return {"run_id": run_id, "label_a": a, "label_b": b, "winner": winner, "rater": rater,
            "quant_type_a": qa, "quant_type_b": qb}


def test_counts_follow_the_side_each_output_was_shown_on_and_the_newest_vote_per_rater():
    votes = [
        vote(1, "Q8_0", "Q4_K_M", "a"),  # reference shown first, preferred
        vote(2, "Q4_K_M", "Q8_0", "a"),  # candidate shown first, preferred
        vote(3, "Q8_0", "Q4_K_M", "tie"),
        vote(4, "Q8_0", "Q4_K_M", "b"),
        vote(4, "Q8_0", "Q4_K_M", "a"),  # ann changed her mind on prompt 4: the newest counts
        vote(4, "Q4_K_M", "Q8_0", "a", rater="bob"),  # another rater on the same prompt counts too
        vote(5, "Q8_0", "Q2_K", "a"),  # another pair: left out
        vote(6, "x", "y", "a", qa="Q4_K_M", qb="Q8_0"),  # matched by quant type, like the leaderboard
        {"run_id": "7", "label_a": "Q8_0", "label_b": "Q4_K_M", "winner": "a"},  # untrusted row: run id a string
        vote(8, "Q8_0", "Q4_K_M", "maybe"),  # untrusted winner
        vote(9, ["Q8_0"], "Q4_K_M", "a"),  # untrusted label
        "not a row",
    ]
    assert count_votes(votes, "Q8_0", "Q4_K_M") == (2, 3, 1, 2)


def test_sign_test_and_wilson_interval_on_known_counts():
    v = decide("Q8_0", "Q4_K_M", 12, 11, 7, n_prompts=30)
    assert (v.decided, v.votes, v.outcome) == (23, 30, "no-difference")
    assert v.p_value == pytest.approx(1.0)
    assert v.share == pytest.approx(11 / 23)
    assert (v.low, v.high) == (pytest.approx(0.2918, abs=1e-3), pytest.approx(0.6703, abs=1e-3))
    assert v.paragraph.startswith("On your 30 prompts, raters preferred Q8_0 12 times, Q4_K_M 11 times, 7 ties: "
                                  "people could not tell them apart by these votes (could well be chance; "
                                  "sign test p = 1.00; Q4_K_M preferred in 48% of decided votes, "
                                  "95% interval 29–67%")
    assert "no detectable difference" not in v.paragraph and "not proof they are equal" in v.paragraph
    clear = decide("Q8_0", "Q4_K_M", 15, 3, 2, n_prompts=20)
    assert clear.p_value == pytest.approx(0.00754, abs=1e-4)  # 2 * P(X ≤ 3), X ~ Bin(18, 1/2)
    assert clear.outcome == "prefers-reference"
    assert "raters clearly preferred Q8_0 (chance would do this about 1 in 133 times; sign test p = 0.008;" \
        in clear.paragraph
    assert decide("Q8_0", "Q4_K_M", 1, 9, 0, n_prompts=10).outcome == "prefers-candidate"


def test_fewer_than_six_decided_votes_can_never_show_a_difference():
    sweep5 = decide("Q8_0", "Q4_K_M", 5, 0, 4, n_prompts=9)
    assert sweep5.p_value > 0.05 and sweep5.outcome == "too-few"  # 2 / 2**5 = 0.0625
    assert "too few decided votes to say whether people notice a difference (5 so far; with fewer than 6 even a " \
        "clean sweep could be chance)" in sweep5.paragraph
    sweep6 = decide("Q8_0", "Q4_K_M", MIN_DECIDED, 0, 0, n_prompts=6)
    assert sweep6.p_value < 0.05 and sweep6.outcome == "prefers-reference"
    assert decide("Q8_0", "Q4_K_M", 0, 0, 3, n_prompts=3).outcome == "too-few"
    none = decide("Q8_0", "Q4_K_M", 0, 0, 0, n_prompts=3)
    assert none.outcome == "no-votes" and none.paragraph.startswith("No votes yet")
    with pytest.raises(ValueError):
        decide("Q8_0", "Q4_K_M", -1, 0, 0, n_prompts=3)
    with pytest.raises(ValueError):
        decide("Q8_0", "Q4_K_M", "3", 0, 0, n_prompts=3)  # type: ignore[arg-type]


def make_set(store: Store, texts: list[tuple[str, str]]) -> tuple[int, list[int]]:
    """A set run of len(texts) prompts, reference Q8_0 and candidate Q4_K_M, written by the test."""
    prompts = [{"prompt": f"prompt {i}"} for i in range(len(texts))]
    set_id = store.create_set_run(name="ours", prompts=prompts, labels=["Q8_0", "Q4_K_M"], reference_label="Q8_0",
                                  settings={})
    run_ids = []
    for i, (ref, cand) in enumerate(texts):
        run_id = store.create_run(settings={}, prompt=prompts[i]["prompt"], reference_label="Q8_0")
        store.tag_set_run_child(run_id, set_id, i)
        for pos, (label, text) in enumerate((("Q8_0", ref), ("Q4_K_M", cand))):
            store.add_result(run_id, pos, {"label": label, "quant_type": label, "text": text,
                                           "is_reference": label == "Q8_0"})
        store.finish_run(run_id, "done")
        run_ids.append(run_id)
    store.set_set_run_status(set_id, "done")
    return set_id, run_ids


def test_set_verdict_reads_the_votes_and_measures_of_a_stored_set(store: Store):
    set_id, run_ids = make_set(store, [
        ("Walk 20 minutes to the station.", "Walk 20 minutes to the station."),
        ("Walk 20 minutes to the station.", "Walk 2 minutes to the station."),
        ("The meeting is on Monday at 9:30 with Jane Smith.", "Bananas are yellow and grow in bunches."),
    ])
    for run_id, winner in zip(run_ids, ("tie", "a", "a"), strict=True):
        ratings.add_vote(store, run_id=run_id, label_a="Q8_0", label_b="Q4_K_M", winner=winner, rater="ann",
                         mode=SET_MODE, session="s1")
    ratings.add_vote(store, run_id=run_ids[0], label_a="Q4_K_M", label_b="Q8_0", winner="a", rater="bob",
                     mode="pairwise")
    got = set_verdict(store, set_id, "Q4_K_M")
    v = got.verdict
    assert (v.reference, v.n_prompts, v.prefer_reference, v.prefer_candidate, v.ties, v.n_raters) == (
        "Q8_0", 3, 2, 1, 1, 2)
    only_set = set_verdict(store, set_id, "Q4_K_M", mode=SET_MODE, session="s1").verdict
    assert (only_set.prefer_reference, only_set.prefer_candidate, only_set.ties) == (2, 0, 1)
    assert only_set.outcome == "too-few"
    [q] = got.quality
    assert (q.label, q.prompts, q.identical, q.same_answer, q.different_answer) == ("Q4_K_M", 3, 1, 1, 1)
    assert q.facts_changed >= 2 and q.prompts_with_changed_facts == 2  # 20 → 2 minutes; the meeting's facts
    assert "changed fact" in got.paragraph and got.paragraph.startswith(v.paragraph)
    with pytest.raises(LookupError):
        set_verdict(store, set_id + 1, "Q4_K_M")


def test_the_verdict_section_of_a_report_escapes_labels_in_html_and_markdown(store: Store):
    from workbench.people.report import verdict_section_html, verdict_section_markdown
    from workbench.people.verdict import SetVerdict, decide, set_quality
    from workbench.storage.rows import StoredResult, StoredRun

    evil = "<script>alert(1)</script>*Q4*"
    run = StoredRun(1, "", "compare", "done", results=(StoredResult(1, 1, 0, "Q8_0", text="Walk 20 minutes."),
                                                       StoredResult(2, 1, 1, evil, text="Walk 2 minutes.")))
    sv = SetVerdict(decide("Q8_0", evil, 12, 11, 7, n_prompts=30), set_quality([run], "Q8_0", [evil]))
    html = verdict_section_html(sv)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "could not tell them apart" in html and "<td>1</td>" in html  # one prompt, one changed fact
    md = verdict_section_markdown(sv)
    assert "<script>" not in md and "\\*Q4\\*" in md and "95% interval 29–67%" in md


def test_p_values_are_worded_for_people():
    from workbench.people.verdict import chance_words

    assert chance_words(0.45) == "could be chance: about 1 in 2"
    assert chance_words(0.0625) == "could be chance: about 1 in 16"
    assert chance_words(1.0) == chance_words(0.8) == "could well be chance"
    assert chance_words(0.008) == "chance would do this about 1 in 125 times"
    assert chance_words(0.0001) == "chance would do this less than 1 in 1,000 times"


def test_any_pair_reads_against_its_own_baseline_and_keeps_the_reference_floor(store: Store):
    """Q4_K_M vs Q2_K, not vs the reference: the measures are Q4_K_M's output against Q2_K's, the noise floor is
    still the reference's own variation (a repeat identical to it), and the words say whose floor it is."""
    from workbench.people.verdict import set_verdicts

    prompts = [{"prompt": "p0"}, {"prompt": "p1"}]
    set_id = store.create_set_run(name="pair", prompts=prompts, labels=["Q8_0", "Q4_K_M", "Q2_K"],
                                  reference_label="Q8_0", settings={}, noise_repeats=1)
    outputs = [("Walk 20 minutes.", "Walk 20 minutes.", "Walk 2 minutes."),
               ("Call Jane at 9:30.", "Call Jane at 9:30.", "Call Jane at 9:30.")]
    for i, texts in enumerate(outputs):
        run_id = store.create_run(settings={}, prompt=prompts[i]["prompt"], reference_label="Q8_0")
        store.tag_set_run_child(run_id, set_id, i)
        for pos, (label, text) in enumerate(zip(("Q8_0", "Q4_K_M", "Q2_K"), texts, strict=True)):
            store.add_result(run_id, pos, {"label": label, "quant_type": label, "text": text,
                                           "is_reference": label == "Q8_0"})
        store.add_reference_repeat(run_id, 0, label="Q8_0", perturbation={"kind": "n_batch", "n_batch": 7},
                                   text=texts[0], completion_tokens=4, stop_reason="stop", error=None)
        store.finish_run(run_id, "done")
    store.set_set_run_status(set_id, "done")
    got = set_verdict(store, set_id, "Q4_K_M", "Q2_K")
    assert (got.verdict.reference, got.verdict.candidate, got.floor_of) == ("Q2_K", "Q4_K_M", "Q8_0")
    q = got.candidate_quality
    assert q is not None and (q.prompts, q.identical, q.prompts_with_changed_facts) == (2, 1, 1)
    assert (q.floor_prompts, q.beyond_floor) == (2, 1)  # 20 → 2 minutes is beyond an identical floor
    assert "Against Q2_K, Q4_K_M's answers" in got.paragraph
    assert "went beyond Q8_0's own variation on 1 of 2 prompts" in got.paragraph
    # every quantization against one baseline: the reference among them, the baseline itself left out
    assert [sv.verdict.candidate for sv in set_verdicts(store, set_id, "Q2_K")] == ["Q8_0", "Q4_K_M"]
