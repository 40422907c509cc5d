"""The noise floor (issue 15): the reference repeated on each prompt, stored with what each repeat changed,
measured like a quantization, and every quantization shown against it.

Runs on the real embedded ladder; the greedy perturbation (the prompt in other micro-batch sizes) is checked
to reach llama.cpp by the worker's own settings, and the measures on handwritten texts."""

from __future__ import annotations

import threading

import pytest

from workbench.quality import noise_floor
from workbench.quality.summary import summarize
from workbench.runs import noise
from workbench.runs.compare import contestants_for, run_contestant
from workbench.runs.contestants import RunSettings
from workbench.runs.prompt_sets import PromptSet, SetPrompt
from workbench.runs.set_runs import SetProgress, SetRunError, run_set, start_set_run
from workbench.storage.store import Store

SMALL = RunSettings(max_tokens=12, n_ctx=256, n_threads=1)


# ---- the plan of repeats ---------------------------------------------------------------------------------
def test_greedy_repeats_vary_the_micro_batch_and_sampled_repeats_the_seed() -> None:
    greedy = noise.perturbations(SMALL, 3)
    assert [p.to_dict() for p in greedy] == [{"kind": "n_batch", "n_batch": 1}, {"kind": "n_batch", "n_batch": 7},
                                             {"kind": "n_batch", "n_batch": 64}]
    assert greedy[0].describe() == "prompt in micro-batches of 1 token"
    sampled = noise.perturbations(RunSettings(temperature=0.8, seed=10), 2)
    assert [p.to_dict() for p in sampled] == [{"kind": "seed", "seed": 11}, {"kind": "seed", "seed": 12}]
    assert noise.Perturbation.from_dict({"kind": "seed", "seed": 11}) == sampled[0]
    assert noise.Perturbation.from_dict({"kind": "rm -rf", "seed": 1}) is None
    assert noise.Perturbation.from_dict({"kind": "seed", "seed": True}) is None
    with pytest.raises(noise.NoiseError, match="between 0 and 8"):
        noise.perturbations(SMALL, 9)


def test_the_micro_batch_size_reaches_llama_cpp(pool, demo_ladder) -> None:
    """The perturbation is real: the worker the repeat ran on reports the micro-batch size it loaded with."""
    ref = contestants_for(demo_ladder, ["Q2_K"])[0]
    result = run_contestant(pool, ref, SMALL, SMALL.messages("Say hi."), n_batch=7)
    assert result.ok and result.settings.get("n_batch") == 7
    default = run_contestant(pool, ref, SMALL, SMALL.messages("Say hi."))
    assert default.settings.get("n_batch") == 256  # min(n_ctx, 512): another worker, not the perturbed one


# ---- the measures ---------------------------------------------------------------------------------------
REFERENCE = "The bridge closes on 3 March for 20 minutes. Use the ferry instead."


def repeat_rows(*texts: str | None, error: str | None = None) -> list[dict]:
    return [{"repeat": k, "text": t, "error": error if t is None else None, "stop_reason": "length",
             "perturbation": {"kind": "n_batch", "n_batch": noise.GREEDY_BATCHES[k - 1]}}
            for k, t in enumerate(texts, start=1)]


def test_an_identical_floor_puts_any_difference_beyond_it() -> None:
    floor = noise_floor.floor_of(REFERENCE, repeat_rows(REFERENCE, REFERENCE))
    assert floor is not None and floor.n == 2 and floor.identical == 2 and floor.max_changed_words == 0
    assert floor.sentence() == "the reference repeated 2 times: identical each time"
    changed = summarize(REFERENCE, REFERENCE.replace("20 minutes", "2 minutes"))
    assert noise_floor.standing(changed, floor) == noise_floor.BEYOND
    assert noise_floor.standing_sentence(changed, floor) == \
        "beyond the reference's own variation (its 2 repeats were identical)"
    assert noise_floor.standing(summarize(REFERENCE, REFERENCE), floor) == noise_floor.WITHIN


