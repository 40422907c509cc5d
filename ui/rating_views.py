"""Drawing the Ratings page: blind, pairwise and open rating of one run, a blind session over a whole prompt
set with its verdict (workbench.people.set_session, workbench.people.verdict), and the leaderboard.

Every judgement is saved by the widget's callback the moment it is given (workbench.people.ratings),
with the rater's name (optional) and this browser session's id. Blind letters come from
workbench.people.ratings.blind_order seeded with the session id, so one session always sees the same
letters; while names are hidden nothing on the page (headings, widget keys, toasts, leaderboard)
names a quantization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from ui import views
from ui.glossary_views import help_columns
from ui.headline_views import headline_view
from ui.shared import store
from ui.star_views import rater, session_id, star_widget
from workbench.core.escaping import md_escape
from workbench.core.text_units import counted
from workbench.people import ratings as rt
from workbench.people import set_session as ss
from workbench.people.headline import set_headline
from workbench.people.leaderboard import Leaderboard, leaderboard, set_run_ids
from workbench.people.verdict import SET_MODE, default_set_pair, set_verdict
from workbench.quality.diff_html import plain_html
from workbench.storage.rows import SetRunSummary
from workbench.storage.store import StoredResult, StoredRun, StoreError

MODES = {"Blind": "letters in a random order; names appear once you have rated every output",
         "Pairwise": "which of two is better? letters too; names appear once you have voted on every pair",
         "Open": "names shown while you rate"}
ALL = "(all)"
SET = "A prompt set"
WHAT = {"One run": "the outputs of one prompt", SET: "blind, prompt by prompt, a candidate vs any baseline; "
        "a verdict at the end"}


def stars(n: int) -> str:
    return "★" * n + "☆" * (5 - n)


def rater_input() -> None:
    """The optional name saved with each rating; kept in st.session_state.rater across pages."""
    if "rater-input" not in st.session_state:
        st.session_state["rater-input"] = st.session_state.get("rater") or ""

    def keep() -> None:
        st.session_state.rater = st.session_state["rater-input"].strip() or None

    st.text_input("Your name (optional)", key="rater-input", on_change=keep, max_chars=80,
                  placeholder="anonymous",
                  help="Saved with each rating and vote so the leaderboard can filter by rater. Leave empty to rate "
                       "anonymously (your ratings still count once per output, by this browser session).")


# ---- saving -------------------------------------------------------------------------------------
def _vote_saved(save: Callable[[], object]) -> bool:
    """Run one vote's save; say plainly if it could not be saved (the run is gone, the database refuses)."""
    try:
        save()
    except rt.RatingError:
        st.toast("Vote not saved: the run or one of its outputs is gone.", icon=":material/warning:")
        return False
    except StoreError as exc:
        st.toast(f"Vote not saved: {md_escape(exc)}", icon=":material/warning:")
        return False
    st.toast("Vote saved")
    return True


def _save_vote(run_id: int, label_a: str, label_b: str, winner: str, mode: str, pick_key: str,
               pairs: list[tuple[str, str, str]]) -> None:
    if not _vote_saved(lambda: rt.add_vote(store(), run_id=run_id, label_a=label_a, label_b=label_b, winner=winner,
                                           rater=rater(), mode=mode, session=session_id())):
        return
    done = {frozenset((v["label_a"], v["label_b"])) for v in rt.list_votes(store(), run_id=run_id,
                                                                            session=session_id())}
    names = [name for name, _, _ in pairs]
    here = names.index(st.session_state.get(pick_key, names[0])) if st.session_state.get(pick_key) in names else 0
    todo = [name for name, a, b in pairs[here + 1:] + pairs[:here + 1] if frozenset((a, b)) not in done]
    if todo:
        st.session_state[pick_key] = todo[0]  # on to the next pair not voted yet


