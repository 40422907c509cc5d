"""Generation in the worker: one prompt (`generate`) or many through several sequences at once (`generate_batch`).

Why a module of its own: this is where the speeds the product reports come from, so the loop stays in
llama.cpp's native code as much as it can (native sampler chain, greedy argmax over the logits row in place,
reused ctypes buffers, `tokens` events batched) and says how undisturbed its timed windows were. Both ops run
on a `LoadedModel` (llama_model.py) and share its prompt rules; the request loop (worker.py) calls them.
"""

from __future__ import annotations

import codecs
import ctypes
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
            piece = utf8.decode(model.piece(tok))
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
    neighbours. Continuous batching, as llama-server's slots do: each step is one `llama_decode` holding the
    next token of every generating sequence plus prompt chunks of the newly admitted ones, up to n_batch
    tokens in all, so the first prompts enter together and a newcomer's prompt rides beside the others'
    tokens instead of stalling them for its whole length. Logits are kept only for each generating token and
    each prompt's last token; every row's choice (argmax when greedy), and every stop check, is one numpy pass
    over the step (no per-token Python objects; text is built once, when an item ends). Each item's stop rules
    are `generate`'s, in the same order (eos, max_tokens, the sequence's context full). An `item` event
    reports each finished item at once; on a cancel the admitted items are reported "cancelled" with their
    text so far and the rest not at all; `done` closes the request with the batch's throughput. Timings per
    item are not single-stream figures: the step time is shared by every active sequence.
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
    n_batch = max(int(model.settings["n_batch"]), n_seq)  # load refuses n_seq above the micro-batch
    ctx, n_vocab = model.ctx.ctx, model.n_vocab
    eog = _eog_mask(model)
    mem = lc.llama_get_memory(ctx)
    lc.llama_memory_clear(mem, True)
    batch = _Batch(n_batch)
    slots: list[_Slot | None] = [None] * n_seq
    # per-sequence state, one entry per slot, read and written a whole step at a time
    pos = np.zeros(n_seq, np.int64)         # tokens in the sequence's KV cells = the next position to decode
    next_tok = np.zeros(n_seq, np.int32)    # sampled, not yet decoded
    n_out = np.zeros(n_seq, np.int64)       # tokens generated so far
    max_out = np.zeros(n_seq, np.int64)
    generating = np.zeros(n_seq, bool)      # prompt fully decoded
    longest = max([int(it.get("max_tokens") or 256) for it in items] or [1])
    out_ids = np.zeros((n_seq, max(1, min(longest, n_ctx_seq))), np.int32)
    pending = deque(enumerate(items))
    t0 = time.perf_counter()
    prefill_s = step_s = 0.0
    steps = prompt_steps = finished = generated = 0
    cancelled = False
    model.out.send(event="batch_started", id=rid, n_items=len(items), n_seq=n_seq)

    def report(s: int, stop_reason: str) -> None:
        nonlocal finished
        slot = slots[s]
        assert slot is not None
        ids = [int(t) for t in out_ids[s, : n_out[s]]]
        model.out.send(event="item", id=rid, index=slot.index, text=_detokenize(model, ids), token_ids=ids,
                       prompt_tokens=len(slot.prompt), completion_tokens=len(ids), stop_reason=stop_reason,
                       template=slot.template, time_s=time.perf_counter() - slot.started)
        finished += stop_reason != "cancelled"

    def release(s: int) -> None:
        slot = slots[s]
        if slot is not None and slot.sampler is not None:
            lc.llama_sampler_free(slot.sampler)
        slots[s] = None
        generating[s] = False
        lc.llama_memory_seq_rm(mem, s, -1, -1)

    def admit(s: int) -> None:
        """Give slot s the next pending item whose prompt can be built and fits; report the others' errors."""
        while pending:
            index, item = pending.popleft()
            started = time.perf_counter()
            try:
                protocol.check_item(item)  # an empty prompt would decode nothing and sample stale logits
                tokens, template = model.prompt_tokens(item)
                if not tokens:
                    raise protocol.BadRequest("the prompt is empty: there is nothing to generate from")
            except Exception as exc:
                model.out.send(event="item", id=rid, index=index, error=f"could not build the prompt: {exc}")
                continue
            if len(tokens) >= n_ctx_seq:
                model.out.send(event="item", id=rid, index=index, prompt_tokens=len(tokens),
                               error=f"the prompt has {len(tokens)} tokens but each sequence's context holds "
                                     f"{n_ctx_seq}; raise the context size")
                continue
            lc.llama_memory_seq_rm(mem, s, -1, -1)
            sampler = None if temperature <= 0 else model.make_sampler(temperature, top_p, seed)
            slots[s] = _Slot(index, np.asarray(tokens, np.int32), template, sampler, started)
            pos[s], n_out[s], max_out[s], generating[s] = 0, 0, int(item.get("max_tokens") or 256), False
            return

    try:
        model.inject_extra_bufts_crash()
        while True:
            if model.cancel.is_set():
                break
            for s in range(n_seq):
                if slots[s] is None and pending:
                    admit(s)
            # the step: every generating sequence's next token, then prompt chunks within the token budget
            gen = np.flatnonzero(generating)
            k = len(gen)
            batch.token[:k], batch.pos[:k], batch.seq[:k], batch.logits[:k] = next_tok[gen], pos[gen], gen, 1
            rows_seq: list[int] = [int(x) for x in gen]
            rows_idx, fed = list(range(k)), []
            for s, slot in enumerate(slots):
                if slot is None or generating[s] or k >= n_batch:
                    continue
                take = min(n_batch - k, len(slot.prompt) - slot.fed)
                end = k + take
                batch.token[k:end] = slot.prompt[slot.fed : slot.fed + take]
                batch.pos[k:end] = np.arange(slot.fed, slot.fed + take)
                batch.seq[k:end], batch.logits[k:end] = s, 0
                fed.append((s, take))
                if slot.fed + take == len(slot.prompt):  # the prompt's last token: its logits give the first token
                    batch.logits[end - 1] = 1
                    rows_seq.append(s)
                    rows_idx.append(end - 1)
                k = end
            if k == 0:
                break  # nothing admitted and nothing pending
            batch.n_tokens = k
            t = time.perf_counter()
            rc = lc.llama_decode(ctx, batch.struct)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
            dt = time.perf_counter() - t
            if fed:
                prefill_s += dt
                prompt_steps += 1
            else:
                step_s += dt
            steps += 1
            pos[gen] += 1
            for s, take in fed:
                slot = slots[s]
                assert slot is not None
                slot.fed += take
                pos[s] = slot.fed
            if not rows_seq:
                continue
            seqs = np.asarray(rows_seq, np.int64)
            if temperature <= 0:  # every row's argmax in one pass over the step's logits
                rows = np.ctypeslib.as_array(lc.llama_get_logits(ctx), shape=(len(rows_seq), n_vocab))
                toks = rows.argmax(axis=1).astype(np.int32)
            else:
                toks = np.array([lc.llama_sampler_sample(slots[s].sampler, ctx, i)  # type: ignore[union-attr]
                                 for s, i in zip(rows_seq, rows_idx, strict=True)], np.int32)
            # `generate`'s per-token rules for every row at once: eos, then max_tokens, then context full
            eos = np.zeros(len(toks), bool) if ignore_eos else eog[toks]
            keep = seqs[~eos]
            out_ids[keep, n_out[keep]] = toks[~eos]
            n_out[keep] += 1
            generated += len(keep)
            next_tok[seqs] = toks
            generating[seqs] = True
            full = n_out[seqs] >= max_out[seqs]
            ctx_full = pos[seqs] + 1 >= n_ctx_seq
            for j in np.flatnonzero(eos | full | ctx_full):
                s = int(seqs[j])
                report(s, "eos" if eos[j] else "max_tokens" if full[j] else "context_full")
                release(s)
        cancelled = model.cancel.is_set()
        for s in range(n_seq):
            if slots[s] is not None:
                report(s, "cancelled")
    finally:
        for s in range(n_seq):
            if slots[s] is not None:
                release(s)
    wall_s = time.perf_counter() - t0
    model.out.send(event="done", id=rid, cancelled=cancelled, metrics={
        "n_items": len(items), "n_seq": n_seq, "finished": finished, "generated_tokens": generated,
        "wall_s": wall_s, "prefill_s": prefill_s, "step_s": step_s, "steps": steps,
        "prompt_steps": prompt_steps, "generated_tok_s": generated / wall_s if wall_s > 0 else None,
        "peak_rss_bytes": process_memory.peak_rss_bytes(),
        "gpu_mem_bytes": process_memory.gpu_mem_bytes(model.settings.get("gpu_layers")),
        "settings": {**model.settings, "temperature": temperature, "top_p": top_p, "seed": seed},
    })


