"""Target machines: profiles (validation, storage, presets protected), fit on a target (monotonic, verdict
thresholds, KV types), memory as lines, and the estimated decode speed with its calibration from a stored run.

Models are synthetic headers (GgufInfo) and a real GGUF written by tests/hubserver.make_gguf, so every figure is
known; the store is a real SQLite file in a temporary data directory.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.hubserver import make_gguf
from tests.test_fit import info
from workbench.core import hardware
from workbench.decide import speed, targets
from workbench.decide.targets import TargetProfile
from workbench.files import fit
from workbench.files.gguf_info import read_header

GiB, MiB = 2**30, 2**20


def big(**over):
    """An 8B-like llama header (Llama-3-8B's shape), 4.7 GB of weights unless overridden."""
    return info(**{"tensor_bytes": 4_700_000_000, "block_count": 32, "embedding_length": 4096, "head_count": 32,
                   "head_count_kv": 8, "key_length": 128, "value_length": 128, "vocab_size": 128256,
                   "context_length": 131072, "quant_type": "Q4_K_M",
                   "metadata": {"llama.feed_forward_length": 14336}, **over})


def profile(**over) -> TargetProfile:
    base = TargetProfile(name="test box", ram_bytes=16 * GiB, vram_bytes=0, ram_bandwidth_gbs=50.0,
                         vram_bandwidth_gbs=None, cores=8, os_reserve_bytes=2 * GiB,
                         sources={"ram_bytes": "assumption: a test"}, builtin=False)
    return replace(base, **over)


class _NoStore:
    def target_profiles(self) -> list:
        return []


# ---- presets ------------------------------------------------------------------------------------------------------


def test_presets_are_valid_and_every_figure_has_a_source() -> None:
    names = [p.name for p in targets.presets()]
    assert {"8 GB laptop", "16 GB laptop", "24 GB GPU desktop"} <= set(names)
    for p in targets.presets():
        assert p.validate() == p and p.builtin
        for figure in ("ram_bytes", "ram_bandwidth_gbs", "cores", "os_reserve_bytes", "vram_bytes"):
            text = p.sources[figure]
            assert text.startswith("assumption: ") or "http" in text, (p.name, figure, text)
        if p.vram_bytes:
            assert "http" in p.sources["vram_bandwidth_gbs"] and p.vram_bandwidth_gbs == 1008.0
    laptop = targets.get_target(_NoStore(), "8 gb LAPTOP")  # case-insensitive
    assert laptop.ram_bandwidth_gbs == 3200e6 * 8 * 2 / 1e9  # the arithmetic its source states


def test_this_machine_is_measured_here(tmp_path, monkeypatch) -> None:
    # a data directory of its own: other processes of the suite (CLI runs, the app) write the shared one's
    # bandwidth.json too, and one that measured later made the figure read back here differ (a fresh-clone run)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(hardware, "_bandwidth_cache", {})
    bw = hardware.measure_memory_bandwidth()
    assert 0.5 < bw.gbs < 10_000 and bw.threads >= 1 and bw.array_bytes >= 2**20
    assert hardware.measure_memory_bandwidth() is bw  # kept for the process: a page rerun does not measure again
    one = hardware.measure_memory_bandwidth(threads=1)
    assert one.threads == 1 and hardware.measure_memory_bandwidth(threads=1) is one
    hardware._bandwidth_cache.clear()  # a new process reads the figures kept in the data directory
    assert hardware.measure_memory_bandwidth() == bw and hardware.measure_memory_bandwidth(threads=1) == one
    me = targets.this_machine()
    m = hardware.machine()
    assert me.name == targets.THIS_MACHINE and me.ram_bytes == m.ram_total_bytes and me.ram_bandwidth_gbs == bw.gbs
    assert me.vram_bytes == max((g.total_bytes for g in m.gpus), default=0)
    assert me.sources["ram_bandwidth_gbs"].startswith("measured: ") and me.validate() == me
    assert 0 < me.ram_budget_bytes <= m.ram_total_bytes


# ---- validation and storage --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("over", "message"), [
    ({"name": "  "}, "needs a name"),
    ({"name": "x" * 61}, "at most 60 characters"),
    ({"ram_bytes": -1}, "RAM cannot be negative"),
    ({"ram_bytes": 1024}, "RAM must be between"),
    ({"ram_bytes": 2**60}, "RAM must be between"),
    ({"vram_bytes": -5}, "VRAM cannot be negative"),
    ({"os_reserve_bytes": 16 * GiB}, "OS reserve must be less than the RAM"),
    ({"ram_bandwidth_gbs": 0.0}, "RAM bandwidth must be between"),
    ({"ram_bandwidth_gbs": float("nan")}, "RAM bandwidth must be a number"),
    ({"vram_bandwidth_gbs": 1e9}, "VRAM bandwidth must be between"),
    ({"cores": 0}, "cores must be between"),
    ({"cores": 2.5}, "cores must be a whole number"),
    ({"description": "d" * 501}, "description is at most"),
    ({"sources": {"colour": "red"}}, "is not a figure"),
    ({"sources": {"ram_bytes": "s" * 401}}, "at most 400 characters"),
])
def test_validation_says_what_is_wrong(over, message) -> None:
    with pytest.raises(ValueError, match=message):
        profile(**over).validate()


