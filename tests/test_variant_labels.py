"""The variant label grammar has one owner (runs.variants): what format_label writes, parse_label reads back."""

from __future__ import annotations

import pytest

from workbench.decide.evidence import CandidateKey, split_label
from workbench.runs.variants import KV_TYPES, ParsedLabel, Variant, format_label, parse_label


@pytest.mark.parametrize("base", ["Q4_K_M", "my file · nightly", "F16", "Q8_0 · KV"])
def test_every_label_format_label_writes_parses_back(base: str) -> None:
    for k in KV_TYPES:
        for v in KV_TYPES:
            for n_ctx in (None, 64, 1000, 8192, 1 << 20):
                label = format_label(base, k, v, n_ctx)
                assert parse_label(label) == ParsedLabel(base, k, v, n_ctx), label


def test_the_grammar_as_users_see_it() -> None:
    assert format_label("Q4_K_M") == "Q4_K_M"
    assert format_label("Q4_K_M", "q8_0", "q8_0", 8192) == "Q4_K_M · KV q8_0 · 8k"
    assert format_label("Q4_K_M", "q8_0", "q4_0") == "Q4_K_M · KV q8_0/q4_0"
    assert format_label("Q4_K_M", n_ctx=1000) == "Q4_K_M · KV f16 · 1000"
    assert parse_label("Q4_K_M · KV Q8_0 · 16k") == ParsedLabel("Q4_K_M", "q8_0", "q8_0", 16384)


def test_runs_and_decide_speak_the_same_grammar() -> None:
    """A variant's label (runs) and a candidate's label (decide) are the same string for the same thing."""
    for k in KV_TYPES:
        for v in KV_TYPES:
            label = Variant(k, v).label_for("Q4_K_M", 2048)
            assert CandidateKey("Q4_K_M", k, v).label == label
            assert split_label(label) == (CandidateKey("Q4_K_M", k, v), None)
