"""The noise floor's runs: the reference run again on the same prompt, to see how far it strays from itself.

A quantization that differs from the reference is only interesting when it differs more than the reference
differs from itself. Each repeat changes one thing that should not matter, and says which (`Perturbation`):

- temperature > 0: another seed (seed+1, seed+2, …), everything else equal. This is sampling's own
  run-to-run variation, the spread a single sampled run hides.
- temperature 0 (greedy): greedy decoding repeats itself exactly, so the repeat evaluates the prompt in
  micro-batches of another size (`GREEDY_BATCHES`: 1, 7, 64, … tokens instead of the usual 512). The weights,
  the prompt and the arithmetic are the same; which CPU kernels run (matrix-vector for one token at a time,
  matrix-matrix otherwise) and the order in which sums are added differ, as they do on another machine,
  backend or llama.cpp build. A greedy run that flips one near-tied token because of that is noise, and so is
  everything that follows from the flip.

Measured on this machine (the bundled product-support set, 128 tokens, greedy): with the F16 reference,
micro-batches of 1 token changed 1 of the 10 outputs and 7 or 64 tokens none; with Q8_0 as the reference,
1 token changed all 10 and 7 tokens 1. A different thread count (1 vs 2) changed nothing, because each
row's sum does not depend on it, which is why it is not used. So a floor of "identical every time" is a
finding, not a failure: the reference is stable under these perturbations and any difference is the
quantization's. Repeats never run on a remote endpoint at temperature 0 (there is no perturbation to make).

Repeats are stored per run (`Store.add_reference_repeat`, table reference_repeats) and measured by
`quality.noise_floor`. A repeat that was stopped is run again on resume; one that failed is kept as failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from workbench.core.text_units import counted
from workbench.engine.pool import WorkerPool
from workbench.runs.batched import DEFAULT_N_SEQ, BatchItem, generate_many
from workbench.runs.compare import OnEvent, run_contestant
from workbench.runs.contestants import Contestant, RunSettings
from workbench.storage.store import Store

MAX_REPEATS = 8
# Prompt micro-batch sizes for greedy repeats, in the order repeats use them: the most different kernel path
# first (one token at a time), then sizes that split the prompt unevenly.
GREEDY_BATCHES = (1, 7, 64, 3, 16, 128, 5, 32)


class NoiseError(ValueError):
    """Repeats that cannot be made as asked (too many, an endpoint at temperature 0); the message says why."""


@dataclass(frozen=True)
class Perturbation:
    """What one repeat changed: kind "seed" (value: the seed) or "n_batch" (value: the micro-batch size)."""

    kind: str
    value: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, self.kind: self.value}

    @classmethod
    def from_dict(cls, data: Any) -> Perturbation | None:
        """The perturbation a stored row names, or None when the row holds something else (an import)."""
        if not isinstance(data, dict) or data.get("kind") not in ("seed", "n_batch"):
            return None
        value = data.get(data["kind"])
        return cls(data["kind"], value) if isinstance(value, int) and not isinstance(value, bool) else None

    def settings(self, settings: RunSettings) -> RunSettings:
        """`settings` as this repeat runs them (another seed, or unchanged)."""
        return replace(settings, seed=self.value) if self.kind == "seed" else settings

    @property
    def n_batch(self) -> int | None:
        """The prompt micro-batch this repeat asks for (None: the worker's default)."""
        return self.value if self.kind == "n_batch" else None

    def describe(self) -> str:
        """E.g. "seed 4" or "prompt in micro-batches of 7 tokens"."""
        if self.kind == "seed":
            return f"seed {self.value}"
        return f"prompt in micro-batches of {counted(self.value, 'token')}"


def perturbations(settings: RunSettings, n: int) -> list[Perturbation]:
    """The perturbation of repeats 1..n under `settings` (see the module docstring)."""
    if not 0 <= n <= MAX_REPEATS:
        raise NoiseError(f"repeat the reference between 0 and {MAX_REPEATS} times (got {n})")
    if settings.temperature > 0:
        return [Perturbation("seed", settings.seed + k) for k in range(1, n + 1)]
    return [Perturbation("n_batch", GREEDY_BATCHES[k]) for k in range(n)]


def check_repeatable(reference: Contestant | None, settings: RunSettings, n: int) -> None:
    """Raise NoiseError when `n` repeats of `reference` cannot be made under `settings`."""
    perturbations(settings, n)
    if n and reference is None:
        raise NoiseError("a noise floor needs a reference to repeat")
    if n and reference is not None and reference.kind.cannot_vary_greedy and settings.temperature == 0:
        raise NoiseError(f"{reference.label} {reference.kind.cannot_vary_greedy}")


def missing_repeats(store: Store, run_id: int, n: int) -> list[int]:
    """Repeat numbers 1..n the run still needs: never stored, or stored as stopped."""
    kept = {r["repeat"] for r in store.reference_repeats(run_id) if r.get("stop_reason") != "cancelled"}
    return [k for k in range(1, n + 1) if k not in kept]


# on_repeat(repeat, n, phase, row): phase "start" (row None) or "end" (row: what was stored)
OnRepeat = Callable[[int, int, str, dict[str, Any] | None], None]


def _quiet_repeat(repeat: int, n: int, phase: str, row: dict[str, Any] | None) -> None:
    pass


def _quiet_event(label: str, status: str, payload: dict[str, Any]) -> None:
    pass


def run_repeats(pool: WorkerPool, store: Store, run_id: int, reference: Contestant, settings: RunSettings,
                messages: list[dict[str, str]], n: int, *, cancel: threading.Event | None = None,
                on_repeat: OnRepeat = _quiet_repeat, on_event: OnEvent = _quiet_event) -> int:
    """Run the missing repeats of `run_id`'s reference (1..n), storing each as it ends; returns how many ran.

    Stops before the next repeat once `cancel` is set; a repeat stopped midway is stored as cancelled and
    runs again next time. `on_event` gets the repeat's contestant events (its label is the reference's).
    """
    check_repeatable(reference, settings, n)
    plan = perturbations(settings, n)
    ran = 0
    for k in missing_repeats(store, run_id, n):
        if cancel is not None and cancel.is_set():
            break
        p = plan[k - 1]
        on_repeat(k, n, "start", None)
        result = run_contestant(pool, reference, p.settings(settings), messages, on_event, cancel, n_batch=p.n_batch)
        text = result.text if result.ok else None
        error = None if result.stop_reason == "cancelled" else result.error
        store.add_reference_repeat(run_id, k, label=reference.label, perturbation=p.to_dict(), text=text,
                                   completion_tokens=result.completion_tokens, stop_reason=result.stop_reason,
                                   error=error)
        row = {"label": reference.label, "perturbation": p.to_dict(), "text": text,
               "completion_tokens": result.completion_tokens, "stop_reason": result.stop_reason, "error": error}
        ran += 1
        on_repeat(k, n, "end", {"repeat": k, **row})
    return ran


def run_repeats_batched(pool: WorkerPool, store: Store, runs: list[tuple[int, list[dict[str, str]]]],
                        reference: Contestant, settings: RunSettings, n: int, *, cancel: threading.Event | None = None,
                        on_repeat: OnRepeat = _quiet_repeat, n_seq: int = DEFAULT_N_SEQ) -> int:
    """`run_repeats` for many runs at once: repeat k of every run that still needs it is one batch
    (runs.batched), since all of them share repeat k's perturbation. `runs`: (run id, its prompt's messages).
    Returns how many repeats were stored."""
    check_repeatable(reference, settings, n)
    plan = perturbations(settings, n)
    stored = 0
    for k in range(1, n + 1):
        if cancel is not None and cancel.is_set():
            break
        todo = [(run_id, messages) for run_id, messages in runs if k in missing_repeats(store, run_id, n)]
        if not todo:
            continue
        p = plan[k - 1]
        on_repeat(k, n, "start", None)
        items = [BatchItem(messages, settings.max_tokens) for _, messages in todo]
        outcome = generate_many(pool, reference, p.settings(settings), items, n_batch=p.n_batch, n_seq=n_seq,
                                cancel=cancel)
        for (run_id, _), item in zip(todo, outcome.results, strict=True):
            if item is None or item.stop_reason == "cancelled":
                continue  # stopped: run again on resume
            store.add_reference_repeat(run_id, k, label=reference.label, perturbation=p.to_dict(),
                                       text=None if item.error else item.text, completion_tokens=item.completion_tokens,
                                       stop_reason=item.stop_reason or ("error" if item.error else None),
                                       error=item.error)
            stored += 1
        on_repeat(k, n, "end", None)
    return stored
