"""Tell someone when a provider changed: a Slack-compatible webhook (a JSON POST of `{"text": ...}`).

The URL is a secret of sorts (anyone holding a Slack webhook URL can post to the channel), so it is read from the
environment variable a provider names and never printed, logged or stored; an error names the host at most.
The POST is bounded in time and never raises: a notification that fails must not lose the check it reports.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from urllib.parse import urlsplit

__all__ = ["DEFAULT_TIMEOUT_S", "post_webhook", "slack_text", "webhook_url"]

DEFAULT_TIMEOUT_S = 10.0


def webhook_url(env_name: str | None) -> str | None:
    """The webhook URL held by the environment variable `env_name`, or None when it is unset or not http(s)."""
    url = os.environ.get(env_name or "", "").strip() if env_name else ""
    return url if urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname else None


def slack_text(text: str) -> str:
    """`text` with Slack's three control characters escaped (its documented &amp; &lt; &gt;), so a provider named
    `<!channel>` or a label holding `<http://…|click>` is shown, never obeyed as a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post_webhook(url: str, text: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """POST `{"text": text}` (escaped for Slack) as JSON to `url`; None when it was accepted (2xx), else one line
    saying why not (naming the host only, never the URL's path or query, where a webhook's token sits)."""
    host = urlsplit(url).hostname or "the webhook"
    body = json.dumps({"text": slack_text(text)}).encode("utf-8")
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (http(s) only: webhook_url)
            resp.read(65536)
            return None
    except urllib.error.HTTPError as exc:
        return f"the webhook at {host} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"the webhook at {host} could not be reached ({type(reason).__name__})"
