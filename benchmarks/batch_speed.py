"""Batch speed (issue 17): sequential vs batched generation, measured the same way on the same files.

Two measurements:

  sweep  generated tokens/s of one batch of prompts through each file at 1, 2, 4, 8, 16 … sequences
         (`workbench.runs.batched.generate_many`, every prompt decoding exactly --tokens tokens: ignore_eos),
         against the same prompts one request at a time (`compare.run_contestant`, the sequential path).
             python benchmarks/batch_speed.py sweep --demo --n-seq 1,2,4,8,16 --prompts 16 --tokens 64
             python benchmarks/batch_speed.py sweep a.gguf b.gguf --gpu-layers 99 --prompt-tokens 128 …
  pack   a whole task pack over the ladder as the Evals page runs it, one case at a time (WORKBENCH_BATCH=off)
         and batched, alternating; wall time, cases/s, each quantization's pass rate with its Wilson 95%
         interval both ways, and the share of cases whose output is identical both ways.
             python benchmarks/batch_speed.py pack --demo --pack prompts/starter.toml --n-seq 8 --repeats 1

  anchor llama.cpp's own `llama-batched-bench` on the same file, build, threads and work (n prompts of
         --prompt-tokens ids, --tokens generated each, n sequences), interleaved with ours in the same run
         (ours, theirs, ours, theirs …); both figures are generated tokens per second of the whole time,
         prefill included (theirs: B·TG / T from its table), and the ratio ours / theirs (issue 28's target ≥ 0.95).
             python benchmarks/batch_speed.py anchor --demo --labels Q8_0,Q4_K_M --n-seq 16 --repeats 3 \
               --batched-bench "$(bash ../shared/tools/build-llama-tools.sh)/llama-batched-bench"

Figures are printed and written as JSON (--json). Medians are over --repeats runs; spread is min–max.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.core import hardware  # noqa: E402
from workbench.engine.pool import WorkerPool  # noqa: E402
from workbench.engine.protocol import Generate  # noqa: E402
from workbench.models import ladder as ladders  # noqa: E402
from workbench.runs.batched import BatchItem, generate_many  # noqa: E402
from workbench.runs.compare import contestants_for  # noqa: E402
from workbench.runs.contestants import RunSettings  # noqa: E402


def _ladder(args: argparse.Namespace) -> ladders.Ladder:
    if args.demo:
        return ladders.ensure_demo_ladder()
    lad, errors = ladders.ladder_from_files(args.files)
    if errors:
        raise SystemExit("; ".join(f"{p}: {e}" for p, e in errors.items()))
    return lad


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _machine() -> dict[str, Any]:
    m = hardware.machine()
    import llama_cpp

    return {"cpu": m.cpu_model, "cores": m.logical_cores, "gpus": [g.name for g in m.gpus],
            "python": platform.python_version(), "llama_cpp_python": llama_cpp.__version__}


def _settings(args: argparse.Namespace) -> RunSettings:
    return RunSettings(max_tokens=args.tokens, n_ctx=args.ctx, n_threads=args.threads,
                       n_gpu_layers=args.gpu_layers, gpu_offload="layers" if args.gpu_layers else "cpu")


def _contestants(args: argparse.Namespace) -> list[Any]:
    """The ladder's files that take part (--labels, else all), reference first."""
    lad = _ladder(args)
    labels = [f.label for f in lad.files] if not args.labels else args.labels.split(",")
    return [x for x in contestants_for(lad, labels, labels[0]) if x.label in labels]


def _items(n: int, args: argparse.Namespace) -> list[BatchItem]:
    """n prompts of --prompt-tokens token ids each (distinct, deterministic), --tokens to generate."""
    return [BatchItem(prompt_tokens=[1000 + (7 * i + k) % 5000 for k in range(args.prompt_tokens)],
                      max_tokens=args.tokens) for i in range(n)]


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    pool = WorkerPool()
    rows = []
    settings = _settings(args)
    try:
        for c in _contestants(args):
            items = _items(args.prompts, args)
            row: dict[str, Any] = {"label": c.label, "file": c.path, "prompts": args.prompts, "tokens": args.tokens}
            seq = []
            for _ in range(args.repeats):  # the sequential path: one request per prompt, as before batching
                _one(pool, c, settings, items[0])  # warm the single-sequence worker
                t0 = time.perf_counter()
                for it in items:
                    _one(pool, c, settings, it)
                seq.append(args.prompts * args.tokens / (time.perf_counter() - t0))
            row["sequential_tok_s"] = _spread(seq)
            for n in args.n_seq:
                generate_many(pool, c, settings, items[:n], n_seq=n, ignore_eos=True)  # load + warm
                rates = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    out = generate_many(pool, c, settings, items, n_seq=n, ignore_eos=True)
                    wall = time.perf_counter() - t0
                    if out.error:
                        raise SystemExit(out.error)
                    rates.append(sum(r.completion_tokens or 0 for r in out.results if r) / wall)
                row[f"n_seq_{n}_tok_s"] = _spread(rates)
                print(f"{c.label:8s} n_seq={n:3d}: {statistics.median(rates):8.1f} tok/s "
                      f"({statistics.median(rates) / statistics.median(seq):.2f}x sequential)", flush=True)
            rows.append(row)
    finally:
        pool.shutdown()
    return {"mode": "sweep", "machine": _machine(), "args": vars(args), "rows": rows}