def test_validation_tidies_names_and_sources() -> None:
    clean = targets.validate(profile(name="  my\tbox\n ", sources={"ram_bytes": "line one\nline\x00two", "cores": ""}))
    assert clean.name == "my box" and clean.sources == {"ram_bytes": "line one line two"}


def test_save_list_get_delete_and_presets_protected(store) -> None:
    saved = targets.save_target(store, profile(name="Dev laptop", description="the one on my desk"))
    assert not saved.builtin
    names = [p.name for p in targets.list_targets(store, include_this_machine=False)]
    assert names[-1] == "Dev laptop" and names[:3] == [p.name for p in targets.presets()]
    again = targets.get_target(store, "dev LAPTOP")
    assert again == saved and again.sources == {"ram_bytes": "assumption: a test"}
    targets.save_target(store, replace(saved, ram_bytes=32 * GiB))  # an edit replaces, never duplicates
    assert [p.ram_bytes for p in targets.saved_targets(store)[0]] == [32 * GiB]

    for reserved in ("16 GB laptop", "This Machine"):
        with pytest.raises(ValueError, match="built-in"):
            targets.save_target(store, profile(name=reserved))
        with pytest.raises(ValueError, match="built in and cannot be deleted"):
            targets.delete_target(store, reserved)
    with pytest.raises(ValueError, match="no saved target"):
        targets.delete_target(store, "nobody")
    with pytest.raises(ValueError, match="no target called 'nobody'; choose one of: this machine, 8 GB laptop"):
        targets.get_target(store, "nobody")
    targets.delete_target(store, "DEV laptop")
    assert targets.saved_targets(store) == ([], []) and store.target_profiles() == []


def test_names_that_differ_only_in_case_or_width_are_one_target(store) -> None:
    targets.save_target(store, profile(name="Lab box", ram_bytes=8 * GiB))
    targets.save_target(store, profile(name="lab box", ram_bytes=32 * GiB))  # the same target, edited
    targets.save_target(store, profile(name="ＬＡＢ　ＢＯＸ", ram_bytes=64 * GiB))  # fullwidth: NFKC makes it "LAB BOX"
    saved = targets.saved_targets(store)[0]
    assert [(p.name, p.ram_bytes) for p in saved] == [("LAB BOX", 64 * GiB)]
    assert targets.get_target(store, "lab box").ram_bytes == 64 * GiB
    targets.delete_target(store, "Lab Box")
    assert store.target_profiles() == []


@pytest.mark.parametrize("name", ["8 GB\u200blaptop", "\u202e8 GB laptop", "lab\u2066box", "my\x00box", "box\x7f"])
def test_names_with_invisible_or_control_characters_are_refused(store, name: str) -> None:
    with pytest.raises(ValueError, match="invisible or control character"):
        targets.save_target(store, profile(name=name))
    assert store.target_profiles() == []


def test_a_name_equal_to_a_preset_after_normalising_is_refused(store) -> None:
    for name in ("8 gb LAPTOP", "８ GB laptop", "THIS  machine"):
        with pytest.raises(ValueError, match="built-in"):
            targets.save_target(store, profile(name=name))
    assert store.target_profiles() == []


