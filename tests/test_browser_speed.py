"""The speed a person reads off the Compare page is the machine's: it agrees with a quiet CLI run, or says why not.

Issue 12: the live page once dragged decode figures 2-4x low (Q8_0 read slower than F16) without saying so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, started_app

from workbench.core.disturbance import summarize
from workbench.storage.store import Store

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
AGREEMENT = 0.15
CLI_RUNS = 3  # the quiet yardstick: the median of these (a single shared-machine run read 0.85x another once)


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
    assert run["status"] == "cancelled"
    assert any(r["stop_reason"] == "cancelled" for r in run["results"])


def test_app_decode_figures_agree_with_a_quiet_cli_run_or_are_marked_disturbed(speed_app, test_output):
    """Each decode figure the page shows is within 15% of a quiet CLI run's, or marked disturbed.

    A disagreement the next whole check does not repeat is the shared machine's: memory bandwidth taken by other
    virtual machines is invisible to CPU accounting (seen once: Q8_0 0.65x, "quiet", then 0.98x). So one failed
    check is run again; a drag by the app itself shows in both, and the second must be clean."""
    first = _disagreements(speed_app, test_output, "compare-speed.png")
    if first:
        print(f"\nfirst check disagreed, checking again: {first}")
        second = _disagreements(speed_app, test_output, "compare-speed-again.png")
        assert not second, {"first": first, "second": second}


def _disagreements(url: str, test_output, shot: str) -> list[str]:
    """Run the page's default comparison in a browser, then the same through the CLI; what disagrees unmarked."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = press_run(p, url, height=1300)
        run_id = stored_run_id(page, timeout_ms=600_000)
        run = Store().get_run(run_id)
        body = page.locator("body").inner_text()
        page.screenshot(path=str(test_output / shot), full_page=True)

        browser.close()

        # the same files, prompt and settings through the CLI, with nothing else running (the app's workers stay
        # loaded and idle), three times; a CLI run that was itself disturbed is no yardstick
        labels = [r["label"] for r in run["results"] if not r["is_reference"]]
        s = run["settings"]
        cmd = [sys.executable, "-m", "workbench", "compare", "--demo", "--types", ",".join(labels), "--prompt",
               run["prompt"], "--max-tokens", str(s["max_tokens"]), "--threads", str(s["n_threads"]), "--ctx",
               str(s["n_ctx"]), "--seed", str(s["seed"]), "--temperature", str(s["temperature"]), "--json"]
        if run["system_prompt"]:
            cmd += ["--system", run["system_prompt"]]
        cli_runs = [json.loads(subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True,
                                              timeout=600, env=os.environ).stdout)["results"] for _ in range(CLI_RUNS)]

    cli_by = {}
    for label in (r["label"] for r in run["results"]):
        quiet = sorted((c for runs in cli_runs for c in runs if c["label"] == label and not c["disturbed"]),
                       key=lambda c: c["decode_tok_s"])
        if not quiet:
            pytest.fail(f"every CLI run of {label} was itself disturbed: this machine is too busy to judge the app")
        cli_by[label] = quiet[len(quiet) // 2]  # the median undisturbed run: one run alone drifts ±10% here
    print(f"\n{'file':8} {'app tok/s':>10} {'CLI tok/s':>10} {'app/CLI':>8}  app measurement")
    problems = []
    for r in run["results"]:
        c = cli_by[r["label"]]
        assert r["error"] is None and c["error"] is None
        ratio = r["decode_tok_s"] / c["decode_tok_s"]
        disturbed, words = summarize(r["metrics"].get("measurement"))
        print(f"{r['label']:8} {r['decode_tok_s']:10.1f} {c['decode_tok_s']:10.1f} {ratio:8.2f}  "
              f"{r['metrics']['measurement'].get('display')}: {words}; CLI: {summarize(c['measurement'])[1]}")
        # the figure the person sees is the stored one
        assert f"{r['decode_tok_s']:,.1f} tok/s" in body
        if abs(ratio - 1) > AGREEMENT and not disturbed:
            problems.append(f"{r['label']}: app {r['decode_tok_s']:.1f} vs CLI {c['decode_tok_s']:.1f} tok/s, "
                            f"not marked disturbed ({words})")
        if disturbed:
            assert "Re-measure quietly" in body and "Speed figures disturbed" in body
    return problems
