"""`workbench diverge` and `workbench eval`: quality beyond eyeballing, headless.

`diverge` teacher-forces the reference's tokens through every quantization and prints KL
divergence, top-1 agreement and perplexity (on a prompt's output, a stored run, or the bundled
reference text scored like `llama-perplexity --kl-divergence`). `eval` runs a task pack across
the quantizations and prints pass rates per category with 95% intervals and a paired test
against the reference. Both store what they measured. Exit codes follow workbench.cli.main.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.cli.main import (
    UsageError,
    _progress,
    add_variant_options,
    command,
    print_table,
    resolve_contestants,
    settings_from_args,
)
from workbench.files import json_fields as jf


def _store(args: argparse.Namespace):
    from workbench.storage.store import Store

    return Store(args.db) if getattr(args, "db", None) else Store()


def _settings(args: argparse.Namespace, n_ctx: int | None = None):
    return settings_from_args(args, n_ctx)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


# ---- parsers ----------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, max_tokens: int, ctx: int | None) -> None:
    p.add_argument("files", nargs="*", help="GGUF files (the highest precision is the reference)")
    p.add_argument("--demo", action="store_true", help="use the embedded demo ladder")
    p.add_argument("--types", default=None, help="with --demo: which labels take part (default: the default four)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--max-tokens", type=int, default=max_tokens)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--ctx", type=int, default=ctx, help="context size in tokens")
    p.add_argument("--gpu-layers", type=int, default=None,
                   help="layers to offload to a GPU (-1: all, 0: CPU only; default: what the fit prediction says fits)")
    p.add_argument("--db", default=None, help="database file (default: the workbench's own)")
    add_variant_options(p)


def _diverge_arguments(p: argparse.ArgumentParser) -> None:
    _common(p, 128, 2048)
    p.add_argument("--prompt", default=None, help="the reference generates on this prompt; its output is measured")
    p.add_argument("--reference-text", action="store_true",
                   help="score the bundled reference text in chunks, like llama-perplexity --kl-divergence")
    p.add_argument("--text", default=None, metavar="FILE", help="with --reference-text: score this text file instead")
    p.add_argument("--run", type=int, default=None, help="measure a stored comparison's reference output")
    p.add_argument("--chunk", type=int, default=512, help="with --reference-text: tokens per chunk (default 512)")
    p.add_argument("--max-chunks", type=int, default=None, help="with --reference-text: score at most this many chunks")
    p.add_argument("--system", default="", help="system prompt (with --prompt)")


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    _common(p, 128, None)
    p.add_argument("--pack", required=True, help="a .toml or .csv pack, or a bundled pack's name (e.g. starter)")
    p.add_argument("--categories", default=None, help="comma-separated categories to run (default: all)")
    p.add_argument("--limit", type=int, default=None, help="run at most N cases, spread across the categories")


# ---- diverge ----------------------------------------------------------------------------------
@command("diverge", help="teacher-forced KL divergence, top-1 agreement and perplexity vs the reference",
         arguments=_diverge_arguments)
def cmd_diverge(args: argparse.Namespace) -> int:
    from workbench.engine.pool import WorkerPool
    from workbench.quality import divergence as dv

    modes = [m for m in ("prompt", "run") if getattr(args, m) is not None] + (["text"] if args.reference_text else [])
    if len(modes) != 1:
        raise UsageError("say what to measure: --prompt TEXT, --reference-text or --run ID (one of them)")
    if args.text and not args.reference_text:
        raise UsageError("--text FILE goes with --reference-text")
    if args.chunk < 16:
        raise UsageError("--chunk must be at least 16 tokens")
    if args.run is None and not args.demo and not args.files:
        raise UsageError("name GGUF files or use --demo")
    store = _store(args)
    say = _progress(args.json)

    def on_progress(done: int, total: int, message: str) -> None:
        if message != "done":
            say(f"[{done}/{total}] {message}")

    pool = WorkerPool()
    try:
        if args.run is not None:
            if store.get_run(args.run) is None:
                print(f"error: no run with id {args.run} (see `workbench history`)", file=sys.stderr)
                return 1
            report = dv.diverge_run(pool, store, args.run, on_progress=on_progress)
            failed: dict[str, str] = {}
        else:
            lad, contestants, failed = resolve_contestants(args)
            for msg in failed.values():
                print(f"error: {msg}", file=sys.stderr)
            if not contestants:
                return 1
            if args.reference_text:
                text = name = None
                if args.text:
                    path = Path(args.text)
                    if not path.is_file():
                        raise UsageError(f"{path}: no such file")
                    text, name = path.read_text(encoding="utf-8", errors="replace"), str(path)
                settings = _settings(args, n_ctx=max(args.ctx or 2048, args.chunk))
                report = dv.diverge_text(pool, contestants, settings, text=text, text_name=name, chunk_tokens=args.chunk,
                                         max_chunks=args.max_chunks, store=store, ladder=lad, on_progress=on_progress)
            else:
                settings = _settings(args)
                report = dv.diverge_prompt(pool, contestants, args.prompt, settings, store=store, ladder=lad,
                                           on_progress=on_progress)
    except dv.DivergenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        pool.shutdown()
    if args.json:
        print(json.dumps(_with_published(report.to_json()), indent=2, ensure_ascii=False))
    else:
        _print_divergence(report)
    return 0 if all(r.ok for r in report.results) and not failed else 1


def _with_published(doc: dict[str, Any]) -> dict[str, Any]:
    """Each result row gains `published`: the figure published elsewhere for its quantization type (another model's,
    labelled `"kind": "published elsewhere"`), or null for the reference and for types the source does not list.
    The row's own figures are `"measured"`, as the top-level `figures` says."""
    from workbench.quality.published import published_for_row

    for row in doc.get("results", []):
        figure = published_for_row(row.get(jf.QUANT_TYPE), bool(row.get(jf.IS_REFERENCE)), str(row.get(jf.LABEL) or ""))
        row["published"] = None if figure is None else figure.to_json()
    doc["figures"] = {"results[]": "measured", "results[].published": "published elsewhere"}
    return doc


