"""A model worker: one process, one loaded GGUF, driven by the JSON-lines protocol in protocol.py.

This is the only module that runs llama.cpp inference. It lives in its own process because
llama.cpp can segfault, abort or be OOM-killed, and none of that may take the app down.

The generation loop stays in llama.cpp's native code as much as possible (native sampler chain,
no logits copied to Python per token, reused ctypes buffers) so that the speeds it reports are
the engine's, not Python's.

Run as `python -m workbench.engine.worker`.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import queue
import re
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

# llama_cpp must be imported before numpy: on one CUDA machine (Python 3.12, numpy 2.5) loading
# numpy's libraries first made llama.cpp segfault while initialising the tokenizer.
import llama_cpp  # noqa: I001
import numpy as np

from workbench.core.disturbance import CpuSnapshot, classify
from workbench.engine import protocol, scoring

# ggml_log_level's WARN and ERROR (ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5; measured on this build:
# a load's metadata dump arrives at 2, "error loading model" at 4). llama-cpp-python's _logger.py comment is stale.
LOG_WARN_ERROR = (3, 4)
LOG_INFO = 2  # where llama.cpp logs its buffer sizes (DEBUG, 1, floods with per-tensor lines: never kept)
# KV-cache types a load may ask for, by the names llama.cpp's tools use (--cache-type-k/-v), and their GGML enums.
KV_CACHE_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
FLASH_ATTN_TYPES = {"auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}
# llama.cpp's INFO log lines that size its buffers at load, e.g. "load_tensors:   CPU_Mapped model buffer size =
# 98.87 MiB", "llama_kv_cache:        CPU KV buffer size =   180.00 MiB", "sched_reserve:  CPU compute buffer size
# = 98.25 MiB", "llama_context:  CPU  output buffer size =  0.19 MiB". At most this many are kept per load.
BUFFER_LINE = re.compile(r"^\s*\w+:\s+(\S{1,40})\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([0-9]{1,9}(?:\.[0-9]{1,4})?)\s*MiB\s*$")
MAX_BUFFER_LINES = 64
BUFFER_KINDS = {"model": "weights_bytes", "KV": "kv_bytes", "RS": "kv_bytes", "compute": "compute_bytes",
                "output": "compute_bytes"}


def parse_buffer_lines(lines: list[str]) -> dict[str, Any]:
    """llama.cpp's own buffer sizes from its load log: {"weights_bytes", "kv_bytes", "compute_bytes"} summed over
    devices (compute includes the logits output buffer; kv the recurrent state) and "by_device": {device: {kind:
    bytes}}. A kind llama.cpp did not log is missing. Sizes are logged in MiB to 2 decimals (±5 KiB)."""
    out: dict[str, Any] = {}
    by_device: dict[str, dict[str, int]] = {}
    for line in lines[:MAX_BUFFER_LINES]:
        m = BUFFER_LINE.match(line)
        if not m:
            continue
        device, kind, mib = m[1], m[2], float(m[3])
        n = int(round(mib * 2**20))
        key = BUFFER_KINDS[kind]
        out[key] = out.get(key, 0) + n
        dev = by_device.setdefault(device, {})
        dev[kind.lower()] = dev.get(kind.lower(), 0) + n
    if by_device:
        out["by_device"] = by_device
    return out


FLASH_LINE = re.compile(r"(?:Flash Attention|flash_attn)\s*(?:=\s*)?(enabled|disabled)", re.IGNORECASE)


def flash_attn_resolved(lines: list[str]) -> str | None:
    """"enabled"/"disabled" as llama.cpp's load log last said it (auto resolves at load), None when it did not."""
    found = None
    for line in lines[:MAX_BUFFER_LINES]:
        m = FLASH_LINE.search(line)
        if m:
            found = m[1].lower()
    return found


def kv_cache_type(name: Any, which: str) -> int:
    """The GGML type enum of a KV-cache type name; a plain error for one the worker does not offer."""
    key = str(name or "f16").lower()
    if key not in KV_CACHE_TYPES:
        raise RuntimeError(f"unknown {which} cache type {name!r}: use {', '.join(KV_CACHE_TYPES)}")
    return int(KV_CACHE_TYPES[key])


