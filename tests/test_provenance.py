"""Every figure can be traced (issue 24): an imported figure never decides what Recommend picks or what the speed
calibration says, it is shown labelled with where it came from; an import holding a figure no measurement could give
(a negative KLD, NaN, an agreement above 1, an integer beyond 64 bits, a lone surrogate) is refused whole, naming the
field; and nothing the app stores is refused when its own backup is imported back.

The database is real SQLite; the local evidence rows carry the divergences measured on the demo ladder (see
/work/shared/ENVIRONMENT.md), the forged export is made the way a forger would: a real export, edited.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from workbench.cli.main import main
from workbench.core.hardware import MemoryBandwidth
from workbench.decide import report, speed
from workbench.decide.evidence import CandidateKey
from workbench.decide.recommend import Constraints
from workbench.decide.study import study
from workbench.decide.targets import THIS_MACHINE
from workbench.models.ladder import Ladder
from workbench.people import history
from workbench.runs.compare import contestants_for
from workbench.runs.contestants import RunSettings
from workbench.runs.jobs import ComparisonJob
from workbench.runs.prompt_sets import PromptSet, SetPrompt
from workbench.runs.set_runs import SetRunError, start_set_run
from workbench.storage.limits import MAX_SET_PROMPTS, MAX_TEXT_BYTES
from workbench.storage.store import DivergenceRow, Store

MEASURED = {"Q8_0": 0.004, "Q5_K_M": 0.070, "Q4_K_M": 0.054, "Q2_K": 0.44}  # teacher-forced on the demo ladder
FORGER = {"cpu_model": "Forger 9000", "logical_cores": 64}
# the smallest candidate whose measured KLD is at most 0.1: Q4_K_M; a Q2_K at KLD 0.0001 would take its place
CONSTRAINTS = ["--prefer", "memory", "--max-kld", "0.1", "--kv", "f16"]


def _divergence_run(store: Store, ladder: Ladder, klds: dict[str, float], machine: dict | None = None) -> int:
    run = store.create_run(settings={}, kind="diverge-text", ladder=ladder.to_dict(), reference_label="F16",
                           machine=machine)
    rows = [DivergenceRow(label, label, "/x.gguf", False, None,
                          {"n_tokens": 4096, "mean_kld": kld, "top1_agreement": 0.999 if kld < 0.01 else 0.9}, {})
            for label, kld in klds.items()]
    store.replace_divergence(run, "text", "F16", {}, "2026-11-30T00:00:00",
                             [DivergenceRow("F16", "F16", "/x.gguf", True, None, {"n_tokens": 4096, "mean_kld": 0.0}, {}),
                              *rows])
    store.finish_run(run, "done")
    return run


def _forged_export(tmp_path: Path, ladder: Ladder) -> dict:
    """What issue 24 describes: under the demo ladder's own name, a divergence run claiming Q2_K has mean KLD
    0.0001, an eval where Q2_K passes 5 of 5, blind votes and ratings for Q2_K, and a blazing decode speed."""
    other = Store(tmp_path / "forger.sqlite3")
    _divergence_run(other, ladder, {"Q2_K": 0.0001}, FORGER)
    e = other.create_run(settings={}, kind="eval", ladder=ladder.to_dict(), reference_label="F16", machine=FORGER)
    other.add_eval_run(e, pack_name="starter", pack_source=None, categories=None, case_limit=None, contestants=[],
                       cases=[])
    for case in range(5):
        for label in ("F16", "Q2_K"):
            other.save_eval_result(e, {"case_id": f"c{case}", "category": "x", "label": label, "quant_type": label,
                                       "passed": True, "detail": "", "output": "", "error": None, "stop_reason": "stop",
                                       "completion_tokens": 3, "decode_tok_s": 9.0, "total_s": 1.0})
    c = other.create_run(settings={"n_threads": 1}, prompt="p", kind="compare", ladder=ladder.to_dict(),
                         reference_label="F16", machine=FORGER)
    for i, f in enumerate(f for f in ladder.files if f.label in ("F16", "Q2_K")):
        other.add_result(c, i, {"label": f.label, "quant_type": f.quant_type, "file": f.path, "text": "t",
                                "is_reference": f.label == "F16", "completion_tokens": 64, "decode_steps": 64,
                                "decode_tok_s": 1e6})
    for rater in ("a", "b", "c"):
        other.add_vote(run_id=c, label_a="F16", label_b="Q2_K", winner="b", rater=rater, session=None, mode="blind",
                       comment=None)
        other.add_rating(run_id=c, label="Q2_K", score=5, rater=rater)
    other.finish_run(c, "done")
    return history.export_data(other)


@pytest.fixture()
def local_db(tmp_path: Path, demo_ladder: Ladder) -> Path:
    path = tmp_path / "workbench.sqlite3"
    _divergence_run(Store(path), demo_ladder, MEASURED)
    return path


def _words(reasons: list[str]) -> list[str]:
    """Reasons without the memory left and speeds, which follow this machine's free RAM from one call to the next."""
    return [re.sub(r"[\d.]+ (GiB|MiB|tok/s)", "#", r) for r in reasons]


