"""How cost grows with model size: synthetic llama models, quantized, loaded and run by a real worker.

    .venv/bin/python benchmarks/scaling.py --sizes 0.1B,0.5B,1B,3B --types Q8_0,Q4_K_M,Q2_K --json scaling-cpu.json
    python benchmarks/scaling.py --sizes 1B,3B,8B --gpu-layers 99 --vocab vocab.gguf --json scaling-gpu.json

For each size and type: file size, load time, decode and prefill tok/s, the worker's peak RSS
(and NVML GPU memory with offload), and the fit prediction for the same file and context, with
its error. The models are synthetic (random weights; see workbench/files/synthetic.py): good for cost,
meaningless for quality.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from workbench.core import crash_fallback, hardware
from workbench.core.hardware import llama_cpp_version
from workbench.engine.pool import LoadSettings, WorkerProcess
from workbench.engine.protocol import Generate, Tokenize
from workbench.files import fit
from workbench.files.gguf_info import read_header
from workbench.files.synthetic import SHAPES, write_synthetic
from workbench.models.ladder import demo_source
from workbench.models.quantize import quantize


def measure(path: Path, *, threads: int, gpu_layers: int, n_ctx: int, pp: int, tg: int) -> dict:
    w = WorkerProcess()
    try:
        loaded = w.load(LoadSettings(str(path), n_ctx, threads, gpu_layers, crash_fallback.use_extra_bufts_setting()))
        tokens = w.call(Tokenize(text="The quick brown fox jumps over the lazy dog. " * 40), {"tokenized"})["tokens"][:pp]
        a = w.call(Generate(prompt_tokens=tokens, max_tokens=tg + 1, ignore_eos=True), {"done"})["metrics"]
        b = w.call(Generate(prompt_tokens=tokens, max_tokens=tg + 1, ignore_eos=True), {"done"})["metrics"]
        return {"load_s": loaded["load_s"], "prefill_tok_s": b["prefill_tok_s"], "decode_tok_s": b["decode_tok_s"],
                "peak_rss_bytes": b["peak_rss_bytes"], "gpu_mem_bytes": b["gpu_mem_bytes"],
                "gpu_layers": loaded["gpu_layers"], "first_run_decode_tok_s": a["decode_tok_s"]}
    finally:
        w.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.1B,0.5B,1B,3B")
    ap.add_argument("--types", default="Q8_0,Q4_K_M,Q2_K")
    ap.add_argument("--vocab", default=None, help="GGUF whose tokenizer to use (default: the demo model's)")
    ap.add_argument("--dir", default=None, help="where to write the models (default: a cache folder)")
    ap.add_argument("--threads", type=int, default=hardware.default_threads())
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--pp", type=int, default=128)
    ap.add_argument("--tg", type=int, default=32)
    ap.add_argument("--keep-f16", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from workbench.runs.benchmark import cache_dir

    out_dir = Path(args.dir) if args.dir else cache_dir() / "synthetic"
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = args.vocab or str(demo_source())
    machine = hardware.machine()
    rows = []
    for size in args.sizes.split(","):
        shape = SHAPES[size]
        f16 = out_dir / f"synthetic-{size}.F16.gguf"
        t = time.time()
        needed = [qt for qt in args.types.split(",") if not (out_dir / f"synthetic-{size}.{qt}.gguf").exists()]
        if needed and not f16.exists():
            write_synthetic(vocab, f16, shape)
        if f16.exists():
            print(f"[{size}] F16 {f16.stat().st_size / 2**30:.2f} GiB in {time.time() - t:.0f} s", file=sys.stderr, flush=True)
        for qt in args.types.split(","):
            q = out_dir / f"synthetic-{size}.{qt}.gguf"
            if not q.exists():
                t = time.time()
                quantize(f16, q, qt, os.cpu_count())
                print(f"[{size}] {qt} quantized in {time.time() - t:.0f} s", file=sys.stderr, flush=True)
            info = read_header(q)
            m = measure(q, threads=args.threads, gpu_layers=args.gpu_layers, n_ctx=args.ctx, pp=args.pp, tg=args.tg)
            pred = fit.predict(info, n_ctx=args.ctx, ram_available_bytes=machine.ram_available_bytes,
                               gpus=machine.gpus if args.gpu_layers else [], gpu_offload=bool(args.gpu_layers))
            row = {"size": size, "params": info.n_params, "type": qt, "file_bytes": info.size_bytes, **m,
                   "predicted_ram_bytes": pred.ram_bytes, "predicted_vram_bytes": pred.vram_bytes,
                   "ram_error": pred.ram_bytes / m["peak_rss_bytes"] - 1,
                   "vram_error": (pred.vram_bytes / m["gpu_mem_bytes"] - 1) if m["gpu_mem_bytes"] else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
        if not args.keep_f16:
            f16.unlink(missing_ok=True)
    meta = {"machine": machine.one_line(), "llama_cpp": llama_cpp_version(), "threads": args.threads,
            "gpu_layers": args.gpu_layers, "ctx": args.ctx, "pp": args.pp, "tg": args.tg, "command": " ".join(sys.argv)}
    print("| size | params | type | file MiB | load s | prefill tok/s | decode tok/s | peak RSS MiB | predicted RSS MiB | error | GPU MiB (NVML, process) | predicted VRAM MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gpu = "—" if r["gpu_mem_bytes"] is None else f"{r['gpu_mem_bytes'] / 2**20:.0f}"
        print(f"| {r['size']} | {r['params'] / 1e9:.2f}B | {r['type']} | {r['file_bytes'] / 2**20:.0f} | {r['load_s']:.2f} | "
              f"{r['prefill_tok_s']:.0f} | {r['decode_tok_s']:.1f} | {r['peak_rss_bytes'] / 2**20:.0f} | "
              f"{r['predicted_ram_bytes'] / 2**20:.0f} | {r['ram_error']:+.1%} | {gpu} | {r['predicted_vram_bytes'] / 2**20:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
