"""The Models and Hardware pages in Streamlit's headless AppTest: a repo listed from a local Hub-compatible server
(huggingface_hub's real client over real HTTP), fit verdicts before download, a download with progress that becomes
the active ladder, offline mode, models already on disk, building a ladder, and predicted vs measured memory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.models_helpers import REPO, SECRET, lm_studio_and_ollama
from workbench.core.escaping import md_escape
from workbench.models import hub
from workbench.models.ladder import load_ladder

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def models_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/models.py")
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str, key: str | None = None):
    return next(b for b in at.button if b.label == label and (key is None or b.key == key))


def list_repo(at: AppTest, repo: str) -> None:
    at.text_input(key="models-repo").set_value(repo)
    at.run()
    button(at, "List GGUF files").click()
    at.run()
    assert not at.exception, at.exception


def fit_table(at: AppTest):
    return next(d.value for d in at.dataframe if "verdict" in d.value.columns)


def wait_until(at: AppTest, done, timeout: float = 60) -> None:
    """Rerun until `done(at)`. The page follows a running job inside its script run and reruns itself when the
    job ends, so the run that started a job may already show the outcome: look before running again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not at.exception, at.exception
        if done(at):
            return
        time.sleep(0.3)
        at.run()
    raise AssertionError("the page did not get there in time")


def test_repo_listing_fit_download_and_use_as_ladder(models_env: Path, hub_server, tiny_files) -> None:
    at = models_page()
    list_repo(at, REPO)
    assert not at.error, [e.value for e in at.error]
    table = fit_table(at)
    assert list(table["type"]) == ["F16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K"]  # grouped, highest precision first
    assert set(table["verdict"]) <= {"CPU only", "fits on the GPU entirely"} and not table["verdict"].str.startswith("unknown").any()
    shape = dict(zip(table["type"], table["model shape"], strict=True))
    assert shape["Q8_0"] == "read from this file's header"  # a default: its header was range-read
    assert shape["F16"].startswith("estimated from")  # not chosen: shape borrowed, weights from the file size
    assert all("(read)" in b for b in table["bits/weight"])  # file size / the Hub's parameter count
    pick = at.multiselect(key=f"models-pick-{REPO}-{hub_server.repos[REPO].commit}")
    assert pick.value == ["Tiny-Q8_0.gguf", "Tiny-Q5_K_M.gguf", "Tiny-Q4_K_M.gguf", "Tiny-Q2_K.gguf"]
    assert any("to download" in c.value and "free on disk" in c.value for c in at.caption)
    assert not hub_server.seen("GET", "/cdn/tester/Tiny-GGUF/Tiny-F16.gguf")  # nothing fetched for unchosen files

    pick.set_value(["Tiny-Q8_0.gguf", "Tiny-Q2_K.gguf"])
    at.run()
    button(at, "Download 2 file(s)").click()
    at.run()
    wait_until(at, lambda a: any(b.label == "Use as ladder" and b.key == "models-use-download" for b in a.button))
    assert any("sha256 verified" in s.value for s in at.success)
    assert fit_table(at).set_index("type").loc["Q2_K", "cached"]  # the listing knows the files are cached now
    cached = sorted(p.name for p in (models_env / "hf" / "hub").rglob("snapshots/*/*.gguf"))
    assert cached == ["Tiny-Q2_K.gguf", "Tiny-Q8_0.gguf"]

    button(at, "Use as ladder", "models-use-download").click()
    at.run()
    assert not at.exception, at.exception
    active = at.session_state["ladder_dir"]
    lad = load_ladder(active)
    assert lad.name == REPO and sorted(f.quant_type for f in lad.files) == ["Q2_K", "Q8_0"]
    assert all("/snapshots/" in f.path for f in lad.files)  # used where they are, in the HF cache
    assert any(md_escape(REPO) in s.value and "active ladder" in s.value for s in at.success)

    assert any(m.value == r"**Tiny (Hugging Face cache)** · Q8\_0, Q2\_K" for m in at.markdown)  # on disk now

    at.switch_page("pages/compare.py")  # the Compare page (and the sidebar, from the same session state) use it
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox[0].value == REPO


def test_a_file_whose_header_is_refused_gets_no_verdict_on_the_page(models_env: Path, hub_server, tmp_path: Path) -> None:
    """Issue 24: a 49-byte GGUF declaring a 2^30-entry array was shown "CPU only"; now its row says why it has no
    verdict, and choosing it warns before the download."""
    from tests.gguf_factory import hostile_files
    from tests.hubserver import make_gguf

    evil = hostile_files(tmp_path)["huge array"][0].read_bytes()
    hub_server.add_repo("tester/Hostile-GGUF", {"Evil-Q4_K_M.gguf": evil,
                                                "Good-Q8_0.gguf": make_gguf(tmp_path / "g.gguf").read_bytes()})
    at = models_page()
    list_repo(at, "tester/Hostile-GGUF")
    verdicts = dict(zip(fit_table(at)["type"], fit_table(at)["verdict"], strict=True))
    assert verdicts["Q4_K_M"].startswith("header unreadable: header declares an array of 1,073,741,824 entries")
    assert verdicts["Q8_0"] in {"CPU only", "fits on the GPU entirely"}
    assert any("No fit verdict for Evil-Q4\\_K\\_M.gguf" in w.value for w in at.warning), [w.value for w in at.warning]


