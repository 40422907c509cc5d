"""Variants end to end on the real embedded ladder: one file with an f16, q8_0, q4_0 and mixed KV cache at 8k.

What must hold: llama.cpp's own KV-cache size equals fit's prediction; the measured peak RSS of the variants
differs by what the prediction says their KV caches differ by; results store what was loaded; a quantized V cache
loads with flash attention on; the plain file keeps its label and its warm worker.
"""

from __future__ import annotations

import pytest

from workbench.engine.access import Placement, WorkerAccess
from workbench.engine.pool import LoadSettings, WorkerPool
from workbench.files import fit
from workbench.files.gguf_info import read_header
from workbench.runs.compare import local_contestants_of_run, run_comparison
from workbench.runs.contestants import Contestant, RunSettings, variant_contestants
from workbench.runs.variants import KV_TYPES, Variant, parse_variant

N_CTX = 8192  # large enough that the KV cache (180 MiB at f16 for SmolLM2-135M) dwarfs the noise in peak RSS
MiB = 2**20


@pytest.fixture(scope="module")
def fresh_pool():
    """Its own pool: peak RSS (VmHWM) is a worker's lifetime peak, so each variant needs a worker nothing else
    loaded a bigger context into first."""
    p = WorkerPool()
    yield p
    p.shutdown()


@pytest.fixture(scope="module")
def q4(demo_ladder) -> Contestant:
    f = next(f for f in demo_ladder.files if f.label == "Q4_K_M")
    return Contestant.from_ladder_file(f, is_reference=True)


@pytest.fixture(scope="module")
def variant_run(fresh_pool, q4, isolated_data_dir):
    from workbench.storage.store import Store

    store = Store(isolated_data_dir / "variants.sqlite3")
    variants = [parse_variant("kv=q8_0"), parse_variant("kv=q4_0"), parse_variant("k=q8_0,v=q4_0")]
    contestants = variant_contestants([q4], variants, N_CTX)
    settings = RunSettings(max_tokens=8, n_ctx=N_CTX, n_threads=1, gpu_offload="cpu")
    comparison = run_comparison(fresh_pool, contestants, "Name three colours.", settings, store=store)
    return comparison, store


def test_labels_and_kv_types_of_the_expanded_contestants(q4):
    cs = variant_contestants([q4], [parse_variant("kv=q8_0"), parse_variant("kv=q4_0,ctx=4096"),
                                    parse_variant("k=q8_0,v=q4_0")], N_CTX)
    assert [c.label for c in cs] == ["Q4_K_M", "Q4_K_M · KV q8_0", "Q4_K_M · KV q4_0 · 4k", "Q4_K_M · KV q8_0/q4_0"]
    assert [c.is_reference for c in cs] == [True, False, False, False]
    assert (cs[2].kv_type_k, cs[2].kv_type_v, cs[2].n_ctx) == ("q4_0", "q4_0", 4096)
    # the f16 cache at the run's context is the plain file, whichever way it is written
    assert [c.label for c in variant_contestants([q4], [Variant(n_ctx=N_CTX)], N_CTX)] == ["Q4_K_M"]
    assert variant_contestants([q4], [], N_CTX) == [q4]
    # without the baseline the reference stays (divergence needs it), the other files lose their plain row
    other = Contestant("Q8_0", q4.path, "Q8_0")
    assert [c.label for c in variant_contestants([q4, other], [Variant("q8_0", "q8_0")], N_CTX, baseline=False)] == [
        "Q4_K_M", "Q4_K_M · KV q8_0", "Q8_0 · KV q8_0"]


def test_a_plain_contestant_loads_exactly_as_before(q4, pool):
    settings = RunSettings(n_ctx=2048, n_threads=1, gpu_offload="cpu")
    placement = settings.placement_for(q4)
    assert placement == settings.placement()
    assert placement.worker_key(q4.path) == q4.path
    access = WorkerAccess(pool, q4.path, placement)
    assert access.load_settings() == LoadSettings(q4.path, 2048, 1, 0, access.use_extra_bufts, None, None)
    variant = Contestant(q4.label, q4.path, kv_type_k="q8_0", kv_type_v="q8_0", n_ctx=4096)
    vp = settings.placement_for(variant)
    assert (vp.n_ctx, vp.type_k, vp.type_v) == (4096, "q8_0", "q8_0")
    assert vp.worker_key(q4.path) != q4.path


