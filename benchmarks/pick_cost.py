"""What picking the next token costs a batched decode step (issue 28): the step as llama-batched-bench runs it
(no pick: a fixed token, the logits only waited for) against the picks a greedy batch can make.

Why: at 64 sequences on a GPU ours reached 0.78x llama-batched-bench, which never reads its logits. This
isolates the pick from everything else in the worker, on the same context, file and work:

  none      llama_synchronize, then a fixed token for every sequence (what llama-batched-bench does)
  numpy     the step's logits [n_seq, vocab] as one numpy view, argmax over the rows on one thread (ours today)
  threads   the same argmax split into row slices over --threads host threads (numpy releases the GIL)
  backend   llama.cpp's backend sampling: a greedy sampler chain per sequence in the context's parameters,
            so the argmax runs inside the decode's graph (on the GPU when offloaded) and ids are read back
  backend-set  the same chains attached to a context made without them (llama_set_sampler), and taken off
            after each run, as a worker serving other requests on the same context would have to

Every mode prefills the same prompts (n_seq prompts of --prompt-tokens ids, chunks of 512 tokens), then
decodes --tokens steps of n_seq tokens; the figure is milliseconds per decode step (median over the steps
of --repeats runs) and generated tokens per second of the whole run, prefill included.
    python benchmarks/pick_cost.py model.gguf --n-seq 64 --gpu-layers 99 --threads 8
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import llama_cpp as lc  # noqa: E402,I001
import numpy as np  # noqa: E402

from workbench.engine.generation import _Batch  # noqa: E402

MODES = ("none", "numpy", "threads", "backend", "backend-set")


def _context(model: object, args: argparse.Namespace, backend: bool) -> tuple[object, list[object], object]:
    cp = lc.llama_context_default_params()
    cp.n_ctx = args.ctx * args.n_seq
    cp.n_seq_max = args.n_seq
    cp.n_batch = cp.n_ubatch = 512
    cp.n_threads = cp.n_threads_batch = args.threads
    chains: list[object] = []
    configs = None
    if backend:
        configs = (lc.llama_sampler_seq_config * args.n_seq)()
        for s in range(args.n_seq):
            chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
            configs[s].seq_id, configs[s].sampler = s, ctypes.cast(chain, ctypes.c_void_p)
            chains.append(chain)
        cp.samplers = ctypes.cast(configs, ctypes.POINTER(lc.llama_sampler_seq_config))
        cp.n_samplers = args.n_seq
    ctx = lc.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("llama.cpp could not create the context")
    return ctx, chains, configs


def run(model: object, args: argparse.Namespace, mode: str) -> dict[str, object]:
    n_seq, n_vocab = args.n_seq, lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    ctx, chains, _keep = _context(model, args, mode == "backend")
    pool = ThreadPoolExecutor(args.threads) if mode == "threads" else None
    bounds = np.linspace(0, n_seq, min(args.threads, n_seq) + 1).astype(int)
    rng = np.random.default_rng(0)
    prompts = rng.integers(100, n_vocab - 100, size=(n_seq, args.prompt_tokens)).astype(np.int32)
    batch = _Batch(512)
    out = np.empty(n_seq, np.int64)
    seqs = np.arange(n_seq, dtype=np.int32)
    runs = []
    for _ in range(args.repeats + 1):  # the first run warms up
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        t0 = time.perf_counter()
        if mode == "backend-set":
            chains = [lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params()) for _ in range(n_seq)]
            for s, chain in enumerate(chains):
                lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
                if not lc.llama_set_sampler(ctx, s, chain):
                    raise SystemExit("llama_set_sampler refused the greedy chain")
        flat_tok = prompts.reshape(-1)
        flat_pos = np.tile(np.arange(args.prompt_tokens, dtype=np.int32), n_seq)
        flat_seq = np.repeat(seqs, args.prompt_tokens)
        last = np.zeros(len(flat_tok), np.int8)
        last[args.prompt_tokens - 1 :: args.prompt_tokens] = 1
        for s in range(0, len(flat_tok), 512):
            e = min(s + 512, len(flat_tok))
            k = e - s
            batch.token[:k], batch.pos[:k], batch.seq[:k], batch.logits[:k] = (flat_tok[s:e], flat_pos[s:e],
                                                                                flat_seq[s:e], last[s:e])
            batch.n_tokens = k
            if lc.llama_decode(ctx, batch.struct) != 0:
                raise SystemExit("prefill failed")
        lc.llama_synchronize(ctx)
        t_pp = time.perf_counter() - t0
        toks = np.full(n_seq, 1000, np.int32)
        steps = []
        for i in range(args.tokens):
            t = time.perf_counter()
            batch.token[:n_seq], batch.pos[:n_seq], batch.seq[:n_seq], batch.logits[:n_seq] = (
                toks, args.prompt_tokens + i, seqs, 1)
            batch.n_tokens = n_seq
            if lc.llama_decode(ctx, batch.struct) != 0:
                raise SystemExit("decode failed")
            if mode == "none":
                lc.llama_synchronize(ctx)
            elif mode.startswith("backend"):
                toks = np.fromiter((lc.llama_get_sampled_token_ith(ctx, j) for j in range(n_seq)), np.int32, n_seq)
            else:
                rows = np.ctypeslib.as_array(lc.llama_get_logits(ctx), shape=(n_seq, n_vocab))
                if pool is None:
                    toks = rows.argmax(axis=1).astype(np.int32)
                else:
                    futures = [pool.submit(np.argmax, rows[a:b], 1, out[a:b])
                               for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
                    for f in futures:
                        f.result()
                    toks = out.astype(np.int32)
            steps.append(time.perf_counter() - t)
        if mode == "backend-set":
            for s, chain in enumerate(chains):
                lc.llama_set_sampler(ctx, s, None)
                lc.llama_sampler_free(chain)
            chains = []
        wall = time.perf_counter() - t0
        runs.append({"prefill_s": t_pp, "step_ms": statistics.median(steps) * 1e3, "wall_s": wall,
                     "gen_tok_s": n_seq * args.tokens / wall, "last_tokens": toks[:4].tolist()})
    if pool is not None:
        pool.shutdown()
    lc.llama_free(ctx)
    for chain in chains:
        lc.llama_sampler_free(chain)
    runs = runs[1:]
    return {"mode": mode, "step_ms": statistics.median(r["step_ms"] for r in runs),
            "gen_tok_s": statistics.median(r["gen_tok_s"] for r in runs),
            "prefill_s": statistics.median(r["prefill_s"] for r in runs), "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--n-seq", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=512, help="KV cells per sequence")
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json")
    args = ap.parse_args()
    lc.llama_backend_init()
    mp = lc.llama_model_default_params()
    mp.n_gpu_layers = args.gpu_layers
    model = lc.llama_model_load_from_file(args.model.encode(), mp)
    if not model:
        raise SystemExit(f"could not load {args.model}")
    results = []
    for mode in args.modes.split(","):
        r = run(model, args, mode)
        results.append(r)
        print(f"{mode:8s} {r['step_ms']:7.3f} ms/step  {r['gen_tok_s']:9.1f} tok/s  prefill {r['prefill_s']:.3f} s  "
              f"last tokens {r['runs'][-1]['last_tokens']}", flush=True)
    lc.llama_model_free(model)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
