"""Generation in the worker: one prompt (`generate`) or many through several sequences at once (`generate_batch`).

Why a module of its own: this is where the speeds the product reports come from, so the loop stays in
llama.cpp's native code as much as it can (native sampler chain, greedy argmax over the logits row in place,
reused ctypes buffers, `tokens` events batched) and says how undisturbed its timed windows were. Both ops run
on a `LoadedModel` (llama_model.py) and share its prompt rules; the request loop (worker.py) calls them.
"""

from __future__ import annotations

import codecs
import os
import time
from collections import deque
from typing import Any

# llama_cpp must be imported before numpy: on one CUDA machine (Python 3.12, numpy 2.5) loading
# numpy's libraries first made llama.cpp segfault while initialising the tokenizer.
import llama_cpp  # noqa: I001
import numpy as np

from workbench.core.disturbance import CpuSnapshot, classify
from workbench.engine import process_memory, protocol
from workbench.engine.llama_model import LoadedModel

# Test-only: seconds each generate sleeps before it starts, ignoring cancel (see generate).
INJECT_STUCK_ENV = "WORKBENCH_INJECT_STUCK_S"


def generate(model: LoadedModel, req: dict[str, Any]) -> None:
    """One prompt through the model, streaming `tokens` events and ending with `done` and its metrics (protocol.py)."""
    model.require_model()
    lc = llama_cpp
    rid = req.get("id")
    t_request = time.perf_counter()
    # Test-only fault injection: be stuck where a cancel is never read (like a chat template that loops for
    # minutes), so Stop has to kill the worker (pool.CANCEL_GRACE_S). Never set outside tests.
    stuck_s = float(os.environ.get(INJECT_STUCK_ENV) or 0)
    if stuck_s > 0:
        time.sleep(stuck_s)
    tokens, template = model.prompt_tokens(req)
    n_ctx = model.settings["n_ctx"]
    if not tokens:  # decoding nothing would leave the previous request's logits to sample from
        raise RuntimeError("the prompt is empty: there is nothing to generate from")
    if len(tokens) >= n_ctx:
        raise RuntimeError(f"the prompt has {len(tokens)} tokens but the context holds {n_ctx}; raise the context size")
    max_tokens = 256 if req.get("max_tokens") is None else int(req["max_tokens"])  # >= 1: check_request
    temperature = float(req.get("temperature") or 0.0)
    top_p = 1.0 if req.get("top_p") is None else float(req["top_p"])
    seed = 0 if req.get("seed") is None else int(req["seed"])
    # ignore_eos: benchmarks, always decode max_tokens; timing_only: a timing repeat (runs.timing), no tokens events
    ignore_eos, timing_only = bool(req.get("ignore_eos")), bool(req.get("timing_only"))
    greedy = temperature <= 0
    n_vocab = model.n_vocab
    model.out.send(event="started", id=rid, prompt_tokens=len(tokens), template=template)

    model.ctx.kv_cache_clear()
    sampler = model.make_sampler(temperature, top_p, seed)
    ctx = model.ctx.ctx
    vocab = model.vocab
    buf = model.piece_buf
    one = model.one_token
    one_batch = lc.llama_batch_get_one(one, 1)  # points at `one`; reused for every decode step
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out_ids: list[int] = []
    text_parts: list[str] = []
    pending_ids: list[int] = []
    pending_text: list[str] = []
    stop_reason = "max_tokens"
    app_pid = os.getppid()
    cpu_prefill0 = CpuSnapshot.take(app_pid)
    cpu_decode0 = cpu_end = None
    t_prefill0 = time.perf_counter()
    try:
        model.inject_extra_bufts_crash()
        model.decode_chunked(tokens)
        lc.llama_synchronize(ctx)
        t_prefill1 = time.perf_counter()
        cpu_prefill1 = CpuSnapshot.take(app_pid)
        n_past = len(tokens)
        n_sampled = 0
        t_first = t_last = None
        last_flush = 0.0
        while True:
            if model.cancel.is_set():
                stop_reason = "cancelled"
                break
            if greedy:
                # argmax over the logits row in place: the same token the greedy sampler picks,
                # without building a 49k-entry candidate array every step
                tok = int(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).argmax())
            else:
                tok = lc.llama_sampler_sample(sampler, ctx, -1)
            now = time.perf_counter()
            n_sampled += 1
            if t_first is None:
                t_first = now
                cpu_decode0 = CpuSnapshot.take(app_pid)
            t_last = now
            if not ignore_eos and lc.llama_vocab_is_eog(vocab, tok):
                stop_reason = "eos"
                break
            n = lc.llama_token_to_piece(vocab, tok, buf, 256, 0, False)
            piece = utf8.decode(buf.raw[: max(n, 0)])
            out_ids.append(tok)
            text_parts.append(piece)
            pending_ids.append(tok)
            pending_text.append(piece)
            if not timing_only and (len(out_ids) == 1 or now - last_flush >= protocol.TOKEN_FLUSH_S):
                model.out.send(event="tokens", id=rid, ids=pending_ids, text="".join(pending_text))
                pending_ids, pending_text = [], []
                last_flush = now
            if len(out_ids) >= max_tokens:
                stop_reason = "max_tokens"
                break
            if n_past + 1 >= n_ctx:
                stop_reason = "context_full"
                break
            one[0] = tok
            rc = lc.llama_decode(ctx, one_batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            n_past += 1
    finally:
        lc.llama_sampler_free(sampler)
        cpu_end = CpuSnapshot.take(app_pid)
    tail = utf8.decode(b"", final=True)
    if tail:
        text_parts.append(tail)
        pending_text.append(tail)
    if (pending_ids or pending_text) and not timing_only:
        model.out.send(event="tokens", id=rid, ids=pending_ids, text="".join(pending_text))
    t_end = time.perf_counter()
    prefill_s = t_prefill1 - t_prefill0
    # Decode speed counts sampled tokens after the first: each cost one llama_decode of its
    # predecessor plus its own sampling. Prefill is excluded by construction.
    decode_s = (t_last - t_first) if (t_first is not None and t_last is not None) else 0.0
    decode_steps = max(0, n_sampled - 1)
    metrics = {
        "ttft_s": (t_first - t_request) if t_first is not None else None,
        "prompt_tokens": len(tokens),
        "prefill_s": prefill_s,
        "prefill_tok_s": len(tokens) / prefill_s if prefill_s > 0 else None,
        "completion_tokens": len(out_ids),
        "decode_steps": decode_steps,
        "decode_s": decode_s,
        "decode_tok_s": decode_steps / decode_s if decode_steps and decode_s > 0 else None,
        "total_s": t_end - t_request,
        "stop_reason": stop_reason,
        "template": template,
        "peak_rss_bytes": process_memory.peak_rss_bytes(),
        "gpu_mem_bytes": process_memory.gpu_mem_bytes(model.settings.get("gpu_layers")),
        "measurement": _measurement(model, cpu_prefill0, cpu_prefill1, cpu_decode0, cpu_end),
        "settings": {**model.settings, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed},
    }
    model.out.send(event="done", id=rid, metrics=metrics, token_ids=out_ids, text="".join(text_parts), prompt_token_ids=tokens)


def _measurement(model: LoadedModel, prefill0: CpuSnapshot, prefill1: CpuSnapshot, decode0: CpuSnapshot | None,
                 end: CpuSnapshot | None) -> dict[str, Any]:
    """How undisturbed the timed windows were (see disturbance.py): what the rest of the machine used."""
    n_threads = int(model.settings.get("n_threads") or 1)
    out: dict[str, Any] = {"prefill": classify("prefill", prefill0, prefill1, n_threads).to_dict()}
    if decode0 is not None and end is not None:
        out["decode"] = classify("decode", decode0, end, n_threads).to_dict()
    return out


def generate_batch(model: LoadedModel, req: dict[str, Any]) -> None:
    """Generate every item of `req["items"]` with up to n_seq sequences decoding together.

    Each item is a prompt (messages, text or prompt_tokens, and max_tokens); the sampling settings are the
    request's and each item gets its own sampler, seeded alike, so an item's draw does not depend on its
    neighbours. Weights are read once per step for every active sequence (llama.cpp's multi-sequence
    batching, as llama-server's slots and llama-batched-bench do); a finished sequence frees its slot and
    its KV cells for the next item. Each item's stop rules are `generate`'s, in the same order (eos,
    max_tokens, the sequence's context full). An `item` event reports each finished item at once; on a
    cancel the active items are reported "cancelled" with their text so far and the rest not at all;
    `done` closes the request with the batch's throughput. Timings per item are not single-stream
    figures: the step time is shared by every active sequence.
    """
    model.require_model()
    lc = llama_cpp
    rid = req.get("id")
    items = list(req.get("items") or [])
    n_seq = max(1, min(int(req.get("n_seq") or 1), int(model.settings.get("n_seq") or 1)))
    temperature = float(req.get("temperature") or 0.0)
    top_p = 1.0 if req.get("top_p") is None else float(req["top_p"])
    seed = 0 if req.get("seed") is None else int(req["seed"])
    ignore_eos = bool(req.get("ignore_eos"))
    n_ctx_seq = int(model.settings["n_ctx"])
    n_batch = int(model.settings["n_batch"])
    ctx, vocab, n_vocab, buf = model.ctx.ctx, model.vocab, model.n_vocab, model.piece_buf
    mem = lc.llama_get_memory(ctx)
    lc.llama_memory_clear(mem, True)
    batch = lc.llama_batch_init(max(n_batch, n_seq), 0, 1)
    slots: list[_Slot | None] = [None] * n_seq
    pending = deque(enumerate(items))
    t0 = time.perf_counter()
    prefill_s = step_s = 0.0
    steps = finished = generated = 0
    model.out.send(event="batch_started", id=rid, n_items=len(items), n_seq=n_seq)

    def put(tokens: list[int], first_pos: int, seq: int, logits_last: bool) -> None:
        batch.n_tokens = 0
        for k, tok in enumerate(tokens):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, first_pos + k, 1
            batch.seq_id[k][0] = seq
            batch.logits[k] = logits_last and k == len(tokens) - 1
        batch.n_tokens = len(tokens)

    def sample(slot: _Slot, idx: int) -> int:
        if slot.sampler is None:  # greedy: the argmax, as `generate` takes it
            return int(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, idx), shape=(n_vocab,)).argmax())
        return int(lc.llama_sampler_sample(slot.sampler, ctx, idx))

    def report(slot: _Slot, stop_reason: str) -> None:
        nonlocal finished
        tail = slot.utf8.decode(b"", final=True)
        if tail:
            slot.text.append(tail)
        model.out.send(event="item", id=rid, index=slot.index, text="".join(slot.text), token_ids=slot.ids,
                       prompt_tokens=slot.prompt_tokens, completion_tokens=len(slot.ids), stop_reason=stop_reason,
                       template=slot.template, time_s=time.perf_counter() - slot.started)
        finished += stop_reason != "cancelled"

    def release(s: int) -> None:
        slot = slots[s]
        if slot is not None and slot.sampler is not None:
            lc.llama_sampler_free(slot.sampler)
        slots[s] = None
        lc.llama_memory_seq_rm(mem, s, -1, -1)

    def accept(s: int, tok: int) -> None:
        """`generate`'s per-token rules for the token just sampled in slot s: stop, or queue it for decoding."""
        nonlocal generated
        slot = slots[s]
        assert slot is not None
        if not ignore_eos and lc.llama_vocab_is_eog(vocab, tok):
            report(slot, "eos")
            release(s)
            return
        n = lc.llama_token_to_piece(vocab, tok, buf, 256, 0, False)
        slot.text.append(slot.utf8.decode(buf.raw[: max(n, 0)]))
        slot.ids.append(tok)
        generated += 1
        if len(slot.ids) >= slot.max_tokens:
            report(slot, "max_tokens")
            release(s)
        elif slot.pos + 1 >= n_ctx_seq:
            report(slot, "context_full")
            release(s)
        else:
            slot.next_token = tok

    def admit(s: int, index: int, item: dict[str, Any]) -> None:
        nonlocal prefill_s
        started = time.perf_counter()
        try:
            protocol.check_item(item)  # an empty prompt would decode nothing and sample stale logits
            tokens, template = model.prompt_tokens(item)
            if not tokens:
                raise protocol.BadRequest("the prompt is empty: there is nothing to generate from")
        except Exception as exc:
            model.out.send(event="item", id=rid, index=index, error=f"could not build the prompt: {exc}")
            return
        if len(tokens) >= n_ctx_seq:
            model.out.send(event="item", id=rid, index=index, prompt_tokens=len(tokens),
                           error=f"the prompt has {len(tokens)} tokens but each sequence's context holds "
                                 f"{n_ctx_seq}; raise the context size")
            return
        lc.llama_memory_seq_rm(mem, s, -1, -1)
        t = time.perf_counter()
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start : start + n_batch]
            put(chunk, start, s, start + n_batch >= len(tokens))
            rc = lc.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc} during the prefill of item {index}")
        prefill_s += time.perf_counter() - t
        sampler = None if temperature <= 0 else model.make_sampler(temperature, top_p, seed)
        slots[s] = _Slot(index, int(item.get("max_tokens") or 256), len(tokens), template, sampler,
                         codecs.getincrementaldecoder("utf-8")(errors="replace"), started, pos=len(tokens))
        accept(s, sample(slots[s], batch.n_tokens - 1))  # type: ignore[arg-type]

    try:
        model.inject_extra_bufts_crash()
        while not model.cancel.is_set():
            for s in range(n_seq):
                while slots[s] is None and pending and not model.cancel.is_set():
                    admit(s, *pending.popleft())
            active = [s for s in range(n_seq) if slots[s] is not None]
            if not active:
                if not pending:
                    break
                continue
            batch.n_tokens = 0
            for k, s in enumerate(active):
                slot = slots[s]
                assert slot is not None
                batch.token[k], batch.pos[k], batch.n_seq_id[k] = slot.next_token, slot.pos, 1
                batch.seq_id[k][0] = s
                batch.logits[k] = True
            batch.n_tokens = len(active)
            t = time.perf_counter()
            rc = lc.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            step_s += time.perf_counter() - t
            steps += 1
            greedy_rows = None
            if temperature <= 0:  # every row's argmax in one pass over the step's logits (one row per sequence)
                rows = np.ctypeslib.as_array(lc.llama_get_logits(ctx), shape=(len(active), n_vocab))
                greedy_rows = rows.argmax(axis=1)
            for k, s in enumerate(active):
                slot = slots[s]
                assert slot is not None
                slot.pos += 1
                accept(s, int(greedy_rows[k]) if greedy_rows is not None else sample(slot, k))
        cancelled = model.cancel.is_set()
        for s in range(n_seq):
            if slots[s] is not None:
                report(slots[s], "cancelled")  # type: ignore[arg-type]
    finally:
        for s in range(n_seq):
            if slots[s] is not None:
                release(s)
        lc.llama_batch_free(batch)
    wall_s = time.perf_counter() - t0
    model.out.send(event="done", id=rid, cancelled=cancelled, metrics={
        "n_items": len(items), "n_seq": n_seq, "finished": finished, "generated_tokens": generated,
        "wall_s": wall_s, "prefill_s": prefill_s, "step_s": step_s, "steps": steps,
        "generated_tok_s": generated / wall_s if wall_s > 0 else None,
        "peak_rss_bytes": process_memory.peak_rss_bytes(),
        "gpu_mem_bytes": process_memory.gpu_mem_bytes(model.settings.get("gpu_layers")),
        "settings": {**model.settings, "temperature": temperature, "top_p": top_p, "seed": seed},
    })


class _Slot:
    """One sequence of a `generate_batch`: the item it is generating and how far it got."""

    def __init__(self, index: int, max_tokens: int, prompt_tokens: int, template: str, sampler: Any,
                 utf8: codecs.IncrementalDecoder, started: float, pos: int) -> None:
        self.index, self.max_tokens, self.prompt_tokens, self.template = index, max_tokens, prompt_tokens, template
        self.sampler, self.utf8, self.started, self.pos = sampler, utf8, started, pos
        self.ids: list[int] = []
        self.text: list[str] = []
        self.next_token = -1  # sampled, not yet decoded