def _batched_bench(exe: str, path: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    """One llama-batched-bench run: n sequences, the same KV size per sequence and micro-batch as ours
    (RunSettings' n_ctx per sequence, n_batch 512), its table's row parsed."""
    cmd = [exe, "-m", path, "-c", str(args.ctx * n), "-b", "512", "-ub", "512", "-npp", str(args.prompt_tokens),
           "-ntg", str(args.tokens), "-npl", str(n), "-t", str(args.threads), "-tb", str(args.threads),
           "-ngl", str(args.gpu_layers)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    rows = [line.strip("|").split("|") for line in out.stdout.splitlines() if line.startswith("|")]
    data = [[c.strip() for c in r] for r in rows if r and r[0].strip().isdigit()]
    if out.returncode != 0 or not data:
        raise SystemExit(f"llama-batched-bench failed ({out.returncode}): {out.stderr[-800:]}")
    pp, tg, b, _n_kv, t_pp, _s_pp, t_tg, _s_tg, t, _s = (float(c) for c in data[-1][:10])
    return {"pp": pp, "tg": tg, "b": b, "t_pp_s": t_pp, "t_tg_s": t_tg, "t_s": t, "gen_tok_s": b * tg / t}


def anchor(args: argparse.Namespace) -> dict[str, Any]:
    pool = WorkerPool()
    rows = []
    settings = _settings(args)
    try:
        for c in _contestants(args):
            for n in args.n_seq:
                items = _items(n, args)
                generate_many(pool, c, settings, items, n_seq=n, ignore_eos=True)  # load + warm
                ours, theirs, runs = [], [], []
                for _ in range(args.repeats):  # interleaved: both sides see the same moments of a shared machine
                    t0 = time.perf_counter()
                    out = generate_many(pool, c, settings, items, n_seq=n, ignore_eos=True)
                    wall = time.perf_counter() - t0
                    if out.error:
                        raise SystemExit(out.error)
                    ours.append(sum(r.completion_tokens or 0 for r in out.results if r) / wall)
                    runs.append(_batched_bench(args.batched_bench, c.path, n, args))
                    theirs.append(runs[-1]["gen_tok_s"])
                ratio = statistics.median(ours) / statistics.median(theirs)
                paired = [a / b for a, b in zip(ours, theirs, strict=True)]  # each run against its neighbour
                rows.append({"label": c.label, "file": c.path, "n_seq": n, "prompts": n, "ours_tok_s": _spread(ours),
                             "llama_batched_bench_tok_s": _spread(theirs), "ratio": ratio,
                             "paired_ratio": _spread(paired), "ours": ours,
                             "theirs": theirs, "batched_bench_rows": runs})
                print(f"{c.label:8s} n_seq={n:3d}: ours {statistics.median(ours):8.1f} tok/s "
                      f"({min(ours):.1f}-{max(ours):.1f}), llama-batched-bench {statistics.median(theirs):8.1f} "
                      f"({min(theirs):.1f}-{max(theirs):.1f}): {ratio:.2f}x; run by run "
                      f"{statistics.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})", flush=True)
    finally:
        pool.shutdown()
    return {"mode": "anchor", "machine": _machine(), "args": vars(args), "rows": rows}


def _one(pool: WorkerPool, c: Any, settings: RunSettings, item: BatchItem) -> None:
    """One prompt as its own request, decoding exactly max_tokens (the benchmark's sequential baseline)."""
    from workbench.engine.access import WorkerAccess

    def use(worker: Any, loaded: Any) -> Any:
        return worker.call(Generate(prompt_tokens=item.prompt_tokens, max_tokens=item.max_tokens, temperature=0.0,
                                    ignore_eos=True), {"done"})

    WorkerAccess(pool, c.path, settings.placement()).run(use)


def pack(args: argparse.Namespace) -> dict[str, Any]:
    from workbench.quality import evals, evalstats
    from workbench.quality.packs import load_pack

    lad = _ladder(args)
    pk = load_pack(args.pack)
    contestants = contestants_for(lad, None)
    pool = WorkerPool()
    runs: dict[str, list[Any]] = {"sequential": [], "batched": []}
    times: dict[str, list[float]] = {"sequential": [], "batched": []}
    split: dict[str, list[dict[str, float]]] = {"sequential": [], "batched": []}
    spent = {"prefill_s": 0.0, "decode_s": 0.0}
    # where the time goes: the workers' own prefill and decode seconds, read from what the two calls the Evals
    # path makes return (one result per case one at a time; one batch outcome per file batched)
    run_one, run_many = evals.run_contestant, evals.generate_many

    def timed_one(*a: Any, **k: Any) -> Any:
        r = run_one(*a, **k)
        spent["prefill_s"] += float(r.prefill_s or 0.0)
        spent["decode_s"] += float(r.decode_s or 0.0)
        return r

    def timed_many(*a: Any, **k: Any) -> Any:
        o = run_many(*a, **k)
        spent["prefill_s"] += float(o.metrics.get("prefill_s") or 0.0)
        spent["decode_s"] += float(o.metrics.get("step_s") or 0.0)
        return o

    evals.run_contestant, evals.generate_many = timed_one, timed_many
    try:
        for _ in range(args.repeats):
            for mode in ("sequential", "batched"):
                os.environ["WORKBENCH_BATCH"] = "off" if mode == "sequential" else "on"
                spent.update(prefill_s=0.0, decode_s=0.0)
                t0 = time.perf_counter()
                run = evals.run_eval(pool, pk, contestants, None, n_seq=args.n_seq)
                times[mode].append(time.perf_counter() - t0)
                runs[mode].append(run)
                split[mode].append(dict(spent))
                print(f"{mode:10s}: {times[mode][-1]:7.1f} s, {len(run.outcomes) / times[mode][-1]:.2f} cases/s; "
                      f"in the workers: prefill {spent['prefill_s']:.1f} s, decode {spent['decode_s']:.1f} s",
                      flush=True)
    finally:
        evals.run_contestant, evals.generate_many = run_one, run_many
        os.environ.pop("WORKBENCH_BATCH", None)
        pool.shutdown()
    seq, bat = runs["sequential"][-1], runs["batched"][-1]
    per_label = []
    for c in contestants:
        a = {o.case_id: o for o in seq.outcomes if o.label == c.label}
        b = {o.case_id: o for o in bat.outcomes if o.label == c.label}
        pa, pb = sum(o.passed for o in a.values()), sum(o.passed for o in b.values())
        ia, ib = evalstats.wilson_interval(pa, len(a)), evalstats.wilson_interval(pb, len(b))
        same = sum(a[k].output == b[k].output for k in a if k in b)
        per_label.append({"label": c.label, "cases": len(a), "sequential_passed": pa, "batched_passed": pb,
                          "sequential_interval": ia, "batched_interval": ib, "identical_outputs": same,
                          "each_within_the_others_interval": ia[0] <= pb / max(len(b), 1) <= ia[1]
                          and ib[0] <= pa / max(len(a), 1) <= ib[1]})
        print(f"{c.label:8s} pass {pa}/{len(a)} vs {pb}/{len(b)}; identical outputs {same}/{len(a)}", flush=True)
    speedup = statistics.median(times["sequential"]) / statistics.median(times["batched"])
    print(f"whole pack: {speedup:.2f}x faster batched (n_seq {args.n_seq})")
    return {"mode": "pack", "machine": _machine(), "args": vars(args), "seconds": {k: _spread(v) for k, v in times.items()},
            "speedup": speedup, "labels": per_label, "worker_seconds": split}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("sweep", "anchor", "pack"):
        p = sub.add_parser(name)
        p.add_argument("files", nargs="*")
        p.add_argument("--demo", action="store_true")
        p.add_argument("--repeats", type=int, default=1)
        p.add_argument("--json", default=None)
    for s in (sub.choices["sweep"], sub.choices["anchor"]):
        s.add_argument("--labels", default=None)
        s.add_argument("--n-seq", type=lambda v: [int(x) for x in v.split(",")],
                       default=[1, 2, 4, 8, 16] if s is sub.choices["sweep"] else [16])
        s.add_argument("--prompts", type=int, default=16)  # sweep only: anchor runs n prompts at n sequences
        s.add_argument("--tokens", type=int, default=64)
        s.add_argument("--prompt-tokens", type=int, default=32)
        s.add_argument("--ctx", type=int, default=512)
        s.add_argument("--threads", type=int, default=hardware.default_threads())
        s.add_argument("--gpu-layers", type=int, default=0)
    sub.choices["anchor"].add_argument("--batched-bench", required=True, help="path to llama-batched-bench")
    pk = sub.choices["pack"]
    pk.add_argument("--pack", default=str(ROOT / "prompts" / "starter.toml"))
    pk.add_argument("--n-seq", type=int, default=8)
    args = ap.parse_args()
    out = {"sweep": sweep, "anchor": anchor, "pack": pack}[args.mode](args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
