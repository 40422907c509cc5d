"""Hugging Face Hub access for GGUF quantizations: list, peek at headers, download into the HF cache.

Built on `huggingface_hub`'s own client code (model_info, file metadata, http_get, the cache layout) so
HF_TOKEN, HF_ENDPOINT and the cache behave as every other HF tool expects. What this module adds is what
the product needs around it:

* one GGUF *entry* per model file, split shards joined, grouped and ordered by quantization type;
* downloads that report bytes per file and overall, stop when a `threading.Event` is set, and resume
  later from a kept `blobs/<etag>.incomplete` file with a Range request (huggingface_hub 1.x/2.x
  discards its partial files, so a cancelled multi-GB download would otherwise start over);
* integrity: size and LFS sha256 are checked before a file enters the cache; a mismatch deletes it; files are
  fetched at the commit the listing read, never at a branch that may have moved since;
* every failure becomes a `HubError` with a `kind` and one clear line, never a traceback, and never the token;
* offline (HF_HUB_OFFLINE read at call time, or a network failure) falls back to what is cached.

Environment is read at call time (HF_ENDPOINT, HF_HOME/HF_HUB_CACHE, HF_HUB_OFFLINE): huggingface_hub
freezes them at import, but a test, a CLI flag or a settings page may change them later.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import filelock
from huggingface_hub import HfApi, constants, get_token, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    DisabledRepoError,
    EntryNotFoundError,
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import get_hf_file_metadata, http_get, repo_folder_name
from huggingface_hub.utils import (
    HFValidationError,
    build_hf_headers,
    get_session,
    hf_raise_for_status,
    validate_repo_id,
)

from workbench.core.paths import hf_cache_dir
from workbench.files import json_fields as jf
from workbench.files.quant_names import (
    DEFAULT_QUANTS,
    nominal_bits_per_weight,
    parse_shard,
    precision_key,
    quant_from_name,
)
from workbench.models import discover

try:  # huggingface_hub >= 2 ships its HTTP stack as httpx2; 1.x used httpx
    import httpx2 as _http
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx as _http  # type: ignore[no-redef]

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (_http.TransportError, ConnectionError, TimeoutError)
# the Hub could not say (refused, not a Hub, offline or unreachable): named once, typed, for an except clause
_UNANSWERED: tuple[type[BaseException], ...] = (HfHubHTTPError, FileMetadataError, OfflineModeIsEnabled, *_NETWORK_ERRORS)

#: Free space kept after a download, so a full disk never takes the database or the OS down with it.
DISK_RESERVE_BYTES = 512 * 2**20
_HASH_CHUNK = 8 * 2**20


# --------------------------------------------------------------------------------------------------------------
# Errors and settings read at call time
# --------------------------------------------------------------------------------------------------------------


class HubError(Exception):
    """A Hub operation failed; `str()` is one line fit for a user, `kind` is for code.

    kinds: invalid_repo_id, not_found, gated, no_gguf, file_not_found, offline, network, disk_full,
    integrity, cancelled, busy, hub.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(_scrub(message))
        self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


class DownloadCancelled(Exception):
    """Raised from the progress hook when the caller's cancel event is set (internal; surfaces as HubError)."""


def _scrub(text: str) -> str:
    """Remove the token from a message, whatever put it there: it must never reach a screen or a log."""
    try:
        token = get_token()
    except Exception:  # a broken token store must not break error reporting
        token = None
    text = " ".join(str(text).split())  # one line
    return text.replace(token, "***") if token else text


def endpoint() -> str:
    """The Hub base URL (HF_ENDPOINT at call time)."""
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")




