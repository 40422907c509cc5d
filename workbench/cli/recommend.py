"""`workbench recommend`: which quantization and KV-cache type to ship on a target machine, and why.

Exit codes as everywhere: 0 when something is recommended, 1 when nothing can be (not enough evidence, or no
candidate meets the constraints: the reasons say which), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from workbench.cli.main import UsageError, command, fmt_bytes, fmt_num, print_table


def _recommend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demo", action="store_true", help="the embedded SmolLM2 demo ladder")
    p.add_argument("--ladder", default=None, metavar="DIR", help="a ladder directory (holding ladder.json)")
    p.add_argument("--target", default=None, help="target machine name (default: this machine)")
    p.add_argument("--ctx", type=int, default=8192, help="context the application needs, in tokens (default 8192)")
    p.add_argument("--min-tok-s", type=float, default=None, help="minimum decode speed on the target (estimated)")
    p.add_argument("--max-kld", type=float, default=None, metavar="KLD",
                   help="quality holds up to this mean KL divergence from the reference (measured); default: the "
                        "mean KLD llama.cpp published for Q5_K_M on LLaMA-3-8B (about 0.0108); 0 = no bar")
    p.add_argument("--prefer", choices=("memory", "quality"), default="memory",
                   help="among candidates that meet every constraint: the smallest whose quality holds (memory, "
                        "the default) or the best quality (the reference whenever it fits)")
    p.add_argument("--kv", default="f16,q8_0,q4_0", help="KV-cache types to consider (comma-separated; default "
                                                         "f16,q8_0,q4_0)")
    p.add_argument("--out", default=None, metavar="FILE.html", help="also write the stakeholder report (HTML, offline)")
    p.add_argument("--markdown", default=None, metavar="FILE.md", help="also write the report as Markdown")
    p.add_argument("--db", default=None, help="database file (default: the workbench's own)")
    p.add_argument("--json", action="store_true")


def _ladder(args: argparse.Namespace) -> Any:
    from workbench.models import ladder as ladders

    if bool(args.demo) == bool(args.ladder):
        raise UsageError("name the models once: --demo or --ladder DIR")
    if args.demo:
        return ladders.ensure_demo_ladder(lambda msg: None if args.json else print(msg, file=sys.stderr))
    try:
        return ladders.load_ladder(args.ladder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{args.ladder}: not a ladder directory ({exc})") from None


def _write_reports(s: Any, args: argparse.Namespace) -> None:
    from pathlib import Path

    from workbench.decide import report

    for path, render in ((args.out, report.report_html), (args.markdown, report.report_markdown)):
        if path:
            try:
                Path(path).write_text(render(s), encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
            if not args.json:
                print(f"wrote {path}", file=sys.stderr)


@command("recommend", help="name the quantization and KV-cache type to ship on a target machine, with the reasons",
         arguments=_recommend_arguments)
def cmd_recommend(args: argparse.Namespace) -> int:
    """Every file of the ladder with each KV-cache type is a candidate. Fit and memory on the target are predicted
    from the GGUF header; decode speed there is an estimate from bytes read per token and the target's memory
    bandwidth, calibrated by the ratio measured on this machine; quality is what this database measured
    (divergence from the reference, eval pass rates, blind votes). Targets: `workbench targets`."""
    from workbench.decide import report
    from workbench.decide.recommend import DEFAULT_MAX_KLD, Constraints
    from workbench.decide.study import study, study_json
    from workbench.decide.targets import THIS_MACHINE
    from workbench.storage.store import Store

    lad = _ladder(args)
    kv_types = [t.strip().lower() for t in args.kv.split(",") if t.strip()]
    if not kv_types:
        raise UsageError("--kv needs at least one KV-cache type")
    max_kld = DEFAULT_MAX_KLD if args.max_kld is None else args.max_kld or None  # 0: no bar, as on the page
    constraints = Constraints(args.target or THIS_MACHINE, args.ctx, args.min_tok_s, max_kld, args.prefer)
    try:
        s = study(Store(args.db) if args.db else Store(), lad, constraints, kv_types)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    rec = s.recommendation
    _write_reports(s, args)
    if args.json:
        print(json.dumps(study_json(s), indent=2))
        return 0 if rec.recommended else 1
    print(f"Target: {constraints.target} · context {constraints.n_ctx:,} tokens · ladder {lad.name}")
    print()
    print(rec.answer)
    print(rec.rule)
    for line in report.left_out_lines(s):
        print(line)
    if rec.meaning:
        print(rec.meaning)
    print()
    print("Recommended: " + (rec.recommended.label if rec.recommended else "nothing yet"))
    for line in rec.reasons:
        print(f"  - {line}")
    if rec.would_change:
        print("What would change the pick:")
        for line in rec.would_change:
            print(f"  - {line}")
    if rec.actions:
        print("To get more evidence:")
        for action in rec.actions:
            print(f"  - {action.words}")
    print()
    rows = []
    for a in rec.assessments:
        f = a.facts
        rows.append([f.label, f.verdict, fmt_bytes(f.needed_bytes), fmt_num(f.est_tok_s),
                     "-" if f.kld is None else f"{f.kld:.4f}", report.published_cell(f),
                     a.status])
    print_table(["candidate", "fit (predicted)", "memory (predicted)", "tok/s (estimate)", "mean KLD (measured)",
                 "KLD LLaMA-3-8B (published)", "constraints"], rows)
    imported = report.imported_rows(s)
    if imported:
        print("\nImported from other machines (shown, never used for the pick):")
        for label, figures, origin in imported:
            print(f"  - {label}: {figures} ({origin})")
    return 0 if rec.recommended else 1
