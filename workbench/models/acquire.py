"""Getting models: fit rows for a Hub repo's files before download, background download and ladder-build jobs,
and turning downloaded or discovered files into ladders. Shared by the Models page and `workbench fit/download`.

Nothing here imports Streamlit: the jobs are `workbench.core.jobs.Job`s whose `snapshot()` dicts a page polls.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache

from workbench.core import jobs, paths
from workbench.core.hardware import Gpu, cpu_supports_repack, machine
from workbench.core.jobs import Job
from workbench.files import fit
from workbench.files import json_fields as jf
from workbench.files.gguf_info import GgufError, GgufInfo, read_header
from workbench.models import discover, hub
from workbench.models.hub import GgufFile, HubError, RepoListing
from workbench.models.ladder import Ladder, build_ladder, register_ladder
from workbench.models.quantize import NEEDS_IMATRIX, QuantizeError

HEADER_READERS = 8  # parallel range reads when peeking at several headers (each bounded by gguf_header)
NEVER_REPACKED = {"F32", "F16", "BF16", "Q8_0"}  # no Q4_0/Q4_K/IQ4_NL matrices in these files
SOURCE_NAMES = {"hf-cache": "Hugging Face cache", "folder": "folder", "lm-studio": "LM Studio", "ollama": "Ollama"}

# --------------------------------------------------------------------------------------------------------------
# Fit before download
# --------------------------------------------------------------------------------------------------------------

_HEADERS: dict[tuple[str, str, str | None, str], GgufInfo] = {}
_HEADERS_LOCK = threading.Lock()


@dataclass
class FitRow:
    """One listed file with its prediction; `header` says where the model's shape came from. A file whose own header
    was asked for and refused (or could not be fetched) has no prediction: nothing is borrowed for it."""

    entry: GgufFile
    prediction: fit.FitPrediction | None
    header: str  # "read from this file's header" | "read (cached file)" | "estimated from <name>'s header"
    # | "header unreadable: <why>" | "unavailable"
    error: str | None = None
    path: str | None = None  # the local file when it is in the HF cache and its header was read there

    @property
    def header_read(self) -> bool:
        return self.header.startswith("read")

    @property
    def verdict_text(self) -> str:
        """The verdict, or, with no prediction, why there is none ("header unreadable: …")."""
        if self.prediction is not None:
            return self.prediction.verdict
        return self.header if self.header.startswith(fit.UNREADABLE) else f"unknown: {self.error}"

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON row, keyed like `FitPrediction.summary()`: `file` is the local path (null when the file
        is not on disk), `name` its path in the repo, `verdict` null without a prediction and `how` says why."""
        p = self.prediction
        how = self.header if p is not None or self.header.startswith(fit.UNREADABLE) else f"unavailable: {self.error}"
        return jf.fit_fields(file=self.path, name=self.entry.name, quant_type=self.entry.quant_type,
                             predicted_bytes=p.predicted_bytes if p else None, verdict=p.verdict if p else None, how=how)


def cached_path(listing: RepoListing, entry: GgufFile) -> str | None:
    """The local path of an entry's first file when all of it is in the HF cache, else None."""
    if not entry.cached:
        return None
    if listing.source == "cache":
        by_name = {Path(p).name: p for f in hub.cached_gguf_by_repo().get(listing.repo_id, []) for p in f.paths}
        return by_name.get(Path(entry.files[0]).name)
    p = try_to_load_from_cache(listing.repo_id, entry.files[0], cache_dir=paths.hf_cache_dir(), revision=listing.revision)
    return p if isinstance(p, str) else None


def entry_header(listing: RepoListing, entry: GgufFile) -> tuple[GgufInfo, str]:
    """An entry's GGUF header: from the cached file when there is one, else by HTTP range reads (cached per file)."""
    local = cached_path(listing, entry)
    if local:
        return read_header(local, check_arch=False), "read (cached file)"
    key = (hub.endpoint(), listing.repo_id, listing.revision, entry.files[0])
    with _HEADERS_LOCK:
        info = _HEADERS.get(key)
    if info is None:
        info = hub.read_remote_header(listing.repo_id, entry.files[0], listing.revision)
        with _HEADERS_LOCK:
            _HEADERS[key] = info
    return info, "read from this file's header"


