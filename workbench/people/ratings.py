"""Quality judgements by people: 1–5 ratings of outputs and pairwise votes between two outputs.

Three ways to judge (the `mode` of a rating or vote):
- "open": the quantization names are shown while rating.
- "blind": outputs are shown as letters A, B, C… in a random order that is fixed per run and
  rater session; names are revealed only once every output was rated (or, for two outputs, once
  a vote covers the pair), so the label cannot sway the judgement.
- "pairwise": two outputs side by side, the rater picks the better one or a tie (a `votes` row).
  A pairwise vote made with the names hidden is stored with mode "blind".

Every rating and vote snapshots what was judged (model, quantization, prompt, category,
settings) from its run in the same transaction, so it stays meaningful on its own and leaderboards
can filter without joins. Each save is its own short transaction: nothing rated is lost when the
app crashes, and several tabs or processes can rate at once.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.storage.store import Store, now_iso

MODES = ("open", "blind", "pairwise")
VOTE_MODES = ("pairwise", "blind")
WINNERS = ("a", "b", "tie")
ANONYMOUS = "anonymous"


class RatingError(ValueError):
    """A rating or vote that cannot be saved (unknown run or output, bad score or mode): a plain message."""


def rater_identity(row: dict[str, Any]) -> str:
    """Who made a rating or vote: the rater's name, else their session, else 'anonymous'.

    Used to tell one person's repeated judgements (the newest counts) from another person's.
    """
    return (row.get("rater") or "").strip() or (row.get("session") or "").strip() or ANONYMOUS


def _snapshot(conn: sqlite3.Connection, run_id: int,
              labels: Sequence[str]) -> tuple[sqlite3.Row, dict[str, sqlite3.Row]]:
    """The run and its results for `labels`, read inside the caller's transaction; RatingError if missing."""
    run = conn.execute("SELECT id, ladder_name, prompt, category, settings_json FROM runs WHERE id = ?",
                       (run_id,)).fetchone()
    if run is None:
        raise RatingError(f"there is no run {run_id}")
    results = {}
    for label in labels:
        row = conn.execute("SELECT id, label, quant_type FROM results WHERE run_id = ? AND label = ?",
                           (run_id, label)).fetchone()
        if row is None:
            raise RatingError(f"run {run_id} has no output labelled {label!r}")
        results[label] = row
    return run, results


def add_rating(
    store: Store,
    *,
    run_id: int,
    label: str,
    score: int,
    rater: str | None = None,
    mode: str = "open",
    comment: str | None = None,
    session: str | None = None,
    display_letter: str | None = None,
) -> int:
    """Save one 1–5 rating of one output at once, with its snapshot; returns the rating id."""
    if mode not in MODES:
        raise RatingError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    try:
        score = int(score)
    except (TypeError, ValueError):
        raise RatingError(f"a rating is a whole number from 1 to 5, not {score!r}") from None
    if not 1 <= score <= 5:
        raise RatingError(f"a rating is a whole number from 1 to 5, not {score}")
    with store.transaction() as conn:
        run, results = _snapshot(conn, run_id, [label])
        res = results[label]
        cur = conn.execute(
            """INSERT INTO ratings (run_id, result_id, label, score, comment, rater, mode, created_at, session,
               display_letter, quant_type, ladder_name, prompt, category, settings_json)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (run_id, res["id"], label, score, (comment or "").strip() or None, (rater or "").strip() or None, mode,
             now_iso(), session or None, display_letter, res["quant_type"], run["ladder_name"], run["prompt"],
             run["category"], run["settings_json"]),
        )
        return int(cur.lastrowid)


def add_vote(
    store: Store,
    *,
    run_id: int,
    label_a: str,
    label_b: str,
    winner: str,
    rater: str | None = None,
    mode: str = "pairwise",
    comment: str | None = None,
    session: str | None = None,
) -> int:
    """Save one pairwise judgement: `winner` is 'a', 'b', 'tie' (or one of the two labels)."""
    if label_a == label_b:
        raise RatingError("a pairwise vote needs two different outputs")
    winner = {label_a: "a", label_b: "b"}.get(winner, winner)
    if winner not in WINNERS:
        raise RatingError(f"the winner must be 'a', 'b' or 'tie', not {winner!r}")
    if mode not in VOTE_MODES:
        raise RatingError(f"a vote's mode must be one of {', '.join(VOTE_MODES)}, not {mode!r}")
    with store.transaction() as conn:
        run, results = _snapshot(conn, run_id, [label_a, label_b])
        cur = conn.execute(
            """INSERT INTO votes (run_id, label_a, label_b, quant_type_a, quant_type_b, winner, rater, session, mode,
               comment, ladder_name, prompt, category, settings_json, created_at)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            (run_id, label_a, label_b, results[label_a]["quant_type"], results[label_b]["quant_type"], winner,
             (rater or "").strip() or None, session or None, mode, (comment or "").strip() or None, run["ladder_name"],
             run["prompt"], run["category"], run["settings_json"], now_iso()),
        )
        return int(cur.lastrowid)


# ---- blind mode -------------------------------------------------------------------------------
def letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA: display letters for any number of outputs."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(ord("A") + rem) + out
    return out


def blind_order(run_id: int, labels: Iterable[str], seed: str | int) -> dict[str, str]:
    """letter → label, shuffled reproducibly per (run, rater session seed).

    The same session sees the same letters on every rerender; another session (or run) gets another
    order, so a letter never stands for the same quantization everywhere. Independent of the order
    `labels` come in.
    """
    shuffled = sorted(set(labels))
    random.Random(f"blind:{run_id}:{seed}").shuffle(shuffled)
    return {letter(i): label for i, label in enumerate(shuffled)}


