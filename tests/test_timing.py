"""Speed with spread (runs.timing): the rule on handmade windows, then real timing repeats on the demo ladder, on a
quiet or a busy machine alike (each path is asserted for what it must say), and the Compare page's cards."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.core.disturbance import classify, machine_cpus
from workbench.engine.metrics import ContestantResult
from workbench.runs import timing
from workbench.runs.compare import contestants_for, run_comparison, run_contestant
from workbench.runs.contestants import Contestant, RunSettings
from workbench.storage.rows import StoredResult
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PROMPT = "Write a short story about a lighthouse keeper."


def window(tok_s: float, disturbed: bool | None, streamed: bool = False) -> dict:
    return {"tok_s": tok_s, "decode_s": 1.0, "steps": 50, "disturbed": disturbed, "contention": 0.0,
            "streamed": streamed, "decode": {"disturbed": disturbed, "tok": tok_s}}


def test_disturbed_windows_are_timed_again_up_to_the_limit_and_left_out_of_the_median():
    quiet = [window(90, False, True), window(100, False), window(95, False)]
    assert not timing.needs_another(quiet, 3)
    assert timing.needs_another([window(90, True, True)], 1)  # one disturbed window: another is timed
    busy = [window(50 + i, True, i == 0) for i in range(1 + timing.EXTRA_TRIES)]
    assert not timing.needs_another(busy, 1)  # ... but no more than EXTRA_TRIES more
    mixed = [window(60, True, True), window(100, False), window(80, False), window(90, None)]
    s = timing.spread(mixed, 3)
    assert (s["median"], s["min"], s["max"], s["n"], s["windows"], s["disturbed_windows"]) == (90, 80, 100, 3, 4, 1)
    assert s["quiet"] and s["how"].startswith("median of 3 decode windows")
    none = timing.spread(busy, 1)
    assert not none["quiet"] and "could not get a quiet window" in none["how"] and none["n"] == len(busy)


def test_the_result_takes_the_median_and_the_disturbance_of_the_window_nearest_it():
    r = ContestantResult("Q8_0", "Q8_0", "/x.gguf", decode_tok_s=60.0,
                         measurement={"decode": {"disturbed": True, "tok": 60}, "display": "held"})
    timing.apply(r, [window(60, True, True), window(100, False), window(80, False), window(91, False)], 3)
    assert r.decode_tok_s == 91 and r.decode_spread["min"] == 80 and r.decode_spread["max"] == 100
    assert r.measurement["decode"] == {"disturbed": False, "tok": 91}  # the figure's window: not disturbed
    assert r.measurement["streamed_decode"] == {"disturbed": True, "tok": 60} and r.measurement["display"] == "held"
    assert [w["tok_s"] for w in r.decode_repeats] == [60, 100, 80, 91] and "decode" not in r.decode_repeats[0]
    one = ContestantResult("Q8_0", "Q8_0", "/x.gguf", decode_tok_s=70.0, measurement={"decode": {"disturbed": False}})
    timing.apply(one, [window(70, False, True)], 1)  # one quiet window: the streamed figure stands
    assert one.decode_tok_s == 70 and one.measurement == {"decode": {"disturbed": False}}
    assert timing.spread_words(timing.of_result(StoredResult(0, 0, 0, "Q8_0", metrics=one.to_dict()))) == ""


def test_a_stored_spread_is_type_checked_and_said_in_words():
    good = {"median": 90.0, "min": 80.0, "max": 100.0, "n": 3, "windows": 4, "quiet": True, "disturbed_windows": 1}

    def stored(spread: object) -> StoredResult:
        return StoredResult(0, 0, 0, "Q8_0", metrics={"decode_spread": spread})

    assert timing.spread_words(timing.of_result(stored(good))) == "median of 3, range 80.0-100.0, 1 disturbed left out"
    assert "no quiet window in 4 tries" in timing.spread_words(timing.of_result(stored({**good, "quiet": False})))
    for bad in ("x", {**good, "min": "<b>"}, {**good, "n": 2.5}, {**good, "quiet": "yes"}):
        assert timing.of_result(stored(bad)) is None


def test_the_banner_says_what_happened_and_what_to_do():
    spread = {"median": 1.0, "min": 1.0, "max": 1.0, "n": 4, "windows": 4, "disturbed_windows": 4}
    results = [StoredResult(0, 0, 0, "F16", metrics={"decode_spread": {**spread, "quiet": True}}),
               StoredResult(0, 0, 1, "Q8_0", metrics={"decode_spread": {**spread, "quiet": False}}),
               StoredResult(0, 0, 2, "Q2_K")]
    disturbed_once = timing.banner(results, ["F16"])
    assert disturbed_once.startswith("Speed figures disturbed for F16: ") and "Re-measuring runs" in disturbed_once
    mixed = timing.banner(results, ["Q8_0", "Q2_K"])
    assert mixed.startswith("Speed figures disturbed for Q8_0, Q2_K") and "No quiet window could be had for Q8_0," in mixed
    every = timing.banner(results[:2], ["F16", "Q8_0"])
    assert every.startswith("Speed figures disturbed for every file")
    assert timing.banner(results[1:2], ["Q8_0"]).startswith("No quiet window could be had for Q8_0, even timed again")


def test_timing_repeats_are_validated():
    for bad in (0, 11, True, 2.5):
        with pytest.raises(ValueError, match="timing repeats must be a whole number from 1 to 10"):
            RunSettings(timing_repeats=bad).validate()  # type: ignore[arg-type]
    RunSettings(timing_repeats=10).validate()


def test_timing_repeats_time_the_same_answer_again_without_streaming_it(demo_ladder, pool, store):
    """Three windows wanted: the streamed answer's first, the rest timing-only. Whatever the machine does meanwhile,
    the stored figure is the median the rule gives, and the words say which path it took."""
    settings = RunSettings(max_tokens=48, n_ctx=512, n_threads=1, timing_repeats=3)
    contestants = contestants_for(demo_ladder, ["Q2_K"], reference="Q8_0")
    events: list[tuple[str, str, dict]] = []
    comparison = run_comparison(pool, contestants, PROMPT, settings, store=store,
                                on_event=lambda label, status, payload: events.append((label, status, payload)))
    stored = {r.label: r for r in store.get_run(comparison.run_id).results}
    for r in comparison.results:
        assert r.ok, r.error
        streamed = "".join(p["text"] for label, status, p in events if label == r.label and status == "tokens")
        assert streamed == r.text  # the timing-only repeats sent no tokens
        windows = r.decode_repeats
        assert windows[0]["streamed"] and not any(w["streamed"] for w in windows[1:])
        assert 3 <= len(windows) <= 3 + timing.EXTRA_TRIES and not timing.needs_another(windows, 3)
        assert {w["steps"] for w in windows} == {r.decode_steps}  # greedy: the same answer, the same length
        timed_again = [p["message"] for label, status, p in events if label == r.label and status == "timing"]
        assert len(timed_again) == len(windows) - 1 and "nothing drawn" in timed_again[0]
        good = [w["tok_s"] for w in windows if w["disturbed"] is not True]
        s = r.decode_spread
        assert s["quiet"] is bool(good) and s["windows"] == len(windows)
        assert r.decode_tok_s == pytest.approx(s["median"]) and s["min"] <= s["median"] <= s["max"]
        if good:  # quiet enough: the median of the undisturbed windows, the result not disturbed
            assert sorted(good)[0] == s["min"] and sorted(good)[-1] == s["max"] and r.disturbed is not True
        else:  # a busy machine: every window disturbed, and it is said
            assert r.disturbed is True and "could not get a quiet window" in s["how"]
            assert r.label in (timing.unmeasured(store.get_run(comparison.run_id)) or "")
        row = stored[r.label]  # what Recommend's evidence and the pages read back
        assert row.decode_tok_s == pytest.approx(s["median"]) and row.metrics["decode_spread"] == s
        assert row.disturbed == r.disturbed


def test_a_run_that_cannot_get_a_quiet_window_says_so(demo_ladder, pool, store):
    """Every thread shares its core with a busy process for the whole run: each disturbed window is timed again up to
    the limit, then the result says in words that no quiet window could be had."""
    from tests.test_disturbance import busy_processes, run_beside

    settings = RunSettings(max_tokens=64, n_ctx=512, n_threads=machine_cpus())
    contestants = contestants_for(demo_ladder, ["Q2_K"], reference="Q2_K")
    busy = run_beside(lambda: busy_processes(machine_cpus()), pool, contestants, settings, store)
    assert busy.ok and busy.disturbed is True
    assert len(busy.decode_repeats) == 1 + timing.EXTRA_TRIES and all(w["disturbed"] for w in busy.decode_repeats)
    assert not busy.decode_spread["quiet"] and "could not get a quiet window" in busy.decode_spread["how"]
    run = store.get_run(store.list_runs(limit=1)[0].id)
    assert "Q2_K" in (timing.unmeasured(run) or "") and "Run it again" in (timing.unmeasured(run) or "")
    assert "No quiet window could be had for Q2_K" in timing.banner(run.results, ["Q2_K"])


def test_other_uses_of_a_contestant_are_not_timed_again(demo_ladder, pool):
    """Evals, divergence and fingerprints call run_contestant for text: no timing repeats, whatever the settings."""
    c = Contestant.from_ladder_file(demo_ladder.by_label("Q2_K"))
    settings = RunSettings(max_tokens=24, n_ctx=512, n_threads=1, timing_repeats=5)
    r = run_contestant(pool, c, settings, settings.messages(PROMPT))
    assert r.ok and r.decode_repeats == [] and r.decode_spread is None


def _spread_run(store: Store) -> int:
    """A stored run with a spread on one column and a disturbed, never-quiet figure on another (no model needed)."""
    from tests.test_disturbance import snap

    busy = classify("decode", snap(0, 0, 0), snap(2.0, 2.0, 4.0), n_threads=1, n_cpus=2).to_dict()
    quiet = classify("decode", snap(0, 0, 0), snap(2.0, 2.0, 2.1), n_threads=1, n_cpus=2).to_dict()
    run_id = store.create_run(settings={"max_tokens": 32, "timing_repeats": 3}, prompt="p", reference_label="F16")
    rows = [("F16", 90.0, quiet, {"median": 90.0, "min": 84.5, "max": 97.25, "n": 3, "windows": 4, "quiet": True,
                                  "disturbed_windows": 1}),
            ("Q2_K", 60.0, busy, {"median": 60.0, "min": 55.0, "max": 70.0, "n": 6, "windows": 6, "quiet": False,
                                  "disturbed_windows": 6})]
    for i, (label, tok_s, decode, spread) in enumerate(rows):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "file": f"/x/{label}.gguf",
                                     "is_reference": label == "F16", "stop_reason": "eos",
                                     "text": "Leave at 9:30 for 20 km." if label == "F16" else "Leave at 9:45 for 25 km.",
                                     "decode_tok_s": tok_s, "measurement": {"decode": decode}, "decode_spread": spread,
                                     "gpu_mem_bytes": None, "load_s": 0.123456789,
                                     "gpu_layers": 3 if label == "F16" else 0})  # F16's VRAM unread: not "no GPU"
    return run_id


def test_the_compare_page_shows_the_spread_one_banner_and_a_badge():
    store = Store()
    run_id = _spread_run(store)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = run_id
    at.run()
    assert not at.exception, at.exception
    banners = [w.value.replace("\\", "") for w in at.warning]  # markdown-escaped labels
    assert len(banners) == 1 and "No quiet window could be had for Q2_K" in banners[0]  # one, not one per column
    assert "then re-measure" in banners[0] and "F16" not in banners[0]
    assert any(b.label == "Re-measure quietly" for b in at.button)
    badges = [c for c in at.caption if "speed disturbed" in c.value]
    assert len(badges) == 1  # the disturbed column only, its words on hover
    assert "No quiet window came in 6 tries" in badges[0].proto.help and "free core was 100% busy" in badges[0].proto.help
    facts = [e for e in at.expander if e.label.startswith("Changed facts")]
    assert facts and not any(e.proto.expanded for e in facts)  # collapsed whatever the count, the count in the title
    html = " ".join(h.proto.body for h in at.get("html"))
    assert "84.5–97.2 tok/s, median of 3, 1 disturbed left out" in html
    assert "55.0–70.0 tok/s, no quiet window in 6" in html
    table = at.dataframe[0].value
    assert list(table["VRAM MiB"]) == ["—", "no GPU"] and list(table["load s"]) == [0.12, 0.12]
    assert list(table["decode min"]) == [84.5, 55.0] and list(table["decode windows"]) == [4, 6]
    for column in table.columns:  # no column mixes figures with "—": Arrow refuses it and the server logs a traceback
        kinds = {isinstance(v, str) for v in table[column]}
        assert len(kinds) == 1, (column, list(table[column]))


def test_the_run_report_carries_the_spread_and_the_words(store):
    from workbench.people import report

    run_id = _spread_run(store)
    md = report.report_markdown(store, [run_id])
    html = report.report_html(store, [run_id])
    for text in (md, html):
        assert "90.0 (84.5-97.2, n=3)" in text and "60.0 (55.0-70.0, n=6)" in text  # median (range, windows used)
        assert "No quiet window came in 6 tries." in text
    fig = report.metrics_figure(store.get_run(run_id))
    decode = fig.data[1]
    assert list(decode.error_y.array) == [pytest.approx(7.25), pytest.approx(10.0)]  # whiskers: up to the max ...
    assert list(decode.error_y.arrayminus) == [pytest.approx(5.5), pytest.approx(5.0)]  # ... and down to the min
