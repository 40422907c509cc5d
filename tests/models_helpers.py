"""Fixtures shared by the Models page and `workbench fit/download` tests: a local Hub with a tiny GGUF repo, an
isolated HF cache, home directory (LM Studio, Ollama) and ladders directory holding the embedded demo ladder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.hubserver import HubServer, make_gguf
from workbench.files.gguf_header import Header, file_fetch, parse_header
from workbench.files.imatrix_file import ImatrixFile, entries_from_arrays, write_imatrix

REPO = "tester/Tiny-GGUF"
TINY = {  # file name -> LLAMA_FTYPE, extra bytes (so sizes differ like real quantizations)
    "Tiny-F16.gguf": (1, 64_000),
    "Tiny-Q8_0.gguf": (7, 32_000),
    "Tiny-Q5_K_M.gguf": (17, 20_000),
    "Tiny-Q4_K_M.gguf": (15, 16_000),
    "Tiny-Q2_K.gguf": (10, 8_000),
}
SECRET = "hf_SeCrEtToKeN1234567890abcdefghij"


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("tiny-ggufs")
    return {name: make_gguf(d / name, file_type=ft, extra_bytes=extra).read_bytes() for name, (ft, extra) in TINY.items()}


@pytest.fixture()
def hub_server(tiny_files: dict[str, bytes]):
    s = HubServer()
    s.add_repo(REPO, {**tiny_files, "README.md": b"# Tiny\n"}, n_params=40_000)
    s.add_repo("tester/Safetensors-only", {"model.safetensors": b"\0" * 100})
    s.add_repo("gated-org/Gated-GGUF", {"Gated-Q4_K_M.gguf": tiny_files["Tiny-Q4_K_M.gguf"]}, gated=True)
    s.start()
    yield s
    s.stop()


@pytest.fixture()
def models_env(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_ladder) -> Path:
    """The fake Hub as HF_ENDPOINT, a fresh HF cache and home, and a ladders directory of our own.

    The ladders directory gets a copy of the demo ladder's ladder.json (its files stay where they are), so
    ladders these tests register never reach the ladders other tests see.
    """
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE",
                "TRANSFORMERS_OFFLINE", "OLLAMA_MODELS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    ladders = tmp_path / "ladders"
    demo = ladders / Path(demo_ladder.directory).name
    demo.mkdir(parents=True)
    shutil.copy(Path(demo_ladder.directory) / "ladder.json", demo / "ladder.json")
    monkeypatch.setenv("WORKBENCH_LADDERS_DIR", str(ladders))
    return tmp_path


def lm_studio_and_ollama(home: Path, tiny_files: dict[str, bytes]) -> None:
    """LM Studio's publisher/repo/file layout and Ollama's manifests + blobs, under a fake home."""
    lm = home / ".lmstudio" / "models" / "someone" / "Small-GGUF"
    lm.mkdir(parents=True)
    for q in ("Q8_0", "Q4_K_M"):
        (lm / f"Small-{q}.gguf").write_bytes(tiny_files[f"Tiny-{q}.gguf"] + b"lm")  # distinct bytes from the Hub's
    ollama = home / ".ollama" / "models"
    for tag, q in (("q8_0", "Q8_0"), ("q2_K", "Q2_K")):
        import hashlib

        data = tiny_files[f"Tiny-{q}.gguf"] + b"ollama"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blob = ollama / "blobs" / digest.replace(":", "-")
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        manifest = {"schemaVersion": 2, "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest,
                                                    "size": len(data)}]}
        path = ollama / "manifests" / "registry.ollama.ai" / "library" / "ollie" / tag
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))


def header(path: Path) -> Header:
    """A GGUF's parsed header (metadata and tensor table)."""
    with open(path, "rb") as fh:
        return parse_header(file_fetch(fh), str(path))


def skewed_matrix(reference: str, out: Path, name: str = "skewed", seed: int = 5) -> Path:
    """A synthetic importance matrix over every block weight that makes a few columns matter far more than the
    rest: *a* matrix for tests that need one without computing one (`name` is its calibration name)."""
    rng = np.random.default_rng(seed)
    weights = {t.name: t.shape[0] for t in header(Path(reference)).tensors
               if t.name.startswith("blk.") and len(t.shape) == 2}
    sums = {w: rng.random(cols, dtype=np.float32) ** 8 * 1000 for w, cols in weights.items()}
    data = ImatrixFile(entries_from_arrays(sums, dict.fromkeys(sums, 512)), datasets=(name,), chunk_count=1,
                       chunk_size=512, metadata={"workbench.calibration.name": name})
    return write_imatrix(out, data)
