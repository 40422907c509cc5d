"""What takes part in a comparison and how: contestants (a local GGUF or a remote endpoint) and the run settings.

Plain data shared by `compare` (which runs local contestants) and `remote` (which talks to endpoints), kept
apart from both so neither has to import the other to name them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from workbench.core import hardware
from workbench.core.registry import Registry
from workbench.engine import access
from workbench.engine.access import OFFLOAD_MODES, Placement
from workbench.engine.metrics import ContestantResult
from workbench.models.ladder import LadderFile
from workbench.runs.variants import KV_TYPES, MAX_CTX, MIN_CTX, Variant
from workbench.storage.rows import StoredResult

if TYPE_CHECKING:
    from workbench.engine.pool import WorkerPool

# What a page did while the figures were taken (stored with each result's measurement): "none" (no page,
# e.g. the CLI), "streamed" (live text, one column, at a bounded rate), "held" (statuses only, text at the end).
DISPLAY_MODES = ("none", "streamed", "held")
API_OPENAI = "openai"
API_LLAMACPP = "llamacpp"
APIS = (API_OPENAI, API_LLAMACPP)
MAX_TIMING_REPEATS = 10  # decode windows timed per local contestant, at most (runs.timing)
# query-string parameter names that carry a credential, compared lower-case without "-" and "_": a URL holding one
# is refused, because a URL is stored, shown and exported and a key must never be (README, remote endpoints)
CREDENTIAL_WORDS = ("apikey", "token", "secret", "password", "passwd", "credential", "signature", "bearer",
                    "authorization")  # anywhere in the name: x-api-key, access_token, client_secret …
CREDENTIAL_NAMES = ("key", "sig", "pwd", "auth", "pass", "session", "sessionid")  # the whole name (a SAS sig=…)
KEY_HINT = ("pass the key through an environment variable instead: key_env=VAR in --endpoint, --key-env VAR for "
            "fingerprint, or the API key field on the Compare page")


def credential_in_url(url: str) -> str | None:
    """Why `url` holds a credential (user:password@, or a query/fragment parameter named like a key), else None.
    The reason names the parameter, never its value."""
    parts = urlsplit(url.strip())
    if "@" in parts.netloc:
        return "a user name or password before the host (user:pass@host)"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True) + parse_qsl(parts.fragment, keep_blank_values=True):
        plain = name.lower().replace("-", "").replace("_", "")
        if plain in CREDENTIAL_NAMES or plain.endswith("key") or any(w in plain for w in CREDENTIAL_WORDS):
            return f"the parameter {name[:40]!r} after its '?' or '#'"
    return None


def safe_url(url: str) -> str:
    """`url` to repeat in a message: without its query string, fragment and anything before an '@'."""
    text = url.strip().split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = text.rpartition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}"


@dataclass
class RemoteEndpoint:
    """Where a remote model lives and how to talk to it. The API key is kept in memory only."""

    base_url: str
    model: str = ""
    label: str = ""
    api: str = API_OPENAI
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False, compare=False)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0  # longest silence tolerated while waiting for the next bytes
    extra_body: dict[str, Any] = field(default_factory=dict)  # server-specific fields, e.g. {"repeat_penalty": 1.0}

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ValueError(f"unknown API {self.api!r}; choose {' or '.join(APIS)}")
        # refused rather than kept and redacted: a URL is stored, printed and exported in many places
        why = credential_in_url(self.base_url)
        if why:
            raise ValueError(f"the endpoint URL holds a credential ({why}); it is refused so the key is never stored "
                             f"or shown: {KEY_HINT}")
        parts = urlsplit(self.base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint URL must look like http://host:port (got {safe_url(self.base_url)!r})")
        try:
            _ = parts.port  # urlsplit checks the port only when asked
        except ValueError:
            raise ValueError(f"endpoint URL has a bad port: {safe_url(self.base_url)!r}") from None
        self.base_url = self.base_url.strip().rstrip("/")
        if self.api_key_env:
            from workbench.engine.pool import keep_from_workers

            keep_from_workers(self.api_key_env)  # workers start without it, whatever its name
        if not self.label:
            self.label = f"{self.model or parts.hostname} @ {parts.netloc}"

    @property
    def display_url(self) -> str:
        """The URL without query string, safe to show and store."""
        p = urlsplit(self.base_url)
        return f"{p.scheme}://{p.netloc}{p.path}"

    def resolved_key(self) -> str | None:
        """The API key: the in-memory one, else the named environment variable's value."""
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None

    def to_dict(self) -> dict[str, Any]:
        """A description safe for logs, the database and reports: never the key itself."""
        return {"base_url": self.display_url, "model": self.model, "label": self.label, "api": self.api,
                "api_key_env": self.api_key_env, "has_api_key": self.resolved_key() is not None,
                "connect_timeout_s": self.connect_timeout_s, "read_timeout_s": self.read_timeout_s,
                "extra_body": dict(self.extra_body)}

    @classmethod
    def from_spec(cls, spec: str) -> RemoteEndpoint:
        """Parse a CLI spec: `URL[,model=NAME][,label=TEXT][,api=openai|llamacpp][,key_env=VAR]`.

        `url=` may also be given as a key. Raises ValueError with a plain message.
        """
        fields: dict[str, str] = {}
        for i, part in enumerate(p.strip() for p in spec.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if i == 0 and (not sep or "://" in key):
                fields["url"] = part
                continue
            if not sep:
                raise ValueError(f"endpoint spec part {part!r} is not key=value")
            fields[key.strip().lower()] = value.strip()
        known = {"url", "model", "label", "api", "key_env", "timeout"}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown endpoint field(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(known))}")
        if "url" not in fields:
            raise ValueError("endpoint spec needs a URL")
        kwargs: dict[str, Any] = {"base_url": fields["url"], "model": fields.get("model", ""),
                                  "label": fields.get("label", ""), "api": fields.get("api", API_OPENAI),
                                  "api_key_env": fields.get("key_env") or None}
        if "timeout" in fields:
            try:
                kwargs["read_timeout_s"] = float(fields["timeout"])
            except ValueError:
                raise ValueError(f"timeout must be seconds, got {fields['timeout']!r}") from None
        return cls(**kwargs)


