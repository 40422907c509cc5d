"""Judging a 3-prompt set blind in a real browser with the keyboard only (1, 2, 3), then the verdict screenshot."""

from __future__ import annotations

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, started_app
from test_set_judging import make_set

from workbench.people import ratings
from workbench.people.verdict import SET_MODE
from workbench.storage.store import Store

pytestmark = pytest.mark.browser


def test_a_set_is_judged_with_the_keys_1_2_3_and_ends_with_the_verdict(demo_ladder, test_output):
    from playwright.sync_api import sync_playwright

    require_chromium()
    store = Store()
    set_id = make_set(store)
    with started_app("browser-set-judging.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url + "/ratings")
        page.get_by_role("heading", name="Rate outputs").wait_for(timeout=120_000)
        page.locator("[data-testid=stRadio] label").filter(has_text="A prompt set").first.click()
        page.get_by_text("Prompt 1 of 3").wait_for(timeout=60_000)
        page.get_by_role("heading", name="Rate outputs").click()  # focus the page, not a widget
        for key, shown_next in (("1", "Prompt 2 of 3"), ("2", "Prompt 3 of 3"), ("3", "Your verdict")):
            page.keyboard.press(key)
            page.get_by_text(shown_next).wait_for(timeout=60_000)
        page.get_by_text("On your 3 prompts, raters preferred Q8_0").first.wait_for(timeout=30_000)
        page.get_by_text("Q4_K_M vs Q8_0").first.wait_for(timeout=30_000)  # the pair's headline, above the verdict
        page.get_by_text("too few to say whether people notice").first.wait_for(timeout=30_000)
        assert page.get_by_text("Traceback").count() == 0
        page.screenshot(path=str(test_output / "set-verdict.png"), full_page=True)
        browser.close()
    run_ids = [c.run_id for c in store.get_set_run(set_id).children]
    votes = ratings.list_votes(store, run_ids=run_ids, mode=SET_MODE)
    for run_id in run_ids:  # other page tests expect their own run to be the newest
        store.delete_run(run_id)
    assert len(votes) == 3 and [v["winner"] for v in votes].count("tie") == 1  # the key 3
