"""Provider watch rows as typed values: a watched provider and one check of it, checked once where they are read.

They live in storage (not in workbench.watch, which re-exports them) so the query module can build them with
`from_row` as storage/rows.py's rows are built: every odd stored value gets its documented default, and readers
use attributes without re-checking types. Neither row holds a secret: a provider keeps the NAMES of the
environment variables of its API key and webhook URL, never their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from workbench.storage.rows import decoded, float_or_none, int_or_none, text_or_none

PROBE_KINDS = ("pack", "prompt_set", "none")
CHECK_STATUSES = ("ok", "failed", "cancelled")


@dataclass(frozen=True)
class ProbeSpec:
    """The quality probe of a check: a task pack by name ("pack"), a saved prompt set by id ("prompt_set") or
    nothing ("none"), and how many of its cases or prompts one check runs (None: all)."""

    kind: str = "none"
    name: str = ""  # the pack's name, or the prompt set's id
    cases: int | None = None

    @classmethod
    def from_dict(cls, raw: object) -> ProbeSpec:
        """From stored JSON; anything odd is "none"."""
        if not isinstance(raw, Mapping) or raw.get("kind") not in PROBE_KINDS:
            return cls()
        cases = int_or_none(raw.get("cases"))
        return cls(str(raw["kind"]), text_or_none(raw.get("name")) or "", cases if cases and cases > 0 else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WatchedProvider:
    """An endpoint the user watches: where it is, what it is compared with, what a check runs, and when.

    `key_env` and `webhook_env` are names of environment variables (the key and the webhook URL never reach the
    database); `ladder` is a ladder directory or "demo"; `every_s` is the schedule (None: manual checks only).
    `fingerprint_prompts` and `max_tokens` size the fingerprint; `timeout_s` is the longest silence tolerated.
    """

    id: int
    name: str
    base_url: str
    model: str = ""
    api: str = "openai"
    key_env: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    ladder: str = "demo"
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    fingerprint_prompts: int = 8
    max_tokens: int = 48
    timeout_s: float = 60.0
    every_s: float | None = None
    webhook_env: str | None = None
    created_at: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WatchedProvider:
        """Build from a `watched_providers` row (JSON columns as text); every odd value gets its default."""
        get = row.get
        extra = decoded(get("extra_body_json"))
        every = float_or_none(get("every_s"))
        return cls(
            id=int_or_none(get("id")) or 0, name=str(get("name") or ""), base_url=str(get("base_url") or ""),
            model=text_or_none(get("model")) or "", api=text_or_none(get("api")) or "openai",
            key_env=text_or_none(get("key_env")) or None, extra_body=extra if isinstance(extra, dict) else {},
            ladder=text_or_none(get("ladder")) or "demo", probe=ProbeSpec.from_dict(decoded(get("probe_json"))),
            fingerprint_prompts=max(1, int_or_none(get("fingerprint_prompts")) or 8),
            max_tokens=max(1, int_or_none(get("max_tokens")) or 48),
            timeout_s=float_or_none(get("timeout_s")) or 60.0, every_s=every if every and every > 0 else None,
            webhook_env=text_or_none(get("webhook_env")) or None, created_at=str(get("created_at") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output (no secret is in it)."""
        out = asdict(self)
        out["probe"] = self.probe.to_dict()
        return out


@dataclass(frozen=True)
class ProviderCheck:
    """One check of a watched provider, as stored.

    `status`: "ok", "failed" (`reason` says why in words: rate limit, server error, timeout, refused) or
    "cancelled". A failed check carries no figures (only what it spent, `tokens_sent`): it is never read as a
    quality drop. `closest` is the local
    quantization the endpoint answered most like, `confidence` the share of paired bootstrap resamples in which
    it beat every other file (its weakest pairwise share; None when it was the only file), `confidence_text` the
    fingerprint's own sentence, `runner_up` the next file. `pass_rate`/`passed`/`total`/`pass_low`/`pass_high`:
    the quality probe's pass count with its Wilson 95% interval (None without a probe). `latency_s` (request to
    last byte, mean per request) and `tok_s` (completion tokens per second of a request) are measured client-side,
    network included. `tokens_sent`: prompt plus completion tokens over the whole check, as the endpoint reported
    them; `tokens_note` says how many requests reported none and how those were counted instead.
    `fingerprint`: the FingerprintReport as a dict; `probe`: what the probe ran and found; `run_ids`: runs it stored.
    """

    id: int
    provider_id: int
    started_at: str
    finished_at: str | None = None
    status: str = "failed"
    reason: str | None = None
    closest: str | None = None
    confidence: float | None = None
    confidence_text: str | None = None
    runner_up: str | None = None
    method: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)
    pass_rate: float | None = None
    passed: int | None = None
    total: int | None = None
    pass_low: float | None = None
    pass_high: float | None = None
    latency_s: float | None = None
    tok_s: float | None = None
    tokens_sent: int | None = None
    tokens_note: str | None = None
    run_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ProviderCheck:
        """Build from a `provider_checks` row (JSON columns as text); every odd value gets its default."""
        get = row.get
        f, i, s = (lambda k: float_or_none(get(k))), (lambda k: int_or_none(get(k))), (lambda k: text_or_none(get(k)))
        fp, probe, runs = decoded(get("fingerprint_json")), decoded(get("probe_json")), decoded(get("run_ids_json"))
        status = s("status")
        return cls(
            id=i("id") or 0, provider_id=i("provider_id") or 0, started_at=str(get("started_at") or ""),
            finished_at=s("finished_at"), status=status if status in CHECK_STATUSES else "failed", reason=s("reason"),
            closest=s("closest"), confidence=f("confidence"), confidence_text=s("confidence_text"),
            runner_up=s("runner_up"), method=s("method"), fingerprint=fp if isinstance(fp, dict) else {},
            probe=probe if isinstance(probe, dict) else {}, pass_rate=f("pass_rate"), passed=i("passed"),
            total=i("total"), pass_low=f("pass_low"), pass_high=f("pass_high"), latency_s=f("latency_s"),
            tok_s=f("tok_s"), tokens_sent=i("tokens_sent"), tokens_note=s("tokens_note"),
            run_ids=[r for r in (runs if isinstance(runs, list) else []) if int_or_none(r) is not None],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
