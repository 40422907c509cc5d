"""Recommend reads the user's own prompts (issue 23: "holds" defined from the evidence): a real prompt set run with a
noise floor on the demo ladder gives each quantization its standing against the reference's own variation, a KV
variant no set run measured takes its file's, and an imported copy of the same set run decides nothing (issue 24)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.decide.evidence import CandidateKey, candidate_keys, gather
from workbench.decide.prompt_evidence import prompt_floors
from workbench.decide.recommend import Constraints
from workbench.decide.study import study, study_json
from workbench.models.ladder import Ladder
from workbench.people import history
from workbench.runs.contestants import RunSettings
from workbench.runs.prompt_sets import PromptSet, SetPrompt
from workbench.runs.set_runs import run_set, start_set_run
from workbench.storage.store import Store

PROMPTS = PromptSet("our prompts", [SetPrompt("What is 2+3? Answer with a sentence."),
                                    SetPrompt("Name three colours of the rainbow."),
                                    SetPrompt("Say when the train leaves: it leaves at 9:15 from platform 4.")])


@pytest.fixture(scope="module")
def set_db(pool, demo_ladder: Ladder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompt-evidence") / "w.sqlite3"
    store = Store(path)
    set_id = start_set_run(store, PROMPTS, demo_ladder, labels=["Q8_0", "Q2_K"], noise_repeats=2,
                           settings=RunSettings(max_tokens=24, n_ctx=512, n_threads=1))
    assert run_set(pool, store, demo_ladder, set_id).status == "done"
    return path


def test_each_file_the_set_ran_has_its_standing_and_its_kv_variants_inherit_it(set_db: Path, demo_ladder: Ladder):
    store = Store(set_db)
    floors = prompt_floors(store, demo_ladder)
    assert set(floors) == {"Q8_0", "Q2_K"}  # the reference is the floor, not a candidate against it
    for p in floors.values():
        assert p.prompts == 3 and 0 <= p.beyond <= 3 and p.reference == "F16" and p.inherited_from is None
        assert p.words().startswith("on your prompts its answers ") and f"set run #{p.set_run_id}, measured" in p.words()
    evidence = gather(store, demo_ladder, candidate_keys(demo_ladder, ["f16", "q8_0"]))
    assert evidence[CandidateKey("Q2_K")].prompts == floors["Q2_K"]
    inherited = evidence[CandidateKey("Q2_K", "q8_0", "q8_0")].prompts
    assert inherited is not None and inherited.inherited_from == "Q2_K" and inherited.beyond == floors["Q2_K"].beyond
    assert evidence[CandidateKey("Q4_K_M")].prompts is None  # the set did not run it
    assert evidence[CandidateKey("F16")].prompts is None and evidence[CandidateKey("F16", "q8_0", "q8_0")].prompts is None
    s = study(store, demo_ladder, Constraints("this machine", 4096), ["f16", "q8_0"])
    row = next(c for c in study_json(s)["candidates"] if c["label"] == "Q2_K")
    assert row["quality"]["prompts"]["prompts"] == 3 and row["quality"]["prompts"]["words"] == floors["Q2_K"].words()
    check = next(c for a in s.recommendation.assessments if a.facts.label == "Q2_K" for c in a.checks
                 if c.name == "prompts")
    assert check.words == floors["Q2_K"].words() and check.status == ("fail" if floors["Q2_K"].beyond_floor else "pass")


def test_an_imported_set_run_decides_nothing(set_db: Path, demo_ladder: Ladder, tmp_path: Path):
    copy = Store(tmp_path / "copy.sqlite3")
    history.import_json(copy, history.export_json_bytes(Store(set_db)), origin="another machine.json")
    assert copy.list_set_runs()  # it is there, shown on Prompt sets ...
    assert prompt_floors(copy, demo_ladder) == {}  # ... and never evidence for the pick
    evidence = gather(copy, demo_ladder, candidate_keys(demo_ladder))
    assert all(e.prompts is None for e in evidence.values())
