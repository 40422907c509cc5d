"""Remote contestants: an OpenAI-compatible or llama.cpp server taking part in a comparison.

A remote endpoint runs somewhere else, so nothing about it can be measured from inside (no load
time, no RSS, no VRAM). What the workbench can measure, it measures on this side of the network
and says so in `result.settings["measurement"]`:

- ttft_s: request sent -> first content chunk received (network and server queueing included).
- decode_tok_s: (completion tokens - 1) / (first -> last content chunk), completion tokens taken
  from the response's `usage`; when the server sends no usage, stream chunks are counted instead
  and the measurement note says so (a chunk may carry more than one token).
- llama.cpp's native API reports its own `timings`; those become prefill_tok_s / decode_tok_s and
  are labelled server-measured, with the client-side stream rate kept beside them.

Only the standard library is used (http.client), so a stream can be cancelled by shutting its
socket down from a watcher thread, and every failure becomes one clear line in `result.error`;
nothing here raises into a comparison. API keys live only in memory: never in repr, to_dict,
events, errors, the database or reports.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from workbench.engine.metrics import ContestantResult
from workbench.runs import remote_meter
from workbench.runs.contestants import API_LLAMACPP, API_OPENAI, Contestant, RemoteEndpoint, RunSettings
from workbench.storage import limits

OnEvent = Callable[[str, str, dict[str, Any]], None]

FINISH_REASONS = {"stop": "eos", "length": "max_tokens", "eos": "eos", "limit": "max_tokens", "word": "stop_word",
                  "content_filter": "content_filter", "tool_calls": "tool_calls", "function_call": "tool_calls"}
MAX_ERROR_BODY = 2000
MAX_RESPONSE_BYTES = 8 * 2**20  # a response (stream or body) larger than this is cut off as an error
MIN_DEADLINE_S = 120.0  # every request ends by max(MIN_DEADLINE_S, DEADLINE_S_PER_TOKEN × max_tokens)
DEADLINE_S_PER_TOKEN = 0.5  # i.e. a server may average down to 2 tokens/s on a long answer
MAX_FINISH_REASON_CHARS = 64


def request_deadline_s(max_tokens: int) -> float:
    """The longest one remote generation may take, start to end, however the server keeps it alive."""
    return max(MIN_DEADLINE_S, DEADLINE_S_PER_TOKEN * max(0, max_tokens))


class RemoteError(Exception):
    """A remote request failed; the message is one line meant for a person.

    `partial` holds what arrived before the failure (text streamed before a drop), if anything.
    """

    def __init__(self, message: str, partial: RemoteCompletion | None = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class TokenLogprobs:
    """One generated token as the server saw it: its text, id (if given) and top alternatives."""

    token: str
    logprob: float | None
    top: list[tuple[str, float]]  # (token text, logprob), best first
    id: int | None = None
    top_ids: list[int | None] = field(default_factory=list)


@dataclass
class RemoteCompletion:
    """Everything one remote generation returned, with client-side timestamps."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # from the server's usage / timings; None when not reported
    content_chunks: int = 0
    token_ids: list[int] = field(default_factory=list)  # llama.cpp's native API only
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    server_timings: dict[str, Any] | None = None
    t_request: float = 0.0
    t_headers: float | None = None
    t_first: float | None = None
    t_last: float | None = None
    t_end: float | None = None
    cancelled: bool = False
    done: bool = False  # the server said it finished (finish reason, [DONE] or stop flag)
    text_bytes: int = 0

    def add_text(self, part: str, now: float, on_text: Callable[[str], None] | None) -> None:
        """One streamed piece of text, timestamped on arrival (first and last piece bound decode time)."""
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        self.content_chunks += 1
        size = len(part.encode("utf-8", "surrogatepass"))
        if self.text_bytes + size > limits.MAX_TEXT_BYTES:  # what is kept must import back (storage.limits)
            raise RemoteError(f"the answer grew past {limits.MAX_TEXT_BYTES // 2**20} MiB of text, the most one stored "
                              "answer may hold; it was cut off there")
        self.text += part
        self.text_bytes += size
        if on_text is not None:
            on_text(part)


