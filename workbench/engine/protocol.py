"""The message protocol between the app and a model worker process.

One JSON object per line. Requests go to the worker's stdin; events come back on the worker's
stdout (the worker moves its own C-level stdout to stderr first, so nothing llama.cpp prints can
corrupt the stream). A worker serves one model at a time and answers requests in order, except
`cancel`, which takes effect at once.

Request ids: every request carries an `id` (the parent's WorkerProcess numbers them 1, 2, 3, ... per
worker), and every event the worker sends for a request carries that request's `id`. The parent drops
events whose id is not the request it is waiting for: a late "cancelled" or the tail of an abandoned
generate is never taken for the next request's answer.

Cancel: `{"op": "cancel", "id": N}` cancels request N (a `target` field, when present, names it
instead of `id`). A running request stops at its next check (a generate ends with `done`,
stop_reason "cancelled"; a score with `error` "cancelled"); a request still queued (say, a generate
sent while a slow load runs) does not run: it is answered at once with `error` "cancelled". A cancel
for a finished or unknown id is ignored, so it can never stop a later request. A load cannot be
interrupted (llama.cpp loads in one call); it finishes and stays loaded. A cancel without an id (older
parents) cancels the running request and every queued one.

Requests (field `op`; every one also has `id`). The parent builds each as a typed request below (`Load`,
`Generate`, `GenerateBatch` of `BatchItem`s, `Score`, `Tokenize`, `Cancel`, `Shutdown`) and `to_wire` is the one place
that writes the wire dict: a field left None is not sent, and the worker reads a missing field as its default.
The worker reads the wire dicts as they come, checked by `check_request`:
  load      model_path, n_ctx, n_threads, n_gpu_layers, use_extra_bufts (true/false/null = llama.cpp default),
            n_batch (null = min(n_ctx, 512); also the micro-batch), n_seq (null = 1: sequences that
            generate_batch may decode together; each gets n_ctx cells of the KV cache), type_k, type_v
            (KV-cache types, null = f16), flash_attn ("auto" | "on" | "off"; null = on when V is quantized,
            else llama.cpp's auto)
  generate  messages ([{role, content}]) or text or prompt_tokens (ids, no template), max_tokens,
            temperature, top_p, seed, ignore_eos (benchmarks: decode exactly max_tokens),
            timing_only (a timing repeat, runs.timing: no `tokens` events, the `done` event as always)
  generate_batch  items ([{messages | text | prompt_tokens, max_tokens}]), n_seq, temperature, top_p, seed,
            ignore_eos: every item through up to n_seq sequences decoding together
  score     prompt_tokens, target_tokens, top_k, save_logprobs (path|null), reference_logprobs (path|null)
  tokenize  messages or text  (the prompt exactly as `generate` would feed it)
  cancel    id (or target): the request to cancel; it gets no answer of its own
  unload    (no other fields; the parent sends none, so it has no typed request: a load replaces the model)
  shutdown  (no other fields; no answer: the worker exits)

Events (field `event`; `id` is the request's, null for `ready` and for an unparseable request):
  ready     pid                                   once, at start-up
  loaded    id, load_s, gpu_layers, n_layers, rss_bytes, gpu_mem_bytes, use_extra_bufts, system_info
  started   id, prompt_tokens, template           generation began (template: "gguf", "none" or "tokens")
  tokens    id, ids, text                         a batch of new tokens (batched to ~20 events/s)
  done      id, metrics, token_ids, text          generation ended (see Metrics in metrics.py)
            (generate_batch: id, cancelled, metrics: n_items, n_seq, finished, generated_tokens, wall_s, …)
  batch_started  id, n_items, n_seq               generate_batch began
  item      id, index, text, token_ids, prompt_tokens, completion_tokens, stop_reason, template, time_s
            (or id, index, error): one generate_batch item ended; "cancelled" items are partial
  scored    id, positions, pieces, elapsed_s     teacher-forced scoring finished: per target position
                                                  {token, logprob, top: [[id, logprob]...]}, with a
                                                  reference also kld, top1_agree, ref_top; pieces: id -> text
  tokenized id, tokens
  unloaded  id
  error     id, message, during ("load" | "generate" | "score" | "tokenize" | "unload" | "request")

A worker that dies sends nothing more: the parent sees end-of-file and the exit status, and turns
that into an `error` for the request in flight (see pool.py).

Bad values (`check_request`): an empty prompt, max_tokens below 1, a context, batch, thread or sequence count
below 1, a temperature or top_p that is not a finite number in range. The parent refuses such a request before
sending it (WorkerProcess.call) and the worker answers one with `error` (it stays up): an empty prompt would
read the previous request's logits, n_batch=-1 crashes llama.cpp, max_tokens=0 used to mean 256.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

OPS = frozenset({"load", "generate", "generate_batch", "score", "tokenize", "cancel", "unload", "shutdown"})
EVENTS = frozenset({"ready", "loaded", "started", "tokens", "done", "batch_started", "item", "scored", "tokenized",
                    "unloaded", "error"})

# A `tokens` event is flushed when this many seconds passed since the last one (the first token
# of a generation is always sent at once, so time-to-first-token is not delayed by batching).
TOKEN_FLUSH_S = 0.05


def encode(message: dict[str, Any]) -> bytes:
    """One message as a UTF-8 JSON line."""
    return (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line; raises ValueError on anything that is not a JSON object."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("protocol message is not a JSON object")
    return obj


@dataclass(frozen=True)
class Request:
    """A request to a worker, typed; `to_wire` writes it as the JSON object the worker reads."""

    op: ClassVar[str]

    def to_wire(self, request_id: int | None = None) -> dict[str, Any]:
        """The wire dict: `op`, `id` (the parent's WorkerProcess numbers requests; None: sent without one, as
        tests of the worker do) and every field that is not None."""
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        wire: dict[str, Any] = {"op": self.op} if request_id is None else {"op": self.op, "id": request_id}
        return {**wire, **{k: v for k, v in body.items() if v is not None}}


@dataclass(frozen=True)
class Load(Request):
    """Load a model: everything that decides how it is loaded (engine.pool keeps it as a worker's LoadSettings;
    a change means a reload)."""

    op: ClassVar[str] = "load"
    model_path: str
    n_ctx: int = 2048
    n_threads: int = 1
    n_gpu_layers: int = 0
    use_extra_bufts: bool | None = None  # None: llama.cpp's default
    n_batch: int | None = None  # prompt micro-batch size; None: the worker's default (min(n_ctx, 512))
    n_seq: int | None = None  # sequences generate_batch may decode together (None: 1); each gets n_ctx of KV cache
    # KV-cache types by GGML name ("f16", "q8_0", "q4_0"); None: llama.cpp's default (f16). A quantized V cache
    # needs flash attention: the worker turns it on unless `flash_attn` says otherwise.
    type_k: str | None = None
    type_v: str | None = None
    flash_attn: str | None = None  # "auto" | "on" | "off"; None: "on" when V is quantized, else llama.cpp's auto


@dataclass(frozen=True)
class Generate(Request):
    """Generate from chat `messages` (the GGUF's template), raw `text`, or `prompt_tokens` (no template)."""

    op: ClassVar[str] = "generate"
    messages: list[dict[str, str]] | None = None
    text: str | None = None
    prompt_tokens: list[int] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    ignore_eos: bool | None = None  # benchmarks: decode exactly max_tokens
    timing_only: bool | None = None  # a timing repeat (runs.timing): no `tokens` events


@dataclass(frozen=True)
class BatchItem:
    """One prompt of a generate_batch: chat messages (or raw tokens) and how many tokens it may generate."""

    messages: list[dict[str, str]] | None = None
    max_tokens: int = 256
    prompt_tokens: list[int] | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_tokens": int(self.max_tokens)}
        if self.prompt_tokens is not None:
            out["prompt_tokens"] = list(self.prompt_tokens)
        else:
            out["messages"] = self.messages or []
        return out


@dataclass(frozen=True)
class GenerateBatch(Request):
    """Every item through up to `n_seq` sequences decoding together, sampled alike."""

    op: ClassVar[str] = "generate_batch"
    items: tuple[BatchItem, ...] = ()
    n_seq: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    ignore_eos: bool | None = None

    def to_wire(self, request_id: int | None = None) -> dict[str, Any]:
        return {**super().to_wire(request_id), "items": [item.to_wire() for item in self.items]}


@dataclass(frozen=True)
class Score(Request):
    """Teacher-force `target_tokens` after `prompt_tokens`; save or compare against a reference's log-probs."""

    op: ClassVar[str] = "score"
    prompt_tokens: list[int]
    target_tokens: list[int]
    top_k: int | None = None
    save_logprobs: str | None = None  # a .npy path: the reference writes its [positions, vocab] log-probs there
    reference_logprobs: str | None = None  # a .npy path the reference wrote: KLD and top-1 agreement against it


@dataclass(frozen=True)
class Tokenize(Request):
    """The prompt exactly as `generate` would feed it: chat `messages`, else `text`."""

    op: ClassVar[str] = "tokenize"
    messages: list[dict[str, str]] | None = None
    text: str | None = None


@dataclass(frozen=True)
class Cancel(Request):
    """Cancel request `target` (sent as its `id`); it gets no answer of its own."""

    op: ClassVar[str] = "cancel"
    target: int

    def to_wire(self, request_id: int | None = None) -> dict[str, Any]:
        return {"op": self.op, "id": self.target}


@dataclass(frozen=True)
class Shutdown(Request):
    """The worker exits; no answer."""

    op: ClassVar[str] = "shutdown"


class BadRequest(ValueError):
    """A request whose values the worker must not run (the message names the field)."""


def _whole(req: Mapping[str, Any], key: str, minimum: int) -> None:
    value = req.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise BadRequest(f"{key} must be a whole number of at least {minimum}, got {value!r}")


def _has_prompt(req: Mapping[str, Any]) -> bool:
    if req.get("prompt_tokens"):
        return True
    messages = req.get("messages")
    if messages:
        return isinstance(messages, list) and any(isinstance(m, Mapping) and m.get("content") for m in messages)
    return bool(req.get("text"))


def check_item(item: Mapping[str, Any]) -> None:
    """One prompt of a generate (or one item of a generate_batch): not empty, max_tokens at least 1."""
    _whole(item, "max_tokens", 1)
    if not _has_prompt(item):
        raise BadRequest("the prompt is empty: there is nothing to generate from")


def check_request(req: Mapping[str, Any]) -> None:
    """Raise BadRequest for values llama.cpp would crash on or misread; what it cannot see (the prompt's token
    count against the context) the worker checks once it has tokenized."""
    op = req.get("op")
    if op == "load":
        for key in ("n_ctx", "n_threads", "n_batch", "n_seq"):
            _whole(req, key, 1)
        _whole(req, "n_gpu_layers", -1)
    if op in ("generate", "generate_batch"):
        temperature, top_p = req.get("temperature"), req.get("top_p")
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or not math.isfinite(temperature) or temperature < 0):
            raise BadRequest(f"temperature must be a finite number of 0 or more, got {temperature!r}")
        if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                                  or not math.isfinite(top_p) or not 0 < top_p <= 1):
            raise BadRequest(f"top_p must be a number above 0 and at most 1, got {top_p!r}")
    if op == "generate":
        check_item(req)
    elif op == "generate_batch":
        _whole(req, "n_seq", 1)
        items = req.get("items")
        if not isinstance(items, list):
            raise BadRequest("items must be a list of prompts")
        for item in items:
            if not isinstance(item, Mapping):
                raise BadRequest("each item must be an object")
            _whole(item, "max_tokens", 1)  # an empty item is that item's error, not the batch's (the worker's)