# ---- the three modes ----------------------------------------------------------------------------
def blind(run: StoredRun, outputs: dict[str, StoredResult], view: rt.BlindView) -> None:
    n_rated = sum(1 for label in outputs if label in view.rated)
    if view.revealed:
        st.success("Names revealed: you have judged every output of this run. Changing a star now is saved as an "
                   "open rating (you can see the names).")
    else:
        st.info(f"Rated {n_rated} of {len(outputs)}. The quantization names appear once you have rated every "
                "output. Letters are shuffled for you alone.")
    mode = "open" if view.revealed else "blind"
    items = list(view.order.items())
    for row in views.column_rows(items):
        for col, (letter, label) in row:
            with col:
                ref = " · reference" if view.revealed and outputs[label].is_reference else ""
                st.markdown(f"**{md_escape(view.display_name(label))}**{ref}")
                st.html(plain_html(outputs[label].text or ""))
                key = f"blind-{run.id}-{letter}"  # the letter, never the label: widget ids reach the browser
                star_widget(run.id, label, key, mode=mode, shown_as=view.display_name(label), letter=letter,
                            saved=view.rated.get(label))
    if view.revealed:
        st.dataframe([{"letter": letter, "quantization": label, "your rating": stars(view.rated[label])
                       if label in view.rated else "-"} for letter, label in items],
                     hide_index=True, width="content")


def pairwise(run: StoredRun, outputs: dict[str, StoredResult], view: rt.BlindView) -> None:
    if len(outputs) < 2:
        st.info("Pairwise voting needs two outputs or more; this run has fewer that finished without an error.")
        return
    letters = list(view.order)
    pairs = [(f"{a} vs {b}", view.order[a], view.order[b]) for i, a in enumerate(letters) for b in letters[i + 1:]]
    latest: dict[frozenset[str], dict[str, Any]] = {}
    for v in rt.list_votes(store(), run_id=run.id, session=session_id()):
        latest[frozenset((v["label_a"], v["label_b"]))] = v
    voted = [p for p in pairs if frozenset(p[1:]) in latest]
    if view.revealed:
        st.success(f"Names revealed: you have voted on all {len(pairs)} pairs (or rated every output). A vote "
                   "changed now is saved as an open pairwise vote.")
    else:
        st.info(f"Voted on {len(voted)} of {len(pairs)} pairs. The names appear once you have voted on every pair.")
    pick_key = f"pair-{run.id}"
    names = [name for name, _, _ in pairs]
    if st.session_state.get(pick_key) not in names:
        first_open = next((name for name, a, b in pairs if frozenset((a, b)) not in latest), names[0])
        st.session_state[pick_key] = first_open
    done = {name for name, _, _ in voted}
    name = st.selectbox("Pair", names, key=pick_key, format_func=lambda n: f"{n} ✓" if n in done else n)
    _, label_a, label_b = pairs[names.index(name)]
    la, lb = view.display_name(label_a), view.display_name(label_b)
    st.markdown(f"#### Which is better, {md_escape(la)} or {md_escape(lb)}?")
    left, right = st.columns(2)
    for col, label, shown in ((left, label_a, la), (right, label_b, lb)):
        with col:
            st.markdown(f"**{md_escape(shown)}**")
            st.html(plain_html(outputs[label].text or ""))
    mode = "pairwise" if view.revealed else "blind"  # a vote made with names hidden is stored as blind
    b1, b2, b3 = st.columns(3)
    for col, winner, text in ((b1, "a", f"{view.letter_of(label_a)} is better"), (b2, "tie", "Tie"),
                              (b3, "b", f"{view.letter_of(label_b)} is better")):
        col.button(text, key=f"vote-{run.id}-{name}-{winner}", width="stretch", on_click=_save_vote,
                   args=(run.id, label_a, label_b, winner, mode, pick_key, pairs))
    mine = latest.get(frozenset((label_a, label_b)))
    if mine is not None:
        won = mine["label_a"] if mine["winner"] == "a" else mine["label_b"] if mine["winner"] == "b" else None
        st.caption(f"Your vote on this pair: {md_escape(view.display_name(won)) + ' is better' if won else 'a tie'} "
                   f"(saved {mine['created_at'][11:19]} UTC)")
    if view.revealed and latest:
        rows = []
        for v in latest.values():
            won = v["label_a"] if v["winner"] == "a" else v["label_b"] if v["winner"] == "b" else None
            first, second = sorted((v["label_a"], v["label_b"]), key=view.letter_of)
            rows.append({"pair": f"{view.display_name(first)} vs {view.display_name(second)}",
                         "your pick": view.display_name(won) if won else "tie"})
        st.dataframe(sorted(rows, key=lambda r: r["pair"]), hide_index=True, width="content")


