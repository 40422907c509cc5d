"""`workbench imatrix`: compute an importance matrix from a reference over calibration text.

    workbench imatrix --demo --reference-text --out demo.imatrix.gguf
    workbench imatrix F16.gguf --prompts "Product support" --seed 1 --out support.imatrix.gguf --json

Calibration is the bundled reference text, a text file, or a prompt set's calibration half (split seeded with
--seed; the other half is held out, and the split is printed and recorded in the matrix). Exit codes as
everywhere: 0 success, 1 when the computation failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli.main import UsageError, command
from workbench.files import json_fields as jf
from workbench.runs import calibration as cal
from workbench.runs.prompt_sets import PromptSet, PromptSetError, find_prompt_set


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reference", nargs="?", metavar="REF.gguf", help="a full-precision GGUF (F32/F16/BF16)")
    p.add_argument("--demo", action="store_true", help="the embedded demo ladder's F16 reference")
    p.add_argument("--text", default=None, metavar="FILE", help="calibrate on a UTF-8 text file")
    p.add_argument("--reference-text", action="store_true", help="calibrate on the bundled reference text")
    p.add_argument("--prompts", default=None, metavar="SET",
                   help="calibrate on a prompt set's calibration half: a bundled set's name or a file")
    p.add_argument("--seed", type=int, default=None, help="with --prompts: the split's seed (default 0)")
    p.add_argument("--chunks", type=int, default=None, metavar="N", help="use at most N chunks")
    p.add_argument("--chunk-tokens", type=int, default=512, metavar="N",
                   help="tokens per chunk (default 512, llama-imatrix's default)")
    p.add_argument("--out", required=True, metavar="M.imatrix.gguf", help="where to write the matrix")
    p.add_argument("--json", action="store_true")


def _prompt_set(spec: str) -> PromptSet:
    try:
        return find_prompt_set(spec)
    except (ValueError, PromptSetError) as exc:  # PromptSetError is a ValueError; named for the reader
        raise UsageError(f"--prompts {spec!r}: {str(exc).splitlines()[0]}") from None


def _calibration(args: argparse.Namespace) -> cal.Calibration:
    if sum([bool(args.text), bool(args.reference_text), bool(args.prompts)]) != 1:
        raise UsageError("choose the calibration: --text FILE, --reference-text or --prompts SET (exactly one)")
    try:
        if args.text:
            return cal.from_text_file(args.text)
        if args.reference_text:
            return cal.bundled_text()
        seed = cal.DEFAULT_SEED if args.seed is None else args.seed
        return cal.from_prompt_set(_prompt_set(args.prompts), seed=seed)
    except cal.CalibrationError as exc:
        raise UsageError(str(exc)) from None


@command("imatrix", help="compute an importance matrix from a full-precision reference over calibration text",
         arguments=_arguments)
def cmd_imatrix(args: argparse.Namespace) -> int:
    """Runs the calibration text through the reference and records, per weight, how strongly each input column
    is used (llama.cpp's importance matrix, in llama-imatrix's file format). Quantize with it through
    `workbench ladder … --imatrix M.imatrix.gguf`."""
    from workbench.runs.imatrix import ImatrixCancelled, ImatrixComputeError, ImatrixInputError, compute_imatrix

    if bool(args.demo) == bool(args.reference):
        raise UsageError("name a reference GGUF or use --demo (exactly one)")
    if args.chunks is not None and args.chunks < 1:
        raise UsageError("--chunks must be at least 1")
    if args.seed is not None and not args.prompts:
        raise UsageError("--seed goes with --prompts")
    calibration = _calibration(args)
    if args.demo:
        from workbench.models.ladder import ensure_demo_ladder

        reference = ensure_demo_ladder().reference.path
    else:
        reference = args.reference
    if calibration.split is not None and not args.json:
        print(f"{calibration.name}: {calibration.split.describe()}; split {calibration.split}", file=sys.stderr)

    def progress(done: int, total: int, msg: str) -> None:
        if not args.json and done:
            print(f"  {msg}", file=sys.stderr, flush=True)

    try:
        result = compute_imatrix(reference, calibration, args.out, max_chunks=args.chunks,
                                 chunk_tokens=args.chunk_tokens, on_progress=progress)
    except ImatrixComputeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ImatrixInputError) else 1
    except ImatrixCancelled:
        print("interrupted", file=sys.stderr)
        return 130
    split = str(calibration.split) if calibration.split else None
    if args.json:
        print(json.dumps({"path": jf.abs_file(result.path),
                          "calibration": jf.calibration_fields(name=calibration.name, kind=calibration.kind,
                                                               sha256=calibration.sha256, tokens=result.n_tokens,
                                                               split=split),
                          "chunks": result.n_chunks, "seconds": round(result.seconds, 3),
                          "tokens_per_second": round(result.tokens_per_second, 1), "note": result.note or None,
                          "pieces": list(result.pieces)}, indent=2))
        return 0
    print(f"Wrote {result.path}: {result.n_tokens:,} tokens of {calibration.describe()} as {result.n_chunks} "
          f"chunk(s), {result.seconds:.1f} s in all ({result.tokens_per_second:,.0f} tokens/s through the model, measured here).")
    if result.note:
        print(result.note)
    return 0
