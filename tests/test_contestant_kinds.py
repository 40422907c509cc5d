"""Contestant kinds (runs.contestants.CONTESTANT_KINDS, the core.registry idiom): a local file and a remote endpoint
each declare once what differs about them, and the code that used to test `is_remote` asks the kind instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbench.core.registry import UnknownKind
from workbench.runs.batched import generate_many
from workbench.runs.contestants import CONTESTANT_KINDS, Contestant, RemoteEndpoint, RunSettings, variant_contestants
from workbench.runs.noise import NoiseError, check_repeatable
from workbench.runs.variants import Variant

ROOT = Path(__file__).resolve().parents[1]


def endpoint(label: str = "far") -> Contestant:
    ep = RemoteEndpoint("http://127.0.0.1:9", model="m", label=label)
    return Contestant(label, ep.display_url, endpoint=ep)


def test_the_kinds_are_declared_once_and_told_apart_in_one_place() -> None:
    assert CONTESTANT_KINDS.names() == ("local", "remote")
    local = Contestant("Q4", "/m/q4.gguf")
    assert local.kind is CONTESTANT_KINDS.get("local") and endpoint().kind is CONTESTANT_KINDS.get("remote")
    with pytest.raises(UnknownKind, match="use one of: local, remote"):
        CONTESTANT_KINDS.get("cloud")


def test_what_each_kind_can_do() -> None:
    local, far = Contestant("Q4", "/m/q4.gguf", kv_type_k="q8_0", kv_type_v="q8_0"), endpoint()
    assert (local.blank_result().kv_type_k, far.blank_result().kv_type_k) == ("q8_0", None)
    assert local.kind.describe(local) is None and far.kind.describe(far) == far.endpoint.to_dict()  # type: ignore[union-attr]
    assert [c.label for c in variant_contestants([local, far], [Variant("q4_0", "q4_0")], 2048)] == \
        ["Q4", "Q4 · KV q4_0", "far"]  # an endpoint takes no variants: it passes through
    with pytest.raises(NoiseError, match="far is a remote endpoint: at temperature 0 there is nothing to vary"):
        check_repeatable(far, RunSettings(), 2)
    check_repeatable(far, RunSettings(temperature=0.7), 2)  # other seeds vary it
    check_repeatable(local, RunSettings(), 2)  # other micro-batch sizes vary a local file
    with pytest.raises(ValueError, match="batched generation runs local files"):
        generate_many(None, far, RunSettings(), [])  # type: ignore[arg-type]
    assert far.kind.cannot_score and local.kind.cannot_score is None


def test_no_module_asks_whether_a_contestant_is_remote() -> None:
    asks = re.compile(r"\.is_remote\b")
    offenders = [str(p.relative_to(ROOT)) for folder in ("workbench", "ui", "pages") for p in (ROOT / folder).rglob("*.py")
                 if asks.search(p.read_text(encoding="utf-8"))]
    assert offenders == [], f"ask the contestant's kind instead of is_remote: {offenders}"