def test_a_damaged_stored_profile_is_left_out_with_a_note(store) -> None:
    store.save_target_profile("broken", {"ram_bytes": -3})
    profiles, notes = targets.saved_targets(store)
    assert profiles == [] and len(notes) == 1 and "'broken' left out" in notes[0]


def test_target_profiles_are_not_run_tables(store) -> None:
    targets.save_target(store, profile())
    assert "target_profiles" not in store.run_tables()
    assert "m010_target_profiles" in store.schema_version()


# ---- fit on a target ---------------------------------------------------------------------------------------------


def test_predictions_grow_with_file_size_and_context() -> None:
    target = targets.presets()[1]  # 16 GB laptop
    by_size = [targets.fit_on_target(big(tensor_bytes=gb * 10**9), target, n_ctx=8192) for gb in (1, 3, 6, 13, 16)]
    assert [f.predicted_bytes for f in by_size] == sorted(f.predicted_bytes for f in by_size)
    assert [f.spare_bytes for f in by_size] == sorted((f.spare_bytes for f in by_size), reverse=True)
    assert [f.verdict_code for f in by_size] == [fit.CPU_ONLY] * 3 + [fit.NO_FIT] * 2
    by_ctx = [targets.fit_on_target(big(), target, n_ctx=c) for c in (2048, 8192, 32768, 131072)]
    assert all(a.kv_bytes < b.kv_bytes and a.predicted_bytes < b.predicted_bytes for a, b in zip(by_ctx, by_ctx[1:], strict=False))
    assert by_ctx[0].fits and not by_ctx[-1].fits  # 16 GiB of f16 KV cache at 128k does not fit in 12 GiB


def test_verdict_threshold_just_fits_and_just_does_not() -> None:
    model = big(tensor_bytes=3 * 10**9)
    need = targets.fit_on_target(model, profile(ram_bytes=64 * GiB), n_ctx=4096).predicted_bytes
    reserve = 2 * GiB
    just = targets.fit_on_target(model, profile(ram_bytes=need + reserve), n_ctx=4096)
    assert just.verdict_code == fit.CPU_ONLY and just.spare_bytes == 0
    short = targets.fit_on_target(model, profile(ram_bytes=need + reserve - MiB), n_ctx=4096)
    assert short.verdict_code == fit.NO_FIT and short.spare_bytes == -MiB
    assert any("short by 0.00 GiB of RAM" in n for n in short.notes)


def test_gpu_verdicts_full_partial_and_spare_in_vram() -> None:
    desk = targets.presets()[2]  # 24 GB GPU desktop
    full = targets.fit_on_target(big(), desk, n_ctx=8192)
    assert full.verdict_code == fit.GPU_FULL and full.spare_in == "VRAM"
    assert full.spare_bytes == desk.vram_budget_bytes - full.vram_bytes > 10 * GiB
    partial = targets.fit_on_target(big(tensor_bytes=30 * 10**9), desk, n_ctx=8192)
    assert partial.verdict_code == fit.GPU_PARTIAL and 0 < partial.gpu_layers < 32
    assert partial.spare_in == "RAM" and partial.spare_bytes > 0 and partial.vram_bytes <= desk.vram_budget_bytes
    huge = targets.fit_on_target(big(tensor_bytes=70 * 10**9), desk, n_ctx=8192)
    assert huge.verdict_code == fit.NO_FIT and huge.spare_bytes < 0


@pytest.mark.parametrize("size_gb", [0.5, 2, 5, 9, 12, 20, 28, 40, 60])
def test_spare_is_negative_exactly_when_it_does_not_fit(size_gb) -> None:
    for target in targets.presets():
        f = targets.fit_on_target(big(tensor_bytes=int(size_gb * 10**9)), target, n_ctx=8192)
        assert (f.spare_bytes < 0) == (f.verdict_code == fit.NO_FIT), (target.name, size_gb, f)


