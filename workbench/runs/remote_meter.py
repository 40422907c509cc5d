"""What the remote requests made inside a block sent and got back: for a provider check's token count and timing.

A check runs the fingerprint and a quality probe, which reach the endpoint through several layers; rather than
thread a counter through each, `metered()` collects every completion that finished inside the block on this
thread (a context variable, so concurrent checks on other threads keep their own), with the messages it asked.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Metered = list[tuple[list[dict[str, str]], Any]]  # (messages, runs.remote.RemoteCompletion); this module sits below it
_METER: contextvars.ContextVar[Metered | None] = contextvars.ContextVar("remote_meter", default=None)


def record(messages: list[dict[str, str]], completion: Any) -> None:
    """Called by runs.remote for each finished completion; kept only inside a `metered()` block."""
    meter = _METER.get()
    if meter is not None:
        meter.append((messages, completion))


@contextmanager
def metered() -> Iterator[Metered]:
    """Every completion that finished inside the block on this thread, with the messages it asked, in order."""
    seen: Metered = []
    token = _METER.set(seen)
    try:
        yield seen
    finally:
        _METER.reset(token)
