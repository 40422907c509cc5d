"""`workbench batch`: a prompt set through several quantizations as one stored, resumable set run.

    workbench batch --prompts our_prompts.csv --demo --labels Q8_0,Q4_K_M --json
    workbench batch --resume 7 --json           # after Ctrl-C (or a crash): runs only the unfinished prompts
    workbench batch --prompts p.toml --demo --noise 3   # the reference 3 more times per prompt: a noise floor

Ctrl-C once stops after the current prompt's contestant (that prompt is run again on resume); twice
interrupts at once. Exit codes follow workbench.cli.main: 0 success, 1 when a contestant failed on some
prompt, a model file is missing or the set run was stopped, 2 on usage errors (a bad prompt file included).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from workbench.cli.main import (
    UsageError,
    add_run_options,
    add_variant_options,
    command,
    fmt_num,
    print_table,
    settings_from_args,
    variants_from_args,
)
from workbench.files import json_fields as jf

if TYPE_CHECKING:  # the store is imported when a command runs, not when the CLI starts
    from workbench.storage.store import StoredResult, StoredSetRun

RESULT_KEYS = ("text", "stop_reason", "error", "completion_tokens", "ttft_s", "decode_tok_s", "first_divergence_token")


def _ladder(args: argparse.Namespace) -> tuple[Any, list[str] | None]:
    """The ladder named by --demo, --ladder DIR or FILE arguments, and the labels that take part."""
    from workbench.models import ladder as ladders

    sources = sum(bool(x) for x in (args.demo, args.ladder, args.files))
    if sources != 1:
        raise UsageError("name the models once: --demo, --ladder DIR or GGUF files")
    if args.demo:
        lad = ladders.ensure_demo_ladder(lambda msg: None if args.json else print(msg, file=sys.stderr))
    elif args.ladder:
        lad = ladders.load_ladder(args.ladder)
    else:
        lad, errors = ladders.ladder_from_files(args.files)
        if errors:
            raise UsageError("; ".join(f"{path}: {msg}" for path, msg in errors.items()))
    chosen = lad.split_labels(args.labels or "")
    return lad, chosen or (lad.labels() if args.files else None)  # files named one by one all take part


def _start(args: argparse.Namespace, store: Any) -> tuple[int, Any, list[str]]:
    """Parse the prompts, pick the models, store a new set run; (its id, the ladder, parse notes)."""
    from workbench.runs.prompt_sets import PromptSetError, load_prompt_set
    from workbench.runs.set_runs import SetRunError, start_set_run

    if not args.prompts:
        raise UsageError("give --prompts FILE (.txt, .csv, .toml or .jsonl), or --resume SET_RUN_ID")
    try:
        prompt_set = load_prompt_set(args.prompts, args.name)
    except PromptSetError as exc:
        raise UsageError(f"{args.prompts}: {exc}") from None
    lad, labels = _ladder(args)
    try:
        set_run_id = start_set_run(store, prompt_set, lad, labels=labels, settings=settings_from_args(args),
                                   noise_repeats=args.noise, variants=variants_from_args(args),
                                   variant_baseline=not args.no_baseline)
    except SetRunError as exc:
        raise UsageError(str(exc)) from None
    return set_run_id, lad, prompt_set.notes


def _batch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", help="GGUF files of one model (instead of --demo or --ladder)")
    p.add_argument("--prompts", default=None, help="prompt set: .txt (one per line), .csv, .toml or .jsonl")
    p.add_argument("--demo", action="store_true", help="use the embedded demo ladder")
    p.add_argument("--ladder", default=None, help="ladder directory (holding ladder.json)")
    p.add_argument("--labels", default=None, help="comma-separated labels that take part (the reference always does)")
    p.add_argument("--name", default=None, help="the set's name (default: the file's own name or its stem)")
    p.add_argument("--noise", type=int, default=0, metavar="N",
                   help="repeat the reference N more times per prompt (0-8) for a noise floor: other micro-batch "
                        "sizes when greedy, other seeds at temperature > 0")
    p.add_argument("--resume", type=int, default=None, metavar="SET_RUN_ID", help="run the unfinished prompts of a set run")
    p.add_argument("--db", default=None, help="database file (default: the app's)")
    p.add_argument("--json", action="store_true")
    add_run_options(p)
    add_variant_options(p)


@command("batch", help="run a prompt set through several quantizations as one stored set run",
         arguments=_batch_arguments)
def cmd_batch(args: argparse.Namespace) -> int:
    from workbench.engine.pool import WorkerPool
    from workbench.runs.set_runs import SetProgress, SetRunError, run_set
    from workbench.storage.store import Store

    store = Store(args.db) if args.db else Store()
    notes: list[str] = []
    if args.resume is not None:
        if args.prompts or args.demo or args.ladder or args.files:
            raise UsageError("--resume continues a stored set run with its own prompts and models: name nothing else")
        if store.get_set_run(args.resume) is None:
            print(f"error: no set run with id {args.resume}", file=sys.stderr)
            return 1
        set_run_id, lad = args.resume, None
    else:
        set_run_id, lad, notes = _start(args, store)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    def on_progress(p: SetProgress) -> None:
        if not args.json and p.phase in ("prompt", "end"):
            print(f"[set run {p.set_run_id}] {p.message()}", file=sys.stderr, flush=True)

    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def stop(signum: int, frame: Any) -> None:  # the first Ctrl-C stops gracefully, the next one interrupts
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("stopping after the current contestant; Ctrl-C again to interrupt", file=sys.stderr, flush=True)

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, stop)
    pool = WorkerPool()
    try:
        outcome = run_set(pool, store, lad, set_run_id, on_progress, cancel)
    except SetRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
        pool.shutdown()
    out = set_run_json(store, set_run_id)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        _print_table(out)
    failed = any(r["error"] for p in out["prompts"] for r in p["results"])
    return 0 if outcome.status == "done" and not failed else 1


def set_run_json(store: Any, set_run_id: int) -> dict[str, Any]:
    """A stored set run in the CLI's shared vocabulary: each prompt with its newest run and that run's results,
    each result with the page's `summary` line against the reference and its changed `facts` (quality.summary,
    quality.facts), and with a noise floor each prompt's reference repeats and each result's place against them."""
    from workbench.quality import noise_floor
    from workbench.quality.summary import summarize

    set_run: StoredSetRun = store.get_set_run(set_run_id)
    reference = set_run.reference_label
    prompts = []
    for index, item in enumerate(set_run.prompts):
        child = set_run.child(index)
        run = store.get_run(child.run_id) if child else None
        results = [_result(r) for r in run.results] if run else []
        entry = {"index": index, "prompt": item["prompt"],
                 **{k: item[k] for k in ("id", "category", "system") if item.get(k) is not None},
                 jf.RUN_ID: child.run_id if child else None, "status": child.status if child else "not run",
                 "results": results}
        repeats = store.reference_repeats(child.run_id) if child and set_run.noise_repeats else []
        ref = next((r for r in results if r["label"] == reference and not r["error"]), None)
        floor = noise_floor.floor_of(ref["text"] or "", repeats) if ref is not None else None
        # what the Prompt sets page shows per cell: the summary line against the reference and the changed facts
        summaries: dict[str, Any] = {}
        for r in results:
            r["summary"], r["facts"] = None, None  # None: nothing to read against (an error, or no reference output)
            if r["label"] == reference:
                r["facts"] = []
            elif ref is not None and not r["error"]:
                summaries[r["label"]] = s = summarize(ref["text"] or "", r["text"] or "")
                r["summary"] = s.sentence
                r["facts"] = [{"kind": c.kind, "status": c.status, "reference": c.reference, "quantization": c.output}
                              for c in s.facts]
        if set_run.noise_repeats:
            entry["reference_repeats"] = [{k: r[k] for k in ("repeat", "perturbation", "text", "completion_tokens",
                                                             "stop_reason", "error")} for r in repeats]
            entry["noise_floor"] = floor.to_dict() if floor else None
            for r in results:
                r["vs_noise_floor"] = None  # within / beyond; None for the reference, an error, or no floor
                if floor is not None and r["label"] in summaries:
                    r["vs_noise_floor"] = noise_floor.standing(summaries[r["label"]], floor)
        prompts.append(entry)
    whole = noise_floor.stored_set_floor(store, set_run)
    return {jf.SET_RUN_ID: set_run_id, "name": set_run.name, "status": set_run.status,
            "ladder": set_run.ladder_name, jf.REFERENCE: reference, "labels": set_run.labels,
            "settings": set_run.settings, "noise_repeats": set_run.noise_repeats,
            "noise_floor": {**whole.to_dict(), "sentence": whole.sentence(),
                            "quants": [{**q.to_dict(), "sentence": q.sentence()} for q in whole.quants]}
            if whole else None,
            "prompts": prompts}


def _result(row: StoredResult) -> dict[str, Any]:
    fields = jf.gguf_fields(label=row.label, quant_type=row.quant_type, file=row.file, size_bytes=row.size_bytes,
                            bits_per_weight=row.bits_per_weight, is_reference=row.is_reference)
    variant = {k: row.metrics.get(k) for k in ("kv_type_k", "kv_type_v", "n_ctx")}  # None in runs from before variants
    return {**fields, **{k: getattr(row, k) for k in RESULT_KEYS}, **variant}


def _print_table(out: dict[str, Any]) -> None:
    rows = []
    for p in out["prompts"]:
        head = " ".join(p["prompt"].split())
        head = head[:40] + ("…" if len(head) > 40 else "")
        for r in p["results"] or [{}]:
            text = " ".join((r.get("error") or r.get("text") or "").split())
            rows.append([p["index"] + 1, head, p["run_id"] or "-", p["status"], r.get("label", "-"),
                         r.get("stop_reason") or "-", r.get("completion_tokens") or "-",
                         fmt_num(r.get("decode_tok_s")), text[:50] + ("…" if len(text) > 50 else "")])
            head = ""
    print_table(["#", "prompt", "run", "status", "label", "stop", "tokens", "decode tok/s", "output"], rows)
    if out.get("noise_floor"):
        print("\n" + out["noise_floor"]["sentence"])
        for q in out["noise_floor"]["quants"]:
            print(q["sentence"])
    print(f"\nset run {out[jf.SET_RUN_ID]} ({out['name']}): {out['status']}"
          + ("" if out["status"] == "done" else f"; resume with: workbench batch --resume {out[jf.SET_RUN_ID]}"))
