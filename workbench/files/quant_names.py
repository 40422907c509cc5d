"""Quantization names as they appear in GGUF file names, and how to order them by precision.

The Hub, LM Studio and Ollama all name files by convention ("Llama-3.2-1B-Instruct-Q4_K_M.gguf",
"llama3.2:1b-instruct-q4_K_M"), not by metadata, so the listing and the on-disk discovery both need
one shared reading of those names. Split shards ("-00001-of-00003.gguf") belong to one model file.

Files made with an importance matrix say so in their names by convention too: ours "<stem>.Q4_K_M.imatrix-<slug>.gguf"
and labels "Q4_K_M · imatrix (<calibration>)" (models.ladder.imatrix_label), the Hub's "-imatrix", "-imat" or
mradermacher's "i1-Q4_K_M". `is_imatrix_name` reads that, and the calibration part never counts as a type
("imatrix (Q8 support)" is still Q4_K_M). The IQ types order by their bits per weight like any other type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gguf

#: The ladder the brief asks for by default, highest precision first.
DEFAULT_QUANTS: tuple[str, ...] = ("Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K")

# One quantization token: Q4_K_M, IQ3_XXS, Q4_0_4_8, TQ1_0, BF16, F16, F32, MXFP4 ...
# Suffix parts are restricted to known pieces so "_imatrix" or "_final" is not swallowed.
_QUANT_TOKEN = (
    r"(?:I?Q[1-8](?:_(?:[0-9]|K|S|M|L|XL|XS|XXS|NL))*"
    r"|TQ[12]_0|MXFP4(?:_MOE)?|NVFP4|BF16|FP16|FP32|F16|F32)"
)
_QUANT_RE = re.compile(rf"(?:^|[-._ :])(?P<q>{_QUANT_TOKEN})(?=$|[-._ ])", re.IGNORECASE)
# The importance-matrix part of a name: a label's " · imatrix (…)" and any variant part after it, a file name's
# ".imatrix-<slug>" to the end, or a bare "imatrix"/"imat"/"i1" word (the Hub's conventions). The first two are cut
# before looking for the type.
_IMATRIX_TAIL_RE = re.compile(r"(?: · imatrix \(.*|[-._]imatrix[-._].*)$", re.IGNORECASE | re.DOTALL)
_IMATRIX_WORD_RE = re.compile(r"(?:^|[-._ (])(?:imatrix|imat|i1)(?=$|[-._ )])", re.IGNORECASE)
_SHARD_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

# Tie-break between types of equal nominal bits: bigger mixes first, legacy Q4_0/Q5_0 below K-quant mixes.
# IQ4_NL (4.5 bpw, a single block type) sits below Q4_K_S and Q4_0 of the same nominal bits: llama.cpp's files of
# it are the smaller ones (LLaMA-3-8B: 4.35 GiB against 4.37 and 4.34 … 4.58).
_SUFFIX_ORDER = {"XL": 5, "L": 4, "M": 3, "NL": 1, "K": 3, "S": 2, "0": 2, "1": 2, "XS": 1, "XXS": 0}


@dataclass(frozen=True)
class ShardName:
    """Where a file sits in a split GGUF: `base` is the name without "-0000i-of-0000n.gguf"."""

    base: str
    index: int
    count: int


def parse_shard(filename: str) -> ShardName | None:
    """Split-file position of `filename` (a bare name or a path), or None for a single-file GGUF."""
    m = _SHARD_RE.match(filename.rsplit("/", 1)[-1])
    if not m:
        return None
    return ShardName(m["base"], int(m["index"]), int(m["count"]))


def _last_quant_token(name: str) -> tuple[str, re.Match[str] | None]:
    """A file name's stem (folder, shard suffix and .gguf removed) and its last quantization token, if any:
    quant tokens sit at the end of names ("Qwen2-7B-Q4_K_M", not "Qwen2")."""
    stem = name.rsplit("/", 1)[-1]
    shard = parse_shard(stem)
    if shard:
        stem = shard.base
    stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    stem = _IMATRIX_TAIL_RE.sub("", stem)  # "Q4_K_M · imatrix (Q8 tests)" is Q4_K_M
    matches = list(_QUANT_RE.finditer(stem))
    return stem, (matches[-1] if matches else None)


def quant_from_name(name: str) -> str | None:
    """The quantization type a file or tag name states ("…-Q4_K_M.gguf" -> "Q4_K_M"), upper-case; None if none.

    The last match wins: quant tokens sit at the end of names ("Qwen2-7B-Q4_K_M", not "Qwen2").
    """
    _, m = _last_quant_token(name)
    if m is None:
        return None
    q = m["q"].upper()
    return {"FP16": "F16", "FP32": "F32"}.get(q, q)


def is_imatrix_name(name: str) -> bool:
    """A label or file name that says it was made with an importance matrix: "Q4_K_M · imatrix (Product support)",
    "model.Q4_K_M.imatrix-product-support.gguf", "Model-IQ3_M-imat.gguf", "Model.i1-Q4_K_M.gguf"."""
    stem = name.rsplit("/", 1)[-1]
    return bool(_IMATRIX_TAIL_RE.search(re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE))
                or _IMATRIX_WORD_RE.search(stem))


#: How each calibration kind (runs.calibration.Calibration.kind) reads after "made with …".
_CALIBRATION_WORDS = {"prompt set": "your prompts' importance matrix", "text file": "an importance matrix from your text",
                      "bundled text": "an importance matrix from the bundled reference text"}


def imatrix_words(quant_type: str, imatrix: Mapping[str, Any] | None, with_name: bool = True) -> str:
    """A file in words for a product person: "Q4_K_M made with your prompts' importance matrix (Product support)";
    the bare type for a static file (`imatrix` None). `imatrix` is a LadderFile's provenance (`kind`, `name`, `file`);
    its values are untrusted text: escape the result where it becomes HTML or Markdown."""
    if imatrix is None:
        return quant_type
    kind, name = str(imatrix.get("kind") or ""), str(imatrix.get("name") or imatrix.get("file") or "")
    words = f"{quant_type} made with {_CALIBRATION_WORDS.get(kind, 'an importance matrix')}"
    return f"{words} ({name})" if with_name and name and kind != "bundled text" else words


def strip_quant(name: str) -> str:
    """The model part of a file name: extension, shard suffix and quantization token removed."""
    stem, m = _last_quant_token(name)
    if m is not None:
        stem = stem[: m.start()] + stem[m.end():]
    return stem.strip("-._ :") or name


def base_tensor_type(quant: str) -> gguf.GGMLQuantizationType | None:
    """The ggml tensor type a file-level quantization is mostly made of (Q4_K_M -> Q4_K, IQ3_M -> IQ3_S)."""
    q = quant.upper()
    q = re.sub(r"^(Q4_0)_\d_\d$", r"\1", q)  # Q4_0_4_8 and kin: repacked Q4_0
    # IQ3_XS is a mix of IQ3_XXS and IQ3_S blocks (3.3 bpw): its smaller block type orders it below IQ3_S
    candidates = [q, re.sub(r"_(?:XL|L|M|S)$", "", q), re.sub(r"_(?:XL|L|M)$", "_S", q), re.sub(r"_XS$", "_XXS", q)]
    for c in candidates:
        try:
            return gguf.GGMLQuantizationType[c]
        except KeyError:
            continue
    return None


def nominal_bits_per_weight(quant: str) -> float | None:
    """Bits per weight of the quantization's base block type (from gguf's block-size table).

    Mixes (_M, _L) spend more bits on some tensors, so real files run a little higher: this is a nominal figure
    for ordering and rough estimates, never a measurement.
    """
    t = base_tensor_type(quant)
    if t is None:
        return None
    block, type_size = gguf.GGML_QUANT_SIZES[t]
    return type_size * 8 / block


def precision_key(quant: str | None) -> tuple[float, int, str]:
    """Sort key, highest precision first when used with reverse=True (F32 > F16 > Q8_0 > Q5_K_M > Q5_K_S > …)."""
    if not quant:
        return (-1.0, -1, "")
    bits = nominal_bits_per_weight(quant) or 0.0
    if quant.upper() == "BF16":
        bits -= 0.001  # F16 and BF16 tie on bits; keep a stable order
    suffix = quant.upper().rsplit("_", 1)[-1]
    return (bits, _SUFFIX_ORDER.get(suffix, 3), quant.upper())


#: The file people ship when "4-bit will do": the question a fresh ladder is asked first is this one vs 8-bit.
COMMON_CANDIDATE = "Q4_K_M"
EIGHT_BIT = "Q8_0"


def default_pair(labels: list[str], reference: str | None = None,
                 quant_of: dict[str, str | None] | None = None) -> tuple[str, str] | None:
    """(candidate, baseline) a fresh ladder is asked about first: the smallest common quantization against the
    8-bit one, "Q4_K_M vs Q8_0".

    The candidate, among the labels below the baseline in precision (any label when none is), is the one that is
    Q4_K_M; else the lowest-precision one of at least 4 nominal bits (the smallest file people commonly ship); else
    the lowest-precision one. The baseline is the label that is Q8_0;
    else `reference`; else the highest-precision label. None when fewer than two labels differ.
    `quant_of` maps a label to its quant type when the label alone does not say it.
    """
    names = list(dict.fromkeys(x for x in labels if isinstance(x, str) and x))
    if len(names) < 2:
        return None

    def quant(label: str) -> str | None:
        q = (quant_of or {}).get(label)
        return (q or quant_from_name(label) or label).upper()

    baseline = next((x for x in names if quant(x) == EIGHT_BIT), None)
    if baseline is None:
        baseline = reference if reference in names else max(names, key=lambda x: precision_key(quant(x)))
    rest = [x for x in names if x != baseline]
    lower = [x for x in rest if precision_key(quant(x)) < precision_key(quant(baseline))]
    rest = lower or rest  # the question is about a smaller file, when there is one
    # the static file of that type first: an imatrix Q4_K_M beside it is the follow-up question, not the first
    candidate = next((x for x in rest if quant(x) == COMMON_CANDIDATE and not is_imatrix_name(x)), None)
    candidate = candidate or next((x for x in rest if quant(x) == COMMON_CANDIDATE), None)
    if candidate is None:
        common = [x for x in rest if (nominal_bits_per_weight(quant(x) or "") or 0.0) >= 4.0]
        candidate = min(common or rest, key=lambda x: precision_key(quant(x)))
    return candidate, baseline
