"""What one contestant's run measured, and how each figure was measured.

Every figure is measured inside the worker process around the llama.cpp calls, never estimated:
- load_s: model + context creation (llama_model_load_from_file + llama_init_from_model).
- ttft_s: from the worker receiving the request to the first token sampled (templating,
  tokenizing, prefill and one sampling step).
- prefill_tok_s: prompt tokens / time of the prompt's llama_decode calls (synchronised).
- decode_tok_s: tokens sampled after the first / time from the first to the last token sampled.
  Each of those tokens cost one llama_decode of its predecessor plus sampling, so prefill is
  excluded by construction. Counted in tokens, never in stream chunks. When more than one decode
  window was timed (timing repeats, or a disturbed window timed again: runs.timing), it is the
  median of the undisturbed windows; `decode_repeats` holds every window and `decode_spread` the
  median, range and count, while decode_s and decode_steps stay the streamed answer's.
- completion_tokens: tokens in the output text (an end-of-generation token is not counted).
- peak_rss_bytes: the worker process's peak resident memory since it started (VmHWM); with the
  default mmap loading this includes the model file's pages the worker touched.
- gpu_mem_bytes: GPU memory NVML attributes to the worker process, its CUDA context included;
  null when no layer is on a GPU.
- measurement: how undisturbed the timed windows were (disturbance.py): for prefill and decode,
  the CPU the rest of the machine used meanwhile and whether that disturbed the figures; plus
  `display`, what the app's page did meanwhile ("streamed": live text at a bounded rate, "held":
  no live text, "none": no page, e.g. the CLI).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

METRIC_LABELS = {
    "load_s": "Load (s) — model + context creation in the worker",
    "ttft_s": "TTFT (s) — request to first token, prefill included",
    "prefill_tok_s": "Prefill (tok/s) — prompt tokens / prompt decode time",
    "decode_tok_s": "Decode (tok/s) — tokens after the first / time since the first; prefill excluded",
    "completion_tokens": "Tokens — generated, end-of-generation token excluded",
    "peak_rss_bytes": "Peak RAM — worker process peak RSS (VmHWM)",
    "gpu_mem_bytes": "VRAM — NVML, this worker process incl. CUDA context",
}


@dataclass
class ContestantResult:
    """One contestant's outcome in a comparison; `to_dict()` is the CLI's JSON shape (plus extras)."""

    label: str
    quant_type: str | None
    file: str | None
    size_bytes: int | None = None
    bits_per_weight: float | None = None
    is_reference: bool = False
    load_s: float | None = None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    prefill_s: float | None = None
    prefill_tok_s: float | None = None
    completion_tokens: int | None = None
    decode_steps: int | None = None
    decode_s: float | None = None
    decode_tok_s: float | None = None
    total_s: float | None = None
    stop_reason: str | None = None
    peak_rss_bytes: int | None = None
    gpu_mem_bytes: int | None = None
    gpu_layers: int | None = None
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    first_divergence_token: int | None = None
    identical_to_reference: bool | None = None
    template: str | None = None
    fallback: str | None = None
    warm: bool = False
    measurement: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    # what was loaded (a variant: runs.variants); None for a remote endpoint or an older run (= f16 at the run's n_ctx)
    kv_type_k: str | None = None
    kv_type_v: str | None = None
    n_ctx: int | None = None
    # memory as lines (engine.access.memory_lines): "predicted" (fit.predict for the settings loaded), "reported"
    # (llama.cpp's own buffer sizes from its load log), "measured" (the worker's peak RSS, its VRAM by NVML)
    memory: dict[str, Any] = field(default_factory=dict)
    # every timed decode window (runs.timing: the streamed answer first, then timing-only repeats) and their spread
    decode_repeats: list[dict[str, Any]] = field(default_factory=list)
    decode_spread: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def disturbed(self) -> bool | None:
        """Whether the decode figure was taken while other work took the worker's cores (None: not judged)."""
        from workbench.core.disturbance import summarize

        return summarize(self.measurement)[0]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContestantResult:
        """Back from `to_dict()` (a stored result's metrics): keys that are not fields are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def absorb_metrics(self, metrics: dict[str, Any]) -> None:
        """Copy a worker's `done` metrics onto this result."""
        for key, value in metrics.items():
            if hasattr(self, key):
                setattr(self, key, value)


def first_divergence(reference: list[int], other: list[int]) -> int | None:
    """Index of the first token where `other` differs from `reference`; None when identical.

    When one is a prefix of the other, they diverge where the shorter one ends.
    """
    for i, (a, b) in enumerate(zip(reference, other, strict=False)):  # lengths differ: a prefix ends early
        if a != b:
            return i
    if len(reference) == len(other):
        return None
    return min(len(reference), len(other))


def mark_divergence(results: list[ContestantResult]) -> None:
    """Fill first_divergence_token / identical_to_reference against the reference contestant."""
    refs = [r for r in results if r.is_reference and r.ok]
    if not refs:
        return
    ref = refs[0]
    for r in results:
        if r is ref or not r.ok:
            continue
        if ref.token_ids and r.token_ids:
            r.first_divergence_token = first_divergence(ref.token_ids, r.token_ids)
            r.identical_to_reference = r.first_divergence_token is None
        else:  # a remote endpoint returns text, not token ids: compare what there is
            r.first_divergence_token = None
            r.identical_to_reference = r.text == ref.text