@pytest.mark.parametrize("spec, message", [
    ("kv=q3_k", "unknown K cache type"), ("kv", "not key=value"), ("", "empty variant"),
    ("kv=q8_0,k=q4_0", "either kv="), ("ctx=lots", "number of tokens"), ("ctx=8", "between"),
    ("size=3", "unknown variant field"), ("kv=q8_0,kv=q4_0", "given twice"),
])
def test_parse_variant_refuses_with_plain_value_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_variant(spec)


def test_parse_variant_reads_what_the_cli_documents():
    assert parse_variant("kv=q8_0,ctx=8192") == Variant("q8_0", "q8_0", 8192)
    assert parse_variant(" K=Q8_0 , v=q4_0 ") == Variant("q8_0", "q4_0", None)
    assert parse_variant("ctx=16k") == Variant(n_ctx=16384)
    assert Variant("q8_0", "q4_0", 8192).label_for("Q4_K_M", 2048) == "Q4_K_M · KV q8_0/q4_0 · 8k"
    assert set(KV_TYPES) == {"f16", "q8_0", "q4_0"}


def test_llama_cpp_reports_the_kv_cache_fit_predicts(variant_run, q4):
    comparison, _ = variant_run
    info = read_header(q4.path)
    assert [r.label for r in comparison.results] == ["Q4_K_M", "Q4_K_M · KV q8_0", "Q4_K_M · KV q4_0",
                                                    "Q4_K_M · KV q8_0/q4_0"]
    for r in comparison.results:
        assert r.ok, r.error
        predicted = fit.predict(info, n_ctx=N_CTX, kv_type=r.kv_type_k or "f16", kv_type_v=r.kv_type_v, gpus=[],
                                ram_available_bytes=2**40).kv_bytes
        reported = r.memory["reported"]["kv_bytes"]
        assert abs(reported - predicted) <= 0.10 * predicted, (r.label, reported, predicted)
        assert r.memory["predicted"]["kv_bytes"] == predicted
        assert r.memory["reported"]["weights_bytes"] > 0.9 * info.tensor_bytes  # llama.cpp's model buffers
        assert r.memory["measured"]["peak_rss_bytes"] == r.peak_rss_bytes
    kv = {r.label: r.memory["reported"]["kv_bytes"] for r in comparison.results}
    assert kv["Q4_K_M"] > kv["Q4_K_M · KV q8_0"] > kv["Q4_K_M · KV q8_0/q4_0"] > kv["Q4_K_M · KV q4_0"]


def test_measured_peak_rss_shrinks_by_the_predicted_kv_difference(variant_run):
    """Each variant ran in a fresh worker of its own (own pool key), loaded the same file with the same compute
    graph (flash attention resolved on for all), so their peak RSS differ by their KV caches, which llama.cpp
    clears (touches) at load."""
    comparison, _ = variant_run
    by = {r.label: r for r in comparison.results}
    base = by["Q4_K_M"]
    for label in ("Q4_K_M · KV q8_0", "Q4_K_M · KV q4_0", "Q4_K_M · KV q8_0/q4_0"):
        r = by[label]
        predicted_drop = base.memory["predicted"]["kv_bytes"] - r.memory["predicted"]["kv_bytes"]
        measured_drop = base.peak_rss_bytes - r.peak_rss_bytes  # type: ignore[operator]
        assert predicted_drop > 40 * MiB
        assert abs(measured_drop - predicted_drop) <= 0.10 * predicted_drop, (label, measured_drop, predicted_drop)