def read_headers(listing: RepoListing, entries: Sequence[GgufFile]) -> dict[str, tuple[GgufInfo, str] | str]:
    """Headers of several entries, read in parallel: name -> (info, how) or name -> "header unreadable: <why>"."""

    def one(e: GgufFile) -> tuple[GgufInfo, str] | str:
        try:
            return entry_header(listing, e)
        except (HubError, GgufError, OSError) as exc:
            return fit.unreadable(exc, f"{listing.repo_id}/{e.files[0]}")

    if not entries:
        return {}
    with ThreadPoolExecutor(max_workers=min(HEADER_READERS, len(entries))) as ex:
        return dict(zip([e.name for e in entries], ex.map(one, entries), strict=True))


def fit_listing(
    listing: RepoListing,
    *,
    n_ctx: int = fit.DEFAULT_N_CTX,
    kv_type: str = "f16",
    read: str | Iterable[str] = "selected",
    ram_available_bytes: int | None = None,
    gpus: Sequence[Gpu] | None = None,
    disk_free_bytes: int | None = None,
) -> list[FitRow]:
    """A fit prediction for every entry of a listing, before anything is downloaded.

    `read` names the entries whose headers are fetched ("all", "selected" or a set of entry names); the rest
    borrow the model's shape from a header that was read, with their weights taken from the file size, and
    say so ("estimated"). All quantizations of one repo share layers, heads and vocabulary, so that is close.
    An entry whose own header was read and refused gets no prediction at all: its row says why instead.
    """
    if ram_available_bytes is None or gpus is None:
        m = machine()
        ram_available_bytes = m.ram_available_bytes if ram_available_bytes is None else ram_available_bytes
        gpus = m.gpus if gpus is None else gpus
    if disk_free_bytes is None:
        disk_free_bytes = hub.check_disk_space(0)[1]
    if read == "all":
        wanted = list(listing.files)
    elif read == "selected":
        wanted = [e for e in listing.files if e.selected or e.cached]
    else:
        names = set(read)
        wanted = [e for e in listing.files if e.name in names or e.cached]
    if not wanted and listing.files:  # something must give the model's shape: the smallest file is cheapest
        wanted = [min(listing.files, key=lambda e: e.size_bytes or 0)]
    headers = read_headers(listing, wanted)
    shape = next((v[0] for v in headers.values() if isinstance(v, tuple)), None)
    shape_from = next((k for k, v in headers.items() if isinstance(v, tuple)), None)

    rows = []
    for e in listing.files:
        got = headers.get(e.name)
        if isinstance(got, str):  # its own header was refused: a borrowed shape would hide that
            rows.append(FitRow(e, None, got, got))
            continue
        if isinstance(got, tuple):
            info, how = got
            weights = e.size_bytes if e.is_split else None  # a first shard's header lists only its own tensors
        elif shape is not None:
            size = e.size_bytes or shape.tensor_bytes
            info = dataclasses.replace(shape, path=e.name, quant_type=e.quant_type or "unknown", tensor_bytes=size,
                                       size_bytes=size, repackable_bytes=0)
            how, weights = f"estimated from {shape_from}'s header", size
        else:
            rows.append(FitRow(e, None, "unavailable", "no header of this repo could be read"))
            continue
        download = 0 if e.cached else hub.bytes_to_download(listing, [e])
        pred = fit.predict(info, n_ctx=n_ctx, kv_type=kv_type, ram_available_bytes=ram_available_bytes, gpus=gpus,
                           weights_bytes=weights, download_bytes=download, disk_free_bytes=disk_free_bytes,
                           file=e.name)
        pred.quant_type = e.quant_type or pred.quant_type
        if not isinstance(got, tuple) and (e.quant_type or "") not in NEVER_REPACKED and cpu_supports_repack():
            pred.notes.append("weights llama.cpp may repack for this CPU are not counted: choose the file to read its header")
        local = info.path if isinstance(got, tuple) and how == "read (cached file)" else None
        rows.append(FitRow(e, pred, how, None, local))
    return rows


