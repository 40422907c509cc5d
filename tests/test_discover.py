"""Finding GGUF files on disk: a named folder, LM Studio's and Ollama's layouts, the HF cache; ladders."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.hubserver import make_gguf
from workbench.models import discover


def touch(path: Path, size: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + b"\0" * (size - 4))
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    touch(root / "SmolLM2-135M-Instruct-Q8_0.gguf", 3000)
    touch(root / "nested" / "SmolLM2-135M-Instruct.Q4_K_M.gguf", 2000)
    touch(root / "nested" / "smollm2_135m_instruct-q2_k.gguf", 1500)
    touch(root / "big" / "Qwen2.5-7B-Instruct-Q4_K_M-00001-of-00002.gguf", 5000)
    touch(root / "big" / "Qwen2.5-7B-Instruct-Q4_K_M-00002-of-00002.gguf", 4000)
    touch(root / "mmproj-SmolVLM-f16.gguf")  # a vision projector: not a model
    touch(root / ".hidden" / "Secret-Q4_0.gguf")
    (root / "notes.txt").write_text("not a model")
    make_gguf(root / "mystery.gguf", file_type=10)  # name says nothing; the header says Q2_K
    return root


def test_scan_folder(folder: Path) -> None:
    found = {Path(f.path).name: f for f in discover.scan_folder(folder)}
    assert set(found) == {
        "SmolLM2-135M-Instruct-Q8_0.gguf", "SmolLM2-135M-Instruct.Q4_K_M.gguf", "smollm2_135m_instruct-q2_k.gguf",
        "Qwen2.5-7B-Instruct-Q4_K_M-00001-of-00002.gguf", "mystery.gguf",
    }
    split = found["Qwen2.5-7B-Instruct-Q4_K_M-00001-of-00002.gguf"]
    assert split.size == 9000 and len(split.paths) == 2 and split.quant_type == "Q4_K_M" and split.model == "Qwen2.5-7B-Instruct"
    assert found["smollm2_135m_instruct-q2_k.gguf"].quant_type == "Q2_K"
    mystery = found["mystery.gguf"]
    assert mystery.quant_type == "Q2_K" and mystery.quant_basis == "header"
    assert all(f.source == "folder" for f in found.values())
    assert discover.scan_folder(folder / "nope") == []


def test_groups_hold_the_quantizations_of_one_model(folder: Path) -> None:
    groups = discover.group_by_model(discover.scan_folder(folder))
    smol = next(g for g in groups if g.model.lower().startswith("smollm2"))
    assert smol.quant_types == ["Q8_0", "Q4_K_M", "Q2_K"] and smol.comparable  # highest precision first
    assert groups[0] is smol  # most rungs first
    qwen = next(g for g in groups if g.model.startswith("Qwen"))
    assert not qwen.comparable and qwen.quant_types == ["Q4_K_M"]
    json.dumps([g.to_dict() for g in groups])


def test_lm_studio_layout(tmp_path: Path) -> None:
    root = tmp_path / "lmstudio"
    touch(root / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF" / "SmolLM2-135M-Instruct-Q4_K_M.gguf")
    touch(root / "bartowski" / "SmolLM2-135M-Instruct-GGUF" / "SmolLM2-135M-Instruct-Q8_0.gguf")
    found = discover.scan_lm_studio([root, tmp_path / "absent"])
    assert sorted(f.repo_id for f in found) == ["bartowski/SmolLM2-135M-Instruct-GGUF", "lmstudio-community/SmolLM2-135M-Instruct-GGUF"]
    assert {f.source for f in found} == {"lm-studio"}
    [group] = discover.group_by_model(found)
    assert group.quant_types == ["Q8_0", "Q4_K_M"]


def _ollama_model(root: Path, name: str, tag: str, blob: Path | None, *, host: str = "registry.ollama.ai", namespace: str = "library") -> None:
    digest = "sha256:" + (hashlib.sha256(blob.read_bytes()).hexdigest() if blob else "0" * 64)
    if blob is not None:
        dst = root / "blobs" / digest.replace(":", "-")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.replace(blob, dst)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "1" * 64, "size": 10},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": 1000},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "2" * 64, "size": 10},
        ],
    }
    path = root / "manifests" / host / namespace / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))


def test_ollama_blob_store(tmp_path: Path) -> None:
    root = tmp_path / "ollama"
    q8 = touch(tmp_path / "a", 3000)
    q8_copy = touch(tmp_path / "a2", 3000)  # same bytes: "latest" and the explicit tag share one blob
    q2 = make_gguf(tmp_path / "b.gguf", file_type=10)
    _ollama_model(root, "smollm2", "135m-instruct-q8_0", q8)
    _ollama_model(root, "smollm2", "latest", q8_copy)
    _ollama_model(root, "smollm2", "135m-instruct-fp16", None)  # blob never pulled: skipped
    _ollama_model(root, "smollm2", "135m-small", q2)  # tag says no quantization: read from the header
    _ollama_model(root, "Tiny-GGUF", "Q4_K_M", touch(tmp_path / "c", 1200), host="hf.co", namespace="tester")
    (root / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "broken").write_text("{not json")

    found = discover.scan_ollama([root])
    by_model = {(f.model, f.quant_type): f for f in found}
    assert set(by_model) == {("smollm2:135m-instruct", "Q8_0"), ("smollm2:135m-small", "Q2_K"), ("hf.co/tester/Tiny-GGUF", "Q4_K_M")}
    q8_found = by_model[("smollm2:135m-instruct", "Q8_0")]
    assert q8_found.source == "ollama" and Path(q8_found.path).parent.name == "blobs" and q8_found.size == 3000
    assert by_model[("smollm2:135m-small", "Q2_K")].quant_basis == "header"
    assert discover.scan_ollama([tmp_path / "absent"]) == []


def test_hf_cache_layout(tmp_path: Path) -> None:
    """The cache as huggingface_hub lays it out: blobs by hash, snapshot symlinks, refs."""
    repo = tmp_path / "hub" / "models--tester--Tiny-GGUF"
    commit = "a" * 40
    for name, size in [("Tiny-Q8_0.gguf", 3000), ("Tiny-Q4_K_M.gguf", 2000), ("README.md", 10)]:
        blob = touch(repo / "blobs" / hashlib.sha256(name.encode()).hexdigest(), size)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    found = discover.scan_hf_cache(tmp_path / "hub")
    assert sorted((f.quant_type, f.repo_id, f.source) for f in found) == [
        ("Q4_K_M", "tester/Tiny-GGUF", "hf-cache"), ("Q8_0", "tester/Tiny-GGUF", "hf-cache")]
    assert all("/snapshots/" in f.path for f in found)
    assert discover.scan_hf_cache(tmp_path / "no-cache-here") == []


def test_discover_all_lists_a_file_once(tmp_path: Path) -> None:
    lm = tmp_path / "lmstudio"
    touch(lm / "pub" / "Model-GGUF" / "Model-Q4_K_M.gguf")
    touch(lm / "pub" / "Model-GGUF" / "Model-Q8_0.gguf")
    found = discover.discover_all([lm], hf_cache=tmp_path / "hub", lm_studio=[lm], ollama=[tmp_path / "ollama"])
    assert len(found) == 2 and {f.source for f in found} == {"lm-studio"}
    [group] = discover.group_by_model(found)
    assert group.comparable and group.model == "Model"
