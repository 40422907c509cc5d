"""`workbench fit` and `workbench download`: will a GGUF fit this machine, and fetching quantizations from the Hub.

Exit codes as everywhere: 0 success, 1 when something failed (one line on stderr says why), 2 on usage errors.
HF_TOKEN is used through huggingface_hub's normal lookup and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from workbench.cli.main import UsageError, command, fmt_bytes, print_table
from workbench.core import paths
from workbench.core.text_units import format_gb
from workbench.files import fit


def _fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE.gguf")
    p.add_argument("--demo", action="store_true", help="the embedded SmolLM2 demo ladder")
    p.add_argument("--repo", default=None, help="a Hugging Face repo id (owner/name)")
    p.add_argument("--types", default=None, help="with --repo: only these quantization types (comma-separated)")
    p.add_argument("--revision", default=None, help="with --repo: branch, tag or commit")
    p.add_argument("--ctx", type=int, default=fit.DEFAULT_N_CTX, help="context size in tokens (default 2048)")
    p.add_argument("--kv-type", default="f16", help="KV cache type: f16 (default), q8_0, q4_0 …")
    p.add_argument("--json", action="store_true")


def _download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo")
    p.add_argument("--types", default=None,
                   help="comma-separated quantization types or file names (default: Q8_0,Q5_K_M,Q4_K_M,Q2_K where present)")
    p.add_argument("--revision", default=None)
    p.add_argument("--ladder", action="store_true", help="register the downloaded files as a ladder for `compare`")
    p.add_argument("--json", action="store_true")


def _types(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


# ---- fit ----------------------------------------------------------------------------------------


@command("fit", help="predict each GGUF's peak memory and whether it fits this machine", arguments=_fit_arguments)
def cmd_fit(args: argparse.Namespace) -> int:
    """Predicted peak memory of one worker = weights + KV cache at --ctx + compute buffers + runtime, against this
    machine's free RAM and each GPU's free VRAM. Local files and Hub files alike: a Hub file's header is read
    with HTTP range requests, without downloading its weights."""
    from workbench.core.hardware import machine
    from workbench.models.hub import HubError

    chosen = sum([bool(args.files), bool(args.demo), bool(args.repo)])
    if chosen != 1:
        raise UsageError("name GGUF files, or use --demo, or --repo REPO (exactly one of them)")
    if args.ctx < 64:
        raise UsageError("--ctx must be at least 64 tokens")
    try:
        fit.kv_bytes_per_element(args.kv_type)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.types and not args.repo:
        raise UsageError("--types goes with --repo")
    if args.repo:
        from workbench.models.hub import check_repo_id

        try:
            args.repo = check_repo_id(args.repo)
        except HubError as exc:
            raise UsageError(str(exc)) from None

    m = machine()
    unjudged: list[tuple[str, str]] = []  # (file as shown, "header unreadable: …"): rows without a verdict
    if args.repo:
        try:
            rows = _fit_repo(args, m)
        except HubError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        preds = [r.prediction for r in rows if r.prediction is not None]
        unjudged = [(r.entry.name, r.verdict_text) for r in rows if r.prediction is None]
        basis = {r.entry.name: r.header for r in rows}
        summaries = [r.summary() for r in rows]
    else:
        from workbench.files.gguf_info import GgufError, read_header

        if args.demo:
            from workbench.models.ladder import ensure_demo_ladder

            files = [f.path for f in ensure_demo_ladder(lambda msg: print(msg, file=sys.stderr)).files]
        else:
            files = args.files
        preds, summaries = [], []
        for f in files:
            try:
                preds.append(fit.predict(read_header(f), n_ctx=args.ctx, kv_type=args.kv_type,
                                         ram_available_bytes=m.ram_available_bytes, gpus=m.gpus))
                summaries.append(preds[-1].summary())
            except GgufError as exc:
                summaries.append(fit.unreadable_summary(f, exc))
                unjudged.append((os.path.basename(f), summaries[-1]["how"]))
        basis = {p.file: fit.HEADER_READ for p in preds}
    for name, why in unjudged:
        print(f"error: {name}: {why}", file=sys.stderr)

    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print(f"This machine: {m.one_line()}")
        print(f"Context {args.ctx} tokens, {args.kv_type} KV cache; keeping {fit.DEFAULT_HEADROOM:.0%} of free memory in reserve.")
        rows_out = []
        for p in preds:
            shown = os.path.basename(p.file) if os.path.isabs(p.file) else p.file  # a Hub file: its name in the repo
            rows_out.append([shown, p.quant_type or "-", fmt_bytes(p.weights_bytes), fmt_bytes(p.kv_bytes),
                             fmt_bytes(p.predicted_bytes), p.verdict, basis.get(p.file, "")])
        rows_out += [[name, "-", "-", "-", "-", why, "-"] for name, why in unjudged]  # no verdict: why instead
        print_table(["file", "type", "weights", "KV cache", "predicted peak", "verdict", "header"], rows_out)
        if preds:
            print(f"\nAll {len(preds)} kept warm at once: {fmt_bytes(fit.warm_together_bytes(preds))} of RAM "
                  f"({fmt_bytes(m.ram_available_bytes)} free now). Weights and KV cache are read from the headers "
                  "(or estimated from another file's header where the header column says so); compute buffers and "
                  "runtime overhead are estimated.")
    return 0 if not unjudged and preds else 1


def _fit_repo(args: argparse.Namespace, m: Any) -> list[Any]:
    from workbench.models import hub
    from workbench.models.acquire import fit_listing

    listing = hub.list_gguf(args.repo, args.revision)
    if listing.notice:
        print(f"note: {listing.notice}", file=sys.stderr)
    wanted = _types(args.types)
    if wanted:
        entries = [listing.find(w) for w in wanted]
        listing.files = [e for e in listing.files if e in entries]
    rows = fit_listing(listing, n_ctx=args.ctx, kv_type=args.kv_type, read="all",
                       ram_available_bytes=m.ram_available_bytes, gpus=m.gpus)
    return rows


# ---- download -----------------------------------------------------------------------------------


class _Bar:
    """A one-line text progress bar on stderr (plain lines when stderr is not a terminal)."""

    WIDTH = 30

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_file: str | None = None
        self.last_print = 0.0

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        new_file = p.filename != self.last_file
        if not (new_file or p.phase in ("done", "cached") or now - self.last_print >= (0.1 if self.tty else 1.0)):
            return
        self.last_print, self.last_file = now, p.filename
        frac = p.done_bytes / p.total_bytes if p.total_bytes else 0.0
        frac = min(1.0, frac)
        bar = "#" * int(frac * self.WIDTH)
        file_part = f"{p.file_bytes / 1e6:.1f}/{p.file_total / 1e6:.1f} MB" if p.file_total else f"{p.file_bytes / 1e6:.1f} MB"
        line = (f"[{bar:<{self.WIDTH}}] {frac:4.0%} {p.done_bytes / 1e6:.1f}/{p.total_bytes / 1e6:.1f} MB · "
                f"file {p.file_index + 1}/{p.file_count} {p.filename} {p.phase} {file_part}")
        if self.tty:
            print("\r" + line[:160].ljust(160), end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and self.last_file is not None:
            print(file=sys.stderr, flush=True)


@command("download", help="download GGUF quantizations from the Hugging Face Hub into the HF cache",
         arguments=_download_arguments)
def cmd_download(args: argparse.Namespace) -> int:
    """Downloads into the standard Hugging Face cache with resume (a cancelled or cut download continues with a
    Range request) and size + sha256 checks. Gated and private repos use HF_TOKEN, which is never printed."""
    from workbench.files.gguf_info import GgufError
    from workbench.models import hub
    from workbench.models.hub import HubError

    try:
        repo_id = hub.check_repo_id(args.repo)
    except HubError as exc:
        raise UsageError(str(exc)) from None
    bar = _Bar()
    try:
        listing = hub.list_gguf(repo_id, args.revision)
        if listing.notice:
            print(f"note: {listing.notice}", file=sys.stderr)
        wanted = _types(args.types)
        entries = [listing.find(w) for w in wanted] if wanted else listing.selected()
        if not entries:
            offered = ", ".join(listing.by_quant())
            raise HubError("file_not_found", f"{repo_id} offers none of the default quantizations; pick with --types "
                                             f"(offers: {offered})")
        ok, need, free = _disk(listing, entries)
        if not args.json:
            print(f"Downloading {len(entries)} file(s) from {repo_id} into {paths.hf_cache_dir()} "
                  f"({format_gb(need)} to fetch, {format_gb(free, 1)} free)", file=sys.stderr)
        try:
            done = hub.download(repo_id, entries, revision=args.revision, on_progress=bar, listing=listing)
        finally:
            bar.close()
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ladder = None
    if args.ladder:
        from workbench.models.acquire import register_download

        try:
            ladder = register_download(repo_id, done, listing.revision)
        except GgufError as exc:
            print(f"error: downloaded, but not usable as a ladder: {exc}", file=sys.stderr)
            return 1
    if args.json:
        out: Any = [d.summary() for d in done]
        if ladder is not None:
            out = {"files": out, "ladder": ladder.summary()}
        print(json.dumps(out, indent=2))
    else:
        print_table(["type", "file", "size", "verified", "note", "path"],
                    [[d.quant_type or "-", d.name, fmt_bytes(d.size_bytes),
                      "sha256" if d.verified else ("cached" if d.from_cache else "size only"),
                      "from cache" if d.from_cache else (f"resumed {fmt_bytes(d.resumed_bytes)}" if d.resumed_bytes else ""),
                      d.path] for d in done])
        if ladder is not None:
            print(f"\nLadder '{ladder.name}' registered in {ladder.directory}; compare it with: "
                  f"workbench compare {' '.join(d.path for d in done)} --prompt …")
    return 0


def _disk(listing: Any, entries: list[Any]) -> tuple[bool, int, int]:
    from workbench.models.acquire import selection_disk_check

    return selection_disk_check(listing, entries)
