"""`workbench …`: the library, headless. Every command prints a table or, with --json, JSON.

Exit codes: 0 success, 1 when something ran but a contestant or file failed (its error says
why), 2 on usage errors. A user's mistake is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.core.registry import Registry
from workbench.core.text_units import format_bytes
from workbench.files import json_fields as jf
from workbench.files.gguf_info import GgufError
from workbench.models import ladder as ladders
from workbench.storage.store import StoreError


class UsageError(Exception):
    """A mistake in how the command was called: exit code 2, one line."""


@dataclass(frozen=True)
class Command:
    """One subcommand, whole: its line in `workbench --help`, the options it takes and what it does (an exit code)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


# Every subcommand, in `workbench --help` order (this module's, then COMMAND_MODULES' in their order).
COMMANDS: Registry[Command] = Registry("command")


def command(name: str, *, help: str, arguments: Callable[[argparse.ArgumentParser], None],
            ) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """The one way to add a subcommand: above its handler, with the function that declares its options. The
    handler's docstring, when it has one, is the command's `--help` description (argparse reflows it)."""
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.add(name, Command(help=help, arguments=arguments, run=run, description=inspect.getdoc(run)))
        return run

    return register


def _progress(quiet: bool) -> Callable[[str], None]:
    return (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def fmt_bytes(n: int | None) -> str:
    """The CLI's byte cells: one decimal of MiB, "-" when unknown (the rule: core.text_units.format_bytes)."""
    return format_bytes(n, mib_digits=1, missing="-")


def fmt_num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


# ---- demo / ladder ----------------------------------------------------------------------------
def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


@command("demo", help="build (once) and list the embedded SmolLM2 demo ladder", arguments=_demo_arguments)
def cmd_demo(args: argparse.Namespace) -> int:
    lad = ladders.ensure_demo_ladder(_progress(args.json))
    if args.json:
        print(json.dumps([f.summary() for f in lad.files], indent=2))
        return 0
    print(lad.name)
    for line in lad.provenance_lines():
        print(f"  {line}")
    print_table(["label", "type", "size", "bits/weight", "reference", "file"],
                [[f.label, f.quant_type, fmt_bytes(f.size_bytes), f"{f.bits_per_weight:.2f}", "yes" if f.reference else "",
                  f.path] for f in lad.files])
    return 0


def _ladder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", nargs="?", help="the source GGUF (full precision for a real ladder)")
    p.add_argument("--demo", action="store_true", help="the source is the demo ladder's F16 reference")
    p.add_argument("--types", default=",".join(ladders.DEFAULT_TYPES))
    p.add_argument("--reference", default="F16", help="reference type to build (empty: use the source itself)")
    p.add_argument("--out", default=None)
    m = p.add_mutually_exclusive_group()
    m.add_argument("--imatrix", metavar="FILE", help="also quantize each type with this importance matrix "
                   "(.imatrix.gguf or legacy .dat)")
    m.add_argument("--imatrix-from", metavar="SOURCE", help="compute the matrix first, from a text file, "
                   "'reference-text' (the bundled text) or a prompt set (name or path: calibrates on a seeded half)")
    p.add_argument("--seed", type=int, default=0, help="the prompt-set split's seed (with --imatrix-from SET)")
    p.add_argument("--no-static", action="store_true", help="with a matrix: skip the static file of each type")
    p.add_argument("--json", action="store_true")


@command("ladder", help="quantize a local GGUF into a ladder (optionally with an importance matrix)",
         arguments=_ladder_arguments)
def cmd_ladder(args: argparse.Namespace) -> int:
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    from workbench.files.imatrix_file import ImatrixError
    from workbench.models.quantize import NEEDS_IMATRIX, QUANT_TYPES, QuantizeError

    bad = [t for t in types if t not in QUANT_TYPES]
    if bad:
        raise UsageError(f"unknown quantization type(s) {', '.join(bad)}; choose from {', '.join(QUANT_TYPES)}")
    if bool(args.src) == bool(args.demo):
        raise UsageError("name one source: a GGUF file or --demo")
    needs = [t for t in types if t in NEEDS_IMATRIX]
    if needs and not (args.imatrix or args.imatrix_from):
        raise UsageError(f"{', '.join(needs)} need{'s' if len(needs) == 1 else ''} an importance matrix: "
                         "add --imatrix FILE or --imatrix-from SOURCE")
    say = _progress(args.json)
    src = ladders.ensure_demo_ladder(say).by_label("F16").path if args.demo else args.src
    if args.imatrix_from:
        from workbench.runs.imatrix_ladder_job import calibration_from_source, matrix_from_source

        try:
            calibration = calibration_from_source(args.imatrix_from, args.seed)
        except ValueError as exc:  # CalibrationError, PromptSetError: the source named is not usable
            raise UsageError(" ".join(str(exc).split())) from None
    try:
        matrix = args.imatrix
        if args.imatrix_from:
            matrix = str(matrix_from_source(src, calibration, args.out, progress=say))
        lad = ladders.build_ladder(src, types, args.out, reference_type=args.reference or None, progress=say,
                                   imatrix=matrix, with_static=not args.no_static,
                                   name=ladders.DEMO_REQUANT_NAME if args.demo else None)
    except (QuantizeError, ImatrixError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(lad.summary(), indent=2))
    else:
        print(f"Ladder written to {lad.directory}")
        print_table(["label", "type", "size", "bits/weight", "reference"],
                    [[f.label, f.quant_type, fmt_bytes(f.size_bytes), f"{f.bits_per_weight:.2f}", "yes" if f.reference else ""]
                     for f in lad.files])
        if "imatrix" in lad.provenance:
            print(next(line for line in lad.provenance_lines() if line.startswith("Importance matrix")))
    return 0


# ---- compare ----------------------------------------------------------------------------------
def resolve_contestants(args: argparse.Namespace) -> tuple[Any, list[Any], dict[str, str]]:
    """The ladder and contestants named by --demo or FILE arguments, plus files that failed their checks."""
    from workbench.runs.compare import contestants_for
    from workbench.runs.contestants import Contestant

    variants = variants_from_args(args)  # usage errors first, before a ladder is built or a file read
    if args.demo:
        lad = ladders.ensure_demo_ladder(_progress(getattr(args, "json", False)))
        labels = lad.split_labels(args.types) if getattr(args, "types", None) else None
        return lad, with_variants(args, contestants_for(lad, labels), variants), {}
    if not args.files:
        if getattr(args, "endpoint", None):
            return None, [], {}
        raise UsageError("name GGUF files, use --demo, or give --endpoint")
    lad, errors = ladders.ladder_from_files(args.files)
    contestants = [Contestant.from_ladder_file(f) for f in lad.files]
    contestants.sort(key=lambda c: not c.is_reference)
    return lad, with_variants(args, contestants, variants), errors


VARIANT_HELP = ("also run every chosen file as a variant: KV-cache types and/or a context of its own, e.g. "
                "kv=q8_0, kv=q4_0,ctx=8192, k=q8_0,v=q4_0, ctx=16k (repeatable; KV types f16, q8_0, q4_0; a quantized "
                "V cache runs with flash attention on). Each file also runs as itself (f16 cache at --ctx) unless "
                "--no-baseline; the reference always does. Labels read \"Q4_K_M · KV q8_0 · 8k\".")


def add_variant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", action="append", default=[], metavar="kv=TYPE[,ctx=N] | k=TYPE,v=TYPE[,ctx=N]",
                   help=VARIANT_HELP)
    p.add_argument("--no-baseline", action="store_true",
                   help="with --variant: leave out each file's plain run (f16 cache at --ctx), except the reference's")


