"""Run a task pack across a ladder: every case through every contestant, judged, counted, compared.

Why: folklore says 4-bit is nearly free on summarization and extraction but bites on math,
code, reasoning and long context. An eval measures that on *this* model: the same cases, the same
fair settings (greedy, one seed, one context size) for every quantization, each output judged by
the case's checker (`workbench.quality.checkers`), pass rates per category with Wilson 95% intervals, and
each quantization compared with the reference on the same cases by the exact McNemar test
(`workbench.quality.evalstats.compare_paired`), so that a difference inside the noise is labelled so.

Cases run one at a time, each through every contestant in turn (reference first), on the pool's
warm workers; each case takes one turn in the machine-wide run queue, so a comparison started
meanwhile waits at most one case. Every verdict is stored as it is made: a stopped or crashed run
keeps what it finished. Stop is honoured between contestants and inside a generation; the
output cut short by Stop is discarded, not judged.

Long-context cases cost a few thousand tokens of prefill (a minute or two each on a laptop CPU),
so runs can be limited by category and by a maximum number of cases (`select_cases`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from workbench.core.glossary import chance_words
from workbench.engine.pool import WorkerPool
from workbench.files import json_fields as jf
from workbench.models.ladder import Ladder
from workbench.quality.checkers import describe_spec
from workbench.quality.evalstats import compare_paired, format_p, wilson_interval
from workbench.quality.packs import CATEGORIES, Case, Pack
from workbench.runs.batched import DEFAULT_N_SEQ, BatchItem, ItemResult, batching_enabled, generate_many
from workbench.runs.compare import run_contestant
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.run_record import new_run, run_status
from workbench.storage.store import Store

__all__ = [
    "ALL",
    "CaseOutcome",
    "EvalProgress",
    "EvalRun",
    "MatrixCell",
    "PairedRow",
    "default_settings",
    "list_evals",
    "load_eval",
    "run_eval",
    "select_cases",
]

ALL = "all"  # the category name of the overall row
DEFAULT_MAX_TOKENS = 128  # for cases that do not set their own
LONG_CONTEXT_N_CTX = 4096  # the starter pack's long passages stay under ~3,300 tokens


@dataclass
class CaseOutcome:
    """One contestant's output on one case and the checker's verdict."""

    case_id: str
    category: str
    label: str
    quant_type: str | None
    passed: bool
    detail: str
    output: str
    error: str | None = None
    stop_reason: str | None = None
    completion_tokens: int | None = None
    decode_tok_s: float | None = None
    total_s: float | None = None


@dataclass
class EvalProgress:
    """Where a running eval is: `done` of `total` generations finished."""

    done: int
    total: int
    case_id: str | None
    label: str | None
    message: str


@dataclass
class MatrixCell:
    """Pass count of one quantization on one category (or ALL) with its Wilson 95% interval."""

    category: str
    label: str
    quant_type: str | None
    passed: int
    total: int
    errors: int
    rate: float | None
    low: float
    high: float

    @property
    def text(self) -> str:
        if not self.total:
            return "—"
        return f"{self.passed}/{self.total} ({self.rate:.0%}; 95% CI {self.low:.0%}–{self.high:.0%})"


@dataclass
class PairedRow:
    """A quantization against the reference on the same cases (exact McNemar test)."""

    category: str
    label: str
    reference: str
    passed: int
    reference_passed: int
    total: int
    only_this: int  # cases this one passed and the reference failed
    only_reference: int  # cases the reference passed and this one failed
    diff: float
    p_value: float
    within_noise: bool
    verdict: str
    sentence: str


@dataclass
class EvalRun:
    """A pack run across contestants, with what it stored."""

    run_id: int | None
    pack_name: str
    pack_source: str | None
    reference_label: str
    labels: list[str]
    quant_types: dict[str, str | None]
    cases: list[dict[str, Any]]  # id, category, prompt, system, max_tokens, check (as run)
    outcomes: list[CaseOutcome] = field(default_factory=list)
    status: str = "running"
    settings: dict[str, Any] = field(default_factory=dict)
    categories: list[str] | None = None
    limit: int | None = None
    created_at: str | None = None

    def outcome(self, case_id: str, label: str) -> CaseOutcome | None:
        for o in self.outcomes:
            if o.case_id == case_id and o.label == label:
                return o
        return None

    def complete_case_ids(self) -> list[str]:
        """Cases every contestant finished (a stopped run may leave one half done)."""
        have: dict[str, set[str]] = {}
        for o in self.outcomes:
            have.setdefault(o.case_id, set()).add(o.label)
        return [c["id"] for c in self.cases if have.get(c["id"], set()) >= set(self.labels)]

    def categories_present(self) -> list[str]:
        present = {c["category"] for c in self.cases}
        return [c for c in CATEGORIES if c in present]

    def _results(self, label: str, category: str) -> list[tuple[str, bool, bool]]:
        """(case id, passed, errored) for complete cases of a category (ALL: every category)."""
        complete = set(self.complete_case_ids())
        out = []
        for c in self.cases:
            if c["id"] not in complete or (category != ALL and c["category"] != category):
                continue
            o = self.outcome(c["id"], label)
            if o is not None:
                out.append((c["id"], o.passed, o.error is not None))
        return out

    def matrix(self) -> list[MatrixCell]:
        """Pass counts per category × quantization, then the overall row, over complete cases."""
        cells = []
        for category in [*self.categories_present(), ALL]:
            for label in self.labels:
                res = self._results(label, category)
                passed, total = sum(1 for _, p, _ in res if p), len(res)
                low, high = wilson_interval(passed, total)
                cells.append(MatrixCell(category, label, self.quant_types.get(label), passed, total,
                                        sum(1 for _, _, e in res if e), passed / total if total else None, low, high))
        return cells

    def paired(self, alpha: float = 0.05) -> list[PairedRow]:
        """Every other quantization against the reference, per category and overall."""
        rows = []
        for category in [*self.categories_present(), ALL]:
            ref = {cid: p for cid, p, _ in self._results(self.reference_label, category)}
            for label in self.labels:
                if label == self.reference_label:
                    continue
                mine = {cid: p for cid, p, _ in self._results(label, category)}
                ids = [cid for cid in ref if cid in mine]
                a, b = [mine[i] for i in ids], [ref[i] for i in ids]
                cmp = compare_paired(a, b, label_a=label, label_b=self.reference_label,
                                     task=None if category == ALL else category, alpha=alpha)
                only_this = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
                only_ref = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
                if not ids:
                    verdict = "no cases"
                elif only_this == only_ref == 0:
                    verdict = "same cases passed"
                elif not cmp.significant:
                    verdict = f"within noise ({chance_words(cmp.p_value)}; {format_p(cmp.p_value)})"
                elif cmp.diff < 0:
                    verdict = f"worse than {self.reference_label}, beyond noise ({chance_words(cmp.p_value)}; {format_p(cmp.p_value)})"
                else:
                    verdict = f"better than {self.reference_label}, beyond noise ({chance_words(cmp.p_value)}; {format_p(cmp.p_value)})"
                rows.append(PairedRow(category, label, self.reference_label, cmp.a_passed, cmp.b_passed, len(ids),
                                      only_this, only_ref, cmp.diff, cmp.p_value, not cmp.significant, verdict,
                                      cmp.sentence))
        return rows

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON: per label × category counts (`results`), the overall row, paired tests."""
        cells = self.matrix()

        def cell(c: MatrixCell) -> dict[str, Any]:
            return {jf.LABEL: c.label, jf.QUANT_TYPE: c.quant_type, "category": c.category, "passed": c.passed,
                    "total": c.total, "errors": c.errors, "rate": c.rate, "ci95": [c.low, c.high]}

        return {
            "pack": self.pack_name, jf.RUN_ID: self.run_id, "status": self.status, jf.REFERENCE: self.reference_label,
            "cases": len(self.cases),
            "results": [cell(c) for c in cells if c.category != ALL],
            "overall": [cell(c) for c in cells if c.category == ALL],
            "paired": [{jf.LABEL: r.label, "category": r.category, jf.REFERENCE: r.reference, "p_value": r.p_value,
                        "within_noise": r.within_noise, "verdict": r.verdict} for r in self.paired()],
        }