@dataclass
class RunSettings:
    """Generation and load settings shared by every contestant of a comparison."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    n_ctx: int = 2048
    n_threads: int = field(default_factory=hardware.default_threads)
    n_gpu_layers: int = 0
    system_prompt: str = ""
    gpu_offload: str = "auto"
    remote_concurrent: bool = False  # remote endpoints may run at the same time as each other
    display: str = "none"  # one of DISPLAY_MODES: recorded with each result, changes nothing in the worker
    timing_repeats: int = 1  # decode windows timed per local contestant, the streamed answer first (runs.timing)
    # A set run's variants (runs.variants): each of `file_labels` also runs as these, and as itself unless
    # `variant_baseline` is False. Stored with the set run only when there are variants; each prompt's own run
    # gets the expanded contestants and the settings `without_variants`.
    variants: tuple[Variant, ...] = ()
    variant_baseline: bool = True
    file_labels: tuple[str, ...] = ()

    def messages(self, prompt: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt.strip() else []
        return msgs + [{"role": "user", "content": prompt}]

    def validate(self, contestants: Sequence[Contestant] = ()) -> None:
        """Raise ValueError with a plain message for settings llama.cpp would reject or misuse; with `contestants`,
        also for each variant that sets its own context (a variant's context too small for max tokens)."""
        for c in contestants:
            if c.n_ctx and c.n_ctx != self.n_ctx:
                try:
                    self.for_contestant(c).validate()
                except ValueError as exc:
                    raise ValueError(f"{c.label}: {exc}") from None
        if self.max_tokens < 1:
            raise ValueError("max tokens must be at least 1")
        if self.n_ctx < 64:
            raise ValueError("context size must be at least 64 tokens")
        if self.max_tokens >= self.n_ctx:
            raise ValueError(f"max tokens ({self.max_tokens}) must be smaller than the context size ({self.n_ctx})")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError("temperature must be a finite number of 0 or more")
        if not 0 < self.top_p <= 1:
            raise ValueError("top-p must be in (0, 1]")
        if self.n_threads < 1:
            raise ValueError("threads must be at least 1")
        if self.gpu_offload not in OFFLOAD_MODES:
            raise ValueError(f"GPU offload must be one of {', '.join(OFFLOAD_MODES)}")
        if isinstance(self.timing_repeats, bool) or not isinstance(self.timing_repeats, int) or not 1 <= self.timing_repeats <= MAX_TIMING_REPEATS:
            raise ValueError(f"timing repeats must be a whole number from 1 to {MAX_TIMING_REPEATS}")
        if self.display not in DISPLAY_MODES:
            raise ValueError(f"display must be one of {', '.join(DISPLAY_MODES)}")

    def placement(self) -> Placement:
        """How these settings load a file: what engine.access needs to lease a worker."""
        return Placement(self.n_ctx, self.n_threads, self.gpu_offload, self.n_gpu_layers)

    def placement_for(self, contestant: Contestant) -> Placement:
        """How these settings load `contestant`: its variant's KV-cache types and context over the run's."""
        return replace(self.placement(), n_ctx=contestant.n_ctx or self.n_ctx, type_k=contestant.kv_type_k,
                       type_v=contestant.kv_type_v)

    def for_contestant(self, contestant: Contestant) -> RunSettings:
        """These settings with the contestant's context (a variant may set its own)."""
        return self if not contestant.n_ctx or contestant.n_ctx == self.n_ctx else replace(self, n_ctx=contestant.n_ctx)

    def gpu_layers_for(self, path: str, pool: WorkerPool | None = None, gpus: list[hardware.Gpu] | None = None) -> int:
        """Layers to offload for one file under this run's offload mode (engine.access.gpu_layers decides)."""
        return access.gpu_layers(path, self.placement(), pool, gpus)

    def without_variants(self) -> RunSettings:
        """These settings as each contestant runs with them: the variants are already in the contestants."""
        return replace(self, variants=(), variant_baseline=True, file_labels=())

    def to_dict(self) -> dict[str, Any]:
        """As stored: the variant fields only when there are variants (a run without them reads as it always did)."""
        out = asdict(self)
        if self.variants:
            out.update(variants=[asdict(v) for v in self.variants], file_labels=list(self.file_labels))
        else:
            for key in ("variants", "variant_baseline", "file_labels"):
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, **overrides: Any) -> RunSettings:
        """Settings as a stored run recorded them (unknown keys ignored, missing ones defaulted). Stored variants
        that cannot be read raise ValueError."""
        names = set(cls.__dataclass_fields__)
        kept = {k: v for k, v in (data or {}).items() if k in names}
        try:
            if "variants" in kept:
                kept["variants"] = tuple(Variant(**v) for v in kept["variants"] or ())
            if "file_labels" in kept:
                kept["file_labels"] = tuple(str(label) for label in kept["file_labels"] or ())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"its stored variants cannot be read ({exc})") from None
        if "variant_baseline" in kept:
            kept["variant_baseline"] = bool(kept["variant_baseline"])
        return cls(**{**kept, **overrides})


