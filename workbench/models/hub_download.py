"""Downloading GGUF entries into the standard Hugging Face cache: progress, cancel and resume, disk space, integrity.

Why a module of its own: a multi-GB download is long work with its own rules, apart from choosing what to fetch
(hub_listing.py). It reports bytes per file and overall, stops when a `threading.Event` is set, and resumes later
from a kept `blobs/<etag>.incomplete` file with a Range request (huggingface_hub 1.x/2.x discards its partial
files, so a cancelled download would otherwise start over). Size and LFS sha256 are checked before a file enters
the cache (a mismatch deletes it), files are fetched at the commit the listing read, never at a branch that may
have moved since, and free disk space is checked first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import filelock
from huggingface_hub import hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.file_download import get_hf_file_metadata, http_get, repo_folder_name

from workbench.core.paths import hf_cache_dir
from workbench.files import json_fields as jf
from workbench.models.hub_access import (
    UNANSWERED,
    DownloadCancelled,
    HubError,
    auth_headers_for,
    check_repo_id,
    endpoint,
    hub_errors,
    is_offline,
)
from workbench.models.hub_listing import GgufFile, RepoListing, cached_gguf_by_repo, list_gguf

#: Free space kept after a download, so a full disk never takes the database or the OS down with it.
DISK_RESERVE_BYTES = 512 * 2**20
_HASH_CHUNK = 8 * 2**20


@dataclass
class DownloadProgress:
    """What a progress callback receives: bytes of this file and of the whole download, and the phase."""

    filename: str
    file_index: int  # 0-based, over all files (shards counted) of this download
    file_count: int
    file_bytes: int
    file_total: int | None
    done_bytes: int  # over all files, cached ones counted as done
    total_bytes: int
    phase: str  # "downloading" | "verifying" | "cached" | "done"


@dataclass
class DownloadedFile:
    """A model file now in the cache; `path` is what llama.cpp opens (the first shard of a split model)."""

    name: str
    quant_type: str | None
    path: str
    paths: list[str]
    size_bytes: int
    verified: bool  # sha256 checked against the Hub's LFS metadata (False only for non-LFS files)
    resumed_bytes: int = 0  # bytes reused from an earlier, interrupted download
    from_cache: bool = False  # nothing was downloaded
    revision: str | None = None  # commit sha the file was taken from (the listing's); None when only the cache knew

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> dict:
        """The CLI's JSON row in the shared vocabulary (json_fields): `file` is the path llama.cpp opens, `paths`
        every shard."""
        return {jf.FILE: jf.abs_file(self.path), jf.NAME: self.name, jf.QUANT_TYPE: self.quant_type,
                jf.SIZE_BYTES: self.size_bytes, "paths": [jf.abs_file(p) for p in self.paths], "verified": self.verified,
                "resumed_bytes": self.resumed_bytes, "from_cache": self.from_cache, "revision": self.revision}


ProgressCallback = Callable[[DownloadProgress], None]


@dataclass
class _Overall:
    total: int
    done: int = 0
    file_count: int = 0
    callback: ProgressCallback | None = None
    cancel: threading.Event | None = None

    def report(self, filename: str, index: int, file_bytes: int, file_total: int | None, phase: str) -> None:
        if phase in ("downloading", "verifying") and self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled()
        if self.callback is not None:
            self.callback(DownloadProgress(filename, index, self.file_count, file_bytes, file_total, self.done, self.total, phase))


class _ProgressHook:
    """Stands in for the tqdm bar huggingface_hub's http_get updates per chunk: counts bytes, checks the cancel event."""

    def __init__(self, overall: _Overall, filename: str, index: int, **tqdm_kwargs):
        self.overall, self.filename, self.index = overall, filename, index
        self.total = tqdm_kwargs.get("total")
        self.n = int(tqdm_kwargs.get("initial") or 0)

    def __enter__(self) -> _ProgressHook:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int) -> None:
        self.n += n
        self.overall.done += n
        self.overall.report(self.filename, self.index, self.n, self.total, "downloading")

    def close(self) -> None:
        return None


