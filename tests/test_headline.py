"""The headline rules (workbench.people.headline, docs/headlines.md) on evidence built by hand: agreeing,
disagreeing, too few votes, no votes, no noise floor, nothing measured; and the default pair of a fresh ladder."""

from __future__ import annotations

import pytest

from workbench.files.quant_names import default_pair
from workbench.people import headline as hl
from workbench.people.verdict import decide
from workbench.storage.rows import StoredResult, StoredRun

C, B = "Q4_K_M", "Q8_0"


def ev(**kw) -> hl.PairEvidence:
    base = dict(candidate=C, baseline=B, prompts=10, prompts_with_changed_facts=9, facts_changed=24,
                different_answers=6, floor_prompts=10, beyond_floor=10, floor_of="F16")
    return hl.PairEvidence(**{**base, **kw})


def test_the_issue_example_facts_beyond_the_floor_but_people_cannot_yet_tell():
    """Blind votes 5/2/3 (p = 0.45) must not read "no difference" when facts changed beyond the noise floor."""
    h = hl.headline(ev(verdict=decide(B, C, 5, 2, 3, n_prompts=10)))
    assert (h.machine, h.people, h.disagreement) == (hl.CHANGED, hl.CANNOT_TELL, True)
    assert h.sentence == ("Q4_K_M changed facts on 9 of 10 prompts, beyond F16's own variation on all 10; yet in 10 "
                          "blind comparisons people could not yet tell it from Q8_0 (too few votes to be sure; could "
                          "be chance: about 1 in 2).")
    assert h.advice == "Keep Q8_0, or collect more votes."
    assert "no detectable difference" not in h.text and "no difference" not in h.text
    assert h.details[0].startswith("The evidence disagrees")
    assert any("sign test" in d and "p = 0.45" in d for d in h.details)  # the test's name lives in the details
    assert any("always F16's own variation" in d for d in h.details)


def test_agreeing_evidence_changed_and_people_prefer_the_baseline():
    h = hl.headline(ev(verdict=decide(B, C, 15, 3, 2, n_prompts=20)))
    assert (h.people, h.disagreement) == (hl.PREFERS_BASELINE, False)
    assert "people preferred Q8_0 (chance would do this about 1 in 133 times)" in h.sentence
    assert "; yet " not in h.sentence and h.advice == "Keep Q8_0."


def test_agreeing_evidence_the_same_and_people_cannot_tell_with_many_votes():
    same = ev(prompts_with_changed_facts=0, facts_changed=0, different_answers=0, beyond_floor=0)
    h = hl.headline(same.__class__(**{**same.__dict__, "verdict": decide(B, C, 12, 11, 7, n_prompts=30)}))
    assert (h.machine, h.people, h.disagreement) == (hl.SAME, hl.CANNOT_TELL, False)
    assert h.sentence.startswith("Q4_K_M gave the same answers as Q8_0 on all 10 prompts, no fact changed, within "
                                 "F16's own variation; in 30 blind comparisons people could not tell it from Q8_0")
    assert "not yet" not in h.sentence and "not proof they are equal" in h.sentence  # 23 decided: past SURE_DECIDED
    assert h.advice == "Q4_K_M will do for these prompts."


def test_too_few_votes_never_reads_as_no_difference():
    for verdict in (decide(B, C, 3, 0, 1, n_prompts=4), decide(B, C, 0, 0, 3, n_prompts=3)):
        h = hl.headline(ev(verdict=verdict))
        assert h.people == hl.TOO_FEW and not h.disagreement
        assert "too few to say whether people notice" in h.sentence
        assert "could not" not in h.sentence and "no difference" not in h.text
        assert h.advice.startswith("Keep Q8_0 for now")


def test_no_votes_and_no_noise_floor():
    h = hl.headline(ev(floor_prompts=None, beyond_floor=0))
    assert (h.machine, h.people, h.disagreement) == (hl.CHANGED, hl.NO_VOTES, False)
    assert h.sentence == ("Q4_K_M changed facts on 9 of 10 prompts (no noise floor, so some of it may be ordinary "
                          "run-to-run variation); nobody has compared them blind yet.")
    assert any(d.startswith("No noise floor (the reference was not repeated)") for d in h.details)


def test_facts_changed_but_within_the_floor_reads_same_and_says_so():
    h = hl.headline(ev(prompts_with_changed_facts=2, facts_changed=2, beyond_floor=0, floor_of="Q8_0"))
    assert h.machine == hl.SAME
    assert h.sentence.startswith("Q4_K_M changed facts on 2 of 10 prompts, but no more than the reference's own "
                                 "variation when it is run again")