def _print_divergence(report: Any) -> None:
    ref = report.reference
    if report.source == "text":
        m = report.meta
        print(f"{m.get('text')}: {m.get('text_tokens')} tokens, {m.get('chunks')} chunks of {m.get('chunk_tokens')}, "
              f"second half of each scored ({report.n_tokens} tokens), as llama-perplexity --kl-divergence does")
    else:
        print(f"Reference {report.reference_label}'s output ({report.n_tokens} tokens), teacher-forced through each:")
        print("  " + " ".join("".join(ref.piece(t) for t in ref.tokens).split())[:300])
    print()
    from workbench.quality.published import MODEL, NOTE, SOURCE_URL, published_for_row

    rows = []
    for r in report.results:
        s = r.summary
        if r.error:
            rows.append([r.label, r.quant_type or "-", "-", "-", "-", "-", "-", "-", r.error, "-"])
            continue
        figure = published_for_row(r.quant_type, r.is_reference, r.label)
        rows.append([r.label + (" (ref)" if r.is_reference else ""), r.quant_type or "-", s.get("n_tokens"),
                     f"{_fmt(s.get('mean_kld'), '.4f')} ± {_fmt(s.get('kld_stderr'), '.4f')}",
                     _fmt(s.get("median_kld"), ".4f"), _fmt(s.get("p99_kld"), ".4f"), _fmt(s.get("max_kld"), ".3f"),
                     f"{_fmt(100 * s['top1_agreement'] if s.get('top1_agreement') is not None else None, '.1f')}%",
                     f"{_fmt(s.get('ppl'), '.2f')} ± {_fmt(s.get('ppl_stderr'), '.2f')}",
                     _fmt(None if figure is None else figure.mean_kld, ".4f")])
    print_table(["quant", "type", "tokens", "mean KLD", "median KLD", "p99 KLD", "max KLD", "same top-1", "PPL",
                 f"published KLD ({MODEL})"], rows)
    from workbench.people.divergence_words import ranking_sentence

    print("\n" + ranking_sentence(report))
    print("\nMeasured here: every column but the last. KLD: KL(reference || quantization) of the next-token "
          "distributions, in nats; PPL: perplexity of the reference's tokens under each model. Definitions: "
          "docs/quality.md")
    print(f"Published elsewhere: the last column, llama.cpp's LLaMA 3 8b scoreboard ({SOURCE_URL}); {NOTE}.")
    if report.run_id is not None:
        print(f"saved with run {report.run_id}")


