"""The Prompt sets page in Streamlit's headless AppTest, on the real embedded ladder."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def table_with(at: AppTest, column: str):
    """The first table on the page with this column (a read-only st.dataframe has no key AppTest can find)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def sets_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.switch_page("pages/sets.py")
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Prompt sets"
    return at


def test_pasted_set_runs_and_shows_one_row_per_prompt_and_quantization(demo_ladder):
    before = {r.id for r in Store().list_set_runs()}
    at = sets_page()
    at.text_area(key="sets-paste").set_value("Name a colour.\nCount to three.\n")
    at.run()
    assert any("2 prompts" in c.value for c in at.caption)
    at.multiselect(key=f"sets-quants-{demo_ladder.directory}").set_value(["Q8_0", "Q2_K"])
    at.number_input(key="sets-max-tokens").set_value(8)
    at.button(key="sets-run").click()
    at.run()  # follows the job to its end, then reruns to show the results
    assert not at.exception, at.exception

    new = [r for r in Store().list_set_runs() if r.id not in before]
    assert len(new) == 1 and new[0].n_finished == new[0].n_prompts == 2 and new[0].status == "done"
    # the question a fresh set is asked first: the smallest common quantization against the 8-bit one, answered in
    # one sentence from the stored outputs; every measure then reads against Q8_0 (F16, the reference, included)
    pair_key = f"sets-pair-{new[0].id}"
    assert at.selectbox(key=f"{pair_key}-baseline").value == "Q8_0"
    assert at.selectbox(key=f"{pair_key}-candidate-Q8_0").value == "Q2_K"
    from workbench.people.headline import set_headline
    from workbench.people.verdict import set_verdict

    head = set_headline(set_verdict(Store(), new[0].id, "Q2_K", "Q8_0"))
    assert head.people == "no-votes" and head.sentence.startswith("Q2_K ")
    boxes = " ".join([b.value for b in at.info] + [b.value for b in at.warning]).replace("\\", "")
    assert head.sentence in boxes and head.advice in boxes
    pair_table = table_with(at, "summary")
    assert sorted(set(pair_table["quantization"])) == ["F16", "Q2_K"]  # both against the baseline Q8_0
    assert "vs noise floor" in pair_table.columns  # the floor stays the reference's own variation
    # any pair, after the run: the reference as the baseline gives the old view
    at.selectbox(key=f"{pair_key}-baseline").set_value("F16")
    at.run()
    assert not at.exception, at.exception
    table = table_with(at, "summary")
    assert len(table) == 4  # 2 prompts × 2 quantizations (the reference is what they are measured against)
    assert sorted(zip(table["prompt #"], table["quantization"], strict=True)) == [(1, "Q2_K"), (1, "Q8_0"), (2, "Q2_K"), (2, "Q8_0")]
    assert all(isinstance(s, str) and s for s in table["summary"])
    assert all(any(w in s for w in ("identical", "same", "different", "spacing")) for s in table["summary"])
    totals = table_with(at, "different answer")
    assert list(totals["quantization"]) == ["Q8_0", "Q2_K"] and list(totals["prompts"]) == [2, 2]
    # the noise floor is on by default (2 repeats of the reference per prompt), stored and shown
    stored = Store().get_set_run(new[0].id)
    assert stored.noise_repeats == 2
    assert all(len(Store().reference_repeats(c.run_id)) == 2 for c in stored.children)
    assert set(table["vs noise floor"]) <= {"within", "beyond"} and len(table["vs noise floor"]) == 4
    assert all(v.endswith(" of 2") for v in totals["beyond noise floor"])
    floor_text = " ".join(m.value for m in at.markdown if "Noise floor" in m.value).replace("\\", "")
    assert "Repeated 2 times on each of 2 prompts" in floor_text and "Q2_K went" in floor_text, floor_text
    # one prompt's answers read as prose, each quantization with its summary line (the reader, prompt 2)
    at.selectbox(key=f"sets-results-{new[0].id}-read").set_value(1)
    at.run()
    assert not at.exception, at.exception
    html = " ".join(h.proto.body for h in at.get("html"))
    assert html.count("wb-prose") >= 3  # the reference and both quantizations, as prose
    assert any("Noise floor: the reference repeated 2 times" in c.value for c in at.caption)

    # History lists the set run and opens it here
    at.switch_page("pages/history.py")
    at.run()
    assert not at.exception, at.exception
    hist = table_with(at, "set run")
    assert new[0].id in list(hist["set run"])
    at.button(key="hist-sets-open").click()
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Prompt sets"
    assert at.selectbox(key="sets-pick").value == new[0].id


