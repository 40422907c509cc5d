"""Did the importance matrix help? Static vs imatrix files of each type, measured where the matrix never looked.

A file quantized with an importance matrix is tuned to its calibration text; measuring it on that text would
flatter it. So the measurement here runs only on text the matrix never saw:

- "held-out prompts": the half of the calibration prompt set that the recorded, seeded split kept out of the
  matrix (`held_out_prompts` refuses a set that is not the one recorded: other prompts, another count, another
  digest). The reference generates on each held-out prompt and every file is teacher-forced through its output
  (divergence.diverge_prompt), one prompt at a time.
- "reference text": the bundled reference text in chunks, like `llama-perplexity --kl-divergence`
  (divergence.diverge_text). Held out when the matrix came from a prompt set or another file; when the matrix
  was computed from this very text, the report says so instead of calling it held out.

Per file: mean KLD and top-1 agreement over every scored token, each with a 95% percentile-bootstrap interval
that resamples whole units (prompts, or chunks) — tokens of one prompt are not independent, units roughly are.
Per type with both files: the relative KLD change of the imatrix file against the static one, paired (the same
resampled units for both files), with its interval. The noise floor is the reference scored again as if it were
a contestant: its KLD against its own first scoring (run-to-run noise; 0 when the arithmetic repeats exactly). A
change whose interval includes no change, or smaller than that floor, is said to be within noise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from workbench.core.text_units import counted
from workbench.engine.pool import WorkerPool
from workbench.files import json_fields as jf
from workbench.models.ladder import Ladder, LadderFile
from workbench.quality import divergence
from workbench.runs.calibration import CalibrationError, PromptSplit, prompt_set_digest
from workbench.runs.contestants import Contestant, RunSettings
from workbench.runs.prompt_sets import PromptSet, SetPrompt
from workbench.storage.store import Store

RESAMPLES = 2000  # bootstrap resamples of units (prompts or chunks)
SEED = 0  # the bootstrap's seed: the same measurement gives the same intervals
CONFIDENCE = 0.95
HELD_OUT = "held-out prompts"
TEXT = "reference text"

OnProgress = Callable[[int, int, str], None]


class GainError(ValueError):
    """The measurement cannot run as asked (no pairs, a prompt set that is not the recorded one); one line."""


def _nothing(done: int, total: int, message: str) -> None:
    pass


# ---- which files to compare, on which prompts -------------------------------------------------------
@dataclass(frozen=True)
class ImatrixPair:
    """One quantization type made with a matrix, and its static twin when the ladder has one."""

    quant_type: str
    static: LadderFile | None
    imatrix: LadderFile


def pair_files(ladder: Ladder) -> list[ImatrixPair]:
    """Every imatrix file of the ladder with the static file of the same type (None when there is none), in
    ladder order. The reference is never paired."""
    statics = {f.quant_type: f for f in ladder.files if f.imatrix is None and not f.reference}
    return [ImatrixPair(f.quant_type, statics.get(f.quant_type), f)
            for f in ladder.files if f.imatrix is not None and not f.reference]


def held_out_prompts(prompt_set: PromptSet, split: str | PromptSplit, sha256: str | None = None
                     ) -> list[tuple[int, SetPrompt]]:
    """The held-out prompts (index, prompt) of the recorded split, never a calibration one.

    GainError when the split does not fit the set: its halves do not cover the set's prompts exactly once, or
    `sha256` (the digest recorded with the matrix) is not this set's digest."""
    try:
        split = split if isinstance(split, PromptSplit) else PromptSplit.parse(split)
    except CalibrationError as exc:
        raise GainError(str(exc)) from None
    n = len(prompt_set.prompts)
    if sha256 is not None and prompt_set_digest(prompt_set) != sha256:
        raise GainError(f"“{prompt_set.name}” is not the prompt set the matrix was calibrated on (its sha256 differs "
                        "from the one recorded with the matrix)")
    if sorted(split.calibration + split.held_out) != list(range(n)) or not split.held_out:
        raise GainError(f"the recorded split ({len(split.calibration)} + {len(split.held_out)} prompts) does not fit "
                        f"“{prompt_set.name}”, which has {n} prompts")
    if set(split.held_out) & set(split.calibration):
        raise GainError("the recorded split holds out a calibration prompt")
    return [(i, prompt_set.prompts[i]) for i in split.held_out]