def test_results_store_what_was_loaded_and_a_quantized_v_runs_with_flash_attention(variant_run, q4):
    comparison, store = variant_run
    stored = {r.label: r.metrics for r in store.get_run(comparison.run_id).results}
    assert stored["Q4_K_M"]["kv_type_k"] == "f16" and stored["Q4_K_M"]["n_ctx"] == N_CTX
    q4_0 = stored["Q4_K_M · KV q4_0"]
    assert (q4_0["kv_type_k"], q4_0["kv_type_v"], q4_0["n_ctx"]) == ("q4_0", "q4_0", N_CTX)
    assert q4_0["settings"]["flash_attn_type"] == 1 and q4_0["settings"]["flash_attn"] == "enabled"
    assert set(q4_0["memory"]) == {"predicted", "reported", "measured"}
    assert q4_0["completion_tokens"] > 0
    # a stored run's variants load again as themselves
    again = {c.label: (c.kv_type_k, c.kv_type_v, c.n_ctx) for c in local_contestants_of_run(store.get_run(comparison.run_id))}
    assert again == {"Q4_K_M": ("f16", "f16", None), "Q4_K_M · KV q8_0": ("q8_0", "q8_0", None),
                     "Q4_K_M · KV q4_0": ("q4_0", "q4_0", None), "Q4_K_M · KV q8_0/q4_0": ("q8_0", "q4_0", None)}


def test_each_variant_keeps_its_own_warm_worker(variant_run, fresh_pool, q4):
    warm = {(w["file"], w["type_k"], w["type_v"]) for w in fresh_pool.warm_models()}
    name = q4.path.rsplit("/", 1)[-1]
    assert {(name, "f16", "f16"), (name, "q8_0", "q8_0"), (name, "q4_0", "q4_0"), (name, "q8_0", "q4_0")} <= warm
    assert Placement(N_CTX, 1).worker_key(q4.path) == q4.path


def test_cli_compare_runs_each_variant_and_says_what_was_loaded_in_json():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    argv = [sys.executable, "-m", "workbench", "compare", "--demo", "--types", "Q2_K", "--prompt", "Hi", "--max-tokens",
            "4", "--ctx", "512", "--threads", "1", "--gpu-layers", "0", "--variant", "kv=q8_0", "--variant",
            "k=q8_0,v=q4_0,ctx=1024", "--no-baseline", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["label"]: r for r in json.loads(proc.stdout)["results"]}
    # --no-baseline drops Q2_K's plain run, never the reference's
    assert set(rows) == {"F16", "F16 · KV q8_0", "F16 · KV q8_0/q4_0 · 1k", "Q2_K · KV q8_0", "Q2_K · KV q8_0/q4_0 · 1k"}
    mixed = rows["Q2_K · KV q8_0/q4_0 · 1k"]
    assert (mixed["kv_type_k"], mixed["kv_type_v"], mixed["n_ctx"]) == ("q8_0", "q4_0", 1024)
    assert rows["F16"]["kv_type_k"] == "f16" and rows["F16"]["n_ctx"] == 512
    assert mixed["memory"]["reported"]["kv_bytes"] > rows["Q2_K · KV q8_0"]["memory"]["reported"]["kv_bytes"]
    bad = subprocess.run(argv[:-6] + ["--variant", "kv=q3_k"], capture_output=True, text=True, timeout=120, cwd=root,
                         env=env)
    assert bad.returncode == 2 and "unknown K cache type" in bad.stderr and "Traceback" not in bad.stderr


def test_compare_page_runs_a_variant_and_its_card_shows_the_memory_lines(demo_ladder):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP, wait_for_run
    from workbench.storage.store import Store

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.multiselect[0].set_value(["Q2_K"])
    at.number_input[0].set_value(8)  # max tokens
    at.multiselect(key="compare_kv").set_value(["f16", "q4_0"])
    next(b for b in at.button if b.label == "Run").click()
    at.run()
    run = Store().get_run(wait_for_run(at))
    assert [r.label for r in run.results] == ["F16", "F16 · KV q4_0", "Q2_K", "Q2_K · KV q4_0"]
    assert run.results[3].metrics["kv_type_v"] == "q4_0"
    html = " ".join(h.proto.body for h in at.get("html"))
    assert "KV q4_0 · context 2048" in html and "llama.cpp" in html and "measured peak RSS" in html