def test_a_bad_upload_shows_line_numbered_errors_and_runs_nothing(demo_ladder):
    before = len(Store().list_set_runs())
    at = sets_page()
    at.radio(key="sets-source").set_value("Upload a file")
    at.run()
    bad = b'{"prompt": "fine"}\n{"system": "no prompt here"}\nnot json\n'
    at.file_uploader(key="sets-upload").set_value(("ours.jsonl", bad, "application/jsonl"))
    at.run()
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "ours.jsonl" in errors and "line 2: no \"prompt\" field" in errors and "line 3: not JSON" in errors, errors
    assert at.button(key="sets-run").disabled
    assert len(Store().list_set_runs()) == before


def test_an_unfinished_set_run_offers_resume_and_escapes_its_prompts(demo_ladder):
    """A set run stored but never run (its process ended): the page offers Resume, which runs it to the end;
    prompt text with Markdown and HTML shows as written."""
    from workbench.runs.contestants import RunSettings
    from workbench.runs.prompt_sets import parse_prompt_set
    from workbench.runs.set_runs import start_set_run

    hostile = "Say **hi** <b>now</b> [x](http://evil.example)"
    prompt_set = parse_prompt_set(f"{hostile}\nName a fruit.\n", "lines", name="<i>ours</i>")
    set_run_id = start_set_run(Store(), prompt_set, demo_ladder, labels=["Q2_K"], settings=RunSettings(max_tokens=6))
    older = start_set_run(Store(), prompt_set, demo_ladder, labels=["Q8_0"], settings=RunSettings(max_tokens=6))
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["sets_run_id"] = set_run_id  # as History's button leaves it
    at.switch_page("pages/sets.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="sets-pick").value == set_run_id != older
    assert any("No prompt has finished yet" in c.value for c in at.caption)
    at.button(key=f"sets-resume-{set_run_id}").click()
    at.run()
    assert not at.exception, at.exception
    stored = Store().get_set_run(set_run_id)
    assert stored is not None and stored.status == "done" and len(stored.children) == 2
    table = table_with(at, "summary")
    assert list(table["quantization"]) == ["Q2_K", "Q2_K"]
    labels = [e.label for e in at.expander]
    first = next(label for label in labels if label.startswith(r"1\."))
    assert r"\*\*hi\*\*" in first and r"\<b\>" in first and "http\u2060:" in first
    assert not any(b.key == f"sets-resume-{set_run_id}" for b in at.button)  # nothing left to resume

    # each prompt opens its own comparison run in Compare
    at.button(key=f"sets-results-{set_run_id}-open-1").click()
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Compare quantizations"
    assert at.session_state["run_id"] == stored.child(1).run_id


def test_a_reloaded_page_follows_the_running_set_run_and_offers_resume_after_stop(demo_ladder, pool):
    """A session that lost the job id (a reload) finds the running set run's job, follows it to its end (here a
    Stop once Q2_K has answered a prompt, one sequence at a time), and then offers to resume the unfinished
    prompts, showing what was answered meanwhile."""
    import threading
    import time

    from ui.shared import jobs
    from workbench.runs.contestants import RunSettings
    from workbench.runs.prompt_sets import parse_prompt_set
    from workbench.runs.set_runs import SetRunJob, start_set_run

    prompt_set = parse_prompt_set("Name a colour.\nName a fruit.\nName a river.\n", "lines", name="stop me")
    set_run_id = start_set_run(Store(), prompt_set, demo_ladder, labels=["Q2_K"], settings=RunSettings(max_tokens=48))
    job = jobs().start(SetRunJob(pool, Store(), set_run_id, ladder=demo_ladder, n_seq=1))

    def stop_after_first_prompt() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not job.finished:
            progress = job.snapshot()["progress"] or {}
            if progress.get("label") == "Q2_K" and progress.get("answered", 0) >= 1:
                job.stop()
                return
            time.sleep(0.02)

    stopper = threading.Thread(target=stop_after_first_prompt, daemon=True)
    stopper.start()
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["sets_run_id"] = set_run_id
    at.switch_page("pages/sets.py")
    at.run()  # follows the job found in the registry until the Stop ends it
    stopper.join(10)
    assert not at.exception, at.exception
    assert job.cancelled
    stored = Store().get_set_run(set_run_id)
    assert stored is not None and stored.status == "cancelled"
    # batched: the three prompts ran together; a prompt both files answered before the Stop is finished
    answered = [len(Store().get_run(c.run_id).results) == 2 for c in stored.children]
    assert [c.status for c in stored.children] == ["done" if a else "cancelled" for a in answered]
    finished = sum(answered)
    assert 1 <= finished < 3
    resume = at.button(key=f"sets-resume-{set_run_id}")
    assert resume.label == f"Resume: run the {3 - finished} unfinished prompt{'s' if 3 - finished != 1 else ''}"
    assert len(table_with(at, "summary")) == finished