# ---- figures ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileGain:
    """One file's divergence over the units (prompts or chunks), with 95% bootstrap intervals."""

    label: str
    quant_type: str | None
    file: str
    imatrix: dict[str, Any] | None
    kld_sums: tuple[float, ...] = ()  # per unit: the sum of KLD over its scored tokens
    agree_sums: tuple[int, ...] = ()  # per unit: tokens whose top-1 agrees with the reference's
    tokens: tuple[int, ...] = ()  # per unit: scored tokens
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and sum(self.tokens) > 0

    @property
    def mean_kld(self) -> float:
        return sum(self.kld_sums) / sum(self.tokens)

    @property
    def top1(self) -> float:
        return sum(self.agree_sums) / sum(self.tokens)

    def kld_interval(self) -> tuple[float, float]:
        return _interval(_resampled(self.kld_sums, self.tokens))

    def top1_interval(self) -> tuple[float, float]:
        return _interval(_resampled(self.agree_sums, self.tokens))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {jf.LABEL: self.label, jf.QUANT_TYPE: self.quant_type, jf.FILE: jf.abs_file(self.file),
                               "imatrix": self.imatrix, "error": self.error}
        if self.ok:
            lo, hi = self.kld_interval()
            tlo, thi = self.top1_interval()
            out.update({"n_tokens": sum(self.tokens), "mean_kld": self.mean_kld, "mean_kld_interval": [lo, hi],
                        "top1_agreement": self.top1, "top1_agreement_interval": [tlo, thi]})
        return out


def _index(units: int) -> np.ndarray:
    """The resampled units, [RESAMPLES, units]; seeded, so every file and pair of a report uses the same ones."""
    return np.random.default_rng(SEED).integers(0, units, size=(RESAMPLES, units))


