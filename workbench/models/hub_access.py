"""How we reach the Hugging Face Hub: settings read at call time, repo ids as users paste them, and one-line errors.

Why a module of its own: listing (hub_listing.py) and downloading (hub_download.py) meet the Hub the same way.
Both read HF_ENDPOINT and HF_HUB_OFFLINE when called (huggingface_hub freezes them at import, but a test, a CLI
flag or a settings page may change them later), both accept the same repo ids, both turn every
huggingface_hub, network or disk failure into a `HubError` with a `kind` and one clear line that never holds
the token, and both drop the token from requests that leave the Hub's origin (a CDN redirect).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from huggingface_hub import constants, get_token
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
from huggingface_hub.utils import HFValidationError, build_hf_headers, validate_repo_id

from workbench.core.paths import hf_cache_dir

try:  # huggingface_hub >= 2 ships its HTTP stack as httpx2; 1.x used httpx
    import httpx2 as _http
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx as _http  # type: ignore[no-redef]

NETWORK_ERRORS: tuple[type[BaseException], ...] = (_http.TransportError, ConnectionError, TimeoutError)
# the Hub could not say (refused, not a Hub, offline or unreachable): named once, typed, for an except clause
UNANSWERED: tuple[type[BaseException], ...] = (HfHubHTTPError, FileMetadataError, OfflineModeIsEnabled, *NETWORK_ERRORS)


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
    """Raised from the progress hook when the caller's cancel event is set (internal; `hub_errors` makes it a HubError)."""


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


@contextmanager
def hub_errors(repo_id: str, filename: str | None = None, downloading: bool = False) -> Iterator[None]:
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
        if isinstance(exc, LocalEntryNotFoundError) and isinstance(exc.__cause__, NETWORK_ERRORS):
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
    except NETWORK_ERRORS as exc:
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


def auth_headers_for(hub_url: str, target_url: str) -> dict[str, str]:
    """huggingface_hub's headers (token included via its normal lookup), minus the token when leaving the Hub's origin."""
    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"
    a, b = urlsplit(hub_url), urlsplit(target_url)
    if (a.scheme, a.hostname, a.port) != (b.scheme, b.hostname, b.port):
        headers.pop("authorization", None)
        headers.pop("Authorization", None)
    return headers

