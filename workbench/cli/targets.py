"""`workbench targets`: the target machines fit and speed are predicted for (this machine, presets, saved ones).

    workbench targets [list] [--json]          every target with its figures and where each comes from
    workbench targets add NAME --ram-gib N --ram-bw GBS [...]   save a profile (a preset's name is refused)
    workbench targets remove NAME              delete a saved profile

Exit codes as everywhere: 0 success, 1 when something failed, 2 on usage errors (a bad figure says which).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from workbench.cli.main import UsageError, command, print_table
from workbench.core.text_units import GiB, format_bytes, format_gib


def _targets_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    actions = p.add_subparsers(dest="targets_action")
    actions.add_parser("list", help="every target (the default)").add_argument("--json", action="store_true")
    a = actions.add_parser("add", help="save a target profile (replaces a saved one of the same name)")
    a.add_argument("name")
    a.add_argument("--ram-gib", type=_positive, required=True, help="installed RAM in GiB")
    a.add_argument("--ram-bw", type=_positive, required=True, help="RAM bandwidth in GB/s")
    a.add_argument("--os-reserve-gib", type=_not_negative, default=4.0, help="RAM the OS and other programs keep (GiB)")
    a.add_argument("--vram-gib", type=_not_negative, default=0.0, help="one GPU's memory in GiB (0: no GPU)")
    a.add_argument("--vram-bw", type=_positive, default=None, help="the GPU's memory bandwidth in GB/s")
    a.add_argument("--vram-reserve-gib", type=_not_negative, default=0.0, help="VRAM the display keeps (GiB)")
    a.add_argument("--cores", type=int, default=8)
    a.add_argument("--description", default="")
    a.add_argument("--source", action="append", default=[], metavar="FIGURE=TEXT",
                   help="where a figure comes from, e.g. ram_bandwidth_gbs='JEDEC DDR5-5600, 2 channels' (repeatable); "
                        "figures without one are recorded as an assumption")
    a.add_argument("--json", action="store_true")
    r = actions.add_parser("remove", help="delete a saved target profile")
    r.add_argument("name")
    f = actions.add_parser("fit", help="where each GGUF runs on each target, and its estimated decode speed",
                           description="Predicted memory and verdict per target (fits on GPU / partial / CPU only / "
                                       "does not fit) at --ctx with the KV-cache types given, and an ESTIMATED decode "
                                       "speed: bytes per token over the target's bandwidth, calibrated by runs "
                                       "stored here.")
    f.add_argument("files", nargs="*", metavar="FILE.gguf")
    f.add_argument("--demo", action="store_true", help="the embedded SmolLM2 demo ladder")
    f.add_argument("--target", action="append", default=[], help="a target's name (repeatable; default: all)")
    f.add_argument("--ctx", type=int, default=8192, help="context size in tokens (default 8192)")
    f.add_argument("--kv-type", default="f16", help="K cache type (and V's unless --kv-type-v): f16, q8_0, q4_0 …")
    f.add_argument("--kv-type-v", default=None, help="V cache type (default: as --kv-type)")
    f.add_argument("--json", action="store_true")


def _number(text: str, *, zero_ok: bool) -> float:
    """A figure typed on the command line: finite, and positive (or zero where zero means "none")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number {'of 0 or more' if zero_ok else 'above 0'}")
    return value


def _positive(text: str) -> float:
    return _number(text, zero_ok=False)


def _not_negative(text: str) -> float:
    return _number(text, zero_ok=True)


def _row(p: Any) -> dict[str, Any]:
    return {"name": p.name, "builtin": p.builtin, "ram_bytes": p.ram_bytes, "os_reserve_bytes": p.os_reserve_bytes,
            "ram_bandwidth_gbs": p.ram_bandwidth_gbs, "vram_bytes": p.vram_bytes,
            "vram_reserve_bytes": p.vram_reserve_bytes, "vram_bandwidth_gbs": p.vram_bandwidth_gbs, "cores": p.cores,
            "description": p.description, "sources": p.sources}


def _gib(n: int) -> str:
    return format_gib(n) if n else "-"


