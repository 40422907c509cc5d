"""Concurrent browser sessions on the Compare page: how long each waits when N press Run at once.

What it measures (issue 12): N separate browser sessions press **Run** on the Compare page at the
same moment. The worker pool queues their comparisons machine-wide, so the ideal is that the last
one finishes after about N times a single run; the issue saw a ~7 s comparison take 8 min 40 s
with two sessions because the Streamlit server starved the runs. For each N this reports every
session's wall time from its click until "Run #" appears (all contestants finished and stored),
their median and its ratio to N=1's median, and the CPU seconds spent in that round by the
Streamlit server process, by its other child processes, and by the model workers
(`python -m workbench.engine.worker`), plus the machine's load and every contestant's decode tok/s
read from the app's SQLite database.

How:
- The app is started as the README starts it (`bash scripts/app.sh --server.port PORT` in the
  repository), or with `--app-dir DIR --streamlit PATH` as `PATH run app.py --server.port PORT`
  in DIR, so an older checkout can be measured with this virtualenv (the workers run
  `python -m workbench.engine.worker` from the app's working directory, so DIR's code is what runs; the
  JSON records each worker's cwd and where `workbench` imports from there).
- `WORKBENCH_DATA_DIR` is a fresh temporary directory (an empty database) and
  `WORKBENCH_LADDERS_DIR` the already built ladders directory, so nothing is rebuilt.
- One Chromium (Debian's /usr/bin/chromium) with N separate browser contexts, i.e. N Streamlit
  sessions, driven with Playwright's async API: all N load the Compare page, wait for its heading,
  optionally set "Threads" in the settings expander (`--threads`; every other widget keeps the
  page's defaults), then click Run through one `asyncio.gather`, so the clicks happen together.
- One warm-up run of a single session comes first and is not counted (first loads are slow);
  every round then reuses the same app, so its workers are warm.
- CPU seconds come from psutil: the app's process tree is sampled every 0.5 s during a round
  (a child that starts and ends between two samples is missed, at most 0.5 s of its CPU).
- A session that does not reach "Run #" within `--timeout-s` of its click is recorded as not
  finished (no number); its comparison is then stopped with the page's Stop button.

    .venv/bin/python benchmarks/sessions.py [--sessions 1 2 4] [--threads 2] [--timeout-s 900]
        [--app-dir DIR --streamlit PATH] [--out docs/data/sessions-TIMESTAMP.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from workbench.storage.run_queries import peek_runs

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HEADING = "Compare quantizations"
SETTINGS_EXPANDER = "Settings (the same for every contestant)"
SAMPLE_EVERY_S = 0.5


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    t = psutil.cpu_times()
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def git_state(app_dir: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(app_dir), *args], capture_output=True, text=True, timeout=20)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "subject": git("log", "-1", "--format=%s"),
            "modified_tracked_files": None if status is None else len(status.splitlines())}


# ---- the app ------------------------------------------------------------------------------------
class App:
    """The app server in its own process group, and its process tree for CPU accounting."""

    def __init__(self, app_dir: Path, streamlit: str | None, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if streamlit:
            self.cmd = [streamlit, "run", "app.py", "--server.port", str(self.port)]
        else:
            self.cmd = ["bash", "scripts/app.sh", "--server.port", str(self.port)]
        self.app_dir = app_dir
        self.log_file = open(log_path, "w")
        self.log_path = log_path
        self.proc = subprocess.Popen(self.cmd, cwd=app_dir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.seen: dict[int, psutil.Process] = {}  # every descendant seen, for the clean-up

    def wait_healthy(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the app exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if urllib.request.urlopen(self.url + "/_stcore/health", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(1)
        raise SystemExit(f"the app did not answer on {self.url} within {timeout_s:.0f} s; see {self.log_path}")

    def server(self) -> psutil.Process:
        """The Streamlit server: the started process itself (scripts/app.sh execs streamlit)."""
        root = psutil.Process(self.proc.pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                if any("streamlit" in part for part in p.cmdline()[:3]):
                    return p
            except psutil.Error:
                continue
        return root

    def tree(self) -> dict[int, tuple[str, float, psutil.Process]]:
        """pid -> (kind, cumulative CPU seconds, process) for the server and every descendant."""
        out: dict[int, tuple[str, float, psutil.Process]] = {}
        try:
            server = self.server()
            procs = [server, *server.children(recursive=True)]
        except psutil.Error:
            return out
        for p in procs:
            try:
                with p.oneshot():
                    cmd = p.cmdline()
                    t = p.cpu_times()
                kind = ("server" if p.pid == server.pid
                        else "worker" if "workbench.engine.worker" in cmd else "other_children")
                out[p.pid] = (kind, t.user + t.system, p)
                self.seen.setdefault(p.pid, p)
            except psutil.Error:
                continue
        return out

    def workers(self) -> list[dict[str, Any]]:
        rows = []
        for pid, (kind, _cpu, p) in self.tree().items():
            if kind != "worker":
                continue
            try:
                rows.append({"pid": pid, "cwd": p.cwd(), "cmdline": p.cmdline()})
            except psutil.Error:
                continue
        return rows

    def stop(self) -> None:
        """SIGTERM to the app's process group, then to every descendant still alive (the workers run
        in their own sessions), SIGKILL for whatever is left."""
        procs = dict(self.seen)
        try:
            procs.update({p.pid: p for p in psutil.Process(self.proc.pid).children(recursive=True)})
        except psutil.Error:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        left = []
        for p in procs.values():  # psutil.Process refuses a pid that was reused meanwhile
            try:
                if p.is_running():
                    p.terminate()
                    left.append(p)
            except psutil.Error:
                continue
        _gone, alive = psutil.wait_procs(left, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        self.log_file.close()


class RoundMeter:
    """CPU seconds of the app's process tree, the browser and the machine over one round."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.me = psutil.Process()
        self._task: asyncio.Task | None = None

    def _browser_cpu(self) -> dict[int, float]:
        """This script's child processes other than the app's tree: Playwright's driver and Chromium."""
        out = {}
        for child in self.me.children():
            if child.pid == self.app.proc.pid:
                continue
            try:
                procs = [child, *child.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    t = p.cpu_times()
                    out[p.pid] = t.user + t.system
                except psutil.Error:
                    continue
        return out

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.base = {pid: (kind, cpu) for pid, (kind, cpu, _p) in self.app.tree().items()}
        self.last = dict(self.base)
        self.browser_base = self._browser_cpu()
        self.machine_base = machine_cpu()
        self.load_start = os.getloadavg()
        self.load1_max = self.load_start[0]
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            self._take()

    def _take(self) -> None:
        for pid, (kind, cpu, _p) in self.app.tree().items():
            self.last[pid] = (kind, cpu)
        self.load1_max = max(self.load1_max, os.getloadavg()[0])

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._take()
        cpu = {"server": 0.0, "other_children": 0.0, "worker": 0.0}
        new_workers = 0
        for pid, (kind, cpu_s) in self.last.items():
            before = self.base.get(pid, (kind, 0.0))[1]
            cpu[kind] += max(0.0, cpu_s - before)
            if kind == "worker" and pid not in self.base:
                new_workers += 1
        browser_now = self._browser_cpu()
        browser = sum(max(0.0, v - self.browser_base.get(pid, 0.0)) for pid, v in browser_now.items())
        busy, total = machine_cpu()
        seconds = time.monotonic() - self.t0
        app_cpu = cpu["server"] + cpu["other_children"] + cpu["worker"]
        return {
            "seconds": round(seconds, 2),
            "server_cpu_s": round(cpu["server"], 2),
            "server_other_children_cpu_s": round(cpu["other_children"], 2),
            "workers_cpu_s": round(cpu["worker"], 2),
            "workers_started_during_round": new_workers,
            "browser_and_driver_cpu_s": round(browser, 2),
            "machine_busy_cpu_s": round(busy - self.machine_base[0], 2),
            "machine_cpu_capacity_s": round(total - self.machine_base[1], 2),
            "machine_busy_outside_app_and_browser_cpu_s":
                round(max(0.0, busy - self.machine_base[0] - app_cpu - browser), 2),
            "loadavg_start": [round(x, 2) for x in self.load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "load1_max": round(self.load1_max, 2),
        }


# ---- one browser session --------------------------------------------------------------------------
async def open_session(browser, url: str, threads: int | None, timeout_s: float) -> tuple[Any, Any]:
    context = await browser.new_context(viewport={"width": 1600, "height": 1300})
    page = await context.new_page()
    await page.goto(url, timeout=timeout_s * 1000)
    await page.get_by_role("heading", name=HEADING).wait_for(timeout=timeout_s * 1000)
    run = page.get_by_role("button", name="Run", exact=True)
    await run.wait_for(timeout=timeout_s * 1000)
    if threads is not None:
        await page.get_by_text(SETTINGS_EXPANDER).click()
        box = page.get_by_label("Threads", exact=True)
        await box.wait_for(timeout=60_000)
        await box.fill(str(threads))
        await box.press("Enter")
        await box.blur()
        await settle(page)
        value = await box.input_value()
        if value != str(threads):
            raise SystemExit(f"could not set Threads to {threads} (the box says {value!r})")
    await settle(page)
    return context, page


async def settle(page, timeout_s: float = 60) -> None:
    """Let the session's script run that a widget change started finish (Streamlit's 'Running' badge)."""
    await page.wait_for_timeout(300)
    deadline = time.monotonic() + timeout_s
    status = page.locator("[data-testid='stStatusWidget']")
    while time.monotonic() < deadline:
        if await status.count() == 0 or not await status.first.is_visible():
            return
        await page.wait_for_timeout(200)


async def column_statuses(page) -> list[str]:
    """The status captions the live columns show (when a session did not finish: where it stood)."""
    try:
        texts = await page.locator("[data-testid='stCaptionContainer']").all_inner_texts()
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        return [f"(could not read: {exc})"]
    return [t.strip() for t in texts if t.strip()][:20]


async def click_and_wait(page, round_start: float, timeout_s: float) -> dict[str, Any]:
    run = page.get_by_role("button", name="Run", exact=True)
    t_click = time.monotonic()
    await run.click()
    try:
        await page.get_by_text("Run #").first.wait_for(timeout=timeout_s * 1000)
    except Exception as exc:  # noqa: BLE001 - Playwright's TimeoutError, or a page that went away
        return {"finished": False, "wall_s": None, "click_at_s": round(t_click - round_start, 3),
                "reason": type(exc).__name__, "columns_at_timeout": await column_statuses(page)}
    wall = time.monotonic() - t_click
    heading = await page.get_by_role("heading", name=re.compile(r"^Run #\d+")).first.inner_text()
    m = re.search(r"Run #(\d+)", heading)
    diffs = await page.locator(".wb-diff").count()
    errors = await page.locator("[data-testid='stAlertContentError']").count()
    return {"finished": True, "wall_s": round(wall, 2), "click_at_s": round(t_click - round_start, 3),
            "run_id": int(m.group(1)) if m else None, "wb_diff_count": diffs, "error_alerts": errors}


async def stop_unfinished(pages_and_results: list[tuple[Any, dict[str, Any]]]) -> None:
    for page, res in pages_and_results:
        if res["finished"]:
            continue
        try:
            await page.get_by_role("button", name="Stop", exact=True).click(timeout=10_000)
            await page.get_by_text("Run #").first.wait_for(timeout=180_000)
            res["stopped_after_timeout"] = True
        except Exception as exc:  # noqa: BLE001
            res["stopped_after_timeout"] = f"could not stop: {type(exc).__name__}"


RESULT_KEYS = ("label", "is_reference", "error", "stop_reason", "completion_tokens", "decode_tok_s", "load_s",
               "ttft_s", "prefill_tok_s", "cpu_contention", "disturbed")


def read_runs(db: Path, run_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Every contestant's figures for these runs, from the app's database (read-only)."""
    if not run_ids or not db.exists():
        return {}
    out = {}
    for rid, (run, rows) in peek_runs(db, run_ids).items():
        settings = json.loads(run["settings_json"] or "{}")
        # every column: an older checkout's database has no disturbance columns
        out[rid] = {"status": run["status"], "created_at": run["created_at"],
                    "n_threads": settings.get("n_threads"), "max_tokens": settings.get("max_tokens"),
                    "results": [{k: r[k] for k in r if k in RESULT_KEYS} for r in rows]}
    return out


async def one_round(browser, app: App, db: Path, n: int, threads: int | None, timeout_s: float) -> dict[str, Any]:
    log(f"round N={n}: opening {n} browser session(s)")
    opened = await asyncio.gather(*(open_session(browser, app.url, threads, 300) for _ in range(n)))
    pages = [page for _ctx, page in opened]
    meter = RoundMeter(app)
    meter.start()
    round_start = time.monotonic()
    log(f"round N={n}: clicking Run in {n} session(s) at once")
    results = list(await asyncio.gather(*(click_and_wait(p, round_start, timeout_s) for p in pages)))
    cpu = await meter.stop()
    await stop_unfinished(list(zip(pages, results, strict=True)))
    runs = read_runs(db, [r["run_id"] for r in results if r.get("run_id")])
    for r in results:
        run = runs.get(r.get("run_id"))
        if run is not None:
            r["n_threads"] = run["n_threads"]
            r["contestants"] = [{"label": x["label"], "reference": bool(x["is_reference"]), "error": x["error"],
                                 "stop_reason": x["stop_reason"], "completion_tokens": x["completion_tokens"],
                                 "decode_tok_s": x["decode_tok_s"], "load_s": x["load_s"], "ttft_s": x["ttft_s"],
                                 "cpu_contention": x.get("cpu_contention"), "disturbed": x.get("disturbed")}
                                for x in run["results"]]
            r["all_contestants_ok"] = bool(run["results"]) and all(x["error"] is None for x in run["results"])
    for ctx, _page in opened:
        await ctx.close()
    walls = [r["wall_s"] for r in results]
    finished = [w for w in walls if w is not None]
    summary = {"n": n, "sessions": results, "finished": len(finished), "timeout_s": timeout_s, **cpu}
    if len(finished) == n:
        summary["median_s"] = round(statistics.median(finished), 2)
        summary["max_s"] = max(finished)
    else:  # an unfinished session counts as at least the timeout
        summary["median_s"] = None
        bounded = sorted(w if w is not None else float("inf") for w in walls)
        med = statistics.median(bounded) if n % 2 else (bounded[n // 2 - 1] + bounded[n // 2]) / 2
        summary["median_at_least_s"] = timeout_s if med == float("inf") else round(med, 2)
        summary["max_s"] = None
    shown = ", ".join("timeout" if w is None else f"{w:.1f}" for w in walls)
    log(f"round N={n}: session wall times {shown} s; server CPU {cpu['server_cpu_s']} s, workers "
        f"{cpu['workers_cpu_s']} s")
    return summary


def import_check(python: Path, app_dir: Path) -> str:
    """Where `workbench` imports from in the app's directory, as `python -m workbench.engine.worker` sees it."""
    try:
        out = subprocess.run([str(python), "-c", "import workbench; print(workbench.__file__)"], cwd=app_dir,
                             capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(failed: {exc})"


def table(rounds: list[dict[str, Any]]) -> str:
    base = next((r["median_s"] for r in rounds if r["n"] == 1 and r.get("median_s")), None)
    head = f"{'N':>3}  {'each session (s)':<36} {'median s':>9} {'× N=1':>7} {'server CPU-s':>13} " \
           f"{'other CPU-s':>12} {'workers CPU-s':>14} {'load1 start→end':>16}"
    lines = [head, "-" * len(head)]
    for r in rounds:
        each = ", ".join("timeout" if s["wall_s"] is None else f"{s['wall_s']:.1f}" for s in r["sessions"])
        if r.get("median_s") is not None:
            med = f"{r['median_s']:.1f}"
            ratio = f"{r['median_s'] / base:.2f}" if base else "-"
        else:
            med = f">={r['median_at_least_s']:.0f}"
            ratio = f">={r['median_at_least_s'] / base:.1f}" if base else "-"
        load = f"{r['loadavg_start'][0]:.2f}→{r['loadavg_end'][0]:.2f}"
        lines.append(f"{r['n']:>3}  {each:<36} {med:>9} {ratio:>7} {r['server_cpu_s']:>13.1f} "
                     f"{r['server_other_children_cpu_s']:>12.1f} {r['workers_cpu_s']:>14.1f} {load:>16}")
    return "\n".join(lines)


async def drive(args: argparse.Namespace, app: App, db: Path, record: dict[str, Any]) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            if args.warmup:
                log("warm-up: one session, one run (not counted: the first loads are slow)")
                record["warmup"] = await one_round(browser, app, db, 1, args.threads, args.timeout_s)
            record["workers"] = app.workers()
            for n in args.sessions:
                record["rounds"].append(await one_round(browser, app, db, n, args.threads, args.timeout_s))
                write(args.out, record)  # keep what is measured so far
        finally:
            await browser.close()


def cli_yardstick(python: Path, app_dir: Path, env: dict[str, str], db: Path, rounds: list[dict[str, Any]],
                  repeats: int) -> dict[str, Any]:
    """The same files, prompt and settings as the first single-session round, through `workbench compare` `repeats`
    times with the browser closed (the app idle): the quiet figures the page's should agree with."""
    first = next((s for r in rounds if r["n"] == 1 for s in r["sessions"] if s.get("run_id")), None)
    if first is None:
        return {"error": "no single-session run to copy"}
    run, rows = peek_runs(db, [first["run_id"]])[first["run_id"]]
    labels = [r["label"] for r in rows if not r["is_reference"]]
    prompt, system, settings = run["prompt"], run["system_prompt"], json.loads(run["settings_json"])
    cmd = [str(python), "-m", "workbench", "compare", "--demo", "--types", ",".join(labels), "--prompt", prompt,
           "--max-tokens", str(settings["max_tokens"]), "--threads", str(settings["n_threads"]),
           "--ctx", str(settings["n_ctx"]), "--seed", str(settings["seed"]), "--json"]
    if system:
        cmd += ["--system", system]
    runs = []
    for i in range(repeats):
        log(f"CLI yardstick {i + 1}/{repeats}: workbench compare, same files and settings, browser closed")
        out = subprocess.run(cmd, cwd=app_dir, env=env, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            runs.append({"error": out.stderr[-2000:]})
            continue
        data = json.loads(out.stdout)
        runs.append({"results": [{"label": r["label"], "decode_tok_s": r["decode_tok_s"],
                                  "completion_tokens": r["completion_tokens"], "disturbed": r.get("disturbed"),
                                  "contention": ((r.get("measurement") or {}).get("decode") or {}).get("contention")}
                                 for r in data["results"]], "uptime": uptime()})
    return {"command": cmd[:3] + ["..."], "threads": settings["n_threads"], "runs": runs}


def agreement_table(rounds: list[dict[str, Any]], cli: dict[str, Any]) -> str:
    """App (each single-session round) against the CLI's median, per contestant."""
    app_runs = [s for r in rounds if r["n"] == 1 for s in r["sessions"] if s.get("contestants")]
    cli_by: dict[str, list[float]] = {}
    for run in cli.get("runs", []):
        for r in run.get("results", []):
            if r["decode_tok_s"]:
                cli_by.setdefault(r["label"], []).append(r["decode_tok_s"])
    lines = [f"{'file':8} {'app decode tok/s (each N=1 run)':<34} {'CLI median (range)':<24} {'app/CLI':>8}"]
    for label, values in cli_by.items():
        app = [c["decode_tok_s"] for s in app_runs for c in s["contestants"]
               if c["label"] == label and c["decode_tok_s"]]
        med = statistics.median(values)
        ratio = f"{statistics.median(app) / med:.2f}" if app else "-"
        lines.append(f"{label:8} {', '.join(f'{a:.0f}' for a in app):<34} "
                     f"{med:.0f} ({min(values):.0f}-{max(values):.0f}){'':<8} {ratio:>8}")
    return "\n".join(lines)


def write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4], help="N browser sessions per round")
    ap.add_argument("--timeout-s", type=float, default=900, help="per round: a session not done by then is recorded so")
    ap.add_argument("--threads", type=int, default=None, help="set the page's Threads input (default: keep the page's)")
    ap.add_argument("--app-dir", type=Path, default=REPO, help="the checkout whose app is measured")
    ap.add_argument("--streamlit", default=None,
                    help="run PATH run app.py in --app-dir instead of bash scripts/app.sh (e.g. this venv's)")
    ap.add_argument("--ladders-dir", default=None, help="built ladders (default: workbench.core.paths.ladders_dir())")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the uncounted warm-up run")
    ap.add_argument("--chromium", default=CHROMIUM)
    ap.add_argument("--keep-data", action="store_true", help="keep the temporary data directory (database, app log)")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default docs/data/sessions-<timestamp>.json)")
    ap.add_argument("--cli-yardstick", type=int, default=0, metavar="K",
                    help="then run the first single-session comparison K times through `workbench compare` and "
                         "print the app's decode figures against the CLI's")
    args = ap.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out = args.out or REPO / "docs" / "data" / f"sessions-{stamp}.json"
    args.app_dir = args.app_dir.resolve()
    if not Path(args.chromium).exists():
        raise SystemExit(f"{args.chromium} is missing (apt-get install chromium)")

    if args.ladders_dir is None:  # asked before WORKBENCH_DATA_DIR is overridden below (only for the app)
        from workbench.core.paths import ladders_dir

        args.ladders_dir = str(ladders_dir())
    if not any(Path(args.ladders_dir).glob("*/*.gguf")):
        log(f"warning: no built ladder under {args.ladders_dir}; the app will build the demo ladder first")
    data = Path(tempfile.mkdtemp(prefix="wb-sessions-"))
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(data), "WORKBENCH_LADDERS_DIR": args.ladders_dir}
    python = Path(args.streamlit).parent / "python" if args.streamlit else args.app_dir / ".venv" / "bin" / "python"

    record: dict[str, Any] = {
        "benchmark": "benchmarks/sessions.py",
        "what": "N browser sessions press Run on the Compare page at once; wall time from each click to 'Run #'",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "app_dir": str(args.app_dir),
        "app_git": git_state(args.app_dir),
        "workbench_imports_from_in_app_dir": import_check(python, args.app_dir),
        "ladders_dir": args.ladders_dir,
        "threads_setting": args.threads if args.threads is not None else "page default",
        "other_settings": "the Compare page's defaults (ladder, quantizations, reference, first example prompt)",
        "warmup_note": "one single-session run before the measured rounds, not counted (first loads are slow); "
                       "every round reuses the same app and its warm workers" if args.warmup else "no warm-up run",
        "machine": {"cpu": platform.processor() or platform.machine(), "logical_cpus": psutil.cpu_count(),
                    "ram_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version()},
        "uptime_before": uptime(),
        "rounds": [],
    }
    log(f"machine before: {record['uptime_before']}")
    log(f"workbench imports from (app dir): {record['workbench_imports_from_in_app_dir']}")
    app = App(args.app_dir, args.streamlit, env, data / "app.log")
    record["app_command"] = app.cmd
    log(f"starting the app: {' '.join(app.cmd)} (in {args.app_dir}, data {data})")
    try:
        app.wait_healthy()
        record["server_pid"] = app.server().pid
        try:
            record["server_cwd"] = app.server().cwd()
        except psutil.Error:
            pass
        asyncio.run(drive(args, app, data / "workbench.sqlite3", record))
        if args.cli_yardstick:
            record["cli"] = cli_yardstick(python, args.app_dir, env, data / "workbench.sqlite3", record["rounds"],
                                          args.cli_yardstick)
    except KeyboardInterrupt:
        record["interrupted"] = True
        raise
    finally:
        record["uptime_after"] = uptime()
        record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            record["app_log_tail"] = (data / "app.log").read_text(errors="replace").splitlines()[-40:]
        except OSError:
            pass
        app.stop()
        write(args.out, record)
        if args.keep_data:
            log(f"data directory kept: {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)
    log(f"machine after: {record['uptime_after']}")
    if record.get("warmup"):
        w = record["warmup"]["sessions"][0]
        log(f"warm-up (not counted): {'timeout' if w['wall_s'] is None else str(w['wall_s']) + ' s'}")
    print()
    print(table(record["rounds"]))
    print()
    for r in record["rounds"]:
        for i, s in enumerate(r["sessions"], 1):
            tps = ", ".join((f"{c['label']} {c['decode_tok_s']:.1f}" if c["decode_tok_s"] is not None
                             else f"{c['label']} -") + ("*" if c.get("disturbed") else "")
                            for c in s.get("contestants", []))
            print(f"N={r['n']} session {i}: run #{s.get('run_id')} decode tok/s (* disturbed): {tps or '(no run stored)'}")
    if record.get("cli"):
        print()
        print(agreement_table(record["rounds"], record["cli"]))
    print(f"\nwrote {args.out}")
    return 0 if all(r["finished"] == r["n"] for r in record["rounds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
