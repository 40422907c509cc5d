"""How much does measured CPU contention cost decode speed? Calibrates the "disturbed" threshold.

Runs one quantization of the demo ladder through the real worker while K busy-loop processes each
use a duty cycle of D of a core (busy D x 10 ms, asleep the rest), for 1 and 2 llama.cpp threads,
and prints, per condition, the contention the worker measured (workbench/core/disturbance.py) against
the decode speed relative to the same thread count with no load. Record results in
docs/benchmarks.md ("Disturbance").

    .venv/bin/python benchmarks/disturbance_calibration.py [--label Q8_0] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from workbench.engine.pool import WorkerPool
from workbench.models.ladder import ensure_demo_ladder
from workbench.runs.compare import contestants_for, run_comparison
from workbench.runs.contestants import RunSettings

PROMPT = "Write a long story about a lighthouse keeper and a storm, with many details."
HOG = """
import time, sys
duty = float(sys.argv[1]); end = time.time() + 600
while time.time() < end:
    t = time.perf_counter()
    while time.perf_counter() - t < duty * 0.01: pass
    if duty < 1: time.sleep((1 - duty) * 0.01)
"""
# the same duty cycle, but the busy part streams through memory (a copy of 64 MiB, larger than the caches), as a
# browser drawing a page or another program working through data does: it competes for caches and bandwidth
# without needing the worker's core
MEMORY_HOG = """
import time, sys
import numpy as np
duty = float(sys.argv[1]); end = time.time() + 600
a = np.ones(8 * 2**20); b = np.empty_like(a)
while time.time() < end:
    t = time.perf_counter()
    while time.perf_counter() - t < duty * 0.01: np.copyto(b, a)
    if duty < 1: time.sleep((1 - duty) * 0.01)
"""
CONDITIONS = {  # threads -> (busy processes, duty cycle of each)
    1: [(0, 0.0), (1, 0.1), (1, 0.25), (1, 0.5), (1, 1.0), (2, 0.25), (2, 0.5), (2, 1.0)],
    # two threads on two cores collapse under heavier load (a 100% busy process: < 1 tok/s), so only light loads
    2: [(0, 0.0), (1, 0.05), (1, 0.1), (1, 0.25), (1, 0.5)],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="Q8_0")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--hog", choices=("cpu", "memory"), default="cpu",
                    help="what the competing processes do while busy: spin (cpu) or copy 64 MiB arrays (memory)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    ladder = ensure_demo_ladder(lambda _m: None)
    contestants = contestants_for(ladder, [args.label], reference=args.label)
    pool = WorkerPool()
    rows = []
    try:
        for threads in args.threads:
            settings = RunSettings(max_tokens=args.max_tokens, n_threads=threads, n_ctx=512)
            run_comparison(pool, contestants, "Hello", settings)  # load outside the measurements
            base = None
            for hogs, duty in CONDITIONS[threads]:
                hog = MEMORY_HOG if args.hog == "memory" else HOG
                procs = [subprocess.Popen([sys.executable, "-c", hog, str(duty)]) for _ in range(hogs)]
                try:
                    time.sleep(0.5 if hogs else 0)
                    runs = [run_comparison(pool, contestants, PROMPT, settings).results[0] for _ in range(args.reps)]
                finally:
                    for p in procs:
                        p.kill()
                        p.wait()
                speed = statistics.median(r.decode_tok_s for r in runs)
                contention = statistics.median(r.measurement["decode"]["contention"] for r in runs)
                base = base or speed
                row = {"threads": threads, "hog": args.hog, "hogs": hogs, "duty": duty, "decode_tok_s": [r.decode_tok_s for r in runs],
                       "contention": [r.measurement["decode"]["contention"] for r in runs],
                       "disturbed": [r.disturbed for r in runs], "speed_vs_quiet": round(speed / base, 3)}
                rows.append(row)
                share = statistics.median(r.measurement["decode"]["others_share"] for r in runs)
                row["others_share"] = [r.measurement["decode"]["others_share"] for r in runs]
                print(f"threads {threads}  load {hogs} x {duty:>4.0%} {args.hog}  others {share:4.0%}  "
                      f"contention {contention:5.0%}  "
                      f"decode {speed:6.1f} tok/s  vs quiet {speed / base:5.2f}  disturbed {sum(map(bool, row['disturbed']))}/"
                      f"{len(runs)}", flush=True)
    finally:
        pool.shutdown()
    if args.out:
        args.out.write_text(json.dumps({"label": args.label, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