# Test-only: seconds each generate sleeps before it starts, ignoring cancel (see Engine.generate).
INJECT_STUCK_ENV = "WORKBENCH_INJECT_STUCK_S"
# Test-only: crash on a decode with extra buffer types on (crash_fallback.INJECT_ENV; see Engine._inject_extra_bufts_crash).
INJECT_EXTRA_BUFTS_CRASH_ENV = "WORKBENCH_INJECT_EXTRA_BUFTS_CRASH"

class _Out:
    """Writes protocol events on a private copy of the original stdout, safe from C-level prints."""

    def __init__(self) -> None:
        fd = os.dup(1)
        os.dup2(2, 1)  # anything llama.cpp or Python prints to stdout now lands on stderr
        sys.stdout = sys.stderr
        self._fh: BinaryIO = os.fdopen(fd, "wb", buffering=0)
        self._lock = threading.Lock()

    def send(self, **event: Any) -> None:
        data = protocol.encode(event)
        with self._lock:
            self._fh.write(data)


def _peak_rss_bytes() -> int:
    """Peak resident set of this process since it started: VmHWM from /proc/self/status.

    Not getrusage's ru_maxrss: that survives fork+exec, so a worker would inherit its parent's
    (the app's) peak and report it as its own. Falls back to ru_maxrss where /proc is missing.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class Engine:
    """Owns the llama.cpp model, context and sampler of this worker."""

    def __init__(self, out: _Out, cancel: threading.Event) -> None:
        from llama_cpp import _internals

        self.llama_cpp = llama_cpp
        self._internals = _internals
        self.out = out
        self.cancel = cancel
        # llama_cpp._internals.LlamaModel / LlamaContext once loaded, None before: typed Any because every use
        # below happens after a load (the request loop refuses generate/score/tokenize without a model)
        self.model: Any = None
        self.ctx: Any = None
        self.settings: dict[str, Any] = {}
        self.log_tail: deque[str] = deque(maxlen=40)
        self.buffer_lines: deque[str] = deque(maxlen=MAX_BUFFER_LINES)  # this load's "… buffer size = … MiB" lines
        self._install_log_capture()
        self._piece_buf = ctypes.create_string_buffer(256)
        self._one_token = (llama_cpp.llama_token * 1)()

    # ---- llama.cpp log: keep the last lines so a load failure can say why -------------------
    def _install_log_capture(self) -> None:
        # our own copy of stderr: llama-cpp-python points fd 2 at /dev/null while it loads a model, and a load
        # is where a warning or error line says most about a death that follows
        stderr_fd = os.dup(2)

        @llama_cpp.llama_log_callback
        def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            try:
                line = text.decode("utf-8", "replace").strip()
            except Exception:
                return
            if line and level in LOG_WARN_ERROR:
                self.log_tail.append(line)
            elif level == LOG_INFO and line and ("buffer size" in line or "flash" in line.lower()) and len(line) < 200:
                # INFO: llama.cpp's buffer sizes at load, and whether flash attention ended up on
                self.buffer_lines.append(line)
            if os.environ.get("WORKBENCH_WORKER_VERBOSE"):
                sys.stderr.write(text.decode("utf-8", "replace"))
            elif line and level in LOG_WARN_ERROR:  # on stderr too: the parent shows its tail when this worker dies
                try:
                    os.write(stderr_fd, (line + "\n").encode("utf-8", "replace"))
                except OSError:
                    pass

        self._log_cb = on_log  # keep a reference: llama.cpp holds only the C pointer
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))

    def _llama_error(self, default: str) -> str:
        """The most telling recent llama.cpp error line, or `default`."""
        for line in reversed(self.log_tail):
            if "error" in line.lower() or "unknown" in line.lower() or "failed" in line.lower():
                return line
        return default

    # ---- load / unload --------------------------------------------------------------------
    def load(self, req: dict[str, Any]) -> None:
        lc = self.llama_cpp
        self.unload(quiet=True)
        path = str(req["model_path"])
        n_threads = int(req.get("n_threads") or os.cpu_count() or 1)
        n_gpu_layers = int(req.get("n_gpu_layers") or 0)
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        if req.get("use_extra_bufts") is not None:
            mparams.use_extra_bufts = bool(req["use_extra_bufts"])
        cparams = lc.llama_context_default_params()
        n_seq = max(1, int(req.get("n_seq") or 1))  # sequences generate_batch may decode together
        cparams.n_ctx = int(req.get("n_ctx") or 2048) * n_seq  # each sequence gets n_ctx cells of the KV cache
        cparams.n_seq_max = n_seq
        cparams.n_batch = min(cparams.n_ctx, int(req.get("n_batch") or 512))
        cparams.n_ubatch = cparams.n_batch
        if n_seq > cparams.n_ubatch:  # llama.cpp would abort: a step's tokens must fit one micro-batch
            raise RuntimeError(f"{n_seq} sequences need a micro-batch of at least {n_seq} tokens, not {cparams.n_ubatch}")
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        type_k, type_v = str(req.get("type_k") or "f16").lower(), str(req.get("type_v") or "f16").lower()
        cparams.type_k = kv_cache_type(type_k, "K")
        cparams.type_v = kv_cache_type(type_v, "V")
        flash = req.get("flash_attn")
        if flash is None and type_v != "f16":
            flash = "on"  # llama.cpp refuses a quantized V cache without flash attention
        if flash is not None:
            if flash not in FLASH_ATTN_TYPES:
                raise RuntimeError(f"unknown flash attention setting {flash!r}: use {', '.join(FLASH_ATTN_TYPES)}")
            cparams.flash_attn_type = FLASH_ATTN_TYPES[flash]
        self.log_tail.clear()
        self.buffer_lines.clear()
        t0 = time.perf_counter()
        try:
            self.model = self._internals.LlamaModel(path_model=path, params=mparams, verbose=False)
            self.ctx = self._internals.LlamaContext(model=self.model, params=cparams, verbose=False)
        except ValueError as exc:
            self.unload(quiet=True)
            raise RuntimeError(f"{path}: llama.cpp could not load it: {self._llama_error(str(exc))}") from None
        load_s = time.perf_counter() - t0
        n_layers = int(lc.llama_model_n_layer(self.model.model))
        gpu_layers = min(n_gpu_layers if n_gpu_layers >= 0 else n_layers + 1, n_layers + 1) if lc.llama_supports_gpu_offload() else 0
        self.settings = {
            "model_path": path,
            "n_ctx": int(cparams.n_ctx) // n_seq,  # per sequence: what one prompt and its answer may use
            "n_seq": n_seq,
            "n_batch": int(cparams.n_batch),
            "n_threads": n_threads,
            "n_gpu_layers": n_gpu_layers,
            "gpu_layers": gpu_layers,
            "n_layers": n_layers,
            "use_extra_bufts": bool(mparams.use_extra_bufts),
            "flash_attn_type": int(cparams.flash_attn_type),  # llama.cpp's default: -1 = auto, 0 off, 1 on
            "type_k": type_k,
            "type_v": type_v,
        }
        load_lines = list(self.buffer_lines)
        memory_reported = parse_buffer_lines(load_lines)
        self.settings["flash_attn"] = flash_attn_resolved(load_lines)
        self.vocab = self.model.vocab
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.chat_template = self.model.metadata().get("tokenizer.chat_template")
        from workbench.core.hardware import process_gpu_memory

        self.out.send(
            event="loaded",
            id=req.get("id"),
            load_s=load_s,
            gpu_layers=gpu_layers,
            n_layers=n_layers,
            rss_bytes=_rss_bytes(),
            gpu_mem_bytes=process_gpu_memory(os.getpid()) if gpu_layers else None,
            use_extra_bufts=bool(mparams.use_extra_bufts),
            n_ctx=int(cparams.n_ctx) // n_seq,
            n_seq=n_seq,
            n_threads=n_threads,
            type_k=type_k,
            type_v=type_v,
            flash_attn_type=int(cparams.flash_attn_type),
            flash_attn=self.settings["flash_attn"],
            memory_reported=memory_reported,
            system_info=lc.llama_print_system_info().decode("utf-8", "replace").strip(),
        )

    def unload(self, quiet: bool = False) -> None:
        if self.ctx is not None:
            self.ctx.close()
        if self.model is not None:
            self.model.close()
        self.ctx = self.model = None
        if not quiet:
            self.out.send(event="unloaded")

    def _require_model(self) -> None:
        if self.model is None or self.ctx is None:
            raise RuntimeError("no model loaded (send a load request first)")

    # ---- prompts ----------------------------------------------------------------------------
    def prompt_tokens(self, req: dict[str, Any]) -> tuple[list[int], str]:
        """Tokens for a request, formatted with the GGUF's own chat template when it has one.

        A model without a template (a base model) runs as plain completion: we do not guess a
        format that the model was never trained on. The second value says which was used.
        """
        if req.get("prompt_tokens"):
            return [int(t) for t in req["prompt_tokens"]], "tokens"
        messages = req.get("messages")
        if messages and self.chat_template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def token_text(tok: int) -> str:
                return self.model.token_get_text(tok) if tok != -1 else ""

            fmt = Jinja2ChatFormatter(
                template=self.chat_template,
                eos_token=token_text(self.model.token_eos()),
                bos_token=token_text(self.model.token_bos()),
            )
            rendered = fmt(messages=messages)
            toks = self.model.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
            return toks, "gguf"
        if messages:
            text = "\n\n".join(m["content"] for m in messages if m.get("content"))
        else:
            text = str(req.get("text", ""))
        return self.model.tokenize(text.encode("utf-8"), add_bos=self.model.add_bos_token(), special=False), "none"

    def _decode_chunked(self, tokens: list[int]) -> None:
        """Feed tokens to the context in n_batch chunks; only the last position's logits are kept."""
        lc = self.llama_cpp
        n_batch = self.settings["n_batch"]
        for start in range(0, len(tokens), n_batch):
            chunk = tokens[start : start + n_batch]
            arr = (lc.llama_token * len(chunk))(*chunk)
            rc = lc.llama_decode(self.ctx.ctx, lc.llama_batch_get_one(arr, len(chunk)))
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc} during prefill")
            if self.cancel.is_set():
                return

    def _make_sampler(self, temperature: float, top_p: float, seed: int):
        lc = self.llama_cpp
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if temperature <= 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        else:
            if 0 < top_p < 1:
                lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(top_p, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(temperature))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _inject_extra_bufts_crash(self) -> None:
        """Test-only fault injection (crash_fallback.INJECT_ENV): die on a decode with extra buffer types on, as
        llama.cpp's AMX path does on some CPUs ("always": with or without them, like a file that is simply broken).
        Generate and score both decode, so both crash."""
        mode = os.environ.get(INJECT_EXTRA_BUFTS_CRASH_ENV)
        if mode and (self.settings["use_extra_bufts"] or mode == "always"):
            sys.stderr.write("injected extra-buffer crash (test only)\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)

    # ---- generate ---------------------------------------------------------------------------
    def generate(self, req: dict[str, Any]) -> None:
        self._require_model()
        lc = self.llama_cpp
        rid = req.get("id")
        t_request = time.perf_counter()
        # Test-only fault injection: be stuck where a cancel is never read (like a chat template that loops for
        # minutes), so Stop has to kill the worker (pool.CANCEL_GRACE_S). Never set outside tests.
        stuck_s = float(os.environ.get(INJECT_STUCK_ENV) or 0)
        if stuck_s > 0:
            time.sleep(stuck_s)
        tokens, template = self.prompt_tokens(req)
        n_ctx = self.settings["n_ctx"]
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
        n_vocab = self.n_vocab
        self.out.send(event="started", id=rid, prompt_tokens=len(tokens), template=template)

        self.ctx.kv_cache_clear()
        sampler = self._make_sampler(temperature, top_p, seed)
        ctx = self.ctx.ctx
        vocab = self.vocab
        buf = self._piece_buf
        one = self._one_token
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
            self._inject_extra_bufts_crash()
            self._decode_chunked(tokens)
            lc.llama_synchronize(ctx)
            t_prefill1 = time.perf_counter()
            cpu_prefill1 = CpuSnapshot.take(app_pid)
            n_past = len(tokens)
            n_sampled = 0
            t_first = t_last = None
            last_flush = 0.0
            while True:
                if self.cancel.is_set():
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
                    self.out.send(event="tokens", id=rid, ids=pending_ids, text="".join(pending_text))
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
            self.out.send(event="tokens", id=rid, ids=pending_ids, text="".join(pending_text))
        t_end = time.perf_counter()
        prefill_s = t_prefill1 - t_prefill0
        # Decode speed counts sampled tokens after the first: each cost one llama_decode of its
        # predecessor plus its own sampling. Prefill is excluded by construction.
        decode_s = (t_last - t_first) if (t_first is not None and t_last is not None) else 0.0
        decode_steps = max(0, n_sampled - 1)
        from workbench.core.hardware import process_gpu_memory

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
            "peak_rss_bytes": _peak_rss_bytes(),
            "gpu_mem_bytes": process_gpu_memory(os.getpid()) if self.settings.get("gpu_layers") else None,
            "measurement": self._measurement(cpu_prefill0, cpu_prefill1, cpu_decode0, cpu_end),
            "settings": {**self.settings, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed},
        }
        self.out.send(event="done", id=rid, metrics=metrics, token_ids=out_ids, text="".join(text_parts), prompt_token_ids=tokens)

    def _measurement(self, prefill0: CpuSnapshot, prefill1: CpuSnapshot, decode0: CpuSnapshot | None,
                     end: CpuSnapshot | None) -> dict[str, Any]:
        """How undisturbed the timed windows were (see disturbance.py): what the rest of the machine used."""
        n_threads = int(self.settings.get("n_threads") or 1)
        out: dict[str, Any] = {"prefill": classify("prefill", prefill0, prefill1, n_threads).to_dict()}
        if decode0 is not None and end is not None:
            out["decode"] = classify("decode", decode0, end, n_threads).to_dict()
        return out

    # ---- generate_batch: many prompts, several sequences in one context -------------------------
    def generate_batch(self, req: dict[str, Any]) -> None:
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
        self._require_model()
        lc = self.llama_cpp
        rid = req.get("id")
        items = list(req.get("items") or [])
        n_seq = max(1, min(int(req.get("n_seq") or 1), int(self.settings.get("n_seq") or 1)))
        temperature = float(req.get("temperature") or 0.0)
        top_p = 1.0 if req.get("top_p") is None else float(req["top_p"])
        seed = 0 if req.get("seed") is None else int(req["seed"])
        ignore_eos = bool(req.get("ignore_eos"))
        n_ctx_seq = int(self.settings["n_ctx"])
        n_batch = int(self.settings["n_batch"])
        ctx, vocab, n_vocab, buf = self.ctx.ctx, self.vocab, self.n_vocab, self._piece_buf
        mem = lc.llama_get_memory(ctx)
        lc.llama_memory_clear(mem, True)
        batch = lc.llama_batch_init(max(n_batch, n_seq), 0, 1)
        slots: list[_Slot | None] = [None] * n_seq
        pending = deque(enumerate(items))
        t0 = time.perf_counter()
        prefill_s = step_s = 0.0
        steps = finished = generated = 0
        self.out.send(event="batch_started", id=rid, n_items=len(items), n_seq=n_seq)

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
            self.out.send(event="item", id=rid, index=slot.index, text="".join(slot.text), token_ids=slot.ids,
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
                tokens, template = self.prompt_tokens(item)
                if not tokens:
                    raise protocol.BadRequest("the prompt is empty: there is nothing to generate from")
            except Exception as exc:
                self.out.send(event="item", id=rid, index=index, error=f"could not build the prompt: {exc}")
                return
            if len(tokens) >= n_ctx_seq:
                self.out.send(event="item", id=rid, index=index, prompt_tokens=len(tokens),
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
            sampler = None if temperature <= 0 else self._make_sampler(temperature, top_p, seed)
            slots[s] = _Slot(index, int(item.get("max_tokens") or 256), len(tokens), template, sampler,
                             codecs.getincrementaldecoder("utf-8")(errors="replace"), started, pos=len(tokens))
            accept(s, sample(slots[s], batch.n_tokens - 1))  # type: ignore[arg-type]

        try:
            self._inject_extra_bufts_crash()
            while not self.cancel.is_set():
                for s in range(n_seq):
                    while slots[s] is None and pending and not self.cancel.is_set():
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
            cancelled = self.cancel.is_set()
            for s in range(n_seq):
                if slots[s] is not None:
                    report(slots[s], "cancelled")  # type: ignore[arg-type]
        finally:
            for s in range(n_seq):
                if slots[s] is not None:
                    release(s)
            lc.llama_batch_free(batch)
        wall_s = time.perf_counter() - t0
        from workbench.core.hardware import process_gpu_memory

        self.out.send(event="done", id=rid, cancelled=cancelled, metrics={
            "n_items": len(items), "n_seq": n_seq, "finished": finished, "generated_tokens": generated,
            "wall_s": wall_s, "prefill_s": prefill_s, "step_s": step_s, "steps": steps,
            "generated_tok_s": generated / wall_s if wall_s > 0 else None,
            "peak_rss_bytes": _peak_rss_bytes(),
            "gpu_mem_bytes": process_gpu_memory(os.getpid()) if self.settings.get("gpu_layers") else None,
            "settings": {**self.settings, "temperature": temperature, "top_p": top_p, "seed": seed},
        })

    # ---- score (teacher forcing) --------------------------------------------------------------
    def score(self, req: dict[str, Any]) -> None:
        """Feed prompt+target through the model and report, per target position, how it judged it.

        Per position: log-prob of the target token, this model's top-k alternatives and, when a
        reference's log-probs are given (a .npy of shape [positions, vocab]), the KL divergence
        KL(reference || this) and whether the top-1 tokens agree.

        Each decode asks for logits at every scored position; its rows are scored as one block by
        scoring.score_rows (scoring.score_rows_per_position, the old row-at-a-time code, when
        scoring.PER_POSITION_ENV is set). The reference's file is memory-mapped, not read whole.
        """
        self._require_model()
        lc = self.llama_cpp
        rid = req.get("id")
        prompt = [int(t) for t in req["prompt_tokens"]]
        target = [int(t) for t in req["target_tokens"]]
        top_k = int(req.get("top_k") or 5)
        if not prompt:
            raise RuntimeError("score needs at least one prompt token")
        seq = prompt + target
        if len(seq) > self.settings["n_ctx"]:
            raise RuntimeError(f"{len(seq)} tokens do not fit the context of {self.settings['n_ctx']}")
        per_position = bool(os.environ.get(scoring.PER_POSITION_ENV))
        first = len(prompt) - 1  # logits at position i predict token i+1
        n_pos = len(target)
        n_vocab = self.n_vocab
        ref = None
        if req.get("reference_logprobs"):
            ref = np.load(req["reference_logprobs"], mmap_mode=None if per_position else "r")
            if ref.shape != (n_pos, n_vocab):
                raise RuntimeError(f"the reference's log-probs are {list(ref.shape)}, not [{n_pos}, {n_vocab}]")
        save = np.empty((n_pos, n_vocab), dtype=np.float32) if req.get("save_logprobs") else None
        targets = np.asarray(target, dtype=np.int64)
        self.ctx.kv_cache_clear()
        batch = self._internals.LlamaBatch(n_tokens=self.settings["n_batch"], embd=0, n_seq_max=1, verbose=False)
        parts: list[scoring.Scores] = []
        t0 = time.perf_counter()
        try:
            self._inject_extra_bufts_crash()
            n_batch = self.settings["n_batch"]
            for start in range(0, len(seq) - 1, n_batch):
                chunk = seq[start : min(start + n_batch, len(seq) - 1)]
                b = batch.batch
                b.n_tokens = len(chunk)
                for i, tok in enumerate(chunk):
                    b.token[i] = tok
                    b.pos[i] = start + i
                    b.n_seq_id[i] = 1
                    b.seq_id[i][0] = 0
                    b.logits[i] = (start + i) >= first
                rc = lc.llama_decode(self.ctx.ctx, b)
                if rc != 0:
                    raise RuntimeError(f"llama_decode failed with code {rc} while scoring")
                if self.cancel.is_set():
                    raise _Cancelled()
                i0 = max(first - start, 0)  # the first position of this chunk with logits
                if i0 >= len(chunk):
                    continue
                k0, k1 = start + i0 - first, start + len(chunk) - first
                score = scoring.score_rows_per_position if per_position else scoring.score_rows
                try:
                    parts.append(score(self._logit_rows(i0, len(chunk)), targets[k0:k1], top_k,
                                       ref=None if ref is None else ref[k0:k1],
                                       save=None if save is None else save[k0:k1], cancelled=self.cancel.is_set))
                except InterruptedError:
                    raise _Cancelled() from None
        finally:
            batch.close()
        if save is not None:
            np.save(req["save_logprobs"], save)
        del ref  # a memory map: close the file now
        positions = self._positions(target, parts)
        pieces = {}
        for p in positions:
            for t, _ in p["top"]:
                if t not in pieces:
                    pieces[t] = self.model.token_to_piece(t).rstrip(b"\0").decode("utf-8", "replace")
            if p["token"] not in pieces:
                pieces[p["token"]] = self.model.token_to_piece(p["token"]).rstrip(b"\0").decode("utf-8", "replace")
        self.out.send(event="scored", id=rid, positions=positions, pieces={str(k): v for k, v in pieces.items()},
                      elapsed_s=time.perf_counter() - t0)

    def _logit_rows(self, i0: int, i1: int) -> np.ndarray:
        """The last decode's logits for batch positions i0..i1-1 (all of which asked for logits), [rows, vocab].

        llama.cpp keeps one sequence's outputs in batch order in one buffer, so this is a view of it (valid
        until the next decode); should a build ever order them otherwise, the rows are gathered one by one.
        """
        lc, ctx, n_vocab = self.llama_cpp, self.ctx.ctx, self.n_vocab
        n = i1 - i0
        base = lc.llama_get_logits(ctx)
        at = ctypes.cast(base, ctypes.c_void_p).value
        first_row = ctypes.cast(lc.llama_get_logits_ith(ctx, i0), ctypes.c_void_p).value
        last_row = ctypes.cast(lc.llama_get_logits_ith(ctx, i1 - 1), ctypes.c_void_p).value
        if at and first_row == at and last_row == at + (n - 1) * n_vocab * ctypes.sizeof(ctypes.c_float):
            return np.ctypeslib.as_array(base, shape=(n, n_vocab))
        return np.stack([np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, i), shape=(n_vocab,)) for i in range(i0, i1)])

    @staticmethod
    def _positions(target: list[int], parts: list[scoring.Scores]) -> list[dict[str, Any]]:
        """The `scored` event's per-position entries (protocol.py), from the scored blocks in order."""
        positions: list[dict[str, Any]] = []
        k = 0
        for part in parts:
            lp, ids, top_lp = part.logprob.tolist(), part.top_ids.tolist(), part.top_logprobs.tolist()
            kld = part.kld.tolist() if part.kld is not None else None
            agree = part.agree.tolist() if part.agree is not None else None
            ref_top = part.ref_top.tolist() if part.ref_top is not None else None
            for j in range(len(part)):
                entry: dict[str, Any] = {"token": target[k], "logprob": lp[j],
                                         "top": [[t, v] for t, v in zip(ids[j], top_lp[j], strict=True)]}
                if kld is not None and agree is not None and ref_top is not None:
                    entry["kld"], entry["top1_agree"], entry["ref_top"] = kld[j], agree[j], ref_top[j]
                positions.append(entry)
                k += 1
        return positions

    def tokenize(self, req: dict[str, Any]) -> None:
        self._require_model()
        tokens, template = self.prompt_tokens(req)
        self.out.send(event="tokenized", id=req.get("id"), tokens=tokens, template=template)


