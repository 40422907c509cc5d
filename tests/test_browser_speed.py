"""The speed a person reads off the Compare page is the machine's: it agrees with a quiet CLI run, or says why not.

Issue 12: the live page once dragged decode figures 2-4x low (Q8_0 read slower than F16) without saying so.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, started_app

from workbench.core.disturbance import summarize
from workbench.storage.store import Store

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
AGREEMENT = 0.15  # app against CLI, the fastest of PAIRS runs each (issue 12)
SANITY = 0.5  # any one undisturbed app figure against the CLI median: within 2x
PAIRS = 5  # app run, then CLI run, this many times


@pytest.fixture(scope="module")
def speed_app(demo_ladder):
    require_chromium()
    with started_app("browser-speed.log") as url:
        yield url


def press_run(p, url: str, height: int):
    """A fresh browser on the Compare page with Run pressed (the page's default comparison)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1600, "height": height})
    page.goto(url)
    page.get_by_role("heading", name="Compare quantizations").wait_for(timeout=120_000)
    page.get_by_role("button", name="Run", exact=True).click()
    return browser, page


def stored_run_id(page, timeout_ms: int) -> int:
    """The id of the run the page shows once every contestant has finished ("Run #N")."""
    heading = page.get_by_text(re.compile(r"^Run #\d+")).first
    heading.wait_for(timeout=timeout_ms)
    return int(re.search(r"Run #(\d+)", heading.inner_text()).group(1))


def test_stop_during_a_streamed_run_stops_it_and_the_page_comes_back(speed_app, test_output):
    """The page follows a run inside its script run; a click on Stop must still get through at once."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = press_run(p, speed_app, height=1100)
        page.get_by_text("generating").first.wait_for(timeout=120_000)
        page.get_by_role("button", name="Stop", exact=True).click()
        run_id = stored_run_id(page, timeout_ms=60_000)
        page.screenshot(path=str(test_output / "compare-stopped.png"))
        browser.close()
    run = Store().get_run(run_id)
    assert run.status == "cancelled"
    assert any(r.stop_reason == "cancelled" for r in run.results)


def test_app_decode_figures_agree_with_quiet_cli_runs_or_are_marked_disturbed(speed_app, test_output):
    """The page's decode figures agree with quiet CLI runs' within 15%, or are marked disturbed.

    One decode window of the default prompt is about 33 tokens in 0.35 s. On this shared 2-core machine such a
    window reads up to 30% low now and then, in a bare llama-cpp-python loop and in the CLI as much as in the app,
    with nothing else using the CPU: the slowdown lasts the whole window, so it is memory bandwidth or clock taken
    by other virtual machines, which CPU accounting cannot see (docs/benchmarks.md, "The app against the CLI, run
    after run"). One figure against one figure cannot tell a dragging app from that. So the app and the CLI run
    the same comparison in turns, PAIRS times each (drift hits both alike), and for each file:
    * the fastest undisturbed app figure is within 15% of the CLI's fastest: a drag that holds run after run, like
      issue 12's, lowers every figure, while the machine's dips, which come and go over tens of seconds, left one
      of five runs clean in every check so far (medians and second-fastest fell to 0.80x in a noisy spell in the
      CLI and the app alike);
    * every undisturbed app figure is within 2x of the CLI median (issue 12's drag was 2-4x);
    * every disturbed figure says so on the page, with a re-measure button (checked in _app_run).
    When a check is not clear, PAIRS more pairs are taken and all of them judged together: a drag that holds
    fails again. Every figure and the medians are printed for the record."""
    from playwright.sync_api import sync_playwright

    app: dict[str, list[float]] = {}
    cli: dict[str, list[float]] = {}
    notes: dict[str, list[str]] = {}
    with sync_playwright() as p:
        _take_pairs(p, speed_app, test_output / "compare-speed.png", app, cli, notes)
        problems = _judge(app, cli, notes)
        if problems:  # a noisy spell can take four of five page runs; a drag that holds takes all ten
            print(f"\nnot clear after {PAIRS} pairs, taking {PAIRS} more: {problems}")
            _take_pairs(p, speed_app, None, app, cli, notes)
            problems = _judge(app, cli, notes)
    assert not problems, problems


def _take_pairs(p, url: str, shot: Path | None, app: dict, cli: dict, notes: dict) -> None:
    """PAIRS times: the page's run, then the CLI's; undisturbed decode figures per label into app and cli."""
    for turn in range(PAIRS):
        run = _app_run(p, url, shot if turn == 0 else None)
        for r in run["results"]:
            assert r["error"] is None
            disturbed, words = summarize(r["metrics"].get("measurement"))
            notes.setdefault(r["label"], []).append(f"app {r['decode_tok_s']:.1f}: {words}")
            if not disturbed:
                app.setdefault(r["label"], []).append(r["decode_tok_s"])
        for c in _cli_run(run):
            assert c["error"] is None
            disturbed, words = summarize(c["measurement"])
            notes[c["label"]].append(f"CLI {c['decode_tok_s']:.1f}: {words}")
            if not disturbed:
                cli.setdefault(c["label"], []).append(c["decode_tok_s"])


def _judge(app: dict, cli: dict, notes: dict) -> list[str]:
    """Print every figure; what disagrees (see the test's docstring for the rules)."""
    print(f"\n{'file':8} {'app best':>8} {'CLI best':>8} {'ratio':>6} {'medians':>14}  app | CLI (undisturbed figures)")
    problems = []
    for label, lines in notes.items():
        if label not in cli:  # a busy machine (issue 24: tests pass on one): no quiet yardstick for this file, so
            # only the disturbed path is checked for it: every disturbed app figure said so on the page (_app_run)
            print(f"{label:8} not judged: every CLI run of it was disturbed too (this machine is busy)\n         "
                  + "\n         ".join(lines))
            continue
        if label not in app:
            continue  # every app figure was marked disturbed, and the page said so (checked in _app_run)
        a, c = max(app[label]), max(cli[label])
        a_med, c_med = statistics.median(app[label]), statistics.median(cli[label])
        print(f"{label:8} {a:8.1f} {c:8.1f} {a / c:6.2f} {a_med:6.1f}/{c_med:<6.1f}  "
              f"{_figures(app[label])} | {_figures(cli[label])}")
        print("         " + "\n         ".join(lines))
        if abs(a / c - 1) > AGREEMENT:
            problems.append(f"{label}: the app's fastest figure {a:.1f} vs the CLI's {c:.1f} tok/s "
                            f"({a / c:.2f}x; all: {_figures(app[label])} | {_figures(cli[label])})")
        problems += [f"{label}: one undisturbed app figure {x:.1f} vs CLI median {c_med:.1f} tok/s"
                     for x in app[label] if not 1 / SANITY >= x / c_med >= SANITY]
    return problems


def _figures(xs: list[float]) -> str:
    return " ".join(f"{x:.0f}" for x in xs)


def _app_run(p, url: str, shot: Path | None) -> dict:
    """The page's default comparison, run in a fresh browser; the stored run, after checking the page shows it."""
    browser, page = press_run(p, url, height=1300)
    try:
        run = Store().get_run(stored_run_id(page, timeout_ms=600_000)).to_dict()
        body = page.locator("body").inner_text()
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
    finally:
        browser.close()
    for r in run["results"]:
        assert f"{r['decode_tok_s']:,.1f} tok/s" in body  # the figure the person sees is the stored one
        if summarize(r["metrics"].get("measurement"))[0]:
            assert "Re-measure quietly" in body and "speed disturbed" in body  # the column's mark
            assert "Speed figures disturbed for" in body or "No quiet window could be had for" in body  # the banner
    return run


def _cli_run(run: dict) -> list[dict]:
    """The same files, prompt and settings through the CLI (the app's workers stay loaded and idle)."""
    labels = [r["label"] for r in run["results"] if not r["is_reference"]]
    s = run["settings"]
    cmd = [sys.executable, "-m", "workbench", "compare", "--demo", "--types", ",".join(labels), "--prompt",
           run["prompt"], "--max-tokens", str(s["max_tokens"]), "--threads", str(s["n_threads"]), "--ctx",
           str(s["n_ctx"]), "--seed", str(s["seed"]), "--temperature", str(s["temperature"]), "--json"]
    if run["system_prompt"]:
        cmd += ["--system", run["system_prompt"]]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True, timeout=600, env=os.environ)
    return json.loads(out.stdout)["results"]