def variants_from_args(args: argparse.Namespace) -> list[Any]:
    """The --variant options parsed (runs.variants); a malformed one is a usage error."""
    from workbench.runs.variants import parse_variant

    try:
        return [parse_variant(spec) for spec in getattr(args, "variant", None) or []]
    except ValueError as exc:
        raise UsageError(f"--variant: {exc}") from None


def with_variants(args: argparse.Namespace, contestants: list[Any], variants: list[Any]) -> list[Any]:
    """`contestants` expanded by the --variant options (unchanged without any)."""
    from workbench.runs.contestants import variant_contestants

    if not variants:
        return contestants
    max_tokens = getattr(args, "max_tokens", None)
    for v in variants:
        if v.n_ctx and isinstance(max_tokens, int) and max_tokens >= v.n_ctx:
            raise UsageError(f"--variant with ctx={v.n_ctx}: max tokens ({max_tokens}) must be smaller than its context")
    return variant_contestants(contestants, variants, getattr(args, "ctx", None) or 2048,
                               baseline=not getattr(args, "no_baseline", False))


def settings_from_args(args: argparse.Namespace, n_ctx: int | None = None):
    """RunSettings from the shared run options (any a command lacks keep their defaults); usage errors exit 2."""
    from workbench.runs.contestants import RunSettings

    gpu_layers = getattr(args, "gpu_layers", None)
    if gpu_layers is None:
        offload, layers = "auto", 0
    else:
        offload, layers = ("all" if gpu_layers < 0 else "cpu" if gpu_layers == 0 else "layers"), gpu_layers
    s = RunSettings(max_tokens=args.max_tokens, temperature=getattr(args, "temperature", 0.0) or 0.0,
                    seed=getattr(args, "seed", 0) or 0, n_ctx=n_ctx or getattr(args, "ctx", None) or 2048,
                    system_prompt=getattr(args, "system", "") or "", n_gpu_layers=layers, gpu_offload=offload)
    if getattr(args, "threads", None):
        s.n_threads = args.threads
    try:
        s.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return s


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*")
    p.add_argument("--demo", action="store_true", help="use the embedded demo ladder")
    p.add_argument("--types", default=None, help="with --demo: which labels take part (default: the default four)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--endpoint", action="append", default=[], metavar="URL[,model=M][,label=L][,api=openai|llamacpp][,key_env=VAR]",
                   help="also run an OpenAI-compatible or llama.cpp server endpoint (repeatable); its API key is read "
                        "from the environment variable key_env, never from the command line")
    p.add_argument("--remote-concurrent", action="store_true", help="run endpoints at the same time as each other")
    p.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="decode windows timed per local file, the answer first (1-10, default 1): with more, decode "
                        "tok/s is the median of the undisturbed ones and a range is shown; a disturbed window is "
                        "timed again up to 3 more times")
    p.add_argument("--json", action="store_true")
    add_run_options(p)
    add_variant_options(p)


