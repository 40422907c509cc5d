"""Which quantization do people prefer, and can the ratings so far tell them apart?

Per quantization (its quant type; the label where a result has none) this computes:
- the mean 1–5 rating with a 95% t-interval (scipy) and n;
- head-to-head win/tie/loss rates over all comparisons: explicit pairwise votes, plus pairs implied
  by ratings (one rater rating two outputs of the same run: the higher score wins, equal is a tie);
- Bradley–Terry strengths fitted to those comparisons (Hunter's MM algorithm, ties as half a win
  each, a weak prior of one virtual tie against an average opponent so an item that never won
  still gets a finite strength), with percentile 95% intervals from a parametric bootstrap
  (outcomes redrawn from the fit, 500 times, fixed seed: the same data always gives the same
  intervals; see bootstrap_bradley_terry for why not resampling the outcomes themselves);
- plain sentences saying, for each neighbour pair in the ranking, whether the data separates them.

A rater who judges the same output (or pair) twice counts once, with their newest judgement.
Quantizations of different models pool under one quant type unless filtered by model.
Votes from blind sessions over a set run (mode "blind-set") count like any pairwise vote; `n_set_votes` says how
many of the votes came from them, and `set_run_id` narrows the board to one set run's prompts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from workbench.files.quant_names import is_imatrix_name
from workbench.people.ratings import SET_MODE, list_ratings, list_votes, rater_identity
from workbench.storage.store import Store

N_BOOT = 500
PRIOR_TIES = 1.0  # virtual games, drawn, against an opponent of strength 1, per item
CONFIDENCE = 0.95
MIN_SD = 0.5  # rating points; see mean_interval

# One comparison: (item a, item b, a's score: 1 win, 0.5 tie, 0 loss)
Pair = tuple[str, str, float]


@dataclass
class QuantStanding:
    """One quantization's line on the leaderboard."""

    key: str
    rank: int = 0
    n_ratings: int = 0
    mean_rating: float | None = None
    rating_low: float | None = None
    rating_high: float | None = None
    comparisons: int = 0
    wins: int = 0
    ties: int = 0
    losses: int = 0
    strength: float | None = None
    strength_low: float | None = None
    strength_high: float | None = None

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.comparisons if self.comparisons else None

    @property
    def tie_rate(self) -> float | None:
        return self.ties / self.comparisons if self.comparisons else None

    @property
    def loss_rate(self) -> float | None:
        return self.losses / self.comparisons if self.comparisons else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "win_rate": self.win_rate, "tie_rate": self.tie_rate, "loss_rate": self.loss_rate}


@dataclass
class Leaderboard:
    standings: list[QuantStanding]
    sentences: list[str]
    n_ratings: int
    n_votes: int
    n_rating_pairs: int
    filters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    n_set_votes: int = 0  # of n_votes, those made in blind sessions over a set run

    @property
    def empty(self) -> bool:
        return not self.standings

    def to_dict(self) -> dict[str, Any]:
        return {"filters": self.filters, "n_ratings": self.n_ratings, "n_votes": self.n_votes,
                "n_set_votes": self.n_set_votes, "n_rating_pairs": self.n_rating_pairs, "standings": [s.to_dict() for s in self.standings],
                "separability": self.sentences, "notes": self.notes}

    def to_frame(self):
        """A display table (pandas DataFrame), one row per quantization, best first."""
        import pandas as pd

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.0f}%"

        def interval(lo: float | None, hi: float | None, digits: int) -> str:
            return "-" if lo is None or hi is None else f"{lo:.{digits}f} – {hi:.{digits}f}"

        rows = [{
            "rank": s.rank,
            "quantization": s.key,
            "ratings (n)": s.n_ratings,
            "mean rating": None if s.mean_rating is None else round(s.mean_rating, 2),
            "rating 95% CI": interval(s.rating_low, s.rating_high, 2),
            "comparisons (n)": s.comparisons,
            "win": pct(s.win_rate),
            "tie": pct(s.tie_rate),
            "loss": pct(s.loss_rate),
            "BT strength": None if s.strength is None else round(s.strength, 2),
            "BT 95% interval": interval(s.strength_low, s.strength_high, 2),
        } for s in self.standings]
        return pd.DataFrame(rows, columns=["rank", "quantization", "ratings (n)", "mean rating", "rating 95% CI",
                                           "comparisons (n)", "win", "tie", "loss", "BT strength", "BT 95% interval"])