@dataclass(frozen=True)
class ContestantKind:
    """What one kind of contestant is and can do. A local file and a remote endpoint differ in a dozen places
    (generating, timing, scoring, batching, variants, the noise floor, how a result describes it): each of them
    asks the contestant's kind (`Contestant.kind`) instead of testing which kind it is."""

    name: str
    # a GGUF on this machine, loaded into a worker (engine.access): its path must be a file, it has a KV cache,
    # and its timings compete for this machine's cores, so it runs alone; else it answers from elsewhere
    loads_file: bool
    takes_variants: bool  # loaded with KV-cache types and a context of its own (runs.variants)
    can_batch: bool  # answers many prompts in one batch (runs.batched)
    cannot_score: str | None  # why it cannot be teacher-forced (quality.divergence); None: it can
    cannot_vary_greedy: str | None  # why its greedy repeats cannot differ (runs.noise); None: they can
    describe: Callable[[Contestant], dict[str, Any] | None]  # where it answers from, for JSON (None: its file says)


def _endpoint_description(contestant: Contestant) -> dict[str, Any] | None:
    return contestant.endpoint.to_dict() if contestant.endpoint is not None else None


#: The kinds of contestant, by name: each declares its differences once, here.
CONTESTANT_KINDS: Registry[ContestantKind] = Registry("contestant kind")
CONTESTANT_KINDS.add("local", ContestantKind(
    "local", loads_file=True, takes_variants=True, can_batch=True, cannot_score=None, cannot_vary_greedy=None,
    describe=lambda contestant: None))