@command("compare", help="run one prompt through several quantizations", arguments=_compare_arguments)
def cmd_compare(args: argparse.Namespace) -> int:
    from workbench.engine.metrics import ContestantResult
    from workbench.engine.pool import WorkerPool
    from workbench.runs.compare import SEQUENTIAL_NOTE, run_comparison
    from workbench.storage.limits import refuse_run_texts
    from workbench.storage.store import Store

    settings = settings_from_args(args)
    settings.remote_concurrent = args.remote_concurrent
    settings.timing_repeats = args.repeats
    try:
        settings.validate()
        refuse_run_texts(args.prompt, settings.system_prompt)  # before any model loads
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    lad, contestants, errors = resolve_contestants(args)
    if args.endpoint:
        from workbench.runs.contestants import RemoteEndpoint
        from workbench.runs.remote import contestant_for

        try:
            endpoints = [RemoteEndpoint.from_spec(spec) for spec in args.endpoint]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        contestants += [contestant_for(e, is_reference=not contestants and i == 0) for i, e in enumerate(endpoints)]
    failed = [ContestantResult(label=path, quant_type=None, file=path, error=msg, stop_reason="error")
              for path, msg in errors.items()]
    for r in failed:
        print(f"error: {r.error}", file=sys.stderr)
    if not args.json:
        print(SEQUENTIAL_NOTE, file=sys.stderr)

    def on_event(label: str, status: str, payload: dict[str, Any]) -> None:
        if args.json or status in ("tokens", "queued", "waiting"):
            return
        msg = payload.get("message", "")
        print(f"[{label}] {status}{': ' + msg if msg else ''}", file=sys.stderr, flush=True)

    pool = WorkerPool()
    try:
        comparison = run_comparison(pool, contestants, args.prompt, settings, store=Store(), ladder=lad,
                                    on_event=on_event) if contestants else None
    finally:
        pool.shutdown()
    results = (comparison.results if comparison else []) + failed
    if args.json:
        remote = {c.label: d for c in contestants if (d := c.kind.describe(c)) is not None}
        out = {jf.RUN_ID: comparison.run_id if comparison else None,
               jf.REFERENCE: comparison.reference_label if comparison else None,
               "note": SEQUENTIAL_NOTE,
               "settings": settings.to_dict(),
               "results": [_result_json(r, remote.get(r.label)) for r in results]}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        on_gpu = any(r.gpu_layers for r in results)  # GPU columns only where a GPU held layers
        rows = []
        for r in results:
            div = ("reference" if r.is_reference else "identical" if r.identical_to_reference
                   else "-" if r.first_divergence_token is None else f"token {r.first_divergence_token}")
            rows.append([r.label, r.quant_type or "-", fmt_bytes(r.size_bytes), fmt_num(r.bits_per_weight, 2),
                         fmt_num(r.load_s, 2), fmt_num(r.ttft_s, 3), fmt_num(r.prefill_tok_s), _decode(r),
                         r.completion_tokens if r.completion_tokens is not None else "-", r.stop_reason or "-",
                         fmt_bytes(r.peak_rss_bytes), _contention(r)]
                        + ([r.gpu_layers if r.gpu_layers is not None else "-", fmt_bytes(r.gpu_mem_bytes)] if on_gpu else [])
                        + [div])
        print_table(["type", "quant", "size", "bits/w", "load s", "TTFT s", "prefill tok/s", "decode tok/s", "tokens",
                     "stop", "peak RSS", "CPU contention"] + (["GPU layers", "VRAM (process)"] if on_gpu else [])
                    + ["diverges at"], rows)
        if any(r.decode_spread and r.decode_spread["windows"] > 1 for r in results):
            print("\ndecode tok/s: the median of the undisturbed decode windows, with their range (min-max) and "
                  "'N of M': undisturbed windows of those timed.", file=sys.stderr)
        if any(r.disturbed for r in results):
            print("\nDISTURBED: other work competed with the worker while some figures were timed (a shared "
                  "core, or a busy free core: marked *); run again on a quieter machine for this machine's true speed.", file=sys.stderr)
        if comparison and comparison.run_id is not None:
            print(f"\nrun {comparison.run_id} saved. Outputs:")
        for r in results:
            print(f"\n--- {r.label}{' (reference)' if r.is_reference else ''}")
            print(r.error if r.error else r.text)
            if r.fallback:
                print(f"(note: {r.fallback})")
    return 0 if all(r.ok for r in results) else 1


