"""The Hub layer against a real HTTP server on 127.0.0.1 running huggingface_hub's real client code.

Covers listing (grouping, shards, default selection), downloads (progress, resume with a Range request,
cancellation, sha256 rejection, disk checks), the one-line error messages (invalid id, unknown repo,
gated repo, network), offline mode listing the cache, and that the token never appears in a message or log.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from tests.hubserver import HubServer, make_gguf
from workbench.models import hub
from workbench.models.hub import HubError

REPO = "tester/Tiny-GGUF"
QUANTS = {  # file name -> (LLAMA_FTYPE, extra bytes so sizes differ like real quantizations)
    "Tiny-F16.gguf": (1, 160_000),
    "Tiny-BF16.gguf": (32, 160_000),
    "Tiny-Q8_0.gguf": (7, 80_000),
    "Tiny-Q6_K.gguf": (18, 64_000),
    "Tiny-Q5_K_M.gguf": (17, 52_000),
    "Tiny-Q4_K_M.gguf": (15, 44_000),
    "Tiny-IQ4_XS.gguf": (30, 40_000),
    "Tiny-Q3_K_M.gguf": (12, 34_000),
    "Tiny-Q2_K.gguf": (10, 26_000),
}
N_PARAMS = 50_000


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("ggufs")
    out = {}
    for name, (ftype, extra) in QUANTS.items():
        out[name] = make_gguf(d / name, file_type=ftype, extra_bytes=extra).read_bytes()
    big = make_gguf(d / "Big-Q8_0.gguf", file_type=7, n_vocab=2000, extra_bytes=400_000)
    out["Big-Q8_0.gguf"] = big.read_bytes()
    return out


@pytest.fixture()
def server(gguf_bytes: dict[str, bytes]):
    s = HubServer()
    files = dict(gguf_bytes)
    big = files.pop("Big-Q8_0.gguf")
    files["README.md"] = b"# Tiny\n"
    files["mmproj-Tiny-F16.gguf"] = gguf_bytes["Tiny-F16.gguf"][:1000]  # a vision projector, not a contestant
    s.add_repo(REPO, files, n_params=N_PARAMS)
    shard = gguf_bytes["Tiny-Q4_K_M.gguf"]
    s.add_repo("tester/Split-GGUF", {
        "Split-Q4_K_M-00001-of-00002.gguf": shard,
        "Split-Q4_K_M-00002-of-00002.gguf": shard[::-1],
        "Split-Q8_0.gguf": gguf_bytes["Tiny-Q8_0.gguf"],
    })
    s.add_repo("tester/Big-GGUF", {"Big-Q8_0.gguf": big})
    s.add_repo("tester/Safetensors-only", {"model.safetensors": b"\0" * 100, "config.json": b"{}"})
    s.add_repo("gated-org/Gated-GGUF", {"Gated-Q4_K_M.gguf": gguf_bytes["Tiny-Q4_K_M.gguf"]}, gated=True)
    s.start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def hub_env(server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HF_HOME per test, the endpoint pointed at the fake Hub, no token, online."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return tmp_path / "hf" / "hub"


def _cache_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file() or p.is_symlink()] if cache.exists() else []


# ---- listing ----------------------------------------------------------------------------------------------------


def test_listing_groups_by_quant_with_sizes_and_defaults(gguf_bytes: dict[str, bytes]) -> None:
    listing = hub.list_gguf(REPO)
    assert listing.source == "hub" and listing.revision and len(listing.revision) == 40
    groups = listing.by_quant()
    assert list(groups) == ["F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "Q2_K"]
    assert all(not f.name.startswith("mmproj") for f in listing.files)
    q4 = groups["Q4_K_M"][0]
    assert q4.size_bytes == len(gguf_bytes["Tiny-Q4_K_M.gguf"])
    assert q4.sha256 == [__import__("hashlib").sha256(gguf_bytes["Tiny-Q4_K_M.gguf"]).hexdigest()]
    assert q4.bpw_basis == "read" and q4.bits_per_weight == round(q4.size_bytes * 8 / N_PARAMS, 2)
    assert [f.quant_type for f in listing.selected()] == ["Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K"]
    assert not any(f.cached for f in listing.files)


def test_split_shards_are_one_entry(gguf_bytes: dict[str, bytes]) -> None:
    listing = hub.list_gguf("tester/Split-GGUF")
    q4 = listing.find("Q4_K_M")
    assert q4.files == ["Split-Q4_K_M-00001-of-00002.gguf", "Split-Q4_K_M-00002-of-00002.gguf"]
    assert q4.is_split and q4.complete and q4.size_bytes == 2 * len(gguf_bytes["Tiny-Q4_K_M.gguf"])
    assert q4.bpw_basis == "nominal"  # no parameter count from this "Hub": type table
    assert [f.quant_type for f in listing.files] == ["Q8_0", "Q4_K_M"]

    done = hub.download("tester/Split-GGUF", ["Q4_K_M"])
    assert len(done) == 1 and len(done[0].paths) == 2
    first, second = (Path(p) for p in done[0].paths)
    assert first.parent == second.parent  # llama.cpp finds the other shards beside the first
    assert done[0].path == str(first) and first.name.endswith("00001-of-00002.gguf")
    assert second.read_bytes() == gguf_bytes["Tiny-Q4_K_M.gguf"][::-1]


def test_remote_header_is_read_with_range_requests(server: HubServer, gguf_bytes: dict[str, bytes]) -> None:
    info = hub.read_remote_header("tester/Big-GGUF", "Big-Q8_0.gguf", first_bytes=4096)
    assert info.architecture == "llama" and info.quant_type == "Q8_0"
    assert info.block_count == 2 and info.vocab_size == 2000 and info.head_count_kv == 2
    assert info.size_bytes == len(gguf_bytes["Big-Q8_0.gguf"])
    gets = server.seen("GET", "/cdn/tester/Big-GGUF/")
    assert len(gets) >= 2 and gets[0].range == "bytes=0-4095"  # it grew the window, fetching only new bytes
    spans = [tuple(int(x) for x in g.range.removeprefix("bytes=").split("-")) for g in gets]
    assert all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:], strict=False))
    assert spans[-1][1] + 1 < len(gguf_bytes["Big-Q8_0.gguf"]) / 2  # the weights were never downloaded
    with pytest.raises(HubError, match="not a GGUF file"):
        hub.read_remote_header(REPO, "README.md")
    with pytest.raises(HubError) as err:
        hub.read_remote_header(REPO, "Nope-Q4_K_M.gguf")
    assert err.value.kind == "file_not_found"


# ---- downloads --------------------------------------------------------------------------------------------------


def test_download_into_hf_cache_with_progress(hub_env: Path, gguf_bytes: dict[str, bytes], server: HubServer) -> None:
    events = []
    done = hub.download(REPO, ["Q8_0", "Tiny-Q2_K.gguf"], on_progress=events.append)
    assert [d.quant_type for d in done] == ["Q8_0", "Q2_K"]
    for d in done:
        p = Path(d.path)
        assert p.is_file() and str(p).startswith(str(hub_env)) and "/snapshots/" in str(p)
        assert p.read_bytes() == gguf_bytes[p.name] and d.verified and not d.from_cache
    total = len(gguf_bytes["Tiny-Q8_0.gguf"]) + len(gguf_bytes["Tiny-Q2_K.gguf"])
    assert events[-1].done_bytes == total and events[-1].total_bytes == total and events[-1].phase == "done"
    assert {e.phase for e in events} >= {"downloading", "verifying", "done"}
    assert all(e.file_count == 2 for e in events)
    assert not list(hub_env.rglob("*.incomplete"))
    assert all(r.auth is None for r in server.requests)  # no token set: none sent

    listing = hub.list_gguf(REPO)
    assert listing.find("Q8_0").cached and not listing.find("Q4_K_M").cached
    again = hub.download(REPO, ["Q8_0"])
    assert again[0].from_cache and again[0].path == done[0].path


def test_download_takes_the_listed_commit_when_main_moves(
    server: HubServer, hub_env: Path, gguf_bytes: dict[str, bytes], tmp_path: Path
) -> None:
    """What was listed and vetted is what is downloaded, even when `main` moves in between (issue 14, finding 9d)."""
    listing = hub.list_gguf(REPO)
    vetted = listing.revision
    newer = make_gguf(tmp_path / "v2.gguf", file_type=15, extra_bytes=48_000, name="Tiny v2").read_bytes()
    moved = server.push(REPO, {"Tiny-Q4_K_M.gguf": newer})
    assert moved != vetted and hub.list_gguf(REPO).find("Q4_K_M").sizes == [len(newer)]  # the fake Hub moved main

    done = hub.download(REPO, ["Q4_K_M"], listing=listing)
    storage = hub_env / "models--tester--Tiny-GGUF"
    assert Path(done[0].path).read_bytes() == gguf_bytes["Tiny-Q4_K_M.gguf"] and done[0].verified
    assert done[0].revision == vetted and f"/snapshots/{vetted}/" in done[0].path
    assert not (storage / "snapshots" / moved).exists()  # nothing of the commit we did not vet entered the cache
    assert [p.name for p in (storage / "blobs").iterdir()] == [listing.find("Q4_K_M").sha256[0]]
    # main names the moved commit now: pointing refs/main at it would name a file we did not vet, at ours a false head
    assert not (storage / "refs" / "main").exists()

    relisted = hub.list_gguf(REPO)  # listed again, the new commit is vetted: downloaded, and refs/main names it
    again = hub.download(REPO, ["Q4_K_M"], listing=relisted)
    assert Path(again[0].path).read_bytes() == newer and again[0].verified and again[0].revision == moved
    assert (storage / "refs" / "main").read_text() == moved


def test_interrupted_download_resumes_with_range(
    server: HubServer, gguf_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # http_get writes whole chunks (10 MiB by default): smaller ones let a small file be cut after some were written
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    server.cut_once.add("Tiny-F16.gguf")
    done = hub.download(REPO, ["F16"])
    assert Path(done[0].path).read_bytes() == gguf_bytes["Tiny-F16.gguf"] and done[0].verified
    gets = server.seen("GET", "/cdn/tester/Tiny-GGUF/Tiny-F16.gguf")
    assert len(gets) == 2 and gets[0].range is None
    start = int(gets[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= len(gguf_bytes["Tiny-F16.gguf"]) // 2  # resumed where the cut left it, not from zero


def test_cancelled_download_resumes_later(
    server: HubServer, hub_env: Path, gguf_bytes: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)  # many progress events for a small file
    cancel = threading.Event()

    def on_progress(p: hub.DownloadProgress) -> None:
        if p.phase == "downloading" and p.file_bytes >= 48 * 1024:
            cancel.set()

    with pytest.raises(HubError) as err:
        hub.download(REPO, ["BF16"], on_progress=on_progress, cancel=cancel)
    assert err.value.kind == "cancelled" and "resum" in str(err.value)
    partial = list(hub_env.rglob("*.incomplete"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(gguf_bytes["Tiny-BF16.gguf"])
    kept = partial[0].stat().st_size
    assert not list(hub_env.rglob("snapshots/*/Tiny-BF16.gguf"))  # nothing half-written is usable

    done = hub.download(REPO, ["BF16"])
    assert done[0].resumed_bytes == kept and done[0].verified
    assert Path(done[0].path).read_bytes() == gguf_bytes["Tiny-BF16.gguf"]
    assert server.seen("GET", "Tiny-BF16.gguf")[-1].range == f"bytes={kept}-"
    assert not list(hub_env.rglob("*.incomplete"))


def test_corrupted_download_is_rejected_and_removed(server: HubServer, hub_env: Path, gguf_bytes: dict[str, bytes]) -> None:
    server.corrupt.add("Tiny-Q6_K.gguf")
    with pytest.raises(HubError) as err:
        hub.download(REPO, ["Q6_K"])
    assert err.value.kind == "integrity" and "sha256" in str(err.value) and "\n" not in str(err.value)
    leftovers = [p for p in _cache_files(hub_env) if "Q6_K" in p.name or p.name.endswith(".incomplete")]
    blobs = list((hub_env / "models--tester--Tiny-GGUF" / "blobs").glob("*"))
    assert leftovers == [] and blobs == []
    server.corrupt.clear()
    done = hub.download(REPO, ["Q6_K"])
    assert Path(done[0].path).read_bytes() == gguf_bytes["Tiny-Q6_K.gguf"]


def test_network_failure_mid_download_is_one_line(server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd.time, "sleep", lambda s: None)  # http_get's own retries wait 1 s each
    server.drop_always.add("Tiny-Q3_K_M.gguf")
    with pytest.raises(HubError) as err:
        hub.download(REPO, ["Q3_K_M"])
    assert err.value.kind == "network" and "resume" in str(err.value) and "\n" not in str(err.value)


def test_not_enough_disk_space_is_refused_before_downloading(server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(HubError) as err:
        hub.download(REPO, ["Q8_0"])
    assert err.value.kind == "disk_full" and "free" in str(err.value)
    assert server.seen("GET", "/cdn/") == []  # refused before a byte was fetched


def test_disk_full_while_writing_is_mapped() -> None:
    def on_progress(p: hub.DownloadProgress) -> None:
        if p.phase == "downloading" and p.file_bytes > 0:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(HubError) as err:
        hub.download(REPO, ["Q5_K_M"], on_progress=on_progress)
    assert err.value.kind == "disk_full" and "space" in str(err.value)


# ---- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "not a repo", "a/b/c", "owner/bad--name", "owner/" + "x" * 120, "../etc"])
def test_invalid_repo_id(bad: str, server: HubServer) -> None:
    with pytest.raises(HubError) as err:
        hub.list_gguf(bad)
    assert err.value.kind == "invalid_repo_id" and "owner/name" in str(err.value)
    assert server.requests == []


def test_repo_id_from_url() -> None:
    assert hub.check_repo_id(f"https://huggingface.co/{REPO}/tree/main") == REPO
    assert hub.list_gguf(f" hf.co/{REPO} ").repo_id == REPO


def test_unknown_repo_and_repo_without_gguf() -> None:
    with pytest.raises(HubError) as err:
        hub.list_gguf("tester/does-not-exist")
    assert err.value.kind == "not_found" and "tester/does-not-exist" in str(err.value)
    with pytest.raises(HubError) as err:
        hub.list_gguf("tester/Safetensors-only")
    assert err.value.kind == "no_gguf" and "GGUF" in str(err.value)
    with pytest.raises(HubError) as err:
        hub.download(REPO, ["Q1_0"])
    assert err.value.kind == "file_not_found" and "Q8_0" in str(err.value)  # says what is offered


def test_gated_repo_mentions_token_but_never_prints_it(
    server: HubServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(HubError) as err:
        hub.download("gated-org/Gated-GGUF", ["Q4_K_M"])
    assert err.value.kind == "gated" and "HF_TOKEN" in str(err.value)

    secret = "hf_SeCrEtToKeN1234567890abcdefghij"
    monkeypatch.setenv("HF_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubError) as err:
        hub.download("gated-org/Gated-GGUF", ["Q4_K_M"])
    assert err.value.kind == "gated" and "HF_TOKEN" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value.args)
    assert server.seen("HEAD", "/resolve/")[-1].auth == f"Bearer {secret}"  # the token is used, via huggingface_hub

    done = hub.download(REPO, ["Q4_K_M"])  # with a token: sent to the Hub, never to the CDN
    assert done[0].verified
    assert all(r.auth is None for r in server.seen("GET", "/cdn/"))
    assert secret not in caplog.text


# ---- offline ----------------------------------------------------------------------------------------------------


def test_offline_lists_the_cache(server: HubServer, monkeypatch: pytest.MonkeyPatch, gguf_bytes: dict[str, bytes]) -> None:
    done = hub.download(REPO, ["Q4_K_M", "Q2_K"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(server.requests)
    listing = hub.list_gguf(REPO)
    assert listing.source == "cache" and "HF_HUB_OFFLINE" in (listing.notice or "")
    assert [f.quant_type for f in listing.files] == ["Q4_K_M", "Q2_K"] and all(f.cached for f in listing.files)
    again = hub.download(REPO, ["Q4_K_M"])
    assert again[0].from_cache and Path(again[0].path).read_bytes() == gguf_bytes["Tiny-Q4_K_M.gguf"]
    assert again[0].path == done[0].path
    with pytest.raises(HubError) as err:
        hub.download(REPO, ["Q8_0"])
    assert err.value.kind == "offline"
    with pytest.raises(HubError) as err:
        hub.list_gguf("tester/Split-GGUF")
    assert err.value.kind == "offline" and REPO in str(err.value)  # names what is cached
    assert hub.cached_gguf_by_repo().keys() == {REPO}
    assert len(server.requests) == n  # offline means no request at all


def test_unreachable_hub_falls_back_to_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    hub.download(REPO, ["Q2_K"])
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    listing = hub.list_gguf(REPO)
    assert listing.source == "cache" and "Cannot reach" in (listing.notice or "")
    assert [f.quant_type for f in listing.files] == ["Q2_K"]
    with pytest.raises(HubError) as err:
        hub.list_gguf("tester/Split-GGUF")
    assert err.value.kind == "network" and "Cached:" in str(err.value)
