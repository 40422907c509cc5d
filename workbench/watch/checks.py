"""One check of a watched provider: which local quantization it answers like, and how well it does a small task.

A check has two parts, each on the endpoint and then on this machine through the machine-wide run queue (so a
check never runs beside a timed local run):

1. The fingerprint (runs.fingerprint): the first `fingerprint_prompts` reference prompts, greedy, with top
   log-probs where the endpoint gives them; every file of the provider's ladder is ranked by how closely it
   behaves like the endpoint. `confidence` is the winner's weakest share of paired bootstrap resamples against
   any other file (the fingerprint's own test; 0.95 and up is a clear win).
2. The quality probe (when the provider has one): a task pack's cases (quality.evals) through the endpoint and
   the ladder's reference file, each judged by the case's checker; the endpoint's pass count with its Wilson 95%
   interval, and the paired McNemar test against the local reference. Or a prompt set's prompts, each passing
   when the endpoint says what the local reference says (watch.prompt_probe).

The outside world fails in ordinary ways: a rate limit (429), a server error (5xx), a timeout, a refused
connection. Those are retried after BACKOFF_S pauses and, if they persist, stored as a failed check with the
reason in words, and no figures: a failed check is never read as a quality drop (change.assess skips it).
Other errors (a wrong key, a wrong URL) fail at once. Latency and throughput are measured on this side of the
network (runs.remote.metered), so they include the network and the provider's queue, and are labelled so.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from workbench.core.jobs import Job, one_line
from workbench.engine.pool import WorkerPool
from workbench.quality.evals import ALL, EvalProgress, default_settings, run_eval
from workbench.runs.contestants import Contestant
from workbench.runs.fingerprint import REFERENCE_PROMPTS, FingerprintReport, fingerprint
from workbench.runs.prompt_sets import SetPrompt
from workbench.runs.remote import RemoteCompletion, contestant_for
from workbench.runs.remote_meter import metered
from workbench.storage.database import now_iso
from workbench.storage.store import Store
from workbench.storage.watch_rows import ProviderCheck, WatchedProvider
from workbench.watch.prompt_probe import EndpointFailed, run_prompt_probe
from workbench.watch.providers import (
    BYTES_PER_TOKEN,
    endpoint_of,
    estimate_tokens,
    ladder_of,
    probe_cases,
    probe_prompts,
)

__all__ = ["BACKOFF_S", "CheckJob", "ProviderCheck", "check_job", "checks_of", "classify_failure", "run_check"]

BACKOFF_S: tuple[float, ...] = (5.0, 30.0)  # pauses before the 2nd and 3rd attempt; then the check fails
OnProgress = Callable[[int, int, str], None]
Metered = list[tuple[list[dict[str, str]], RemoteCompletion]]


class _Failed(Exception):
    """A part of the check failed for a reason outside the workbench; `retry` says whether waiting could help."""

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason, self.retry = reason, retry


class _Cancelled(Exception):
    pass


def classify_failure(error: str) -> tuple[str, bool]:
    """An endpoint error line as (reason in words, whether retrying later may help)."""
    m = re.search(r"\bHTTP (\d{3})\b", error)
    status = int(m.group(1)) if m else None
    if status == 429:
        return f"rate limited by the provider (HTTP 429): {error}", True
    if status is not None and status >= 500:
        return f"the provider had a server error (HTTP {status}): {error}", True
    if "timed out" in error or "did not finish within" in error:
        return f"the provider timed out: {error}", True
    if "connection refused" in error or "closed the connection" in error or "dropped midway" in error:
        return f"the provider refused or dropped the connection: {error}", True
    if status in (401, 403):
        return f"the provider refused the API key: {error}", False
    return f"the provider's answer could not be used: {error}", False


def _with_retries(attempt: Callable[[], Any], backoff_s: Sequence[float], cancel: threading.Event | None,
                  say: Callable[[str], None]) -> Any:
    """`attempt()` until it succeeds, fails for good, or the pauses run out; the last failure is raised."""
    for n in range(len(backoff_s) + 1):
        try:
            return attempt()
        except _Failed as exc:
            if not exc.retry or n == len(backoff_s):
                tries = f" (after {n + 1} attempts)" if n else ""
                raise _Failed(exc.reason + tries, False) from None
            say(f"{exc.reason.split(':')[0]}; trying again in {backoff_s[n]:g} s")
            if cancel is not None and cancel.wait(backoff_s[n]):
                raise _Cancelled() from None
            if cancel is None:
                time.sleep(backoff_s[n])
    raise AssertionError("unreachable")


def _confidence(report: FingerprintReport) -> tuple[float | None, str | None]:
    """The winner's weakest bootstrap share against another file, and the runner-up's label."""
    usable = [c for c in report.candidates if c.error is None]
    if not usable or usable[0].label != report.closest:
        return None, None
    best = usable[0]
    return (min(best.wins_over.values()) if best.wins_over else None), (usable[1].label if len(usable) > 1 else None)


def _client_figures(sent: Metered) -> tuple[float | None, float | None, int | None, str | None]:
    """Mean seconds per request (sent -> last byte), mean completion tokens/s, tokens sent + received, and a note.

    Tokens per second: (tokens - 1) / first -> last streamed chunk for a streamed answer; for an answer that came
    whole (the fingerprint asks unstreamed), tokens / the whole request. Both client-side, network included.
    Tokens: the endpoint's own usage figures; a request without them (a streamed answer from a server that sends
    no usage) counts its answer by streamed chunks and its prompt by tokens_per_check's estimate, and the note
    says how many requests were counted so.
    """
    done = [(m, c) for m, c in sent if c.t_end is not None]
    if not done:
        return None, None, None, None
    latency = sum((c.t_end or 0.0) - c.t_request for _, c in done) / len(done)
    rates = []
    tokens, guessed = 0, 0
    for messages, c in done:
        n = c.completion_tokens
        if c.prompt_tokens is None or c.completion_tokens is None:
            guessed += 1
        tokens += c.prompt_tokens if c.prompt_tokens is not None else estimate_tokens(messages)
        tokens += n if n is not None else c.content_chunks
        if not n:
            continue
        if c.content_chunks > 1 and c.t_first is not None and c.t_last is not None and c.t_last > c.t_first and n > 1:
            rates.append((n - 1) / (c.t_last - c.t_first))
        elif (c.t_end or 0.0) > c.t_request:
            rates.append(n / ((c.t_end or 0.0) - c.t_request))
    note = None
    if guessed:
        note = (f"{guessed} of {len(done)} requests came without the endpoint's token counts (a streamed answer from "
                "a server that sends no usage): their answers are counted by streamed chunks and their prompts "
                f"estimated at about {BYTES_PER_TOKEN} bytes a token.")
    return latency, (sum(rates) / len(rates) if rates else None), tokens, note


def _fingerprint_once(pool: WorkerPool, provider: WatchedProvider, endpoint: Any, ladder: Any,
                      cancel: threading.Event | None, say: Callable[[str], None]) -> FingerprintReport:
    report = fingerprint(pool, endpoint, ladder, list(REFERENCE_PROMPTS[: provider.fingerprint_prompts]),
                         max_tokens=provider.max_tokens, cancel=cancel, progress=say, save=False)
    if cancel is not None and cancel.is_set():
        raise _Cancelled()
    failed = next((o["error"] for o in report.endpoint_outputs if o.get("error")), None)
    if failed:
        raise _Failed(*classify_failure(failed))
    if report.closest is None:  # every local file failed: this machine's trouble, not the provider's
        raise _Failed(f"no local file could be compared on this machine: {report.error or report.confidence}", False)
    return report


def _remote(endpoint: Any, ladder: Any) -> Contestant:
    """The endpoint as a contestant, named so that it cannot be taken for a ladder file."""
    label = endpoint.label if endpoint.label not in ladder.labels() else f"{endpoint.label} (endpoint)"
    return contestant_for(replace(endpoint, label=label))


def _prompt_probe_once(pool: WorkerPool, store: Store, prompts: list[SetPrompt], endpoint: Any, ladder: Any,
                       cancel: threading.Event | None, on_step: Callable[[int, str], None],
                       run_ids: list[int], name: str) -> dict[str, Any]:
    try:
        out = run_prompt_probe(pool, store, ladder, _remote(endpoint, ladder), prompts, cancel=cancel,
                               on_step=on_step, run_ids=run_ids)
    except EndpointFailed as exc:
        raise _Failed(*classify_failure(str(exc))) from None
    if cancel is not None and cancel.is_set():
        raise _Cancelled()
    return {**out, "name": name, "cases": len(prompts)}


def _probe_once(pool: WorkerPool, store: Store, provider: WatchedProvider, endpoint: Any, ladder: Any,
                cancel: threading.Event | None, on_eval: Callable[[EvalProgress], None],
                run_ids: list[int]) -> dict[str, Any]:
    """Run the pack probe once; the endpoint's and the reference's pass counts and the paired test."""
    got = probe_cases(provider.probe)
    assert got is not None
    pack, cases = got
    ref = Contestant.from_ladder_file(ladder.reference, is_reference=True)
    remote = _remote(endpoint, ladder)
    label = remote.label
    run = run_eval(pool, pack, [ref, remote], default_settings(cases), store=store, ladder=ladder,
                   limit=provider.probe.cases, on_progress=on_eval, cancel=cancel,
                   on_run_created=run_ids.append)
    if cancel is not None and cancel.is_set():
        raise _Cancelled()
    failed = next((o.error for o in run.outcomes if o.label == label and o.error), None)
    if failed:
        raise _Failed(*classify_failure(failed.removeprefix(f"{label}: ")))
    cells = {c.label: c for c in run.matrix() if c.category == ALL}
    mine, theirs = cells[label], cells[ref.label]
    paired = next((r for r in run.paired() if r.category == ALL and r.label == label), None)
    return {"kind": "pack", "name": pack.name, "run_id": run.run_id, "cases": len(cases), "reference": ref.label,
            "passed": mine.passed, "total": mine.total, "rate": mine.rate, "low": mine.low, "high": mine.high,
            "reference_passed": theirs.passed, "reference_total": theirs.total,
            "vs_reference": paired.verdict if paired else None, "p_value": paired.p_value if paired else None}


def run_check(pool: WorkerPool, store: Store, provider: WatchedProvider, *, key: str | None = None,
              on_progress: OnProgress | None = None, cancel: threading.Event | None = None,
              backoff_s: Sequence[float] = BACKOFF_S) -> ProviderCheck:
    """Check `provider` once (fingerprint, then the quality probe), store the check and return it as stored.

    Never raises for the endpoint's trouble: a rate limit, server error, timeout or refusal that outlasts the
    retries is a failed check with its reason. `key` (typed into a session) is used for this check only.
    """
    progress = on_progress or (lambda done, total, message: None)
    started = now_iso()
    try:
        probe = probe_cases(provider.probe)
        prompts = probe_prompts(provider.probe)
        ladder = ladder_of(provider)
    except (ValueError, OSError) as exc:  # the ladder or the pack went missing since it was saved
        check = ProviderCheck(0, provider.id, started, finished_at=now_iso(), status="failed",
                              reason=f"this machine's side could not be prepared: {one_line(exc)}")
        return replace(check, id=store.add_provider_check(check))
    probe_n = len(probe[1]) * 2 if probe else len(prompts) * 2 if prompts else 0
    n_prompts = provider.fingerprint_prompts
    total = n_prompts + len(ladder.files) + probe_n
    step = {"done": 0}

    def say(message: str) -> None:
        if message.startswith("endpoint: prompt "):  # counted again from its number when an attempt is retried
            step["done"] = int(message.split()[2].split("/")[0])
        elif message.startswith("local:"):
            step["done"] = min(step["done"] + 1, total)
        progress(step["done"], total, message)

    def on_eval(p: EvalProgress) -> None:
        progress(min(total, total - probe_n + p.done), total, f"quality probe: {p.message}")

    def on_step(done: int, message: str) -> None:
        progress(min(total, total - probe_n + done), total, f"quality probe: {message}")

    endpoint = endpoint_of(provider, key)
    run_ids: list[int] = []
    with metered() as sent:
        try:
            report = _with_retries(lambda: _fingerprint_once(pool, provider, endpoint, ladder, cancel, say),
                                   backoff_s, cancel, say)
            probe_result: dict[str, Any] = {}
            if probe is not None:
                probe_result = _with_retries(lambda: _probe_once(pool, store, provider, endpoint, ladder, cancel,
                                                                 on_eval, run_ids), backoff_s, cancel, say)
            elif prompts:
                probe_result = _with_retries(
                    lambda: _prompt_probe_once(pool, store, prompts, endpoint, ladder, cancel, on_step, run_ids,
                                               provider.probe.name), backoff_s, cancel, say)
        except _Failed as exc:
            check = ProviderCheck(0, provider.id, started, finished_at=now_iso(), status="failed", reason=exc.reason,
                                  run_ids=run_ids)
        except (_Cancelled, InterruptedError):  # stopped, or stopped while waiting for the machine
            check = ProviderCheck(0, provider.id, started, finished_at=now_iso(), status="cancelled", reason="stopped",
                                  run_ids=run_ids)
        except (ValueError, OSError) as exc:  # this machine's side: a pack case longer than the context, a file gone
            check = ProviderCheck(0, provider.id, started, finished_at=now_iso(), status="failed",
                                  reason=f"this machine's side of the check failed: {one_line(exc)}", run_ids=run_ids)
        else:
            confidence, runner_up = _confidence(report)
            latency, tok_s, tokens, tokens_note = _client_figures(sent)
            check = ProviderCheck(
                0, provider.id, started, finished_at=now_iso(), status="ok", closest=report.closest, confidence=confidence,
                confidence_text=report.confidence, runner_up=runner_up, method=report.method,
                fingerprint=report.to_dict(), probe=probe_result, pass_rate=probe_result.get("rate"),
                passed=probe_result.get("passed"), total=probe_result.get("total"), pass_low=probe_result.get("low"),
                pass_high=probe_result.get("high"), latency_s=latency, tok_s=tok_s, tokens_sent=tokens,
                tokens_note=tokens_note, run_ids=run_ids)
    if not check.ok:  # what a failed or stopped check spent is still spent: its cost, never a figure
        spent, spent_note = _client_figures(sent)[2:]
        check = replace(check, tokens_sent=spent, tokens_note=spent_note)
    check = replace(check, id=store.add_provider_check(check))
    progress(total, total, check.status if check.ok else f"{check.status}: {check.reason}")
    return check


def checks_of(store: Store, provider_id: int) -> list[ProviderCheck]:
    """The provider's checks, oldest first (failed and cancelled ones included)."""
    return store.provider_checks(provider_id)


class CheckJob(Job):
    """A provider check in the background, for the Providers page: progress, Stop, and the stored check."""

    kind = "provider-check"
    expected = (ValueError,)  # a provider whose ladder or pack went missing: its plain sentence

    def __init__(self, work: Callable[[CheckJob], ProviderCheck], provider_id: int, title: str) -> None:
        super().__init__(work, title=title)
        self.provider_id = provider_id

    def _snapshot_extra(self) -> dict[str, Any]:
        check = self.result if isinstance(self.result, ProviderCheck) else None
        return {"provider_id": self.provider_id, "check_id": check.id if check else None,
                "check_status": check.status if check else None}


def check_job(pool: WorkerPool, store: Store, provider: WatchedProvider, key: str | None = None) -> CheckJob:
    """A CheckJob for `provider` (start it with a JobRegistry, or `.start()`)."""
    def work(job: CheckJob) -> ProviderCheck:
        return run_check(pool, store, provider, key=key, on_progress=job.on_progress, cancel=job.cancel)

    return CheckJob(work, provider.id, f"check of {provider.name}")
