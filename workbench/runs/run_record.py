"""A run record's lifecycle, written once: opened with the machine, versions and settings, finished with a status.

Every kind of run (a comparison, a set run's prompts, a divergence measurement, an eval) opens its stored record
through `new_run`, so each one says the same things about where and how it ran, and finishes it with the status
`run_status` decides from its results: "cancelled" when stopped, "failed" when no result is usable, "partial"
when some are, "done" when all are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from workbench.core import hardware
from workbench.core.hardware import llama_cpp_version
from workbench.models.ladder import Ladder
from workbench.runs.contestants import Contestant, RunSettings
from workbench.storage.store import Store

#: Statuses a finished run record may have (`run_status` picks one of the first four; a crash leaves "failed").
RUN_STATUSES = ("done", "partial", "failed", "cancelled")


def workbench_version() -> str:
    """This workbench's version, as every run record and set run stores it."""
    from workbench import __version__

    return __version__


def versions() -> dict[str, str]:
    """The versions a run record stores: the workbench's and llama.cpp's."""
    return {"workbench": workbench_version(), "llama_cpp": llama_cpp_version()}


def new_run(store: Store, kind: str, contestants: Sequence[Contestant], prompt: str, settings: RunSettings, *,
            chat: bool = True, reference: str | None = None, ladder: Ladder | None = None,
            category: str | None = None, extra_settings: dict[str, Any] | None = None) -> int:
    """Store a new run record (status running) of `kind` ("compare", "diverge", "diverge-text", "eval") and return
    its id; its results come later.

    `chat`: `prompt` was sent as a conversation, so its system prompt and messages are recorded too (False: it
    names what ran, say "eval: pack (12 cases)"). `reference`: the reference's label (default: the contestant
    flagged as the reference, if any). `extra_settings`: kind-specific settings stored beside the run's own."""
    ref = reference if reference is not None else next((c.label for c in contestants if c.is_reference), None)
    return store.create_run(
        settings={**settings.to_dict(), **(extra_settings or {})}, prompt=prompt,
        system_prompt=(settings.system_prompt or None) if chat else None,
        messages=settings.messages(prompt) if chat else None, kind=kind, category=category,
        ladder=ladder.to_dict() if ladder else None, reference_label=ref, machine=hardware.machine().to_dict(),
        versions=versions(),
    )


def run_status(oks: Iterable[bool], *, cancelled: bool) -> str:
    """How a finished run ends, from whether each result is usable: stopped → "cancelled"; otherwise "failed"
    when none is, "partial" when some are, "done" when every one is (or there were none)."""
    if cancelled:
        return "cancelled"
    flags = list(oks)
    if all(flags):
        return "done"
    return "failed" if not any(flags) else "partial"
