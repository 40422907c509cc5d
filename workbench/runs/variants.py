"""Variants: a GGUF file plus the load settings that change its memory and quality (KV-cache types, context).

A comparison can put "Q4_K_M · KV q8_0 · 8k" beside "Q4_K_M": the same file, loaded with an 8-bit KV cache at
an 8k context. `variant_contestants` expands chosen files by chosen variants; the f16 cache at the run's own
context is the plain file, with its plain label, so runs with and without variants line up by label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from workbench.runs.contestants import Contestant

#: KV-cache types a variant may use (llama.cpp's --cache-type-k/-v names); a quantized V needs flash attention.
KV_TYPES = ("f16", "q8_0", "q4_0")
MIN_CTX = 64
MAX_CTX = 1 << 20


def ctx_label(n_ctx: int) -> str:
    """8192 -> "8k", 32768 -> "32k", 1000 -> "1000" (k only for whole multiples of 1024)."""
    return f"{n_ctx // 1024}k" if n_ctx % 1024 == 0 else str(n_ctx)


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

    def kv_label(self) -> str:
        """ "KV q8_0", or "KV q8_0/q4_0" when K and V differ."""
        kv = self.kv_type_k if self.kv_type_k == self.kv_type_v else f"{self.kv_type_k}/{self.kv_type_v}"
        return f"KV {kv}"

    def label_suffix(self) -> str:
        """ "KV q8_0 · 8k" (the context only when the variant sets one)."""
        parts = [self.kv_label()]
        if self.n_ctx is not None:
            parts.append(ctx_label(self.n_ctx))
        return " · ".join(parts)

    def is_plain(self, run_n_ctx: int) -> bool:
        """The f16 cache at the run's context: the file as it always ran."""
        return self.kv_type_k == "f16" and self.kv_type_v == "f16" and self.n_ctx in (None, run_n_ctx)

    def label_for(self, base: str, run_n_ctx: int) -> str:
        """ "Q4_K_M · KV q8_0 · 8k"; the plain label for the plain variant."""
        if self.is_plain(run_n_ctx):
            return base
        return f"{base} · {self.label_suffix()}"


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


def variant_of(contestant: Contestant) -> Variant:
    """The variant a contestant is loaded as."""
    return Variant(contestant.kv_type_k, contestant.kv_type_v, contestant.n_ctx)


def variant_contestants(contestants: Sequence[Contestant], variants: Sequence[Variant], run_n_ctx: int,
                        *, baseline: bool = True) -> list[Contestant]:
    """One contestant per (local file, variant), in file order; remote endpoints pass through unchanged.

    `baseline`: keep each file as it is (f16 cache, run's context) too. The reference stays the reference only
    as itself: its variants are contestants like any other. Duplicates (a variant equal to the plain file) are
    dropped. Without variants the contestants are returned as they are.
    """
    out: list[Contestant] = []
    seen: set[str] = set()
    for c in contestants:
        if c.is_remote or not variants:
            out.append(c)
            continue
        chosen = ([Variant()] if baseline or c.is_reference else []) + list(variants)
        for v in chosen:
            plain = v.is_plain(run_n_ctx)
            label = v.label_for(c.label, run_n_ctx)
            if label in seen:
                continue
            seen.add(label)
            out.append(c if plain else replace(c, label=label, is_reference=False, kv_type_k=v.kv_type_k,
                                               kv_type_v=v.kv_type_v, n_ctx=v.n_ctx))
    return out


def with_stored_variant(contestant: Contestant, metrics: dict[str, Any], run_n_ctx: int | None) -> Contestant:
    """`contestant` loaded as a stored result's `metrics` say it was (kv_type_k/kv_type_v/n_ctx, written since
    variants exist); an older result, or one at the run's own context with the f16 cache, stays the plain file."""
    k, v, n_ctx = metrics.get("kv_type_k"), metrics.get("kv_type_v"), metrics.get("n_ctx")
    k = k if k in KV_TYPES else "f16"
    v = v if v in KV_TYPES else "f16"
    own_ctx = n_ctx if isinstance(n_ctx, int) and n_ctx != run_n_ctx and MIN_CTX <= n_ctx <= MAX_CTX else None
    if k == "f16" and v == "f16" and own_ctx is None:
        return contestant
    return replace(contestant, kv_type_k=k, kv_type_v=v, n_ctx=own_ctx)
