"""core.registry: the one idiom for things that come in kinds."""

import pytest

from workbench.core.registry import Registry, UnknownKind


def test_entries_keep_their_order_and_a_typo_names_the_choices():
    reg: Registry[int] = Registry("checker kind")
    reg.add("exact", 1)

    @reg.register("regex")
    def _regex() -> int:
        return 2

    assert reg.names() == ("exact", "regex")
    assert reg.get("exact") == 1 and "regex" in reg and len(reg) == 2
    with pytest.raises(UnknownKind, match="unknown checker kind 'regx'; use one of: exact, regex"):
        reg.get("regx")
    with pytest.raises(UnknownKind):
        reg.get(["not", "hashable"])  # type: ignore[arg-type]


def test_a_name_is_taken_once():
    reg: Registry[int] = Registry("command")
    reg.add("compare", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("compare", 2)