# ---- HTTP plumbing --------------------------------------------------------------------------------
def _url(endpoint: RemoteEndpoint, route: str) -> str:
    """The full URL of an API route; `/v1` in the base URL is honoured for OpenAI, dropped for llama.cpp. A query
    string (never a credential: RemoteEndpoint refuses those) goes after the route."""
    base, query = endpoint.display_url.rstrip("/"), urlsplit(endpoint.base_url).query
    if endpoint.api == API_OPENAI:
        url = base + route if base.endswith("/v1") else base + "/v1" + route
    else:
        url = (base[: -len("/v1")] if base.endswith("/v1") else base) + route
    return url + (f"?{query}" if query else "")


def _scrub(text: str, endpoint: RemoteEndpoint) -> str:
    """One line, shortened, with the API key blanked out should a server echo it back."""
    key = endpoint.resolved_key()
    if key:
        text = text.replace(key, "***")
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "…"


class _Connection:
    """One HTTP request whose response can be read line by line and cancelled from another thread."""

    def __init__(self, endpoint: RemoteEndpoint, url: str, cancel: threading.Event | None,
                 deadline_s: float | None = None) -> None:
        self.endpoint = endpoint
        self.deadline_s = deadline_s
        self.deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self.expired = False  # the deadline passed and the socket was shut down
        self.received = 0  # response bytes read so far
        self.url = url
        parts = urlsplit(url)
        if not parts.hostname:  # RemoteEndpoint vets its base URL, so only a URL built wrongly gets here
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        if parts.scheme == "https":
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=endpoint.connect_timeout_s, context=ssl.create_default_context())
        else:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=endpoint.connect_timeout_s)
        self.cancel = cancel
        self._finished = threading.Event()
        self.response: http.client.HTTPResponse | None = None

    def _watch(self) -> None:
        while not self._finished.wait(0.05):
            late = self.deadline is not None and time.monotonic() >= self.deadline
            if late:
                self.expired = True
            if late or (self.cancel is not None and self.cancel.is_set()):
                sock = self.conn.sock
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)  # unblocks a read waiting on the server
                    except OSError:
                        pass
                return

    def open(self) -> None:
        """Connect; after this, a silent server is a read timeout, not a connect timeout."""
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.settimeout(self.endpoint.read_timeout_s)
        if self.cancel is not None or self.deadline is not None:
            threading.Thread(target=self._watch, daemon=True).start()

    def check_limits(self, more: int = 0) -> None:
        """Count `more` response bytes; raise RemoteError past the byte limit or the deadline."""
        self.received += more
        if self.received > MAX_RESPONSE_BYTES:
            raise RemoteError(f"{self.endpoint.display_url} sent more than {MAX_RESPONSE_BYTES // 2**20} MiB; "
                              "the response was cut off there")
        if self.expired or (self.deadline is not None and time.monotonic() >= self.deadline):
            self.expired = True
            raise RemoteError(f"{self.endpoint.display_url} did not finish within {self.deadline_s:g} s "
                              "(the limit for this request); the response was cut off there")

    def read_body(self, resp: http.client.HTTPResponse) -> bytes:
        """A whole (non-streamed) body, within the byte limit and the deadline."""
        parts: list[bytes] = []
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            parts.append(chunk)
            self.check_limits(len(chunk))
        self.check_limits()
        return b"".join(parts)

    def post(self, body: dict[str, Any]) -> http.client.HTTPResponse:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        key = self.endpoint.resolved_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.conn.request("POST", self.path, body=json.dumps(body).encode("utf-8"), headers=headers)
        self.response = self.conn.getresponse()
        return self.response

    def close(self) -> None:
        self._finished.set()
        try:
            self.conn.close()
        except OSError:
            pass


