"""Quality judgements by people: 1–5 ratings of outputs and pairwise votes between two outputs.

Three ways to judge (the `mode` of a rating or vote):
- "open": the quantization names are shown while rating.
- "blind": outputs are shown as letters A, B, C… in a random order that is fixed per run and
  rater session; names are revealed only once every output was rated (or, for two outputs, once
  a vote covers the pair), so the label cannot sway the judgement.
- "pairwise": two outputs side by side, the rater picks the better one or a tie (a `votes` row).
  A pairwise vote made with the names hidden is stored with mode "blind".
- "blind-set": a pairwise vote made in a blind session over a whole prompt set (people.verdict), one
  prompt after another; its `session` names the session, whose seed fixed the prompt order.

Every rating and vote snapshots what was judged (model, quantization, prompt, category,
settings) from its run in the same transaction, so it stays meaningful on its own and leaderboards
can filter without joins. Each save is its own short transaction: nothing rated is lost when the
app crashes, and several tabs or processes can rate at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.storage.store import JudgementFilters, RowMissing, Store

MODES = ("open", "blind", "pairwise")
SET_MODE = "blind-set"  # the mode of votes made in a blind session over a set run (people.set_session)
VOTE_MODES = ("pairwise", "blind", SET_MODE)
WINNERS = ("a", "b", "tie")
ANONYMOUS = "anonymous"


class RatingError(ValueError):
    """A rating or vote that cannot be saved (unknown run or output, bad score or mode): a plain message."""


def rater_identity(row: dict[str, Any]) -> str:
    """Who made a rating or vote: the rater's name, else their session, else 'anonymous'.

    Used to tell one person's repeated judgements (the newest counts) from another person's.
    """
    return (row.get("rater") or "").strip() or (row.get("session") or "").strip() or ANONYMOUS


def _missing(exc: RowMissing) -> RatingError:
    if exc.label is None:
        return RatingError(f"there is no run {exc.run_id}")
    return RatingError(f"run {exc.run_id} has no output labelled {exc.label!r}")


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
    try:
        return store.add_rating_snapshot(
            run_id=run_id, label=label, score=score, comment=(comment or "").strip() or None,
            rater=(rater or "").strip() or None, mode=mode, session=session or None, display_letter=display_letter)
    except RowMissing as exc:
        raise _missing(exc) from None


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
    try:
        return store.add_vote(run_id=run_id, label_a=label_a, label_b=label_b, winner=winner,
                              rater=(rater or "").strip() or None, session=session or None, mode=mode,
                              comment=(comment or "").strip() or None)
    except RowMissing as exc:
        raise _missing(exc) from None


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
    labels = list(labels) if labels is not None else [r.label for r in run.results if not r.error]
    mine = list_ratings(store, run_id=run_id, session=session, rater=rater)
    votes = list_votes(store, run_id=run_id, session=session, rater=rater)
    rated = {r["label"]: r["score"] for r in mine}
    return BlindView(run_id, blind_order(run_id, labels, session), rated, names_revealed(mine, labels, votes))


# ---- reading ----------------------------------------------------------------------------------
def list_ratings(store: Store, **filters: Any) -> list[dict[str, Any]]:
    """Ratings, oldest first, filtered by any of JudgementFilters' fields (run_id, run_ids, model, category, rater,
    mode, session; a name it does not have is a TypeError); snapshot columns fall back to the run for rows saved
    without one."""
    return store.find_ratings(JudgementFilters(**filters))


def list_votes(store: Store, **filters: Any) -> list[dict[str, Any]]:
    """Pairwise votes, oldest first, filtered like `list_ratings`."""
    return store.find_votes(JudgementFilters(**filters))


def filter_options(store: Store) -> dict[str, list[str]]:
    """Distinct models, categories, raters and modes among ratings and votes, for filter widgets."""
    out: dict[str, set[str]] = {"model": set(), "category": set(), "rater": set(), "mode": set()}
    for row in list_ratings(store) + list_votes(store):
        for key, col in (("model", "ladder_name"), ("category", "category"), ("rater", "rater"), ("mode", "mode")):
            if row.get(col):
                out[key].add(row[col])
    return {k: sorted(v) for k, v in out.items()}
