"""Issue 23: the Hardware page answers "will it fit?" per target in words, from the library: fits with how much to
spare, fits with partial GPU offload, or does not fit with what it needs and what the target has. Real headers of
the demo ladder against constructed targets sized to land on each verdict."""

from __future__ import annotations

import pytest

from workbench.decide import targets
from workbench.decide.targets import TargetProfile
from workbench.files import fit
from workbench.files.gguf_info import read_header

MiB = 2**20


def target(ram: int, reserve: int, vram: int = 0) -> TargetProfile:
    return TargetProfile(name="test box", ram_bytes=ram, vram_bytes=vram, ram_bandwidth_gbs=50.0,
                         vram_bandwidth_gbs=None, cores=4, os_reserve_bytes=reserve, sources={},
                         builtin=False).validate()


@pytest.fixture(scope="module")
def infos(demo_ladder):
    return [(f.label, read_header(f.path)) for f in demo_ladder.files]


def fits_on(infos, profile: TargetProfile) -> list[tuple[str, targets.TargetFit]]:
    return [(label, targets.fit_on_target(info, profile, n_ctx=512)) for label, info in infos]


def test_some_fit_some_do_not(infos) -> None:
    box = target(512 * MiB, 256 * MiB)  # 256 MiB for models: F16 (258 MiB of weights alone) cannot fit
    fits = dict(fits_on(infos, box))
    assert fits["F16"].verdict_code == fit.NO_FIT and fits["Q2_K"].verdict_code == fit.CPU_ONLY
    no = targets.fit_sentence(fits["F16"], box)
    needs = 256 * MiB - fits["F16"].spare_bytes
    assert no == f"does not fit: needs {needs / MiB:,.0f} MiB of RAM, has 256 MiB (512 MiB less 256 MiB for the OS)"
    assert targets.fit_sentence(fits["Q2_K"], box) == f"fits, with {fits['Q2_K'].spare_bytes / MiB:,.0f} MiB to spare"
    line = targets.ladder_fit_sentence(box, list(fits.items()))
    assert line.startswith("Q8_0, Q5_K_M, Q4_K_M and Q2_K fit; the tightest, Q8_0, fits, with ")
    assert line.endswith(f"F16 {no}.")


def test_none_fits_names_the_smallest(infos) -> None:
    box = target(512 * MiB, 400 * MiB)
    line = targets.ladder_fit_sentence(box, fits_on(infos, box))
    assert line.startswith("None fits: even the smallest, Q2_K, does not fit: needs ")
    assert "has 112 MiB (512 MiB less 400 MiB for the OS)" in line


def test_gpu_targets_say_full_or_partial_offload(infos) -> None:
    roomy = target(32 * 2**30, 4 * 2**30, vram=24 * 2**30)
    line = targets.ladder_fit_sentence(roomy, fits_on(infos, roomy))
    assert line.startswith("All 5 fit; the tightest, F16, fits on the GPU, with ") and "GiB of VRAM to spare" in line

    tight = target(512 * MiB, 300 * MiB, vram=750 * MiB)  # the CUDA context leaves room for only some layers
    fits = dict(fits_on(infos, tight))
    q8 = fits["Q8_0"]
    assert q8.verdict_code == fit.GPU_PARTIAL
    assert targets.fit_sentence(q8, tight).startswith(
        f"fits with partial GPU offload ({q8.gpu_layers} of {q8.n_layers} layers on the GPU, the rest on the CPU), "
        "with ")


def test_cpu_only_on_a_gpu_target_says_it_runs_on_the_cpu(infos) -> None:
    box = target(8 * 2**30, 2 * 2**30, vram=600 * MiB)  # the CUDA context alone fills it: no layer goes there
    f = targets.fit_on_target(infos[0][1], box, n_ctx=512)
    assert f.verdict_code == fit.CPU_ONLY
    assert targets.fit_sentence(f, box).startswith("fits in RAM and runs on the CPU (not on the GPU), with ")
    assert targets.verdict_words(fit.CPU_ONLY) == "fits (CPU)" and targets.verdict_words("odd", "odd verdict") == "odd verdict"