def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) now, or as huggingface_hub saw it at import."""
    now = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return now.strip().upper() in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def normalize_repo_id(text: str) -> str:
    """Accept what users paste: "owner/name", a huggingface.co URL, or "hf.co/owner/name"; return "owner/name"."""
    s = (text or "").strip()
    for prefix in ("https://", "http://"):
        s = s.removeprefix(prefix)
    for host in ("huggingface.co/", "hf.co/", "www.huggingface.co/"):
        if s.startswith(host):
            parts = s[len(host):].split("/")
            s = "/".join(parts[:2])
            break
    return s.strip("/")


def check_repo_id(text: str) -> str:
    """The normalized repo id, or HubError(invalid_repo_id) with a message saying what a valid one looks like."""
    repo_id = normalize_repo_id(text)
    hint = "use owner/name, e.g. bartowski/Llama-3.2-1B-Instruct-GGUF"
    if not repo_id:
        raise HubError("invalid_repo_id", f"No repo id given: {hint}")
    if repo_id.count("/") != 1:
        raise HubError("invalid_repo_id", f"'{text.strip()}' is not a valid Hugging Face repo id: {hint}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(
            "invalid_repo_id",
            f"'{text.strip()}' is not a valid Hugging Face repo id: {hint} "
            "(letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 characters)",
        ) from None
    return repo_id


# --------------------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------------------


@dataclass
class GgufFile:
    """One model file a repo offers; a split model's shards are one entry (`files` in shard order)."""

    name: str  # display name: the file name, or the first shard's name
    files: list[str]  # repo paths, shard order
    quant_type: str | None
    sizes: list[int | None]
    sha256: list[str | None]  # LFS sha256 per file (None for non-LFS files or when listed from the cache)
    bits_per_weight: float | None = None
    bpw_basis: str | None = None  # "read" (file size / parameter count the Hub reports) or "nominal" (type table)
    complete: bool = True  # False when shards are missing from the repo
    selected: bool = False  # preselected: one of the default ladder (Q8_0, Q5_K_M, Q4_K_M, Q2_K)
    cached: bool = False  # every file is already in the local cache

    @property
    def size_bytes(self) -> int | None:
        known = [s for s in self.sizes if s is not None]
        return sum(known) if len(known) == len(self.sizes) else None

    @property
    def is_split(self) -> bool:
        return len(self.files) > 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["size_bytes"] = self.size_bytes
        return d


@dataclass
class RepoListing:
    """A repo's GGUF entries, highest precision first. `source` says whether it came from the Hub or the cache."""

    repo_id: str
    revision: str | None  # commit sha the listing describes (None when listed from the cache)
    files: list[GgufFile]
    source: str = "hub"  # "hub" | "cache"
    notice: str | None = None  # e.g. why the cache was used instead of the Hub
    n_params: int | None = None  # parameter count the Hub's GGUF summary reports

    def by_quant(self) -> dict[str, list[GgufFile]]:
        """Entries grouped by quantization type, groups in precision order ("unknown" last)."""
        groups: dict[str, list[GgufFile]] = {}
        for f in self.files:
            groups.setdefault(f.quant_type or "unknown", []).append(f)
        return groups

    def selected(self) -> list[GgufFile]:
        return [f for f in self.files if f.selected]

    def find(self, wanted: str) -> GgufFile:
        """An entry by file name (any shard) or by quantization type (the first entry of that type)."""
        for f in self.files:
            if wanted == f.name or wanted in f.files:
                return f
        for f in self.files:
            if f.quant_type and f.quant_type.upper() == wanted.upper():
                return f
        offered = ", ".join(self.by_quant()) or "none"
        raise HubError("file_not_found", f"{self.repo_id} has no GGUF file or quantization '{wanted}' (offers: {offered})")

    def to_dict(self) -> dict:
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "source": self.source,
            "notice": self.notice,
            "n_params": self.n_params,
            "files": [f.to_dict() for f in self.files],
        }


def _is_model_gguf(path: str) -> bool:
    """GGUF files that are models; vision projectors (mmproj) are companions, not contestants."""
    name = path.rsplit("/", 1)[-1].lower()
    return name.endswith(".gguf") and not name.startswith("mmproj")


def _quant_of(path: str) -> str | None:
    """Quantization named by a repo path: the file name first, then its folders ("Q4_K_M/model-00001-of-00002.gguf")."""
    for part in reversed(path.split("/")):
        if q := quant_from_name(part):
            return q
    return None