RESULT_KEYS = ("load_s", "ttft_s", "prompt_tokens", "prefill_tok_s", "completion_tokens", "decode_tok_s", "stop_reason",
               "peak_rss_bytes", "gpu_mem_bytes", "text", "first_divergence_token", "fallback", "error",
               "identical_to_reference", "decode_s", "decode_steps", "prefill_s", "template", "warm", "gpu_layers",
               "measurement", "kv_type_k", "kv_type_v", "n_ctx", "memory", "decode_repeats", "decode_spread")


def _result_json(r: Any, endpoint: dict[str, Any] | None) -> dict[str, Any]:
    """One compare result in the shared vocabulary: a local file's `file` absolute; an endpoint's `file` null and
    the endpoint described under `endpoint` (as `workbench fingerprint` does; never its key)."""
    d = r.to_dict()
    row = jf.gguf_fields(label=r.label, quant_type=r.quant_type, file=None if endpoint else r.file,
                         size_bytes=r.size_bytes, bits_per_weight=r.bits_per_weight, is_reference=r.is_reference)
    if endpoint:
        row[jf.ENDPOINT] = endpoint
    return {**row, **{k: d[k] for k in RESULT_KEYS}, "disturbed": r.disturbed}


def _decode(r: Any) -> str:
    """Decode tok/s; with several windows timed (runs.timing), the median with its range and window count."""
    s = r.decode_spread
    if not s or s["windows"] <= 1:
        return fmt_num(r.decode_tok_s)
    quiet = "" if s["quiet"] else ", none quiet"
    return f"{fmt_num(r.decode_tok_s)} ({fmt_num(s['min'])}-{fmt_num(s['max'])}, {s['n']} of {s['windows']}{quiet})"


def _contention(r: Any) -> str:
    """CPU contention during the decode window (disturbance.py), starred when it disturbed the figures."""
    decode = (r.measurement or {}).get("decode") or {}
    c = decode.get("contention")
    return "-" if c is None else f"{c:.0%}{' *' if decode.get('disturbed') else ''}"


# ---- argument parsing -------------------------------------------------------------------------
def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--ctx", type=int, default=2048, help="context size in tokens")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--gpu-layers", type=int, default=None,
                   help="layers to offload to a GPU (-1: all, 0: CPU only; default: what the fit prediction says fits)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered command (COMMANDS), in the order they were registered."""
    _load_command_modules()
    parser = argparse.ArgumentParser(prog="workbench", description="Compare GGUF quantizations of one model.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, cmd in COMMANDS.items():
        cmd.arguments(sub.add_parser(name, help=cmd.help, description=cmd.description))
    return parser


# The modules whose commands join this module's: each declares its own with @command beside its handler.
COMMAND_MODULES = ("workbench.cli.models", "workbench.cli.quality", "workbench.cli.ratings", "workbench.cli.remote",
                   "workbench.cli.batch", "workbench.cli.targets", "workbench.cli.watch", "workbench.cli.imatrix",
                   "workbench.cli.imatrix_gain", "workbench.cli.recommend")


def _load_command_modules() -> None:
    """Import the modules that register the other commands. Each one exists; an import error is a bug to see."""
    import importlib

    for mod in COMMAND_MODULES:
        importlib.import_module(mod)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return COMMANDS.get(args.command).run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (GgufError, FileNotFoundError, StoreError) as exc:  # a damaged, full or read-only database says so
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `workbench … | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
