"""Issue 27 from the page alone, in a real browser against the real app: llama-cpp-python's server serves the demo
Q8_0 under a fixed model name; the Providers page adds it, checks it twice, the server restarts on the Q2_K file
under the SAME name, one more check, and the page says the change in words and the chart marks it. The full-page
screenshot (test-output/providers-page.png) is README's docs/screenshot-providers.png."""

from __future__ import annotations

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, started_app
from test_watch import MODEL_NAME, PLAIN_GREEDY, LlamaServer

from workbench.storage.store import Store
from workbench.watch.change import assess
from workbench.watch.checks import checks_of
from workbench.watch.providers import list_providers, remove_provider

pytestmark = pytest.mark.browser

CHECK_S = 600_000  # one small check on a busy 2-core machine: well under this


def _fill(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(700)  # let the rerun land before the next field


def test_a_silent_switch_is_seen_on_the_page_in_words_and_on_the_chart(demo_ladder, tmp_path, test_output):
    pytest.importorskip("fastapi", reason="llama-cpp-python's server extra is not installed")
    from playwright.sync_api import expect, sync_playwright

    require_chromium()
    store = Store()
    for p in list_providers(store):
        remove_provider(store, p.id)
    server = LlamaServer(tmp_path, MODEL_NAME)
    server.serve(demo_ladder.by_label("Q8_0").path)
    try:
        with started_app("browser-providers.log") as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(url + "/providers")
            page.get_by_role("heading", name="Providers: is my provider still serving what I pay for?").wait_for(
                timeout=180_000)
            page.get_by_text("No provider is watched yet").wait_for(timeout=60_000)

            _fill(page, "Name", "Acme")
            _fill(page, "Base URL", server.url + "/v1")
            _fill(page, "Model", MODEL_NAME)
            _fill(page, "Reference prompts per check", "3")
            _fill(page, "Longest answer (tokens)", "16")
            _fill(page, "Extra request fields (JSON object, optional)", str(PLAIN_GREEDY).replace("'", '"'))
            expect(page.get_by_text("A check sends about")).to_be_visible(timeout=60_000)  # before saving
            assert list_providers(store) == []
            page.get_by_role("button", name="Save and watch").click()
            page.get_by_text("No checks yet — press Check now.").wait_for(timeout=60_000)

            page.get_by_role("button", name="Check now").click()
            page.get_by_text("as in its only check").wait_for(timeout=CHECK_S)
            page.get_by_role("button", name="Check now").click()
            page.get_by_text("as in all 2 checks").wait_for(timeout=CHECK_S)

            server.serve(demo_ladder.by_label("Q2_K").path)  # same port, same model name, a much smaller file
            page.get_by_role("button", name="Check now").click()
            banner = page.get_by_text("answers like Q2_K")
            banner.first.wait_for(timeout=CHECK_S)
            said = page.locator("[data-testid='stAlert']").filter(has_text="answers like Q2_K").first.inner_text()
            assert "Since " in said and "Acme answers like Q2_K" in said and "before, like Q8_0" in said, said
            chart = page.locator("svg[role='img']").first
            assert "changed" in chart.inner_html() and "Q2_K" in chart.inner_html()
            assert page.get_by_text("Traceback").count() == 0
            page.set_viewport_size({"width": 1500, "height": 1600})  # Streamlit scrolls inside: show it all
            page.wait_for_timeout(1500)
            page.screenshot(path=str(test_output / "providers-page.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    [provider] = list_providers(store)
    checks = checks_of(store, provider.id)
    assert [c.closest for c in checks] == ["Q8_0", "Q8_0", "Q2_K"], [(c.status, c.reason) for c in checks]
    assert assess(checks, provider.name).changed