# ------------------------------------------------------------------------------------ choosing


def select_cases(pack: Pack, categories: Sequence[str] | None = None, limit: int | None = None) -> list[Case]:
    """The cases to run: those of `categories` (default all), at most `limit` of them.

    A limit takes cases round-robin across the chosen categories (first of each, then second of
    each …), so a short run still covers every category; the pack's order is kept.
    """
    chosen = list(pack.cases)
    if categories:
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
                             f"use: {', '.join(CATEGORIES)}")
        chosen = [c for c in chosen if c.category in categories]
        if not chosen:
            raise ValueError(f"the pack {pack.name!r} has no cases in {', '.join(categories)} "
                             f"(it has: {', '.join(pack.categories())})")
    if limit is not None:
        if limit < 1:
            raise ValueError("the case limit must be at least 1")
        groups = [[c for c in chosen if c.category == cat] for cat in CATEGORIES]
        picked: set[str] = set()
        depth = 0
        while len(picked) < min(limit, len(chosen)):
            for g in groups:
                if depth < len(g) and len(picked) < limit:
                    picked.add(g[depth].id)
            depth += 1
        chosen = [c for c in chosen if c.id in picked]
    return chosen


def default_settings(cases: Sequence[Case], base: RunSettings | None = None) -> RunSettings:
    """Fair eval settings: greedy, seed 0, a context that fits long-context cases when present."""
    s = replace(base) if base else RunSettings(max_tokens=DEFAULT_MAX_TOKENS)
    if any(c.category == "long-context" for c in cases):
        s.n_ctx = max(s.n_ctx, LONG_CONTEXT_N_CTX)
    return s