def _free_disk_bytes(path: Path) -> int:
    """Free bytes on the volume that holds `path` (or its nearest existing parent)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _partial_path(cache: Path, repo_id: str, etag: str) -> Path:
    return cache / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs" / f"{etag}.incomplete"


def bytes_to_download(listing: RepoListing, entries: Iterable[GgufFile]) -> int:
    """Bytes still to fetch for `entries`: cached files and kept partial downloads subtracted."""
    cache = hf_cache_dir()
    need = 0
    for e in entries:
        if e.cached:
            continue
        for size, sha in zip(e.sizes, e.sha256, strict=True):
            have = 0
            if sha:
                part = _partial_path(cache, listing.repo_id, sha)
                have = part.stat().st_size if part.exists() else 0
            need += max(0, (size or 0) - have)
    return need


def check_disk_space(need_bytes: int, where: Path | None = None) -> tuple[bool, int]:
    """(enough room, free bytes) for writing `need_bytes` into the cache, keeping DISK_RESERVE_BYTES free."""
    free = _free_disk_bytes(where or hf_cache_dir())
    return need_bytes + DISK_RESERVE_BYTES <= free, free


def _sha256_file(path: Path, overall: _Overall, name: str, index: int, size: int | None) -> str:
    """sha256 of a file, reporting "verifying" and honouring the cancel event (large files take seconds)."""
    h, done = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
            done += len(chunk)
            overall.report(name, index, done, size, "verifying")
    return h.hexdigest()


def _download_one(
    repo_id: str, filename: str, revision: str, expected_sha: str | None, overall: _Overall, index: int,
) -> tuple[str, bool, int, bool]:
    """One repo file at `revision` (the listing's commit sha) into the cache.

    Returns (pointer path, sha verified, bytes resumed, was cached).
    """
    cache = hf_cache_dir()
    ep = endpoint()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=ep)
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision)
    if isinstance(cached, str):
        size = os.path.getsize(cached)
        overall.done += size
        overall.report(filename, index, size, size, "cached")
        return cached, False, 0, True

    meta = get_hf_file_metadata(url)
    if not meta.etag:
        raise HubError("hub", f"{endpoint()} sent no ETag for {repo_id}/{filename} (check HF_ENDPOINT)")
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    blob = storage / "blobs" / meta.etag
    partial = blob.with_name(blob.name + ".incomplete")
    lock_path = cache / ".locks" / repo_folder_name(repo_id=repo_id, repo_type="model") / f"{meta.etag}.workbench.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    blob.parent.mkdir(parents=True, exist_ok=True)
    expected_sha = expected_sha or (meta.etag if len(meta.etag) == 64 else None)  # LFS etags are the sha256
    resumed = 0
    try:
        lock = filelock.FileLock(str(lock_path), timeout=0)
        lock.acquire()
    except filelock.Timeout:
        raise HubError("busy", f"{repo_id}/{filename} is being downloaded by another window or process") from None
    try:
        if not blob.exists():
            with open(partial, "r+b" if partial.exists() else "w+b") as fh:
                resumed = fh.seek(0, os.SEEK_END)
                if meta.size is not None and resumed > meta.size:  # not ours to trust: start over
                    fh.truncate(0)
                    resumed = fh.seek(0)
                overall.done += resumed
                hook = lambda **kw: _ProgressHook(overall, filename, index, **kw)  # noqa: E731
                overall.report(filename, index, resumed, meta.size, "downloading")
                http_get(
                    meta.location,
                    fh,
                    resume_size=resumed,
                    headers=auth_headers_for(url, meta.location),
                    expected_size=meta.size,
                    tqdm_class=hook,  # type: ignore[arg-type]
                )
            size = partial.stat().st_size
            if meta.size is not None and size != meta.size:
                partial.unlink(missing_ok=True)
                raise HubError("integrity", f"{repo_id}/{filename}: got {size:,} bytes, the Hub says {meta.size:,}; deleted it, run again")
            if expected_sha:
                got = _sha256_file(partial, overall, filename, index, meta.size)
                if got != expected_sha:
                    partial.unlink(missing_ok=True)
                    raise HubError(
                        "integrity",
                        f"{repo_id}/{filename}: sha256 mismatch (expected {expected_sha[:12]}…, got {got[:12]}…); "
                        "the file was deleted, nothing corrupt was kept. Run the download again",
                    )
            os.chmod(partial, 0o644)
            os.replace(partial, blob)
        else:
            overall.done += blob.stat().st_size
    except OSError as exc:
        if "Consistency check failed" in str(exc):  # http_get's own size check
            partial.unlink(missing_ok=True)
            raise HubError("integrity", f"{repo_id}/{filename}: the download ended at the wrong size; deleted it, run again") from None
        raise
    finally:
        lock.release()
    # The blob is in place: let huggingface_hub write the snapshot pointer, by the listed commit's sha. By a branch
    # it would resolve the branch again and, had it moved since the listing, fetch and point at a file nobody vetted.
    # A commit sha writes no refs: `_name_branch` does that once the branch is known to name this commit.
    pointer = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, endpoint=ep)
    if os.path.islink(pointer) and Path(pointer).resolve() != blob.resolve():
        raise HubError("integrity", f"{repo_id}/{filename}: the cache points at another file than the one verified")
    overall.report(filename, index, meta.size or 0, meta.size, "done")
    return pointer, bool(expected_sha), resumed, False


def _name_branch(repo_id: str, branch: str, commit: str, filename: str) -> bool:
    """Write refs/<branch> = commit in the cache only if the branch still names that commit on the Hub.

    Offline look-ups by branch (huggingface_hub's, other tools') then find the file; were the ref written for a
    branch that moved, it would name either a commit whose files were not vetted or a head that is not one.
    Returns whether the ref was written; a Hub that cannot say leaves the cache's refs as they were.
    """
    if re.fullmatch(r"[0-9a-f]{40}", branch):  # a commit sha is not a ref
        return False
    try:
        head = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=branch, endpoint=endpoint())).commit_hash
    except UNANSWERED:
        return False
    if head != commit:
        return False
    ref = hf_cache_dir() / repo_folder_name(repo_id=repo_id, repo_type="model") / "refs" / branch
    if ref.is_file() and ref.read_text().strip() == commit:
        return True
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f"{ref.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)  # atomic: a concurrent reader never sees half a sha
    return True


def download(
    repo_id: str,
    wanted: Iterable[GgufFile | str],
    *,
    revision: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    listing: RepoListing | None = None,
) -> list[DownloadedFile]:
    """Download GGUF entries (GgufFile, file names or quant types like "Q4_K_M") into the standard HF cache.

    Reports progress per chunk, stops when `cancel` is set (the partial file stays and the next call resumes it
    with a Range request), checks free disk space first, verifies size and sha256, and raises HubError with
    one line on any failure. Offline, it returns the requested files if they are all cached.
    Files are taken at the listing's commit sha, so a branch moved since the listing cannot swap in a file
    that was not vetted; refs/<branch> is written only while the branch still names that commit.
    """
    repo_id = check_repo_id(repo_id)
    listing = listing or list_gguf(repo_id, revision)
    if listing.source == "cache":
        return [_from_cache_only(repo_id, w, listing) for w in wanted]
    entries = [w if isinstance(w, GgufFile) else listing.find(w) for w in wanted]
    for e in entries:
        if not e.complete:
            raise HubError("file_not_found", f"{repo_id}: {e.name} is a split model with missing shards on the Hub")
    need = bytes_to_download(listing, entries)
    ok, free = check_disk_space(need)
    if not ok:
        raise HubError(
            "disk_full",
            f"Not enough disk space in {hf_cache_dir()}: the download needs {need / 1e9:.2f} GB "
            f"(+{DISK_RESERVE_BYTES / 1e9:.1f} GB reserve), {free / 1e9:.2f} GB free",
        )
    total = sum(e.size_bytes or 0 for e in entries)
    overall = _Overall(total, 0, sum(len(e.files) for e in entries), on_progress, cancel)
    out: list[DownloadedFile] = []
    index = 0
    commit = listing.revision or revision or "main"  # a Hub listing always has its commit sha
    for e in entries:
        paths, verified, resumed, from_cache = [], True, 0, True
        for fname, sha in zip(e.files, e.sha256, strict=True):
            with hub_errors(repo_id, fname, downloading=True):
                overall.report(fname, index, 0, None, "downloading")  # honours cancel between files
                p, v, r, c = _download_one(repo_id, fname, commit, sha, overall, index)
            paths.append(p)
            verified, resumed, from_cache = verified and (v or c), resumed + r, from_cache and c
            index += 1
        out.append(DownloadedFile(e.name, e.quant_type, paths[0], paths, sum(os.path.getsize(p) for p in paths),
                                  verified, resumed, from_cache, listing.revision))
    if out and not all(d.from_cache for d in out):
        _name_branch(repo_id, revision or "main", commit, entries[0].files[0])
    return out


def _from_cache_only(repo_id: str, wanted: GgufFile | str, listing: RepoListing) -> DownloadedFile:
    """Offline or unreachable Hub: the requested entry if every file of it is cached, else a one-line HubError."""
    kind = "offline" if is_offline() else "network"
    label = wanted.name if isinstance(wanted, GgufFile) else wanted
    try:
        entry = listing.find(wanted.name if isinstance(wanted, GgufFile) else wanted)
    except HubError:
        cached = ", ".join(f.quant_type or f.name for f in listing.files)
        raise HubError(kind, f"{listing.notice}; {label} is not among them (cached: {cached})") from None
    found = {Path(p).name: p for f in cached_gguf_by_repo().get(repo_id, []) for p in f.paths}
    paths = [p for f in entry.files if (p := found.get(Path(f).name))]
    if len(paths) != len(entry.files):
        raise HubError(kind, f"{listing.notice}; {label} is only partly cached")
    return DownloadedFile(entry.name, entry.quant_type, paths[0], paths,
                          sum(os.path.getsize(p) for p in paths), False, 0, True)