def test_a_wandering_reference_absorbs_a_smaller_change_but_not_a_changed_fact() -> None:
    wandering = "The bridge closes on 3 March for 20 minutes. Please take the ferry or the bus instead."
    floor = noise_floor.floor_of(REFERENCE, repeat_rows(wandering, REFERENCE))
    assert floor is not None and floor.identical == 1 and floor.max_changed_words > 0 and floor.max_facts_changed == 0
    reworded = summarize(REFERENCE, "The bridge closes on 3 March for 20 minutes. Take the ferry instead.")
    assert reworded.changed_words <= floor.max_changed_words
    assert noise_floor.standing(reworded, floor) == noise_floor.WITHIN
    fact = summarize(REFERENCE, REFERENCE.replace("3 March", "3 May"))
    assert fact.changed_words <= floor.max_changed_words and fact.facts_changed == 1
    assert noise_floor.standing(fact, floor) == noise_floor.BEYOND  # a changed fact the reference never changed


def test_failed_and_stopped_repeats_are_not_part_of_the_floor() -> None:
    rows = repeat_rows(REFERENCE, None, error="Q8_0: crashed")
    rows.append({"repeat": 3, "text": "half", "stop_reason": "cancelled", "error": None})
    floor = noise_floor.floor_of(REFERENCE, rows)
    assert floor is not None and floor.n == 1 and floor.failed == 1
    assert noise_floor.floor_of(REFERENCE, repeat_rows(None, error="x")) is None
    assert noise_floor.floor_of(REFERENCE, [{"text": 5}, "not a row"]) is None


def test_over_a_set_each_quantization_is_counted_against_its_prompt_floor() -> None:
    prompts = []
    for i in range(8):
        ref = f"Prompt {i}: the parcel arrives on {i + 10} March, in {i + 2} days, by courier."
        q4 = ref if i < 2 else f"Prompt {i}: the parcel will come soon, maybe next week, sent by post."
        prompts.append((i, {"F16": ref, "Q8_0": ref, "Q4_K_M": q4}, repeat_rows(ref, ref)))
    got = noise_floor.set_floor(prompts, "F16", ["F16", "Q8_0", "Q4_K_M"])
    assert [q.label for q in got.quants] == ["Q8_0", "Q4_K_M"]
    q8, q4 = got.quants
    assert (q8.within, q8.beyond, q8.p_value) == (8, 0, None)
    assert (q4.within, q4.beyond) == (2, 6) and q4.p_value is not None and q4.p_value < 0.05
    assert q4.sentence().startswith("Q4_K_M went beyond the reference's own variation on 6 of 8 prompts")
    assert got.sentence() == "Repeated 2 times on each of 8 prompts, the reference was identical to itself every time."
    assert got.to_dict()["quants"][1]["beyond"] == 6


# ---- in a set run, end to end ---------------------------------------------------------------------------
def two_prompts() -> PromptSet:
    return PromptSet("two", [SetPrompt("What is 2+3?"), SetPrompt("The bridge closes on 3 March. When?")])


def test_a_set_run_repeats_the_reference_on_every_prompt_and_resumes_missing_repeats(pool, store: Store,
                                                                                    demo_ladder) -> None:
    set_id = start_set_run(store, two_prompts(), demo_ladder, labels=["Q2_K"], settings=SMALL, noise_repeats=2)
    cancel, seen = threading.Event(), []

    def on_progress(p: SetProgress) -> None:
        seen.append(p)
        if p.phase == "repeat" and p.repeat == 2:
            cancel.set()  # stop as the second repeat (of every prompt, batched) starts

    first = run_set(pool, store, None, set_id, on_progress, cancel)
    assert first.status == "cancelled" and first.finished == 0  # both prompts still owe their second repeat
    assert "reference repeat 1 of 2 (noise floor), batched" in next(p for p in seen if p.phase == "repeat").message()
    children = store.get_set_run(set_id).children
    assert [c.status for c in children] == ["done", "done"]  # both prompts ran; the repeats are what is owed
    for child in children:
        rows = store.reference_repeats(child.run_id)
        assert [(r["repeat"], r["perturbation"], r["label"]) for r in rows] == [
            (1, {"kind": "n_batch", "n_batch": 1}, "F16")]
        assert all(isinstance(r["text"], str) and r["text"] and r["error"] is None for r in rows)
        assert noise.missing_repeats(store, child.run_id, 2) == [2]

    seen.clear()
    again = run_set(pool, store, None, set_id, seen.append)
    assert again.status == "done" and again.finished == 2
    assert not [p for p in seen if p.phase in ("prompt", "batch")]  # no prompt ran again: only the missing repeats
    for child in children:
        rows = store.reference_repeats(child.run_id)
        assert [r["perturbation"] for r in rows] == [{"kind": "n_batch", "n_batch": 1}, {"kind": "n_batch", "n_batch": 7}]
    assert [c.run_id for c in store.get_set_run(set_id).children] == [c.run_id for c in children]


