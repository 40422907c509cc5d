"""The workbench against llama-bench: same file, llama.cpp build, threads, CPU-buffer setting.

llama-bench is built from the llama.cpp tree inside the pinned llama-cpp-python sdist, so both
sides run the same engine. The workbench side goes through the real worker and protocol, so the
figures compared are the ones the app shows. Test shapes follow llama-bench:
- pp N: a prompt of N tokens processed in one batch from an empty context (prefill tok/s).
- tg N: N tokens generated one at a time after a one-token prompt (decode tok/s).
Ratios are medians over medians: the workbench's median rate over llama-bench's median rate.
On a shared machine whose speed drifts by minutes, `pooled` combines interleaved rounds
(llama-bench, workbench, llama-bench, …) so both tools sample the same machine states.
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
    samples: list[float] = field(default_factory=list, repr=False)

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
        d["pp_ratio_ci95"] = ratio_interval(self.workbench_pp, self.llama_bench_pp)
        d["tg_ratio_ci95"] = ratio_interval(self.workbench_tg, self.llama_bench_tg)
        return d


def summarize(values: list[float]) -> Figure:
    """Mean, sample standard deviation and median of repeated measurements."""
    if not values:
        raise ValueError("no measurements")
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Figure(statistics.fmean(values), sd, len(values), statistics.median(values), list(values))


def pooled(figures: list[Figure]) -> Figure:
    """One figure from several rounds' samples (a round without samples contributes its mean)."""
    values = [v for f in figures for v in (f.samples or [f.mean])]
    return summarize(values)


def ratio(workbench: Figure | None, reference: Figure | None) -> float | None:
    """Workbench over llama-bench, median over median: one noisy repetition moves neither side."""
    if workbench is None or reference is None:
        return None
    ref = reference.median if reference.median is not None else reference.mean
    ours = workbench.median if workbench.median is not None else workbench.mean
    return ours / ref if ref else None


def ratio_interval(workbench: Figure | None, reference: Figure | None, level: float = 0.95,
                   n_boot: int = 4000, seed: int = 0) -> tuple[float, float] | None:
    """Bootstrap interval of the ratio of medians: how far the machine's noise alone moves it."""
    if workbench is None or reference is None or len(workbench.samples) < 3 or len(reference.samples) < 3:
        return None
    import numpy as np

    rng = np.random.default_rng(seed)
    a, b = np.asarray(workbench.samples), np.asarray(reference.samples)
    ratios = (np.median(rng.choice(a, (n_boot, a.size)), axis=1) /
              np.median(rng.choice(b, (n_boot, b.size)), axis=1))
    lo, hi = np.percentile(ratios, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


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
                     statistics.median(samples), [float(x) for x in samples])
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
    from workbench.engine.pool import LoadSettings, WorkerProcess
    from workbench.engine.protocol import Generate, Tokenize

    worker = WorkerProcess()
    try:
        loaded = worker.load(LoadSettings(file, n_ctx, threads, gpu_layers, use_extra_bufts))
        probe = worker.call(Tokenize(text="The quick brown fox jumps over the lazy dog. " * 64), {"tokenized"})
        tokens = (probe["tokens"] * (pp // max(1, len(probe["tokens"])) + 1))[:pp]
        pp_rates, tg_rates, ttfts = [], [], []
        for i in range(reps + 1):
            a = worker.call(Generate(prompt_tokens=tokens, max_tokens=1, ignore_eos=True), {"done"})["metrics"]
            b = worker.call(Generate(prompt_tokens=tokens[:1], max_tokens=tg + 1, ignore_eos=True), {"done"})["metrics"]
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


def rows_from_json(data: dict[str, Any]) -> list[BenchRow]:
    """BenchRows back from a recorded run (`--json` output)."""
    def fig(d: dict[str, Any] | None) -> Figure | None:
        return None if d is None else Figure(**d)

    return [BenchRow(r["quant_type"], r["file"], r["size_bytes"], fig(r["llama_bench_pp"]), fig(r["llama_bench_tg"]),
                     fig(r["workbench_pp"]), fig(r["workbench_tg"]), r.get("ttft_s"), r.get("load_s"), r.get("settings", {}))
            for r in data["rows"]]


def merge_runs(runs: list[list[BenchRow]]) -> list[BenchRow]:
    """Pool the samples of several recorded runs of the same files, type by type (same protocol only)."""
    by_type: dict[str, list[BenchRow]] = {}
    for rows in runs:
        for row in rows:
            by_type.setdefault(row.quant_type, []).append(row)

    def pool_of(rows: list[BenchRow], attr: str) -> Figure | None:
        figs = [getattr(r, attr) for r in rows if getattr(r, attr) is not None]
        return pooled(figs) if figs else None

    def median_of(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    return [BenchRow(qt, rows[0].file, rows[0].size_bytes, pool_of(rows, "llama_bench_pp"), pool_of(rows, "llama_bench_tg"),
                     pool_of(rows, "workbench_pp"), pool_of(rows, "workbench_tg"), median_of([r.ttft_s for r in rows]),
                     median_of([r.load_s for r in rows]), rows[0].settings)
            for qt, rows in by_type.items()]


def markdown_table(rows: list[BenchRow], pp: int, tg: int) -> str:
    """Rates as median [min–max] over all samples (mean ± sd where samples are missing); ratios of
    medians with a 95% bootstrap interval where there are samples to resample."""
    def f(x: Figure | None) -> str:
        if x is None:
            return "—"
        if x.samples and x.median is not None:
            return f"{x.median:.1f} [{min(x.samples):.1f}–{max(x.samples):.1f}]"
        return f"{x.mean:.1f} ± {x.sd:.1f}"

    def r(x: float | None, ci: tuple[float, float] | None = None) -> str:
        if x is None:
            return "—"
        return f"{x:.3f}" if ci is None else f"{x:.3f} [{ci[0]:.2f}–{ci[1]:.2f}]"

    lines = [f"| type | MiB | llama-bench pp{pp} | workbench prefill | ratio | llama-bench tg{tg} | workbench decode | ratio | TTFT s (pp{pp}) | load s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.quant_type} | {row.size_bytes / 2**20:.1f} | {f(row.llama_bench_pp)} | {f(row.workbench_pp)} | "
                     f"{r(row.pp_ratio, ratio_interval(row.workbench_pp, row.llama_bench_pp))} | {f(row.llama_bench_tg)} | "
                     f"{f(row.workbench_tg)} | {r(row.tg_ratio, ratio_interval(row.workbench_tg, row.llama_bench_tg))} | "
                     f"{'—' if row.ttft_s is None else f'{row.ttft_s:.3f}'} | {'—' if row.load_s is None else f'{row.load_s:.2f}'} |")
    return "\n".join(lines)


def scaling_results(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Rows of the recorded scaling runs (docs/data/scaling-*.json), each tagged with its machine."""
    folder = Path(directory) if directory else Path(__file__).resolve().parents[2] / "docs" / "data"
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
