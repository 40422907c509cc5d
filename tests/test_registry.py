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


def test_cli_commands_and_checker_kinds_are_registry_entries():
    """The two registries that use it: `workbench --help` lists exactly the registered commands, in their order, and
    a check of a kind nobody registered is refused with the registry's list of kinds."""
    import argparse

    from workbench.cli.main import COMMANDS, build_parser
    from workbench.quality.checkers import CHECKER_KINDS, CHECKERS, build_checker

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(sub.choices) == COMMANDS.names()
    assert COMMANDS.names()[:3] == ("demo", "ladder", "compare") and COMMANDS.names()[-1] == "imatrix-gain"
    assert all(callable(COMMANDS.get(name).run) for name in COMMANDS.names())
    assert CHECKER_KINDS == CHECKERS.names() and "json" in CHECKERS
    with pytest.raises(ValueError, match="unknown checker kind 'regx'; use one of: exact, contains, regex"):
        build_checker({"kind": "regx", "pattern": "a"})
