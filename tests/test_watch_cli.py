"""`workbench watch add|list|remove` and the checks' exit codes on bad input: one line, exit 2, nothing stored.

No model runs here: what the real server does to `watch --once` is tests/test_watch.py's story.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workbench.cli.main import main
from workbench.storage.store import Store
from workbench.storage.watch_rows import ProviderCheck
from workbench.watch.schedule import due


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


ADD = ["watch", "add", "--name", "Acme", "--endpoint", "http://127.0.0.1:9/v1", "--model", "acme-large", "--demo"]


def test_add_list_and_remove_a_provider(data_dir, capsys):
    assert main([*ADD, "--pack", "starter", "--cases", "4", "--every", "6h", "--key-env", "ACME_KEY",
                 "--webhook-env", "ACME_HOOK", "--extra", '{"repeat_penalty": 1.0}']) == 0
    said = capsys.readouterr().out
    assert "Watching Acme (#1)" in said and "tokens" in said
    assert main(["watch", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["provider"] == "Acme" and row["endpoint"]["base_url"] == "http://127.0.0.1:9/v1"
    assert row["endpoint"]["api_key_env"] == "ACME_KEY" and row["every_s"] == 6 * 3600
    assert row["probe"] == {"kind": "pack", "name": "starter", "cases": 4} and row["tokens_per_check_estimate"] > 0
    assert main(["watch", "list"]) == 0
    out = capsys.readouterr().out
    assert "pack starter" in out and "No successful check of Acme yet." in out
    assert main(["watch", "remove", "Acme"]) == 0
    assert "Stopped watching Acme" in capsys.readouterr().out
    assert main(["watch", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("argv, words", [
    ([*ADD, "--pack", "no-such-pack"], "no task pack named"),
    ([*ADD, "--prompt-set", "no-such-set"], "no prompt set named"),
    ([*ADD, "--every", "5s"], "too short"),
    ([*ADD, "--every", "often"], "cannot read the interval"),
    ([*ADD, "--key-env", "sk-live-123"], "NAME of an environment variable"),
    ([*ADD, "--extra", "{nope"], "not valid JSON"),
    ([*ADD, "--prompts", "9"], "at most"),
    (["watch", "add", "--name", "X", "--endpoint", "http://user:sk-123@example.com/v1", "--demo"], "credential"),
    (["watch", "add", "--name", "X", "--endpoint", "http://127.0.0.1:9", "--ladder", "/nowhere"], "ladder.json"),
    (["watch", "remove", "nobody"], "no watched provider"),
    (["watch", "--once"], "no watched providers"),
])
def test_bad_input_is_one_line_and_exit_2(data_dir, capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err and "sk-123" not in err
    assert Store().watched_providers() == []


def test_a_name_is_watched_once(data_dir, capsys):
    assert main(ADD) == 0
    assert main(ADD) == 2
    assert "already watched" in capsys.readouterr().err
    assert len(Store().watched_providers()) == 1


def test_due_follows_each_schedule_and_every_overrides_it(data_dir, capsys):
    assert main([*ADD, "--every", "1h"]) == 0
    assert main(["watch", "add", "--name", "Manual", "--endpoint", "http://127.0.0.1:9", "--demo"]) == 0
    store = Store()
    acme, manual = sorted(store.watched_providers(), key=lambda p: p.name)
    now = datetime.now(UTC)
    assert [p.name for p in due(store, now)] == ["Acme"]  # never checked: due; a manual one never is
    store.add_provider_check(ProviderCheck(0, acme.id, now.isoformat(), status="failed", reason="HTTP 429"))
    assert due(store, now + timedelta(minutes=30)) == []  # a failed check waits its turn too
    assert [p.name for p in due(store, now + timedelta(minutes=61))] == ["Acme"]
    assert {p.name for p in due(store, now + timedelta(minutes=30), every_s=60)} == {"Acme", "Manual"}
    assert main(["watch"]) == 0  # nothing due right now: no check runs, exit 0
    assert "No provider is due" in capsys.readouterr().out



def test_the_apps_scheduler_checks_what_is_due_once(data_dir, pool):
    """due_checks_job: a background job over the due providers; a provider that is down is a failed check (with
    its reason), and is then not due again until its interval has passed."""
    from test_remote import free_port

    from workbench.watch.schedule import due_checks_job

    assert main(["watch", "add", "--name", "Down", "--endpoint", f"http://127.0.0.1:{free_port()}", "--demo",
                 "--every", "1h", "--prompts", "1", "--max-tokens", "4"]) == 0
    store = Store()
    job = due_checks_job(pool, store, backoff_s=(0.05,))
    assert job is not None
    job.start()
    assert job.join(120) and job.status == "done", job.failure
    (outcome,) = job.result
    assert outcome.check.status == "failed" and "connection refused" in (outcome.check.reason or "")
    assert not outcome.changed_now and outcome.notified is None
    assert due_checks_job(pool, store) is None


def test_odd_stored_watch_values_get_their_documented_defaults():
    from workbench.storage.watch_rows import ProbeSpec, WatchedProvider

    p = WatchedProvider.from_row({"id": 3, "name": "Acme", "base_url": "http://x", "extra_body_json": "[1]",
                                  "probe_json": '{"kind": "bogus"}', "every_s": "often", "fingerprint_prompts": -2,
                                  "timeout_s": "slow", "key_env": 7})
    assert p.extra_body == {} and p.probe == ProbeSpec() and p.every_s is None and p.fingerprint_prompts == 1
    assert p.timeout_s == 60.0 and p.key_env is None and p.ladder == "demo"
    c = ProviderCheck.from_row({"id": 1, "provider_id": 3, "started_at": "t", "status": "exploded", "confidence": "high",
                                "fingerprint_json": "not json", "run_ids_json": '[1, "2", null, 3]', "passed": 2.5})
    assert c.status == "failed" and c.confidence is None and c.fingerprint == {} and c.run_ids == [1, 3]
    assert c.passed is None and not c.ok