def _case_dict(case: Case) -> dict[str, Any]:
    return {"id": case.id, "category": case.category, "prompt": case.prompt, "system": case.system,
            "max_tokens": case.max_tokens, "check": case.checker_spec, "check_text": describe_spec(case.checker_spec)}


# ------------------------------------------------------------------------------------ running


def _nothing(progress: EvalProgress) -> None:
    pass


def run_eval(
    pool: WorkerPool,
    pack: Pack,
    contestants: Sequence[Contestant],
    settings: RunSettings | None = None,
    *,
    store: Store | None = None,
    ladder: Ladder | None = None,
    categories: Sequence[str] | None = None,
    limit: int | None = None,
    on_progress: Callable[[EvalProgress], None] = _nothing,
    cancel: threading.Event | None = None,
    on_run_created: Callable[[int], None] | None = None,
    n_seq: int = DEFAULT_N_SEQ,
) -> EvalRun:
    """Run the chosen cases of `pack` through every contestant; judge, store and return the run.

    One file at a time, its cases batched (runs.batched: up to `n_seq` sequences decode together; 1, or
    WORKBENCH_BATCH=off, is one case at a time, as endpoints always are). Each outcome is stored as it is judged.
    """
    if not contestants:
        raise ValueError("choose at least one quantization")
    contestants = sorted(contestants, key=lambda c: not c.is_reference)  # the reference answers first
    cases = select_cases(pack, categories, limit)
    settings = settings or default_settings(cases)
    settings.validate()
    too_long = [c.id for c in cases if (c.max_tokens or settings.max_tokens) >= settings.n_ctx]
    if too_long:
        raise ValueError(f"case(s) {', '.join(too_long)} ask for more tokens than the context of {settings.n_ctx} holds")
    ref = next((c for c in contestants if c.is_reference), contestants[0])
    run = EvalRun(None, pack.name, pack.source, ref.label, [c.label for c in contestants],
                  {c.label: c.quant_type for c in contestants}, [_case_dict(c) for c in cases],
                  settings=settings.to_dict(), categories=list(categories) if categories else None, limit=limit)
    if store is not None:
        run.run_id = new_run(store, "eval", contestants, f"eval: {pack.name} ({len(cases)} cases)", settings,
                             chat=False, reference=ref.label, ladder=ladder)
        store.add_eval_run(run.run_id, pack_name=pack.name, pack_source=pack.source, categories=run.categories,
                           case_limit=limit, contestants=[{"label": c.label, "quant_type": c.quant_type, "file": c.path,
                                                           "is_reference": c.is_reference, "kv_type_k": c.kv_type_k,
                                                           "kv_type_v": c.kv_type_v,
                                                           "n_ctx": c.n_ctx or settings.n_ctx} for c in contestants],
                           cases=run.cases)
        if on_run_created:
            on_run_created(run.run_id)
    total = len(cases) * len(contestants)
    counter = {"done": 0}
    started = time.perf_counter()

    def record(case: Case, c: Contestant, text: str, error: str | None, stop_reason: str | None,
               completion_tokens: int | None, decode_tok_s: float | None, total_s: float | None) -> None:
        verdict = case.check(text or "") if not error else None
        error = error or (verdict.detail if verdict is not None and verdict.error else None)
        outcome = CaseOutcome(case.id, case.category, c.label, c.quant_type, bool(verdict and verdict.passed),
                              verdict.detail if verdict is not None else f"not judged: {error}", text, error,
                              stop_reason, completion_tokens, decode_tok_s, total_s)
        run.outcomes.append(outcome)
        if store is not None and run.run_id is not None:
            _store_outcome(store, run.run_id, outcome)
        counter["done"] += 1
        rate = counter["done"] / max(time.perf_counter() - started, 1e-9)
        on_progress(EvalProgress(counter["done"], total, case.id, c.label,
                                 f"{case.id} ({case.category}) on {c.label} · {rate:.2f} cases/s"))

    cancelled = False
    try:
        for c in contestants:  # one file at a time: its cases batched (runs.batched), or one by one
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            on_progress(EvalProgress(counter["done"], total, None, c.label, f"{c.label}: waiting for the machine"))
            with pool.queue.turn(cancel=cancel):
                if not c.kind.can_batch or not batching_enabled():
                    cancelled = _run_cases_one_by_one(pool, c, cases, settings, record, on_progress, counter, total,
                                                      cancel)
                else:
                    cancelled = _run_cases_batched(pool, c, cases, settings, record, on_progress, counter, total,
                                                   cancel, n_seq)
            if cancelled:
                break
    except InterruptedError:  # stopped while waiting in the queue
        cancelled = True
    done = counter["done"]
    run.status = run_status((not o.error for o in run.outcomes), cancelled=cancelled)
    on_progress(EvalProgress(done, total, None, None, run.status))
    if store is not None and run.run_id is not None:
        store.finish_run(run.run_id, run.status)
    return run