def _join_entries(rows: list[tuple[str, int | None, str | None]], n_params: int | None) -> list[GgufFile]:
    """(path, size, sha256) rows -> entries with shards joined, ordered by precision then name, defaults marked."""
    singles: list[GgufFile] = []
    shards: dict[str, list[tuple[int, int, str, int | None, str | None]]] = {}
    for path, size, sha in rows:
        shard = parse_shard(path)
        if shard is None:
            singles.append(GgufFile(path.rsplit("/", 1)[-1], [path], _quant_of(path), [size], [sha]))
        else:
            folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            shards.setdefault(folder + shard.base, []).append((shard.index, shard.count, path, size, sha))
    for parts in shards.values():
        parts.sort()
        count = parts[0][1]
        singles.append(
            GgufFile(
                name=parts[0][2].rsplit("/", 1)[-1],
                files=[p[2] for p in parts],
                quant_type=_quant_of(parts[0][2]),
                sizes=[p[3] for p in parts],
                sha256=[p[4] for p in parts],
                complete=[p[0] for p in parts] == list(range(1, count + 1)),
            )
        )
    for f in singles:
        size = f.size_bytes
        if size and n_params:
            f.bits_per_weight, f.bpw_basis = round(size * 8 / n_params, 2), "read"
        elif f.quant_type and (nominal := nominal_bits_per_weight(f.quant_type)):
            f.bits_per_weight, f.bpw_basis = round(nominal, 2), "nominal"
    singles.sort(key=lambda f: f.name)
    singles.sort(key=lambda f: precision_key(f.quant_type), reverse=True)
    taken: set[str] = set()
    for f in singles:  # one preselected entry per default quantization
        if f.quant_type in DEFAULT_QUANTS and f.quant_type not in taken and f.complete:
            f.selected = True
            taken.add(f.quant_type)
    return singles


def list_gguf(repo_id: str, revision: str | None = None) -> RepoListing:
    """A repo's GGUF files from the Hub (sizes and sha256 from its file metadata), or from the cache when offline.

    Falls back to the cache, with a `notice` saying so, when offline or when the Hub cannot be reached;
    raises HubError when neither works, or for an invalid id, an unknown/gated repo, or a repo without GGUF.
    """
    repo_id = check_repo_id(repo_id)
    if is_offline():
        return _listing_from_cache(repo_id, "offline", "Offline (HF_HUB_OFFLINE is set)")
    try:
        with _hub_errors(repo_id):
            info = HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision, files_metadata=True)
    except HubError as exc:
        if exc.kind in ("network", "offline"):
            return _listing_from_cache(repo_id, exc.kind, str(exc))
        raise
    rows = []
    siblings = info.siblings or []
    for s in siblings:
        if _is_model_gguf(s.rfilename):
            size = s.lfs.size if s.lfs else s.size
            rows.append((s.rfilename, size, s.lfs.sha256 if s.lfs else None))
    if not rows:
        raise HubError(
            "no_gguf",
            f"{repo_id} has no GGUF files ({len(siblings)} other files). GGUF quantizations usually live in a "
            "separate repo, often named …-GGUF",
        )
    n_params = None
    gguf_meta = getattr(info, "gguf", None)
    if isinstance(gguf_meta, dict):
        n_params = gguf_meta.get("total") or None
    files = _join_entries(rows, n_params)
    cache = hf_cache_dir()
    for f in files:
        f.cached = all(
            isinstance(try_to_load_from_cache(repo_id, p, cache_dir=cache, revision=info.sha), str) for p in f.files
        )
    return RepoListing(repo_id, info.sha, files, "hub", None, n_params)


def cached_gguf_by_repo(cache: Path | None = None) -> dict[str, list[discover.FoundGguf]]:
    """GGUF files already in the HF cache, grouped by repo id (what works offline)."""
    out: dict[str, list[discover.FoundGguf]] = {}
    for f in discover.scan_hf_cache(cache or hf_cache_dir()):
        out.setdefault(f.repo_id or "?", []).append(f)
    return out


