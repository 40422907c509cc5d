"""Two different models never share a ladder (issue 14, finding 3).

Ladder folders and file names come from the source's name up to its first dot; two sources sharing that prefix
used to land in one folder, and the second silently reused the first one's quantized files as "already built".
Quantization here is real (llama_model_quantize); the sources are two different files of the demo ladder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.models.ladder import Ladder, _same_source, build_ladder, sha256_file


@pytest.fixture()
def two_sources(tmp_path: Path, demo_ladder, monkeypatch) -> tuple[Path, Path]:
    """`model.gguf` in two folders: the demo's Q8_0 and its Q4_K_M, different content, same name."""
    monkeypatch.setenv("WORKBENCH_LADDERS_DIR", str(tmp_path / "ladders"))
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for dst, label in ((a, "Q8_0"), (b, "Q4_K_M")):
        dst.parent.mkdir()
        shutil.copy(demo_ladder.by_label(label).path, dst)
    return a, b


def test_sources_with_the_same_name_get_their_own_ladders(two_sources, tmp_path):
    a, b = two_sources
    lad_a = build_ladder(a, ["Q2_K"], reference_type=None)
    messages: list[str] = []
    lad_b = build_ladder(b, ["Q2_K"], reference_type=None, progress=messages.append)
    assert lad_a.directory != lad_b.directory
    assert Path(lad_a.directory).parent == Path(lad_b.directory).parent == tmp_path / "ladders"
    assert not any("already built" in m for m in messages), messages
    qa, qb = lad_a.by_label("Q2_K"), lad_b.by_label("Q2_K")
    assert qa.path != qb.path and sha256_file(qa.path) != sha256_file(qb.path)
    assert lad_a.provenance["source_sha256"] == sha256_file(a) and lad_b.provenance["source_sha256"] == sha256_file(b)

    messages.clear()  # the same source again: its files are reused, not quantized again
    mtime = Path(qb.path).stat().st_mtime_ns
    again = build_ladder(b, ["Q2_K"], reference_type=None, progress=messages.append)
    assert again.directory == lad_b.directory and any("Q2_K: already built" in m for m in messages), messages
    assert Path(qb.path).stat().st_mtime_ns == mtime


def test_a_shared_folder_does_not_reuse_another_sources_files(two_sources, tmp_path):
    """An explicit folder (the CLI's --out, the demo's fixed folder) holding another source's ladder is rebuilt."""
    a, b = two_sources
    out = tmp_path / "shared"
    lad_a = build_ladder(a, ["Q2_K"], out, reference_type=None)
    hash_a = sha256_file(lad_a.by_label("Q2_K").path)
    messages: list[str] = []
    lad_b = build_ladder(b, ["Q2_K"], out, reference_type=None, progress=messages.append)
    assert any("Q2_K: quantizing" in m for m in messages) and not any("already built" in m for m in messages)
    assert sha256_file(lad_b.by_label("Q2_K").path) != hash_a
    assert lad_b.provenance["source_sha256"] == sha256_file(b)
    assert lad_b.provenance["built_files"] == {"model.Q2_K.gguf": "Q2_K"}

    messages.clear()  # asking for the same file as another type is not a reuse either
    lad_b2 = build_ladder(b, ["Q2_K"], out, reference_type="Q2_K", progress=messages.append)
    assert any("already built" in m for m in messages) and lad_b2.by_label("Q2_K").reference


def test_demo_ladder_identity_check(tmp_path, demo_ladder):
    """The demo keeps its folder; its ladder.json must name the shipped source, checked by sha256 once and then by
    size and mtime (a ladder.json from before source_stat was recorded is not rebuilt)."""
    from workbench.models.ladder import demo_source

    src = demo_source()
    old = Ladder("demo", [], {"source_sha256": sha256_file(src)}, str(tmp_path))
    assert _same_source(old, src)
    st = src.stat()
    assert old.provenance["source_stat"] == [st.st_size, st.st_mtime_ns]  # recorded: the next check reads nothing
    assert (tmp_path / "ladder.json").exists()
    other = Ladder("demo", [], {"source_sha256": "0" * 64}, str(tmp_path))
    assert not _same_source(other, src)
    assert _same_source(demo_ladder, src)


def test_build_steps_come_as_numbers_beside_the_lines_for_people(two_sources):
    """A progress bar reads (done, total, what) and never parses the "[i/n]" lines the CLI prints."""
    from workbench.models.acquire import LadderBuildJob

    a, _ = two_sources
    lines: list[str] = []
    steps: list[tuple[int, int, str]] = []
    build_ladder(a, ["Q2_K"], reference_type=None, progress=lines.append, on_step=lambda *s: steps.append(s))
    assert lines[-2:] == ["[1/1] Q2_K: quantizing…", lines[-1]] and lines[-1].endswith("MiB")
    assert steps[0] == (0, 1, "Q2_K: quantizing…") and steps[1][:2] == (1, 1) and len(steps) == 2

    job = LadderBuildJob(str(a), ["Q2_K"], reference_type=None).start()  # reused now: one step, already built
    assert job.join(120)
    snap = job.snapshot()
    assert snap["error"] is None and snap["ladder"] is not None
    assert (snap["step"], snap["steps"], snap["fraction"]) == (1, 1, 1.0)
    assert snap["messages"][-1] == "[1/1] Q2_K: already built"