def test_a_set_run_with_variants_runs_them_and_resumes_with_the_same_contestants(demo_ladder, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from workbench.files import json_fields as jf
    from workbench.runs.set_runs import stored_contestants
    from workbench.storage.store import Store

    root = Path(__file__).resolve().parents[1]
    prompts = tmp_path / "p.txt"
    prompts.write_text("Name a fruit.\nName a colour.\n")
    db = tmp_path / "sets.sqlite3"
    argv = [sys.executable, "-m", "workbench", "batch", "--prompts", str(prompts), "--demo", "--labels", "Q2_K",
            "--max-tokens", "4", "--threads", "1", "--gpu-layers", "0", "--noise", "0", "--variant", "kv=q4_0",
            "--no-baseline", "--db", str(db), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for p in out["prompts"]:
        rows = {r["label"]: r for r in p["results"]}
        assert set(rows) == {"F16", "F16 · KV q4_0", "Q2_K · KV q4_0"}  # variants apply to the reference's file too
        assert rows["Q2_K · KV q4_0"]["kv_type_v"] == "q4_0" and rows["F16"]["kv_type_v"] == "f16"
        assert not rows["Q2_K · KV q4_0"]["error"]
    set_run = Store(db).get_set_run(out[jf.SET_RUN_ID])
    again = stored_contestants(demo_ladder, set_run)
    assert [(c.label, c.kv_type_k, c.kv_type_v) for c in again] == [
        ("F16", "f16", "f16"), ("F16 · KV q4_0", "q4_0", "q4_0"), ("Q2_K · KV q4_0", "q4_0", "q4_0")]


def test_a_variant_context_too_small_for_max_tokens_is_refused_before_anything_runs(demo_ladder, store) -> None:
    """A variant's own context must hold max tokens like the run's does; said with its label, before any load."""
    from workbench.runs.compare import contestants_for, run_comparison
    from workbench.runs.contestants import RunSettings, variant_contestants
    from workbench.runs.variants import Variant

    settings = RunSettings(max_tokens=256, n_ctx=2048)
    contestants = variant_contestants(contestants_for(demo_ladder, ["Q4_K_M"]), [Variant(n_ctx=128)], 2048)
    with pytest.raises(ValueError, match=r"F16 · KV f16 · 128: max tokens \(256\) must be smaller than the context size \(128\)"):
        run_comparison(None, contestants, "hi", settings, store=store)  # type: ignore[arg-type]  # refused before the pool is used
    assert store.list_runs() == []
    RunSettings(max_tokens=64, n_ctx=2048).validate(contestants)  # 64 < 128: fine


def test_cli_refuses_a_variant_context_too_small_in_one_line(demo_ladder, capsys) -> None:
    from workbench.cli.main import main

    assert main(["compare", "--demo", "--prompt", "hi", "--variant", "ctx=128", "--max-tokens", "256"]) == 2
    err = capsys.readouterr().err
    assert "ctx=128: max tokens (256) must be smaller than its context" in err and "Traceback" not in err


def test_run_settings_carry_variants_through_their_stored_form() -> None:
    import json

    with_variants = RunSettings(n_ctx=1024, n_threads=1, variants=(Variant("q8_0", "q8_0"), Variant("q4_0", "q4_0", 8192)),
                                variant_baseline=False, file_labels=("F16", "Q2_K"))
    stored = json.loads(json.dumps(with_variants.to_dict()))
    assert RunSettings.from_dict(stored) == with_variants  # nothing dropped on the way back
    assert stored["variants"] == [{"kv_type_k": "q8_0", "kv_type_v": "q8_0", "n_ctx": None},
                                  {"kv_type_k": "q4_0", "kv_type_v": "q4_0", "n_ctx": 8192}]
    assert list(stored)[-3:] == ["variants", "variant_baseline", "file_labels"]  # the stored form set runs always had
    plain = RunSettings(n_ctx=1024, n_threads=1)
    assert not {"variants", "variant_baseline", "file_labels"} & set(plain.to_dict())  # a run without them unchanged
    assert with_variants.without_variants() == plain == RunSettings.from_dict(plain.to_dict())
    with pytest.raises(ValueError, match="stored variants cannot be read"):
        RunSettings.from_dict({"variants": [{"kv_type_k": "q3_k"}]})