def open_mode(run: StoredRun, outputs: dict[str, StoredResult]) -> None:
    name = rater()
    mine = rt.list_ratings(store(), run_id=run.id, rater=name or None, session=None if name else session_id())
    saved = {r["label"]: r for r in mine}  # oldest first: the newest per label wins
    for row in views.column_rows(list(outputs.values())):
        for col, r in row:
            with col:
                st.markdown(f"**{md_escape(r.label)}**{' · reference' if r.is_reference else ''}")
                st.html(plain_html(r.text or ""))
                mine_r = saved.get(r.label)
                star_widget(run.id, r.label, f"open-{run.id}-{r.label}", mode="open", shown_as=r.label,
                            letter=None, saved=mine_r["score"] if mine_r else None)
                if mine_r:
                    st.caption(f"Saved: {stars(mine_r['score'])} at {mine_r['created_at'][11:19]} UTC")


# ---- leaderboard --------------------------------------------------------------------------------
@st.cache_data(max_entries=32, show_spinner="Fitting the leaderboard…")
def _board(model: str | None, category: str | None, rater_name: str | None, mode: str | None,
           run_ids: tuple[int, ...] | None, version: tuple[int, int, int, int]) -> Leaderboard:
    """The leaderboard for these filters; `version` (counts and id sums of the matching rows) renews it."""
    return leaderboard(store(), model=model, category=category, rater=rater_name, mode=mode,
                       run_ids=list(run_ids) if run_ids is not None else None)


def _version(**filters: Any) -> tuple[int, int, int, int]:
    r = rt.list_ratings(store(), **filters)
    v = rt.list_votes(store(), **filters)
    return len(r), sum(x["id"] for x in r), len(v), sum(x["id"] for x in v)


def _span(start: float | None, end: float | None) -> float:
    """One side of an error bar (end - start); 0 where the interval has no end there (a single rating)."""
    return end - start if start is not None and end is not None else 0


