"""Does the way a chunk is decoded change llama.cpp's cost? Our worker's layout against llama-perplexity's.

Why: `workbench diverge --reference-text` took 1.26x llama-perplexity's wall time for the same KLD run
(docs/benchmarks.md, "Against llama-perplexity"), and 94.5% of our workers' time is inside `llama_decode`. This
decodes the bundled text's 512-token chunks (logits only at the scored half, as both sides ask) through one file
in three layouts, interleaved, nothing else timed (no scoring, no start-up):

- A, our worker today: n_ctx 2048, n_batch = n_ubatch = 512, one chunk (its 511 inputs) per `llama_decode`;
- B, a context the size of the chunk: n_ctx 512, n_batch = n_ubatch = 512, one chunk per decode;
- C, llama-perplexity's `-c 512` defaults: n_batch 2048, so 4 sequences of 512 in one decode (n_seq_max 4,
  n_ctx 2048, n_ubatch 512).

`--cpu` times CPU seconds of this process instead of wall seconds (with `--threads 1` the work itself, little
moved by other load on a shared machine).

    .venv/bin/python benchmarks/divergence_decode_layout.py --label Q8_0 --threads 2 --reps 3 [--cpu]
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import llama_cpp  # noqa: E402
import llama_cpp._internals as internals  # noqa: E402

from workbench.models.ladder import ensure_demo_ladder  # noqa: E402
from workbench.quality import divergence as dv  # noqa: E402

CHUNK = 512
LAYOUTS = {  # name: (n_ctx, n_seq_max, n_batch, n_ubatch, chunks per decode)
    "A ours: n_ctx 2048, batch 512, 1 chunk a decode": (2048, 1, 512, 512, 1),
    "B n_ctx 512, batch 512, 1 chunk a decode": (512, 1, 512, 512, 1),
    "C llama-perplexity: 4 sequences, batch 2048, ubatch 512": (2048, 4, 2048, 512, 4),
}
_QUIET = llama_cpp.llama_log_callback(lambda *a: None)  # kept referenced: llama.cpp calls it later


def load(path: str, n_ctx: int, n_seq: int, n_batch: int, n_ubatch: int, threads: int) -> tuple[object, object]:
    model = internals.LlamaModel(path_model=path, params=llama_cpp.llama_model_default_params(), verbose=False)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_seq_max, cp.n_batch, cp.n_ubatch = n_ctx, n_seq, n_batch, n_ubatch
    cp.n_threads = cp.n_threads_batch = threads
    return model, internals.LlamaContext(model=model, params=cp, verbose=False)


def decode_all(ctx: object, chunks: list[list[int]], per_decode: int, n_batch: int, clock: object) -> float:
    """Seconds (of `clock`) to decode every chunk, `per_decode` chunks (sequences) a `llama_decode`."""
    batch = internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=per_decode, verbose=False)
    t0 = clock()  # type: ignore[operator]
    for i in range(0, len(chunks), per_decode):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx.ctx), True)  # type: ignore[attr-defined]
        b, n = batch.batch, 0
        for s, chunk in enumerate(chunks[i : i + per_decode]):
            for pos, tok in enumerate(chunk[: CHUNK - 1] if per_decode == 1 else chunk):  # ours feeds 511 inputs
                b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = tok, pos, 1, pos >= CHUNK // 2
                b.seq_id[n][0] = s
                n += 1
        b.n_tokens = n
        if llama_cpp.llama_decode(ctx.ctx, b) != 0:  # type: ignore[attr-defined]
            raise RuntimeError("llama_decode failed")
    llama_cpp.llama_synchronize(ctx.ctx)  # type: ignore[attr-defined]
    seconds = clock() - t0  # type: ignore[operator]
    batch.close()
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="Q8_0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cpu", action="store_true", help="CPU seconds of this process instead of wall seconds")
    args = ap.parse_args()
    llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))
    ladder = ensure_demo_ladder(lambda *a: None)
    path = next(str(f.path) for f in ladder.files if f.label == args.label)
    ctxs = {name: load(path, *cfg[:4], args.threads) for name, cfg in LAYOUTS.items()}
    model = next(iter(ctxs.values()))[0]
    tokens = model.tokenize(dv.reference_text().encode(), add_bos=True, special=False)  # type: ignore[attr-defined]
    chunks = [tokens[i * CHUNK : (i + 1) * CHUNK] for i in range(len(tokens) // CHUNK)]
    for chunk in chunks:
        chunk[0] = tokens[0]  # BOS first, as both sides do
    clock = time.process_time if args.cpu else time.perf_counter
    times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for _ in range(args.reps):
        for name, cfg in LAYOUTS.items():
            times[name].append(decode_all(ctxs[name][1], chunks, cfg[4], cfg[2], clock))
    unit = "CPU-s" if args.cpu else "s"
    print(f"{args.label}, {len(chunks)} chunks of {CHUNK}, {args.threads} threads, {args.reps} reps interleaved ({unit}):")
    for name, xs in times.items():
        print(f"  {name:58s} {' '.join(f'{x:6.2f}' for x in xs)}  min {min(xs):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
