"""Which watched providers are due for a check, and running them one at a time.

A provider with `every_s` is due when its newest check (of any status: a failed check waits its turn too, so a
provider down for hours is not hammered) started at least `every_s` ago, or when it has none. Checks run one
after another; each takes the machine-wide run queue's turns for its local part, so a check never runs beside a
timed local run. A change beyond noise (change.assess, at the check just made) posts to the provider's webhook.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from workbench.core.jobs import Job
from workbench.engine.pool import WorkerPool
from workbench.storage.store import Store
from workbench.storage.watch_rows import ProviderCheck, WatchedProvider
from workbench.watch.change import Assessment, assess
from workbench.watch.checks import BACKOFF_S, checks_of, run_check
from workbench.watch.notify import post_webhook, webhook_url

__all__ = ["CheckOutcome", "due", "due_checks_job", "run_due", "run_provider"]


@dataclass(frozen=True)
class CheckOutcome:
    """One provider's check in a scheduled run: the check, what the history now says, and the notification."""

    provider: WatchedProvider
    check: ProviderCheck
    assessment: Assessment
    changed_now: bool  # the change (beyond noise) showed in this very check
    notified: bool | None  # None: no webhook configured or nothing to send; False: sending failed
    notify_error: str | None = None


def _parse(iso: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def due(store: Store, now: datetime | None = None, every_s: float | None = None) -> list[WatchedProvider]:
    """Providers due for a check at `now`; `every_s` overrides each provider's own schedule (`watch --every`)."""
    now = now or datetime.now(UTC)
    last = store.last_provider_checks()
    out = []
    for p in store.watched_providers():
        interval = every_s if every_s is not None else p.every_s
        if interval is None:
            continue
        seen = _parse(last[p.id]) if p.id in last else None
        if seen is None or (now - seen).total_seconds() >= interval:
            out.append(p)
    return out


def run_provider(pool: WorkerPool, store: Store, provider: WatchedProvider, *,
                 on_progress: Callable[[int, int, str], None] | None = None, cancel: threading.Event | None = None,
                 backoff_s: Sequence[float] = BACKOFF_S) -> CheckOutcome:
    """Check one provider, read its history, and post to its webhook when this check showed a change."""
    check = run_check(pool, store, provider, on_progress=on_progress, cancel=cancel, backoff_s=backoff_s)
    verdict = assess(checks_of(store, provider.id), provider.name)
    changed_now = check.ok and verdict.changed and verdict.since_check_id == check.id
    notified, error = None, None
    url = webhook_url(provider.webhook_env)
    if changed_now and url:
        error = post_webhook(url, f"Provider watch: {verdict.sentence}")
        notified = error is None
    return CheckOutcome(provider, check, verdict, changed_now, notified, error)


def run_due(pool: WorkerPool, store: Store, providers: Sequence[WatchedProvider], *,
            on_progress: Callable[[WatchedProvider, int, int, str], None] | None = None,
            cancel: threading.Event | None = None, backoff_s: Sequence[float] = BACKOFF_S) -> list[CheckOutcome]:
    """Check `providers` (e.g. `due(store)`) one at a time; stops between providers when `cancel` is set."""
    out = []
    for p in providers:
        if cancel is not None and cancel.is_set():
            break
        step = None if on_progress is None else (lambda d, t, m, p=p: on_progress(p, d, t, m))
        out.append(run_provider(pool, store, p, on_progress=step, cancel=cancel, backoff_s=backoff_s))
    return out


def due_checks_job(pool: WorkerPool, store: Store, now: datetime | None = None,
                   backoff_s: Sequence[float] = BACKOFF_S) -> Job | None:
    """The app's own scheduler: a background Job checking every due provider one at a time (None when none is
    due). Its result is the list of CheckOutcome; progress names the provider being checked."""
    providers = due(store, now)
    if not providers:
        return None

    def work(job: Job) -> list[CheckOutcome]:
        return run_due(pool, store, providers, cancel=job.cancel, backoff_s=backoff_s,
                       on_progress=lambda p, d, t, m: job.report(d, t, message=f"{p.name}: {m}"))

    names = ", ".join(p.name for p in providers)
    return Job(work, title=f"scheduled check of {names}", kind="provider-watch")
