"""The worker's loaded model: llama.cpp's model, context and settings, loading and unloading, and prompts as tokens.

Why a module of its own: generation (generation.py) and teacher-forced scoring (teacher_forcing.py) both run on
what a load made, and both need a prompt turned into tokens the same way (the GGUF's own chat template, or plain
completion for a base model). `LoadedModel` is that shared state with the helpers both use (chunked prefill, the
native sampler chain, the test-only crash injection); the request loop (worker.py) serves its ops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Any, Protocol

import llama_cpp

from workbench.engine import llama_log, process_memory

# KV-cache types a load may ask for, by the names llama.cpp's tools use (--cache-type-k/-v), and their GGML enums.
KV_CACHE_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
FLASH_ATTN_TYPES = {"auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}
# Test-only: crash on a decode with extra buffer types on (crash_fallback.INJECT_ENV; see LoadedModel.inject_extra_bufts_crash).
INJECT_EXTRA_BUFTS_CRASH_ENV = "WORKBENCH_INJECT_EXTRA_BUFTS_CRASH"


def kv_cache_type(name: Any, which: str) -> int:
    """The GGML type enum of a KV-cache type name; a plain error for one the worker does not offer."""
    key = str(name or "f16").lower()
    if key not in KV_CACHE_TYPES:
        raise RuntimeError(f"unknown {which} cache type {name!r}: use {', '.join(KV_CACHE_TYPES)}")
    return int(KV_CACHE_TYPES[key])


class Cancelled(Exception):
    """A request stopped by its cancel; the request loop answers it with `error` "cancelled"."""


class EventSink(Protocol):
    """Where a worker's protocol events go (worker._Out: the process's private stdout)."""

    def send(self, **event: Any) -> None: ...


class LoadedModel:
    """Owns the llama.cpp model, context and sampler of this worker."""

    def __init__(self, out: EventSink, cancel: threading.Event) -> None:
        from llama_cpp import _internals

        self.llama_cpp = llama_cpp
        self.internals = _internals
        self.out = out
        self.cancel = cancel
        # llama_cpp._internals.LlamaModel / LlamaContext once loaded, None before: typed Any because every use
        # below happens after a load (the request loop refuses generate/score/tokenize without a model)
        self.model: Any = None
        self.ctx: Any = None
        self.settings: dict[str, Any] = {}
        self.log = llama_log.LlamaLog()
        self.piece_buf = ctypes.create_string_buffer(256)
        self.one_token = (llama_cpp.llama_token * 1)()
        self._pieces: dict[int, bytes] = {}  # token id -> its bytes, for the loaded model

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
        self.log.clear()
        t0 = time.perf_counter()
        try:
            self.model = self.internals.LlamaModel(path_model=path, params=mparams, verbose=False)
            self.ctx = self.internals.LlamaContext(model=self.model, params=cparams, verbose=False)
        except ValueError as exc:
            self.unload(quiet=True)
            raise RuntimeError(f"{path}: llama.cpp could not load it: {self.log.error(str(exc))}") from None
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
        load_lines = list(self.log.buffer_lines)
        memory_reported = llama_log.parse_buffer_lines(load_lines)
        self.settings["flash_attn"] = llama_log.flash_attn_resolved(load_lines)
        self.vocab = self.model.vocab
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.chat_template = self.model.metadata().get("tokenizer.chat_template")

        self.out.send(
            event="loaded",
            id=req.get("id"),
            load_s=load_s,
            gpu_layers=gpu_layers,
            n_layers=n_layers,
            rss_bytes=process_memory.rss_bytes(),
            gpu_mem_bytes=process_memory.gpu_mem_bytes(gpu_layers),
            use_extra_bufts=bool(mparams.use_extra_bufts),
            n_ctx=int(cparams.n_ctx) // n_seq,
            n_seq=n_seq,
            n_threads=n_threads,
            type_k=type_k,
            type_v=type_v,
            flash_attn_type=int(cparams.flash_attn_type),
            flash_attn=self.settings["flash_attn"],
            memory_reported=memory_reported,
            system_info=llama_log.system_info(),
        )

    def unload(self, quiet: bool = False) -> None:
        if self.ctx is not None:
            self.ctx.close()
        if self.model is not None:
            self.model.close()
        self.ctx = self.model = None
        self._pieces.clear()
        if not quiet:
            self.out.send(event="unloaded")

    def piece(self, token: int) -> bytes:
        """A token's bytes (`llama_token_to_piece`, special tokens not rendered), remembered per token: a batch
        detokenizes thousands of ids when its items end, and most are repeats. A piece over 256 bytes is empty,
        as the one-token-at-a-time path gives it."""
        found = self._pieces.get(token)
        if found is None:
            n = self.llama_cpp.llama_token_to_piece(self.vocab, token, self.piece_buf, 256, 0, False)
            found = self._pieces[token] = self.piece_buf.raw[: max(n, 0)]
        return found

    def require_model(self) -> None:
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

    def decode_chunked(self, tokens: list[int]) -> None:
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

    def make_sampler(self, temperature: float, top_p: float, seed: int):
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

    def inject_extra_bufts_crash(self) -> None:
        """Test-only fault injection (crash_fallback.INJECT_ENV): die on a decode with extra buffer types on, as
        llama.cpp's AMX path does on some CPUs ("always": with or without them, like a file that is simply broken).
        Generate and score both decode, so both crash."""
        mode = os.environ.get(INJECT_EXTRA_BUFTS_CRASH_ENV)
        if mode and (self.settings["use_extra_bufts"] or mode == "always"):
            sys.stderr.write("injected extra-buffer crash (test only)\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)

    def tokenize(self, req: dict[str, Any]) -> None:
        self.require_model()
        tokens, template = self.prompt_tokens(req)
        self.out.send(event="tokenized", id=req.get("id"), tokens=tokens, template=template)
