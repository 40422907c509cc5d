"""The Ratings and History pages in Streamlit's headless AppTest, on a real run of the embedded ladder.

Blind mode must not name a quantization anywhere in the page's main area (text, widget labels and
ids, tables, charts) until this session has judged every output; then the names appear.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.core.escaping import md_escape
from workbench.people import ratings
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
NAMES = ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")


@pytest.fixture(scope="module")
def real_run(pool, demo_ladder) -> int:
    """F16 (reference), Q8_0 and Q2_K answer one prompt: 8 tokens on one thread (the cores are shared)."""
    from workbench.runs.compare import contestants_for, run_comparison
    from workbench.runs.contestants import RunSettings

    comparison = run_comparison(pool, contestants_for(demo_ladder, ["Q8_0", "Q2_K"]), "Name three colors.",
                                RunSettings(max_tokens=8, n_ctx=256, n_threads=1), store=Store(), ladder=demo_ladder,
                                category="chat")
    assert comparison.all_ok, [r.error for r in comparison.results]
    return comparison.run_id


def page_text(at: AppTest) -> str:
    """Everything the main area sends to the browser, as text: every element's and block's protobuf.

    Markdown escapes are dropped so an escaped name (Q8\\_0) still counts as shown.
    """
    parts = []

    def walk(node) -> None:
        if getattr(node, "proto", None) is not None:
            parts.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    return "\n".join(parts).replace("\\\\", "").replace("\\", "")


def shown_names(at: AppTest) -> list[str]:
    text = page_text(at)
    return [n for n in NAMES if n in text]


def ratings_page(run_id: int) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/ratings.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="ratings-run-pick").value == run_id  # the newest run comes first
    return at


def test_blind_mode_hides_names_until_every_output_is_rated(real_run):
    at = ratings_page(real_run)
    assert at.radio(key="ratings-mode").value == "Blind"
    assert shown_names(at) == []
    assert any("Hidden while you rate blind" in i.value for i in at.info)
    assert len(at.get("feedback")) == 3
    for i in range(3):
        at.get("feedback")[i].set_value(i + 2)  # 3, 4 and 5 stars (widgets of the newest tree: AppTest rebuilds it)
        at.run()
        assert not at.exception, at.exception
        if i < 2:
            assert shown_names(at) == [], f"a name showed after {i + 1} of 3 ratings"
    assert set(shown_names(at)) == {"F16", "Q8_0", "Q2_K"}
    session = at.session_state["rater_session"]
    saved = ratings.list_ratings(Store(), run_id=real_run, session=session)
    assert sorted(r["score"] for r in saved) == [3, 4, 5]
    assert {r["mode"] for r in saved} == {"blind"} and {r["display_letter"] for r in saved} == {"A", "B", "C"}
    assert any("quantization" in d.value.columns for d in at.dataframe)  # the leaderboard, now shown


def test_a_search_that_finds_no_run_says_so(real_run):
    """The page used to call a helper that does not exist here (found by mypy) and crashed instead."""
    at = ratings_page(real_run)
    at.text_input(key="ratings-find").input("no_such*run").run()
    assert not at.exception, at.exception
    assert [i.value for i in at.info] == [f"No run matches “{md_escape('no_such*run')}”."]  # escaped for Markdown


def test_pairwise_votes_are_saved_blind_and_reveal_after_every_pair(real_run):
    at = ratings_page(real_run)  # a fresh session: its own letters, nothing judged yet
    at.session_state["rater"] = "pat"
    at.radio(key="ratings-mode").set_value("Pairwise").run()
    assert not at.exception, at.exception
    assert shown_names(at) == []
    assert any("Which is better, A or B?" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "A is better").click().run()
    assert not at.exception, at.exception
    session = at.session_state["rater_session"]
    (vote,) = ratings.list_votes(Store(), run_id=real_run, session=session)
    assert vote["winner"] == "a" and vote["mode"] == "blind" and vote["rater"] == "pat"
    assert shown_names(at) == []
    for _ in range(2):  # the two pairs left; the page moves on to the next open pair by itself
        next(b for b in at.button if b.label == "Tie").click().run()
        assert not at.exception, at.exception
    assert len(ratings.list_votes(Store(), run_id=real_run, session=session)) == 3
    assert set(shown_names(at)) == {"F16", "Q8_0", "Q2_K"}


def test_history_lists_runs_confirms_deletes_exports_and_refuses_a_bad_import(real_run):
    store = Store()
    doomed = store.create_run(settings={"max_tokens": 8}, prompt="Delete me, please.", reference_label="F16")
    store.add_result(doomed, 0, {"label": "F16", "quant_type": "F16", "text": "ok", "is_reference": True})
    store.finish_run(doomed, "done")

    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/history.py")
    at.run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "votes" in d.value.columns)
    assert {real_run, doomed} <= set(table["run"])
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Export JSON", "Export CSV (zip)", "Download report (HTML)", "Download report (Markdown)"} <= set(labels)

    at.selectbox(key="hist-pick").set_value(doomed).run()
    next(b for b in at.button if b.label == "Delete…").click().run()
    assert not at.exception, at.exception
    assert store.get_run(doomed) is not None  # not yet: a confirmation is asked first
    assert any(f"Delete run #{doomed}" in w.value for w in at.warning)
    next(b for b in at.button if b.label == f"Yes, delete run #{doomed}").click().run()
    assert not at.exception, at.exception
    assert store.get_run(doomed) is None and store.get_run(real_run) is not None
    assert any(f"Deleted run #{doomed}" in s.value for s in at.success)
    assert doomed not in set(next(d.value for d in at.dataframe if "votes" in d.value.columns)["run"])

    at.file_uploader(key="hist-import").set_value(("broken.json", b"{not json", "application/json")).run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception, at.exception
    errors = [e.value.replace("\\", "") for e in at.error]  # drop Markdown escapes
    assert any("broken.json" in e and "not a JSON file" in e and "Nothing was added" in e for e in errors), errors

    # a good export goes back in as a new run, with its ratings
    from workbench.people.history import export_json_bytes

    before = {r.id for r in store.list_runs(limit=1000)}
    at.file_uploader(key="hist-import").set_value(("good.json", export_json_bytes(store, [real_run]),
                                                   "application/json")).run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception, at.exception
    (new_id,) = {r.id for r in store.list_runs(limit=1000)} - before
    assert any("Imported 1 run" in s.value and f"#{new_id}" in s.value for s in at.success)
    assert store.get_run(new_id).prompt == "Name three colors."
    assert len(ratings.list_ratings(store, run_id=new_id)) == len(ratings.list_ratings(store, run_id=real_run))
    store.delete_run(new_id)  # leave the shared test database as other modules expect it

    # reopen a run in the Compare view
    at.selectbox(key="hist-pick").set_value(real_run).run()
    next(b for b in at.button if b.label == "Open in Compare").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Compare quantizations" and at.session_state["run_id"] == real_run
    assert any(h.value == f"Run #{real_run}" for h in at.subheader)


def test_compare_page_ratings_carry_rater_and_session_and_the_report_pair_is_there(real_run):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = real_run
    at.session_state["rater"] = "cy"
    at.run()
    assert not at.exception, at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Download report (HTML)", "Download report (Markdown)"} <= set(labels)
    at.get("feedback")[1].set_value(0)  # one star for the second output (Q8_0): blind raters gave 3 to 5
    at.run()
    assert not at.exception, at.exception
    (saved,) = ratings.list_ratings(Store(), run_id=real_run, rater="cy")
    assert (saved["label"], saved["score"], saved["mode"]) == ("Q8_0", 1, "open")
    assert saved["session"] == at.session_state["rater_session"] and saved["prompt"] == "Name three colors."
    assert any(c.value.startswith("Saved: ★ ") and "by cy" in c.value for c in at.caption)


def test_a_rater_name_is_one_name_on_every_page(real_run):
    """A name with spaces around it rates from Compare as the trimmed name, so " Ana Lee " and "Ana Lee" are one rater
    on the leaderboard. Compare's own copy of the star widget passed the name as typed; people.ratings.add_rating
    trims it too, so this held before the pages shared one widget (ui.star_views) and guards that it still does."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = real_run
    at.session_state["rater"] = "  Ana Lee "
    at.run()
    assert not at.exception, at.exception
    at.get("feedback")[2].set_value(1)  # two stars for the third output (Q2_K)
    at.run()
    assert not at.exception, at.exception
    (saved,) = ratings.list_ratings(Store(), run_id=real_run, rater="Ana Lee")
    assert (saved["label"], saved["score"], saved["rater"]) == ("Q2_K", 2, "Ana Lee")
    assert not ratings.list_ratings(Store(), run_id=real_run, rater="  Ana Lee ")
    assert any("by Ana Lee" in c.value for c in at.caption)
