"""Provider watch on real parts: llama-cpp-python's own OpenAI-compatible server on 127.0.0.1 serving the demo
ladder's Q8_0 under a fixed model name, checked twice, then restarted on the Q2_K file under the SAME name: the
next check (`workbench watch --once`) must report the switch in words, exit 1, and post one webhook message to a
local receiver. Servers that answer 429/500 or hang give failed checks with their reasons, never a drift. The
API key (from an environment variable) and the webhook URL reach neither the database nor an export.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_remote import LlamaServer, free_port

from workbench.cli.main import main
from workbench.storage.store import Store
from workbench.storage.watch_rows import ProviderCheck
from workbench.watch.change import assess
from workbench.watch.checks import checks_of, run_check
from workbench.watch.notify import post_webhook
from workbench.watch.providers import ProbeSpec, add_provider, tokens_per_check
from workbench.watch.schedule import run_provider

PLAIN_GREEDY = {"repeat_penalty": 1.0}  # llama-cpp-python's server adds a 1.1 repeat penalty otherwise
MODEL_NAME = "acme-chat-large"  # what the "provider" calls its model, whichever file it serves
SECRET_KEY = "sk-watch-test-7f3a9c1e5b"
HOOK_TOKEN = "T0KEN-hook-2b8d"


# ---- real and hostile servers, and a webhook receiver ---------------------------------------------
class Receiver(BaseHTTPRequestHandler):
    """A Slack-style webhook: records each JSON body it is sent."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.got.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
        status = self.server.status
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class Trouble(BaseHTTPRequestHandler):
    """An endpoint in trouble: 429 or 500 to every request, or silence (`mode`); it counts what it was asked."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests += 1
        if self.server.mode == "silent":
            self.server.release.wait(30)
            return
        status = 429 if self.server.mode == "rate_limited" else 500
        body = json.dumps({"error": {"message": "slow down" if status == 429 else "overloaded"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _http_server(handler: type[BaseHTTPRequestHandler], **attrs: Any) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    for k, v in attrs.items():
        setattr(httpd, k, v)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture()
def receiver() -> Iterator[ThreadingHTTPServer]:
    httpd = _http_server(Receiver, got=[], status=200)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own database, shared by the library calls and the CLI (both open the default Store)."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


# ---- the story of the issue ------------------------------------------------------------------------
def test_a_silent_switch_to_q2k_is_caught_said_in_words_alarmed_once_and_no_secret_is_kept(
        demo_ladder, pool, data_dir, receiver, tmp_path, monkeypatch, capsys):
    pytest.importorskip("fastapi", reason="llama-cpp-python's server extra is not installed")
    server = LlamaServer(tmp_path, MODEL_NAME)
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/services/{HOOK_TOKEN}"
    monkeypatch.setenv("ACME_API_KEY", SECRET_KEY)
    monkeypatch.setenv("ACME_WEBHOOK", hook_url)
    store = Store()
    try:
        server.serve(demo_ladder.by_label("Q8_0").path)
        provider = add_provider(store, name="Acme", base_url=server.url, model=MODEL_NAME, key_env="ACME_API_KEY",
                                extra_body=PLAIN_GREEDY, ladder="demo", probe=ProbeSpec("pack", "starter", 2),
                                fingerprint_prompts=3, max_tokens=16, webhook_env="ACME_WEBHOOK")
        assert tokens_per_check(provider) > 0

        first = run_provider(pool, store, provider)
        second = run_provider(pool, store, provider)
        for o in (first, second):
            assert o.check.ok, o.check.reason
            assert o.check.closest == "Q8_0", o.check.confidence_text
            assert o.check.total == 2 and o.check.pass_low is not None and o.check.pass_high is not None
            assert o.check.tokens_sent and o.check.tokens_sent > 0 and o.check.latency_s and o.check.latency_s > 0
            # llama_cpp.server streams without usage: the probe's requests are counted so, and the note says it
            assert o.check.tokens_note and "2 of 5 requests" in o.check.tokens_note
            assert not o.changed_now and o.notified is None
        assert not second.assessment.changed and "Q8_0" in second.assessment.sentence
        assert "all 2 checks" in second.assessment.sentence
        assert receiver.got == []

        server.serve(demo_ladder.by_label("Q2_K").path)  # same port, same model name, a much smaller file
        capsys.readouterr()
        assert main(["watch", "--once"]) == 1
        out, err = capsys.readouterr()
        assert "CHANGED" in out and "Q2_K" in out
    finally:
        server.stop()

    checks = checks_of(store, provider.id)
    assert [c.status for c in checks] == ["ok", "ok", "ok"]
    assert [c.closest for c in checks] == ["Q8_0", "Q8_0", "Q2_K"]
    verdict = assess(checks, "Acme")
    assert verdict.changed and not verdict.within_noise and verdict.since_check_id == checks[2].id
    assert verdict.before == "Q8_0" and verdict.after == "Q2_K"
    assert verdict.sentence.startswith("Since ") and "Acme answers like Q2_K" in verdict.sentence
    assert "before, like Q8_0" in verdict.sentence and "Pass rate on the quality probe" in verdict.sentence

    assert len(receiver.got) == 1  # one message for one change
    path, ctype, body = receiver.got[0]
    assert path == f"/services/{HOOK_TOKEN}" and ctype == "application/json" and "Q2_K" in body["text"]

    # the key and the webhook URL never reach the database, its WAL, an export or the output
    export = tmp_path / "export.json"
    assert main(["export", "--format", "json", "--out", str(export)]) == 0
    stored = b"".join(p.read_bytes() for p in data_dir.glob("workbench.sqlite3*"))
    for secret in (SECRET_KEY, HOOK_TOKEN):
        assert secret.encode() not in stored
        assert secret not in export.read_text(encoding="utf-8")
        assert secret not in out + err
    assert b"ACME_API_KEY" in stored  # the variable's name is kept, so a later check can read it again


# ---- a provider in trouble is a failed check, not a drift -----------------------------------------
@pytest.mark.parametrize("mode, words", [("rate_limited", "rate limited by the provider (HTTP 429)"),
                                         ("server_error", "server error (HTTP 500)"),
                                         ("silent", "timed out")])
def test_rate_limits_server_errors_and_hangs_are_failed_checks_with_reasons(demo_ladder, pool, store, mode, words):
    httpd = _http_server(Trouble, mode=mode, requests=0, release=threading.Event())
    try:
        provider = add_provider(store, name=f"trouble-{mode}", base_url=f"http://127.0.0.1:{httpd.server_address[1]}",
                                model="m", fingerprint_prompts=2, max_tokens=8, timeout_s=1.0)
        check = run_check(pool, store, provider, backoff_s=(0.05, 0.05))
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()
    assert check.status == "failed" and words in (check.reason or "") and "after 3 attempts" in (check.reason or "")
    assert check.closest is None and check.pass_rate is None  # no figures: nothing to read as a quality drop
    assert httpd.requests >= 3  # retried: once per attempt at least
    stored = checks_of(store, provider.id)
    assert [c.status for c in stored] == ["failed"] and stored[0].reason == check.reason
    verdict = assess(stored, provider.name)
    assert not verdict.changed and verdict.skipped == 1 and "No successful check" in verdict.sentence


def test_a_refused_key_fails_at_once_without_retrying(store, pool):
    class Refuse(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.server.requests += 1
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = _http_server(Refuse, requests=0)
    try:
        provider = add_provider(store, name="refuses", base_url=f"http://127.0.0.1:{httpd.server_address[1]}",
                                fingerprint_prompts=1, max_tokens=4)
        check = run_check(pool, store, provider, backoff_s=(0.05, 0.05))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert check.status == "failed" and "API key" in (check.reason or "") and "attempts" not in (check.reason or "")
    assert httpd.requests <= 2  # one attempt (the fingerprint asks once more without log-probs), no retries


# ---- the verdict's rules, on stored rows ----------------------------------------------------------
def _check(i: int, closest: str, noisy: tuple[str, ...] = (), passed: int | None = None, total: int = 40,
           status: str = "ok") -> ProviderCheck:
    cands = [{"label": closest, "within_noise": False}] + [{"label": n, "within_noise": True} for n in noisy]
    return ProviderCheck(i, 1, f"2026-12-0{i}T09:00:00+00:00", status=status, closest=closest if status == "ok" else None,
                         confidence=0.97 if not noisy else 0.6, fingerprint={"candidates": cands},
                         pass_rate=None if passed is None else passed / total, passed=passed,
                         total=None if passed is None else total, pass_low=None if passed is None else 0.1,
                         pass_high=None if passed is None else 0.9)


def test_a_move_between_files_the_fingerprint_cannot_tell_apart_is_within_noise_not_a_change():
    checks = [_check(1, "Q8_0", noisy=("F16",)), _check(2, "F16", noisy=("Q8_0",))]
    v = assess(checks, "Acme")
    assert not v.changed and v.within_noise and "within noise" in v.sentence and "no change is claimed" in v.sentence


def test_failed_checks_between_are_skipped_and_said():
    checks = [_check(1, "Q8_0"), _check(2, "", status="failed"), _check(3, "Q4_K_M")]
    v = assess(checks, "Acme")
    assert v.changed and v.before == "Q8_0" and v.after == "Q4_K_M" and v.skipped == 1
    assert "Since 3 Dec 09:00 UTC, Acme answers like Q4_K_M (confidence 0.97); before, like Q8_0 (0.97)." in v.sentence
    assert "1 check that failed" in v.sentence


def test_a_pass_rate_drop_is_a_change_only_beyond_noise():
    small = assess([_check(1, "Q8_0", passed=38), _check(2, "Q8_0", passed=36)], "Acme")
    assert not small.changed and small.within_noise and "within noise" in small.sentence
    big = assess([_check(1, "Q8_0", passed=38), _check(2, "Q8_0", passed=20)], "Acme")
    assert big.changed and big.since_check_id == 2 and "a drop beyond noise" in big.sentence
    assert "Pass rate on the quality probe 50%" in big.sentence


def test_a_switch_with_the_same_pass_rate_says_the_rate_is_unchanged():
    v = assess([_check(1, "Q8_0", passed=38), _check(2, "Q2_K", passed=38)], "Acme")
    assert v.changed and "Pass rate on the quality probe unchanged: 95%" in v.sentence and " vs " not in v.sentence


def test_a_webhook_that_fails_says_so_without_its_url(receiver):
    receiver.status = 500
    url = f"http://127.0.0.1:{receiver.server_address[1]}/services/{HOOK_TOKEN}"
    error = post_webhook(url, "hello", timeout_s=5)
    assert error is not None and "HTTP 500" in error and HOOK_TOKEN not in error
    assert receiver.got[0][2] == {"text": "hello"}
    receiver.status = 200
    assert post_webhook(url, "Acme <!channel> & <http://evil|click>", timeout_s=5) is None
    assert receiver.got[1][2] == {"text": "Acme &lt;!channel&gt; &amp; &lt;http://evil|click&gt;"}
    assert post_webhook(f"http://127.0.0.1:{free_port()}/x", "hello", timeout_s=2) is not None


# ---- the probe on the user's own prompts ------------------------------------------------------------
def test_a_prompt_set_probe_passes_the_reference_answer_and_fails_a_changed_fact(demo_ladder, pool, store, serve,
                                                                               tmp_path):
    """The endpoint (a stdlib server answering a set text) gives back the local reference's own answer: it passes;
    the same answer with one number changed fails on the changed fact; a prompt with a checker is judged by it."""
    from workbench.runs.compare import run_contestant
    from workbench.runs.contestants import Contestant, RunSettings
    from workbench.watch.prompt_probe import PROBE_MAX_TOKENS

    prompt = "How many days are in a week? Answer in one short sentence."
    ref = Contestant.from_ladder_file(demo_ladder.reference, is_reference=True)
    local = run_contestant(pool, ref, RunSettings(max_tokens=PROBE_MAX_TOKENS), RunSettings().messages(prompt))
    assert local.text and not local.error
    sets = tmp_path / "mine.jsonl"
    sets.write_text(json.dumps({"prompt": prompt}) + "\n", encoding="utf-8")

    server = serve("answer", local.text)
    provider = add_provider(store, name="same", base_url=server.url, model="m", fingerprint_prompts=1, max_tokens=8,
                            probe=ProbeSpec("prompt_set", str(sets), None))
    same = run_check(pool, store, provider, backoff_s=(0.05,))
    assert same.ok and same.passed == 1 and same.total == 1 and same.probe["prompts"][0]["passed"], same.probe
    assert len(same.run_ids) == 1 and store.get_run(same.run_ids[0]) is not None  # the stored comparison opens

    changed = local.text.replace("7", "8") if "7" in local.text else local.text + " It has 8 days."
    server.httpd.answer = changed
    worse = run_check(pool, store, provider, backoff_s=(0.05,))
    assert worse.ok and worse.passed == 0 and worse.total == 1 and worse.pass_high is not None

    checked = tmp_path / "checked.jsonl"
    checked.write_text(json.dumps({"prompt": prompt, "check": {"kind": "contains", "expected": "8 days"}}) + "\n",
                       encoding="utf-8")
    with_check = replace_probe(store, provider, ProbeSpec("prompt_set", str(checked), None))
    judged = run_check(pool, store, with_check, backoff_s=(0.05,))
    assert judged.ok and judged.passed == (1 if "8 days" in changed else 0)


def replace_probe(store: Store, provider: Any, probe: ProbeSpec) -> Any:
    from workbench.watch.providers import update_provider

    return update_provider(store, provider.id, probe=probe)


def test_stop_during_a_check_stores_a_cancelled_check_not_a_failure(pool, store):
    from workbench.watch.checks import check_job

    httpd = _http_server(Trouble, mode="silent", requests=0, release=threading.Event())
    try:
        provider = add_provider(store, name="slow", base_url=f"http://127.0.0.1:{httpd.server_address[1]}",
                                fingerprint_prompts=1, max_tokens=4, timeout_s=60.0)
        job = check_job(pool, store, provider).start()
        deadline = time.monotonic() + 30
        while httpd.requests == 0 and time.monotonic() < deadline:  # the request is out, the server silent
            time.sleep(0.05)
        job.stop()
        assert job.join(30) and job.status == "done", job.failure
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()
    assert job.result.status == "cancelled" and job.snapshot()["check_status"] == "cancelled"
    assert [c.status for c in checks_of(store, provider.id)] == ["cancelled"]
    assert "No successful check" in assess(checks_of(store, provider.id), "slow").sentence
