"""Imports are untrusted (issue 14, finding 8): every value is checked against the schema before anything is
added (all or nothing, with a message naming run, table, row and column), and an imported run's file paths are
never loaded as models."""

from __future__ import annotations

import copy
import json

import pytest

from workbench.people import history, ratings
from workbench.quality import divergence
from workbench.runs.compare import local_contestants_of_run
from workbench.storage.store import Store


@pytest.fixture()
def export(store, tmp_path) -> dict:
    """A real export: one run with two outputs (real GGUF-looking paths), two ratings and a vote."""
    run_id = store.create_run(settings={"max_tokens": 8}, prompt="Name a river", ladder={"name": "Tiny", "files": []},
                              reference_label="Q8_0")
    for i, label in enumerate(("Q8_0", "Q2_K")):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "file": str(tmp_path / f"{label}.gguf"),
                                     "text": "Nile", "is_reference": i == 0, "token_ids": [1, 2],
                                     "decode_tok_s": 10.0})
    store.finish_run(run_id, "done")
    ratings.add_rating(store, run_id=run_id, label="Q8_0", score=4, rater="ann")
    ratings.add_rating(store, run_id=run_id, label="Q2_K", score=2, rater="ann")
    ratings.add_vote(store, run_id=run_id, label_a="Q8_0", label_b="Q2_K", winner="a", rater="bob")
    return history.export_data(store)


