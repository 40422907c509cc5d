"""Issue 23: the app is an offline tool, so a browser showing it asks nothing of any host but the app's own:
no tab icon from an emoji or icon CDN, no web font, no script. Every page is visited in headless Chromium and
every request the page makes is recorded."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, started_app

pytestmark = pytest.mark.browser

# Every page app.py registers, by its URL path ("" is the default page, Compare).
PATHS = ["", "sets", "quality", "evals", "recommend", "models", "hardware", "ratings", "history", "glossary"]


def test_no_page_fetches_anything_from_outside_this_machine(demo_ladder, test_output) -> None:
    from playwright.sync_api import sync_playwright

    require_chromium()
    with started_app("browser-offline.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        icons: dict[str, list[str]] = {}
        for path in PATHS:
            page.goto(f"{url}/{path}")
            page.locator("h1").first.wait_for(timeout=180_000)
            page.wait_for_timeout(2500)  # let late fetches (icons, fonts, charts) start
            icons[path] = page.eval_on_selector_all("link[rel~='icon']", "els => els.map(e => e.href)")
            if path in ("hardware", "glossary"):
                page.screenshot(path=str(test_output / f"offline-{path}.png"), full_page=True)
        browser.close()

    outside = sorted({u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
                      and urlparse(u).hostname not in ("127.0.0.1", "localhost")})
    assert not outside, f"fetched from outside this machine: {outside}"
    assert len(requests) > 50  # the pages really loaded (scripts, styles, the websocket)
    # the tab icon is the repo's own file, served by the app (an emoji or :material/ icon is a CDN URL here)
    for path, hrefs in icons.items():
        assert hrefs and all(urlparse(h).hostname == "127.0.0.1" for h in hrefs), (path, hrefs)