@pytest.mark.parametrize("gpu_free_gib", [None, 3.0, 20.0])
def test_this_machine_gives_the_verdict_the_rest_of_the_app_gives(monkeypatch, gpu_free_gib) -> None:
    """"This machine" on the Recommend page and Fit at a glance on the Hardware page must not disagree on a file:
    both keep the same share of the free memory in reserve (they once differed by that 10%)."""
    real = hardware.machine()
    gpus = [] if gpu_free_gib is None else [hardware.Gpu(0, "Test GPU", 24 * GiB, int(gpu_free_gib * GiB), "test")]
    frozen = replace(real, ram_total_bytes=32 * GiB, ram_available_bytes=20 * GiB, gpus=gpus)
    monkeypatch.setattr(hardware, "machine", lambda: frozen)
    monkeypatch.setattr(hardware, "gpu_memory_bandwidth_gbs", lambda index: 448.0)
    bandwidth = hardware.MemoryBandwidth(gbs=20.0, threads=1, array_bytes=2**26, repeats=1, cpu_fingerprint="test",
                                         measured_at="now")
    me = targets.this_machine(bandwidth=bandwidth)
    codes = set()
    for size_gb in (4, 15, 17.5, 18.5, 19.5, 21, 30, 45):
        model = big(tensor_bytes=int(size_gb * 10**9))
        here = targets.fit_on_target(model, me, n_ctx=8192)
        glance = fit.predict(model, n_ctx=8192, repack_cpu=False)  # this machine's figures, default headroom
        assert here.verdict_code == glance.verdict_code, (size_gb, here.verdict, glance.verdict)
        assert here.gpu_layers == glance.gpu_layers and here.spare_bytes == glance.spare_bytes
        codes.add(here.verdict_code)
    assert fit.NO_FIT in codes and len(codes) >= 2  # the sizes straddle the boundary


def test_quantized_kv_cache_shrinks_the_kv_line() -> None:
    model = big()
    f16, q8, q4 = (targets.fit_on_target(model, targets.presets()[1], n_ctx=32768, kv_type_k=t, kv_type_v=t)
                   for t in ("f16", "q8_0", "q4_0"))
    assert f16.kv_bytes == 32 * 32768 * 8 * 256 * 2 == 4 * GiB
    assert q8.kv_bytes == int(f16.kv_bytes * 34 / 64) and q4.kv_bytes == int(f16.kv_bytes * 18 / 64)
    assert f16.predicted_bytes > q8.predicted_bytes > q4.predicted_bytes
    mixed = targets.kv_bytes(model, 32768, "q8_0", "q4_0")
    assert mixed == (q8.kv_bytes + q4.kv_bytes) // 2


def test_kv_lines_at_standard_contexts_and_the_model_maximum() -> None:
    lines = targets.kv_lines(big(context_length=16384))
    assert [n for n, _ in lines] == [4096, 8192, 16384]  # 32k is beyond what this model was trained for
    assert lines[1][1] == 2 * lines[0][1] == lines[2][1] // 2
    assert targets.kv_lines(big(), kv_type_k="q8_0", kv_type_v="q8_0")[-1] == (131072, int(16 * GiB * 34 / 64))


def test_memory_lines_add_up(tmp_path: Path) -> None:
    real = read_header(make_gguf(tmp_path / "t-Q8_0.gguf", n_embd=64, n_layers=2, n_head=4, n_head_kv=2, ctx=4096))
    lines = targets.memory_lines(real, n_ctx=1024)
    assert lines.weights_bytes == real.tensor_bytes and lines.kv_bytes == 2 * 1024 * 2 * 32 * 2
    assert lines.total_bytes == lines.weights_bytes + lines.kv_bytes + lines.compute_other_bytes
    assert lines.basis["kv_cache"] == "read" and lines.basis["compute"] == "estimated"


# ---- speed ---------------------------------------------------------------------------------------------------------


def _cal(eff: float | None) -> speed.Calibration:
    return speed.Calibration(eff, 20.0, 0 if eff is None else 3, "test")


def test_bytes_per_token_is_weights_plus_the_kv_in_use() -> None:
    model = big()
    assert speed.bytes_per_token(model, 0) == model.tensor_bytes
    assert speed.bytes_per_token(model, 8192) == model.tensor_bytes + 1 * GiB
    assert speed.bytes_per_token(model, 8192, "q4_0", "q4_0") == model.tensor_bytes + int(GiB * 18 / 64)


