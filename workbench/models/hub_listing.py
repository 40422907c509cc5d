"""What a Hub repo offers: its GGUF files as entries (shards joined, sizes, sha256, quantization, bits per weight),
what the local cache already holds, and a remote file's GGUF header read without downloading its weights.

Why a module of its own: choosing what to download (the Models page, `workbench models list`, acquire.py) needs
only this; the download itself (hub_download.py) takes an entry from here. Offline, or when the Hub cannot be
reached, a listing falls back to the cache and says so in `notice`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, hf_hub_url, try_to_load_from_cache
from huggingface_hub.file_download import get_hf_file_metadata
from huggingface_hub.utils import get_session, hf_raise_for_status

from workbench.core.paths import hf_cache_dir
from workbench.files.quant_names import (
    DEFAULT_QUANTS,
    is_imatrix_name,
    nominal_bits_per_weight,
    parse_shard,
    precision_key,
    quant_from_name,
)
from workbench.models import discover
from workbench.models.hub_access import HubError, auth_headers_for, check_repo_id, endpoint, hub_errors, is_offline


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
    singles.sort(key=lambda f: is_imatrix_name(f.name))  # of one type, the static file first (and preselected)
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
        with hub_errors(repo_id):
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


def _range_bytes(hub_url: str, location: str, start: int, end: int) -> bytes:
    """Bytes start..end (inclusive) of a remote file by Range request; copes with a server that ignores Range."""
    headers = auth_headers_for(hub_url, location)
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
    with hub_errors(repo_id, filename):
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

