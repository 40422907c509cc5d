"""`workbench report|export|import|history|leaderboard`: ratings, history and reports (of runs or a set
run), headless.

Exit codes follow workbench.cli.main: 0 success, 1 when something named does not exist or a file
cannot be read, 2 on usage errors. Mistakes are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbench.cli.main import UsageError, command, print_table
from workbench.core.text_units import counted
from workbench.files import json_fields as jf
from workbench.people.ratings import MODES, VOTE_MODES


def _store(args: argparse.Namespace):
    from workbench.storage.store import Store

    return Store(args.db) if args.db else Store()


def _run_ids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--runs takes comma-separated run ids, not {text!r}") from None


def _missing(store: Any, run_ids: list[int] | None) -> int:
    """Print the unknown ids (exit code 1) or return 0 when all exist."""
    missing = [i for i in run_ids or [] if store.get_run(i) is None]
    if missing:
        print(f"error: no run with id {', '.join(map(str, missing))} (see `workbench history`)", file=sys.stderr)
        return 1
    return 0


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help="database file (default: the workbench's own)")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_ids", metavar="RUN_ID", type=int, nargs="*")
    p.add_argument("--set", type=int, default=None, metavar="SET_RUN_ID",
                   help="report a whole set run (workbench batch, the Prompt sets page): its verdict, machine "
                        "measures and every prompt")
    p.add_argument("--out", "--html", dest="out", default=None, metavar="FILE.html",
                   help="self-contained HTML file (works offline)")
    p.add_argument("--markdown", "--md", dest="markdown", default=None, metavar="FILE.md")
    p.add_argument("--candidate", default=None, metavar="LABEL",
                   help="with --set: the quantization the report is about (default: the pair judged most, else the "
                        "smallest common quantization, e.g. Q4_K_M)")
    p.add_argument("--vs", default=None, metavar="LABEL",
                   help="with --set: what every output is measured against (default: Q8_0 when the set has it, "
                        "else its reference), e.g. --candidate Q4_K_M --vs Q8_0")
    _add_db(p)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("json", "csv"), required=True)
    p.add_argument("--out", required=True, metavar="PATH", help="a .json file, or a .zip for CSV")
    p.add_argument("--runs", default=None, help="comma-separated run ids (default: every run)")
    _add_db(p)


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file")
    _add_db(p)


def _history_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--search", default=None, help="text in the prompt")
    p.add_argument("--model", default=None, help="text in the model (ladder) name")
    p.add_argument("--since", default=None, help="YYYY-MM-DD")
    p.add_argument("--until", default=None, help="YYYY-MM-DD (inclusive)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    _add_db(p)


def _leaderboard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="exact model (ladder) name")
    p.add_argument("--category", default=None)
    p.add_argument("--rater", default=None)
    p.add_argument("--mode", choices=tuple(dict.fromkeys(MODES + VOTE_MODES)), default=None,
                   help="how the judgements were made (blind-set: votes of blind sessions over a set run)")
    p.add_argument("--runs", default=None, help="comma-separated run ids")
    p.add_argument("--set", type=int, default=None, metavar="SET_RUN_ID", help="only the judgements of one set run")
    p.add_argument("--json", action="store_true")
    _add_db(p)


@command("report", help="write an HTML (and/or Markdown) report of one or more runs, or of a set run",
         arguments=_report_arguments)
def cmd_report(args: argparse.Namespace) -> int:
    from workbench.people.report import UnknownRun, write_report
    from workbench.people.set_report import UnknownSetRun, write_set_report

    if bool(args.run_ids) == (args.set is not None):
        raise UsageError("name the runs (RUN_ID …) or one set run (--set SET_RUN_ID), not both")
    if (args.candidate or args.vs) and args.set is None:
        raise UsageError("--candidate and --vs choose the pair of a set report: use them with --set")
    if not args.out and not args.markdown:
        raise UsageError("say where to write the report: --out FILE.html and/or --markdown FILE.md")
    for target in (args.out, args.markdown):
        if target and not Path(target).expanduser().resolve().parent.is_dir():
            raise UsageError(f"the folder for {target} does not exist")
    store = _store(args)
    try:
        if args.set is not None:
            written = write_set_report(store, args.set, html_path=args.out, markdown_path=args.markdown,
                                       candidate=args.candidate, baseline=args.vs)
        else:
            written = write_report(store, args.run_ids, html_path=args.out, markdown_path=args.markdown)
    except UnknownSetRun as exc:
        print(f"error: {exc} (see `workbench history` or the History page's set runs)", file=sys.stderr)
        return 1
    except UnknownRun as exc:
        print(f"error: {exc} (see `workbench history`)", file=sys.stderr)
        return 1
    except ValueError as exc:  # a pair the set run did not compare
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


@command("export", help="export runs, outputs, ratings and votes (JSON, or a ZIP of CSVs)", arguments=_export_arguments)
def cmd_export(args: argparse.Namespace) -> int:
    from workbench.people import history

    store = _store(args)
    run_ids = _run_ids(args.runs)
    if _missing(store, run_ids):
        return 1
    out = Path(args.out)
    if not out.expanduser().resolve().parent.is_dir():
        raise UsageError(f"the folder for {out} does not exist")
    if args.format == "json":
        history.export_json(store, out, run_ids)
    else:
        if out.suffix.lower() != ".zip":
            raise UsageError("a CSV export is a ZIP of one CSV per table: give --out a name ending in .zip")
        history.export_csv(store, out, run_ids)
    n = len(run_ids) if run_ids is not None else len(history.search_runs(store, limit=10**9))
    print(f"wrote {out} ({counted(n, 'run')}, {args.format})")
    return 0


@command("import", help="add the runs of a JSON export to the database", arguments=_import_arguments)
def cmd_import(args: argparse.Namespace) -> int:
    from workbench.people import history

    path = Path(args.file)
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 1
    try:
        summary = history.import_json(_store(args), path)
    except history.ImportFileError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    print(f"imported {summary.runs} runs, {summary.results} outputs, {summary.ratings} ratings, {summary.votes} votes"
          + (f", {summary.set_runs} set runs" if summary.set_runs else ""))
    return 0


@command("history", help="list past runs, newest first", arguments=_history_arguments)
def cmd_history(args: argparse.Namespace) -> int:
    from workbench.people import history

    try:
        rows = history.search_runs(_store(args), text=args.search, model=args.model, since=args.since, until=args.until,
                                   limit=args.limit)
    except ValueError as exc:  # a date that does not parse
        raise UsageError(f"dates are YYYY-MM-DD: {exc}") from None
    if args.json:  # the run's id under `run_id`, as every other command's JSON names it
        print(json.dumps([{jf.RUN_ID: r.id, **{k: v for k, v in r.to_dict().items() if k != "id"}} for r in rows],
                         indent=2, ensure_ascii=False))
        return 0
    print_table(["id", "when", "kind", "status", "model", "outputs", "ratings", "votes", "prompt"],
                [[r.id, r.created_at[:19].replace("T", " "), r.kind, r.status, r.ladder_name or "-",
                  r.n_results, r.n_ratings, r.n_votes, " ".join((r.prompt or "").split())[:60]]
                 for r in rows])
    return 0


@command("leaderboard", help="ratings per quantization: means, win rates, Bradley–Terry strengths",
         arguments=_leaderboard_arguments)
def cmd_leaderboard(args: argparse.Namespace) -> int:
    from workbench.people.leaderboard import leaderboard

    store = _store(args)
    run_ids = _run_ids(args.runs)
    if _missing(store, run_ids):
        return 1
    try:
        board = leaderboard(store, model=args.model, category=args.category, rater=args.rater, mode=args.mode,
                            run_ids=run_ids, set_run_id=args.set)
    except LookupError:
        print(f"error: no set run with id {args.set}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(board.to_dict(), indent=2, ensure_ascii=False))
        return 0
    if board.empty:
        print("No ratings or votes match." if board.filters else "No ratings or votes yet.")
        return 0
    frame = board.to_frame().astype(object).fillna("-")
    print_table(list(frame.columns), frame.values.tolist())
    print(f"\n{board.n_ratings} ratings, {board.n_votes} pairwise votes"
          + (f" ({board.n_set_votes} of them from blind set sessions)" if board.n_set_votes else ""))
    print()
    for line in board.sentences + board.notes:
        print(line)
    return 0
