"""The shared "Variants" control (KV-cache types × contexts) and a result's variant and memory lines.

One control for every page that runs local files (Compare, Sets, Evals): each chosen file runs once per chosen
KV-cache type and context; the f16 cache at the run's context is the plain file (its plain label). Memory rows
say how each figure was obtained: predicted (fit), reported by llama.cpp at load, measured (peak RSS / NVML).
"""

from __future__ import annotations

from itertools import product
from typing import Any

import streamlit as st

from workbench.core.text_units import format_bytes, is_number
from workbench.runs.variants import KV_TYPES, Variant, ctx_label, kv_label
from workbench.storage.rows import StoredResult

CONTEXTS = (4096, 8192, 16384, 32768)
RUN_CTX = "the run's context"


def variant_picker(key: str) -> tuple[list[Variant], bool]:
    """The Variants control; returns (variants, baseline) for runs.contestants.variant_contestants.

    Nothing changed (f16 at the run's context only): no variants, the run is exactly as before.
    """
    with st.expander("Variants: KV-cache type and context (memory vs quality)"):
        c1, c2 = st.columns(2)
        kvs = c1.multiselect("KV-cache types (K and V)", KV_TYPES, default=["f16"], key=f"{key}_kv",
                             help="llama.cpp's --cache-type-k/-v for both caches. q8_0 halves the cache, q4_0 quarters "
                                  "it; a quantized V cache runs with flash attention on. Different K and V types: "
                                  "the CLI's --variant k=q8_0,v=q4_0.")
        ctxs = c2.multiselect("Contexts", [RUN_CTX, *CONTEXTS], default=[RUN_CTX], key=f"{key}_ctx",
                              format_func=lambda c: c if isinstance(c, str) else f"{ctx_label(c)} ({c} tokens)",
                              help="Each context allocates its own KV cache: the memory line grows with it.")
        st.caption("Every chosen file runs once per KV type × context; f16 at the run's context is the file as "
                   "usual. Each variant keeps its own warm worker.")
    contexts: list[int | None] = [c if isinstance(c, int) else None for c in ctxs]
    variants = [Variant(k, k, c) for k, c in product(kvs, contexts) if not (k == "f16" and c is None)]
    baseline = "f16" in kvs and None in contexts
    return variants, baseline


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def variant_line(r: StoredResult) -> str | None:
    """ "KV q8_0 · context 8192" from a stored result, None for one without (older runs, endpoints)."""
    m = r.metrics
    k, v, n_ctx = _get(m, "kv_type_k"), _get(m, "kv_type_v"), _get(m, "n_ctx")
    if not isinstance(k, str) or not isinstance(v, str):
        return None
    return kv_label(k, v) + (f" · context {n_ctx}" if is_number(n_ctx) else "")


def reported_kv_bytes(r: StoredResult) -> Any:
    """llama.cpp's KV-cache bytes for a stored result, None when it has none (or stored something else)."""
    return _get(r.metrics, "memory", "reported", "kv_bytes")


def memory_rows(r: StoredResult) -> list[tuple[str, str]]:
    """(name, value) rows of plain text (the caller escapes): the variant, then weights / KV cache / compute, each
    "predicted · llama.cpp-reported", and the measured peak. Empty when the result has no memory lines."""
    memory = _get(r.metrics, "memory")
    rows: list[tuple[str, str]] = []
    line = variant_line(r)
    if line:
        rows.append(("Variant", line))
    if not isinstance(memory, dict) or not memory:
        return rows
    pred, rep = memory.get("predicted") or {}, memory.get("reported") or {}
    for name, key in (("Weights", "weights_bytes"), ("KV cache", "kv_bytes"), ("Compute", "compute_bytes")):
        p, q = _get(pred, key), _get(rep, key)
        if p is None and q is None:
            continue
        parts = []
        if is_number(p):
            parts.append(f"{format_bytes(p)} predicted")
        if is_number(q):
            parts.append(f"{format_bytes(q)} llama.cpp{' reserved' if key == 'compute_bytes' else ''}")
        rows.append((name, " · ".join(parts)))
    total, peak = _get(pred, "total_bytes"), _get(memory, "measured", "peak_rss_bytes")
    if is_number(total) or is_number(peak):
        rows.append(("Memory total", " · ".join(
            ([f"{format_bytes(total)} predicted"] if is_number(total) else [])
            + ([f"{format_bytes(peak)} measured peak RSS"] if is_number(peak) else []))))
    return rows
