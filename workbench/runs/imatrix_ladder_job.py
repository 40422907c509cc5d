"""An importance-matrix ladder from calibration text: compute the matrix, then quantize with it.

Computing the matrix runs the reference model (runs), quantizing is models' `build_ladder`; a job that does both
lives here, above both. With a matrix file already made, `acquire.LadderBuildJob` is enough. The CLI's
`ladder --imatrix-from` and the Models page name calibration the same way (`calibration_from_source`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.models.acquire import LadderBuildJob
from workbench.models.ladder import Ladder, Progress, build_ladder, name_slug
from workbench.runs import calibration as cal
from workbench.runs.imatrix import compute_imatrix
from workbench.runs.prompt_sets import SUFFIX_FORMATS, find_bundled_set, load_prompt_set

REFERENCE_TEXT = "reference-text"  # the bundled reference text, by name on the command line


def calibration_from_source(source: str, seed: int = cal.DEFAULT_SEED) -> cal.Calibration:
    """`reference-text`, a bundled prompt set's name, a prompt-set file (.toml, .csv, .jsonl: calibrates on the
    seeded half, the rest held out) or any other text file. CalibrationError/PromptSetError (one line) otherwise."""
    if source.strip().lower() in (REFERENCE_TEXT, "reference text"):
        return cal.bundled_text()
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() in SUFFIX_FORMATS and path.suffix.lower() != ".txt":
            return cal.from_prompt_set(load_prompt_set(path), seed)
        return cal.from_text_file(path)
    found = find_bundled_set(source)
    if found is None:
        raise cal.CalibrationError(f"{source}: not a file, not {REFERENCE_TEXT!r}, and no bundled prompt set of that name")
    return cal.from_prompt_set(found, seed)


def matrix_path(reference: str, calibration: cal.Calibration, out_dir: str | None = None) -> Path:
    """Where the computed matrix goes: `<ladder or reference dir>/<slug>.imatrix.gguf`."""
    return Path(out_dir or Path(reference).parent) / f"{name_slug(calibration.name)}.imatrix.gguf"


def matrix_from_source(reference: str, calibration: cal.Calibration, out_dir: str | None = None, *,
                       progress: Progress = lambda msg: None) -> Path:
    """Compute the matrix for the CLI (`ladder --imatrix-from`); ImatrixComputeError (one line) when it cannot."""
    progress(f"Computing the importance matrix from {calibration.describe()}…")
    out = matrix_path(reference, calibration, out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = compute_imatrix(reference, calibration, out,
                             on_progress=lambda done, total, msg: progress(f"  matrix: {msg or f'{done} of {total}'}"))
    progress(f"Importance matrix {result.path} ({result.n_tokens:,} tokens in {result.seconds:.0f} s)"
             + (f". {result.note}" if result.note else ""))
    return Path(result.path)


class ImatrixLadderJob(LadderBuildJob):
    """Computes the matrix from `calibration` over the source (step 1), then builds the ladder with it (the files).

    Cancel stops the computation or the build between files; a failure of either is one line.
    """

    kind = "imatrix-ladder-build"
    # ImatrixComputeError is a ValueError (expected: its one line is the failure); ImatrixCancelled a Cancelled

    def __init__(self, src: str, types: Sequence[str], calibration: cal.Calibration, *,
                 reference_type: str | None = "F16", name: str | None = None, with_static: bool = True) -> None:
        super().__init__(src, types, reference_type, name, with_static=with_static)
        self.calibration = calibration
        self.report(total=self.planned_files(True) + 1)  # the matrix, then the files

    def _step(self, done: int, total: int, _what: str) -> None:
        with self._lock:  # the matrix was step 1
            self.report(max(done + 1, int(self.progress.done)), total + 1)

    def _matrix_progress(self, done: int, total: int, msg: str) -> None:
        with self._lock:
            self.report(done / total if total else 0, message=f"Importance matrix: {msg or f'{done} of {total}'}")

    def _build(self, _job: Any) -> Ladder:
        out = matrix_path(self.src, self.calibration)
        self._say(f"Computing the importance matrix from {self.calibration.describe()}…")
        result = compute_imatrix(self.src, self.calibration, out, on_progress=self._matrix_progress, cancel=self.cancel)
        self._say(f"Importance matrix {Path(result.path).name}: {result.n_tokens:,} tokens in {result.seconds:.0f} s")
        self.imatrix = str(result.path)
        return build_ladder(self.src, self.types, reference_type=self.reference_type, name=self.name,
                            progress=self._say, on_step=self._step, imatrix=self.imatrix,
                            with_static=self.with_static, cancel=self.cancel,
                            extra_provenance={"note": result.note} if result.note else None)