def names_revealed(
    ratings_so_far: Iterable[dict[str, Any]],
    labels: Iterable[str],
    votes_so_far: Iterable[dict[str, Any]] = (),
) -> bool:
    """Whether blind names may be shown: every output in `labels` has a rating, or every pair has a vote.

    Pass only this rater's (or session's) ratings and votes for this run: someone else's
    judgements must not unblind you.
    """
    wanted = set(labels)
    if not wanted:
        return False
    rated = {r["label"] for r in ratings_so_far}
    if wanted <= rated:
        return True
    pairs = {frozenset((v["label_a"], v["label_b"])) for v in votes_so_far}
    ordered = sorted(wanted)
    needed = {frozenset((a, b)) for i, a in enumerate(ordered) for b in ordered[i + 1:]}
    return bool(needed) and needed <= pairs


@dataclass
class BlindView:
    """What a blind-mode page shows for one run and rater session."""

    run_id: int
    order: dict[str, str]  # letter → label
    rated: dict[str, int] = field(default_factory=dict)  # label → this session's newest score
    revealed: bool = False

    def letter_of(self, label: str) -> str:
        return next(k for k, v in self.order.items() if v == label)

    def display_name(self, label: str) -> str:
        """'B' while blind, 'B · Q4_K_M' once revealed."""
        return f"{self.letter_of(label)} · {label}" if self.revealed else self.letter_of(label)


def blind_view(store: Store, run_id: int, *, session: str, rater: str | None = None,
               labels: Sequence[str] | None = None) -> BlindView:
    """Letters, this session's ratings so far, and whether names are revealed, for a blind page."""
    run = store.get_run(run_id)
    if run is None:
        raise RatingError(f"there is no run {run_id}")
    labels = list(labels) if labels is not None else [r["label"] for r in run["results"] if not r.get("error")]
    mine = list_ratings(store, run_id=run_id, session=session, rater=rater)
    votes = list_votes(store, run_id=run_id, session=session, rater=rater)
    rated = {r["label"]: r["score"] for r in mine}
    return BlindView(run_id, blind_order(run_id, labels, session), rated, names_revealed(mine, labels, votes))


# ---- reading ----------------------------------------------------------------------------------
def _where(alias: str, *, run_id: int | None, run_ids: Sequence[int] | None, model: str | None, category: str | None,
           rater: str | None, mode: str | None, session: str | None) -> tuple[str, list[Any]]:
    where, args = [], []
    if run_id is not None:
        where.append(f"{alias}.run_id = ?")
        args.append(run_id)
    if run_ids is not None:
        where.append(f"{alias}.run_id IN ({', '.join('?' * len(run_ids)) or 'NULL'})")
        args += list(run_ids)
    if model:
        where.append(f"COALESCE({alias}.ladder_name, runs.ladder_name) = ?")
        args.append(model)
    if category:
        where.append(f"COALESCE({alias}.category, runs.category) = ?")
        args.append(category)
    if rater:
        where.append(f"{alias}.rater = ?")
        args.append(rater)
    if mode:
        where.append(f"{alias}.mode = ?")
        args.append(mode)
    if session:
        where.append(f"{alias}.session = ?")
        args.append(session)
    return (" WHERE " + " AND ".join(where)) if where else "", args


def list_ratings(
    store: Store,
    *,
    run_id: int | None = None,
    run_ids: Sequence[int] | None = None,
    model: str | None = None,
    category: str | None = None,
    rater: str | None = None,
    mode: str | None = None,
    session: str | None = None,
) -> list[dict[str, Any]]:
    """Ratings, oldest first, filtered; snapshot columns fall back to the run for rows saved without one."""
    where, args = _where("r", run_id=run_id, run_ids=run_ids, model=model, category=category, rater=rater, mode=mode,
                         session=session)
    sql = f"""SELECT r.id, r.run_id, r.result_id, r.label, r.score, r.comment, r.rater, r.session, r.mode,
                     r.display_letter, r.created_at,
                     COALESCE(r.quant_type, res.quant_type) AS quant_type,
                     COALESCE(r.ladder_name, runs.ladder_name) AS ladder_name,
                     COALESCE(r.prompt, runs.prompt) AS prompt,
                     COALESCE(r.category, runs.category) AS category,
                     COALESCE(r.settings_json, runs.settings_json) AS settings_json
              FROM ratings r JOIN runs ON runs.id = r.run_id
              LEFT JOIN results res ON res.run_id = r.run_id AND res.label = r.label
              {where} ORDER BY r.id"""
    with store._connect() as conn:
        return [dict(row) for row in conn.execute(sql, args)]


def list_votes(
    store: Store,
    *,
    run_id: int | None = None,
    run_ids: Sequence[int] | None = None,
    model: str | None = None,
    category: str | None = None,
    rater: str | None = None,
    mode: str | None = None,
    session: str | None = None,
) -> list[dict[str, Any]]:
    """Pairwise votes, oldest first, filtered like `list_ratings`."""
    where, args = _where("v", run_id=run_id, run_ids=run_ids, model=model, category=category, rater=rater, mode=mode,
                         session=session)
    sql = f"SELECT v.* FROM votes v JOIN runs ON runs.id = v.run_id{where} ORDER BY v.id"
    with store._connect() as conn:
        return [dict(row) for row in conn.execute(sql, args)]


def filter_options(store: Store) -> dict[str, list[str]]:
    """Distinct models, categories, raters and modes among ratings and votes, for filter widgets."""
    out: dict[str, set[str]] = {"model": set(), "category": set(), "rater": set(), "mode": set()}
    for row in list_ratings(store) + list_votes(store):
        for key, col in (("model", "ladder_name"), ("category", "category"), ("rater", "rater"), ("mode", "mode")):
            if row.get(col):
                out[key].add(row[col])
    return {k: sorted(v) for k, v in out.items()}