def selection_disk_check(listing: RepoListing, entries: Sequence[GgufFile]) -> tuple[bool, int, int]:
    """(enough room, bytes still to download, free bytes) for downloading `entries` together."""
    need = hub.bytes_to_download(listing, entries)
    ok, free = hub.check_disk_space(need)
    return ok, need, free


# --------------------------------------------------------------------------------------------------------------
# Background jobs (a page polls snapshot(); the CLI runs the same library calls in the foreground)
# --------------------------------------------------------------------------------------------------------------


class DownloadJob(Job):
    """Downloads entries of a listing (`hub.download`); progress is bytes overall with per-file bytes in `detail`;
    `stop()` cancels, and the part already fetched is kept for the next download to resume."""

    kind = "download"
    expected = (HubError,)
    failure_prefix = "Download failed: "

    def __init__(self, listing: RepoListing, entries: Sequence[GgufFile]) -> None:
        self.listing, self.entries = listing, list(entries)
        files = [{"name": f, "bytes": 0, "total": s, "phase": "waiting"}
                 for e in self.entries for f, s in zip(e.files, e.sizes, strict=True)]
        super().__init__(self._download, title=f"download from {listing.repo_id}",
                         progress=jobs.Progress(0, sum(e.size_bytes or 0 for e in self.entries), "waiting",
                                                "queued", {"files": files}))
        self.error_kind: str | None = None

    def _on_progress(self, p: hub.DownloadProgress) -> None:
        with self._lock:
            files = [dict(f) for f in self.progress.detail["files"]]
            if 0 <= p.file_index < len(files):
                f = files[p.file_index]
                f["bytes"], f["phase"] = p.file_bytes, p.phase
                if p.file_total:
                    f["total"] = p.file_total
                if p.phase in ("done", "cached"):
                    f["bytes"] = f["total"] or p.file_bytes
            self.report(p.done_bytes, p.total_bytes or self.progress.total, phase=p.phase, message=p.filename,
                        detail={"files": files})

    def _download(self, _job: Job) -> list[hub.DownloadedFile]:
        try:
            out = hub.download(self.listing.repo_id, self.entries, on_progress=self._on_progress, cancel=self.cancel,
                               listing=self.listing)
        except HubError as exc:
            if exc.kind == "cancelled":
                raise jobs.Cancelled(str(exc)) from None
            self.error_kind = exc.kind
            raise
        for e in self.entries:  # the listing the page shows now knows they are here
            e.cached = True
        return out

    def _snapshot_extra(self) -> dict[str, Any]:
        p = self.progress
        kind = "cancelled" if self.cancelled else (self.error_kind or "hub") if self.failure else None
        return {"repo_id": self.listing.repo_id, "files": [dict(f) for f in p.detail["files"]],
                "done_bytes": p.done, "total_bytes": p.total,
                "error": p.message if self.cancelled else self.failure, "error_kind": kind,
                "result": list(self.result) if self.result is not None else None}


class LadderBuildJob(Job):
    """Quantizes a local source GGUF into a ladder (`build_ladder`); progress is files built of files planned,
    and the build's lines for people are kept in `detail["messages"]`."""

    kind = "ladder-build"
    expected = (GgufError, QuantizeError, OSError, ValueError)
    failure_prefix = "Building the ladder failed: "

    def __init__(self, src: str, types: Sequence[str], reference_type: str | None = "F16", name: str | None = None,
                 *, imatrix: str | None = None, with_static: bool = True) -> None:
        self.src, self.types, self.reference_type, self.name = src, list(types), reference_type, name
        self.imatrix, self.with_static = imatrix, with_static  # an importance-matrix file, and static twins beside
        steps = self.planned_files(imatrix is not None)
        super().__init__(self._build, title=f"ladder from {Path(src).name}",
                         progress=jobs.Progress(0, steps, "", "Starting…", {"messages": []}))

    def planned_files(self, with_matrix: bool) -> int:
        """How many files the build makes (`build_ladder` tells the exact count once it starts)."""
        n = len(self.types) + (1 if self.reference_type and self.reference_type not in self.types else 0)
        return n + (sum(t not in NEEDS_IMATRIX for t in self.types) if with_matrix and self.with_static else 0)

    def _say(self, msg: str) -> None:
        with self._lock:
            self.report(message=msg, detail={"messages": [*self.progress.detail["messages"], msg]})

    def _step(self, done: int, total: int, _what: str) -> None:
        with self._lock:
            self.report(max(done, int(self.progress.done)), total)

    def _build(self, _job: Job) -> Ladder:
        return build_ladder(self.src, self.types, reference_type=self.reference_type, name=self.name,
                            progress=self._say, on_step=self._step, imatrix=self.imatrix,
                            with_static=self.with_static, cancel=self.cancel)

    def _snapshot_extra(self) -> dict[str, Any]:
        p = self.progress
        return {"messages": list(p.detail["messages"]), "step": int(p.done), "steps": int(p.total),
                "error": self.failure, "ladder": self.result}


