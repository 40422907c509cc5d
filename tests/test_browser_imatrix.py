"""Issue 26's "from the page alone", in a real browser: a product person turns the bundled prompt set into an
importance-matrix ladder of the demo model on the Models page, then reads on the Quality page whether the matrix
helped on the prompts it never saw. Real llama.cpp throughout (matrix, quantizing, divergence); Q4_K_M only, and
short held-out answers, to keep it to a few minutes."""

from __future__ import annotations

import re
import shutil

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, started_app

LONG = 900_000  # ms: the matrix, two quantizations and the measurement on a busy two-core machine


def test_a_prompt_set_becomes_an_imatrix_ladder_and_the_quality_page_says_whether_it_helped(demo_ladder, test_output):
    from workbench.core.paths import ladders_dir

    require_chromium()
    before = set(ladders_dir().iterdir())
    try:
        walk(test_output)
    finally:  # the ladder the page built goes, so the user's own list of ladders is as it was
        for made in set(ladders_dir().iterdir()) - before:
            shutil.rmtree(made, ignore_errors=True)


def walk(test_output) -> None:
    from playwright.sync_api import sync_playwright

    with started_app("browser-imatrix.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.goto(url + "/models")
        page.get_by_role("tab", name="Make a ladder").click()
        page.get_by_text("the demo model's F16 reference").click()
        for chip in ("Q8_0", "Q5_K_M", "Q2_K"):  # keep Q4_K_M: one static and one imatrix file
            page.get_by_role("button", name=re.compile(f"^Remove {chip}$")).click()
        page.get_by_label("Importance matrix").click()
        page.get_by_role("option", name="a prompt set").click()
        page.get_by_text("the other half is held out").wait_for(timeout=60_000)
        page.screenshot(path=str(test_output / "imatrix-make-ladder.png"), full_page=True)
        page.get_by_role("button", name="Build ladder").click()
        page.get_by_text("is now the active ladder").wait_for(timeout=LONG)
        assert page.get_by_text("Traceback").count() == 0
        page.screenshot(path=str(test_output / "imatrix-built.png"), full_page=True)

        page.get_by_role("link", name="Did the importance matrix help?").click()  # the same session: its ladder
        page.get_by_text("Did the importance matrix help?").first.wait_for(timeout=120_000)
        page.get_by_role("spinbutton", name="Tokens per held-out prompt").fill("24")
        page.get_by_role("spinbutton", name="Tokens per held-out prompt").press("Enter")
        page.get_by_role("button", name="Measure static vs imatrix").click()
        answer = page.get_by_text(re.compile(r"^On the 5 prompts the matrix never saw"))
        answer.first.wait_for(timeout=LONG)
        said = answer.first.inner_text()
        assert "Q4_K_M" in said and re.search(r"\b(less|more|within)\b", said)
        assert page.get_by_text("Traceback").count() == 0
        page.locator('[data-testid="stDataFrame"] canvas').first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # the table's canvas paints after it appears
        page.screenshot(path=str(test_output / "imatrix-gain.png"), full_page=True)
        browser.close()