# ---- eval -------------------------------------------------------------------------------------
def _resolve_pack(name: str):
    from workbench.quality.packs import PackError, bundled_dir, load_pack

    path = Path(name)
    if not path.exists():
        for candidate in (bundled_dir() / name, bundled_dir() / f"{name}.toml", bundled_dir() / f"{name}.csv"):
            if candidate.is_file():
                path = candidate
                break
    try:
        return load_pack(path)
    except PackError as exc:
        raise UsageError(str(exc)) from None


@command("eval", help="run a task pack across quantizations: pass rates per category",
         arguments=_eval_arguments)
def cmd_eval(args: argparse.Namespace) -> int:
    from workbench.engine.pool import WorkerPool
    from workbench.quality import evals

    pack = _resolve_pack(args.pack)
    categories = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    try:
        cases = evals.select_cases(pack, categories, args.limit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    base = settings_from_args(args)
    settings = evals.default_settings(cases, base) if not args.ctx else base  # long context needs a bigger window
    try:
        settings.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    lad, contestants, failed = resolve_contestants(args)
    for msg in failed.values():
        print(f"error: {msg}", file=sys.stderr)
    if not contestants:
        return 1
    say = _progress(args.json)

    def on_progress(p: evals.EvalProgress) -> None:
        if p.label:
            say(f"[{p.done + 1}/{p.total}] {p.message}")

    pool = WorkerPool()
    try:
        run = evals.run_eval(pool, pack, contestants, settings, store=_store(args), ladder=lad, categories=categories,
                             limit=args.limit, on_progress=on_progress)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        pool.shutdown()
    if args.json:
        files = [jf.gguf_fields(label=c.label, quant_type=c.quant_type, file=c.path, size_bytes=c.size_bytes,
                                bits_per_weight=c.bits_per_weight, is_reference=c.is_reference) for c in contestants]
        print(json.dumps({**run.to_json(), "files": files}, indent=2, ensure_ascii=False))
    else:
        _print_eval(run)
    errors = any(o.error for o in run.outcomes)
    return 0 if not errors and not failed and run.status == "done" else 1


def _print_eval(run: Any) -> None:
    from workbench.quality.evals import ALL

    print(f"{run.pack_name}: {len(run.cases)} cases × {len(run.labels)} quantizations ({run.status})")
    cells = run.matrix()
    cats = [*run.categories_present(), ALL]
    rows = []
    for cat in cats:
        row = [cat]
        for label in run.labels:
            c = next(x for x in cells if x.category == cat and x.label == label)
            row.append("-" if not c.total else f"{c.passed}/{c.total} {c.rate:.0%} [{c.low:.0%}–{c.high:.0%}]")
        rows.append(row)
    print_table(["category", *[f"{lab}{' (ref)' if lab == run.reference_label else ''}" for lab in run.labels]], rows)
    print("\npassed/total, pass rate [Wilson 95% interval]. Against the reference, same cases (exact McNemar test):")
    for p in run.paired():
        if p.category == ALL or not p.within_noise:
            print(f"  {p.label} on {p.category}: {p.passed}/{p.total} vs {p.reference_passed}/{p.total} — {p.verdict}")
    if run.run_id is not None:
        print(f"\nsaved as run {run.run_id}")