# record(case, contestant, text, error, stop_reason, completion_tokens, decode_tok_s, total_s): judge and store one
Record = Callable[[Case, Contestant, str, str | None, str | None, int | None, float | None, float | None], None]


def _case_settings(case: Case, settings: RunSettings) -> RunSettings:
    return replace(settings, max_tokens=case.max_tokens or settings.max_tokens,
                   system_prompt=case.system if case.system is not None else settings.system_prompt)


def _run_cases_one_by_one(pool: WorkerPool, c: Contestant, cases: Sequence[Case], settings: RunSettings,
                          record: Record, on_progress: Callable[[EvalProgress], None], counter: dict[str, int],
                          total: int, cancel: threading.Event | None) -> bool:
    """Each case through `c` on its own (an endpoint, or WORKBENCH_BATCH=off); True when stopped."""
    for case in cases:
        if cancel is not None and cancel.is_set():
            return True
        on_progress(EvalProgress(counter["done"], total, case.id, c.label, f"{case.id} ({case.category}) on {c.label}"))
        case_settings = _case_settings(case, settings)
        t0 = time.perf_counter()
        r = run_contestant(pool, c, case_settings, case_settings.messages(case.prompt), cancel=cancel)
        if r.stop_reason == "cancelled" or (cancel is not None and cancel.is_set() and r.error):
            return True
        record(case, c, r.text, r.error, r.stop_reason, r.completion_tokens, r.decode_tok_s, time.perf_counter() - t0)
    return False


