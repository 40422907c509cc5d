"""A real browser against the real app, started the way the README starts it."""

from __future__ import annotations

import os
import socket
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
        marks = page.locator(".wb-diff ins, .wb-diff del").count()
        identical = page.get_by_text("identical to reference").count()
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