def test_bad_repo_ids_get_one_line(models_env: Path) -> None:
    at = models_page()
    list_repo(at, "not a repo")
    assert len(at.error) == 1 and "owner/name" in at.error[0].value
    list_repo(at, "tester/nothing-here")
    assert len(at.error) == 1 and "not found" in at.error[0].value
    list_repo(at, "tester/Safetensors-only")
    assert len(at.error) == 1 and "no GGUF" in at.error[0].value


def test_gated_download_says_why_and_never_shows_the_token(models_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    at = models_page()
    list_repo(at, "gated-org/Gated-GGUF")  # the listing is public; the file needs access
    assert any("HF_TOKEN is set" in c.value for c in at.caption)
    button(at, "Download 1 file(s)").click()
    at.run()
    wait_until(at, lambda a: bool(a.error))
    assert "gated" in at.error[0].value or "403" in at.error[0].value
    everything = " ".join(str(e.value) for kind in ("markdown", "caption", "error", "warning", "info", "success")
                          for e in at.get(kind))
    assert SECRET not in everything


def test_offline_mode_says_so_and_lists_the_cache(models_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.download(REPO, ["Q4_K_M"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = models_page()
    assert any(i.value.startswith("**Offline**") for i in at.info)
    cached = next(d.value for d in at.dataframe if "repo" in d.value.columns)
    assert list(cached["repo"]) == [REPO] and list(cached["type"]) == ["Q4_K_M"]
    list_repo(at, REPO)
    assert any(md_escape("HF_HUB_OFFLINE") in w.value for w in at.warning)
    table = fit_table(at)
    assert list(table["type"]) == ["Q4_K_M"] and table["model shape"][0] == "read (cached file)"
    button(at, "Download 1 file(s)").click()  # offline "download" = take it from the cache
    at.run()
    wait_until(at, lambda a: any(b.key == "models-use-download" for b in a.button))
    button(at, "Use as ladder", "models-use-download").click()
    at.run()
    assert load_ladder(at.session_state["ladder_dir"]).files[0].quant_type == "Q4_K_M"


def test_models_on_disk_become_ladders(models_env: Path, tiny_files) -> None:
    lm_studio_and_ollama(models_env / "home", tiny_files)
    folder = models_env / "mine"
    folder.mkdir()
    for q in ("Q8_0", "Q2_K"):
        (folder / f"Folded-{q}.gguf").write_bytes(tiny_files[f"Tiny-{q}.gguf"])
    at = models_page()
    titles = [m.value for m in at.markdown]
    assert r"**Small (LM Studio)** · Q8\_0, Q4\_K\_M" in titles  # names are escaped Markdown
    assert r"**ollie (Ollama)** · Q8\_0, Q2\_K" in titles
    at.text_input(key="models-folder").set_value(str(models_env / "nope"))
    at.run()
    assert any("no such folder" in e.value for e in at.error)
    at.text_input(key="models-folder").set_value(str(folder))
    at.run()
    assert r"**Folded (folder)** · Q8\_0, Q2\_K" in [m.value for m in at.markdown]

    ollama_button = next(b for b in at.button if b.key and b.key.startswith("models-use-found-") and "ollie" in b.key)
    ollama_button.click()
    at.run()
    assert not at.exception, at.exception
    lad = load_ladder(at.session_state["ladder_dir"])
    assert lad.name == "ollie (Ollama)" and [f.quant_type for f in lad.files] == ["Q8_0", "Q2_K"]
    assert all("/blobs/sha256-" in f.path for f in lad.files)
    assert any("Ollama" in line for line in lad.provenance_lines())


def test_make_a_ladder_with_progress(models_env: Path, demo_ladder) -> None:
    at = models_page()
    at.text_input(key="models-src").set_value(str(models_env / "missing.gguf"))
    at.run()
    button(at, "Build ladder").click()
    at.run()
    assert len(at.error) == 1 and "no such file" in at.error[0].value

    src = demo_ladder.by_label("Q4_K_M").path  # any local GGUF; a small one keeps the test short
    at.text_input(key="models-src").set_value(src)
    at.multiselect(key="models-types").set_value(["Q2_K"])
    at.selectbox(key="models-ref").set_value("the source file itself")
    at.run()
    button(at, "Build ladder").click()
    at.run()
    wait_until(at, lambda a: any("active ladder" in s.value for s in a.success), timeout=180)
    lad = load_ladder(at.session_state["ladder_dir"])
    assert [f.quant_type for f in lad.files] == ["Q4_K_M", "Q2_K"] and lad.files[0].reference
    assert Path(lad.directory).parent == models_env / "ladders"


def test_hardware_page_no_gpu_and_predicted_vs_measured(pool, demo_ladder) -> None:
    from workbench.runs.compare import contestants_for, run_comparison
    from workbench.runs.contestants import RunSettings
    from workbench.storage.store import Store

    q2 = contestants_for(demo_ladder, ["Q2_K"], reference="Q2_K")
    comparison = run_comparison(pool, q2, "Say hi.", RunSettings(max_tokens=4, n_ctx=1024), store=Store(), ladder=demo_ladder)
    assert comparison.all_ok and comparison.results[0].peak_rss_bytes

    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("pages/hardware.py")
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Hardware: can this machine run it?"
    assert any(i.value.startswith("no GPU (no NVIDIA driver/NVML found)") for i in at.info)
    glance = next(d.value for d in at.dataframe if "predicted peak" in d.value.columns)
    assert list(glance["quantization"]) == demo_ladder.labels() and set(glance["verdict"]) == {"fits (CPU)"}
    checks = next(d.value for d in at.dataframe if "measured MiB" in d.value.columns)
    row = checks[checks["run"] == comparison.run_id].iloc[0]
    assert row["quantization"] == "Q2_K" and row["context"] == 1024
    assert row["measured MiB"] == round(comparison.results[0].peak_rss_bytes / 2**20, 1)
    assert abs(row["error %"]) < 25  # the bound itself is asserted in test_fit_measured.py
    assert at.get("plotly_chart")


def test_hardware_page_gives_a_refused_header_no_verdict(models_env: Path, demo_ladder, tmp_path: Path) -> None:
    """Issue 24: a ladder file whose header the parser refuses is a row that says so, beside the others' verdicts."""
    import json
    from dataclasses import asdict, replace

    from tests.gguf_factory import hostile_files

    evil, _ = hostile_files(tmp_path)["huge array"]
    q2 = demo_ladder.by_label("Q2_K")
    bad = replace(q2, path=str(evil), label="Evil", size_bytes=evil.stat().st_size)
    lad = models_env / "ladders" / "with-a-bad-file"  # among the ladders the app lists (models_env's own folder)
    lad.mkdir()
    (lad / "ladder.json").write_text(json.dumps({"name": "with a bad file", "files": [asdict(q2), asdict(bad)]}))
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["ladder_dir"] = str(lad)
    at.switch_page("pages/hardware.py")
    at.run()
    assert not at.exception, at.exception
    glance = next(d.value for d in at.dataframe if "predicted peak" in d.value.columns).set_index("quantization")
    assert glance.loc["Q2_K", "verdict"] == "fits (CPU)"
    assert glance.loc["Evil", "verdict"].startswith("header unreadable: header declares an array of 1,073,741,824")


def test_download_job_behind_the_page_cancels_and_resumes(models_env: Path) -> None:
    from workbench.models import acquire as models

    listing = hub.list_gguf(REPO)
    job = models.DownloadJob(listing, [listing.find("Q8_0")])
    job.stop()  # cancelled before its first byte: the page's Cancel button does this mid-download
    job.start().thread.join(30)
    snap = job.snapshot()
    assert snap["finished"] and snap["error_kind"] == "cancelled" and "resum" in snap["error"]
    assert not listing.find("Q8_0").cached
    again = models.DownloadJob(listing, [listing.find("Q8_0")]).start()
    again.thread.join(30)
    snap = again.snapshot()
    assert snap["error"] is None and snap["fraction"] == 1.0 and snap["files"][0]["phase"] == "done"
    assert listing.find("Q8_0").cached and Path(snap["result"][0].path).is_file()


def test_download_job_registers_the_commit_it_downloaded(models_env: Path, hub_server, tiny_files) -> None:
    """A branch moved after the listing: the job downloads the listed commit's file and the ladder names that commit."""
    from workbench.models import acquire as models

    listing = hub.list_gguf(REPO)
    vetted = listing.revision
    moved = hub_server.push(REPO, {"Tiny-Q2_K.gguf": tiny_files["Tiny-Q4_K_M.gguf"]})
    job = models.DownloadJob(listing, [listing.find("Q2_K")]).start()
    job.thread.join(30)
    snap = job.snapshot()
    assert snap["error"] is None and Path(snap["result"][0].path).read_bytes() == tiny_files["Tiny-Q2_K.gguf"]
    assert snap["result"][0].revision == vetted != moved
    lad = models.register_download(REPO, snap["result"], "main")  # a caller naming the branch, not the commit
    assert lad.provenance["hub_revision"] == vetted and f"revision {vetted[:12]}" in lad.provenance["origin"]