def test_speed_scales_with_bandwidth_and_bytes_per_token() -> None:
    model, small = big(), big(tensor_bytes=2 * 10**9)
    slow, fast = profile(ram_bandwidth_gbs=25.0), profile(ram_bandwidth_gbs=100.0)
    cal = _cal(0.6)

    def est(m, p):
        return speed.estimate_decode(m, targets.fit_on_target(m, p, n_ctx=4096), p, cal)

    a, b = est(model, slow), est(model, fast)
    assert a.tok_s is not None and b.tok_s is not None and b.tok_s == pytest.approx(4 * a.tok_s, rel=1e-3)
    assert a.tok_s == pytest.approx(0.6 * 25e9 / a.bytes_per_token, rel=1e-3)
    c = est(small, slow)
    assert c.tok_s is not None and c.tok_s / a.tok_s == pytest.approx(a.bytes_per_token / c.bytes_per_token, rel=1e-3)
    assert a.label == "estimate" and any("calibrated" in x or x == "test" for x in a.assumptions)


def test_speed_on_a_gpu_partial_offload_and_no_fit() -> None:
    desk = targets.presets()[2]
    cal = _cal(0.5)
    for size, expect in ((5, fit.GPU_FULL), (30, fit.GPU_PARTIAL)):
        m = big(tensor_bytes=size * 10**9)
        f = targets.fit_on_target(m, desk, n_ctx=4096)
        assert f.verdict_code == expect
        e = speed.estimate_decode(m, f, desk, cal)
        assert e.tok_s is not None
        if expect == fit.GPU_FULL:
            assert e.tok_s == pytest.approx(0.5 * 1008e9 / e.bytes_per_token, rel=1e-3)
        else:  # slower than all-VRAM, faster than all-RAM
            assert 0.5 * 89.6e9 / e.bytes_per_token < e.tok_s < 0.5 * 1008e9 / e.bytes_per_token
            assert any("layers' bytes read from VRAM" in x for x in e.assumptions)
    m = big(tensor_bytes=90 * 10**9)
    none = speed.estimate_decode(m, targets.fit_on_target(m, desk, n_ctx=4096), desk, cal)
    assert none.tok_s is None and "does not fit: no speed" in none.assumptions
    no_bw = replace(desk, vram_bandwidth_gbs=None)
    m = big()
    assert speed.estimate_decode(m, targets.fit_on_target(m, no_bw, n_ctx=4096), no_bw, cal).tok_s is None


def test_no_calibration_says_it_assumes_half_the_bandwidth(store) -> None:
    cal = speed.calibrate(store)
    assert cal.efficiency is None and cal.samples == 0 and "no calibration" in cal.source
    m, p = big(), profile()
    e = speed.estimate_decode(m, targets.fit_on_target(m, p, n_ctx=4096), p, cal)
    assert e.efficiency == speed.DEFAULT_EFFICIENCY and e.assumptions[0].startswith("no calibration: assumed 50%")


def test_calibration_from_a_stored_run(store, tmp_path: Path) -> None:
    path = make_gguf(tmp_path / "c-Q8_0.gguf", n_embd=64, n_layers=2, n_head=4, n_head_kv=2, ctx=4096)
    model = read_header(path)
    bw = hardware.MemoryBandwidth(gbs=10.0, threads=2, array_bytes=2**27, repeats=4, cpu_fingerprint="x",
                                  measured_at="now")
    bpt = speed.bytes_per_token(model, 100 + 50)  # 100 prompt tokens + half of 100 completion tokens
    tok_s = 0.4 * 10e9 / bpt  # a decode that reached 40% of the bandwidth

    def result(label: str, disturbed: bool, **over) -> dict:
        return {"label": label, "quant_type": "Q8_0", "file": str(path), "decode_tok_s": tok_s, "decode_steps": 99,
                "prompt_tokens": 100, "completion_tokens": 100, "gpu_layers": 0, "is_reference": False,
                "measurement": {"decode": {"disturbed": disturbed, "contention": 0.0}}, **over}

    run = store.create_run(settings={"n_threads": 2}, prompt="p")
    store.add_result(run, 0, result("quiet", False))
    store.add_result(run, 1, result("busy", True, decode_tok_s=tok_s / 10))  # disturbed: left out
    store.add_result(run, 2, result("gpu", False, gpu_layers=33, decode_tok_s=tok_s * 10))  # not a CPU figure
    store.add_result(run, 3, result("gone", False, file=str(tmp_path / "deleted.gguf"), decode_tok_s=tok_s * 5))
    cal = speed.calibrate(store, bandwidth=bw)
    assert cal.samples == 1 and cal.efficiency == pytest.approx(0.4, rel=1e-6) and cal.threads == [2]
    assert cal.source.startswith("calibrated by the ratio measured on this machine: decode reached 40% of the copy "
                                 "bandwidth measured here with as many threads (10.0 GB/s with 2 thread(s); median of 1")
    other = store.create_run(settings={"n_threads": 2}, prompt="p", kind="diverge")  # not a decode measurement
    store.add_result(other, 0, result("teacher-forced", False, decode_tok_s=tok_s * 7))
    assert speed.calibrate(store, bandwidth=bw).samples == 1
    store.add_result(run, 4, result("later", False, decode_tok_s=tok_s * 2))
    again = speed.calibrate(store, bandwidth=bw)
    assert again.samples == 2 and again.efficiency == pytest.approx(0.6, rel=1e-6)  # the median of 0.4 and 0.8
    assert again.spread == (pytest.approx(0.4), pytest.approx(0.8))


