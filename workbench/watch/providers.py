"""Watched providers: the endpoints a user keeps an eye on, what each is compared with and what a check costs.

A provider is stored without its secrets: `key_env` and `webhook_env` are the NAMES of environment variables, and
a key typed into a session reaches `endpoint_of` as an argument and nothing else. Everything a user types is
checked here (`add_provider`/`update_provider` raise ValueError with one plain line), so the page and the CLI say
the same thing about the same mistake.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from workbench.models import ladder as ladders
from workbench.quality.evals import DEFAULT_MAX_TOKENS as PACK_MAX_TOKENS
from workbench.quality.evals import select_cases
from workbench.quality.packs import Case, Pack, list_packs, load_pack
from workbench.runs.contestants import APIS, RemoteEndpoint, RunSettings
from workbench.runs.fingerprint import REFERENCE_PROMPTS
from workbench.runs.prompt_sets import SetPrompt
from workbench.storage.store import Store
from workbench.storage.watch_queries import PROVIDER_FIELDS
from workbench.storage.watch_rows import PROBE_KINDS, ProbeSpec, WatchedProvider
from workbench.watch.prompt_probe import PROBE_MAX_TOKENS, find_prompt_set

__all__ = [
    "DEMO", "ProbeSpec", "estimate_tokens", "WatchedProvider", "add_provider", "endpoint_of", "find_pack", "get_provider", "ladder_of",
    "list_providers", "parse_every", "probe_cases", "probe_prompts", "remove_provider", "tokens_per_check", "update_provider",
]

DEMO = "demo"  # the `ladder` of a provider compared with the embedded demo ladder
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MIN_EVERY_S = 60.0  # a schedule faster than a minute would be a load test, not a watch
BYTES_PER_TOKEN = 4  # tokens_per_check's estimate of a prompt (a rule of thumb for English BPE vocabularies)
TEMPLATE_TOKENS = 12  # and of the chat template's own tokens around one message


def parse_every(text: str) -> float:
    """"6h", "30m", "1d", "90s" or plain seconds as seconds; ValueError with a plain line otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise ValueError(f"cannot read the interval {text!r}: use a number with s, m, h or d, e.g. 6h")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if seconds < MIN_EVERY_S:
        raise ValueError(f"an interval of {text!r} is too short: checks cost tokens; use at least 1m")
    return seconds


def find_pack(name: str) -> Path:
    """The task pack a probe names: a file path, or a bundled pack by file stem or pack name (any case)."""
    path = Path(name).expanduser()
    if path.suffix.lower() in (".toml", ".csv") and path.is_file():
        return path
    wanted = name.strip().lower()
    for p in list_packs():
        if p.stem.lower() == wanted:
            return p
    for p in list_packs():
        try:
            if load_pack(p).name.lower() == wanted:
                return p
        except ValueError:
            continue
    known = ", ".join(p.stem for p in list_packs()) or "none"
    raise ValueError(f"no task pack named {name!r} (bundled: {known}; or give a .toml/.csv file)")


def probe_cases(probe: ProbeSpec) -> tuple[Pack, list[Case]] | None:
    """The pack and the cases a "pack" probe runs (round-robin over categories when limited); None otherwise."""
    if probe.kind != "pack":
        return None
    pack = load_pack(find_pack(probe.name))
    return pack, select_cases(pack, None, probe.cases)


def probe_prompts(probe: ProbeSpec) -> list[SetPrompt] | None:
    """The prompts a "prompt_set" probe runs (the set's first `cases`); None for other probes."""
    if probe.kind != "prompt_set":
        return None
    prompts = find_prompt_set(probe.name).prompts
    return list(prompts[: probe.cases] if probe.cases else prompts)


def _vetted(values: dict[str, Any]) -> dict[str, Any]:
    """Check what a user typed; raise ValueError with one plain line for the first mistake."""
    out = dict(values)
    if "name" in out:
        out["name"] = str(out["name"] or "").strip()
        if not out["name"]:
            raise ValueError("give the provider a name")
    if "api" in out and out["api"] not in APIS:
        raise ValueError(f"unknown API {out['api']!r}; choose {' or '.join(APIS)}")
    for env in ("key_env", "webhook_env"):
        if out.get(env) is not None:
            out[env] = str(out[env]).strip() or None
            if out[env] and not ENV_NAME.match(out[env]):
                raise ValueError(f"{env.replace('_', ' ')} must be the NAME of an environment variable (letters, "
                                 f"digits, _), not a key or URL; got something else")
    if "base_url" in out:  # RemoteEndpoint refuses a URL with a credential in it and says so
        out["base_url"] = RemoteEndpoint(str(out["base_url"] or ""), api=out.get("api", "openai")).base_url
    if "ladder" in out:
        out["ladder"] = str(out["ladder"] or "").strip() or DEMO
        if out["ladder"] != DEMO:
            if not (Path(out["ladder"]).expanduser() / ladders.LADDER_FILE).is_file():
                raise ValueError(f"{out['ladder']} holds no {ladders.LADDER_FILE}; build a ladder first, or use the demo")
            out["ladder"] = str(Path(out["ladder"]).expanduser().resolve())  # a scheduled run starts elsewhere
    if "probe" in out:
        probe = out["probe"] if isinstance(out["probe"], ProbeSpec) else ProbeSpec.from_dict(out["probe"])
        if probe.kind not in PROBE_KINDS:
            raise ValueError(f"unknown probe {probe.kind!r}")
        if probe.kind == "pack":
            find_pack(probe.name)
        elif probe.kind == "prompt_set":
            find_prompt_set(probe.name)
        out["probe"] = probe
    for key, low in (("fingerprint_prompts", 1), ("max_tokens", 1)):
        if key in out and (not isinstance(out[key], int) or out[key] < low):
            raise ValueError(f"{key.replace('_', ' ')} must be a whole number of at least {low}")
    if "fingerprint_prompts" in out and out["fingerprint_prompts"] > len(REFERENCE_PROMPTS):
        raise ValueError(f"the fingerprint has {len(REFERENCE_PROMPTS)} reference prompts; ask for at most that many")
    if "timeout_s" in out and not (isinstance(out["timeout_s"], (int, float)) and out["timeout_s"] > 0):
        raise ValueError("the timeout must be a positive number of seconds")
    if out.get("every_s") is not None and float(out["every_s"]) < MIN_EVERY_S:
        raise ValueError("checks cost tokens: schedule them at most once a minute")
    if "extra_body" in out and not isinstance(out["extra_body"] or {}, dict):
        raise ValueError("extra request fields must be a JSON object")
    return out