def test_disagreeing_the_other_way_people_prefer_the_baseline_the_machine_sees_nothing():
    h = hl.headline(ev(prompts_with_changed_facts=0, facts_changed=0, different_answers=0, beyond_floor=0,
                       verdict=decide(B, C, 9, 0, 1, n_prompts=10)))
    assert (h.machine, h.people, h.disagreement) == (hl.SAME, hl.PREFERS_BASELINE, True)
    assert "; yet in 10 blind comparisons people preferred Q8_0" in h.sentence
    assert "until then keep Q8_0" in h.advice
    h2 = hl.headline(ev(verdict=decide(B, C, 1, 9, 0, n_prompts=10)))  # people like the one that changed facts
    assert (h2.people, h2.disagreement) == (hl.PREFERS_CANDIDATE, True)
    assert "check its changed facts" in h2.advice


def test_nothing_measured_and_divergence_in_the_details():
    h = hl.headline(hl.PairEvidence(C, B, 0))
    assert (h.machine, h.people) == (hl.UNKNOWN, hl.NO_VOTES)
    assert h.sentence.startswith("Q4_K_M has no answers to set against Q8_0's yet")
    one = hl.headline(hl.PairEvidence(C, B, 1, mean_kld=0.052))
    assert one.sentence.startswith("Q4_K_M gave the same answer as Q8_0, no fact changed")
    assert any("moved a little" in d and "0.052" in d for d in one.details)
    with pytest.raises(ValueError):
        hl.PairEvidence(C, B, -1)


def test_default_pair_is_the_smallest_common_quant_against_the_eight_bit_one():
    assert default_pair(["F16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K"], "F16") == ("Q4_K_M", "Q8_0")
    assert default_pair(["F16", "Q8_0", "Q5_K_M", "Q2_K"], "F16") == ("Q5_K_M", "Q8_0")  # no Q4_K_M: ≥ 4 bits
    assert default_pair(["F16", "Q4_K_M", "Q2_K"], "F16") == ("Q4_K_M", "F16")  # no 8-bit: the reference
    assert default_pair(["F16", "Q2_K"], None) == ("Q2_K", "F16")
    assert default_pair(["F16", "Q8_0", "Q2_K"], "F16") == ("Q2_K", "Q8_0")  # never "F16 vs Q8_0"
    assert default_pair(["a", "b"], "a", quant_of={"a": "Q8_0", "b": "Q4_K_M"}) == ("b", "a")
    assert default_pair(["Q8_0"], "Q8_0") is None


def test_one_run_any_pair_with_the_reference_floor_and_votes():
    """One prompt's run: Q4_K_M vs Q8_0 read from their own outputs; the floor is F16's repeats (identical, so the
    changed duration is beyond it); pairwise votes between the two count, others do not."""
    run = StoredRun(1, "", "compare", "done", results=(
        StoredResult(1, 1, 0, "F16", text="Walk 20 minutes to the station.", is_reference=True),
        StoredResult(2, 1, 1, "Q8_0", text="Walk 20 minutes to the station."),
        StoredResult(3, 1, 2, "Q4_K_M", text="Walk 2 minutes to the station."),
        StoredResult(4, 1, 3, "Q2_K", error="worker died"),
    ))
    repeats = [{"text": "Walk 20 minutes to the station.", "perturbation": {"kind": "n_batch", "n_batch": 7}}]
    votes = [{"run_id": 1, "label_a": "Q8_0", "label_b": "Q4_K_M", "winner": "a", "rater": r} for r in "abc"]
    votes.append({"run_id": 1, "label_a": "F16", "label_b": "Q4_K_M", "winner": "b", "rater": "d"})  # another pair
    e = hl.run_evidence(run, C, B, repeats, votes=votes)
    assert (e.prompts, e.prompts_with_changed_facts, e.facts_changed, e.floor_prompts, e.beyond_floor, e.floor_of) == (
        1, 1, 1, 1, 1, "F16")
    assert e.verdict is not None and (e.verdict.prefer_reference, e.verdict.votes) == (3, 3)
    h = hl.headline(e)
    assert h.sentence == ("Q4_K_M changed 1 fact, beyond F16's own variation; 3 blind comparisons are too few to say "
                          "whether people notice (3 decided so far; it takes at least 6).")
    assert hl.run_evidence(run, "Q2_K", B).prompts == 0  # a failed output is no evidence
    same = hl.headline(hl.run_evidence(run, "Q8_0", "F16", repeats))
    assert same.machine == hl.SAME and same.sentence.startswith("Q8_0 gave the same answer as F16, no fact changed, "
                                                                "within the reference's own variation")