CONTESTANT_KINDS.add("remote", ContestantKind(
    "remote", loads_file=False, takes_variants=False, can_batch=False,
    cannot_score="a remote endpoint does not return log-probabilities to teacher-force",
    cannot_vary_greedy=("is a remote endpoint: at temperature 0 there is nothing to vary between its repeats; raise "
                        "the temperature to repeat it with other seeds"),
    describe=_endpoint_description))


@dataclass
class Contestant:
    """A local GGUF file, or a remote endpoint (`endpoint` set; remote.py talks to it), taking part in a comparison."""

    label: str
    path: str
    quant_type: str | None = None
    size_bytes: int | None = None
    bits_per_weight: float | None = None
    is_reference: bool = False
    endpoint: RemoteEndpoint | None = None  # None for a local file
    # the variant (runs.variants): KV-cache types and a context of its own (None: the run's)
    kv_type_k: str = "f16"
    kv_type_v: str = "f16"
    n_ctx: int | None = None

    @property
    def kind(self) -> ContestantKind:
        """A remote endpoint when it has one, else a local file: the one place that tells the kinds apart."""
        return CONTESTANT_KINDS.get("remote" if self.endpoint is not None else "local")

    @classmethod
    def from_ladder_file(cls, f: LadderFile, is_reference: bool | None = None) -> Contestant:
        return cls(f.label, f.path, f.quant_type, f.size_bytes, f.bits_per_weight,
                   f.reference if is_reference is None else is_reference)

    @classmethod
    def from_stored(cls, result: StoredResult, run_n_ctx: int | None) -> Contestant:
        """A local contestant again, from one stored result of a run (to measure or re-measure it).

        Reads only the result's label, file, quant_type, size_bytes, bits_per_weight, is_reference, and the
        variant its metrics record (kv_type_k, kv_type_v, n_ctx, written since variants exist): an older result,
        or one at the run's own context (`run_n_ctx`) with the f16 cache, is the plain file."""
        plain = cls(result.label, result.file or "", result.quant_type, result.size_bytes, result.bits_per_weight,
                    result.is_reference)
        metrics = result.metrics
        k, v, n_ctx = metrics.get("kv_type_k"), metrics.get("kv_type_v"), metrics.get("n_ctx")
        k = k if k in KV_TYPES else "f16"
        v = v if v in KV_TYPES else "f16"
        own_ctx = n_ctx if isinstance(n_ctx, int) and n_ctx != run_n_ctx and MIN_CTX <= n_ctx <= MAX_CTX else None
        if k == "f16" and v == "f16" and own_ctx is None:
            return plain
        return replace(plain, kv_type_k=k, kv_type_v=v, n_ctx=own_ctx)

    def blank_result(self) -> ContestantResult:
        return ContestantResult(label=self.label, quant_type=self.quant_type, file=self.path, size_bytes=self.size_bytes,
                                bits_per_weight=self.bits_per_weight, is_reference=self.is_reference,
                                kv_type_k=self.kv_type_k if self.kind.loads_file else None,
                                kv_type_v=self.kv_type_v if self.kind.loads_file else None, n_ctx=self.n_ctx)


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
        if not c.kind.takes_variants or not variants:
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
