"""Divergence measurements and evals running in the background, so a page can poll, switch or stop them.

Each is a `QualityJob` (a `workbench.core.jobs.Job`): progress is the library's (done, total, message), Stop
sets the job's cancel event, and `run_id` names the run it stored. The constructors below refuse bad input
before anything starts. The library functions take the machine-wide run queue's turns, so these jobs and
comparisons take turns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from workbench.core.jobs import Cancelled, Job
from workbench.engine.pool import WorkerPool
from workbench.models.ladder import Ladder
from workbench.quality import divergence, evals
from workbench.quality.packs import Pack
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.prompt_sets import PromptSet
from workbench.storage.store import Store


class QualityJob(Job):
    """A divergence measurement or an eval; kinds: "divergence-run", "divergence-prompt", "divergence-text", "eval",
    "imatrix-gain"."""

    expected = (divergence.DivergenceError, ValueError)  # a plain sentence for the user
    cancelled_by = (divergence.DivergenceCancelled,)

    def __init__(self, kind: str, title: str, work: Callable[[QualityJob], Any], run_id: int | None = None) -> None:
        super().__init__(work, title=title, kind=kind)
        self.run_id = run_id

    def set_run(self, run_id: int | None) -> None:
        """The run the work stored (None when a report was not stored, as its run_id says)."""
        with self._lock:
            self.run_id = run_id

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


# ---- divergence --------------------------------------------------------------------------------
def divergence_run_job(pool: WorkerPool, store: Store, run_id: int,
                       contestants: Sequence[Contestant] | None = None) -> QualityJob:
    def work(job: QualityJob) -> divergence.DivergenceReport:
        return divergence.diverge_run(pool, store, run_id, contestants=contestants, on_progress=job.on_progress,
                                      cancel=job.cancel)

    return QualityJob("divergence-run", f"divergence of run #{run_id}", work, run_id=run_id)


def divergence_prompt_job(pool: WorkerPool, store: Store, contestants: Sequence[Contestant], prompt: str,
                          settings: RunSettings, ladder: Ladder | None = None) -> QualityJob:
    settings.validate(contestants)

    def work(job: QualityJob) -> divergence.DivergenceReport:
        report = divergence.diverge_prompt(pool, contestants, prompt, settings, store=store, ladder=ladder,
                                           on_progress=job.on_progress, cancel=job.cancel)
        job.set_run(report.run_id)
        return report

    return QualityJob("divergence-prompt", "divergence on a new prompt", work)


def divergence_text_job(pool: WorkerPool, store: Store, contestants: Sequence[Contestant], settings: RunSettings, *,
                        chunk_tokens: int = divergence.DEFAULT_CHUNK_TOKENS, max_chunks: int | None = None,
                        ladder: Ladder | None = None) -> QualityJob:
    def work(job: QualityJob) -> divergence.DivergenceReport:
        report = divergence.diverge_text(pool, contestants, settings, chunk_tokens=chunk_tokens,
                                         max_chunks=max_chunks, store=store, ladder=ladder,
                                         on_progress=job.on_progress, cancel=job.cancel)
        job.set_run(report.run_id)
        return report

    return QualityJob("divergence-text", "divergence on the bundled reference text", work)


# ---- evals -------------------------------------------------------------------------------------
def eval_job(pool: WorkerPool, store: Store, pack: Pack, contestants: Sequence[Contestant],
             settings: RunSettings | None = None, *, categories: Sequence[str] | None = None, limit: int | None = None,
             ladder: Ladder | None = None) -> QualityJob:
    evals.select_cases(pack, categories, limit)  # a bad filter is refused now, not in the thread

    def work(job: QualityJob) -> evals.EvalRun:
        def progress(p: evals.EvalProgress) -> None:
            job.on_progress(p.done, p.total, p.message)

        run = evals.run_eval(pool, pack, contestants, settings, store=store, ladder=ladder, categories=categories,
                             limit=limit, on_progress=progress, cancel=job.cancel, on_run_created=job.set_run)
        if run.status == "cancelled":  # what it finished is stored; the page says it stopped
            raise Cancelled()
        return run

    return QualityJob("eval", f"eval of {pack.name}", work)


# ---- did the importance matrix help? -----------------------------------------------------------
def imatrix_gain_job(pool: WorkerPool, store: Store, ladder: Ladder, *, prompt_set: PromptSet | None, text: bool,
                     settings: RunSettings, chunk_tokens: int = divergence.DEFAULT_CHUNK_TOKENS,
                     max_chunks: int | None = None) -> QualityJob:
    """Static vs imatrix on the held-out prompts and/or the bundled text; the result is the list of GainReports."""
    from workbench.quality.imatrix_gain import GainError, measure_gain, pair_files

    if prompt_set is None and not text:
        raise GainError("choose the held-out prompts, the bundled text, or both")
    if not pair_files(ladder):
        raise GainError(f"ladder “{ladder.name}” has no files made with an importance matrix")

    def work(job: QualityJob) -> list[Any]:
        reports = []
        if prompt_set is not None:
            reports.append(measure_gain(pool, ladder, prompt_set=prompt_set, store=store, settings=settings,
                                        on_progress=job.on_progress, cancel=job.cancel))
        if text:
            reports.append(measure_gain(pool, ladder, text=True, store=store, chunk_tokens=chunk_tokens,
                                        max_chunks=max_chunks, settings=replace(settings, n_ctx=max(2048, chunk_tokens)),
                                        on_progress=job.on_progress, cancel=job.cancel))
        return reports

    return QualityJob("imatrix-gain", "did the importance matrix help?", work)