def item_key(quant_type: str | None, label: str) -> str:
    """What one standing counts: the quantization type across ladders, but a file made with an importance matrix by
    its own label, so "Q4_K_M · imatrix (…)" never merges with the static Q4_K_M (or another matrix's)."""
    return label if is_imatrix_name(label) else quant_type or label


# ---- turning judgements into comparisons --------------------------------------------------------
def newest_ratings(ratings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One rating per (run, rater, output): the newest (rows come oldest first)."""
    latest: dict[tuple[Any, str, str], dict[str, Any]] = {}
    for r in ratings:
        latest[(r["run_id"], rater_identity(r), r["label"])] = r
    return list(latest.values())


def rating_pairs(ratings: Iterable[dict[str, Any]]) -> list[Pair]:
    """Comparisons implied by ratings: two outputs of one run rated by one rater."""
    groups: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for r in newest_ratings(ratings):
        groups.setdefault((r["run_id"], rater_identity(r)), []).append(r)
    pairs: list[Pair] = []
    for rows in groups.values():
        rows.sort(key=lambda r: r["label"])
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                ka, kb = item_key(a.get("quant_type"), a["label"]), item_key(b.get("quant_type"), b["label"])
                if ka != kb:
                    pairs.append((ka, kb, 1.0 if a["score"] > b["score"] else 0.5 if a["score"] == b["score"] else 0.0))
    return pairs


def counted_votes(votes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The votes that become comparisons: the newest per (run, rater, pair of outputs), between two quantizations
    (two outputs of the same quant type compare nothing)."""
    latest: dict[tuple[Any, str, frozenset[str]], dict[str, Any]] = {}
    for v in votes:
        latest[(v["run_id"], rater_identity(v), frozenset((v["label_a"], v["label_b"])))] = v
    return [v for v in latest.values()
            if item_key(v.get("quant_type_a"), v["label_a"]) != item_key(v.get("quant_type_b"), v["label_b"])]


def vote_pairs(votes: Iterable[dict[str, Any]]) -> list[Pair]:
    """Comparisons from pairwise votes, one per (run, rater, pair of outputs): the newest."""
    return [(item_key(v.get("quant_type_a"), v["label_a"]), item_key(v.get("quant_type_b"), v["label_b"]),
             {"a": 1.0, "b": 0.0, "tie": 0.5}[v["winner"]]) for v in counted_votes(votes)]


# ---- Bradley–Terry ----------------------------------------------------------------------------
def _win_matrix(items: Sequence[str], pairs: Iterable[Pair]) -> np.ndarray:
    index = {k: i for i, k in enumerate(items)}
    w = np.zeros((len(items), len(items)))
    for a, b, s in pairs:
        w[index[a], index[b]] += s
        w[index[b], index[a]] += 1.0 - s
    return w


def _fit_batch(w: np.ndarray, prior: float = PRIOR_TIES, iters: int = 2000, tol: float = 1e-9) -> np.ndarray:
    """MM fit of Bradley–Terry strengths for a batch of win matrices (B, K, K); geometric mean 1 each."""
    n = w + np.swapaxes(w, 1, 2)
    wins = w.sum(axis=2) + prior / 2
    p = np.ones(w.shape[:2])
    for _ in range(iters):
        denom = (n / (p[:, :, None] + p[:, None, :])).sum(axis=2) + prior / (p + 1.0)
        new = wins / denom
        done = np.max(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    return p / np.exp(np.log(p).mean(axis=1, keepdims=True))


def fit_bradley_terry(items: Sequence[str], pairs: Sequence[Pair]) -> dict[str, float]:
    """Strengths (geometric mean 1): P(a beats b) = s_a / (s_a + s_b)."""
    if not items:
        return {}
    p = _fit_batch(_win_matrix(items, pairs)[None])[0]
    return dict(zip(items, p.tolist(), strict=True))


def bootstrap_bradley_terry(items: Sequence[str], pairs: Sequence[Pair], n_boot: int = N_BOOT,
                            seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile 95% intervals of each strength by a parametric bootstrap.

    Each resample keeps which pairs met and how often, and redraws every outcome from the fitted
    model (ties at each pair's observed tie rate, decisive games so each pair's expected score
    matches the fit). Resampling the observed outcomes instead would give a zero-width interval
    to "2 of 2 won", claiming a separation two votes cannot support.
    """
    if not items or not pairs:
        return {}
    index = {k: i for i, k in enumerate(items)}
    k = len(items)
    games = np.zeros((k, k))
    ties = np.zeros((k, k))
    for a, b, s in pairs:
        i, j = sorted((index[a], index[b]))
        games[i, j] += 1
        ties[i, j] += s == 0.5
    fitted = _fit_batch(_win_matrix(items, pairs)[None])[0]
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, k, k))
    for i, j in zip(*np.nonzero(games), strict=True):
        n, tie_rate = int(games[i, j]), ties[i, j] / games[i, j]
        q = fitted[i] / (fitted[i] + fitted[j])  # expected score of i against j, ties counting half
        decisive_win = 0.5 if tie_rate >= 1.0 else float(np.clip((q - 0.5 * tie_rate) / (1.0 - tie_rate), 0.0, 1.0))
        t = rng.binomial(n, tie_rate, size=n_boot)
        won = rng.binomial(n - t, decisive_win)
        w[:, i, j] = won + 0.5 * t
        w[:, j, i] = (n - t - won) + 0.5 * t
    p = _fit_batch(w)
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(p, [alpha, 1 - alpha], axis=0)
    return {item: (float(lo[i]), float(hi[i])) for i, item in enumerate(items)}


def mean_interval(scores: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean and its 95% t-interval; no interval from a single score.

    The standard deviation is floored at MIN_SD points, so a few identical scores do not read as
    certainty (a zero-width interval would "separate" two quantizations rated twice each).
    """
    from scipy import stats

    x = np.asarray(scores, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None, None
    sem = max(float(x.std(ddof=1)), MIN_SD) / np.sqrt(len(x))
    lo, hi = stats.t.interval(CONFIDENCE, len(x) - 1, loc=mean, scale=sem)
    return mean, float(lo), float(hi)


# ---- the leaderboard --------------------------------------------------------------------------
def separability(standings: Sequence[QuantStanding]) -> list[str]:
    """For each neighbour pair in the ranking: separated by their intervals, or not enough data yet.

    Bradley–Terry intervals decide where both have them; otherwise the mean-rating intervals.
    """
    out = []
    for upper, lower in zip(standings, standings[1:], strict=False):
        if upper.strength_low is not None and lower.strength_high is not None:
            if upper.strength_low > lower.strength_high:
                out.append(f"{upper.key} is rated above {lower.key} (Bradley–Terry strength {upper.strength:.2f}, "
                           f"95% interval {upper.strength_low:.2f}–{upper.strength_high:.2f}, "
                           f"vs {lower.strength:.2f}, "
                           f"{lower.strength_low:.2f}–{lower.strength_high:.2f}; "
                           f"{upper.comparisons} and {lower.comparisons} comparisons).")
                continue
        elif upper.rating_low is not None and lower.rating_high is not None and upper.rating_low > lower.rating_high:
            out.append(f"{upper.key} is rated above {lower.key} (mean rating {upper.mean_rating:.2f}, 95% CI "
                       f"{upper.rating_low:.2f}–{upper.rating_high:.2f}, n={upper.n_ratings}, vs "
                       f"{lower.mean_rating:.2f}, {lower.rating_low:.2f}–{lower.rating_high:.2f}, "
                       f"n={lower.n_ratings}).")
            continue
        out.append(f"Not enough ratings to separate {upper.key} from {lower.key} (their 95% intervals overlap).")
    return out


def build_leaderboard(ratings: Sequence[dict[str, Any]], votes: Sequence[dict[str, Any]], *, n_boot: int = N_BOOT,
                      seed: int = 0, filters: dict[str, Any] | None = None) -> Leaderboard:
    """The leaderboard of these ratings and votes (already filtered); pure, for tests and other callers."""
    kept = newest_ratings(ratings)
    from_ratings = rating_pairs(kept)
    counted = counted_votes(votes)
    from_votes = vote_pairs(counted)
    pairs = from_ratings + from_votes
    scores: dict[str, list[float]] = {}
    for r in kept:
        scores.setdefault(item_key(r.get("quant_type"), r["label"]), []).append(float(r["score"]))
    standings: dict[str, QuantStanding] = {}

    def standing(key: str) -> QuantStanding:
        return standings.setdefault(key, QuantStanding(key))

    for key, xs in scores.items():
        s = standing(key)
        s.n_ratings = len(xs)
        s.mean_rating, s.rating_low, s.rating_high = mean_interval(xs)
    for a, b, outcome in pairs:
        for key, mine in ((a, outcome), (b, 1.0 - outcome)):
            s = standing(key)
            s.comparisons += 1
            if mine == 1.0:
                s.wins += 1
            elif mine == 0.0:
                s.losses += 1
            else:
                s.ties += 1
    compared = sorted({k for a, b, _ in pairs for k in (a, b)})
    strengths = fit_bradley_terry(compared, pairs)
    intervals = bootstrap_bradley_terry(compared, pairs, n_boot=n_boot, seed=seed)
    for key, value in strengths.items():
        s = standings[key]
        s.strength = value
        s.strength_low, s.strength_high = intervals[key]
    ranked = sorted(standings.values(), key=lambda s: (
        s.strength is None, -(s.strength or 0.0), -(s.mean_rating or 0.0), s.key))
    for i, s in enumerate(ranked, 1):
        s.rank = i
    notes = []
    models = {r.get("ladder_name") for r in kept} | {v.get("ladder_name") for v in votes}
    models.discard(None)
    if len(models) > 1:
        notes.append(f"Ratings of {len(models)} models are pooled by quantization type; filter by model to compare "
                     "within one.")
    if not pairs and kept:
        notes.append("No comparisons yet: rate two or more outputs of the same run, or vote on pairs, for "
                     "Bradley–Terry strengths.")
    return Leaderboard(ranked, separability(ranked), len(kept), len(from_votes), len(from_ratings),
                       filters or {}, notes, sum(v.get("mode") == SET_MODE for v in counted))


def set_run_ids(store: Store, set_run_id: int) -> list[int]:
    """The runs of a set run's prompts (the newest of each), for filtering judgements to that set run; LookupError
    for an unknown set run."""
    set_run = store.get_set_run(int(set_run_id))
    if set_run is None:
        raise LookupError(f"there is no set run {set_run_id}")
    return [c.run_id for c in set_run.children]


def leaderboard(
    store: Store,
    *,
    model: str | None = None,
    category: str | None = None,
    rater: str | None = None,
    mode: str | None = None,
    run_ids: Sequence[int] | None = None,
    set_run_id: int | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Leaderboard:
    """The leaderboard of the ratings and votes in `store` that match the filters (None: all); `set_run_id` keeps
    the judgements of that set run's prompts (with `run_ids` too: of those runs among them)."""
    filters = {"model": model, "category": category, "rater": rater, "mode": mode,
               "run_ids": list(run_ids) if run_ids is not None else None, "set_run_id": set_run_id}
    if set_run_id is not None:
        in_set = set_run_ids(store, set_run_id)
        run_ids = in_set if run_ids is None else [r for r in run_ids if r in set(in_set)]
    ratings = list_ratings(store, run_ids=run_ids, model=model, category=category, rater=rater, mode=mode)
    votes = list_votes(store, run_ids=run_ids, model=model, category=category, rater=rater, mode=mode)
    board = build_leaderboard(ratings, votes, n_boot=n_boot, seed=seed,
                              filters={k: v for k, v in filters.items() if v is not None})
    imported_votes, imported_ratings = (sum(1 for r in rows if r.get("imported_from")) for rows in (votes, ratings))
    if imported_votes or imported_ratings:  # people elsewhere judged these: counted, and said (issue 24)
        board.notes.append(f"{imported_votes} of the votes and {imported_ratings} of the ratings are on imported runs "
                           "(outputs made on another machine); Recommend uses none of them.")
    return board