def leaderboard_figure(board: Leaderboard) -> go.Figure:
    """Mean rating with its 95% CI, and Bradley–Terry strength with its 95% bootstrap interval, per quantization."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Mean rating (1–5) with 95% CI",
                                                        "Bradley–Terry strength with 95% interval (log scale)"))
    rated = [s for s in board.standings if s.mean_rating is not None]
    if rated:
        fig.add_trace(go.Scatter(
            x=[s.key for s in rated], y=[s.mean_rating for s in rated], mode="markers", name="mean rating",
            marker=dict(size=11, color="#1f77b4"),
            error_y=dict(type="data", symmetric=False,
                         array=[_span(s.mean_rating, s.rating_high) for s in rated],
                         arrayminus=[_span(s.rating_low, s.mean_rating) for s in rated]),
            customdata=[s.n_ratings for s in rated],
            hovertemplate="%{x}: %{y:.2f} (n=%{customdata})<extra></extra>"), row=1, col=1)
    fitted = [s for s in board.standings if s.strength is not None]
    if fitted:
        fig.add_trace(go.Scatter(
            x=[s.key for s in fitted], y=[s.strength for s in fitted], mode="markers", name="Bradley–Terry",
            marker=dict(size=11, color="#d62728"),
            error_y=dict(type="data", symmetric=False, array=[_span(s.strength, s.strength_high) for s in fitted],
                         arrayminus=[_span(s.strength_low, s.strength) for s in fitted]),
            customdata=[s.comparisons for s in fitted],
            hovertemplate="%{x}: %{y:.2f} (%{customdata} comparisons)<extra></extra>"), row=1, col=2)
        fig.update_yaxes(type="log", row=1, col=2)
    fig.update_yaxes(range=[0.5, 5.5], row=1, col=1)
    fig.update_layout(height=340, showlegend=False, margin=dict(l=10, r=10, t=50, b=10))
    fig.update_annotations(font_size=13)
    return fig


def leaderboard_section(run_id: int | None, *, hidden: bool) -> None:
    st.subheader("Leaderboard")
    if hidden:
        st.info("Hidden while you rate blind: it names the quantizations, and watching it change would give your "
                "letters away. It appears once the names of this run are revealed to you.")
        return
    opts = rt.filter_options(store())
    c1, c2, c3, c4, c5 = st.columns([3, 2, 2, 2, 2])
    model = c1.selectbox("Model", [ALL, *opts["model"]], key="lb-model")
    category = c2.selectbox("Prompt category", [ALL, *opts["category"]], key="lb-category")
    who = c3.selectbox("Rater", [ALL, *opts["rater"]], key="lb-rater")
    mode = c4.selectbox("Mode", [ALL, *opts["mode"]], key="lb-mode")
    only_run = c5.checkbox("This run only", key="lb-this-run", disabled=run_id is None)
    filters = {"model": None if model == ALL else model, "category": None if category == ALL else category,
               "rater": None if who == ALL else who, "mode": None if mode == ALL else mode}
    run_ids: tuple[int, ...] | None = (run_id,) if only_run and run_id is not None else None
    sets = {r.id: r for r in store().list_set_runs(limit=200) if r.n_finished}
    if sets:
        set_options: list[Any] = [ALL, *sets]  # ALL, then set run ids
        set_pick = st.selectbox("Prompt set run", set_options, key="lb-set", format_func=lambda i: i if i == ALL else
                                f"#{i} · {sets[i].name} · {sets[i].n_finished}/{sets[i].n_prompts} prompts",
                                help="Only the judgements of one set run's prompts (its blind set sessions, and any "
                                     "other rating or vote on those runs).")
        if set_pick != ALL:
            try:
                in_set = set_run_ids(store(), int(set_pick))
            except LookupError:  # deleted meanwhile
                in_set = []
            run_ids = tuple(r for r in (run_ids or in_set) if r in in_set)
    board = _board(filters["model"], filters["category"], filters["rater"], filters["mode"], run_ids,
                   _version(**filters, run_ids=list(run_ids) if run_ids is not None else None))
    if board.empty:
        st.caption("No ratings or votes match these filters yet.")
        return
    from_sets = f" ({board.n_set_votes} of them from blind set sessions)" if board.n_set_votes else ""
    st.caption(f"{counted(board.n_ratings, 'rating')} (the newest per rater and output), "
               f"{counted(board.n_votes, 'pairwise vote')}{from_sets}, and "
               f"{board.n_rating_pairs} comparisons implied by ratings (two outputs of one run rated by one rater: the "
               "higher score wins).")
    frame = board.to_frame()
    st.dataframe(frame, hide_index=True, width="stretch", column_config=help_columns(frame.columns))
    st.markdown("**Can the ratings tell them apart?**\n\n" + "\n".join(f"- {md_escape(s)}" for s in board.sentences)
                if board.sentences else "Only one quantization has been judged so far.")
    for note in board.notes:
        st.caption(f"ℹ️ {md_escape(note)}")
    st.plotly_chart(leaderboard_figure(board), width="stretch", key="leaderboard-chart")
    st.caption("Bradley–Terry: the chance that A beats B is strength A / (strength A + strength B); strengths are "
               "scaled so their geometric mean is 1; intervals from a parametric bootstrap (500 resamples). "
               "Rating intervals are t-intervals with the spread floored at half a point, so a few identical scores "
               "do not read as certainty.")


# ---- a blind session over a whole prompt set -----------------------------------------------------
PICKS = (("1", "1 is better", "1"), ("tie", "Tie", "3"), ("2", "2 is better", "2"))  # choice, label, key (shown on the button)


def _set_label(row: SetRunSummary) -> str:
    return (f"#{row.id} · {row.name or 'set'} · {row.n_finished}/{row.n_prompts} "
            f"prompts · {row.ladder_name or 'local files'} · {row.created_at[:16]}")


def _save_set_vote(session: ss.SetSession, item: ss.SessionItem, choice: str) -> None:
    _vote_saved(lambda: ss.record_vote(store(), session, item, choice, rater()))


def set_judging() -> bool:
    """Pick a set run and a candidate, then judge its prompts blind one after another; the verdict at the end.

    Returns whether names are hidden now (a session is under way), so the page can hide the leaderboard.
    """
    sets = [r for r in store().list_set_runs() if r.n_finished]
    if not sets:
        st.info("No prompt set has finished prompts yet: run a set first, then judge it here.")
        return False
    by_id = {r.id: r for r in sets}
    set_id = st.selectbox("Prompt set run", list(by_id), key="set-pick", format_func=lambda i: _set_label(by_id[i]))
    set_run = store().get_set_run(set_id)
    if set_run is None:
        st.warning(f"Set run #{set_id} was deleted meanwhile.")
        return False
    labels = list(dict.fromkeys(set_run.labels))
    pair = default_set_pair(store(), set_id)  # the pair judged most so far, else e.g. Q4_K_M vs Q8_0
    c1, c2 = st.columns(2)
    others_of = {b: [x for x in labels if x != b] for b in labels}
    candidate_key = f"set-candidate-{set_id}"
    reference = c2.selectbox("Compare against", labels, key=f"set-reference-{set_id}",
                             index=labels.index(pair[1]) if pair and pair[1] in labels else 0,
                             help="The baseline the candidate is judged against: any quantization of the set, not "
                                  "only its reference (e.g. Q4_K_M against Q8_0).")
    others = others_of.get(reference, [])
    if not others:
        st.info("This set run has only one quantization: there is nothing to compare.")
        return False
    candidate = c1.selectbox("Candidate", others, key=candidate_key,
                             index=others.index(pair[0]) if pair and pair[0] in others else 0,
                             help="The quantization you are deciding about, e.g. Q4_K_M against Q8_0.")
    token_key = f"set-token-{set_id}-{reference}-{candidate}"
    if token_key not in st.session_state:  # resume this rater's newest session on this pair, or start one
        earlier = ss.previous_sessions(store(), set_id, reference, candidate, rater())
        st.session_state[token_key] = earlier[0]["token"] if earlier else ss.new_token(set_id)
    session = ss.load_session(store(), set_id, st.session_state[token_key], reference, candidate)
    if not session.items:
        st.info("No prompt of this set has both outputs without an error yet.")
        return False
    if st.button("Start a new session", key="set-new-session",
                 help="A fresh shuffled order; your votes so far stay saved under your earlier session."):
        st.session_state[token_key] = ss.new_token(set_id)
        st.rerun()
    if not session.finished:
        _set_item(session)
        return True
    _set_verdict(session)
    return False


def _set_item(session: ss.SetSession) -> None:
    item = session.next_item
    assert item is not None
    done, total = len(session.items) - len(session.remaining), len(session.items)
    st.progress(done / total, text=f"Prompt {done + 1} of {total}. Names are hidden until you have judged every "
                                   "prompt; the answers are shuffled per prompt.")
    if item.system:
        st.caption("System prompt")
        st.text(item.system)
    st.markdown("**Prompt**")
    st.text(item.prompt)
    left, right = st.columns(2)
    for col, name, text in ((left, "Answer 1", item.first_text), (right, "Answer 2", item.second_text)):
        with col:
            st.markdown(f"**{name}**")
            st.html(plain_html(text or ""))
    cols = st.columns(3)
    for col, (choice, text, key) in zip(cols, PICKS, strict=True):
        col.button(text, key=f"set-vote-{item.run_id}-{choice}", width="stretch", shortcut=key,
                   on_click=_save_set_vote, args=(session, item, choice))
    st.caption("Keys: 1 and 2 pick an answer, 3 is a tie; each vote is saved at once and the next prompt follows.")


def _set_verdict(session: ss.SetSession) -> None:
    st.success(f"Done: you judged all {len(session.items)} prompts. The names are revealed below.")
    mine = set_verdict(store(), session.set_run_id, session.candidate, session.reference, session=session.token,
                       mode=SET_MODE)
    everyone = set_verdict(store(), session.set_run_id, session.candidate, session.reference)
    headline_view(set_headline(everyone), f"{session.candidate} vs {session.reference}")
    st.markdown("**Your verdict**")
    st.markdown(md_escape(mine.paragraph))
    st.code(mine.paragraph, language=None, wrap_lines=True)
    if everyone.verdict.n_raters > 1:
        st.markdown("**Every rater's votes on this set** (the newest per rater and prompt)")
        st.markdown(md_escape(everyone.verdict.paragraph))
    st.dataframe([{"quantization": q.label, "prompts": q.prompts, "identical": q.identical,
                   "same answer": q.same_answer, "different answer": q.different_answer,
                   "changed facts": q.facts_changed, "prompts with changed facts": q.prompts_with_changed_facts}
                  for q in mine.quality], hide_index=True, width="stretch")
    st.caption(f"Against {session.reference}: summary of each prompt's answer and facts (numbers, "
               "dates, names…) that changed, for every quantization of the set.")
    picks = {"1": "Answer 1", "2": "Answer 2", "tie": "tie"}
    st.dataframe([{"prompt #": i.index + 1, "prompt": i.prompt[:80], "Answer 1": i.first, "Answer 2": i.second,
                   "your pick": picks[session.votes[i.run_id]]} for i in sorted(session.items, key=lambda i: i.index)],
                 hide_index=True, width="stretch")
