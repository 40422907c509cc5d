"""Stored rows as typed values: a run, its results, a set run and its children, checked once where they are read.

A database holds what an import or an older version put there, so a stored value may be of the wrong type (text
in a number column, JSON that is not JSON, settings that are a list). Each row's `from_row` (as simonw/llm's
`Response.from_row`) decodes its JSON columns and gives every odd value its documented default (None for a
figure or an optional text, {} for settings and metrics, [] for token ids, prompts and labels), so readers use
attributes and never re-check a stored value's type. What a row keeps as JSON inside it (settings, machine,
metrics) is as it was stored: readers check those values where they use them. `to_dict` gives the row as the
store's readers gave it before, for JSON output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench.core.disturbance import summarize as summarize_disturbance


def text_or_none(value: object) -> str | None:
    """A stored text, or None when the column holds something else."""
    return value if isinstance(value, str) else None


def int_or_none(value: object) -> int | None:
    """A stored whole number, or None (a bool, a float or text is no count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def float_or_none(value: object) -> float | None:
    """A stored number as a float, or None (text in a number column is no figure)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def decoded(raw: object) -> Any:
    """A JSON column decoded; None when it is empty or not JSON."""
    if not isinstance(raw, (str, bytes)) or not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _dict_or_none(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class StoredResult:
    """One contestant's output and figures in a run, as stored (`metrics`: the full result as it was saved)."""

    id: int
    run_id: int
    position: int
    label: str
    quant_type: str | None = None
    file: str | None = None
    size_bytes: int | None = None
    bits_per_weight: float | None = None
    is_reference: bool = False
    text: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    fallback: str | None = None
    load_s: float | None = None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    prefill_s: float | None = None
    prefill_tok_s: float | None = None
    completion_tokens: int | None = None
    decode_steps: int | None = None
    decode_s: float | None = None
    decode_tok_s: float | None = None
    peak_rss_bytes: int | None = None
    gpu_mem_bytes: int | None = None
    gpu_layers: int | None = None
    first_divergence_token: int | None = None
    cpu_contention: float | None = None
    disturbed: bool | None = None
    display: str | None = None
    created_at: str | None = None
    token_ids: list[int] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredResult:
        """Build from a `results` row (JSON columns as text); every odd value gets its default."""
        get = row.get
        f, i, s = (lambda k: float_or_none(get(k))), (lambda k: int_or_none(get(k))), (lambda k: text_or_none(get(k)))
        disturbed = get("disturbed")
        return cls(
            id=i("id") or 0, run_id=i("run_id") or 0, position=i("position") or 0, label=str(get("label") or ""),
            quant_type=s("quant_type"), file=s("file"), size_bytes=i("size_bytes"), bits_per_weight=f("bits_per_weight"),
            is_reference=bool(get("is_reference")), text=s("text"), stop_reason=s("stop_reason"), error=s("error"),
            fallback=s("fallback"), load_s=f("load_s"), ttft_s=f("ttft_s"), prompt_tokens=i("prompt_tokens"),
            prefill_s=f("prefill_s"), prefill_tok_s=f("prefill_tok_s"), completion_tokens=i("completion_tokens"),
            decode_steps=i("decode_steps"), decode_s=f("decode_s"), decode_tok_s=f("decode_tok_s"),
            peak_rss_bytes=i("peak_rss_bytes"), gpu_mem_bytes=i("gpu_mem_bytes"), gpu_layers=i("gpu_layers"),
            first_divergence_token=i("first_divergence_token"), cpu_contention=f("cpu_contention"),
            disturbed=None if disturbed is None else bool(disturbed), display=s("display"), created_at=s("created_at"),
            token_ids=[t for t in _list(decoded(get("token_ids_json"))) if int_or_none(t) is not None],
            metrics=_dict_or_none(decoded(get("metrics_json"))) or {},
        )

    @property
    def disturbance(self) -> tuple[bool | None, str]:
        """(disturbed?, words) of the speed measurement kept in its metrics; (None, "") when it has none or it is
        malformed (core.disturbance checks each field: the metrics JSON is as the run or an import stored it)."""
        return summarize_disturbance(self.metrics.get("measurement"))

    def to_dict(self) -> dict[str, Any]:
        """The result as a dict (the shape of a live result's `to_dict` columns, `disturbed` as 0/1)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["disturbed"] = None if self.disturbed is None else int(self.disturbed)
        return out


@dataclass(frozen=True)
class StoredRun:
    """A run as stored: what was asked (prompt, settings, ladder), where it ran, and each contestant's result."""

    id: int
    created_at: str
    kind: str
    status: str
    ladder_name: str | None = None
    ladder: dict[str, Any] | None = None
    prompt: str | None = None
    system_prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    category: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    reference_label: str | None = None
    machine: dict[str, Any] | None = None
    workbench_version: str | None = None
    llama_cpp_version: str | None = None
    imported_from: str | None = None
    set_run_id: int | None = None
    set_index: int | None = None
    results: tuple[StoredResult, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any], results: Any = ()) -> StoredRun:
        """Build from a `runs` row and its `results` rows (JSON columns as text); every odd value gets its default."""
        get = row.get
        messages = decoded(get("messages_json"))
        return cls(
            id=int_or_none(get("id")) or 0, created_at=str(get("created_at") or ""),
            kind=str(get("kind") or "compare"), status=str(get("status") or ""),
            ladder_name=text_or_none(get("ladder_name")), ladder=_dict_or_none(decoded(get("ladder_json"))),
            prompt=text_or_none(get("prompt")), system_prompt=text_or_none(get("system_prompt")),
            messages=[m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else None,
            category=text_or_none(get("category")), settings=_dict_or_none(decoded(get("settings_json"))) or {},
            reference_label=text_or_none(get("reference_label")), machine=_dict_or_none(decoded(get("machine_json"))),
            workbench_version=text_or_none(get("workbench_version")),
            llama_cpp_version=text_or_none(get("llama_cpp_version")), imported_from=text_or_none(get("imported_from")),
            set_run_id=int_or_none(get("set_run_id")), set_index=int_or_none(get("set_index")),
            results=tuple(StoredResult.from_row(r) for r in results),
        )

    def result(self, label: str) -> StoredResult | None:
        """The result of the contestant `label`, or None."""
        return next((r for r in self.results if r.label == label), None)

    def to_dict(self) -> dict[str, Any]:
        """The run as a dict, its results as `StoredResult.to_dict` gives them."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["results"] = [r.to_dict() for r in self.results]
        return out


@dataclass(frozen=True)
class RunSummary:
    """A line of a list of runs (`list_runs`): what a picker shows."""

    id: int
    created_at: str
    kind: str
    status: str
    ladder_name: str | None
    prompt: str | None
    reference_label: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunSummary:
        return cls(int_or_none(row.get("id")) or 0, str(row.get("created_at") or ""), str(row.get("kind") or ""),
                   str(row.get("status") or ""), text_or_none(row.get("ladder_name")), text_or_none(row.get("prompt")),
                   text_or_none(row.get("reference_label")))


@dataclass(frozen=True)
class FoundRun:
    """A run found in the history (`search_runs`), with how many outputs, ratings and votes it has."""

    id: int
    created_at: str
    kind: str
    status: str
    ladder_name: str | None
    prompt: str | None
    category: str | None
    reference_label: str | None
    n_results: int
    n_ratings: int
    n_votes: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FoundRun:
        return cls(int_or_none(row.get("id")) or 0, str(row.get("created_at") or ""), str(row.get("kind") or ""),
                   str(row.get("status") or ""), text_or_none(row.get("ladder_name")), text_or_none(row.get("prompt")),
                   text_or_none(row.get("category")), text_or_none(row.get("reference_label")),
                   int(row.get("n_results") or 0), int(row.get("n_ratings") or 0), int(row.get("n_votes") or 0))

    def to_dict(self) -> dict[str, Any]:
        """The row as `search_runs` gave it before, keys in the same order (the CLI's `history --json`)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class SetRunSummary:
    """A line of a list of set runs (`list_set_runs`): what a picker shows, with how many prompts have finished."""

    id: int
    created_at: str
    name: str
    status: str
    ladder_name: str | None
    reference_label: str | None
    n_prompts: int
    n_finished: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SetRunSummary:
        return cls(int_or_none(row.get("id")) or 0, str(row.get("created_at") or ""), str(row.get("name") or ""),
                   str(row.get("status") or ""), text_or_none(row.get("ladder_name")),
                   text_or_none(row.get("reference_label")), int_or_none(row.get("n_prompts")) or 0,
                   int_or_none(row.get("n_finished")) or 0)


@dataclass(frozen=True)
class SetRunChild:
    """The run of one prompt of a set run: its newest run, that run's status, and how many runs it took."""

    index: int
    run_id: int
    status: str | None
    attempts: int


@dataclass(frozen=True)
class StoredSetRun:
    """A set run as stored: the prompts and contestants asked for, and the run of each prompt that has one."""

    id: int
    created_at: str
    name: str
    status: str
    ladder_name: str | None = None
    ladder: dict[str, Any] | None = None
    prompts: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    reference_label: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    noise_repeats: int = 0
    workbench_version: str | None = None
    imported_from: str | None = None
    children: tuple[SetRunChild, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any], children: Any = ()) -> StoredSetRun:
        """Build from a `set_runs` row (JSON columns as text); every odd value gets its default."""
        get = row.get
        prompts = _list(decoded(get("prompts_json")))
        return cls(
            id=int_or_none(get("id")) or 0, created_at=str(get("created_at") or ""), name=str(get("name") or ""),
            status=str(get("status") or ""), ladder_name=text_or_none(get("ladder_name")),
            ladder=_dict_or_none(decoded(get("ladder_json"))),
            prompts=prompts if all(isinstance(p, dict) for p in prompts) else [],  # indexes must stay as stored
            labels=[label for label in _list(decoded(get("labels_json"))) if isinstance(label, str)],
            reference_label=text_or_none(get("reference_label")),
            settings=_dict_or_none(decoded(get("settings_json"))) or {},
            noise_repeats=int_or_none(get("noise_repeats")) or 0,
            workbench_version=text_or_none(get("workbench_version")), imported_from=text_or_none(get("imported_from")),
            children=tuple(children),
        )

    def child(self, index: int) -> SetRunChild | None:
        """The run of prompt `index`, or None when it has none yet."""
        return next((c for c in self.children if c.index == index), None)
