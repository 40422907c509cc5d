"""Each kind of bad model file gives one clear line naming the file and the cause; the others still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gguf_factory import copy_gguf, truncate

from workbench.files.gguf_info import GgufError, check_path, read_header
from workbench.runs.compare import run_contestant
from workbench.runs.contestants import Contestant, RunSettings

SHORT = RunSettings(max_tokens=8, n_ctx=256)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, demo_ladder) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the error must contain)."""
    d = tmp_path_factory.mktemp("bad")
    src = demo_ladder.by_label("Q2_K").path
    (d / "empty.gguf").write_bytes(b"")
    (d / "not-gguf.gguf").write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 10)
    (d / "a-directory.gguf").mkdir()
    truncate(src, d / "truncated.gguf", 0.5)
    truncate(src, d / "header-cut.gguf", 0.0005)
    copy_gguf(src, d / "unknown-arch.gguf", arch="frobnicator")
    copy_gguf(src, d / "missing-tensors.gguf", drop_tensors=3)
    return {
        "missing": (d / "does-not-exist.gguf", "no such file"),
        "directory": (d / "a-directory.gguf", "is a directory"),
        "empty": (d / "empty.gguf", "file is empty"),
        "wrong magic": (d / "not-gguf.gguf", "not a GGUF file"),
        "truncated": (d / "truncated.gguf", "truncated"),
        "header cut": (d / "header-cut.gguf", "truncated"),
        "unknown architecture": (d / "unknown-arch.gguf", "architecture 'frobnicator'"),
        "llama.cpp refuses": (d / "missing-tensors.gguf", "llama.cpp could not load it"),
    }


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "wrong magic", "truncated", "header cut",
                                  "unknown architecture"])
def test_header_check_names_file_and_cause(bad_files, kind):
    path, phrase = bad_files[kind]
    with pytest.raises(GgufError) as err:
        read_header(path)
    msg = str(err.value)
    assert str(path) in msg and phrase in msg and "\n" not in msg


def test_llama_cpp_refusal_is_an_error_result_not_a_crash(bad_files, pool):
    path, phrase = bad_files["llama.cpp refuses"]
    r = run_contestant(pool, Contestant("broken", str(path), "Q2_K"), SHORT, SHORT.messages("hi"))
    assert not r.ok and phrase in r.error and str(path) in r.error
    assert r.stop_reason == "error"


def test_unreadable_file_is_reported(demo_ladder):
    """As root every file is readable, so check as an unprivileged user (uid 65534, 'nobody')."""
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="wb-unreadable-", dir="/tmp"))  # traversable by others
    secret = tmp_path / "secret.gguf"
    secret.write_bytes(Path(demo_ladder.by_label("Q2_K").path).read_bytes()[:4096])
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    if os.geteuid() != 0:
        os.chmod(secret, 0o000)
        with pytest.raises(GgufError, match="cannot be read"):
            check_path(secret)
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to 'nobody' and try to read the file
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                check_path(secret)
                message = "no error"
            except GgufError as exc:
                message = str(exc)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    message = os.read(read_end, 4096).decode()
    assert message == f"{secret}: cannot be read (permission denied)"


def test_cli_reports_each_bad_file_in_one_line_and_runs_the_good_one(bad_files, demo_ladder):
    good = demo_ladder.by_label("Q2_K").path
    bad = [str(bad_files[k][0]) for k in ("missing", "empty", "wrong magic", "truncated", "llama.cpp refuses")]
    proc = subprocess.run(
        [sys.executable, "-m", "workbench", "compare", good, *bad, "--prompt", "Say hi.", "--max-tokens", "8",
         "--ctx", "256", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    out = json.loads(proc.stdout)
    by_file = {r["file"]: r for r in out["results"]}
    assert by_file[good]["error"] is None and by_file[good]["completion_tokens"] > 0
    for path in bad:
        err = by_file[path]["error"]
        assert err and path in err and "\n" not in err
    for path in bad[:-1]:  # caught by the header check: one stderr line each
        assert sum(path in line for line in proc.stderr.splitlines()) == 1


def test_cli_usage_errors_exit_2():
    for args in (["compare", "--prompt", "x"], ["compare", "--demo", "--prompt", "x", "--max-tokens", "0"],
                 ["ladder", "x.gguf", "--types", "Q9_Z"], ["compare"]):
        proc = subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
