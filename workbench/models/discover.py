"""Find GGUF files already on this machine, so users compare what they have before downloading anything.

Sources: the Hugging Face cache, folders the user names, LM Studio's models folder (publisher/repo/file.gguf)
and Ollama's content-addressed blob store (manifests name the model, blobs hold the GGUF without a .gguf
extension). Files of one base model are a `FoundGroup`; `acquire.register_found` makes one a real
`ladder.Ladder` (headers read, a reference chosen) when the user picks it.
Every root is an argument, so tests (and users with unusual setups) point it elsewhere.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.files.quant_names import parse_shard, precision_key, quant_from_name, strip_quant

OLLAMA_MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"


@dataclass
class FoundGguf:
    """One model file on disk (a split model's shards are one entry; `path` is the first shard, which llama.cpp opens)."""

    path: str
    source: str  # "hf-cache" | "folder" | "lm-studio" | "ollama"
    model: str  # human name of the base model, quantization removed ("Llama-3.2-1B-Instruct", "llama3.2:1b")
    quant_type: str | None
    size: int  # bytes, all shards
    paths: list[str] = field(default_factory=list)
    repo_id: str | None = None  # HF repo (hf-cache) or publisher/repo (LM Studio)
    quant_basis: str = "name"  # "name" (from the file or tag name) or "header" (general.file_type)
    label: str | None = None  # a file made with an importance matrix: `ladder.imatrix_label`'s label (header read)

    @property
    def key(self) -> str:
        """Grouping key: case, separators and a trailing "-GGUF" ignored."""
        return model_key(self.model)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["key"] = self.key
        return d


@dataclass
class FoundGroup:
    """Files of one base model found on disk, highest precision first: the makings of a ladder, not yet one
    (no headers read, no reference; `acquire.register_found` turns it into a `ladder.Ladder`)."""

    model: str
    files: list[FoundGguf]

    @property
    def quant_types(self) -> list[str]:
        seen: list[str] = []
        for f in self.files:
            if f.quant_type and f.quant_type not in seen:
                seen.append(f.quant_type)
        return seen

    @property
    def comparable(self) -> bool:
        """Two or more distinct quantizations (a static and an imatrix Q4_K_M are two): something to compare."""
        return len({f.label or f.quant_type for f in self.files if f.quant_type}) >= 2

    def to_dict(self) -> dict:
        return {"model": self.model, "quant_types": self.quant_types, "files": [f.to_dict() for f in self.files]}


def model_key(name: str) -> str:
    key = re.sub(r"[-._ ]+", "-", name.strip().lower())
    return re.sub(r"-gguf$", "", key)


# ----------------------------------------------------------------------------------------------------------------
# default roots
# ----------------------------------------------------------------------------------------------------------------


def lm_studio_roots() -> list[Path]:
    """LM Studio's models folders: ~/.lmstudio/models (0.3+) and ~/.cache/lm-studio/models (older)."""
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def ollama_roots() -> list[Path]:
    """Ollama's model stores: $OLLAMA_MODELS, ~/.ollama/models, and the Linux service's /usr/share/ollama."""
    roots = []
    if os.environ.get("OLLAMA_MODELS"):
        roots.append(Path(os.environ["OLLAMA_MODELS"]).expanduser())
    roots += [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]
    return roots


# ----------------------------------------------------------------------------------------------------------------
# scanners
# ----------------------------------------------------------------------------------------------------------------


def _with_quant(found: FoundGguf, read_headers: bool) -> FoundGguf:
    """Complete an entry from its header (bounded, cached): the quantization where the name does not say (Ollama
    blobs, "model.gguf"), and the imatrix label of a file made with an importance matrix (bartowski's, ours)."""
    if not read_headers:
        return found
    from workbench.files.gguf_info import GgufError, read_header
    from workbench.models.ladder import imatrix_label, imatrix_name

    try:
        info = read_header(found.path, check_arch=False)
    except (GgufError, OSError, ValueError):
        return found
    if found.quant_type is None:
        found.quant_type, found.quant_basis = info.quant_type, "header"
    if info.imatrix:
        found.label = imatrix_label(found.quant_type or info.quant_type, imatrix_name(info.imatrix))
    return found


_IMATRIX_SUFFIX = re.compile(r"[.-]imatrix(-[a-z0-9-]*)?$", re.IGNORECASE)


def _model_name(base: str) -> str:
    """The base model's name: quantization and our `.imatrix-<slug>` suffix removed, so the imatrix files of a
    ladder group with its static ones."""
    return _IMATRIX_SUFFIX.sub("", strip_quant(base)) or strip_quant(base)


def _join_files(files: Iterable[tuple[str, str]], source: str, repo_id: str | None, read_headers: bool) -> list[FoundGguf]:
    """(path, repo-relative or bare name) pairs -> entries with split shards joined; non-model companions skipped."""
    singles: list[FoundGguf] = []
    shards: dict[str, list[tuple[int, str]]] = {}
    for path, name in files:
        base = name.rsplit("/", 1)[-1]
        if not base.lower().endswith(".gguf") or base.lower().startswith("mmproj") or base.lower().endswith(".imatrix.gguf"):
            continue  # not a model: a projector, or an importance matrix (llama-imatrix's `*.imatrix.gguf`)
        shard = parse_shard(base)
        if shard is None:
            singles.append(FoundGguf(path, source, _model_name(base), quant_from_name(base), _size(path), [path], repo_id))
        else:
            shards.setdefault(str(Path(path).parent / shard.base), []).append((shard.index, path))
    for parts in shards.values():
        parts.sort()
        paths = [p for _, p in parts]
        first = Path(paths[0]).name
        singles.append(FoundGguf(paths[0], source, _model_name(first), quant_from_name(first),
                                 sum(_size(p) for p in paths), paths, repo_id))
    return [_with_quant(f, read_headers) for f in singles]


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def scan_hf_cache(cache: Path | str | None = None, *, read_headers: bool = True) -> list[FoundGguf]:
    """GGUF files in the Hugging Face cache (all model repos, one entry per file even if several revisions hold it)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    if cache is None:
        from workbench.core.paths import hf_cache_dir as cache_dir

        cache = cache_dir()
    try:
        info = scan_cache_dir(cache)
    except (CacheNotFound, OSError, ValueError):
        return []
    out: list[FoundGguf] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        # newest revisions first; a branch-tracked revision ("main") wins over a detached one
        revisions = sorted(repo.revisions, key=lambda r: (bool(r.refs), r.last_modified), reverse=True)
        seen_blobs: set[str] = set()
        seen_names: set[str] = set()
        pairs: list[tuple[str, str]] = []
        for rev in revisions:
            for f in sorted(rev.files, key=lambda f: str(f.file_path)):
                rel = f.file_path.relative_to(rev.snapshot_path).as_posix()
                if str(f.blob_path) in seen_blobs or rel in seen_names:
                    continue
                seen_blobs.add(str(f.blob_path))
                seen_names.add(rel)
                pairs.append((str(f.file_path), rel))
        found = _join_files(pairs, "hf-cache", repo.repo_id, read_headers)
        out.extend(found)
    return out


def scan_folder(folder: Path | str, *, source: str = "folder", read_headers: bool = True) -> list[FoundGguf]:
    """GGUF files under a folder the user names (recursive; hidden folders skipped)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        return []
    pairs = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(".gguf"):
                path = os.path.join(dirpath, name)
                pairs.append((path, os.path.relpath(path, root).replace(os.sep, "/")))
    return _join_files(pairs, source, None, read_headers)


def scan_lm_studio(roots: Iterable[Path | str] | None = None, *, read_headers: bool = True) -> list[FoundGguf]:
    """GGUF files in LM Studio's models folders; `repo_id` is "publisher/repo" from the folder layout."""
    out: list[FoundGguf] = []
    for root in roots if roots is not None else lm_studio_roots():
        root = Path(root).expanduser()
        for f in scan_folder(root, source="lm-studio", read_headers=read_headers):
            parts = Path(f.path).relative_to(root).parts
            if len(parts) >= 3:
                f.repo_id = f"{parts[0]}/{parts[1]}"
            out.append(f)
    return out


def _ollama_name(rel: tuple[str, ...]) -> tuple[str, str] | None:
    """(model, tag) from a manifest's path under manifests/: host/namespace/model/tag."""
    if len(rel) != 4:
        return None
    host, namespace, model, tag = rel
    if host == "registry.ollama.ai":
        name = model if namespace == "library" else f"{namespace}/{model}"
    else:
        name = f"{host}/{namespace}/{model}"
    return name, tag


def scan_ollama(roots: Iterable[Path | str] | None = None, *, read_headers: bool = True) -> list[FoundGguf]:
    """GGUF blobs Ollama has pulled, named "model:tag" from their manifests (tags sharing a blob appear once)."""
    out: list[FoundGguf] = []
    seen: set[str] = set()
    for root in roots if roots is not None else ollama_roots():
        root = Path(root).expanduser()
        manifests = root / "manifests"
        if not manifests.is_dir():
            continue
        for dirpath, _dirs, filenames in sorted(os.walk(manifests)):
            for tag_file in sorted(filenames):
                path = Path(dirpath) / tag_file
                named = _ollama_name(path.relative_to(manifests).parts)
                if named is None:
                    continue
                try:
                    manifest = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                layers = manifest.get("layers") if isinstance(manifest, dict) else None
                digest = next(
                    (layer.get("digest") for layer in layers or [] if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_MEDIA_TYPE),
                    None,
                )
                if not isinstance(digest, str) or not digest.startswith("sha256:"):
                    continue
                blob = root / "blobs" / digest.replace(":", "-", 1)
                if not blob.is_file() or str(blob) in seen:
                    continue
                seen.add(str(blob))
                model, tag = named
                quant = quant_from_name(tag)
                rest = tag
                if quant:  # "1b-instruct-q4_K_M" -> "1b-instruct"; a bare "q8_0" leaves nothing
                    rest = strip_quant(tag) if strip_quant(tag) != tag else ""
                display = model if rest in ("", "latest") else f"{model}:{rest}"
                out.append(_with_quant(FoundGguf(str(blob), "ollama", display, quant, _size(str(blob)), [str(blob)]), read_headers))
    return out


def discover_all(
    folders: Iterable[Path | str] = (),
    *,
    hf_cache: Path | str | None = None,
    lm_studio: Iterable[Path | str] | None = None,
    ollama: Iterable[Path | str] | None = None,
    read_headers: bool = True,
) -> list[FoundGguf]:
    """Every GGUF found in all sources; a file reachable from two sources (same real path) is listed once."""
    found = (
        scan_hf_cache(hf_cache, read_headers=read_headers)
        + scan_lm_studio(lm_studio, read_headers=read_headers)
        + scan_ollama(ollama, read_headers=read_headers)
    )
    for folder in folders:
        found += scan_folder(folder, read_headers=read_headers)
    out, seen = [], set()
    for f in found:
        real = os.path.realpath(f.path)
        if real not in seen:
            seen.add(real)
            out.append(f)
    return out


def group_by_model(found: Iterable[FoundGguf]) -> list[FoundGroup]:
    """Group files by base model; each group ordered highest precision first, groups with most rungs first."""
    groups: dict[str, list[FoundGguf]] = {}
    for f in found:
        groups.setdefault(f.key, []).append(f)
    out = []
    for files in groups.values():
        files.sort(key=lambda f: (precision_key(f.quant_type), f.size), reverse=True)
        out.append(FoundGroup(files[0].model, files))
    out.sort(key=lambda g: (-len(g.quant_types), g.model.lower()))
    return out