def refused(tmp_path, data: dict | bytes, *fragments: str) -> str:
    fresh = Store(tmp_path / "fresh.sqlite3")
    with pytest.raises(history.ImportFileError) as info:
        history.import_json(fresh, data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert history.search_runs(fresh) == []  # all or nothing
    return message


def test_a_string_in_a_numeric_field_is_refused_with_run_table_row_and_column(export, tmp_path):
    run = export["runs"][0]
    run["results"][1]["decode_tok_s"] = "abc"
    message = refused(tmp_path, export)
    assert message == f"run {run['id']}, results row 2: decode_tok_s must be a number, got 'abc'"


def mutate(data: dict, change) -> dict:
    out = copy.deepcopy(data)
    change(out["runs"][0])
    return out


BAD = {
    "integer as text": (lambda r: r["results"][0].update(completion_tokens="12"), "completion_tokens must be a whole"),
    "text as number": (lambda r: r.update(prompt=12), "prompt must be text"),
    "huge text": (lambda r: r["results"][0].update(text="x" * (history.MAX_TEXT_BYTES + 1)), "text is longer"),
    "settings not an object": (lambda r: r.update(settings=["max_tokens"]), "settings must be an object"),
    "metrics not an object": (lambda r: r["results"][0].update(metrics="{}"), "metrics must be an object"),
    "token ids not numbers": (lambda r: r["results"][0].update(token_ids=["a"]), "token_ids must be a list of whole"),
    "raw JSON column not JSON": (lambda r: r.update(settings_json="{nope"), "settings_json is not JSON"),
    "unknown kind": (lambda r: r.update(kind="shell"), "kind must be one of"),
    "unknown status": (lambda r: r.update(status="<b>done</b>"), "status must be one of"),
    "unknown rating mode": (lambda r: r["ratings"][0].update(mode="secret"), "ratings row 1: mode must be one of"),
    "score out of range": (lambda r: r["ratings"][0].update(score=9), "score must be 1 to 5"),
    "rating of another model": (lambda r: r["ratings"][1].update(label="Q4_K_M", result_id=None),
                                "ratings row 2: label 'Q4_K_M' is not an output of this run"),
    "rating pointing at the other output": (lambda r: r["ratings"][1].update(result_id=r["results"][0]["id"]),
                                            "is not this run's output 'Q2_K'"),
    "vote for a stranger": (lambda r: r["votes"][0].update(label_b="GPT"), "votes row 1: label_b 'GPT' is not"),
    "unknown winner": (lambda r: r["votes"][0].update(winner="c"), "winner must be one of"),
    "missing label": (lambda r: r["results"][0].pop("label"), "results row 1: label is missing"),
    "duplicate output label": (lambda r: r["results"][1].update(label="Q8_0"), "appears twice"),
    "table not a list": (lambda r: r.update(votes={"a": 1}), "votes must be a list"),
    "row not an object": (lambda r: r.update(votes=["x"]), "votes row 1: must be an object"),
    "bad divergence source": (lambda r: r.update(divergence=[{"source": "web", "label": "Q8_0", "reference_label": "Q8_0",
                                                              "created_at": "2026-01-01"}]), "source must be one of"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_hostile_values_are_refused_before_anything_is_added(export, tmp_path, case):
    change, fragment = BAD[case]
    refused(tmp_path, mutate(export, change), f"run {export['runs'][0]['id']}", fragment)


def test_deep_nesting_and_huge_files_are_refused(export, tmp_path, monkeypatch):
    deep = mutate(export, lambda r: r.update(settings={"a": json.loads("[" * 100 + "]" * 100)}))
    refused(tmp_path, deep, "nested deeper")
    refused(tmp_path, b'{"format": "quant-workbench-export", "runs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nested deeper")
    monkeypatch.setattr(history, "MAX_IMPORT_BYTES", 1000)
    path = tmp_path / "big.json"
    path.write_bytes(json.dumps(export).encode() + b" " * 1000)
    refused(tmp_path, path, "larger than")


def test_the_untouched_export_still_imports(export, tmp_path):
    summary = history.import_json(Store(tmp_path / "fresh.sqlite3"), export)
    assert (summary.runs, summary.results, summary.ratings, summary.votes) == (1, 2, 2, 1)


def test_imported_runs_are_marked_and_their_paths_are_never_loaded_as_models(store, export, tmp_path):
    original = store.get_run(export["runs"][0]["id"])
    for r in original.results:  # the paths exist here, so only the import mark can stop them being loaded
        open(r.file, "wb").close()
    assert len(local_contestants_of_run(original)) == 2 and len(divergence.contestants_of_run(original)) == 2
    assert not original.imported_from

    export["runs"][0]["imported_from"] = None  # a file cannot clear the mark
    fresh = Store(tmp_path / "fresh.sqlite3")
    new_id = history.import_json(fresh, export, origin="shared.json").run_ids[export["runs"][0]["id"]]
    imported = fresh.get_run(new_id)
    assert imported.imported_from.endswith("shared.json")
    assert local_contestants_of_run(imported) == []  # Compare's "Re-measure quietly" has nothing to load
    assert divergence.contestants_of_run(imported) == []
    with pytest.raises(divergence.DivergenceError, match="imported from an export"):
        divergence.diverge_run(None, fresh, new_id)  # refused before any worker is asked for
    # a re-export of the imported run keeps the mark when it is imported again
    again = Store(tmp_path / "again.sqlite3")
    history.import_json(again, history.export_data(fresh))
    assert all(r["imported_from"] for r in history.export_data(again)["runs"])


def test_a_run_without_a_whole_number_id_is_refused(export, tmp_path):
    refused(tmp_path, mutate(export, lambda r: r.pop("id")), "run 1 in the file: id must be a whole number")
    refused(tmp_path, mutate(export, lambda r: r.update(id="7")), "id must be a whole number")


def test_a_list_where_text_belongs_is_refused_not_dropped(export, tmp_path):
    refused(tmp_path, mutate(export, lambda r: r.update(prompt=["a"])), "prompt must be text")


def test_the_hardware_page_never_opens_an_imported_runs_files(store, export, tmp_path, monkeypatch):
    from workbench.models import fit_report

    for res in export["runs"][0]["results"]:
        res["peak_rss_bytes"] = 10**9
    history.import_json(store, export)
    opened = []
    monkeypatch.setattr(fit_report, "predict_for_result", lambda r, *a: opened.append(r["file"]) or 1 / 0)
    fit_report.fit_checks(store)
    assert opened == []  # the original run has no peak RSS; the imported one is skipped before its paths are read


@pytest.fixture()
def set_export(store) -> dict:
    """A real export with a set run of two prompts, each prompt's run tagged with it."""
    set_id = store.create_set_run(name="ours", prompts=[{"prompt": "a"}, {"prompt": "b", "system": "s"}],
                                  labels=["Q8_0"], reference_label="Q8_0", settings={"max_tokens": 8},
                                  ladder={"name": "Tiny", "files": []})
    for i in range(2):
        run_id = store.create_run(settings={}, prompt="ab"[i], reference_label="Q8_0")
        store.tag_set_run_child(run_id, set_id, i)
        store.add_result(run_id, 0, {"label": "Q8_0", "quant_type": "Q8_0", "text": "x", "is_reference": True})
        store.finish_run(run_id, "done")
    return history.export_data(store)


SET_BAD = {
    "set runs not a list": (lambda d: d.update(set_runs={"id": 1}), "\"set_runs\" must be a list"),
    "no id": (lambda d: d["set_runs"][0].pop("id"), "set run 1 in the file: id must be a whole number"),
    "same id twice": (lambda d: d["set_runs"].append(copy.deepcopy(d["set_runs"][0])), "once per file"),
    "unknown status": (lambda d: d["set_runs"][0].update(status="<b>done</b>"), "status must be one of"),
    "name missing": (lambda d: d["set_runs"][0].pop("name"), "name is missing"),
    "prompts not a list": (lambda d: d["set_runs"][0].update(prompts="a"), "prompts must be a list"),
    "no prompts": (lambda d: d["set_runs"][0].update(prompts=[]), "prompts must hold 1 to"),
    "prompt without text": (lambda d: d["set_runs"][0]["prompts"].append({"system": "x"}),
                            "prompt 3 must be an object with a \"prompt\" text"),
    "system not text": (lambda d: d["set_runs"][0]["prompts"][1].update(system=["x"]), "prompt 2: system must be text"),
    "labels not names": (lambda d: d["set_runs"][0].update(labels=["Q8_0", 4]), "labels must be a list of names"),
    "settings not an object": (lambda d: d["set_runs"][0].update(settings=[1]), "settings must be an object"),
    "negative repeats": (lambda d: d["set_runs"][0].update(noise_repeats=-1), "noise_repeats must be"),
    "huge name": (lambda d: d["set_runs"][0].update(name="x" * (history.MAX_TEXT_BYTES + 1)), "name is longer"),
    "fractional tag": (lambda d: d["runs"][0].update(set_run_id=d["set_runs"][0]["id"] + 0.5),
                       "set_run_id must be a whole number"),
    "index past the prompts": (lambda d: d["runs"][1].update(set_index=2), "set_index must name one of the 2 prompts"),
    "negative index": (lambda d: d["runs"][0].update(set_index=-1), "set_index must name one of the 2 prompts"),
}


@pytest.mark.parametrize("case", list(SET_BAD))
def test_hostile_set_runs_are_refused_before_anything_is_added(set_export, tmp_path, case):
    change, fragment = SET_BAD[case]
    data = copy.deepcopy(set_export)
    change(data)
    refused(tmp_path, data, fragment)
    assert Store(tmp_path / "fresh.sqlite3").list_set_runs() == []


def test_the_untouched_set_run_export_imports_marked(set_export, tmp_path):
    fresh = Store(tmp_path / "fresh.sqlite3")
    set_export["set_runs"][0]["imported_from"] = None  # a file cannot clear the mark
    summary = history.import_json(fresh, set_export, origin="ours.json")
    imported = fresh.get_set_run(summary.set_run_ids[set_export["set_runs"][0]["id"]])
    assert imported.imported_from.endswith("ours.json") and len(imported.children) == 2


def test_damage_validation_does_not_name_is_still_an_import_file_error(export, tmp_path, monkeypatch, capsys):
    """A backstop, one place for every caller (the History page, `workbench import`): damage that validate_import
    missed comes back as ImportFileError in plain words, nothing added, never a raw KeyError or sqlite3 error."""
    from workbench.cli.main import main

    def a_gap(data, info):  # stands in for a check validation does not make yet
        raise KeyError("label")

    monkeypatch.setattr(history, "validate_import", a_gap)
    message = refused(tmp_path, export, "damaged or incomplete")
    assert message == "it looks like an export but is damaged or incomplete (KeyError: 'label')"
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    assert main(["import", str(path), "--db", str(tmp_path / "cli.sqlite3")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {path}: it looks like an export but is damaged or incomplete (KeyError: 'label')\n"