def _http_error(endpoint: RemoteEndpoint, url: str, status: int, reason: str, body: bytes) -> RemoteError:
    """A plain line for an HTTP error status, with the server's own message where it gave one."""
    detail = ""
    try:
        obj = json.loads(body.decode("utf-8", "replace"))
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict):
            detail = str(err.get("message") or err.get("type") or "")
        elif isinstance(err, str):
            detail = err
        elif isinstance(obj, dict) and obj.get("detail"):
            detail = str(obj["detail"])
    except (ValueError, AttributeError):
        detail = body.decode("utf-8", "replace")[:200]
    detail = _scrub(detail, endpoint) if detail else ""
    if status in (401, 403):
        how = (f"the API key from ${endpoint.api_key_env} was refused" if endpoint.api_key_env and endpoint.resolved_key()
               else "an API key was refused" if endpoint.resolved_key()
               else "no API key was sent; give one through an environment variable (key_env=VAR)")
        return RemoteError(f"HTTP {status} from {endpoint.display_url}: the API key is missing or wrong ({how})")
    hint = ""
    if status == 404:
        hint = (" — not an OpenAI-compatible server, or a wrong model name?" if endpoint.api == API_OPENAI
                else " — not a llama.cpp server (try api=openai)?")
    tail = f": {detail}" if detail else ""
    where = url.split("?", 1)[0]  # never the query string: errors are stored, and a bare token may sit there
    return RemoteError(f"HTTP {status} {reason} from {_scrub(where, endpoint)}{tail}{hint}")


