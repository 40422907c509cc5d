"""`workbench fingerprint`: which local quantization does a remote endpoint behave like?

Exit codes: 0 when the closest match is the same as in the endpoint's previous fingerprint (or
this is the first), 1 when it changed or the run failed (one line on stderr), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.cli.main import UsageError, command, fmt_num, print_table, settings_from_args
from workbench.models import ladder as ladders


def _fingerprint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:8080 (or …/v1)")
    p.add_argument("--model", default="", help="model name the endpoint expects")
    p.add_argument("--api", choices=("openai", "llamacpp"), default="openai",
                   help="openai: /v1/chat/completions (default); llamacpp: llama.cpp's native /completion")
    p.add_argument("--key-env", default=None, help="environment variable holding the API key (never pass the key itself)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ladder", default=None, help="ladder directory (holding ladder.json) of the same model")
    src.add_argument("--demo", action="store_true", help="use the embedded SmolLM2 demo ladder")
    p.add_argument("--types", default=None, help="comma-separated ladder labels to compare (default: all)")
    p.add_argument("--prompts", default=None, help="file with one reference prompt per line (default: 8 built-in)")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--extra", default=None,
                   help='JSON object of server-specific request fields, e.g. \'{"repeat_penalty": 1.0}\'')
    p.add_argument("--timeout", type=float, default=120.0, help="seconds of silence tolerated from the endpoint")
    p.add_argument("--threads", type=int, default=None, help="threads for the local files (default: physical cores)")
    p.add_argument("--ctx", type=int, default=2048, help="context size for the local files")
    p.add_argument("--json", action="store_true")


def _endpoint(args: argparse.Namespace):
    from workbench.runs.contestants import RemoteEndpoint

    extra: dict[str, Any] = {}
    if args.extra:
        try:
            extra = json.loads(args.extra)
        except ValueError as exc:
            raise UsageError(f"--extra is not valid JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise UsageError("--extra must be a JSON object")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    try:
        return RemoteEndpoint(args.endpoint, model=args.model, api=args.api, api_key_env=args.key_env,
                              read_timeout_s=args.timeout, extra_body=extra)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _prompts(path: str | None) -> list[str] | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            prompts = [line.strip() for line in fh if line.strip()]
    except OSError as exc:
        raise UsageError(f"cannot read --prompts {path}: {exc.strerror or exc}") from None
    if not prompts:
        raise UsageError(f"--prompts {path} holds no prompts")
    return prompts


@command("fingerprint", help="guess which quantization a remote endpoint serves, against a local ladder",
         arguments=_fingerprint_arguments)
def cmd_fingerprint(args: argparse.Namespace) -> int:
    """Send short reference prompts to an endpoint (greedy, with log-probs where it gives them) and rank a local
    ladder of the same model by how closely each file behaves like it. Each run is kept, so a changed answer
    shows."""
    from workbench.engine.pool import WorkerPool
    from workbench.runs.fingerprint import fingerprint

    endpoint = _endpoint(args)
    prompts = _prompts(args.prompts)
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    settings = settings_from_args(args)
    say = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.ladder and not (Path(args.ladder) / ladders.LADDER_FILE).is_file():
        raise UsageError(f"{args.ladder} holds no {ladders.LADDER_FILE}; build a ladder with `workbench ladder` first")
    lad = ladders.ensure_demo_ladder(say) if args.demo else ladders.load_ladder(args.ladder)
    labels = lad.split_labels(args.types) if args.types else None
    if labels:
        unknown = [t for t in labels if t not in lad.labels()]
        if unknown:
            raise UsageError(f"no {', '.join(unknown)} in the ladder; it has {', '.join(lad.labels())}")
    pool = WorkerPool()
    try:
        report = fingerprint(pool, endpoint, lad, prompts, max_tokens=args.max_tokens, settings=settings,
                             labels=labels, progress=say)
    finally:
        pool.shutdown()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    if report.error:
        print(f"error: {report.error}", file=sys.stderr)
        return 1
    if not args.json:
        _print_report(report)
    return 1 if report.changed else 0


def _print_report(report: Any) -> None:
    print(f"Endpoint {report.endpoint['base_url']} (model {report.endpoint['model'] or '-'}, {report.endpoint['api']} API) "
          f"vs {report.ladder}; {len(report.prompts)} prompts, greedy, {report.max_tokens} tokens max")
    rows = []
    for i, c in enumerate(report.candidates, 1):
        rank = "-" if c.error else str(i)
        if c.error:
            note = c.error
        elif c.within_noise:
            note = "within noise"
        elif c.label == report.closest:
            note = "closest"
        else:
            note = ""
        rows.append([rank, c.label, c.quant_type or "-", fmt_num(c.bits_per_weight, 2), fmt_num(c.kld, 4),
                     "-" if c.top1_agreement is None else f"{c.top1_agreement:.0%}",
                     "-" if c.greedy_agreement is None else f"{c.greedy_agreement:.0%}",
                     f"{c.identical_prompts}/{len(report.prompts)}", note])
    print_table(["rank", "label", "quant", "bits/w", "top-k KLD", "top-1 agree", "greedy agree", "identical", ""], rows)
    print()
    print(report.confidence)
    for note in report.notes:
        print(f"note: {note}")
    if report.previous_closest and report.changed:
        print(f"CHANGED: the previous fingerprint of this endpoint was closest to {report.previous_closest}.")
    elif report.previous_closest:
        print(f"Unchanged since the previous fingerprint ({report.previous_closest}).")
    else:
        print("First fingerprint of this endpoint; kept for comparison with later runs.")
    print("KLD: KL(endpoint || local) over the endpoint's top-k tokens, both renormalised; lower is closer. "
          "Greedy agree: share of tokens before the outputs first differ.")
