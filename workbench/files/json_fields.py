"""One vocabulary for the JSON the `workbench` commands print (README.md, "CLI JSON fields").

The same thing goes by the same key in every `--json` output, and a GGUF is always named by its absolute
path, so a script can join `demo`, `ladder`, `fit`, `download`, `compare`, `diverge`, `eval` and
`fingerprint` on `file` (or `label`). The `summary()` methods behind those outputs build their rows here.
"""

from __future__ import annotations

import os
from typing import Any

FILE = "file"  # absolute path of the GGUF on this machine; null where there is none (a Hub file, an endpoint)
NAME = "name"  # the file's name: its base name, or its path inside a Hub repo
LABEL = "label"  # the contestant's name in a ladder or run ("Q4_K_M", "F16 (source)")
QUANT_TYPE = "quant_type"  # llama.cpp's quantization type name ("Q4_K_M")
SIZE_BYTES = "size_bytes"  # the file's size on disk (all shards)
BITS_PER_WEIGHT = "bits_per_weight"
IS_REFERENCE = "is_reference"  # this row is the reference the others are measured against
REFERENCE = "reference"  # at the top of an output: the reference's label
PREDICTED_BYTES = "predicted_bytes"  # predicted peak memory of one worker running the file
VERDICT = "verdict"  # where the file can run: "CPU only", "fits on the GPU entirely" …; null when no header was read
HOW = "how"  # where a fit row's figures came from: "read from this file's header", "estimated from <name>'s header",
# "header unreadable: <why>" (no verdict then)
RUN_ID = "run_id"  # the stored run's id (`workbench history`, `report`)
SET_RUN_ID = "set_run_id"  # a stored set run (`workbench batch`): a prompt set, each prompt its own run
IMATRIX = "imatrix"  # a file made with an importance matrix: its provenance (IMATRIX_KEYS); null for a static file
IMATRIX_KEYS = ("name", "kind", "sha256", "tokens", "split", "file")  # calibration name/kind/sha256/tokens, the
# seeded prompt split ("seed:calibration indices|held-out indices") when a prompt set was split, the matrix's file name
ENDPOINT = "endpoint"  # a remote endpoint: base_url, model, api … (never its key); a remote row's `file` is null


def abs_file(path: str | os.PathLike[str] | None) -> str | None:
    """A local GGUF path as the vocabulary names it: absolute, `~` expanded; None stays None."""
    return os.path.abspath(os.path.expanduser(os.fspath(path))) if path else None


def imatrix_fields(imatrix: dict[str, Any] | None) -> dict[str, Any] | None:
    """A file's importance-matrix provenance as the vocabulary's `imatrix` object (every key, null where unknown)."""
    return {k: imatrix.get(k) for k in IMATRIX_KEYS} if imatrix else None


def fit_fields(*, file: str | os.PathLike[str] | None, name: str, quant_type: str | None, predicted_bytes: int | None,
               verdict: str | None, how: str) -> dict[str, Any]:
    """One `workbench fit` row, local or Hub file alike, in this order."""
    return {FILE: abs_file(file), NAME: name, QUANT_TYPE: quant_type, PREDICTED_BYTES: predicted_bytes, VERDICT: verdict,
            HOW: how}


def gguf_fields(*, label: str | None, quant_type: str | None, file: str | os.PathLike[str] | None,
                size_bytes: int | None = None, bits_per_weight: float | None = None,
                is_reference: bool = False) -> dict[str, Any]:
    """The fields every row that describes one GGUF of a ladder starts with, in this order."""
    return {LABEL: label, QUANT_TYPE: quant_type, FILE: abs_file(file), SIZE_BYTES: size_bytes,
            BITS_PER_WEIGHT: bits_per_weight, IS_REFERENCE: bool(is_reference)}


def calibration_fields(*, name: str, kind: str, sha256: str, tokens: int, split: str | None) -> dict[str, Any]:
    """What an importance matrix was computed from (`workbench imatrix`): the calibration's name, kind ("bundled
    text", "text file", "prompt set"), content hash, tokens seen, and the prompt split's string form (or null)."""
    return {NAME: name, "kind": kind, "sha256": sha256, "tokens": int(tokens), "split": split}
