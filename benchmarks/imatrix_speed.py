"""How long an importance matrix and each quantization take on this machine, next to llama.cpp's own tools.

Issue 26 asks docs/benchmarks.md for the time to compute the matrix (tokens/s) and to quantize each type. This
runs, on the demo F16 and the bundled reference text (6 chunks of 512 tokens):

- the matrix: `workbench imatrix --demo --reference-text` (the CLI, as a user runs it) and `llama-imatrix` over
  the same text, chunks and threads, interleaved ours, theirs, ours, theirs … (`--repeats` each);
- each type: `quantize()` (the workbench's child process) with and without that matrix, and `llama-quantize`
  with it, once each, in the same order for every type.

Medians and min–max are printed as a Markdown table. BIN_DIR is what `bash ../shared/tools/build-llama-tools.sh`
prints (built from the bindings' own source):

    WORKBENCH_THREADS=2 .venv/bin/python benchmarks/imatrix_speed.py BIN_DIR [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench.models.ladder import ensure_demo_ladder  # noqa: E402
from workbench.models.quantize import quantize  # noqa: E402

TYPES = ("Q8_0", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K", "IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_XXS", "IQ2_M", "IQ2_XXS")


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - t0


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bin_dir", help="folder with llama-imatrix and llama-quantize")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    bin_dir, threads = Path(args.bin_dir), str(args.threads)
    ref = ensure_demo_ladder().reference.path
    text = ROOT / "prompts" / "reference_text.txt"
    work = Path(tempfile.mkdtemp(prefix="imatrix-speed-"))
    ours_m, theirs_m = work / "ours.imatrix.gguf", work / "theirs.imatrix.gguf"
    ours, theirs, tokens = [], [], 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "workbench", "imatrix", "--demo", "--reference-text", "--chunks",
                              "6", "--out", str(ours_m), "--json"], check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_THREADS": threads})
        ours.append(time.perf_counter() - t0)
        tokens = int(json.loads(out.stdout)["calibration"]["tokens"])
        theirs.append(timed([str(bin_dir / "llama-imatrix"), "-m", ref, "-f", str(text), "-c", "512", "--chunks", "6",
                             "-t", threads, "-o", str(theirs_m)]))
    print(f"matrix: {tokens} tokens, {args.repeats} runs each, interleaved, {threads} threads\n")
    print("| tool | wall s, median (min–max) | tokens/s (median) |\n|---|---|---|")
    for name, runs in (("workbench imatrix (CLI: start, load, collect, write)", ours), ("llama-imatrix", theirs)):
        print(f"| {name} | {spread(runs)} | {tokens / statistics.median(runs):.0f} |")
    print(f"\nratio ours/theirs (medians): {statistics.median(ours) / statistics.median(theirs):.2f}\n")
    print("| type | static (workbench) s | with matrix (workbench) s | with matrix (llama-quantize) s | MiB |")
    print("|---|---|---|---|---|")
    for qt in TYPES:
        static = "needs a matrix"
        if qt not in ("IQ3_XXS", "IQ2_M", "IQ2_XXS"):
            t0 = time.perf_counter()
            quantize(ref, work / f"s.{qt}.gguf", qt, args.threads)
            static = f"{time.perf_counter() - t0:.1f}"
        t0 = time.perf_counter()
        dst = quantize(ref, work / f"i.{qt}.gguf", qt, args.threads, imatrix=ours_m)
        with_ours = time.perf_counter() - t0
        theirs_q = timed([str(bin_dir / "llama-quantize"), "--imatrix", str(ours_m), ref, str(work / f"t.{qt}.gguf"),
                          qt, threads])
        print(f"| {qt} | {static} | {with_ours:.1f} | {theirs_q:.1f} | {dst.stat().st_size / 2**20:.0f} |")
    for f in work.iterdir():
        f.unlink()
    work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
