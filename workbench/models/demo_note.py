"""What is unusual about the embedded demo ladder, said where its figures show (sidebar, reports).

The demo is a 135M model whose only source is a Q4_1 file, so its figures mislead a reader who takes them for a
real model's: even Q8_0 rewrites answers from the first sentence, and the K-quants do not rank as the folklore
says. The library decides whether a ladder is the demo and holds the words; pages and reports show them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from workbench.models.ladder import DEMO_DIR_NAME, DEMO_NAME, Ladder

DOCS = ("docs/quality.md (\"Figures measured here\"), docs/noise-floor.md")


@dataclass(frozen=True)
class DemoNote:
    """A short line to show under the model's name, the reasons behind it, and where the docs say more."""

    short: str
    reasons: tuple[str, ...]
    docs: str = DOCS

    def text(self) -> str:
        """The whole note as one paragraph (for reports)."""
        return f"{self.short} {' '.join(self.reasons)} More in {self.docs}."


NOTE = DemoNote(
    short=("This is the embedded demo: a tiny 135M-parameter model, so every file, even Q8_0, often gives a "
           "\"different answer from sentence 1\". Real 7–8B models drift far less; judge quantization on yours."),
    reasons=(
        "Its only source is a Q4_1 (4-bit) file shipped in a Python package, so \"F16\" is an up-cast of 4-bit "
        "weights, not a true full-precision model.",
        "Greedy decoding of so small a model takes another path at the first token that differs, so answers part "
        "ways early even when the files are nearly equal (Q8_0's mean KLD is about 0.004).",
        "Its 576-wide tensors are not multiples of 256, so llama.cpp's K-quants fall back to other types for most "
        "tensors: Q5_K_M measures worse than Q4_K_M, Q4_K_M shows about 6.2 bits per weight, and Q2_K can peak "
        "above Q4_K_M in RAM.",
    ),
)


def is_demo(ladder: Ladder) -> bool:
    """True for the embedded demo ladder (by its folder, or by its name where the folder is not known)."""
    if ladder.directory:
        return os.path.basename(os.path.normpath(ladder.directory)) == DEMO_DIR_NAME
    return ladder.name == DEMO_NAME


def demo_note(ladder: Ladder) -> DemoNote | None:
    """The note for the demo ladder, None for any other (a real model needs no excuse)."""
    return NOTE if is_demo(ladder) else None


def report_note(stored: dict[str, Any] | None) -> str:
    """The note as one paragraph for a report from a run's stored ladder (its `name` and `directory`, untrusted);
    "" when it is not the demo."""
    if not isinstance(stored, dict):
        return ""
    name, directory = stored.get("name"), stored.get("directory")
    ladder = Ladder(name=name if isinstance(name, str) else "", files=[],
                    directory=directory if isinstance(directory, str) else None)
    return NOTE.text() if is_demo(ladder) else ""
