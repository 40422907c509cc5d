"""A blind judging session over a whole set run: any two of its quantizations (a candidate against a baseline,
e.g. Q4_K_M vs Q8_0; `reference` below is that baseline, not necessarily the set's reference), prompt by prompt.

The session is a token, `set-<set run id>-<seed>`, saved as the `session` of every vote it makes (mode
"blind-set"). The token alone fixes the order the prompts come in (shuffled by its seed) and, per prompt,
which output is shown as "Answer 1" (a coin flip seeded by the token and the run), so a session can be
resumed after a reload or on another day: the prompts it already has a vote on are skipped, and the rest
come in the same order as before. Votes store the output shown as Answer 1 as side a, so what was clicked
is what is saved. A rater's earlier sessions are found from their votes (by rater name; anonymous raters
find the anonymous sessions).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from workbench.people.ratings import add_vote, list_votes
from workbench.people.verdict import SET_MODE, matches, result_label, set_child_runs
from workbench.storage.store import Store

CHOICES = {"1": "a", "2": "b", "tie": "tie"}  # what the rater clicked → the vote's winner


@dataclass(frozen=True)
class SessionItem:
    """One prompt of the session, as shown: Answer 1 and Answer 2 are `first` and `second`."""

    run_id: int
    index: int  # the prompt's index in the set
    prompt: str
    system: str | None
    first: str  # label shown as Answer 1
    second: str
    first_text: str
    second_text: str


@dataclass
class SetSession:
    set_run_id: int
    token: str
    reference: str
    candidate: str
    items: list[SessionItem]  # in the session's shuffled order
    votes: dict[int, str] = field(default_factory=dict)  # run id → "1", "2" or "tie" (this session's newest)

    @property
    def remaining(self) -> list[SessionItem]:
        return [i for i in self.items if i.run_id not in self.votes]

    @property
    def next_item(self) -> SessionItem | None:
        return next(iter(self.remaining), None)

    @property
    def finished(self) -> bool:
        return bool(self.items) and not self.remaining


def new_token(set_run_id: int) -> str:
    return f"set-{int(set_run_id)}-{secrets.token_hex(4)}"


def _token_prefix(set_run_id: int) -> str:
    return f"set-{int(set_run_id)}-"


def load_session(store: Store, set_run_id: int, token: str, reference: str, candidate: str) -> SetSession:
    """The session's prompts (those whose run has both outputs without an error) in its order, with its votes."""
    set_run = store.get_set_run(set_run_id)
    if set_run is None:
        raise LookupError(f"there is no set run {set_run_id}")
    items = []
    for run in set_child_runs(store, set_run):
        ref, cand = result_label(run.results, reference), result_label(run.results, candidate)
        if ref is None or cand is None or ref == cand:
            continue
        texts = {r.label: r.text or "" for r in run.results}
        first, second = (cand, ref) if random.Random(f"sides:{token}:{run.id}").random() < 0.5 else (ref, cand)
        items.append(SessionItem(run.id, run.set_index or 0, run.prompt or "", run.system_prompt,
                                 first, second, texts[first], texts[second]))
    items.sort(key=lambda i: i.index)
    random.Random(f"order:{token}").shuffle(items)
    shown = {i.run_id: (i.first, i.second) for i in items}
    votes: dict[int, str] = {}
    for v in list_votes(store, run_ids=list(shown), session=token, mode=SET_MODE) if shown else []:
        pair = shown.get(v["run_id"])
        if pair is None or {v.get("label_a"), v.get("label_b")} != set(pair):
            continue
        winner = v.get("winner")
        won = v["label_a"] if winner == "a" else v["label_b"] if winner == "b" else None
        votes[v["run_id"]] = "tie" if won is None else "1" if won == pair[0] else "2"
    return SetSession(set_run_id, token, reference, candidate, items, votes)


def record_vote(store: Store, session: SetSession, item: SessionItem, choice: str, rater: str | None) -> int:
    """Save the rater's pick ("1", "2" or "tie") for one prompt at once; returns the vote id."""
    if choice not in CHOICES:
        raise ValueError(f"the pick is '1', '2' or 'tie', not {choice!r}")
    vote_id = add_vote(store, run_id=item.run_id, label_a=item.first, label_b=item.second, winner=CHOICES[choice],
                       rater=rater, mode=SET_MODE, session=session.token)
    session.votes[item.run_id] = choice
    return vote_id


def previous_sessions(store: Store, set_run_id: int, reference: str, candidate: str,
                      rater: str | None) -> list[dict[str, Any]]:
    """This rater's sessions on this set and pair, newest first: {token, votes} (anonymous: rater None)."""
    set_run = store.get_set_run(set_run_id)
    run_ids = [c.run_id for c in set_run.children] if set_run else []
    found: dict[str, dict[str, Any]] = {}
    for v in list_votes(store, run_ids=run_ids, mode=SET_MODE) if run_ids else []:
        token = v.get("session")
        if not isinstance(token, str) or not token.startswith(_token_prefix(set_run_id)):
            continue
        if (v.get("rater") or None) != (rater or None):
            continue
        sides = ((v.get("label_a"), v.get("quant_type_a")), (v.get("label_b"), v.get("quant_type_b")))
        if not any(matches(reference, *s) for s in sides) or not any(matches(candidate, *s) for s in sides):
            continue
        entry = found.setdefault(token, {"token": token, "votes": 0, "last": 0})
        entry["votes"] += 1
        entry["last"] = max(entry["last"], int(v["id"]))
    return sorted(found.values(), key=lambda e: -e["last"])