class _Cancelled(Exception):
    pass


class _Slot:
    """One sequence of a `generate_batch`: the item it is generating and how far it got."""

    def __init__(self, index: int, max_tokens: int, prompt_tokens: int, template: str, sampler: Any,
                 utf8: codecs.IncrementalDecoder, started: float, pos: int) -> None:
        self.index, self.max_tokens, self.prompt_tokens, self.template = index, max_tokens, prompt_tokens, template
        self.sampler, self.utf8, self.started, self.pos = sampler, utf8, started, pos
        self.ids: list[int] = []
        self.text: list[str] = []
        self.next_token = -1  # sampled, not yet decoded


class _Cancels:
    """Which requests a cancel has reached, so that none is lost.

    One Event cleared at the start of every request dropped a cancel that arrived while the request before
    it (a slow load) was running: the parent pressed Stop, and the model generated all of max_tokens anyway
    (issue 13). Now a cancel names its request: the running one stops at its next check, a queued one is
    answered at once without running, a finished (or unknown) one is ignored.
    """

    def __init__(self) -> None:
        self.event = threading.Event()  # what the engine polls: set when the running request is cancelled
        self._lock = threading.Lock()
        self._queued: list[Any] = []  # ids read but not started, in order
        self._cancelled: set[Any] = set()  # queued ids a cancel reached
        self._running: Any = None
        self._busy = False

    def queued(self, rid: Any) -> None:
        """Called by the reader before the request is queued, so a cancel read after it always finds it."""
        with self._lock:
            self._queued.append(rid)

    def cancel(self, rid: Any) -> None:
        """Cancel request `rid`; None (a cancel without an id, as older parents sent) cancels every pending one."""
        with self._lock:
            if rid is None:
                self._cancelled.update(self._queued)
                if self._busy:
                    self.event.set()
            elif self._busy and rid == self._running:
                self.event.set()
            elif rid in self._queued:
                self._cancelled.add(rid)
            # else: already finished (or never sent): nothing to stop

    def start(self, rid: Any) -> bool:
        """Mark `rid` running; False when it was cancelled while queued (then it must not run)."""
        with self._lock:
            if rid in self._queued:
                self._queued.remove(rid)
            if rid in self._cancelled:
                self._cancelled.discard(rid)
                return False
            self._running, self._busy = rid, True
            self.event.clear()  # only here, under the lock: a cancel for this request cannot be lost
            return True

    def finish(self) -> None:
        with self._lock:
            self._running, self._busy = None, False
            self.event.clear()


