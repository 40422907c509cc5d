"""The workbench against llama-bench: same file, llama.cpp build, threads, CPU-buffer setting.

llama-bench is built from the llama.cpp tree inside the pinned llama-cpp-python sdist, so both
sides run the same engine. The workbench side goes through the real worker and protocol, so the
figures compared are the ones the app shows. Test shapes follow llama-bench:
- pp N: a prompt of N tokens processed in one batch from an empty context (prefill tok/s).
- tg N: N tokens generated one at a time after a one-token prompt (decode tok/s).
Ratios are workbench median / llama-bench mean over the same number of repetitions.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

LLAMA_CPP_PYTHON_VERSION = "0.3.36"


@dataclass
class Figure:
    """A measured rate with its spread: tokens per second over repetitions."""

    mean: float
    sd: float
    n: int
    median: float | None = None

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.sd:.1f}"


@dataclass
class BenchRow:
    quant_type: str
    file: str
    size_bytes: int
    llama_bench_pp: Figure | None = None
    llama_bench_tg: Figure | None = None
    workbench_pp: Figure | None = None
    workbench_tg: Figure | None = None
    ttft_s: float | None = None
    load_s: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def pp_ratio(self) -> float | None:
        return ratio(self.workbench_pp, self.llama_bench_pp)

    @property
    def tg_ratio(self) -> float | None:
        return ratio(self.workbench_tg, self.llama_bench_tg)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pp_ratio"], d["tg_ratio"] = self.pp_ratio, self.tg_ratio
        return d


def summarize(values: list[float]) -> Figure:
    """Mean, sample standard deviation and median of repeated measurements."""
    if not values:
        raise ValueError("no measurements")
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Figure(statistics.fmean(values), sd, len(values), statistics.median(values))


def ratio(workbench: Figure | None, reference: Figure | None) -> float | None:
    """Workbench over llama-bench; the workbench's median guards against one noisy repetition."""
    if workbench is None or reference is None or not reference.mean:
        return None
    return (workbench.median if workbench.median is not None else workbench.mean) / reference.mean


def parse_llama_bench_json(text: str) -> dict[str, dict[str, Figure]]:
    """llama-bench `-o json` output → {model_file: {"pp": Figure, "tg": Figure}}.

    Each entry with n_prompt > 0 and n_gen == 0 is a pp test; n_gen > 0 and n_prompt == 0 a tg test.
    """
    out: dict[str, dict[str, Figure]] = {}
    for entry in json.loads(text):
        kind = "pp" if entry.get("n_gen", 0) == 0 else "tg" if entry.get("n_prompt", 0) == 0 else None
        if kind is None:
            continue
        samples = entry.get("samples_ts") or [entry["avg_ts"]]
        fig = Figure(float(entry["avg_ts"]), float(entry.get("stddev_ts", 0.0)), len(samples),
                     statistics.median(samples))
        out.setdefault(entry["model_filename"], {})[kind] = fig
    return out


# ---- building llama-bench ----------------------------------------------------------------------
def cache_dir() -> Path:
    path = Path(platformdirs.user_cache_dir("quant-workbench", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sdist_path() -> Path:
    """The pinned llama-cpp-python sdist, downloaded once from PyPI into the cache."""
    target = cache_dir() / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if not target.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(cache_dir())], check=True)
    return target