def _network_error(endpoint: RemoteEndpoint, exc: BaseException, during: str, got: int) -> RemoteError:
    """Turn a socket-level failure into one line that says what happened and when."""
    where = endpoint.display_url
    if isinstance(exc, ConnectionRefusedError):
        return RemoteError(f"could not connect to {where}: connection refused (is the server running on that port?)")
    if isinstance(exc, socket.gaierror):
        return RemoteError(f"could not resolve the host of {where}: {exc.strerror or exc}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        if during == "connect":
            return RemoteError(f"could not connect to {where} within {endpoint.connect_timeout_s:g} s (timed out)")
        if got:
            return RemoteError(f"{where} went silent for {endpoint.read_timeout_s:g} s after {got} chunk(s) (timed out)")
        return RemoteError(f"no answer from {where} within {endpoint.read_timeout_s:g} s (timed out)")
    if isinstance(exc, ssl.SSLError):
        return RemoteError(f"TLS error talking to {where}: {exc.reason or exc}")
    if isinstance(exc, http.client.IncompleteRead) or (
            isinstance(exc, (ConnectionError, http.client.HTTPException)) and (got or during == "stream")):
        return RemoteError(f"the stream from {where} dropped midway after {got} chunk(s) ({type(exc).__name__})")
    if isinstance(exc, http.client.RemoteDisconnected):
        return RemoteError(f"{where} closed the connection without answering")
    return RemoteError(f"network error talking to {where} during {during}: {_scrub(str(exc) or type(exc).__name__, endpoint)}")


def _sse_events(resp: http.client.HTTPResponse, conn: _Connection | None = None) -> Iterator[str]:
    """The `data:` payloads of a server-sent-event stream; comments and other fields are skipped.

    With `conn`, every line (pings and comments included) counts toward its byte limit and deadline.
    """
    data: list[str] = []
    while True:
        raw = resp.readline(MAX_RESPONSE_BYTES + 1)
        if conn is not None:
            conn.check_limits(len(raw))
        if not raw:
            tail = "\n".join(data)
            if tail.strip() == "[DONE]" or _is_json(tail):  # a last event cut off mid-way is not passed on
                yield tail
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "error":  # llama.cpp's server reports a failure mid-stream this way
            try:
                detail = json.loads(value)
            except ValueError:
                detail = value
            yield json.dumps({"error": detail})


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _parse_json(payload: str | bytes, endpoint: RemoteEndpoint) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except ValueError:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        raise RemoteError(f"malformed JSON from {endpoint.display_url}: {_scrub(text, endpoint)[:80]!r}") from None
    if not isinstance(obj, dict):
        raise RemoteError(f"unexpected JSON from {endpoint.display_url}: not an object")
    if "error" in obj and not obj.get("choices") and "content" not in obj:
        err = obj["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        raise RemoteError(f"{endpoint.display_url} reported an error: {_scrub(str(msg), endpoint)}")
    return obj


# ---- the two APIs ---------------------------------------------------------------------------------
def _openai_body(endpoint: RemoteEndpoint, messages: list[dict[str, str]], max_tokens: int, temperature: float,
                 top_p: float, seed: int, top_logprobs: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": endpoint.model, "messages": messages, "max_tokens": max_tokens,
                            "temperature": temperature, "top_p": top_p, "seed": seed, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if top_logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = top_logprobs
    return {**body, **endpoint.extra_body}


def _openai_logprobs(block: Any) -> list[TokenLogprobs]:
    out: list[TokenLogprobs] = []
    if not isinstance(block, dict):
        return out
    for item in block.get("content") or []:
        top = [(str(t.get("token", "")), float(t["logprob"])) for t in item.get("top_logprobs") or []
               if t.get("logprob") is not None]
        top.sort(key=lambda x: -x[1])
        lp = item.get("logprob")
        out.append(TokenLogprobs(str(item.get("token", "")), None if lp is None else float(lp), top))
    return out


class _BadField(ValueError):
    """A field of a response has the wrong type or an absurd value; the message names it."""


def _count(value: Any, name: str, current: int | None) -> int | None:
    """A token count from a response: an int >= 0 (a missing one keeps `current`)."""
    if value is None:
        return current
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadField(f"{name} must be a whole number >= 0, got {_kind(value)}")
    return value


def _text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _BadField(f"{name} must be text, got {_kind(value)}")


def _finish(value: Any, name: str = "finish_reason") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_FINISH_REASON_CHARS:
        raise _BadField(f"{name} must be a short text or null, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """What a bad value is, briefly and safely (never the whole value)."""
    if isinstance(value, str):
        return f"text of {len(value):,} characters" if len(value) > 40 else f"text {value!r}"
    if isinstance(value, (dict, list)):
        return f"{'an object' if isinstance(value, dict) else 'a list'} of {len(value)} item(s)"
    return f"{type(value).__name__} {str(value)[:40]}"


def _absorb_openai(obj: dict[str, Any], c: RemoteCompletion, now: float, on_text: Callable[[str], None] | None) -> None:
    """Fold one chat-completion chunk (or a whole non-streamed response) into `c`."""
    usage = obj.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise _BadField(f"usage must be an object, got {_kind(usage)}")
    if isinstance(usage, dict):
        c.prompt_tokens = _count(usage.get("prompt_tokens"), "usage.prompt_tokens", c.prompt_tokens)
        c.completion_tokens = _count(usage.get("completion_tokens"), "usage.completion_tokens", c.completion_tokens)
    choices = obj.get("choices") or []
    if not isinstance(choices, list):
        raise _BadField(f"choices must be a list, got {_kind(choices)}")
    for choice in choices:
        if not isinstance(choice, dict):
            raise _BadField(f"each choice must be an object, got {_kind(choice)}")
        if choice.get("index", 0) != 0:
            continue
        message = choice.get("delta") or choice.get("message") or {}
        if not isinstance(message, dict):
            raise _BadField(f"choices[0].delta must be an object, got {_kind(message)}")
        part = _text(message.get("content"), "content")
        if part is None and isinstance(choice.get("text"), str):
            part = choice["text"]  # /v1/completions-shaped servers
        if part:
            c.add_text(part, now, on_text)
        c.logprobs.extend(_openai_logprobs(choice.get("logprobs")))
        reason = _finish(choice.get("finish_reason"))
        if reason:
            c.finish_reason = reason
            c.done = True


def _llamacpp_body(endpoint: RemoteEndpoint, prompt: str, max_tokens: int, temperature: float, top_p: float,
                   seed: int, top_logprobs: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt, "n_predict": max_tokens, "temperature": temperature, "top_p": top_p,
                            "seed": seed, "stream": stream, "return_tokens": True}
    if endpoint.model:
        body["model"] = endpoint.model
    if top_logprobs:
        body["n_probs"] = top_logprobs
    return {**body, **endpoint.extra_body}


def _llamacpp_logprobs(items: Any) -> list[TokenLogprobs]:
    """Both shapes llama.cpp has used: {id, token, logprob, top_logprobs} and the older {content, probs}."""
    out: list[TokenLogprobs] = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        if "top_logprobs" in item or "logprob" in item:
            alts = item.get("top_logprobs") or []
            top = [(str(t.get("token", "")), float(t["logprob"])) for t in alts if t.get("logprob") is not None]
            ids = [t.get("id") for t in alts if t.get("logprob") is not None]
            lp = item.get("logprob")
            out.append(TokenLogprobs(str(item.get("token", "")), None if lp is None else float(lp), top,
                                     item.get("id"), ids))
        else:
            alts = item.get("probs") or []
            top = [(str(t.get("tok_str", "")), math.log(t["prob"]) if t.get("prob") else -math.inf) for t in alts]
            chosen = str(item.get("content", ""))
            lp = next((v for s, v in top if s == chosen), None)
            out.append(TokenLogprobs(chosen, lp, top))
    return out


def _absorb_llamacpp(obj: dict[str, Any], c: RemoteCompletion, now: float, on_text: Callable[[str], None] | None) -> None:
    """Fold one native /completion chunk (or the whole non-streamed answer) into `c`."""
    part = _text(obj.get("content"), "content")
    if part:
        c.add_text(part, now, on_text)
    toks = obj.get("tokens")
    if isinstance(toks, list):
        c.token_ids.extend(int(t) for t in toks if isinstance(t, int))
    c.logprobs.extend(_llamacpp_logprobs(obj.get("completion_probabilities") or obj.get("probs")))
    if obj.get("stop"):
        c.done = True
        stop_type = obj.get("stop_type")
        if not stop_type:
            stop_type = ("eos" if obj.get("stopped_eos") else "limit" if obj.get("stopped_limit")
                         else "word" if obj.get("stopped_word") else None)
        c.finish_reason = _finish(stop_type, "stop_type") or c.finish_reason
        timings = obj.get("timings")
        if timings is not None and not isinstance(timings, dict):
            raise _BadField(f"timings must be an object, got {_kind(timings)}")
        if isinstance(timings, dict):
            for key in ("prompt_ms", "prompt_per_second", "predicted_ms", "predicted_per_second"):
                v = timings.get(key)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                      or v < 0):
                    raise _BadField(f"timings.{key} must be a number >= 0, got {_kind(v)}")
            c.server_timings = timings
        c.prompt_tokens = _count(obj.get("tokens_evaluated"), "tokens_evaluated", c.prompt_tokens)
        c.completion_tokens = _count(obj.get("tokens_predicted"), "tokens_predicted",
                                     _count((timings or {}).get("predicted_n"), "timings.predicted_n",
                                            c.completion_tokens))


def apply_template(endpoint: RemoteEndpoint, messages: list[dict[str, str]], cancel: threading.Event | None = None,
                   deadline_s: float = MIN_DEADLINE_S) -> str:
    """The server's own chat formatting of `messages` (llama.cpp's POST /apply-template)."""
    url = _url(endpoint, "/apply-template")
    conn = _Connection(endpoint, url, cancel, deadline_s)
    during = "connect"
    try:
        conn.open()
        during = "response"
        resp = conn.post({"messages": messages})
        body = conn.read_body(resp)
        if resp.status == 404:
            raise RemoteError(f"{endpoint.display_url} has no /apply-template, so its chat template cannot be used "
                              "with the native API; use api=openai for chat models")
        if resp.status >= 400:
            raise _http_error(endpoint, url, resp.status, resp.reason, body)
        prompt = _parse_json(body, endpoint).get("prompt")
        if not isinstance(prompt, str):
            raise RemoteError(f"{endpoint.display_url}/apply-template answered without a prompt")
        return prompt
    except RemoteError:
        raise
    except (OSError, http.client.HTTPException) as exc:
        if cancel is not None and cancel.is_set():
            raise RemoteError("cancelled") from None
        if conn.expired:
            raise RemoteError(f"{endpoint.display_url}/apply-template did not answer within {deadline_s:g} s") from None
        raise _network_error(endpoint, exc, during, 0) from None
    finally:
        conn.close()


def request_completion(
    endpoint: RemoteEndpoint,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    top_logprobs: int = 0,
    stream: bool = True,
    cancel: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
    on_started: Callable[[], None] | None = None,
    deadline_s: float | None = None,
) -> RemoteCompletion:
    """Generate once on the endpoint; raises RemoteError (one line) on any failure.

    A cancelled request returns what arrived so far with `cancelled=True`. The whole request ends
    within `deadline_s` (default `request_deadline_s(max_tokens)`) and MAX_RESPONSE_BYTES, however
    the server keeps the connection busy (endless tokens, pings or comments); every field taken
    from the response is type-checked, and a bad one is a RemoteError naming it.
    """
    if deadline_s is None:
        deadline_s = request_deadline_s(max_tokens)
    c = RemoteCompletion()
    if endpoint.api_key_env and not endpoint.resolved_key():
        raise RemoteError(f"the API key variable ${endpoint.api_key_env} is not set")
    if endpoint.api == API_LLAMACPP:
        prompt = apply_template(endpoint, messages, cancel, min(deadline_s, MIN_DEADLINE_S))
        body = _llamacpp_body(endpoint, prompt, max_tokens, temperature, top_p, seed, top_logprobs, stream)
        url, absorb = _url(endpoint, "/completion"), _absorb_llamacpp
    else:
        body = _openai_body(endpoint, messages, max_tokens, temperature, top_p, seed, top_logprobs, stream)
        url, absorb = _url(endpoint, "/chat/completions"), _absorb_openai
    conn = _Connection(endpoint, url, cancel, deadline_s)
    during = "connect"
    c.t_request = time.perf_counter()
    try:
        conn.open()
        during = "response"
        resp = conn.post(body)
        c.t_headers = time.perf_counter()
        if resp.status >= 400:
            raise _http_error(endpoint, url, resp.status, resp.reason, resp.read(MAX_ERROR_BODY))
        if on_started is not None:
            on_started()
        ctype = (resp.getheader("Content-Type") or "").lower()
        if "text/event-stream" in ctype:
            during = "stream"
            for payload in _sse_events(resp, conn):
                now = time.perf_counter()
                if payload.strip() == "[DONE]":
                    c.done = True
                    break
                _absorb_checked(absorb, _parse_json(payload, endpoint), c, now, on_text, endpoint)
                if cancel is not None and cancel.is_set():
                    break
        else:  # a whole JSON answer (non-streamed, or a server that ignores `stream`)
            raw = conn.read_body(resp)
            now = time.perf_counter()
            _absorb_checked(absorb, _parse_json(raw, endpoint), c, now, on_text, endpoint)
            c.done = True  # a complete JSON body is a finished answer
        c.t_end = time.perf_counter()
    except RemoteError as exc:
        exc.partial = c
        raise
    except (OSError, http.client.HTTPException) as exc:
        if cancel is not None and cancel.is_set():
            c.cancelled, c.t_end = True, time.perf_counter()
            return c
        if conn.expired:  # the deadline watcher shut the socket down under a read
            raise RemoteError(f"{endpoint.display_url} did not finish within {deadline_s:g} s (the limit for this "
                              "request); the response was cut off there", c) from None
        raise RemoteError(str(_network_error(endpoint, exc, during, c.content_chunks)), c) from None
    finally:
        conn.close()
    if conn.expired and not c.done:
        raise RemoteError(f"{endpoint.display_url} did not finish within {deadline_s:g} s (the limit for this "
                          "request); the response was cut off there", c)
    if cancel is not None and cancel.is_set():
        c.cancelled = True
        return c
    if not c.done:
        raise RemoteError(f"the stream from {endpoint.display_url} dropped midway after {c.content_chunks} chunk(s) "
                          "(it ended without a finish reason)", c)
    remote_meter.record(messages, c)
    return c


def _absorb_checked(absorb: Callable[..., None], obj: dict[str, Any], c: RemoteCompletion, now: float,
                    on_text: Callable[[str], None] | None, endpoint: RemoteEndpoint) -> None:
    """`absorb`, with a wrongly typed field turned into a RemoteError naming it."""
    try:
        absorb(obj, c, now, on_text)
    except _BadField as exc:
        raise RemoteError(f"unexpected response from {endpoint.display_url}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise RemoteError(f"unexpected response from {endpoint.display_url}: a field has the wrong shape "
                          f"({type(exc).__name__})") from None


# ---- a remote contestant --------------------------------------------------------------------------
def contestant_for(endpoint: RemoteEndpoint, is_reference: bool = False) -> Contestant:
    """A comparison contestant for `endpoint` (its `path` is the URL, for display only)."""
    return Contestant(label=endpoint.label, path=endpoint.display_url, is_reference=is_reference, endpoint=endpoint)


def _measurement(endpoint: RemoteEndpoint, c: RemoteCompletion, tokens_from_usage: bool) -> dict[str, Any]:
    m: dict[str, Any] = {
        "where": "client",
        "ttft_s": ("client-side: connection opened and request sent -> first content chunk received; network and "
                   "server queueing included"),
        "decode_tok_s": ("client-side: (completion tokens from the server's usage - 1) / time from the first to the "
                         "last content chunk" if tokens_from_usage else
                         "client-side: counted from stream chunks because the server sent no token usage; "
                         "(chunks - 1) / time from the first to the last chunk — a chunk may hold more than one token"),
        "completion_tokens": "server's usage" if tokens_from_usage else "stream chunks counted (no usage from the server)",
        "not_measurable": "load time, prefill speed, RAM and VRAM happen on the server and cannot be seen from here",
    }
    if c.server_timings:
        m["where"] = "server timings + client"
        m["prefill_tok_s"] = "server-measured: llama.cpp timings.prompt_per_second (prompt tokens it evaluated, cache excluded)"
        m["decode_tok_s"] = "server-measured: llama.cpp timings.predicted_per_second"
        m["server_timings"] = c.server_timings
    return m


def run_remote(
    contestant: Contestant,
    settings: RunSettings,
    messages: list[dict[str, str]],
    on_event: OnEvent | None = None,
    cancel: threading.Event | None = None,
) -> ContestantResult:
    """Stream one generation from the contestant's endpoint; every failure becomes `result.error`."""
    endpoint = contestant.endpoint
    if endpoint is None:  # a caller's mistake, not an endpoint failure
        raise ValueError(f"{contestant.label} is a local file, not an endpoint: compare runs it")
    try:
        return _run_remote(contestant, endpoint, settings, messages, on_event, cancel)
    except Exception as exc:  # a bug or an unforeseen response shape must not take the comparison down
        result = contestant.blank_result()
        result.file = endpoint.display_url
        result.error = f"{contestant.label}: unexpected {type(exc).__name__}: {_scrub(str(exc), endpoint)}"
        result.stop_reason = "error"
        if on_event is not None:
            on_event(contestant.label, "error", {"message": result.error})
        return result


def _run_remote(
    contestant: Contestant,
    endpoint: RemoteEndpoint,
    settings: RunSettings,
    messages: list[dict[str, str]],
    on_event: OnEvent | None,
    cancel: threading.Event | None,
) -> ContestantResult:
    emit = on_event or (lambda label, status, payload: None)
    label = contestant.label
    result = contestant.blank_result()
    result.file = endpoint.display_url
    result.template = "server"
    base_settings = {"endpoint": endpoint.to_dict(), "max_tokens": settings.max_tokens,
                     "temperature": settings.temperature, "top_p": settings.top_p, "seed": settings.seed}
    result.settings = dict(base_settings)
    emit(label, "connecting", {"url": endpoint.display_url})
    try:
        c = request_completion(
            endpoint, messages, max_tokens=settings.max_tokens, temperature=settings.temperature,
            top_p=settings.top_p, seed=settings.seed, stream=True, cancel=cancel,
            on_text=lambda text: emit(label, "tokens", {"text": text}),
            on_started=lambda: emit(label, "generating", {"prompt_tokens": None, "template": "server"}),
        )
    except RemoteError as exc:
        if cancel is not None and cancel.is_set():
            result.stop_reason = "cancelled"
            emit(label, "cancelled", {})
            return result
        result.error, result.stop_reason = f"{label}: {exc}", "error"
        if exc.partial is not None and exc.partial.text:
            result.text = exc.partial.text  # what arrived before the failure stays visible
        emit(label, "error", {"message": result.error})
        return result
    except Exception as exc:  # a bug here must not take the comparison down
        result.error, result.stop_reason = f"{label}: unexpected {type(exc).__name__}: {_scrub(str(exc), endpoint)}", "error"
        emit(label, "error", {"message": result.error})
        return result
    result.text = c.text
    result.token_ids = list(c.token_ids)
    result.prompt_tokens = c.prompt_tokens
    tokens_from_usage = c.completion_tokens is not None
    n_tokens = c.completion_tokens if tokens_from_usage else c.content_chunks
    result.completion_tokens = n_tokens
    if c.t_first is not None:
        result.ttft_s = c.t_first - c.t_request
    client_rate = None
    if c.t_first is not None and c.t_last is not None and n_tokens and n_tokens > 1 and c.t_last > c.t_first:
        result.decode_steps = n_tokens - 1
        result.decode_s = c.t_last - c.t_first
        client_rate = result.decode_steps / result.decode_s
        result.decode_tok_s = client_rate
    if c.t_end is not None:
        result.total_s = c.t_end - c.t_request
    measurement = _measurement(endpoint, c, tokens_from_usage)
    t = c.server_timings or {}
    if t:
        result.prefill_tok_s = t.get("prompt_per_second")
        result.prefill_s = t["prompt_ms"] / 1000 if t.get("prompt_ms") is not None else None
        if t.get("predicted_per_second") is not None:
            result.decode_tok_s = t["predicted_per_second"]
            result.decode_s = t["predicted_ms"] / 1000 if t.get("predicted_ms") is not None else result.decode_s
            measurement["client_decode_tok_s"] = client_rate
    result.stop_reason = "cancelled" if c.cancelled else FINISH_REASONS.get(c.finish_reason or "", c.finish_reason)
    result.settings = {**base_settings, "measurement": measurement, "finish_reason": c.finish_reason}
    emit(label, "cancelled" if c.cancelled else "done", {"result": result.to_dict()})
    return result


def run_remote_batch(
    contestants: list[Contestant],
    settings: RunSettings,
    messages: list[dict[str, str]],
    on_event: OnEvent | None = None,
    cancel: threading.Event | None = None,
    concurrent: bool = False,
) -> list[ContestantResult]:
    """Run several remote contestants, in order or at once; results come back in input order.

    Concurrent runs call `on_event` from worker threads, so it must be thread-safe. Remote
    timings are the server's business: running them together does not disturb local figures.
    """
    if not concurrent or len(contestants) < 2:
        return [run_remote(c, settings, messages, on_event, cancel) for c in contestants]
    with ThreadPoolExecutor(max_workers=len(contestants), thread_name_prefix="remote") as ex:
        futures = [ex.submit(run_remote, c, settings, messages, on_event, cancel) for c in contestants]
        return [f.result() for f in futures]
