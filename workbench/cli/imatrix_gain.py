"""`workbench imatrix-gain`: did the importance matrix help? Static vs imatrix files of each type of a ladder,
on the prompts the matrix never saw (the held-out half of its calibration set) and/or the bundled reference text,
with 95% intervals and the answer in words (workbench.quality.imatrix_gain).

Exit codes as everywhere: 0 when every file was measured, 1 when one failed (its row says why), 2 on bad input
(no ladder, no imatrix files, a prompt set that is not the one the matrix was calibrated on).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from workbench.cli.main import UsageError, _progress, command, print_table


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ladder", required=True, metavar="DIR", help="a ladder directory (ladder.json) holding imatrix files")
    p.add_argument("--prompts", default=None, metavar="SET",
                   help="the prompt set the matrix was calibrated on (a bundled set's name or a file); its held-out "
                        "half is measured")
    p.add_argument("--reference-text", action="store_true", help="also (or only) measure on the bundled reference text")
    p.add_argument("--chunk", type=int, default=512, help="with --reference-text: tokens per chunk (default 512)")
    p.add_argument("--max-chunks", type=int, default=None, help="with --reference-text: at most this many chunks")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens the reference generates per held-out prompt")
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--db", default=None, help="database file (default: the workbench's own)")
    p.add_argument("--json", action="store_true")


def _print(report: Any) -> None:
    for line in report.sentences():
        print(line)
    print()
    rows = []
    for t in report.types:
        for kind, f in (("static", t.static), ("imatrix", t.imatrix)):
            if f is None:
                rows.append([t.quant_type, kind, "(none in this ladder)", "-", "-", "-"])
            elif not f.ok:
                rows.append([t.quant_type, kind, f.label, f"failed: {f.error}", "-", "-"])
            else:
                lo, hi = f.kld_interval()
                tlo, thi = f.top1_interval()
                ch = t.change() if kind == "imatrix" else None
                rows.append([t.quant_type, kind, f.label, f"{f.mean_kld:.4f} ({lo:.4f}–{hi:.4f})",
                             f"{f.top1:.1%} ({tlo:.1%}–{thi:.1%})",
                             "-" if ch is None else f"{100 * ch[0]:+.0f}% ({100 * ch[1][0]:+.0f}%…{100 * ch[1][1]:+.0f}%)"])
    print_table(["type", "file", "label", "mean KLD (95%)", "same top-1 (95%)", "KLD change vs static (95%)"], rows)
    if report.run_ids:
        print(f"\nMeasured here; stored as runs {', '.join(map(str, report.run_ids))}.")


@command("imatrix-gain", help="did the importance matrix help? static vs imatrix per type on held-out text",
         arguments=_arguments)
def cmd_imatrix_gain(args: argparse.Namespace) -> int:
    """Static vs imatrix files of each type, measured on the held-out half of the calibration prompt set (--prompts,
    the set the matrix was made from) and/or the bundled reference text, with 95% bootstrap intervals and a noise
    floor; the answer in words first."""
    from workbench.engine.pool import WorkerPool
    from workbench.models import ladder as ladders
    from workbench.quality import divergence as dv
    from workbench.quality.imatrix_gain import GainError, measure_gain, pair_files
    from workbench.runs.contestants import RunSettings
    from workbench.runs.prompt_sets import PromptSetError, find_prompt_set
    from workbench.storage.store import Store

    if not args.prompts and not args.reference_text:
        raise UsageError("say what to measure on: --prompts SET (the calibration set), --reference-text, or both")
    if args.chunk < 16:
        raise UsageError("--chunk must be at least 16 tokens")
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    try:
        ladder = ladders.load_ladder(args.ladder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{args.ladder}: not a ladder directory ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    if not pair_files(ladder):
        raise UsageError(f"{args.ladder}: the ladder has no files made with an importance matrix")
    prompt_set = None
    if args.prompts:
        try:
            prompt_set = find_prompt_set(args.prompts)
        except PromptSetError as exc:
            raise UsageError(f"{args.prompts}: {str(exc).splitlines()[0]}") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    say = _progress(args.json)

    def on_progress(done: int, total: int, message: str) -> None:
        if message != "done":
            say(f"[{done}/{total}] {message}")

    threads = {"n_threads": args.threads} if args.threads else {}
    store = Store(args.db) if args.db else Store()
    pool = WorkerPool()
    reports = []
    try:
        if prompt_set is not None:
            reports.append(measure_gain(pool, ladder, prompt_set=prompt_set, store=store, on_progress=on_progress,
                                        settings=RunSettings(max_tokens=args.max_tokens, **threads)))
        if args.reference_text:
            reports.append(measure_gain(pool, ladder, text=True, store=store, chunk_tokens=args.chunk,
                                        max_chunks=args.max_chunks, on_progress=on_progress,
                                        settings=RunSettings(n_ctx=max(2048, args.chunk), **threads)))
    except GainError as exc:
        raise UsageError(str(exc)) from None
    except dv.DivergenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        pool.shutdown()
    if args.json:
        print(json.dumps({"ladder": ladder.name, "reports": [r.to_dict() for r in reports]}, indent=2,
                         ensure_ascii=False))
    else:
        for n, r in enumerate(reports):
            if n:
                print()
            print(f"== {r.source} ==")
            _print(r)
    failed = any(not f.ok for r in reports for t in r.types for f in (t.static, t.imatrix) if f is not None)
    return 1 if failed else 0