# ---- CLI -----------------------------------------------------------------------------------------------------------


def test_cli_lists_adds_and_removes_targets(capsys) -> None:
    import json

    from workbench.cli.main import main

    assert main(["targets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][:4] == [targets.THIS_MACHINE, "8 GB laptop", "16 GB laptop", "24 GB GPU desktop"]
    assert rows[1]["ram_bandwidth_gbs"] == 51.2 and "jedec.org" in rows[1]["sources"]["ram_bandwidth_gbs"]
    assert main(["targets", "add", "CLI box", "--ram-gib", "12", "--ram-bw", "40",
                 "--source", "ram_bandwidth_gbs=measured with STREAM"]) == 0
    assert "saved CLI box" in capsys.readouterr().out
    assert main(["targets", "list"]) == 0
    out = capsys.readouterr().out
    assert "CLI box" in out and "ram_bandwidth_gbs: measured with STREAM" in out
    assert "ram_bytes: assumption: entered by hand, no source given" in out
    assert main(["targets", "add", "8 GB laptop", "--ram-gib", "12", "--ram-bw", "40"]) == 2
    assert main(["targets", "add", "bad", "--ram-gib", "12", "--ram-bw", "-1"]) == 2
    assert "argument --ram-bw: '-1': give a finite number above 0" in capsys.readouterr().err
    assert main(["targets", "add", "bad", "--ram-gib", "12", "--ram-bw", "4", "--source", "nonsense"]) == 2
    assert main(["targets", "remove", "cli BOX"]) == 0
    assert main(["targets", "remove", "cli box"]) == 2 and main(["targets", "remove", "16 GB laptop"]) == 2


@pytest.mark.parametrize("flag, value", [("--ram-gib", "inf"), ("--ram-gib", "nan"), ("--ram-gib", "-4"),
                                         ("--vram-gib", "inf"), ("--os-reserve-gib", "nan"), ("--ram-bw", "inf")])
def test_cli_refuses_numbers_that_are_not_finite_and_positive(capsys, flag: str, value: str) -> None:
    from workbench.cli.main import main

    args = {"--ram-gib": "12", "--ram-bw": "40"}
    args[flag] = value
    assert main(["targets", "add", "odd box", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert main(["targets", "remove", "odd box"]) == 2  # nothing was saved


def test_k_and_v_cache_types_apart() -> None:
    """K and V each of its own type: exactly their sum, between the all-q4_0 and the all-q8_0 cache."""
    model, laptop = big(), targets.presets()[1]
    f = targets.fit_on_target(model, laptop, n_ctx=32768, kv_type_k="q8_0", kv_type_v="q4_0")
    assert (f.kv_type_k, f.kv_type_v) == ("q8_0", "q4_0")
    assert f.kv_bytes == targets.kv_bytes(model, 32768, "q8_0", "q4_0")
    assert targets.kv_bytes(model, 32768, "q4_0", "q4_0") < f.kv_bytes < targets.kv_bytes(model, 32768, "q8_0", "q8_0")


def test_a_gpu_s_bandwidth_from_nvml_clock_and_bus_width(monkeypatch) -> None:
    """NVML gives the maximum memory clock and bus width; an RTX 4090 reports 10,501 MHz and 384 bits (NVIDIA's
    1008 GB/s). Faked here: this machine has no GPU. Without NVML the figure is unknown, never a guess."""

    class FakeNvml:
        NVML_CLOCK_MEM = 2

        @staticmethod
        def nvmlDeviceGetHandleByIndex(i):
            return i

        @staticmethod
        def nvmlDeviceGetMaxClockInfo(h, kind):
            assert kind == FakeNvml.NVML_CLOCK_MEM
            return 10501

        @staticmethod
        def nvmlDeviceGetMemoryBusWidth(h):
            return 384

    monkeypatch.setattr(hardware, "_nvml", lambda: FakeNvml)
    assert hardware.gpu_memory_bandwidth_gbs(0) == 1008.1
    monkeypatch.setattr(hardware, "_nvml", lambda: None)
    assert hardware.gpu_memory_bandwidth_gbs(0) is None


def test_a_small_model_s_estimate_says_it_reads_high() -> None:
    p, cal = profile(), _cal(0.5)
    tiny, large = big(tensor_bytes=100 * 10**6, block_count=4), big()
    assert any("small model" in a for a in speed.estimate_decode(
        tiny, targets.fit_on_target(tiny, p, n_ctx=512), p, cal).assumptions)
    assert not any("small model" in a for a in speed.estimate_decode(
        large, targets.fit_on_target(large, p, n_ctx=512), p, cal).assumptions)


def test_this_machine_with_a_busy_gpu_stays_a_valid_profile(monkeypatch) -> None:
    busy = hardware.Gpu(0, "Busy GPU", 8 * GiB, 0, "test")  # another program holds all of it
    real = hardware.machine()
    monkeypatch.setattr(hardware, "machine", lambda: replace(real, gpus=[busy]))
    monkeypatch.setattr(hardware, "gpu_memory_bandwidth_gbs", lambda index: 448.0)
    me = targets.this_machine()
    assert me.validate() == me and me.vram_bytes == 8 * GiB and me.vram_bandwidth_gbs == 448.0
    f = targets.fit_on_target(big(), me, n_ctx=4096)
    assert f.verdict_code == fit.CPU_ONLY  # no room on the GPU now: it runs from RAM


def test_cli_fit_per_target_on_real_files(capsys, tmp_path: Path) -> None:
    import json

    from workbench.cli.main import main

    small = make_gguf(tmp_path / "s-Q8_0.gguf", n_embd=64, n_layers=2, ctx=4096)
    other = make_gguf(tmp_path / "o-Q8_0.gguf", n_embd=64, n_layers=2, ctx=4096, extra_bytes=4 * MiB)
    assert main(["targets", "fit", str(small), str(other), "--target", "8 GB laptop", "--target", "24 GB GPU desktop",
                 "--ctx", "2048", "--kv-type", "q8_0", "--kv-type-v", "q4_0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(Path(r["file"]).name, r["target"]) for r in rows] == [
        ("s-Q8_0.gguf", "8 GB laptop"), ("s-Q8_0.gguf", "24 GB GPU desktop"),
        ("o-Q8_0.gguf", "8 GB laptop"), ("o-Q8_0.gguf", "24 GB GPU desktop")]
    laptop, desk = rows[0], rows[1]
    assert laptop["verdict_code"] == fit.CPU_ONLY and desk["verdict_code"] == fit.GPU_FULL
    assert laptop["kv_bytes"] == targets.kv_bytes(read_header(small), 2048, "q8_0", "q4_0")
    assert rows[2]["weights_bytes"] > laptop["weights_bytes"] and rows[2]["est_decode_tok_s"] < laptop["est_decode_tok_s"]
    assert any("small model" in a for a in laptop["estimate_assumptions"])
    assert main(["targets", "fit", str(small)]) == 0
    out = capsys.readouterr().out
    assert "Speeds are estimates, not measurements" in out and "24 GB GPU desktop" in out
    assert main(["targets", "fit"]) == 2 and main(["targets", "fit", str(small), "--kv-type", "q3_banana"]) == 2
    assert main(["targets", "fit", str(tmp_path / "missing.gguf")]) == 1