def _recommend_json(db: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    main(["recommend", "--demo", "--json", "--db", str(db), *CONSTRAINTS])
    return json.loads(capsys.readouterr().out)


def test_a_forged_import_changes_neither_the_pick_nor_the_figures_and_is_shown_labelled(
        local_db: Path, tmp_path: Path, demo_ladder: Ladder, capsys: pytest.CaptureFixture[str]) -> None:
    before = _recommend_json(local_db, capsys)
    assert before["recommended"] == "Q4_K_M"
    history.import_json(Store(local_db), _forged_export(tmp_path, demo_ladder), origin="forged.json")
    after = _recommend_json(local_db, capsys)
    assert after["recommended"] == before["recommended"] and _words(after["reasons"]) == _words(before["reasons"])
    q2 = next(c for c in after["candidates"] if c["label"] == "Q2_K")
    assert q2["quality"] == next(c for c in before["candidates"] if c["label"] == "Q2_K")["quality"]
    assert q2["quality"]["mean_kld"] == 0.44 and q2["quality"]["eval_passed"] is None and q2["quality"]["votes"] is None
    assert q2["quality"]["kld_how"].startswith("measured here: teacher-forced")
    assert q2["measured_here"] is None  # the forged 1e6 tok/s is another machine's, if anyone's
    # the forged figures are there, but only as imported, with their origin, and not used
    assert len(q2["imported"]) == 1, q2["imported"]
    imported = q2["imported"][0]
    assert imported["mean_kld"] == 0.0001 and (imported["eval_passed"], imported["eval_cases"]) == (5, 5)
    assert imported["rating_mean"] == 5 and imported["used_for_decision"] is False
    assert imported["provenance"]["kind"] == "imported" and imported["provenance"]["machine"] == "Forger 9000 (64 threads)"
    assert imported["label"].startswith("imported from Forger 9000 (64 threads), 20")
    assert imported["label"].endswith("not used for the decision")
    assert "votes 0 for F16, 3 for it" in imported["figures"]
    assert all(not c["imported"] for c in after["candidates"] if c["label"] not in ("Q2_K", "F16"))  # F16: its evals

    capsys.readouterr()
    main(["recommend", "--demo", "--db", str(local_db), *CONSTRAINTS])
    text = capsys.readouterr().out
    assert "Recommended: Q4_K_M" in text
    assert "Q2_K: mean KLD 0.0001" in text.split("Imported from other machines (shown, never used for the pick):")[1]

    s = study(Store(local_db), demo_ladder, Constraints(THIS_MACHINE, 8192, None, 0.1, "memory"), ("f16",))
    ev = s.evidence[CandidateKey("Q2_K")]
    assert ev.divergence is not None and ev.divergence.provenance.measured_here and ev.evals is None
    assert "eval" in ev.missing() and "votes" in ev.missing()  # an import is not evidence here
    md = report.report_markdown(s)
    assert "## Imported evidence" in md and "mean KLD 0.0001" in md and "not used for the decision" in md
    evidence_section = md.split("## Evidence")[1].split("## Imported evidence")[0]
    assert "0.0001" not in evidence_section  # never mixed into the measured evidence


def test_the_leaderboard_says_which_judgements_are_on_imported_runs(store: Store, tmp_path: Path,
                                                                    demo_ladder: Ladder) -> None:
    from workbench.people.leaderboard import leaderboard

    assert not any("imported" in n for n in leaderboard(store, n_boot=10).notes)
    history.import_json(store, _forged_export(tmp_path, demo_ladder), origin="forged.json")
    notes = leaderboard(store, n_boot=10).notes
    assert "3 of the votes and 3 of the ratings are on imported runs (outputs made on another machine); Recommend " \
           "uses none of them." in notes, notes


def test_imports_never_push_this_machines_measurements_out_of_the_window(local_db: Path, tmp_path: Path,
                                                                         demo_ladder: Ladder) -> None:
    store = Store(local_db)
    history.import_json(store, _forged_export(tmp_path, demo_ladder), origin="forged.json")
    rows = store.ladder_divergence(demo_ladder.name, limit=1)  # one run of each: the local one is still read
    assert {r["imported_from"] is None for r in rows} == {True, False}
    assert {r["imported_from"] is None for r in store.ladder_eval_results(demo_ladder.name, limit=1)} == {False}


def test_an_imported_speed_never_calibrates(local_db: Path, tmp_path: Path, demo_ladder: Ladder) -> None:
    store = Store(local_db)
    bw = MemoryBandwidth(gbs=10.0, threads=1, array_bytes=1 << 20, repeats=1, cpu_fingerprint="x",
                         measured_at="2026-12-07T00:00:00")
    before = speed.calibrate(store, bandwidth=bw)
    history.import_json(store, _forged_export(tmp_path, demo_ladder), origin="forged.json")
    after = speed.calibrate(store, bandwidth=bw)
    assert (after.samples, after.efficiency) == (before.samples, before.efficiency) == (0, None)


def _export_with_divergence(tmp_path: Path, ladder: Ladder) -> dict:
    other = Store(tmp_path / "source.sqlite3")
    _divergence_run(other, ladder, {"Q8_0": 0.004})
    return history.export_data(other)


def _divergence_row(data: dict) -> dict:
    return next(r for r in data["runs"][0]["divergence"] if r["label"] == "Q8_0")


HOSTILE_VALUES = {  # what the field holds → what the message must say
    "KLD -5": ("mean_kld", -5, "mean_kld must be 0 or more (a KL divergence is never negative), got -5"),
    "KLD NaN": ("mean_kld", "NaN", "mean_kld must be a finite number, got nan"),
    "KLD infinite": ("max_kld", "Infinity", "max_kld must be a finite number, got inf"),
    "top-1 above 1": ("top1_agreement", 1.5, "top1_agreement is a fraction and must lie between 0 and 1, got 1.5"),
    "negative tokens": ("n_tokens", -1, "n_tokens must be 0 or more"),
    "perplexity below 1": ("ppl", 0.5, "ppl is a perplexity and cannot be below 1"),
    "2**70": ("n_tokens", 2**70, "n_tokens is beyond the 64-bit range a database integer may hold"),
    "5,000 digits": ("n_tokens", "9" * 5000, "n_tokens must be a whole number, got a 5,000-digit integer"),
    "lone surrogate": ("label", "\\ud800", "label holds a lone surrogate"),
    "mean above max": ("max_kld", 0.001, "mean_kld 0.004 is above max_kld 0.001"),
}


@pytest.mark.parametrize("case", list(HOSTILE_VALUES), ids=list(HOSTILE_VALUES))
def test_an_impossible_figure_is_refused_whole_naming_the_field(case: str, tmp_path: Path, demo_ladder: Ladder,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    field, value, words = HOSTILE_VALUES[case]
    data = _export_with_divergence(tmp_path, demo_ladder)
    _divergence_row(data)[field] = "@@HOSTILE@@"
    raw = json.dumps(data).replace('"@@HOSTILE@@"', f'"{value}"' if field == "label" else str(value))
    target = Store(tmp_path / "target.sqlite3")
    _divergence_run(target, demo_ladder, MEASURED)
    rows_before = {t: target.table_rows(t) for t in ("runs", "divergence")}
    with pytest.raises(history.ImportFileError) as info:
        history.import_json(target, raw.encode())
    assert words in str(info.value) and "divergence row" in str(info.value), str(info.value)
    assert {t: target.table_rows(t) for t in ("runs", "divergence")} == rows_before  # all or nothing
    # and the command line says it in one line, with no traceback
    path = tmp_path / "hostile.json"
    path.write_text(raw)
    capsys.readouterr()
    assert main(["import", str(path), "--db", str(tmp_path / "target.sqlite3")]) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_hostile_value_handed_over_as_data_is_refused_too(tmp_path: Path, demo_ladder: Ladder) -> None:
    data = _export_with_divergence(tmp_path, demo_ladder)
    for value, words in ((10**5000, "n_tokens must be a whole number, got a 5,001-digit integer"),
                         (2**70, "n_tokens is beyond the 64-bit range"), (float("nan"), "n_tokens must be a finite"),
                         ("\ud800", "quant_type holds a lone surrogate")):
        bad = copy.deepcopy(data)
        _divergence_row(bad)["quant_type" if isinstance(value, str) else "n_tokens"] = value
        with pytest.raises(history.ImportFileError, match=words):
            history.import_json(Store(tmp_path / "target.sqlite3"), bad)
    bad = copy.deepcopy(data)  # inside a JSON column, where writing it back as JSON once failed unnamed
    bad["runs"][0]["settings"] = {"n_threads": 10**5000}
    with pytest.raises(history.ImportFileError, match="run 1: settings holds a value that cannot be stored"):
        history.import_json(Store(tmp_path / "target.sqlite3"), bad)
    bad = copy.deepcopy(data)
    bad["version"] = 10**5000
    with pytest.raises(history.ImportFileError, match="version must be a whole number, got a 5,001-digit integer"):
        history.import_json(Store(tmp_path / "target.sqlite3"), bad)


def test_the_apps_own_export_imports_back_at_the_limits(store: Store, tmp_path: Path, demo_ladder: Ladder) -> None:
    """A prompt of exactly the limit and a set of exactly the most prompts are stored and come back."""
    run = store.create_run(settings={}, prompt="x" * MAX_TEXT_BYTES, ladder=demo_ladder.to_dict())
    prompts = [{"prompt": f"prompt {i}"} for i in range(MAX_SET_PROMPTS)]
    set_run = store.create_set_run(name="big", prompts=prompts, labels=["F16"], reference_label="F16", settings={})
    store.tag_set_run_child(run, set_run, 0)
    summary = history.import_json(Store(tmp_path / "copy.sqlite3"), history.export_json_bytes(store))
    assert summary.runs == 1 and summary.set_runs == 1


def test_what_an_import_would_refuse_is_refused_when_written(store: Store, demo_ladder: Ladder, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    too_long = "é" * (MAX_TEXT_BYTES // 2 + 1)  # fewer characters than bytes: the limit is in bytes
    with pytest.raises(ValueError, match="the prompt is longer than 1 MiB"):
        store.create_run(settings={}, prompt=too_long)
    with pytest.raises(ValueError, match="the system prompt is longer than 1 MiB"):
        store.create_run(settings={}, prompt="hi", system_prompt=too_long)
    # the Compare page starts a ComparisonJob and shows its ValueError as "Cannot run: …" before anything runs
    contestants = contestants_for(demo_ladder, ["F16"])
    with pytest.raises(ValueError, match="the prompt is longer than 1 MiB"):
        ComparisonJob(None, store, contestants, too_long, RunSettings())  # type: ignore[arg-type]
    # the command line, before any model loads
    capsys.readouterr()
    assert main(["compare", "--demo", "--prompt", too_long]) == 2
    assert "the prompt is longer than 1 MiB" in capsys.readouterr().err
    # a set run of more prompts than an import accepts cannot be made, through the library or the store
    big = PromptSet("too many", [SetPrompt(f"prompt {i}") for i in range(MAX_SET_PROMPTS + 2)])
    with pytest.raises(SetRunError, match=f"{MAX_SET_PROMPTS + 2} prompts, more than the {MAX_SET_PROMPTS}"):
        start_set_run(store, big, demo_ladder)
    with pytest.raises(ValueError, match="more than the"):
        store.create_set_run(name="x", prompts=big.to_dicts(), labels=["F16"], reference_label="F16", settings={})
    assert history.search_runs(store) == [] and store.list_set_runs() == []


def test_the_recommend_page_shows_imported_figures_apart_and_labelled(tmp_path: Path, demo_ladder: Ladder,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from ui.shared import _open_store

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    _open_store.clear()  # the app opens its database once per process: open this test's
    try:
        store = Store()
        _divergence_run(store, demo_ladder, MEASURED)
        history.import_json(store, _forged_export(tmp_path, demo_ladder), origin="forged.json")
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/recommend.py")
        at.run()
        assert not at.exception, at.exception
        tables = [df.value for df in at.dataframe]
        imported = next(t for t in tables if list(t.columns) == report.IMPORTED_HEADERS)
        assert list(imported["candidate"]) == ["F16", "Q2_K"]
        q2 = imported[imported["candidate"] == "Q2_K"].iloc[0]
        assert "mean KLD 0.0001" in q2.iloc[1] and q2.iloc[2].startswith("imported from Forger 9000")
        evidence = next(t for t in tables if list(t.columns) == report.EVIDENCE_HEADERS)
        assert "0.0001" not in evidence.to_string() and "Forger" not in evidence.to_string()
        assert any("never used for the pick" in c.value for c in at.caption)
    finally:
        _open_store.clear()


def test_a_repeated_eval_case_cannot_inflate_a_pass_count(tmp_path: Path, demo_ladder: Ladder) -> None:
    data = _forged_export(tmp_path, demo_ladder)
    run = next(r for r in data["runs"] if r["eval_results"])
    run["eval_results"].append(dict(run["eval_results"][1]))
    target = Store(tmp_path / "target.sqlite3")
    with pytest.raises(history.ImportFileError, match="eval_results row 11: case_id and label .'c0', 'Q2_K'. appear twice"):
        history.import_json(target, data)
    assert target.table_rows("runs") == []


def test_each_kind_of_figure_says_where_it_came_from() -> None:
    from workbench.quality.published import published_for
    from workbench.storage.provenance import Provenance

    assert Provenance.of_row({"run_id": 7, "imported_from": None}).words() == "measured here (run #7)"
    row = {"run_id": 9, "imported_from": "2026-12-01T10:00:00 backup.json", "created_at": "2026-11-30T08:00:00",
           "run_machine_json": json.dumps({"cpu_model": "<b>Big</b>   box\n", "logical_cores": True})}
    imported = Provenance.of_row(row)
    assert not imported.measured_here
    assert imported.words() == "imported from <b>Big</b> box, 2026-11-30 (run #9 here)"  # escaped where shown
    hostile = Provenance.of_row({"imported_from": "x", "created_at": 5, "run_machine_json": "[not json"})
    assert hostile.words() == "imported from another machine"
    assert Provenance.of_row({"imported_from": "x", "created_at": "2026-<b>1</b>"}).date is None
    escapes = Provenance.of_row({"imported_from": "x", "run_machine_json": {"cpu_model": "\x1b[2Jevil" + "x" * 200}})
    assert escapes.machine is not None and "\x1b" not in escapes.machine and len(escapes.machine) == 80
    published = published_for("Q4_K_M")
    assert published is not None and published.provenance.kind == "published"
    assert published.provenance.words().startswith("published elsewhere: LLaMA-3-8B") and "https://" in \
        published.provenance.words()


def test_the_history_page_refuses_an_impossible_figure_in_one_sentence(tmp_path: Path, demo_ladder: Ladder,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from ui.shared import _open_store

    data = _export_with_divergence(tmp_path, demo_ladder)
    _divergence_row(data)["n_tokens"] = "@@HOSTILE@@"
    raw = json.dumps(data).replace('"@@HOSTILE@@"', str(2**70)).encode()
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "app"))
    _open_store.clear()
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/history.py")
        at.run()
        at.file_uploader(key="hist-import").set_value(("forged.json", raw, "application/json")).run()
        next(b for b in at.button if b.label == "Import").click().run()
        assert not at.exception, at.exception
        errors = [e.value.replace("\\", "") for e in at.error]  # drop Markdown escapes
        assert any("forged.json" in e and "n_tokens is beyond the 64-bit range" in e and "Nothing was added" in e
                   for e in errors), errors
        assert Store().table_rows("runs") == []
    finally:
        _open_store.clear()