def _resampled(sums: Sequence[float], tokens: Sequence[int]) -> np.ndarray:
    """The token-weighted mean over each bootstrap resample of whole units."""
    s, n = np.asarray(sums, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    idx = _index(len(s))
    return s[idx].sum(axis=1) / np.maximum(n[idx].sum(axis=1), 1.0)


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


@dataclass(frozen=True)
class TypeGain:
    """One type: the imatrix file against its static twin (when there is one)."""

    quant_type: str
    static: FileGain | None
    imatrix: FileGain

    @property
    def comparable(self) -> bool:
        return self.static is not None and self.static.ok and self.imatrix.ok and self.static.mean_kld > 0

    def change(self) -> tuple[float, tuple[float, float]] | None:
        """The imatrix file's KLD relative to the static one's (-0.23: 23% less), and its paired 95% interval."""
        if not self.comparable:
            return None
        assert self.static is not None
        s = _resampled(self.static.kld_sums, self.static.tokens)
        i = _resampled(self.imatrix.kld_sums, self.imatrix.tokens)
        ok = s > 0  # a resample of units where the static file never diverged has no ratio
        if not ok.any():
            return None
        return self.imatrix.mean_kld / self.static.mean_kld - 1, _interval(i[ok] / s[ok] - 1)

    def to_dict(self) -> dict[str, Any]:
        ch = self.change()
        return {jf.QUANT_TYPE: self.quant_type, "static": self.static.to_dict() if self.static else None,
                "imatrix_file": self.imatrix.to_dict(),
                "kld_change": None if ch is None else ch[0], "kld_change_interval": None if ch is None else list(ch[1])}


def _pct(x: float) -> str:
    return f"{abs(100 * x):.0f}%"


def change_sentence(quant_type: str, reference: str, where: str, static_kld: float, imatrix_kld: float,
                    change: float, interval: tuple[float, float], noise_kld: float = 0.0) -> str:
    """The answer for one type in words: less, more, or within noise (the interval includes no change, or the
    two files differ by no more than the reference differs from itself)."""
    lo, hi = interval
    kld = f"KLD {imatrix_kld:.3f} vs {static_kld:.3f}"
    if abs(imatrix_kld - static_kld) <= noise_kld:
        return (f"{where}, the imatrix {quant_type} and the static {quant_type} are within noise of each other ({kld}): "
                f"they differ by no more than the {reference} reference differs from itself (KLD {noise_kld:.4f}).")
    if hi < 0:
        return (f"{where}, the imatrix {quant_type} drifts {_pct(change)} less from the {reference} reference than the "
                f"static {quant_type} ({kld}; the change's 95% interval {_pct(hi)}–{_pct(lo)} less).")
    if lo > 0:
        return (f"{where}, the imatrix {quant_type} drifts {_pct(change)} more from the {reference} reference than the "
                f"static {quant_type}: the matrix did not help here ({kld}; the change's 95% interval "
                f"{_pct(lo)}–{_pct(hi)} more).")
    way = "less" if change < 0 else "more"
    return (f"{where}, the imatrix {quant_type} and the static {quant_type} are within noise of each other ({kld}, "
            f"{_pct(change)} {way}): the change's 95% interval runs from {_pct(lo)} "
            f"{'less' if lo < 0 else 'more'} to {_pct(hi)} {'less' if hi < 0 else 'more'}, so it includes no change.")


@dataclass
class GainReport:
    """Static vs imatrix per type on one source ("held-out prompts" or "reference text")."""

    source: str
    reference_label: str
    units: int  # prompts or chunks measured
    types: list[TypeGain]
    noise: FileGain | None  # the reference scored again against itself
    calibration: dict[str, Any] = field(default_factory=dict)  # the imatrix provenance the measurement relied on
    prompts: list[int] = field(default_factory=list)  # the held-out prompts' indices in the set
    run_ids: list[int] = field(default_factory=list)  # the stored divergence runs
    notes: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return "prompt" if self.source == HELD_OUT else "chunk"

    @property
    def noise_kld(self) -> float:
        return self.noise.mean_kld if self.noise is not None and self.noise.ok else 0.0

    def where(self) -> str:
        if self.source == HELD_OUT:
            return f"On the {counted(self.units, 'prompt')} the matrix never saw"
        return f"On the bundled reference text ({counted(self.units, 'chunk')})"

    def sentences(self) -> list[str]:
        """The answer first, a sentence per type, then the noise floor and what the measurement relied on."""
        out = []
        for t in self.types:
            ch = t.change()
            if ch is not None and t.static is not None:
                out.append(change_sentence(t.quant_type, self.reference_label, self.where(), t.static.mean_kld,
                                           t.imatrix.mean_kld, ch[0], ch[1], self.noise_kld))
            elif not t.imatrix.ok:
                out.append(f"The imatrix {t.quant_type} could not be measured: {t.imatrix.error or 'no tokens scored'}.")
            elif t.static is not None and not t.static.ok:
                out.append(f"The static {t.quant_type} could not be measured ({t.static.error or 'no tokens scored'}), "
                           f"so there is nothing to compare the imatrix one with.")
            else:
                lo, hi = t.imatrix.kld_interval()
                why = "no static twin in this ladder" if t.static is None else "a static twin with no divergence at all"
                out.append(f"{t.quant_type} has {why}: {self.where()[0].lower()}{self.where()[1:]}, the imatrix file's "
                           f"KLD is {t.imatrix.mean_kld:.3f} ({lo:.3f}–{hi:.3f}), top-1 agreement "
                           f"{t.imatrix.top1:.0%}.")
        if self.noise is not None and self.noise.ok:
            repeats = self.noise.mean_kld < 5e-5  # shows as 0.0000: the same scores up to float rounding
            out.append(f"Noise floor: the {self.reference_label} reference scored again against itself gives KLD "
                       f"{self.noise.mean_kld:.4f}" + (" — it repeats exactly (up to float rounding), so every "
                                                        "difference above is the quantizations', and the intervals "
                                                        "are what decides." if repeats else "."))
        if self.source == TEXT and self.calibration.get("kind") == "bundled text":
            out.append("Careful: the matrix was computed from this same text, so this is not a held-out measurement.")
        out.extend(self.notes)
        out.append(f"Intervals: 95%, bootstrap over {counted(self.units, self.unit)} ({RESAMPLES} resamples, seed "
                   f"{SEED}); KLD is the mean over every scored token, in nats.")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, jf.REFERENCE: self.reference_label, "units": self.units, "unit": self.unit,
                "calibration": self.calibration, "held_out_prompts": self.prompts, "run_ids": self.run_ids,
                "noise_floor": self.noise.to_dict() if self.noise else None,
                "types": [t.to_dict() for t in self.types], "sentences": self.sentences(),
                "bootstrap": {"resamples": RESAMPLES, "seed": SEED, "confidence": CONFIDENCE}}


