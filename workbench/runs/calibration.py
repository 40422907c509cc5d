"""Calibration text for an importance matrix: what it is, where it came from, and which prompts it must not see.

Three sources: the bundled reference text, any text file, or a prompt set. A prompt set is split (seeded, and
the seed is recorded) into a calibration half and a held-out half, so that "did the importance matrix help?" is
measured on prompts the matrix never saw; `PromptSplit` is that split, and it travels with the matrix's
provenance (`provenance()`), so the held-out measurement reads the same halves back.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from workbench.core import paths
from workbench.runs.prompt_sets import PromptSet

MAX_TEXT_BYTES = 16 << 20
"""Largest calibration text file read (16 MiB, ~4M tokens; llama.cpp's own guides use ~100k–500k tokens)."""

DEFAULT_SEED = 0
KEY = "workbench.calibration."  # the provenance keys' prefix, in the imatrix GGUF and in the ladder


class CalibrationError(ValueError):
    """Calibration text that cannot be used; one line for the user."""


@dataclass(frozen=True)
class PromptSplit:
    """A prompt set's indices in two disjoint halves; `seed` makes it reproducible."""

    seed: int
    calibration: tuple[int, ...]
    held_out: tuple[int, ...]

    def describe(self) -> str:
        return (f"{len(self.calibration)} prompts to calibrate, {len(self.held_out)} held out "
                f"(split seeded with {self.seed})")

    def swapped(self) -> PromptSplit:
        """The other direction: calibrate on what was held out, and hold out what calibrated."""
        return PromptSplit(self.seed, self.held_out, self.calibration)

    @staticmethod
    def parse(text: str) -> PromptSplit:
        """Back from `str()` ("seed:0,2,4|1,3"), as the provenance keeps it; CalibrationError when malformed."""
        try:
            seed, halves = text.split(":", 1)
            cal, held = halves.split("|", 1)
            return PromptSplit(int(seed), tuple(int(i) for i in cal.split(",") if i),
                               tuple(int(i) for i in held.split(",") if i))
        except ValueError:
            raise CalibrationError(f"not a recorded prompt split: {text[:80]!r}") from None

    def __str__(self) -> str:
        return f"{self.seed}:{','.join(map(str, self.calibration))}|{','.join(map(str, self.held_out))}"


def split_prompts(n: int, seed: int = DEFAULT_SEED, fraction: float = 0.5) -> PromptSplit:
    """Indices 0..n-1 shuffled with `seed`; the first `fraction` (at least one) calibrates, the rest is held out."""
    if n < 2:
        raise CalibrationError("a prompt set needs at least two prompts to keep some held out")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = min(n - 1, max(1, round(n * fraction)))
    return PromptSplit(seed, tuple(sorted(order[:k])), tuple(sorted(order[k:])))


@dataclass(frozen=True)
class CalibrationPiece:
    """One document of calibration text: plain text, or a prompt (with its system message) to be rendered
    through the model's chat template, as the model sees it in use."""

    text: str
    system: str | None = None
    chat: bool = False


@dataclass(frozen=True)
class Calibration:
    """What an importance matrix is computed from. `name` is what labels say ("Q4_K_M · imatrix (name)")."""

    name: str
    kind: str  # "bundled text" | "text file" | "prompt set"
    pieces: tuple[CalibrationPiece, ...]
    sha256: str  # of the source's content (the whole file, or the whole prompt set), for the provenance record
    split: PromptSplit | None = None  # prompt sets only

    def describe(self) -> str:
        what = f"{self.kind} “{self.name}”"
        return what + (f": {self.split.describe()}" if self.split else "")

    def provenance(self, n_tokens: int) -> dict[str, str | int]:
        """The `workbench.calibration.*` keys written into the matrix (and, from it, into each quantized file)."""
        out: dict[str, str | int] = {KEY + "name": self.name, KEY + "kind": self.kind, KEY + "sha256": self.sha256,
                                     KEY + "tokens": int(n_tokens)}
        if self.split is not None:
            out[KEY + "split"] = str(self.split)
        return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def from_text(text: str, name: str, kind: str = "text file") -> Calibration:
    if not text.strip():
        raise CalibrationError(f"{name}: the calibration text is empty")
    return Calibration(name, kind, (CalibrationPiece(text),), _sha(text.encode()))


def from_text_file(path: str | Path) -> Calibration:
    """A UTF-8 text file, up to MAX_TEXT_BYTES; its name (without suffix) names the matrix."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise CalibrationError(f"{path}: {size:,} bytes, over the {MAX_TEXT_BYTES:,}-byte limit for calibration text")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not UTF-8 text") from None
    return from_text(text, path.stem)


def bundled_text() -> Calibration:
    """The reference text the divergence measurement also scores (prompts/reference_text.txt)."""
    path = paths.bundled_prompts_dir() / "reference_text.txt"
    return from_text(path.read_text(encoding="utf-8"), "reference text", kind="bundled text")


def prompt_set_digest(prompts: PromptSet) -> str:
    """The sha256 a prompt-set calibration records: its prompts and system messages, in order."""
    return _sha("\x1e".join(f"{p.system or ''}\x1f{p.prompt}" for p in prompts.prompts).encode())


def from_prompt_set(prompts: PromptSet, seed: int = DEFAULT_SEED, *, use: str = "calibration") -> Calibration:
    """The calibration half of a seeded split of `prompts` (or, `use="held_out"`, the other half: the split's
    second direction). Each prompt is rendered through the chat template with its system message."""
    split = split_prompts(len(prompts.prompts), seed)
    if use == "held_out":
        split = split.swapped()
    elif use != "calibration":
        raise ValueError(f"use must be 'calibration' or 'held_out', not {use!r}")
    digest = prompt_set_digest(prompts)
    pieces = tuple(CalibrationPiece(prompts.prompts[i].prompt, prompts.prompts[i].system, chat=True)
                   for i in split.calibration)
    return Calibration(prompts.name, "prompt set", pieces, digest, split)