def cache_summary(cache: Path | None = None) -> str:
    """One line naming what the cache holds, for offline messages."""
    by_repo = cached_gguf_by_repo(cache)
    if not by_repo:
        return "The local cache holds no GGUF files."
    parts = [f"{repo} ({', '.join(sorted({f.quant_type or '?' for f in files}, key=precision_key, reverse=True))})"
             for repo, files in sorted(by_repo.items())]
    return "Cached: " + "; ".join(parts)


def _listing_from_cache(repo_id: str, kind: str, why: str) -> RepoListing:
    found = cached_gguf_by_repo().get(repo_id, [])
    if not found:
        raise HubError(kind, f"{why}: cannot list {repo_id} and none of its GGUF files are cached. {cache_summary()}")
    rows: list[tuple[str, int | None, str | None]] = []
    for f in found:
        for p in f.paths:
            rows.append((Path(p).name, Path(p).stat().st_size, None))
    files = _join_entries(rows, None)
    for entry in files:
        entry.cached = True
    return RepoListing(repo_id, None, files, "cache", f"{why}: showing the GGUF files already cached", None)


# --------------------------------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------------------------------


@contextmanager
def _hub_errors(repo_id: str, filename: str | None = None, downloading: bool = False) -> Iterator[None]:
    """Turn huggingface_hub / network / disk exceptions into one-line HubErrors."""
    what = f"{repo_id}/{filename}" if filename else repo_id
    try:
        yield
    except HubError:
        raise
    except DownloadCancelled:
        raise HubError("cancelled", f"Download of {what} cancelled; the part already downloaded is kept for resuming") from None
    except GatedRepoError:
        raise HubError(
            "gated",
            f"{repo_id} is gated (401/403): accept its terms on the Hub page while logged in, then set HF_TOKEN "
            "to an access token of that account",
        ) from None
    except DisabledRepoError:
        raise HubError("not_found", f"{repo_id} has been disabled on the Hub") from None
    except RepositoryNotFoundError:
        raise HubError(
            "not_found",
            f"Repository {repo_id} was not found on {endpoint()}: check the spelling (a private repo also needs HF_TOKEN)",
        ) from None
    except RevisionNotFoundError:
        raise HubError("not_found", f"{repo_id} has no such revision (branch, tag or commit)") from None
    except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
        if isinstance(exc, LocalEntryNotFoundError) and isinstance(exc.__cause__, _NETWORK_ERRORS):
            raise HubError("network", f"Cannot reach {endpoint()} for {what} and it is not cached") from None
        raise HubError("file_not_found", f"{what} does not exist in the repo") from None
    except OfflineModeIsEnabled:
        raise HubError("offline", f"Offline (HF_HUB_OFFLINE is set): cannot fetch {what}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise HubError("gated", f"{what} needs authentication (401): set HF_TOKEN to a token with access") from None
        if status == 403:
            raise HubError("gated", f"Access to {what} is forbidden (403): HF_TOKEN lacks permission for it") from None
        raise HubError("hub", f"The Hub answered {status} for {what}; try again later") from None
    except FileMetadataError:
        raise HubError("hub", f"{endpoint()} did not answer like a Hugging Face Hub for {what} (check HF_ENDPOINT)") from None
    except _NETWORK_ERRORS as exc:
        if downloading:
            raise HubError(
                "network",
                f"Network error while downloading {what} ({type(exc).__name__}); the part already downloaded is kept: "
                "run the download again to resume",
            ) from None
        raise HubError("network", f"Cannot reach {endpoint()} for {what} ({type(exc).__name__})") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise HubError("disk_full", f"Disk full while writing {what} into {hf_cache_dir()}: free some space and retry") from None
        raise


# --------------------------------------------------------------------------------------------------------------
# Remote header (metadata without downloading the weights)
# --------------------------------------------------------------------------------------------------------------


def _auth_headers_for(hub_url: str, target_url: str) -> dict[str, str]:
    """huggingface_hub's headers (token included via its normal lookup), minus the token when leaving the Hub's origin."""
    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"
    a, b = urlsplit(hub_url), urlsplit(target_url)
    if (a.scheme, a.hostname, a.port) != (b.scheme, b.hostname, b.port):
        headers.pop("authorization", None)
        headers.pop("Authorization", None)
    return headers


def _range_bytes(hub_url: str, location: str, start: int, end: int) -> bytes:
    """Bytes start..end (inclusive) of a remote file by Range request; copes with a server that ignores Range."""
    headers = _auth_headers_for(hub_url, location)
    headers["Range"] = f"bytes={start}-{end}"
    buf, skip = bytearray(), 0
    with get_session().stream("GET", location, headers=headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as r:
        hf_raise_for_status(r)
        if r.status_code == 200:  # whole file from byte 0: drop what precedes `start`
            skip = start
        for chunk in r.iter_bytes():
            buf += chunk
            if len(buf) >= skip + end - start + 1:
                break
    return bytes(buf[skip : skip + end - start + 1])


def read_remote_header(
    repo_id: str, filename: str, revision: str | None = None, *, first_bytes: int = 1 << 20, max_bytes: int | None = None
):
    """Read a Hub file's GGUF header (architecture, layers, context, tensor bytes…) without downloading its weights.

    Fetches the first `first_bytes` (1 MiB) by a Range request and parses from memory with the bounded parser
    (`gguf_header`); when the header runs past what was fetched, the next range continues where the last one
    ended and is twice as large, up to the header cap (`gguf_header.MAX_HEADER_BYTES`, 64 MiB). No byte is
    fetched twice and nothing is parsed twice. Returns a `GgufInfo` whose `path` is the file's Hub URL.
    """
    from workbench.files.gguf_header import MAX_HEADER_BYTES, GgufError, parse_header
    from workbench.files.gguf_info import info_from_header

    cap = min(max_bytes or MAX_HEADER_BYTES, MAX_HEADER_BYTES)
    repo_id = check_repo_id(repo_id)
    if is_offline():
        raise HubError("offline", f"Offline (HF_HUB_OFFLINE is set): cannot read the header of {repo_id}/{filename}")
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint())
    with _hub_errors(repo_id, filename):
        meta = get_hf_file_metadata(url)
        total = meta.size
        data = bytearray()
        step = [first_bytes]

        limit = cap if total is None else min(total, cap)

        def fetch(offset: int, n: int) -> bytes:
            """The remote file from `offset` on, as far as fetched; fetches the next, twice larger range while
            fewer than `n` bytes are there."""
            while len(data) < min(offset + n, limit):
                end = min(max(offset + n, len(data) + step[0]), limit)
                more = _range_bytes(url, meta.location, len(data), end - 1)  # only the bytes not fetched yet
                if not data and not more.startswith(b"GGUF"[: max(len(more), 1)]):
                    raise HubError("hub", f"{repo_id}/{filename} is not a GGUF file (starts with {bytes(more[:4])!r})")
                data.extend(more)
                step[0] *= 2
                if len(data) < end:  # the server sent less: the file ends here
                    break
            return bytes(data[offset:])

        try:
            header = parse_header(fetch, f"{repo_id}/{filename}")
            info = info_from_header(header, f"{repo_id}/{filename}", total if total is not None else len(data),
                                    check_arch=False)
        except GgufError as exc:
            msg = str(exc).split(": ", 1)[-1]
            if msg.startswith("truncated or corrupt") and len(data) >= cap:
                msg = f"no complete GGUF header in its first {len(data):,} bytes"
            raise HubError("hub", f"{repo_id}/{filename}: {msg}") from None
        return dataclasses.replace(info, path=url)


# --------------------------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------------------------


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
                    headers=_auth_headers_for(url, meta.location),
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
    except _UNANSWERED:
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
            with _hub_errors(repo_id, fname, downloading=True):
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


__all__ = [
    "DEFAULT_QUANTS",
    "DownloadProgress",
    "DownloadedFile",
    "GgufFile",
    "HubError",
    "RepoListing",
    "bytes_to_download",
    "cache_summary",
    "cached_gguf_by_repo",
    "check_disk_space",
    "check_repo_id",
    "download",
    "endpoint",
    "is_offline",
    "list_gguf",
    "normalize_repo_id",
    "read_remote_header",
]