def build_llama_bench(cuda: bool = False, jobs: int | None = None, log=print) -> Path:
    """Build llama-bench from the sdist's llama.cpp (cached; minutes the first time)."""
    flavour = "cuda" if cuda else "cpu"
    build = cache_dir() / f"llama-bench-{LLAMA_CPP_PYTHON_VERSION}-{flavour}"
    binary = build / "bin" / "llama-bench"
    if binary.exists():
        return binary
    src_root = cache_dir() / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"
    if not (src_root / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        log(f"unpacking {sdist_path().name}")
        with tarfile.open(sdist_path()) as tar:
            tar.extractall(cache_dir(), filter="data")
    shutil.rmtree(build, ignore_errors=True)
    args = ["cmake", "-S", str(src_root / "vendor" / "llama.cpp"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=OFF"]
    if cuda:
        args += ["-DGGML_CUDA=on", "-DCMAKE_CUDA_ARCHITECTURES=90"]
    log("configuring llama-bench: " + " ".join(args[5:]))
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    log("building llama-bench (several minutes the first time)")
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-bench", "-j", str(jobs or os.cpu_count() or 1)],
                   check=True, stdout=subprocess.DEVNULL)
    return binary


def run_llama_bench(binary: Path, files: list[str], *, threads: int, pp: int, tg: int, reps: int,
                    repack: bool | None, gpu_layers: int = 0) -> dict[str, dict[str, Figure]]:
    cmd = [str(binary), "-o", "json", "-t", str(threads), "-p", str(pp), "-n", str(tg), "-r", str(reps),
           "-ngl", str(gpu_layers)]
    if repack is not None:
        cmd += ["--repack", "1" if repack else "0"]
    for f in files:
        cmd += ["-m", f]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return parse_llama_bench_json(proc.stdout)


# ---- the workbench side ------------------------------------------------------------------------
def run_workbench(file: str, *, threads: int, pp: int, tg: int, reps: int, use_extra_bufts: bool | None,
                  gpu_layers: int = 0, n_ctx: int = 2048) -> dict[str, Any]:
    """pp and tg through a real worker (one warm-up of each first, as llama-bench does)."""
    from workbench.pool import LoadSettings, WorkerProcess

    worker = WorkerProcess()
    try:
        loaded = worker.load(LoadSettings(file, n_ctx, threads, gpu_layers, use_extra_bufts))
        probe = worker.call({"op": "tokenize", "id": 0, "text": "The quick brown fox jumps over the lazy dog. " * 64},
                            {"tokenized"})
        tokens = (probe["tokens"] * (pp // max(1, len(probe["tokens"])) + 1))[:pp]
        pp_rates, tg_rates, ttfts = [], [], []
        for i in range(reps + 1):
            a = worker.call({"op": "generate", "id": 1, "prompt_tokens": tokens, "max_tokens": 1, "ignore_eos": True},
                            {"done"})["metrics"]
            b = worker.call({"op": "generate", "id": 2, "prompt_tokens": tokens[:1], "max_tokens": tg + 1,
                             "ignore_eos": True}, {"done"})["metrics"]
            if i == 0:
                continue  # warm-up
            pp_rates.append(a["prefill_tok_s"])
            tg_rates.append(b["decode_tok_s"])
            ttfts.append(a["ttft_s"])
        return {"pp": summarize(pp_rates), "tg": summarize(tg_rates), "ttft_s": statistics.median(ttfts),
                "load_s": loaded["load_s"], "gpu_mem_bytes": loaded.get("gpu_mem_bytes"),
                "gpu_layers": loaded.get("gpu_layers"), "use_extra_bufts": loaded.get("use_extra_bufts")}
    finally:
        worker.shutdown()


def markdown_table(rows: list[BenchRow], pp: int, tg: int) -> str:
    def f(x: Figure | None) -> str:
        return "—" if x is None else f"{x.mean:.1f} ± {x.sd:.1f}"

    def r(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"

    lines = [f"| type | MiB | llama-bench pp{pp} | workbench prefill | ratio | llama-bench tg{tg} | workbench decode | ratio | TTFT s (pp{pp}) | load s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.quant_type} | {row.size_bytes / 2**20:.1f} | {f(row.llama_bench_pp)} | {f(row.workbench_pp)} | "
                     f"{r(row.pp_ratio)} | {f(row.llama_bench_tg)} | {f(row.workbench_tg)} | {r(row.tg_ratio)} | "
                     f"{'—' if row.ttft_s is None else f'{row.ttft_s:.3f}'} | {'—' if row.load_s is None else f'{row.load_s:.2f}'} |")
    return "\n".join(lines)


def scaling_results(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows of the recorded scaling runs (docs/data/scaling-*.json), each tagged with its machine."""
    folder = Path(directory) if directory else Path(__file__).resolve().parents[1] / "docs" / "data"
    rows = []
    for path in sorted(folder.glob("scaling-*.json")):
        data = json.loads(path.read_text())
        where = "GPU (all layers offloaded)" if data["meta"].get("gpu_layers") else "CPU"
        for r in data["rows"]:
            rows.append({**r, "machine": data["meta"].get("machine", "?"), "where": where, "source": path.name})
    return rows


def scaling_figure(rows: list[dict[str, Any]]):
    """Plotly figure: decode tok/s and peak memory against parameters, one line per type and machine."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Decode tok/s (synthetic models)",
                                                        "Peak memory MiB: measured (solid) vs fit prediction (dotted)"))
    keys = sorted({(r["where"], r["type"]) for r in rows})
    for where, qt in keys:
        pts = sorted((r for r in rows if r["where"] == where and r["type"] == qt), key=lambda r: r["params"])
        x = [r["params"] / 1e9 for r in pts]
        name = f"{qt} · {where}"
        fig.add_trace(go.Scatter(x=x, y=[r["decode_tok_s"] for r in pts], mode="lines+markers", name=name,
                                 legendgroup=name), row=1, col=1)
        mem = [(r["gpu_mem_bytes"] or r["peak_rss_bytes"]) / 2**20 if where.startswith("GPU") else r["peak_rss_bytes"] / 2**20
               for r in pts]
        pred = [(r["predicted_vram_bytes"] if where.startswith("GPU") else r.get("predicted_ram_bytes_now",
                 r["predicted_ram_bytes"])) / 2**20 for r in pts]
        fig.add_trace(go.Scatter(x=x, y=mem, mode="lines+markers", name=name, legendgroup=name, showlegend=False),
                      row=1, col=2)
        fig.add_trace(go.Scatter(x=x, y=pred, mode="lines", line={"dash": "dot"}, name=f"{name} predicted",
                                 legendgroup=name, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="parameters (billions)", type="log")
    fig.update_yaxes(type="log")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=40, b=10))
    return fig
