"""Hugging Face Hub access for GGUF quantizations: list, peek at headers, download into the HF cache.

This is the face callers import (`from workbench.models import hub`); the work lives in three modules:

* hub_listing: one GGUF *entry* per model file, split shards joined, grouped and ordered by quantization type;
  what the cache holds; a remote file's GGUF header read by Range requests, without its weights;
* hub_download: downloads that report bytes per file and overall, stop when a `threading.Event` is set, resume
  from a kept partial file, check size and LFS sha256 before a file enters the cache, and are fetched at the
  commit the listing read, never at a branch that may have moved since;
* hub_access: settings read at call time (HF_ENDPOINT, HF_HOME/HF_HUB_CACHE, HF_HUB_OFFLINE: huggingface_hub
  freezes them at import), repo ids as users paste them, and every failure as a `HubError` with a `kind` and one
  clear line, never a traceback, never the token. Offline (or on a network failure) listing falls back to the cache.

All three are built on `huggingface_hub`'s own client code (model_info, file metadata, http_get, the cache
layout) so HF_TOKEN, HF_ENDPOINT and the cache behave as every other HF tool expects.
"""

from __future__ import annotations

from workbench.files.quant_names import DEFAULT_QUANTS
from workbench.models.hub_access import HubError, check_repo_id, endpoint, is_offline, normalize_repo_id
from workbench.models.hub_download import (
    DISK_RESERVE_BYTES,
    DownloadedFile,
    DownloadProgress,
    ProgressCallback,
    bytes_to_download,
    check_disk_space,
    download,
)
from workbench.models.hub_listing import (
    GgufFile,
    RepoListing,
    cache_summary,
    cached_gguf_by_repo,
    list_gguf,
    read_remote_header,
)

__all__ = [
    "DEFAULT_QUANTS",
    "DISK_RESERVE_BYTES",
    "DownloadProgress",
    "DownloadedFile",
    "GgufFile",
    "HubError",
    "ProgressCallback",
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
