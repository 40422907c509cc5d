"""The Providers page in Streamlit's AppTest, on the real demo ladder and the real database: the empty state, adding
a provider (what a check sends shown before saving; a bad URL or one with a credential refused in one line), a
provider with stored checks (the sentence first, the banner, the table), and the provider report's escaping."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.storage.store import Store
from workbench.storage.watch_rows import ProbeSpec, ProviderCheck
from workbench.watch.change import assess
from workbench.watch.checks import checks_of
from workbench.watch.providers import add_provider, list_providers, remove_provider, tokens_per_check
from workbench.watch.report import report_html, report_markdown
from workbench.watch.timeline import svg_timeline

APP = str(Path(__file__).resolve().parents[1] / "app.py")
K = "providers-"


@pytest.fixture()
def db() -> Store:
    """The app's own database (the session's isolated data directory), with no provider watched."""
    store = Store()
    for p in list_providers(store):
        remove_provider(store, p.id)
    return store


def providers_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.switch_page("pages/providers.py")
    at.run()
    assert not at.exception, at.exception
    return at


def fill(at: AppTest, url: str, name: str = "Acme", model: str = "acme-chat") -> None:
    at.text_input(key=K + "name").set_value(name)
    at.text_input(key=K + "url").set_value(url)
    at.text_input(key=K + "model").set_value(model)
    at.number_input(key=K + "prompts").set_value(3)
    at.number_input(key=K + "max-tokens").set_value(16)
    at.run()


def test_empty_then_adding_shows_the_tokens_before_saving_and_the_first_sentence(demo_ladder, db):
    at = providers_page()
    assert at.title[0].value.startswith("Providers: is my provider still serving what I pay for?")
    assert "No provider is watched yet" in at.info[0].value
    fill(at, "http://127.0.0.1:9/v1")
    draft = add_provider(db, name="draft-for-count", base_url="http://127.0.0.1:9/v1",
                         probe=ProbeSpec("pack", "starter", 2), fingerprint_prompts=3, max_tokens=16)
    expected = tokens_per_check(draft)
    remove_provider(db, draft.id)
    shown = [c.value for c in at.caption if "A check sends about" in c.value]
    assert shown and f"{expected:,} tokens" in shown[0]
    assert list_providers(db) == []  # shown before anything is saved

    at.button(key=K + "save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [saved] = list_providers(db)
    assert saved.name == "Acme" and saved.probe == ProbeSpec("pack", "starter", 2) and saved.fingerprint_prompts == 3
    assert at.info[0].value == "No checks yet — press Check now."  # the first sentence, for the provider just added
    assert at.button(key=K + "check-now").disabled is False


@pytest.mark.parametrize("url, words", [("not a url", "URL"), ("https://alice:s3cr3t-pw@api.example.com/v1", "credential")])
def test_a_bad_url_or_one_with_a_credential_is_refused_in_one_line(demo_ladder, db, url, words):
    at = providers_page()
    fill(at, url)
    at.button(key=K + "save").click().run()
    assert not at.exception
    assert len(at.error) == 1
    line = at.error[0].value
    assert line.startswith("Not saved: ") and words.lower() in line.lower() and "\n" not in line, line
    assert "s3cr3t-pw" not in line and "Traceback" not in line
    assert list_providers(db) == []


def _check(store: Store, provider_id: int, day: int, closest: str | None, *, status: str = "ok", passed: int = 5,
           reason: str | None = None, noisy: tuple[str, ...] = ()) -> ProviderCheck:
    cands = ([{"label": closest, "within_noise": False}] if closest else []) + [
        {"label": n, "within_noise": True} for n in noisy]
    c = ProviderCheck(0, provider_id, f"2026-12-0{day}T09:00:00+00:00", f"2026-12-0{day}T09:01:00+00:00", status=status,
                      reason=reason, closest=closest, confidence=0.97 if closest else None, method="logprobs",
                      fingerprint={"candidates": cands}, pass_rate=None if status != "ok" else passed / 6,
                      passed=None if status != "ok" else passed, total=None if status != "ok" else 6,
                      pass_low=None if status != "ok" else 0.3, pass_high=None if status != "ok" else 0.97,
                      latency_s=1.5 if status == "ok" else None, tok_s=12.0 if status == "ok" else None,
                      tokens_sent=350 if status == "ok" else None)
    return replace(c, id=store.add_provider_check(c))


def test_a_provider_whose_answers_changed_says_so_first_with_the_timeline_and_the_table(demo_ladder, db):
    p = add_provider(db, name="Acme", base_url="http://127.0.0.1:9/v1", model="acme-chat",
                     probe=ProbeSpec("pack", "starter", 2), fingerprint_prompts=3, max_tokens=16)
    _check(db, p.id, 1, "Q8_0")
    _check(db, p.id, 2, "Q8_0")
    _check(db, p.id, 3, None, status="failed", reason="rate limited by the provider (HTTP 429): slow down")
    _check(db, p.id, 4, "Q2_K", passed=1)
    at = providers_page()
    assert not at.exception
    sentence = assess(checks_of(db, p.id), "Acme").sentence
    assert at.warning and at.warning[0].value.replace("\\", "") == sentence
    assert sentence.startswith("Since 4 Dec 09:00 UTC, Acme answers like Q2_K") and "before, like Q8_0" in sentence
    table = at.dataframe[0].value
    assert len(table) == 4 and list(table["answers most like"]) == ["Q2_K", "—", "Q8_0", "Q8_0"]
    assert "rate limited" in table["status"].iloc[1]  # the failed check says why, with no figures
    assert table["probe pass rate (95% interval)"].iloc[1] == "—"
    assert any("measured from this machine (client side)" in c for c in table.columns)
    chart = "".join(m.value for m in at.markdown if "<svg" in m.value)
    assert ">changed</text>" in chart and ">failed</text>" in chart


def test_a_move_within_noise_is_said_calmly(demo_ladder, db):
    p = add_provider(db, name="Calm", base_url="http://127.0.0.1:9/v1")
    _check(db, p.id, 1, "Q8_0", noisy=("F16",))
    _check(db, p.id, 2, "F16", noisy=("Q8_0",))
    at = providers_page()
    assert not at.warning
    assert "within noise" in at.info[0].value and "no change is claimed" in at.info[0].value


HOSTILE = "<script>alert('x')</script>"


def test_the_report_escapes_every_value_from_the_endpoint_and_the_database(demo_ladder, db):
    p = add_provider(db, name=f"Evil {HOSTILE}", base_url="http://127.0.0.1:9/v1?region=eu", model=HOSTILE,
                     probe=ProbeSpec("pack", "starter", 2))
    _check(db, p.id, 1, "Q8_0")
    _check(db, p.id, 2, None, status="failed", reason=f"the provider's answer could not be used: {HOSTILE}")
    _check(db, p.id, 3, "Q2_K")
    checks = checks_of(db, p.id)
    a = assess(checks, p.name)
    labels = [f.label for f in demo_ladder.files]
    html = report_html(p, checks, a, ladder_name=demo_ladder.name, ladder_labels=labels, tokens=tokens_per_check(p))
    md = report_markdown(p, checks, a, ladder_name=demo_ladder.name, tokens=tokens_per_check(p))
    for text in (html, md):
        assert "<script" not in text.lower() and "region=eu" not in text
        assert "&lt;script&gt;" in text
    assert html.index('class="wb-verdict') < html.index("<h2>The endpoint")  # the answer first
    assert "http://127.0.0.1:9/v1" in html and "Method and provenance" in html
    svg = svg_timeline(checks, labels, changed_at=a.since_check_id)
    assert "<script" not in svg.lower() and "&lt;script&gt;" in svg  # the failed check's reason, on hover


def test_providers_sits_in_the_navigation_right_after_recommend():
    pages = [line.split('"')[1] for line in Path(APP).read_text(encoding="utf-8").splitlines()
             if "st.Page(" in line]
    assert pages[pages.index("pages/recommend.py") + 1] == "pages/providers.py"


TYPED_KEY = "sk-typed-only-9c4e2a"


def test_a_typed_key_stays_in_the_session_and_removing_asks_first(demo_ladder, db, isolated_data_dir):
    at = providers_page()
    fill(at, "http://127.0.0.1:9/v1")
    at.text_input(key=K + "key").set_value(TYPED_KEY).run()
    at.button(key=K + "save").click().run()
    [saved] = list_providers(db)
    assert saved.key_env is None and at.session_state[K + "keys"] == {saved.id: TYPED_KEY}  # memory only
    stored = b"".join(p.read_bytes() for p in isolated_data_dir.glob("workbench.sqlite3*"))
    assert TYPED_KEY.encode() not in stored and b"acme-chat" in stored

    at.button(key=K + "remove").click().run()
    assert "Stop watching Acme and forget its 0 checks?" in at.warning[0].value
    assert list_providers(db) != []  # nothing removed before the confirmation
    at.button(key=K + "remove-yes").click().run()
    assert not at.exception and list_providers(db) == []
    assert "No provider is watched yet" in at.info[0].value


def test_due_checks_run_by_themselves_through_the_job_queue_while_the_toggle_is_on(demo_ladder, db):
    """A scheduled provider with no check yet is due: turning the toggle on starts its check as a background job
    (here against a port that refuses, so it waits to retry; Stop makes it a cancelled check, not a drift)."""
    from ui.shared import jobs

    p = add_provider(db, name="Due", base_url="http://127.0.0.1:9/v1", every_s=3600, fingerprint_prompts=1,
                     max_tokens=4)
    at = providers_page()
    at.toggle(key=K + "auto").set_value(True).run()
    assert not at.exception
    job = jobs().get(at.session_state[K + "due-job"])
    assert job is not None and "Due" in job.snapshot()["title"]
    assert any("scheduled check of Due" in c.value for c in at.caption)
    job.stop()
    deadline = time.monotonic() + 120
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.finished
    assert [c.status for c in checks_of(db, p.id)] == ["cancelled"]  # stopped while waiting to retry