# ---- measuring ---------------------------------------------------------------------------------------
def _contestants(ladder: Ladder, pairs: Sequence[ImatrixPair]) -> tuple[list[Contestant], list[LadderFile]]:
    """The reference, the reference again (the noise floor), then each pair's files; and the files in that order."""
    ref = ladder.reference
    files = [f for p in pairs for f in (p.static, p.imatrix) if f is not None]
    again = Contestant(f"{ref.label} (again)", ref.path, ref.quant_type, ref.size_bytes, ref.bits_per_weight, False)
    return [Contestant.from_ladder_file(ref, True), again, *(Contestant.from_ladder_file(f, False) for f in files)], files


def _units_of(result: divergence.ContestantDivergence, cuts: Sequence[tuple[int, int]]
              ) -> tuple[list[float], list[int], list[int]]:
    kld, agree = result.kld or [], result.agree or []
    return ([float(sum(kld[a:b])) for a, b in cuts], [int(sum(agree[a:b])) for a, b in cuts], [b - a for a, b in cuts])


class _Collect:
    """Per-unit sums of every contestant, added one divergence report at a time."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.sums: dict[str, tuple[list[float], list[int], list[int]]] = {label: ([], [], []) for label in labels}
        self.errors: dict[str, str] = {}

    def add(self, report: divergence.DivergenceReport, cuts: Sequence[tuple[int, int]]) -> None:
        for r in report.contestants():
            if r.error or r.kld is None:
                self.errors.setdefault(r.label, r.error or "not scored")
                continue
            k, a, n = _units_of(r, cuts)
            self.sums[r.label][0].extend(k)
            self.sums[r.label][1].extend(a)
            self.sums[r.label][2].extend(n)

    def file(self, label: str, f: LadderFile | None = None, quant_type: str | None = None, path: str = "") -> FileGain:
        k, a, n = self.sums[label]
        return FileGain(label, f.quant_type if f else quant_type, f.path if f else path, f.imatrix if f else None,
                        tuple(k), tuple(a), tuple(n), self.errors.get(label))


def _report(source: str, ladder: Ladder, pairs: Sequence[ImatrixPair], got: _Collect, units: int,
            calibration: dict[str, Any], **extra: Any) -> GainReport:
    ref = ladder.reference
    types = [TypeGain(p.quant_type, got.file(p.static.label, p.static) if p.static else None,
                      got.file(p.imatrix.label, p.imatrix)) for p in pairs]
    noise = got.file(f"{ref.label} (again)", None, ref.quant_type, ref.path)
    return GainReport(source, ref.label, units, types, noise, calibration, **extra)


def measure_gain(pool: WorkerPool, ladder: Ladder, *, prompt_set: PromptSet | None = None, text: bool = False,
                 store: Store | None = None, settings: RunSettings | None = None,
                 chunk_tokens: int = divergence.DEFAULT_CHUNK_TOKENS, max_chunks: int | None = None,
                 on_progress: OnProgress = _nothing, cancel: threading.Event | None = None) -> GainReport:
    """Static vs imatrix for every pair of the ladder, on the held-out half of `prompt_set` (the set the
    matrix was calibrated on) or, with `text=True`, on the bundled reference text. With a store, every
    divergence measurement is kept as the divergence functions keep them (their run ids are in the report)."""
    if (prompt_set is None) == (not text):
        raise GainError("measure on the held-out prompts (a prompt set) or on the bundled reference text, one of them")
    pairs = pair_files(ladder)
    if not pairs:
        raise GainError(f"ladder “{ladder.name}” has no files made with an importance matrix")
    if prompt_set is not None:
        return _on_prompts(pool, ladder, pairs, prompt_set, store, settings, on_progress, cancel)
    settings = settings or RunSettings(n_ctx=max(2048, chunk_tokens))
    contestants, _ = _contestants(ladder, pairs)
    report = divergence.diverge_text(pool, contestants, settings, chunk_tokens=chunk_tokens, max_chunks=max_chunks,
                                     store=store, ladder=ladder, on_progress=on_progress, cancel=cancel)
    per, chunks = int(report.meta["scored_per_chunk"]), int(report.meta["chunks"])
    got = _Collect([c.label for c in contestants])
    got.add(report, [(i * per, (i + 1) * per) for i in range(chunks)])
    calibration = dict(pairs[0].imatrix.imatrix or {})
    notes = []
    if len({(p.imatrix.imatrix or {}).get("sha256") for p in pairs}) > 1:
        notes.append("The imatrix files were calibrated on different text; each file's own calibration is in its row.")
    return _report(TEXT, ladder, pairs, got, chunks, calibration, run_ids=[report.run_id] if report.run_id else [],
                   notes=notes)


def _on_prompts(pool: WorkerPool, ladder: Ladder, pairs: list[ImatrixPair], prompt_set: PromptSet,
                store: Store | None, settings: RunSettings | None, on_progress: OnProgress,
                cancel: threading.Event | None) -> GainReport:
    digest = prompt_set_digest(prompt_set)
    mine = [p for p in pairs if (p.imatrix.imatrix or {}).get("sha256") == digest]
    if not mine:
        raise GainError(f"no imatrix file of “{ladder.name}” was calibrated on “{prompt_set.name}” (its sha256 matches "
                        "none recorded); give the prompt set the matrix was made from")
    splits = {str((p.imatrix.imatrix or {}).get("split")) for p in mine}
    if len(splits) > 1:
        raise GainError(f"the imatrix files calibrated on “{prompt_set.name}” used different splits; "
                        "measure a ladder whose files share one")
    provenance = dict(mine[0].imatrix.imatrix or {})
    if not provenance.get("split"):
        raise GainError(f"the matrix recorded no split of “{prompt_set.name}”, so no prompt is known to be held out")
    held = held_out_prompts(prompt_set, str(provenance["split"]), digest)
    notes = [f"Not measured here: the imatrix {p.quant_type} (calibrated on other text)." for p in pairs if p not in mine]
    settings = settings or RunSettings(max_tokens=128)
    contestants, _ = _contestants(ladder, mine)
    got = _Collect([c.label for c in contestants])
    run_ids = []
    for k, (_, prompt) in enumerate(held):
        if cancel is not None and cancel.is_set():
            raise divergence.DivergenceCancelled("stopped")
        mine_settings = replace(settings, system_prompt=prompt.system) if prompt.system is not None else settings

        def step(done: int, total: int, message: str, k: int = k) -> None:
            on_progress(k, len(held), f"held-out prompt {k + 1} of {len(held)}: {message}")

        report = divergence.diverge_prompt(pool, contestants, prompt.prompt, mine_settings, store=store,
                                           ladder=ladder, on_progress=step, cancel=cancel)
        got.add(report, [(0, report.n_tokens)])
        if report.run_id is not None:
            run_ids.append(report.run_id)
    on_progress(len(held), len(held), "done")
    return _report(HELD_OUT, ladder, mine, got, len(held), provenance, prompts=[i for i, _ in held],
                   run_ids=run_ids, notes=notes)
