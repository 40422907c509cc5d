"""The quality probe on the user's own prompts: a prompt set through the endpoint and the local reference.

Each prompt is one stored comparison (runs.compare: the ladder's reference file, then the endpoint), so every
point of a provider's timeline opens its runs. A prompt passes when:

- it carries a checker (a prompt that came from a task pack): the checker passes the endpoint's answer;
- otherwise: the endpoint's answer says the same as the local reference's, by the words the app uses everywhere
  (quality.summary): "identical" or "same answer" (at least 70% similar), with no changed fact (quality.facts:
  numbers, dates, amounts, names). A reworded answer passes; a different answer or one changed fact fails.

So the pass rate on a prompt set reads "the endpoint still says what the full-precision model says". An
endpoint error is raised as EndpointFailed (checks.py retries it and, failing that, stores a failed check).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from workbench.engine.pool import WorkerPool
from workbench.models.ladder import Ladder
from workbench.quality.check_runner import run_check as run_checker
from workbench.quality.checkers import build_checker
from workbench.quality.evalstats import wilson_interval
from workbench.quality.summary import GROUPS, summarize
from workbench.runs.compare import run_comparison
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.prompt_sets import SetPrompt, find_prompt_set
from workbench.storage.store import Store

__all__ = ["EndpointFailed", "find_prompt_set", "run_prompt_probe", "same_answer"]

PROBE_MAX_TOKENS = 128  # per prompt; the probe compares answers, it does not need them whole


class EndpointFailed(Exception):
    """The endpoint failed on a prompt; the message is its error line."""


def same_answer(reference: str, output: str) -> tuple[bool, str]:
    """Whether `output` says what `reference` says (module docstring), and the summary line that decided it."""
    s = summarize(reference, output)
    return GROUPS.get(s.verdict) in ("identical", "same answer") and s.facts_changed == 0, s.sentence


def run_prompt_probe(pool: WorkerPool, store: Store, ladder: Ladder, remote: Contestant, prompts: Sequence[SetPrompt],
                     *, cancel: threading.Event | None = None, on_step: Callable[[int, str], None] | None = None,
                     run_ids: list[int] | None = None) -> dict[str, Any]:
    """Every prompt through the reference and the endpoint; the pass count with its Wilson 95% interval."""
    ref = Contestant.from_ladder_file(ladder.reference, is_reference=True)
    rows: list[dict[str, Any]] = []
    for i, p in enumerate(prompts):
        if cancel is not None and cancel.is_set():
            break
        settings = replace(RunSettings(max_tokens=PROBE_MAX_TOKENS), system_prompt=p.system or "")
        comp = run_comparison(pool, [ref, remote], p.prompt, settings, store=store, ladder=ladder, cancel=cancel,
                              category=p.category, on_run_created=None if run_ids is None else run_ids.append)
        if on_step is not None:
            on_step(2 * (i + 1), f"prompt {i + 1}/{len(prompts)}")
        if cancel is not None and cancel.is_set():
            break
        local, far = comp.results[0], comp.results[1]
        if far.error:
            raise EndpointFailed(far.error.removeprefix(f"{remote.label}: "))
        if local.error:
            raise ValueError(f"the local reference {ref.label} failed: {local.error}")
        if p.check:
            verdict = run_checker(build_checker(p.check), far.text or "")
            passed, why = verdict.passed, verdict.detail
        else:
            passed, why = same_answer(local.text or "", far.text or "")
        rows.append({"prompt": i, "run_id": comp.run_id, "passed": passed, "why": why})
    n, k = len(rows), sum(1 for r in rows if r["passed"])
    low, high = wilson_interval(k, n)
    return {"kind": "prompt_set", "reference": ref.label, "passed": k, "total": n, "rate": k / n if n else None,
            "low": low, "high": high, "prompts": rows}