def test_sequential_repeats_without_batching(pool, store: Store, demo_ladder, monkeypatch) -> None:
    """WORKBENCH_BATCH=off: each prompt's repeats follow it, one at a time; a Stop mid-way is resumed the same."""
    monkeypatch.setenv("WORKBENCH_BATCH", "off")
    set_id = start_set_run(store, two_prompts(), demo_ladder, labels=["Q2_K"], settings=SMALL, noise_repeats=2)
    cancel = threading.Event()

    def on_progress(p: SetProgress) -> None:
        if p.phase == "repeat" and p.index == 1 and p.repeat == 1:
            cancel.set()

    assert run_set(pool, store, None, set_id, on_progress, cancel).finished == 1
    assert run_set(pool, store, None, set_id).status == "done"
    children = store.get_set_run(set_id).children
    assert all(noise.missing_repeats(store, c.run_id, 2) == [] for c in children)


def test_repeats_are_refused_before_anything_is_stored(store: Store, demo_ladder) -> None:
    with pytest.raises(SetRunError, match="between 0 and 8"):
        start_set_run(store, two_prompts(), demo_ladder, labels=["Q2_K"], settings=SMALL, noise_repeats=20)
    assert store.list_set_runs() == []


def test_cli_batch_with_noise_reports_the_floor_per_prompt_and_per_quantization(demo_ladder, tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys

    prompts = tmp_path / "p.txt"
    prompts.write_text("What is 2+3?\nName a river.\n")
    proc = subprocess.run([sys.executable, "-m", "workbench", "batch", "--prompts", str(prompts), "--demo",
                           "--labels", "Q2_K", "--max-tokens", "8", "--ctx", "256", "--noise", "2", "--json",
                           "--db", str(tmp_path / "db.sqlite3")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WORKBENCH_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["noise_repeats"] == 2 and out["noise_floor"]["repeats"] == 2
    assert [q["label"] for q in out["noise_floor"]["quants"]] == ["Q2_K"]
    assert out["noise_floor"]["quants"][0]["sentence"].startswith("Q2_K went beyond")
    for p in out["prompts"]:
        assert [r["perturbation"] for r in p["reference_repeats"]] == [{"kind": "n_batch", "n_batch": 1},
                                                                      {"kind": "n_batch", "n_batch": 7}]
        assert p["noise_floor"]["repeats"] == 2
        by_label = {r["label"]: r["vs_noise_floor"] for r in p["results"]}
        assert by_label["F16"] is None and by_label["Q2_K"] in ("within", "beyond")


def test_a_quantization_never_beyond_the_floor_is_said_to_stay_within_it() -> None:
    q = noise_floor.QuantAgainstFloor("Q8_0", 5, 5, 0, 0.0, 0.0, None)
    assert q.sentence() == ("Q8_0 stayed within the reference's own variation on all 5 prompts (it changed 0 words "
                            "on average, the reference's repeats 0).")


def test_compare_page_repeats_the_reference_after_the_contestants_and_places_each_column(demo_ladder) -> None:
    """On Compare, at temperature > 0 (where the reference differs from itself run to run): the repeats use other
    seeds, are stored with the run, and each column says where it stands against them."""
    import time
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    at.multiselect[0].set_value(["Q2_K"])
    at.number_input[0].set_value(16)  # max tokens
    next(n for n in at.number_input if n.label == "Temperature").set_value(0.9)
    at.number_input(key="noise_repeats").set_value(2)
    next(b for b in at.button if b.label == "Run").click()
    at.run()
    deadline = time.monotonic() + 300
    while not at.session_state["run_id"] and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
    run_id = at.session_state["run_id"]
    assert run_id
    rows = Store().reference_repeats(run_id)
    assert [(r["repeat"], r["perturbation"], r["label"]) for r in rows] == [
        (1, {"kind": "seed", "seed": 1}, "F16"), (2, {"kind": "seed", "seed": 2}, "F16")]
    captions = " ".join(c.value for c in at.caption)
    assert "Noise floor: the reference repeated 2 times" in captions and "seed 1, seed 2" in captions, captions
    assert "the reference's own variation (its 2 repeats" in captions or any(
        s.value.startswith("identical to ") for s in at.success), captions


def test_the_set_verdict_paragraph_carries_the_noise_floor(pool, store: Store, demo_ladder) -> None:
    from workbench.people.verdict import set_verdict

    set_id = start_set_run(store, two_prompts(), demo_ladder, labels=["Q2_K"], settings=SMALL, noise_repeats=1)
    assert run_set(pool, store, None, set_id).status == "done"
    sv = set_verdict(store, set_id, "Q2_K")
    assert sv.floor is not None and sv.floor.repeats == 1 and len(sv.floor.floors) == 2
    assert "Repeated 1 time on each of 2 prompts, the reference was" in sv.paragraph
    assert f"{sv.floor.quants[0].sentence()}" in sv.paragraph and sv.paragraph.count("Q2_K") >= 2
    plain = start_set_run(store, two_prompts(), demo_ladder, labels=["Q2_K"], settings=SMALL)
    run_set(pool, store, None, plain)
    assert set_verdict(store, plain, "Q2_K").floor is None and "Repeated" not in set_verdict(store, plain, "Q2_K").paragraph


def test_the_set_report_carries_the_noise_floor(pool, store: Store, demo_ladder) -> None:
    from workbench.people.set_report import set_report_html, set_report_markdown

    set_id = start_set_run(store, two_prompts(), demo_ladder, labels=["Q2_K"], settings=SMALL, noise_repeats=2)
    assert run_set(pool, store, None, set_id).status == "done"
    html, md = set_report_html(store, set_id), set_report_markdown(store, set_id)
    for text in (html, md):
        assert "Noise floor" in text and "Repeated 2 times on each of 2 prompts, the reference was" in text
        assert "noise floor)" in text  # each prompt's cell says within or beyond it
    assert '<section id="noise-floor">' in html and "one-sided Wilcoxon p" in html
    assert "Q2\\_K went beyond" in md or "Q2\\_K stayed within" in md  # Markdown-escaped label
    plain = start_set_run(store, two_prompts(), demo_ladder, labels=["Q2_K"], settings=SMALL)
    run_set(pool, store, None, plain)
    assert "Noise floor" not in set_report_html(store, plain)


def test_a_compare_run_with_repeats_reports_its_floor(pool, store: Store, demo_ladder) -> None:
    from workbench.people.report import report_html, report_markdown
    from workbench.runs.compare import run_comparison

    contestants = contestants_for(demo_ladder, ["Q2_K"])
    comparison = run_comparison(pool, contestants, "Name a river.", SMALL, store=store)
    reference = next(c for c in contestants if c.is_reference)
    assert noise.run_repeats(pool, store, comparison.run_id, reference, SMALL, SMALL.messages("Name a river."), 2) == 2
    assert noise.run_repeats(pool, store, comparison.run_id, reference, SMALL, SMALL.messages("Name a river."), 2) == 0
    html, md = report_html(store, [comparison.run_id], n_boot=10), report_markdown(store, [comparison.run_id])
    for text in (html, md):
        assert "Noise floor: the reference repeated 2 times" in text and "micro-batches of 1, micro-batches of 7" in text
        assert "own variation (its 2 repeat" in text
