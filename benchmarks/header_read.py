"""How long reading a GGUF header takes, and how much memory: the bounded parser (workbench.files.gguf_header, used by
`gguf_info.read_header`) against gguf.GGUFReader (what read_header used before issue 14). Record results in
docs/benchmarks.md ("GGUF header reading").

Files: the embedded demo's source (SmolLM2-135M, 49k tokens + 49k merges) and a synthetic llama GGUF with a
256,000-entry tokenizer (tokens, scores, token types) and a few tiny tensors, written with the gguf package.

    .venv/bin/python benchmarks/header_read.py [--reps 5] [--no-old]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's workbench, and the tests' GGUF factory

import gguf  # noqa: E402
from gguf_factory import big_vocab_gguf  # noqa: E402

from workbench.files.gguf_header import file_fetch, parse_header  # noqa: E402
from workbench.files.gguf_info import _read_header_cached  # noqa: E402
from workbench.models.ladder import demo_source  # noqa: E402


def new_read(path: Path):
    st = path.stat()
    return _read_header_cached.__wrapped__(str(path), st.st_size, st.st_mtime_ns, False)


def old_read(path: Path):
    reader = gguf.GGUFReader(path)
    return len(reader.fields), len(reader.tensors)


def measure(fn, path: Path, reps: int) -> tuple[float, float, int]:
    times = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t0)
    gc.collect()
    tracemalloc.start()
    fn(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), min(times), peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-old", action="store_true", help="skip gguf.GGUFReader (seconds per file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = big_vocab_gguf(Path(tmp) / "big-vocab-256k.gguf")
        files = {"SmolLM2-135M (49k vocab)": demo_source(), "synthetic 256k vocab": big}
        print(f"{'file':28} {'header bytes':>12} {'reader':18} {'median s':>9} {'min s':>7} {'peak MB':>8}")
        for label, path in files.items():
            with open(path, "rb") as fh:
                hb = parse_header(file_fetch(fh), str(path)).data_offset
            readers = [("bounded parser", new_read)] + ([] if args.no_old else [("gguf.GGUFReader", old_read)])
            for name, fn in readers:
                med, best, peak = measure(fn, Path(path), args.reps if fn is new_read else max(1, args.reps // 2))
                print(f"{label:28} {hb:>12,} {name:18} {med:>9.3f} {best:>7.3f} {peak / 2**20:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
