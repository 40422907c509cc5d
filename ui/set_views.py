"""The Prompt sets page's pieces: parse errors, a set run's progress, and its results per prompt × quantization.

A set run is one row in `set_runs` with one ordinary comparison run per prompt (runs.set_runs); the results here
read those child runs and put each quantization's output beside the reference's in words (quality.summary) and
changed facts (quality.facts). Everything shown that came from a file or a model goes through `md_escape`, or
into a dataframe, which draws text as text.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from ui import views
from ui.headline_views import headline_view, pair_picker
from ui.shared import open_run, store
from workbench.core.escaping import md_escape
from workbench.core.text_units import counted
from workbench.people.headline import Headline, set_headline
from workbench.people.ratings import list_votes
from workbench.people.verdict import default_set_pair, set_verdict
from workbench.quality import noise_floor
from workbench.quality.diff_html import plain_html, prose_html
from workbench.quality.facts import FactChange
from workbench.quality.summary import GROUPS, summarize
from workbench.runs.prompt_sets import PromptSetError
from workbench.storage.store import SET_PROMPT_FINISHED, StoredSetRun

SETS_PAGE = "pages/sets.py"


def open_set_run(set_run_id: int) -> None:
    """Show a stored set run on the Prompt sets page (History's button, a finished job)."""
    st.session_state["sets_run_id"] = set_run_id


# ---- input ------------------------------------------------------------------------------------------------
def error_lines(exc: PromptSetError) -> list[str]:
    """Every bad row as "line 7: reason" (or the reason alone when it is about the whole file)."""
    return [f"line {line}: {reason}" if line else reason for line, reason in exc.errors]


def show_parse_errors(exc: PromptSetError, what: str) -> None:
    """One error box listing every bad row; nothing of the set is kept or run."""
    lines = "\n".join(f"- {md_escape(line)}" for line in error_lines(exc))
    st.error(f"{md_escape(what)} was not imported (nothing runs until every row is fixed):\n\n{lines}")


# ---- results ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One prompt × quantization: the summary line and the changed facts, or why there is no output."""

    index: int
    prompt: str
    label: str
    run_id: int
    sentence: str
    verdict: str  # a summary verdict, or "error" / "missing"
    facts: tuple[FactChange, ...] = ()
    floor: str = ""  # the reference's repeats on this prompt, in words ("" without a noise floor)
    against_floor: str = ""  # noise_floor.WITHIN / BEYOND, "" without a floor


@st.cache_data(show_spinner=False, max_entries=2000)
def _run_cells(db: str, run_id: int, status: str | None, index: int, prompt: str, n_repeats: int,
               baseline: str | None = None) -> list[Cell]:
    """The cells of one child run against `baseline` (a label; None: the run's reference), cached: a finished run
    does not change; the database, `status` and the number of stored repeats are in the key, so a run that was
    still going is read again. The noise floor is always the reference's own repeats."""
    run = store().get_run(run_id)
    if run is None:
        return []
    own = next((r for r in run.results if r.is_reference), None)
    ref = own if baseline is None else run.result(baseline)
    floor = None
    if n_repeats and own is not None and own.text is not None and not own.error:
        floor = noise_floor.floor_of(own.text, store().reference_repeats(run_id))
    cells = []
    for r in run.results:
        if r is ref or (ref is None and r.is_reference):
            continue
        if r.error:
            cells.append(Cell(index, prompt, r.label, run_id, f"no output: {r.error}", "error"))
        elif ref is None or ref.error or ref.text is None:
            cells.append(Cell(index, prompt, r.label, run_id, "no reference output to compare with", "missing"))
        else:
            s = summarize(ref.text, r.text or "")
            cells.append(Cell(index, prompt, r.label, run_id, s.sentence, s.verdict, tuple(s.facts),
                              floor.sentence() if floor else "",
                              noise_floor.standing(s, floor) if floor else ""))
    return cells


def set_run_cells(set_run: StoredSetRun, baseline: str | None = None) -> list[Cell]:
    """Every prompt × quantization of the set run's newest child runs against `baseline` (None: the reference),
    in prompt order."""
    prompts = set_run.prompts
    cells: list[Cell] = []
    children = set_run.children
    repeats = store().reference_repeat_counts([c.run_id for c in children]) if set_run.noise_repeats else {}
    for child in children:
        i = child.index
        prompt = str(prompts[i].get("prompt", "")) if i < len(prompts) else ""
        cells += _run_cells(str(store().path), child.run_id, child.status, i, prompt,
                            repeats.get(child.run_id, 0), baseline)
    return cells


def cells_frame(cells: list[Cell]) -> pd.DataFrame:
    """The table: one row per prompt × quantization (and where it stands against the noise floor, when any)."""
    columns = ["prompt #", "prompt", "quantization", "summary", "facts changed"]
    with_floor = any(c.against_floor for c in cells)
    if with_floor:
        columns.append("vs noise floor")
    return pd.DataFrame([{"prompt #": c.index + 1, "prompt": " ".join(c.prompt.split())[:120],
                          "quantization": c.label, "summary": c.sentence, "facts changed": len(c.facts),
                          **({"vs noise floor": c.against_floor or "no floor"} if with_floor else {})}
                         for c in cells], columns=columns)


def totals_frame(cells: list[Cell], labels: list[str]) -> pd.DataFrame:
    """Per quantization: prompts identical / same answer / different answer / no output; facts changed in total."""
    rows = []
    for label in labels:
        mine = [c for c in cells if c.label == label]
        rows.append({"quantization": label, "prompts": len(mine),
                     "identical": sum(GROUPS.get(c.verdict) == "identical" for c in mine),
                     "same answer": sum(GROUPS.get(c.verdict) == "same answer" for c in mine),
                     "different answer": sum(GROUPS.get(c.verdict) == "different answer" for c in mine),
                     "no output": sum(c.verdict in ("error", "missing") for c in mine),
                     "facts changed": sum(len(c.facts) for c in mine),
                     **({"beyond noise floor": f"{sum(c.against_floor == noise_floor.BEYOND for c in mine)} of "
                                               f"{sum(bool(c.against_floor) for c in mine)}"}
                        if any(c.against_floor for c in cells) else {})})
    return pd.DataFrame(rows)


@st.cache_data(show_spinner=False, max_entries=200)
def _set_floor(db: str, set_run_id: int, signature: tuple[tuple[int, str | None, int], ...]
               ) -> noise_floor.SetFloor | None:
    """The set's noise floor, measured once per state of its runs and repeats (`signature` is in the key, so a
    prompt or a repeat that finished since is measured again); every rerun of the page would redo the diffs."""
    set_run = store().get_set_run(set_run_id)
    return noise_floor.stored_set_floor(store(), set_run) if set_run is not None else None


def floor_view(set_run: StoredSetRun) -> None:
    """The noise floor in words: the reference against itself, then each quantization against that."""
    asked = set_run.noise_repeats
    if not asked:
        st.caption("No noise floor: this set run did not repeat the reference, so a difference cannot be told "
                   "from the reference's own variation. Start a set run with reference repeats to get one.")
        return
    children = set_run.children
    repeats = store().reference_repeat_counts([c.run_id for c in children])
    got = _set_floor(str(store().path), set_run.id,
                     tuple((c.run_id, c.status, repeats.get(c.run_id, 0)) for c in children))
    if got is None or not got.floors:
        st.caption(f"Noise floor: {counted(asked, 'repeat')} of the reference per prompt, none "
                   "finished yet.")
        return
    settings = set_run.settings
    how = ("other seeds at the same temperature" if float(settings.get("temperature") or 0) > 0 else
           "greedy, with the prompt evaluated in other micro-batch sizes (other kernels, another summation order)")
    lines = [f"**Noise floor** ({md_escape(how)}): {md_escape(got.sentence())}"]
    lines += [f"- {md_escape(q.sentence())}" for q in got.quants]
    st.markdown("\n".join(lines))


def _vote_version(set_run: StoredSetRun) -> tuple[int, int]:
    """(count, id sum) of the votes on the set's runs: in the cache key, so a new vote renews the headline."""
    ids = [c.run_id for c in set_run.children]
    votes = list_votes(store(), run_ids=ids) if ids else []
    return len(votes), sum(int(v["id"]) for v in votes)


@st.cache_data(show_spinner="Weighing the evidence…", max_entries=200)
def _pair_headline(db: str, set_run_id: int, candidate: str, baseline: str,
                   signature: tuple[tuple[int, str | None, int], ...], votes: tuple[int, int]) -> Headline:
    """The pair's headline over the set (cached per state of its runs, repeats and votes: the diffs are slow)."""
    return set_headline(set_verdict(store(), set_run_id, candidate, baseline))


def pair_section(set_run: StoredSetRun, key: str) -> tuple[str, str] | None:
    """Pick the pair the set is asked about (the one judged most, else the smallest common quantization against
    the 8-bit one) and show its headline; returns (candidate, baseline), None with fewer than two quantizations."""
    labels = list(set_run.labels)
    st.markdown("**The question**: which two quantizations to put face to face (chosen after the run: nothing runs "
                "again)")
    pair = pair_picker(labels, default_set_pair(store(), set_run.id), key)
    if pair is None or not any(c.status in SET_PROMPT_FINISHED for c in set_run.children):
        return pair
    children = set_run.children
    repeats = store().reference_repeat_counts([c.run_id for c in children])
    signature = tuple((c.run_id, c.status, repeats.get(c.run_id, 0)) for c in children)
    head = _pair_headline(str(store().path), set_run.id, pair[0], pair[1], signature,
                          _vote_version(set_run))
    headline_view(head, f"{pair[0]} vs {pair[1]}")
    return pair


def results_view(set_run: StoredSetRun, key: str, pair: tuple[str, str] | None = None) -> None:
    """Totals per quantization, the prompt × quantization table, and one expander per prompt with its facts, each
    against the pair's baseline (the reference when no pair is given)."""
    reference = set_run.reference_label
    baseline = pair[1] if pair is not None else reference
    cells = set_run_cells(set_run, None if baseline == reference else baseline)
    labels = [label for label in set_run.labels if label != baseline]
    if not cells:
        st.caption("No prompt has finished yet.")
        return
    role = "the reference" if baseline == reference else "the baseline"
    st.markdown(f"**Totals per quantization** (against {role}, {md_escape(baseline)})")
    st.dataframe(totals_frame(cells, labels), hide_index=True, width="stretch", key=f"{key}-totals")
    floor_view(set_run)
    st.markdown("**Each prompt**")
    st.dataframe(cells_frame(cells), hide_index=True, width="stretch", key=f"{key}-cells")
    prompt_reader(set_run, key, None if baseline == reference else baseline)
    by_index: dict[int, list[Cell]] = {}
    for c in cells:
        by_index.setdefault(c.index, []).append(c)
    for index, mine in by_index.items():
        head = " ".join(mine[0].prompt.split())
        changed = sum(len(c.facts) for c in mine)
        title = f"{index + 1}. {head[:80]}{'…' if len(head) > 80 else ''} · {counted(changed, 'fact')} changed"
        with st.expander(md_escape(title)):
            if mine[0].floor:
                st.caption(md_escape(mine[0].floor[:1].upper() + mine[0].floor[1:]))
            for c in mine:
                where = f" — {c.against_floor} the reference's own variation" if c.against_floor else ""
                st.markdown(f"**{md_escape(c.label)}**: {md_escape(c.sentence)}{md_escape(where)}")
                for fact in c.facts:
                    st.markdown(f"- {md_escape(fact.kind)}: {md_escape(fact.describe())}")
            if st.button("Open in Compare", key=f"{key}-open-{index}", icon=":material/compare_arrows:"):
                open_run(mine[0].run_id)
                st.switch_page("pages/compare.py")


def prompt_reader(set_run: StoredSetRun, key: str, baseline: str | None = None) -> None:
    """One prompt's answers side by side as prose, each quantization's changes against `baseline` (None: the
    reference) highlighted, its summary line, changed facts and place against the reference's noise floor above
    it: reading, not just counting."""
    prompts = set_run.prompts
    children = [c for c in set_run.children if c.index < len(prompts)]
    if not children:
        return
    by_index = {c.index: c for c in children}

    def describe(i: int) -> str:
        head = " ".join(str(prompts[i].get("prompt", "")).split())
        return f"{i + 1}. {head[:90]}{'…' if len(head) > 90 else ''}"

    st.markdown("**Read one prompt's answers**")
    index = st.selectbox("Prompt", list(by_index), format_func=describe, key=f"{key}-read")
    run = store().get_run(by_index[index].run_id) if index is not None else None
    if run is None:
        return
    views.css()
    own = next((r for r in run.results if r.is_reference and not r.error), None)
    own_text = own.text if own is not None else None
    floor = noise_floor.floor_of(own_text, store().reference_repeats(run.id)) if own_text is not None else None
    base = own if baseline is None else next((r for r in run.results if r.label == baseline and not r.error), None)
    ref_text = base.text if base is not None else None
    base_label = base.label if base is not None and base is not own else None
    for row in views.column_rows(list(run.results)):
        for col, r in row:
            with col:
                role = " · reference" if r.is_reference else " · baseline" if r.label == base_label else ""
                st.markdown(f"**{md_escape(r.label)}**{role}")
                text = r.text or ""
                if r.error:
                    st.error(md_escape(r.error))
                elif r is base or ref_text is None:
                    if r.is_reference and floor is not None:
                        st.caption(f"Noise floor: {md_escape(floor.sentence())}")
                    st.html(plain_html(text, prose=True))
                else:
                    first = r.first_divergence_token if baseline is None else None  # measured vs the reference
                    views.column_header(ref_text, text, first, floor, base_label or "reference")
                    d = views.word_diff_of(ref_text, text)
                    st.html(plain_html(text, prose=True) if d.identical else prose_html(d))
