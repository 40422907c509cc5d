"""Stored rows come back typed and checked once (storage.rows): a run written is read back with the values written,
and a row holding odd values (text where a number belongs, JSON that is not JSON, settings that are a list) gets
the documented default where it is read, so no caller re-checks a stored value's type."""

from __future__ import annotations

import json

from workbench.storage.rows import FoundRun, RunSummary, SetRunChild, StoredResult, StoredRun, StoredSetRun
from workbench.storage.store import Store


def _run(store: Store) -> int:
    run_id = store.create_run(settings={"max_tokens": 8, "seed": 3}, prompt="Name a colour.", system_prompt="Be brief.",
                              ladder={"name": "demo", "files": []}, reference_label="Q8_0", category="chat",
                              machine={"physical_cores": 4}, versions={"workbench": "1.0", "llama_cpp": "0.3"})
    store.add_result(run_id, 0, {"label": "Q8_0", "quant_type": "Q8_0", "file": "/m/q8.gguf", "size_bytes": 1000,
                                 "bits_per_weight": 8.5, "is_reference": True, "text": "Blue.", "token_ids": [5, 6],
                                 "decode_tok_s": 12.5, "completion_tokens": 2, "stop_reason": "stop", "n_ctx": 4096,
                                 "measurement": {"decode": {"contention": 0.25, "disturbed": False}}})
    store.add_result(run_id, 1, {"label": "Q2_K", "quant_type": "Q2_K", "is_reference": False, "text": None,
                                 "error": "worker died"})
    return run_id


def test_a_run_written_is_read_back_typed_with_the_values_written(tmp_path):
    store = Store(tmp_path / "w.sqlite3")
    run_id = _run(store)
    run = store.get_run(run_id)
    assert isinstance(run, StoredRun) and run.id == run_id and run.kind == "compare" and run.status == "running"
    assert (run.prompt, run.system_prompt, run.category, run.reference_label) == ("Name a colour.", "Be brief.",
                                                                                  "chat", "Q8_0")
    assert run.settings == {"max_tokens": 8, "seed": 3} and run.ladder == {"name": "demo", "files": []}
    assert run.machine == {"physical_cores": 4} and (run.workbench_version, run.llama_cpp_version) == ("1.0", "0.3")
    assert run.imported_from is None and run.set_run_id is None and run.messages is None
    ref, failed = run.results
    assert all(isinstance(r, StoredResult) for r in run.results) and run.result("Q2_K") is failed
    assert (ref.label, ref.is_reference, ref.text, ref.token_ids, ref.size_bytes) == ("Q8_0", True, "Blue.", [5, 6], 1000)
    assert (ref.bits_per_weight, ref.decode_tok_s, ref.completion_tokens) == (8.5, 12.5, 2)
    assert (ref.cpu_contention, ref.disturbed) == (0.25, False) and ref.metrics["n_ctx"] == 4096
    assert (failed.is_reference, failed.text, failed.error, failed.token_ids) == (False, None, "worker died", [])
    # the dict form keeps the shape the readers gave before (disturbed as 0/1, every column of the row)
    as_dict = run.to_dict()
    assert as_dict["settings"] == run.settings and as_dict["results"][0]["disturbed"] == 0
    assert as_dict["results"][0]["metrics"]["label"] == "Q8_0" and as_dict["results"][1]["label"] == "Q2_K"
    listed = store.list_runs()
    assert listed == [RunSummary(run_id, run.created_at, "compare", "running", "demo", "Name a colour.", "Q8_0")]
    found = store.search_runs(text="colour", model=None, since=None, until=None, until_inclusive=False, kind=None,
                              limit=5)
    assert isinstance(found[0], FoundRun) and (found[0].n_results, found[0].n_ratings, found[0].n_votes) == (2, 0, 0)
    assert list(found[0].to_dict()) == ["id", "created_at", "kind", "status", "ladder_name", "prompt", "category",
                                        "reference_label", "n_results", "n_ratings", "n_votes"]


def test_odd_stored_values_get_their_documented_default_once_where_the_row_is_read():
    run = StoredRun.from_row(
        {"id": 7, "created_at": "2026-01-01T00:00:00", "kind": "compare", "status": "done", "prompt": 42,
         "settings_json": "[1, 2]", "ladder_json": "{not json", "messages_json": '[{"role": "user"}, 3]',
         "machine_json": None, "set_index": "2", "imported_from": 5},
        [{"id": 1, "run_id": 7, "position": 0, "label": "Q4_K_M", "is_reference": 0, "text": b"bytes",
          "decode_tok_s": "fast", "completion_tokens": 3.5, "gpu_layers": True, "disturbed": 1,
          "token_ids_json": '[1, "x", 2]', "metrics_json": "[]"},
         {"id": 2, "run_id": 7, "position": 1, "label": "Q8_0", "is_reference": 1, "token_ids_json": None,
          "metrics_json": "{broken"}])
    assert run.prompt is None and run.settings == {} and run.ladder is None and run.machine is None
    assert run.messages == [{"role": "user"}] and run.set_index is None and run.imported_from is None
    odd, plain = run.results
    assert odd.text is None and odd.decode_tok_s is None and odd.completion_tokens is None and odd.gpu_layers is None
    assert odd.disturbed is True and odd.token_ids == [1, 2] and odd.metrics == {} and odd.is_reference is False
    assert plain.is_reference is True and plain.token_ids == [] and plain.metrics == {}


def test_a_set_run_comes_back_typed_and_odd_columns_get_their_defaults(tmp_path):
    store = Store(tmp_path / "w.sqlite3")
    set_id = store.create_set_run(name="s", prompts=[{"prompt": "a"}, {"prompt": "b"}], labels=["Q8_0", "Q2_K"],
                                  reference_label="Q8_0", settings={"seed": 1}, noise_repeats=2)
    run_id = store.create_run(settings={}, prompt="a")
    store.tag_set_run_child(run_id, set_id, 0)
    store.finish_run(run_id, "done")
    set_run = store.get_set_run(set_id)
    assert isinstance(set_run, StoredSetRun) and (set_run.name, set_run.status, set_run.noise_repeats) == ("s", "running", 2)
    assert set_run.prompts == [{"prompt": "a"}, {"prompt": "b"}] and set_run.labels == ["Q8_0", "Q2_K"]
    assert set_run.children == (SetRunChild(0, run_id, "done", 1),) and set_run.child(0) == set_run.children[0]
    assert set_run.child(1) is None and store.set_run_children(set_id) == list(set_run.children)
    odd = StoredSetRun.from_row({"id": 3, "created_at": "t", "name": "n", "status": "done",
                                 "prompts_json": json.dumps([{"prompt": "a"}, "b"]), "labels_json": '["Q8_0", 4]',
                                 "settings_json": "null", "noise_repeats": "many"})
    assert odd.prompts == [] and odd.labels == ["Q8_0"] and odd.settings == {} and odd.noise_repeats == 0
