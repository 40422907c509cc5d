"""Two costs of the workbench itself, measured through the real library:

1. Warm re-runs: a second prompt to already-loaded workers. Reported: time from the request to the
   first token minus the prefill (the workbench's own latency before streaming), and whether any
   model was reloaded (goal: < 100 ms, no reload).
2. Comparison overhead: four contestants run one after another in one comparison, against the sum
   of the same four run standalone (each in a fresh pool: worker start + load + generate).
   Goal: ≤ 1.05 ×. A warm-up round (discarded) fills the page cache; the order of the two
   sides alternates between rounds so neither always runs on a warmer machine.

    .venv/bin/python benchmarks/warm_and_overhead.py [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from workbench.engine.pool import WorkerPool
from workbench.models.ladder import ensure_demo_ladder
from workbench.runs.compare import contestants_for, run_comparison, run_contestant
from workbench.runs.contestants import RunSettings

PROMPTS = ["List three colours of the rainbow.", "Name two planets of the solar system."]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ladder = ensure_demo_ladder()
    settings = RunSettings(max_tokens=args.max_tokens)
    contestants = [c for c in contestants_for(ladder, ["Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K"]) if not c.is_reference]

    def standalone_sum() -> float:
        total = 0.0
        for c in contestants:
            pool = WorkerPool()
            t = time.perf_counter()
            r = run_contestant(pool, c, settings, settings.messages(PROMPTS[0]))
            total += time.perf_counter() - t
            pool.shutdown()
            if not r.ok:
                raise SystemExit(f"{c.label}: {r.error}")
        return total

    def comparison() -> tuple[float, list[float], int]:
        pool = WorkerPool()
        try:
            t = time.perf_counter()
            comp = run_comparison(pool, contestants, PROMPTS[0], settings)
            together = time.perf_counter() - t
            if not comp.all_ok:
                raise SystemExit("a contestant failed: " + "; ".join(r.error or "" for r in comp.results))
            warm = run_comparison(pool, contestants, PROMPTS[1], settings)  # a second prompt, models loaded
            latency = [r.ttft_s - r.prefill_s for r in warm.results]
            return together, latency, sum(0 if r.warm else 1 for r in warm.results)
        finally:
            pool.shutdown()

    standalone_sum(), comparison()  # warm-up: page cache, imports
    ratios, warm_lat, reloads, rounds = [], [], 0, []
    for rep in range(args.reps):
        if rep % 2 == 0:
            alone = standalone_sum()
            together, latency, reloaded = comparison()
        else:
            together, latency, reloaded = comparison()
            alone = standalone_sum()
        ratios.append(together / alone)
        warm_lat += latency
        reloads += reloaded
        rounds.append({"comparison_s": together, "standalone_sum_s": alone})
        print(f"rep {rep + 1}: comparison {together:.2f} s vs standalone sum {alone:.2f} s "
              f"= {together / alone:.3f}×", file=sys.stderr, flush=True)
    out = {
        "comparison_over_standalone": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                                       "n": len(ratios)},
        "warm_latency_before_first_token_s": {"median": statistics.median(warm_lat), "max": max(warm_lat),
                                              "n": len(warm_lat)},
        "reloads_on_second_prompt": reloads,
        "rounds": rounds,
        "contestants": [c.label for c in contestants],
        "max_tokens": args.max_tokens,
        "threads": settings.n_threads,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
