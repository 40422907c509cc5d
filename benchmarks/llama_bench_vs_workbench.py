"""Run llama-bench and the workbench on the same files and settings, back to back; print ratios.

    .venv/bin/python benchmarks/llama_bench_vs_workbench.py --demo [--threads 2] [--reps 5] [--rounds 1] [--json out.json]
    .venv/bin/python benchmarks/llama_bench_vs_workbench.py FILE.gguf ... --gpu-layers 99 --cuda
    .venv/bin/python benchmarks/llama_bench_vs_workbench.py --merge run1.json run2.json   # pool recorded runs

llama-bench is built once from the pinned llama-cpp-python sdist (same llama.cpp as the bindings).
The CPU-buffer setting follows this machine's crash notes (see workbench/core/crash_fallback.py) for
both tools, so they always run the same code path. With --rounds N the two tools alternate N
times per file (llama-bench, workbench, llama-bench, …) and their samples are pooled, so a
machine whose speed drifts over minutes slows both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from workbench.core import crash_fallback, hardware
from workbench.core.hardware import llama_cpp_version
from workbench.files.gguf_info import read_header
from workbench.models.ladder import ensure_demo_ladder
from workbench.runs.benchmark import (
    BenchRow,
    build_llama_bench,
    markdown_table,
    merge_runs,
    pooled,
    rows_from_json,
    run_llama_bench,
    run_workbench,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--threads", type=int, default=hardware.default_threads())
    ap.add_argument("--pp", type=int, default=128)
    ap.add_argument("--tg", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5, help="repetitions per round")
    ap.add_argument("--rounds", type=int, default=1, help="alternate the two tools this many times per file")
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--cuda", action="store_true", help="build llama-bench with CUDA")
    ap.add_argument("--llama-bench", default=None, help="use this llama-bench binary instead of building one")
    ap.add_argument("--same-libs", action="store_true",
                    help="run the workbench on llama-bench's own llama.cpp libraries (LLAMA_CPP_LIB_PATH), so both "
                         "sides run identical binaries and only the workbench's overhead differs")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--merge", nargs="+", default=None, metavar="RUN.json",
                    help="run nothing: pool the samples of recorded runs (same files and protocol) and print the table")
    args = ap.parse_args()
    if args.merge:
        runs = [json.loads(Path(p).read_text()) for p in args.merge]
        print(markdown_table(merge_runs([rows_from_json(r) for r in runs]), runs[0]["meta"]["pp"], runs[0]["meta"]["tg"]))
        return 0

    files = [f.path for f in ensure_demo_ladder(print).files] if args.demo else args.files
    if not files:
        ap.error("name GGUF files or use --demo")
    use_extra_bufts = crash_fallback.use_extra_bufts_setting()
    repack = None if use_extra_bufts is None else use_extra_bufts
    binary = Path(args.llama_bench) if args.llama_bench else build_llama_bench(cuda=args.cuda)
    if args.same_libs:
        os.environ["LLAMA_CPP_LIB_PATH"] = str(binary.parent)  # workers inherit it
    rows = []
    for f in files:  # one file at a time, each tool back to back, so both see the same machine state
        info = read_header(f)
        lbs, wbs = [], []
        for rnd in range(args.rounds):
            print(f"[{info.quant_type}] round {rnd + 1}/{args.rounds}: llama-bench …", file=sys.stderr, flush=True)
            lb = run_llama_bench(binary, [f], threads=args.threads, pp=args.pp, tg=args.tg, reps=args.reps,
                                 repack=repack, gpu_layers=args.gpu_layers)
            lbs.append(next(iter(lb.values())))
            print(f"[{info.quant_type}] round {rnd + 1}/{args.rounds}: workbench …", file=sys.stderr, flush=True)
            wbs.append(run_workbench(f, threads=args.threads, pp=args.pp, tg=args.tg, reps=args.reps,
                                     use_extra_bufts=use_extra_bufts, gpu_layers=args.gpu_layers))
        wb = wbs[-1]
        rows.append(BenchRow(info.quant_type, f, info.size_bytes, pooled([x["pp"] for x in lbs]),
                             pooled([x["tg"] for x in lbs]), pooled([x["pp"] for x in wbs]),
                             pooled([x["tg"] for x in wbs]), statistics.median(x["ttft_s"] for x in wbs),
                             statistics.median(x["load_s"] for x in wbs),
                             {"gpu_layers": wb["gpu_layers"], "gpu_mem_bytes": wb["gpu_mem_bytes"],
                              "use_extra_bufts": wb["use_extra_bufts"]}))
        print(f"[{info.quant_type}] pp ratio {rows[-1].pp_ratio:.3f}  tg ratio {rows[-1].tg_ratio:.3f}", file=sys.stderr)
    meta = {"machine": hardware.machine().one_line(), "platform": platform.platform(), "python": platform.python_version(),
            "llama_cpp": llama_cpp_version(), "threads": args.threads, "pp": args.pp, "tg": args.tg, "reps": args.reps,
            "rounds": args.rounds, "gpu_layers": args.gpu_layers,
            "same_libs": args.same_libs or bool(os.environ.get("LLAMA_CPP_LIB_PATH")),
            "repack": "llama.cpp default" if repack is None else repack,
            "when": datetime.now(UTC).isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
    print(json.dumps(meta, indent=2))
    print(markdown_table(rows, args.pp, args.tg))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": [r.to_dict() for r in rows]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