@command("targets", help="target machines: this machine, presets and saved profiles", arguments=_targets_arguments)
def cmd_targets(args: argparse.Namespace) -> int:
    """The machines fit and decode speed are predicted for. Every figure says where it comes from (a spec sheet, a
    measurement here) or that it is an assumption."""
    from workbench.decide import targets
    from workbench.storage.store import Store

    store = Store()
    action = args.targets_action or "list"
    if action == "remove":
        try:
            targets.delete_target(store, args.name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"removed {args.name}")
        return 0
    if action == "add":
        sources: dict[str, str] = {}
        for item in args.source:
            figure, sep, text = item.partition("=")
            if not sep:
                raise UsageError(f"--source takes FIGURE=TEXT ({', '.join(targets.FIGURES)})")
            sources[figure.strip()] = text
        given = {"ram_bytes", "ram_bandwidth_gbs", "os_reserve_bytes", "cores"} | \
            ({"vram_bytes", "vram_bandwidth_gbs"} if args.vram_gib else set())
        for figure in given - set(sources):
            sources[figure] = "assumption: entered by hand, no source given"
        try:
            profile = targets.TargetProfile(
                name=args.name, ram_bytes=int(args.ram_gib * GiB), vram_bytes=int(args.vram_gib * GiB),
                ram_bandwidth_gbs=args.ram_bw, vram_bandwidth_gbs=args.vram_bw, cores=args.cores,
                os_reserve_bytes=int(args.os_reserve_gib * GiB), vram_reserve_bytes=int(args.vram_reserve_gib * GiB),
                sources=sources, builtin=False, description=args.description)
            saved = targets.save_target(store, profile)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(json.dumps(_row(saved), indent=2) if args.json else f"saved {saved.name}")
        return 0

    if action == "fit":
        return _fit(args, store)
    mine, notes = targets.saved_targets(store)
    profiles = [targets.this_machine()] + targets.presets() + mine
    if args.json:
        print(json.dumps([_row(p) for p in profiles], indent=2))
        return 0
    for note in notes:
        print(f"note: {note}")
    print_table(["target", "RAM", "OS reserve", "RAM GB/s", "VRAM", "VRAM GB/s", "cores", "kind"],
                [[p.name, _gib(p.ram_bytes), _gib(p.os_reserve_bytes), f"{p.ram_bandwidth_gbs:.1f}", _gib(p.vram_bytes),
                  "-" if not p.vram_bandwidth_gbs else f"{p.vram_bandwidth_gbs:.0f}", p.cores,
                  "measured" if p.name == targets.THIS_MACHINE else ("preset" if p.builtin else "saved")]
                 for p in profiles])
    print("\nSources (figure: where it comes from):")
    for p in profiles:
        print(f"  {p.name}")
        for figure, text in p.sources.items():
            print(f"    {figure}: {text}")
    return 0


def _fit(args: argparse.Namespace, store: Any) -> int:
    import os
    import sys

    from workbench.decide import speed, targets
    from workbench.files import fit
    from workbench.files import json_fields as jf
    from workbench.files.gguf_info import GgufError, read_header

    if bool(args.files) == bool(args.demo):
        raise UsageError("name GGUF files, or use --demo (one of them)")
    if args.ctx < 64:
        raise UsageError("--ctx must be at least 64 tokens")
    kv_k, kv_v = args.kv_type.lower(), (args.kv_type_v or args.kv_type).lower()
    try:
        fit.kv_bytes_per_element(kv_k)
        fit.kv_bytes_per_element(kv_v)
        profiles = [targets.get_target(store, n) for n in args.target] or targets.list_targets(store)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.demo:
        from workbench.models.ladder import ensure_demo_ladder

        files = [f.path for f in ensure_demo_ladder(lambda msg: print(msg, file=sys.stderr)).files]
    else:
        files = [os.path.abspath(f) for f in args.files]
    cal = speed.calibrate(store)
    rows, failed = [], 0
    for path in files:
        try:
            info = read_header(path)
        except GgufError as exc:  # no verdict without the file's own header
            print(f"error: {os.path.basename(path)}: {fit.unreadable(exc, path)}", file=sys.stderr)
            failed += 1
            continue
        for p in profiles:
            tf, est = speed.fit_and_speed(info, p, cal, n_ctx=args.ctx, kv_type_k=kv_k, kv_type_v=kv_v)
            rows.append({jf.FILE: path, jf.NAME: os.path.basename(path), jf.QUANT_TYPE: info.quant_type,
                         "target": p.name, "n_ctx": tf.n_ctx, "kv_type_k": kv_k, "kv_type_v": kv_v,
                         jf.PREDICTED_BYTES: tf.predicted_bytes, jf.VERDICT: tf.verdict, "verdict_code": tf.verdict_code,
                         "weights_bytes": tf.weights_bytes, "kv_bytes": tf.kv_bytes,
                         "compute_other_bytes": tf.compute_bytes + tf.overhead_bytes, "spare_bytes": tf.spare_bytes,
                         "spare_in": tf.spare_in, "gpu_layers": tf.gpu_layers,
                         "est_decode_tok_s": None if est.tok_s is None else round(est.tok_s, 2),
                         "estimate_assumptions": est.assumptions, "notes": tf.notes})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"Context {args.ctx:,} tokens, KV cache {kv_k}" + ("" if kv_k == kv_v else f"/{kv_v}") + ".")
        print_table(["file", "target", "weights", "KV cache", "compute+other", "verdict", "spare", "est. tok/s"],
                    [[r[jf.NAME], r["target"], format_bytes(r["weights_bytes"]), format_bytes(r["kv_bytes"]),
                      format_bytes(r["compute_other_bytes"]), r[jf.VERDICT],
                      (format_bytes(r["spare_bytes"]) if r["spare_bytes"] >= 0 else f"short {format_bytes(-r['spare_bytes'])}")
                      + f" {r['spare_in']}", "-" if r["est_decode_tok_s"] is None else f"~{r['est_decode_tok_s']:.1f}"]
                     for r in rows])
        print("\nSpeeds are estimates, not measurements. Assumptions:")
        seen: list[str] = []
        for r in rows:
            seen += [a for a in r["estimate_assumptions"] if a not in seen]
        for line in seen:
            print(f"  - {line}")
    return 1 if failed or not rows else 0