def _run_cases_batched(pool: WorkerPool, c: Contestant, cases: Sequence[Case], settings: RunSettings,
                       record: Record, on_progress: Callable[[EvalProgress], None], counter: dict[str, int],
                       total: int, cancel: threading.Event | None, n_seq: int) -> bool:
    """Every case through `c` in one batch (runs.batched), each judged and stored as it is answered; True when
    stopped. Per-case decode speed is not recorded: a batched step is shared by every sequence."""
    on_progress(EvalProgress(counter["done"], total, None, c.label, f"{c.label}: {len(cases)} cases, batched"))
    items = [BatchItem(_case_settings(case, settings).messages(case.prompt), case.max_tokens or settings.max_tokens)
             for case in cases]

    def on_item(item: ItemResult) -> None:
        if item.stop_reason != "cancelled":
            record(cases[item.index], c, item.text, item.error, item.stop_reason, item.completion_tokens, None,
                   item.time_s)

    outcome = generate_many(pool, c, settings, items, n_seq=n_seq, on_item=on_item, cancel=cancel)
    for i, r in enumerate(outcome.results):  # a dead worker: the cases it never answered fail with its reason
        if r is not None and r.error and outcome.error and r.error == outcome.error:
            record(cases[i], c, "", r.error, "error", None, None, None)
    return outcome.cancelled or (cancel is not None and cancel.is_set())


def _store_outcome(store: Store, run_id: int, o: CaseOutcome) -> None:
    store.save_eval_result(run_id, asdict(o))


# ------------------------------------------------------------------------------------ reading back


def load_eval(store: Store, run_id: int) -> EvalRun | None:
    """A stored eval run with every outcome (None when `run_id` is not an eval)."""
    stored = store.eval_rows(run_id)
    if stored is None:
        return None
    head, rows = stored
    contestants = json.loads(head["labels_json"])
    outcomes = [CaseOutcome(r["case_id"], r["category"], r["label"], r["quant_type"], bool(r["passed"]), r["detail"] or "",
                            r["output"] or "", r["error"], r["stop_reason"], r["completion_tokens"], r["decode_tok_s"],
                            r["total_s"]) for r in rows]
    return EvalRun(
        run_id, head["pack_name"], head["pack_source"], head["reference_label"], [c["label"] for c in contestants],
        {c["label"]: c.get("quant_type") for c in contestants}, json.loads(head["cases_json"]), outcomes,
        head["status"], json.loads(head["settings_json"] or "{}"), json.loads(head["categories_json"] or "null"),
        head["case_limit"], head["created_at"])


def list_evals(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """Stored eval runs, newest first: run_id, created_at, status, pack_name, ladder_name, labels, n_cases."""
    rows = store.list_eval_runs(limit)
    return [{"run_id": r["run_id"], "created_at": r["created_at"], "status": r["status"], "ladder_name": r["ladder_name"],
             "pack_name": r["pack_name"], "labels": [c["label"] for c in json.loads(r["labels_json"])],
             "n_cases": len(json.loads(r["cases_json"]))} for r in rows]