def check_source(path: str) -> GgufInfo:
    """Vet a source GGUF for building a ladder: one-line GgufError for a wrong path or a file llama.cpp cannot use."""
    if not (path or "").strip():
        raise GgufError("enter the path of a local GGUF file to quantize")
    return read_header(path.strip())


# --------------------------------------------------------------------------------------------------------------
# Registering ladders from downloads and discoveries
# --------------------------------------------------------------------------------------------------------------


def register_download(repo_id: str, files: Sequence[hub.DownloadedFile], revision: str | None = None) -> Ladder:
    """Downloaded files (in the HF cache) as a ladder named after the repo.

    The provenance names the commit the files were taken from when they say (one download: one commit),
    so it records what was downloaded, not what the caller thought the revision was.
    """
    commits = {f.revision for f in files if f.revision}
    if len(commits) == 1:
        revision = commits.pop()
    verified = all(f.verified for f in files)
    origin = (f"Downloaded from {hub.endpoint()}/{repo_id}"
              + (f" (revision {revision[:12]})" if revision else "")
              + " into the Hugging Face cache"
              + ("; size and sha256 verified against the Hub" if verified else
                 "; some files came from the cache and were not re-hashed"))
    return register_ladder(repo_id, [f.path for f in files],
                           {"origin": origin, "hub_repo": repo_id, "hub_revision": revision, "source": "hub"},
                           slug=f"hf-{repo_id}")


def found_ladder_name(group: discover.FoundGroup) -> str:
    """The name the ladder registered from `group` gets: the model and where its files were found."""
    sources = sorted({SOURCE_NAMES.get(f.source, f.source) for f in group.files})
    return f"{group.model} ({', '.join(sources)})"


def register_found(group: discover.FoundGroup) -> Ladder:
    """Files found on disk (HF cache, a folder, LM Studio, Ollama) as a ladder the Compare page can use."""
    name = found_ladder_name(group)
    where = "; ".join(sorted({f"{SOURCE_NAMES.get(f.source, f.source)}: {Path(f.path).parent}" for f in group.files}))
    return register_ladder(name, [f.path for f in group.files],
                           {"origin": f"Files already on this disk, used where they are ({where})",
                            "source": ",".join(sorted({f.source for f in group.files}))},
                           slug=f"found-{name}")


@dataclass
class Scan:
    """What discover found, grouped by model: each group can be registered as a ladder."""

    groups: list[discover.FoundGroup] = field(default_factory=list)
    n_files: int = 0


def scan_disk(folder: str | None = None, **roots: Any) -> Scan:
    """discover_all over the HF cache, LM Studio, Ollama and an optional folder, grouped by model."""
    folders = [folder.strip()] if folder and folder.strip() else []
    found = discover.discover_all(folders, **roots)
    return Scan(discover.group_by_model(found), len(found))


__all__ = [
    "DownloadJob", "FitRow", "LadderBuildJob", "Scan", "check_source", "entry_header", "fit_listing",
    "found_ladder_name", "read_headers", "register_download", "register_found", "scan_disk", "selection_disk_check",
]
