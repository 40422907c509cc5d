"""One run-record lifecycle: every kind of run opens its record through runs.run_record.new_run (the same machine,
versions and settings fields), rebuilds contestants through Contestant.from_stored, and ends by one status rule."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from workbench.core import hardware
from workbench.quality import divergence, evals
from workbench.quality.packs import parse_pack
from workbench.runs.compare import contestants_for, local_contestants_of_run, run_comparison
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.run_record import run_status, versions
from workbench.storage.rows import StoredResult, StoredRun

PACK = """
name = "One"
description = "One quick case."

[[cases]]
id = "add"
category = "math"
max_tokens = 4
prompt = "What is 2+3? Answer with the number only."
check = { kind = "number", expected = 5 }
"""


@pytest.mark.parametrize(("oks", "cancelled", "status"), [
    ([True, True], False, "done"),
    ([True, False], False, "partial"),
    ([False, False], False, "failed"),
    ([True, False], True, "cancelled"),
    ([], False, "done"),
])
def test_one_status_rule(oks: list[bool], cancelled: bool, status: str) -> None:
    assert run_status(oks, cancelled=cancelled) == status


def test_every_run_kind_opens_its_record_the_same_way(pool, demo_ladder, store) -> None:
    settings = RunSettings(max_tokens=4, n_ctx=256, n_threads=1)
    two = contestants_for(demo_ladder, demo_ladder.labels()[:2])
    compared = run_comparison(pool, two, "Say hi.", settings, store=store, ladder=demo_ladder)
    measured = divergence.diverge_prompt(pool, two, "Say hi.", settings, store=store, ladder=demo_ladder)
    judged = evals.run_eval(pool, parse_pack(PACK, "toml"), two, settings, store=store, ladder=demo_ladder)
    ids = {"compare": compared.run_id, "diverge": measured.run_id, "eval": judged.run_id}
    runs = {kind: store.get_run(run_id) for kind, run_id in ids.items()}
    def steady(machine: dict) -> dict:  # free memory moves between two readings
        return {k: v for k, v in machine.items() if k != "ram_available_bytes"}

    expected_machine = steady(hardware.machine().to_dict())
    for kind, run in runs.items():
        assert run is not None and run.kind == kind
        assert run.workbench_version == versions()["workbench"] and run.llama_cpp_version == versions()["llama_cpp"]
        assert steady(run.machine) == expected_machine and "ram_available_bytes" in run.machine
        assert run.settings == settings.to_dict()
        assert run.reference_label == two[0].label and run.ladder_name == demo_ladder.name
    assert runs["compare"].messages == runs["diverge"].messages == settings.messages("Say hi.")
    assert runs["eval"].messages is None and runs["eval"].prompt == "eval: One (1 cases)"
    assert runs["compare"].status == "done" and runs["eval"].status in ("done", "partial", "failed")


def test_contestants_come_back_from_a_stored_run_with_their_variant() -> None:
    row = {"label": "Q4 · KV q8_0", "file": "/m/q4.gguf", "quant_type": "Q4_K_M", "size_bytes": 10,
           "bits_per_weight": 4.5, "is_reference": 0, "metrics": {"kv_type_k": "q8_0", "kv_type_v": "q8_0",
                                                                   "n_ctx": 2048}}
    stored = StoredResult.from_row({**row, "metrics_json": json.dumps(row["metrics"])})
    c = Contestant.from_stored(stored, 2048)
    assert (c.label, c.path, c.size_bytes, c.is_reference) == ("Q4 · KV q8_0", "/m/q4.gguf", 10, False)
    assert (c.kv_type_k, c.kv_type_v, c.n_ctx) == ("q8_0", "q8_0", None)  # the run's own context is not the variant's
    own = Contestant.from_stored(replace(stored, metrics={"kv_type_k": "bogus", "n_ctx": 8192}), 2048)
    assert (own.kv_type_k, own.kv_type_v, own.n_ctx) == ("f16", "f16", 8192)
    run = StoredRun(id=1, created_at="", kind="compare", status="done", settings={"n_ctx": 2048}, results=(stored,))
    assert local_contestants_of_run(run) == [c]
    assert divergence.contestants_of_run(run) == [c]
