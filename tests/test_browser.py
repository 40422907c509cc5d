"""A real browser against the real app, started the way the README starts it."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: scripts/test.sh should have installed it")
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")


@contextmanager
def started_app(log_name: str) -> Iterator[str]:
    """The app as the README starts it (scripts/app.sh), on a free port; yields its URL."""
    port = free_port()
    log = open(Path(os.environ.get("WORKBENCH_TEST_OUTPUT", "test-output")) / log_name, "w")
    proc = subprocess.Popen(["bash", "scripts/app.sh", "--server.port", str(port)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(1)
            if proc.poll() is not None:
                pytest.fail(f"the app exited with {proc.returncode}; see {log_name}")
        else:
            pytest.fail("the app did not start within 300 s")
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def app_url(demo_ladder):
    require_chromium()
    with started_app("browser-app.log") as url:
        yield url


def test_run_in_a_real_browser_streams_diffs_and_charts(app_url, test_output):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1300})
        page.goto(app_url)
        page.get_by_role("heading", name="Compare quantizations").wait_for(timeout=120_000)
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Run #").first.wait_for(timeout=600_000)  # every column finished and stored
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        assert page.locator(".wb-diff").count() >= 5  # reference + four quantizations
        marks = page.locator(".wb-prose mark.wb-chg, .wb-prose .wb-gap").count()  # prose by default
        identical = page.get_by_text(re.compile(r"^identical to ")).count()
        assert marks + identical > 0
        assert page.get_by_text("Traceback").count() == 0
        page.screenshot(path=str(test_output / "compare-page.png"), full_page=True)
        browser.close()


def test_a_deep_link_as_a_fresh_servers_first_request_gets_the_app_not_the_bare_page(demo_ladder, test_output):
    """With pages/ beside app.py, Streamlit's legacy mode used to run /quality alone on a new server."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    with started_app("browser-deeplink.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/quality")  # the very first request this server sees
        page.get_by_role("heading", name="Quality: divergence from the reference").wait_for(timeout=120_000)
        sidebar = page.locator("section[data-testid='stSidebar']")
        sidebar.get_by_text("SmolLM2-135M-Instruct").first.wait_for(timeout=60_000)  # app.py's sidebar ran
        nav = sidebar.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Compare" in nav and "Hardware" in nav
        assert "shared" not in nav and "views" not in nav  # helper modules are not offered as pages
        assert page.get_by_text("Traceback").count() == 0
        page.screenshot(path=str(test_output / "deep-link-quality.png"))
        browser.close()


def test_two_sessions_pressing_run_at_once_both_finish(app_url, test_output):
    """Issue 12: two browser sessions press Run at the same moment. The runs queue machine-wide, so
    the second waits for the first, but both must finish with every contestant done (the server
    must not starve them: a ~7 s comparison once took 8 min 40 s)."""
    from playwright.sync_api import sync_playwright

    from workbench.core.paths import db_path

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = []
        for _ in range(2):  # two contexts: two separate Streamlit sessions
            page = browser.new_context(viewport={"width": 1600, "height": 1300}).new_page()
            page.goto(app_url)
            page.get_by_role("heading", name="Compare quantizations").wait_for(timeout=120_000)
            pages.append(page)
        buttons = [page.get_by_role("button", name="Run", exact=True) for page in pages]
        for button in buttons:
            button.wait_for(timeout=60_000)
        clicked = []
        for button in buttons:  # one right after the other
            button.click()
            clicked.append(time.monotonic())
        walls: list[float | None] = [None, None]
        deadline = clicked[0] + 600
        while None in walls and time.monotonic() < deadline:
            for i, page in enumerate(pages):
                if walls[i] is None and page.get_by_text("Run #").count():  # every column finished and stored
                    walls[i] = time.monotonic() - clicked[i]
            pages[0].wait_for_timeout(250)
        shown = ", ".join("not finished in 600 s" if w is None else f"{w:.1f} s" for w in walls)
        print(f"two sessions pressing Run at once: wall times {shown}")
        for i, page in enumerate(pages, 1):
            page.screenshot(path=str(test_output / f"two-sessions-{i}.png"), full_page=True)
        assert None not in walls, f"wall times: {shown}"

        run_ids = []
        for page in pages:
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            heading = page.get_by_role("heading", name=re.compile(r"^Run #\d+")).first.inner_text()
            run_ids.append(int(re.search(r"Run #(\d+)", heading).group(1)))
            assert page.locator(".wb-diff").count() >= 5  # reference + four quantizations, none an error
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
            assert page.get_by_text("Traceback").count() == 0
        browser.close()
    assert run_ids[0] != run_ids[1]

    conn = sqlite3.connect(f"file:{db_path()}?mode=ro", uri=True)
    try:
        for run_id in run_ids:  # every contestant of both runs stored without an error
            rows = conn.execute("SELECT label, error, stop_reason FROM results WHERE run_id = ?", (run_id,)).fetchall()
            assert len(rows) == 5, (run_id, rows)
            assert all(err is None and stop not in ("cancelled", "error") for _label, err, stop in rows), (run_id, rows)
    finally:
        conn.close()
