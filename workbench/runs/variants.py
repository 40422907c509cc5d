"""Variants: a GGUF file plus the load settings that change its memory and quality (KV-cache types, context).

A comparison can put "Q4_K_M · KV q8_0 · 8k" beside "Q4_K_M": the same file, loaded with an 8-bit KV cache at
an 8k context. `contestants.variant_contestants` expands chosen files by chosen variants; the f16 cache at the run's
own context is the plain file, with its plain label, so runs with and without variants line up by label. This module
is the variant itself (what it is, how it is named and written); it imports nothing else of the workbench.

The label grammar has one owner here: `format_label` writes it, `parse_label` reads a stored label back
(decide.evidence, the app), and `kv_label`/`ctx_label` are its parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

#: KV-cache types a variant may use (llama.cpp's --cache-type-k/-v names); a quantized V needs flash attention.
KV_TYPES = ("f16", "q8_0", "q4_0")
MIN_CTX = 64
MAX_CTX = 1 << 20


DEFAULT_KV = "f16"
SEP = " · "  # between a label's parts: "Q4_K_M · KV q8_0 · 8k"
_KV_PART = re.compile(r"^KV (?P<k>[A-Za-z0-9_]{1,12})(?:/(?P<v>[A-Za-z0-9_]{1,12}))?$")
_CTX_PART = re.compile(r"^(?:(?P<k>\d{1,4})k|(?P<n>\d{2,7}))$")  # ctx_label's "8k", or "1000" tokens


# ---- the label grammar: "Q4_K_M · KV q8_0 · 8k" ----------------------------------------------------------------
def ctx_label(n_ctx: int) -> str:
    """8192 -> "8k", 32768 -> "32k", 1000 -> "1000" (k only for whole multiples of 1024)."""
    return f"{n_ctx // 1024}k" if n_ctx % 1024 == 0 else str(n_ctx)


def kv_types_text(kv_type_k: str, kv_type_v: str) -> str:
    """ "q8_0", or "q8_0/q4_0" when K and V differ."""
    return kv_type_k if kv_type_k == kv_type_v else f"{kv_type_k}/{kv_type_v}"


def kv_label(kv_type_k: str, kv_type_v: str) -> str:
    """ "KV q8_0", or "KV q8_0/q4_0" when K and V differ."""
    return f"KV {kv_types_text(kv_type_k, kv_type_v)}"


def format_label(base: str, kv_type_k: str = DEFAULT_KV, kv_type_v: str = DEFAULT_KV, n_ctx: int | None = None) -> str:
    """ "Q4_K_M" for the f16 cache without a context of its own, else "Q4_K_M · KV q8_0" plus " · 8k" when the
    context is set (the KV part is always written then, "Q4_K_M · KV f16 · 8k")."""
    if kv_type_k == kv_type_v == DEFAULT_KV and n_ctx is None:
        return base
    return SEP.join([base, kv_label(kv_type_k, kv_type_v)] + ([ctx_label(n_ctx)] if n_ctx is not None else []))


class ParsedLabel(NamedTuple):
    """A stored label read back: the file's own label, its KV-cache types, its context (None: not said)."""

    base: str
    kv_type_k: str = DEFAULT_KV
    kv_type_v: str = DEFAULT_KV
    n_ctx: int | None = None


def parse_label(label: str) -> ParsedLabel:
    """`format_label` read back. A part that is not a variant part stays in the file's own label ("my · file");
    a bare number counts as a context only after the KV part; types are lower-cased."""
    parts = label.split(SEP)
    base, k, v, n_ctx, seen_kv = parts[0], DEFAULT_KV, DEFAULT_KV, None, False
    for part in parts[1:]:
        if m := _KV_PART.match(part):
            k, v, seen_kv = m["k"].lower(), (m["v"] or m["k"]).lower(), True
        elif (m := _CTX_PART.match(part)) and (m["k"] or seen_kv):
            n_ctx = int(m["k"]) * 1024 if m["k"] else int(m["n"])
        else:  # not a variant suffix: part of the file's own label
            base = f"{base}{SEP}{part}"
    return ParsedLabel(base, k, v, n_ctx)


@dataclass(frozen=True)
class Variant:
    """KV-cache types for K and V, and a context size (None: the run's)."""

    kv_type_k: str = "f16"
    kv_type_v: str = "f16"
    n_ctx: int | None = None

    def __post_init__(self) -> None:
        for which, t in (("K", self.kv_type_k), ("V", self.kv_type_v)):
            if t not in KV_TYPES:
                raise ValueError(f"unknown {which} cache type {t!r}: use {', '.join(KV_TYPES)}")
        if self.n_ctx is not None and not MIN_CTX <= self.n_ctx <= MAX_CTX:
            raise ValueError(f"context size must be between {MIN_CTX} and {MAX_CTX} tokens, not {self.n_ctx}")


    def is_plain(self, run_n_ctx: int) -> bool:
        """The f16 cache at the run's context: the file as it always ran."""
        return self.kv_type_k == "f16" and self.kv_type_v == "f16" and self.n_ctx in (None, run_n_ctx)

    def label_for(self, base: str, run_n_ctx: int) -> str:
        """ "Q4_K_M · KV q8_0 · 8k"; the plain label for the plain variant."""
        if self.is_plain(run_n_ctx):
            return base
        return format_label(base, self.kv_type_k, self.kv_type_v, self.n_ctx)


def parse_variant(spec: str) -> Variant:
    """A CLI variant: "kv=q8_0", "kv=q4_0,ctx=8192", "k=q8_0,v=q4_0", "ctx=16k". ValueError with a plain message."""
    fields: dict[str, str] = {}
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if not sep or not value:
            raise ValueError(f"variant part {part!r} is not key=value (e.g. kv=q8_0,ctx=8192)")
        if key not in ("kv", "k", "v", "ctx"):
            raise ValueError(f"unknown variant field {key!r}: use kv, k, v or ctx (e.g. kv=q8_0,ctx=8192)")
        if key in fields:
            raise ValueError(f"variant field {key!r} is given twice")
        fields[key] = value
    if not fields:
        raise ValueError("an empty variant: give kv=TYPE, k=TYPE,v=TYPE and/or ctx=N")
    if "kv" in fields and ("k" in fields or "v" in fields):
        raise ValueError("give either kv= (both caches) or k=/v=, not both")
    k = fields.get("k", fields.get("kv", "f16"))
    v = fields.get("v", fields.get("kv", "f16"))
    n_ctx = None
    if "ctx" in fields:
        text = fields["ctx"]
        scale = 1024 if text.endswith("k") else 1
        digits = text[:-1] if scale > 1 else text
        if not digits.isdigit():
            raise ValueError(f"ctx must be a number of tokens (8192 or 8k), not {fields['ctx']!r}")
        n_ctx = int(digits) * scale
    return Variant(k, v, n_ctx)

