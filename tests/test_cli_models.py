"""`workbench fit` and `workbench download`: JSON shape on the real demo ladder, a download from the local Hub server
with a progress bar, and one-line errors (exit 1), usage errors (exit 2), never a token or a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.models_helpers import REPO, SECRET
from workbench.cli.main import main
from workbench.models.ladder import load_ladder

VERDICTS = {"fits on the GPU entirely", "CPU only", "does not fit"}


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_demo_json_shape(capsys: pytest.CaptureFixture, demo_ladder) -> None:
    code, out, err = run(capsys, "fit", "--demo", "--ctx", "2048", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["quant_type"] for r in rows] == [f.quant_type for f in demo_ladder.files]
    for r, f in zip(rows, demo_ladder.files, strict=True):
        assert list(r) == ["file", "name", "quant_type", "predicted_bytes", "verdict", "how"]
        assert r["how"] == "read from this file's header"
        assert r["file"] == f.path and r["name"] == Path(f.path).name  # the absolute path, as every command names it
        assert r["verdict"] in VERDICTS or r["verdict"].startswith("partial offload")
        assert f.size_bytes < r["predicted_bytes"] < f.size_bytes + 2**30
    longer = json.loads(run(capsys, "fit", "--demo", "--ctx", "8192", "--json")[1])
    assert all(b["predicted_bytes"] - a["predicted_bytes"] == 3 * 45 * 2**20 for a, b in zip(rows, longer, strict=True))  # KV grows


def test_fit_repo_then_download_into_the_cache_as_a_ladder(capsys: pytest.CaptureFixture, models_env: Path, hub_server) -> None:
    code, out, err = run(capsys, "fit", "--repo", REPO, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["quant_type"] for r in rows] == ["F16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K"]
    assert all(r["verdict"] in VERDICTS and r["predicted_bytes"] > 0 for r in rows)
    assert all(r["file"] is None and r["name"].endswith(".gguf") for r in rows)  # not on this disk yet
    assert hub_server.seen("GET", "/cdn/tester/Tiny-GGUF/Tiny-F16.gguf")[0].range.startswith("bytes=0-")  # range reads

    code, out, err = run(capsys, "download", REPO, "--types", "Q8_0,Q2_K", "--ladder", "--json")
    assert code == 0, err
    assert "[" in err and "100%" in err and "Tiny-Q2_K.gguf" in err  # the progress bar, on stderr
    got = json.loads(out)
    assert [f["quant_type"] for f in got["files"]] == ["Q8_0", "Q2_K"] and all(f["verified"] for f in got["files"])
    assert all(Path(f["file"]).is_file() and str(models_env / "hf" / "hub") in f["file"] for f in got["files"])
    assert [f["file"] for f in got["ladder"]["files"]] == [f["file"] for f in got["files"]]  # one name for one file
    lad = load_ladder(got["ladder"]["directory"])
    assert lad.name == REPO and [f.quant_type for f in lad.files] == ["Q8_0", "Q2_K"]

    code, out, err = run(capsys, "download", REPO, "--types", "Q2_K")  # again: from the cache, a table
    assert code == 0 and "from cache" in out


@pytest.mark.parametrize("argv, code, says", [
    (["fit"], 2, "exactly one"),
    (["fit", "--demo", "--repo", REPO], 2, "exactly one"),
    (["fit", "--demo", "--ctx", "10"], 2, "--ctx"),
    (["fit", "--demo", "--kv-type", "q3_banana"], 2, "KV cache type"),
    (["fit", "--repo", "not a repo"], 2, "owner/name"),
    (["fit", "/no/such/model.gguf"], 1, "no such file"),
    (["download", "a/b/c"], 2, "owner/name"),
    (["download", "tester/nothing-here"], 1, "not found"),
    (["download", "tester/Safetensors-only"], 1, "no GGUF"),
    (["download", REPO, "--types", "Q1_0"], 1, "offers"),
])
def test_errors_are_one_line(capsys: pytest.CaptureFixture, models_env: Path, argv: list[str], code: int, says: str) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and says in lines[0], err
    assert "Traceback" not in err


def test_gated_repo_names_the_token_but_never_prints_it(capsys: pytest.CaptureFixture, models_env: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    code, out, err = run(capsys, "download", "gated-org/Gated-GGUF", "--types", "Q4_K_M")
    assert code == 1 and "error:" in err and ("403" in err or "gated" in err)
    assert SECRET not in out + err
    code, out, err = run(capsys, "fit", "--repo", "gated-org/Gated-GGUF", "--json")
    assert code == 1 and SECRET not in out + err
    row = json.loads(out)[0]
    assert row["verdict"] is None and row["how"].startswith("header unreadable: ") and "error:" in err


def test_offline_fit_and_download_use_the_cache(capsys: pytest.CaptureFixture, models_env: Path, hub_server,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "download", REPO, "--types", "Q4_K_M")[0] == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(hub_server.requests)
    code, out, err = run(capsys, "fit", "--repo", REPO, "--json")
    assert code == 0 and [r["quant_type"] for r in json.loads(out)] == ["Q4_K_M"] and "HF_HUB_OFFLINE" in err
    assert Path(json.loads(out)[0]["file"]).is_file()  # read from the cache: the local file, under `file`
    code, out, err = run(capsys, "download", REPO, "--types", "Q8_0")
    assert code == 1 and "offline" in err.lower()
    assert len(hub_server.requests) == n  # offline means no request at all


def test_an_unreadable_header_gets_no_verdict_and_an_estimate_says_so(capsys: pytest.CaptureFixture, models_env: Path,
                                                                      hub_server, tmp_path: Path) -> None:
    """Issue 24: a Hub file whose header declares a 2^30-entry array was listed "CPU only" with a predicted size
    borrowed from its neighbour's header. Now it gets no verdict and its row says the header was refused; a file whose
    header was not read is labelled an estimate in the JSON (`how`)."""
    from tests.gguf_factory import hostile_files
    from tests.hubserver import make_gguf
    from workbench.models import hub
    from workbench.models.acquire import fit_listing

    evil = hostile_files(tmp_path)["huge array"][0].read_bytes() + b"\0" * 100_000
    good = make_gguf(tmp_path / "Good-Q8_0.gguf", file_type=7, extra_bytes=10_000).read_bytes()
    hub_server.add_repo("tester/Hostile-GGUF", {"Evil-Q4_K_M.gguf": evil, "Good-Q8_0.gguf": good,
                                                "Other-Q6_K.gguf": good + b"\0" * 1000})
    code, out, err = run(capsys, "fit", "--repo", "tester/Hostile-GGUF", "--json")
    assert code == 1  # a file could not be judged
    rows = {r["name"]: r for r in json.loads(out)}
    refused = "header declares an array of 1,073,741,824 entries for key 'x' (limit 16,777,216)"
    assert rows["Evil-Q4_K_M.gguf"]["verdict"] is None and rows["Evil-Q4_K_M.gguf"]["predicted_bytes"] is None
    assert rows["Evil-Q4_K_M.gguf"]["how"] == f"header unreadable: {refused}"
    assert rows["Good-Q8_0.gguf"]["verdict"] in VERDICTS and rows["Good-Q8_0.gguf"]["how"] == "read from this file's header"
    assert refused in err and "Traceback" not in err

    code, out, err = run(capsys, "fit", "--repo", "tester/Hostile-GGUF")  # the table says it in words too
    evil_line = next(line for line in out.splitlines() if line.startswith("Evil-Q4_K_M.gguf"))
    assert f"header unreadable: {refused}" in evil_line and not any(v in evil_line for v in VERDICTS)

    # the Models page reads only the chosen and preselected files: the rest borrow a shape and say so
    listing = hub.list_gguf("tester/Hostile-GGUF")
    read = {e.name for e in listing.selected()}  # as the page asks: chosen (none yet) and preselected
    assert read == {"Evil-Q4_K_M.gguf", "Good-Q8_0.gguf"}
    by_name = {r.entry.name: r for r in fit_listing(listing, read=read)}
    assert by_name["Evil-Q4_K_M.gguf"].prediction is None  # read and refused: nothing borrowed for it
    assert by_name["Evil-Q4_K_M.gguf"].verdict_text == f"header unreadable: {refused}"
    other = by_name["Other-Q6_K.gguf"].summary()
    assert other["verdict"] in VERDICTS and other["how"] == "estimated from Good-Q8_0.gguf's header"


def test_a_local_file_whose_header_is_refused_is_a_row_without_a_verdict(capsys: pytest.CaptureFixture, demo_ladder,
                                                                         tmp_path: Path) -> None:
    from tests.gguf_factory import hostile_files

    evil, _ = hostile_files(tmp_path)["huge array"]
    q2 = demo_ladder.by_label("Q2_K").path
    code, out, err = run(capsys, "fit", str(evil), q2, "--json")
    assert code == 1 and "1,073,741,824" in err
    rows = json.loads(out)
    assert [r["file"] for r in rows] == [str(evil), q2]
    assert rows[0]["verdict"] is None and rows[0]["predicted_bytes"] is None
    assert rows[0]["how"].startswith("header unreadable: header declares an array of 1,073,741,824 entries")
    assert rows[1]["verdict"] in VERDICTS and rows[1]["how"] == "read from this file's header"
