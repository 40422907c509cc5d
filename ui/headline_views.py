"""The answer first: a pair picker ("Q4_K_M vs Q8_0") and the headline of that pair, shared by Compare, Prompt sets
and Ratings. The sentence and its evidence come from workbench.people.headline; this module only draws them."""

from __future__ import annotations

import streamlit as st

from ui.shared import store
from workbench.core.escaping import md_escape
from workbench.people.headline import Headline, default_run_pair, run_outputs, stored_run_headline
from workbench.storage.store import StoredRun


def pair_picker(labels: list[str], default: tuple[str, str] | None, key: str) -> tuple[str, str] | None:
    """Two selectboxes, "Candidate" and "Compare against": any two of `labels`, `default` first (e.g. the smallest
    common quantization against the 8-bit one). None when there are fewer than two labels."""
    labels = list(dict.fromkeys(labels))
    if len(labels) < 2:
        return None
    c1, c2 = st.columns(2)
    base_index = labels.index(default[1]) if default and default[1] in labels else 0
    baseline = c2.selectbox("Compare against", labels, index=base_index, key=f"{key}-baseline",
                            help="The baseline every difference, summary, changed fact and verdict reads against: "
                                 "any quantization, not only the reference. The noise floor stays the reference's "
                                 "own variation.")
    others = [x for x in labels if x != baseline]
    cand_index = others.index(default[0]) if default and default[0] in others else 0
    candidate = c1.selectbox("Candidate", others, index=cand_index, key=f"{key}-candidate-{baseline}",
                             help="The quantization you are deciding about.")
    return (candidate, baseline) if candidate is not None and baseline is not None else None


def headline_view(h: Headline, pair: str) -> None:
    """The sentence and what to do, in one box (amber when the evidence disagrees), the evidence folded under it."""
    st.markdown(f"**{md_escape(pair)}**")
    text = f"**{md_escape(h.sentence)}**\n\n{md_escape(h.advice)}"
    if h.disagreement:
        st.warning(text, icon=":material/compare_arrows:")
    else:
        st.info(text, icon=":material/lightbulb:")
    with st.expander("The evidence behind this sentence"):
        st.markdown("\n".join(f"- {md_escape(d)}" for d in h.details) or "No evidence yet.")
        st.caption("Changed facts, the noise floor and divergence are measured by the machine; blind votes are "
                   "people's. How the sentence is built: docs/headlines.md.")


def run_pair_section(run: StoredRun) -> str | None:
    """Compare's question for a stored run: pick the pair (Q4_K_M vs Q8_0 by default), show its headline; returns
    the baseline the columns below read against (None: the reference, when the run has fewer than two outputs)."""
    pair = pair_picker(run_outputs(run), default_run_pair(run), f"cmp-pair-{run.id}")
    if pair is None:
        return None
    headline_view(stored_run_headline(store(), run, *pair), f"{pair[0]} vs {pair[1]}")
    return pair[1]
