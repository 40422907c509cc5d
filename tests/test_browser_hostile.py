"""Issue 14: a run whose fields are hostile (as an endpoint's finish_reason, or another tool writing the database,
can make them) opens in a real browser without restyling, hiding or adding anything to the page."""

from __future__ import annotations

import re

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, started_app
from test_escaping import hostile_result_run

pytestmark = pytest.mark.browser


def test_a_hostile_imported_run_opens_without_injecting_anything(demo_ladder, test_output, tmp_path):
    from playwright.sync_api import sync_playwright

    from workbench.people.history import ImportFileError, export_json_bytes, import_json
    from workbench.storage.store import Store

    require_chromium()
    scratch = Store(tmp_path / "elsewhere.sqlite3")  # made on "another machine"
    made = hostile_result_run(scratch)
    with pytest.raises(ImportFileError):  # an import of it is refused: numbers that are not numbers ...
        import_json(Store(), export_json_bytes(scratch, [made]))
    run_id = hostile_result_run(Store())  # ... but another tool can write them into the database itself

    with started_app("browser-hostile.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1300})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.get_by_role("heading", name="Compare quantizations").wait_for(timeout=120_000)
        sidebar = page.locator("section[data-testid='stSidebar']")
        sidebar.get_by_role("button", name=re.compile(rf"^#{run_id} ")).click()  # open it from Recent runs
        page.get_by_role("heading", name=f"Run #{run_id}").wait_for(timeout=60_000)
        page.get_by_text("A harmless answer.").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(test_output / "hostile-run.png"), full_page=True)

        assert page.locator("style:has-text('display:none')").count() == 0
        assert page.locator("style:has-text('color:red')").count() == 0
        assert page.locator("img[src*='evil']").count() == 0
        links = page.locator("a[href*='evil']")  # bracketed or bare (GFM autolink) links
        found = [links.nth(i).evaluate("a => a.outerHTML + ' in ' + (a.closest('[data-testid]') || a).textContent")
                 for i in range(links.count())]
        assert not found, "\n".join(found)
        assert page.locator("script:has-text('alert')").count() == 0
        assert page.evaluate("getComputedStyle(document.body).display") != "none"
        assert page.get_by_role("heading", name="Compare quantizations").is_visible()
        assert page.get_by_role("heading", name=f"Run #{run_id}").is_visible()
        assert page.get_by_text("<style>body{display:none}</style>").count() > 0  # shown as text
        assert not [u for u in requests if "evil" in u], requests
        assert page.get_by_text("Traceback").count() == 0
        browser.close()