def _detokenize(model: LoadedModel, ids: list[int]) -> str:
    """An item's text from its token ids, once, when it ends: the same text `generate` streams piece by piece."""
    return b"".join(map(model.piece, ids)).decode("utf-8", errors="replace")


_EOG: dict[str, Any] = {}


def _eog_mask(model: LoadedModel) -> Any:
    """Which token ids end a generation (llama_vocab_is_eog), as one boolean array: the stop check of a whole
    step is one lookup. Cached per file (one pass over the vocabulary, tens of milliseconds)."""
    key = f"{model.settings['model_path']}:{model.n_vocab}"
    if key not in _EOG:
        vocab = model.vocab
        _EOG[key] = np.fromiter((bool(llama_cpp.llama_vocab_is_eog(vocab, t)) for t in range(model.n_vocab)), bool,
                                model.n_vocab)
    return _EOG[key]


class _Batch:
    """A llama_batch whose arrays are numpy arrays: a step is written with a few slice assignments, not a Python
    loop over its tokens. One sequence id per token (each token belongs to exactly one sequence)."""

    def __init__(self, capacity: int) -> None:
        lc = llama_cpp
        self.token = np.zeros(capacity, np.int32)
        self.pos = np.zeros(capacity, np.int32)
        self.seq = np.zeros(capacity, np.int32)
        self.logits = np.zeros(capacity, np.int8)
        self.n_seq_id = np.ones(capacity, np.int32)
        base, size = self.seq.ctypes.data, self.seq.itemsize
        self.seq_ptrs = (ctypes.POINTER(lc.llama_seq_id) * capacity)(
            *[ctypes.cast(base + i * size, ctypes.POINTER(lc.llama_seq_id)) for i in range(capacity)])
        self.struct = lc.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(ctypes.POINTER(lc.llama_token)),
            embd=ctypes.POINTER(ctypes.c_float)(),  # NULL: tokens, not embeddings
            pos=self.pos.ctypes.data_as(ctypes.POINTER(lc.llama_pos)),
            n_seq_id=self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            seq_id=ctypes.cast(self.seq_ptrs, ctypes.POINTER(ctypes.POINTER(lc.llama_seq_id))),
            logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)))

    @property
    def n_tokens(self) -> int:
        return int(self.struct.n_tokens)

    @n_tokens.setter
    def n_tokens(self, n: int) -> None:
        self.struct.n_tokens = n


class _Slot:
    """One sequence of a `generate_batch`: the item it is generating and how much of its prompt is decoded."""

    def __init__(self, index: int, prompt: Any, template: str, sampler: Any, started: float) -> None:
        self.index, self.prompt, self.template, self.sampler, self.started = index, prompt, template, sampler, started
        self.fed = 0  # prompt tokens decoded so far