def add_provider(store: Store, *, name: str, base_url: str, model: str = "", api: str = "openai",
                 key_env: str | None = None, extra_body: dict[str, Any] | None = None, ladder: str = DEMO,
                 probe: ProbeSpec | None = None, fingerprint_prompts: int = 8, max_tokens: int = 48,
                 timeout_s: float = 60.0, every_s: float | None = None, webhook_env: str | None = None) -> WatchedProvider:
    """Watch a new endpoint; ValueError with one plain line for a mistake (a name already used included)."""
    values = _vetted(dict(name=name, base_url=base_url, model=model, api=api, key_env=key_env,
                          extra_body=extra_body or {}, ladder=ladder, probe=probe or ProbeSpec(),
                          fingerprint_prompts=fingerprint_prompts, max_tokens=max_tokens, timeout_s=timeout_s,
                          every_s=every_s, webhook_env=webhook_env))
    if store.watched_provider_named(values["name"]) is not None:
        raise ValueError(f"a provider named {values['name']!r} is already watched; choose another name")
    provider = store.watched_provider(store.add_watched_provider(**values))
    assert provider is not None
    return provider


def update_provider(store: Store, provider_id: int, **changes: Any) -> WatchedProvider:
    """Change some of a provider's settings (names as in WatchedProvider); its checks are kept."""
    unknown = [k for k in changes if k not in PROVIDER_FIELDS]
    if unknown:
        raise ValueError(f"a watched provider has no setting {', '.join(unknown)}")
    if get_provider(store, provider_id) is None:
        raise ValueError(f"no watched provider #{provider_id}")
    values = _vetted(changes)
    if "name" in values:
        other = store.watched_provider_named(values["name"])
        if other is not None and other.id != provider_id:
            raise ValueError(f"a provider named {values['name']!r} is already watched; choose another name")
    store.update_watched_provider(provider_id, **values)
    provider = store.watched_provider(provider_id)
    assert provider is not None
    return provider


def remove_provider(store: Store, provider_id: int) -> bool:
    """Stop watching a provider and forget its checks; False when there was none."""
    return store.delete_watched_provider(provider_id)


def list_providers(store: Store) -> list[WatchedProvider]:
    return store.watched_providers()


def get_provider(store: Store, provider_id: int) -> WatchedProvider | None:
    return store.watched_provider(provider_id)


def endpoint_of(provider: WatchedProvider, key: str | None = None) -> RemoteEndpoint:
    """The provider as a RemoteEndpoint; the API key is `key` (typed into a session) or the named variable's value,
    held in memory only."""
    return RemoteEndpoint(provider.base_url, model=provider.model, label=provider.name, api=provider.api,
                          api_key_env=provider.key_env, api_key=key or None, read_timeout_s=provider.timeout_s,
                          extra_body=dict(provider.extra_body))


def ladder_of(provider: WatchedProvider, progress: Any = lambda msg: None) -> ladders.Ladder:
    """The local ladder the provider is compared with (the demo ladder is built once if it is missing)."""
    return ladders.ensure_demo_ladder(progress) if provider.ladder == DEMO else ladders.load_ladder(provider.ladder)


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A prompt's tokens, estimated without a tokenizer: about one per 4 bytes, plus the chat template's own."""
    return sum(len(m["content"].encode("utf-8")) // BYTES_PER_TOKEN + TEMPLATE_TOKENS for m in messages)


def tokens_per_check(provider: WatchedProvider) -> int:
    """An upper estimate of the tokens one check sends and asks for: every request's prompt (about one token per
    4 bytes, plus the chat template) and its full max_tokens of answer. Checks store what the endpoint actually
    reported (`ProviderCheck.tokens_sent`), usually less: answers end before their limit.
    """
    settings = RunSettings()
    total = sum(estimate_tokens(settings.messages(p)) + provider.max_tokens
                for p in REFERENCE_PROMPTS[: provider.fingerprint_prompts])
    probe = probe_cases(provider.probe)
    if probe is not None:
        for case in probe[1]:
            s = replace(settings, system_prompt=case.system or "")
            total += estimate_tokens(s.messages(case.prompt)) + (case.max_tokens or PACK_MAX_TOKENS)
    for prompt in probe_prompts(provider.probe) or []:
        s = replace(settings, system_prompt=prompt.system or "")
        total += estimate_tokens(s.messages(prompt.prompt)) + PROBE_MAX_TOKENS
    return total
