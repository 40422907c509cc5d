"""Collecting the evidence a recommendation says is missing: the job behind each "Run it" button.

- divergence: the bundled reference text scored through the reference and each candidate, KV-cache type
  included (the `llama-perplexity --kl-divergence` way, quality.divergence);
- speed: one comparison of a fixed prompt on this machine (each decode timed SPEED_REPEATS times, a disturbed
  window again: runs.timing), whose undisturbed decode figures calibrate the speed estimate for other machines
  (decide.speed).
Blind votes need people: the page links to the Prompt sets page instead.
"""

from __future__ import annotations

from dataclasses import replace

from workbench.core.hardware import default_threads
from workbench.core.jobs import Job
from workbench.decide.evidence import CandidateKey, split_label
from workbench.decide.recommend import Action
from workbench.engine.pool import WorkerPool
from workbench.models.ladder import Ladder
from workbench.quality.quality_jobs import divergence_text_job
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.jobs import ComparisonJob
from workbench.storage.store import Store

SPEED_PROMPT = "Explain in three sentences why bread rises."
SPEED_MAX_TOKENS = 128
SPEED_REPEATS = 3  # decode windows per candidate: the evidence is their median (runs.timing)
TEXT_CHUNK_TOKENS = 512  # what published KLD tables use
TEXT_MAX_CHUNKS = 8  # enough tokens for a stable mean on a small model, in well under a minute per candidate


def contestant_for(ladder: Ladder, key: CandidateKey) -> Contestant:
    """The ladder file of `key` with its KV-cache types, labelled as the evidence reads it back."""
    f = ladder.by_label(key.base)
    return replace(Contestant.from_ladder_file(f), label=key.label, kv_type_k=key.kv_type_k, kv_type_v=key.kv_type_v)


def contestants_for(ladder: Ladder, labels: tuple[str, ...]) -> list[Contestant]:
    """The reference first, then each candidate named by its label (ValueError for a label not of this ladder)."""
    reference = CandidateKey(ladder.reference.label)
    keys = [reference]
    for label in labels:
        key, _ = split_label(label)
        if key.base not in ladder.labels():
            raise ValueError(f"{label!r} is not a file of the ladder {ladder.name!r}")
        if key not in keys:
            keys.append(key)
    out = [contestant_for(ladder, k) for k in keys]
    out[0] = replace(out[0], is_reference=True)
    for c in out[1:]:
        c.is_reference = False
    return out


def job_for(action: Action, pool: WorkerPool, store: Store, ladder: Ladder) -> Job:
    """The background job that collects `action`'s evidence (ValueError for an action no job can settle)."""
    contestants = contestants_for(ladder, action.labels)
    threads = default_threads(beside_browser=True)
    if action.kind == "divergence":
        return divergence_text_job(pool, store, contestants, RunSettings(n_ctx=2048, n_threads=threads),
                                   chunk_tokens=TEXT_CHUNK_TOKENS, max_chunks=TEXT_MAX_CHUNKS, ladder=ladder)
    if action.kind == "speed":
        return ComparisonJob(pool, store, contestants, SPEED_PROMPT,
                             RunSettings(max_tokens=SPEED_MAX_TOKENS, n_threads=threads, timing_repeats=SPEED_REPEATS),
                             ladder=ladder)
    raise ValueError(f"'{action.kind}' evidence needs people, not a job: judge a prompt set blind on the Prompt sets page")