def _reader(requests: queue.Queue[dict[str, Any] | None], cancels: _Cancels, out: _Out) -> None:
    """Read requests from stdin; `cancel` acts at once, everything else is queued in order."""
    for raw in sys.stdin.buffer:
        try:
            req = protocol.decode(raw)
        except ValueError as exc:
            out.send(event="error", id=None, during="request", message=f"malformed request: {exc}")
            continue
        op = req.get("op")
        if op == "cancel":
            cancels.cancel(req.get("target", req.get("id")))
        elif op not in protocol.OPS:
            out.send(event="error", id=req.get("id"), during="request", message=f"unknown op {op!r}")
        else:
            cancels.queued(req.get("id"))
            requests.put(req)
    requests.put(None)  # stdin closed: the parent is gone


def main(engine_factory: Callable[[_Out, threading.Event], Any] | None = None) -> None:
    """Serve requests until stdin closes. `engine_factory`: tests pass a fake engine (no llama.cpp)."""
    out = _Out()
    cancels = _Cancels()
    requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=_reader, args=(requests, cancels, out), daemon=True).start()
    engine = (engine_factory or Engine)(out, cancels.event)
    out.send(event="ready", id=None, pid=os.getpid())
    # an engine answers the ops it has (a test's fake engine may lack some: those get an error, not a crash)
    handlers = {op: getattr(engine, op) for op in ("load", "generate", "generate_batch", "score", "tokenize")
                if hasattr(engine, op)}
    while True:
        req = requests.get()
        if req is None or req.get("op") == "shutdown":
            break
        op, rid = req["op"], req.get("id")
        if not cancels.start(rid):  # cancelled while it waited: answered without running
            out.send(event="error", id=rid, during=op, message="cancelled")
            continue
        try:
            if op == "unload":
                engine.unload(quiet=True)
                out.send(event="unloaded", id=rid)
            elif op not in handlers:
                out.send(event="error", id=rid, during=op, message=f"this worker does not do {op!r}")
            else:
                protocol.check_request(req)  # the parent checks too; anything may write to our stdin
                handlers[op](req)
        except _Cancelled:
            out.send(event="error", id=rid, during=op, message="cancelled")
        except Exception as exc:  # reported to the parent; the worker stays up for the next request
            out.send(event="error", id=rid, during=op, message=str(exc) or type(exc).__name__)
        finally:
            cancels.finish()
    engine.unload(quiet=True)


if __name__ == "__main__":
    main()
