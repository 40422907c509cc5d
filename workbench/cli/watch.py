"""`workbench watch`: check watched API providers (for cron, a systemd timer or CI), and add, list or remove them.

`workbench watch` checks every provider that is due (its own schedule, or `--every` for all), `--once` every
provider now. Exit codes: 1 when a provider's closest match changed (or its pass rate dropped) beyond the
measurement's noise in this run's check, 0 otherwise (a failed check says why on stderr but is no change),
2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from workbench.cli.main import UsageError, command, fmt_num, print_table
from workbench.files import json_fields as jf


def _watch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--every", default=None, help="check providers whose last check is older than this (e.g. 6h), "
                   "whatever their own schedule")
    p.add_argument("--once", action="store_true", help="check every watched provider now, due or not")
    p.add_argument("--json", action="store_true")
    sub = p.add_subparsers(dest="watch_action")
    add = sub.add_parser("add", help="watch a new provider", description="Watch an OpenAI-compatible or llama.cpp "
                         "endpoint: each check compares it with a local ladder of the same model.")
    add.add_argument("--name", required=True)
    add.add_argument("--endpoint", required=True, help="base URL, e.g. https://api.example.com/v1")
    add.add_argument("--model", default="", help="model name the endpoint expects")
    add.add_argument("--api", choices=("openai", "llamacpp"), default="openai")
    add.add_argument("--key-env", default=None, help="NAME of the environment variable holding the API key")
    src = add.add_mutually_exclusive_group(required=True)
    src.add_argument("--ladder", default=None, help="ladder directory (holding ladder.json) of the same model")
    src.add_argument("--demo", action="store_true", help="compare with the embedded SmolLM2 demo ladder")
    probe = add.add_mutually_exclusive_group()
    probe.add_argument("--pack", default=None, help="quality probe: a task pack (bundled name, e.g. starter, or a file)")
    probe.add_argument("--prompt-set", default=None, help="quality probe: a prompt set (bundled name or a file); a "
                       "prompt passes when the endpoint says what the local reference says")
    add.add_argument("--cases", type=int, default=None, help="how many cases or prompts a check runs (default all)")
    add.add_argument("--prompts", type=int, default=8, help="fingerprint reference prompts per check (1-8)")
    add.add_argument("--max-tokens", type=int, default=48, help="tokens per fingerprint answer")
    add.add_argument("--timeout", type=float, default=60.0, help="seconds of silence tolerated from the endpoint")
    add.add_argument("--every", dest="add_every", default=None, help="schedule, e.g. 6h (default: manual checks only)")
    add.add_argument("--webhook-env", default=None, help="NAME of the environment variable holding a webhook URL")
    add.add_argument("--extra", default=None, help='JSON object of server-specific request fields, e.g. '
                     '\'{"repeat_penalty": 1.0}\'')
    add.add_argument("--json", action="store_true")
    ls = sub.add_parser("list", help="list watched providers")
    ls.add_argument("--json", action="store_true")
    rm = sub.add_parser("remove", help="stop watching a provider and forget its checks")
    rm.add_argument("provider", help="the provider's id or name")


def _store() -> Any:
    from workbench.storage.store import Store

    return Store()


def _find(store: Any, ref: str) -> Any:
    from workbench.watch.providers import get_provider

    p = get_provider(store, int(ref)) if ref.isdigit() else store.watched_provider_named(ref)
    if p is None:
        raise UsageError(f"no watched provider {ref!r}; see `workbench watch list`")
    return p


def _provider_json(p: Any) -> dict[str, Any]:
    from workbench.watch.providers import tokens_per_check

    # "provider", not `name`: in the shared vocabulary `name` is a file's name
    return {"id": p.id, "provider": p.name, jf.ENDPOINT: {"base_url": p.base_url, "model": p.model, "api": p.api,
                                                           "api_key_env": p.key_env, "extra_body": p.extra_body},
            "ladder": p.ladder, "probe": p.probe.to_dict(), "fingerprint_prompts": p.fingerprint_prompts,
            "max_tokens": p.max_tokens, "timeout_s": p.timeout_s, "every_s": p.every_s, "webhook_env": p.webhook_env,
            "created_at": p.created_at, "tokens_per_check_estimate": tokens_per_check(p)}


def _add(args: argparse.Namespace) -> int:
    from workbench.watch.providers import DEMO, ProbeSpec, add_provider, parse_every, tokens_per_check

    extra: Any = {}
    if args.extra:
        try:
            extra = json.loads(args.extra)
        except ValueError as exc:
            raise UsageError(f"--extra is not valid JSON: {exc}") from None
    try:
        probe = (ProbeSpec("pack", args.pack, args.cases) if args.pack else
                 ProbeSpec("prompt_set", args.prompt_set, args.cases) if args.prompt_set else ProbeSpec())
        if args.cases is not None and args.cases < 1:
            raise ValueError("--cases must be at least 1")
        p = add_provider(_store(), name=args.name, base_url=args.endpoint, model=args.model, api=args.api,
                         key_env=args.key_env, extra_body=extra, ladder=DEMO if args.demo else args.ladder, probe=probe,
                         fingerprint_prompts=args.prompts, max_tokens=args.max_tokens, timeout_s=args.timeout,
                         every_s=parse_every(args.add_every) if args.add_every else None, webhook_env=args.webhook_env)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(_provider_json(p), indent=2, ensure_ascii=False))
    else:
        print(f"Watching {p.name} (#{p.id}) at {p.base_url}; a check sends and asks for at most about "
              f"{tokens_per_check(p)} tokens (an estimate; each check stores what the endpoint reported).")
    return 0


def _list(args: argparse.Namespace) -> int:
    from workbench.watch.change import assess
    from workbench.watch.checks import checks_of

    store = _store()
    providers = store.watched_providers()
    if args.json:
        print(json.dumps([_provider_json(p) for p in providers], indent=2, ensure_ascii=False))
        return 0
    if not providers:
        print("No watched providers yet: add one with `workbench watch add`.")
        return 0
    rows = []
    for p in providers:
        checks = checks_of(store, p.id)
        rows.append([p.id, p.name, p.base_url, p.model or "-", p.ladder, p.probe.kind if p.probe.kind == "none"
                     else f"{p.probe.kind.replace('_', ' ')} {p.probe.name}", "manual" if p.every_s is None else f"{p.every_s / 3600:g} h",
                     len(checks)])
    print_table(["id", "name", "endpoint", "model", "ladder", "probe", "every", "checks"], rows)
    for p in providers:
        print(f"{p.name}: {assess(checks_of(store, p.id), p.name).sentence}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from workbench.watch.providers import remove_provider

    store = _store()
    p = _find(store, args.provider)
    remove_provider(store, p.id)
    print(f"Stopped watching {p.name} (#{p.id}); its checks are forgotten.")
    return 0


def _check(args: argparse.Namespace) -> int:
    from workbench.engine.pool import WorkerPool
    from workbench.watch.providers import parse_every
    from workbench.watch.schedule import due, run_due

    try:
        every = parse_every(args.every) if args.every else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    store = _store()
    providers = store.watched_providers() if args.once else due(store, every_s=every)
    if not store.watched_providers():
        raise UsageError("no watched providers; add one with `workbench watch add`")
    say = (lambda p, d, t, m: None) if args.json else (
        lambda p, d, t, m: print(f"{p.name}: [{d}/{t}] {m}", file=sys.stderr, flush=True))
    pool = WorkerPool()
    try:
        outcomes = run_due(pool, store, providers, on_progress=say)
    finally:
        pool.shutdown()
    for o in outcomes:
        if not o.check.ok:
            print(f"{o.provider.name}: check {o.check.status}: {o.check.reason}", file=sys.stderr)
        if o.notify_error:
            print(f"{o.provider.name}: notification not sent: {o.notify_error}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"provider": _provider_json(o.provider), "check": o.check.to_dict(),
                           "assessment": asdict(o.assessment), "changed": o.changed_now, "notified": o.notified}
                          for o in outcomes], indent=2, ensure_ascii=False))
    elif not outcomes:
        print("No provider is due for a check (use --once to check them all now).")
    else:
        print_table(["provider", "status", "closest", "confidence", "pass rate", "latency s (client)",
                     "tok/s (client)", "tokens"],
                    [[o.provider.name, o.check.status, o.check.closest or "-", fmt_num(o.check.confidence, 2),
                      "-" if o.check.pass_rate is None else f"{o.check.pass_rate:.0%}", fmt_num(o.check.latency_s, 2),
                      fmt_num(o.check.tok_s, 1), o.check.tokens_sent if o.check.tokens_sent is not None else "-"]
                     for o in outcomes])
        for o in outcomes:
            print(("CHANGED: " if o.changed_now else "") + o.assessment.sentence)
    return 1 if any(o.changed_now for o in outcomes) else 0


@command("watch", help="check watched API providers for a silent model or quantization switch; add, list, remove",
         arguments=_watch_arguments,
         description="Check every due watched provider (or, with --once, every one): fingerprint it against its "
                     "local ladder, run its quality probe, store the check, and post to its webhook on a change. "
                     "Exit 1 when a provider changed beyond noise, 0 otherwise, 2 on usage errors.")
def cmd_watch(args: argparse.Namespace) -> int:
    action = getattr(args, "watch_action", None)
    if action == "add":
        return _add(args)
    if action == "list":
        return _list(args)
    if action == "remove":
        return _remove(args)
    return _check(args)
