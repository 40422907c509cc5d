"""What the worker's decode loop adds to llama.cpp per token, measured in one process.

The worker, per generated token, takes the argmax of llama.cpp's logits row in place and
detokenizes one piece (workbench/engine/generation.py, greedy path). This script runs the same decode
loop twice on one context, with and without that work, and reports the share of loop time
spent outside `llama_decode` and the tok/s of each variant (alternating, so drift hits both).

    .venv/bin/python benchmarks/per_token_cost.py [--file F.gguf] [--threads 2] [--tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time

import llama_cpp as lc  # before numpy: see workbench/engine/generation.py
import numpy as np

from workbench.core import hardware
from workbench.models.ladder import ensure_demo_ladder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", default=None, help="GGUF file (default: the demo ladder's Q4_K_M)")
    ap.add_argument("--threads", type=int, default=hardware.default_threads())
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    path = args.file or next(f.path for f in ensure_demo_ladder().files if f.quant_type == "Q4_K_M")

    quiet = lc.llama_log_callback(lambda *_: None)  # kept referenced: llama.cpp calls it later
    lc.llama_log_set(quiet, None)
    lc.llama_backend_init()
    model = lc.llama_model_load_from_file(str(path).encode(), lc.llama_model_default_params())
    cp = lc.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = 2048, 512, 512
    cp.n_threads = cp.n_threads_batch = args.threads
    ctx = lc.llama_init_from_model(model, cp)
    vocab = lc.llama_model_get_vocab(model)
    n_vocab = lc.llama_vocab_n_tokens(vocab)
    memory = lc.llama_get_memory(ctx)
    one = (lc.llama_token * 1)()
    batch = lc.llama_batch_get_one(one, 1)
    buf = ctypes.create_string_buffer(256)

    def loop(worker_work: bool) -> tuple[float, float]:
        lc.llama_memory_clear(memory, True)
        one[0] = 1
        lc.llama_decode(ctx, batch)
        in_decode, t0 = 0.0, time.perf_counter()
        for i in range(args.tokens):
            if worker_work:  # what generation.py does per token on the greedy path
                tok = int(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).argmax())
                n = lc.llama_token_to_piece(vocab, tok, buf, 256, 0, False)
                buf.raw[: max(n, 0)].decode("utf-8", "replace")
            else:
                tok = (i * 7919) % n_vocab
            one[0] = tok
            t = time.perf_counter()
            lc.llama_decode(ctx, batch)
            lc.llama_synchronize(ctx)
            in_decode += time.perf_counter() - t
        total = time.perf_counter() - t0
        return args.tokens / total, 1 - in_decode / total

    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for work in (False, True):
            results[work] += [loop(work) for _ in range(4)]
    for work, label in ((False, "llama_decode only"), (True, "with the worker's per-token work")):
        rates = [r for r, _ in results[work]]
        outside = [o for _, o in results[work]]
        print(f"{label:34s} {statistics.median(rates):7.1f} tok/s [{min(rates):.1f}–{max(rates):.1f}]  "
              f"time outside llama_decode {100 * statistics.median(outside):.2f}% of the loop")
    lc.llama_free(ctx)
    lc.llama_model_free(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
