"""The message protocol between the app and a model worker process.

One JSON object per line. Requests go to the worker's stdin; events come back on the worker's
stdout (the worker moves its own C-level stdout to stderr first, so nothing llama.cpp prints can
corrupt the stream). A worker serves one model at a time and answers requests in order, except
`cancel`, which takes effect at once during a `generate` or `score`.

Requests (field `op`):
  load      model_path, n_ctx, n_threads, n_gpu_layers, use_extra_bufts (true/false/null = llama.cpp default)
  generate  id, messages ([{role, content}]) or text or prompt_tokens (ids, no template), max_tokens,
            temperature, top_p, seed, ignore_eos (benchmarks: decode exactly max_tokens)
  score     id, prompt_tokens, target_tokens, top_k, save_logprobs (path|null), reference_logprobs (path|null)
  tokenize  id, messages or text  (the prompt exactly as `generate` would feed it)
  cancel    (no fields)
  unload    (no fields)
  shutdown  (no fields)

Events (field `event`):
  ready     pid                                   once, at start-up
  loaded    load_s, gpu_layers, n_layers, rss_bytes, gpu_mem_bytes, use_extra_bufts, system_info
  started   id, prompt_tokens, template           generation began (template: "gguf", "none" or "tokens")
  tokens    id, ids, text                         a batch of new tokens (batched to ~20 events/s)
  done      id, metrics, token_ids, text          generation ended (see Metrics in metrics.py)
  scored    id, positions, summary                teacher-forced scoring finished
  tokenized id, tokens
  unloaded
  error     message, id (optional), during ("load" | "generate" | "score" | "request")

A worker that dies sends nothing more: the parent sees end-of-file and the exit status, and turns
that into an `error` for the request in flight (see pool.py).
"""

from __future__ import annotations

import json
from typing import Any

OPS = frozenset({"load", "generate", "score", "tokenize", "cancel", "unload", "shutdown"})
EVENTS = frozenset({"ready", "loaded", "started", "tokens", "done", "scored", "tokenized", "unloaded", "error"})

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
