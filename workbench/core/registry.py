"""One idiom for things that come in kinds: a small named table, filled where each kind is defined.

CLI commands, quality checkers and contestant kinds (local file, remote endpoint) each have one `Registry`,
declared once in the module that owns the idea; each kind adds itself with `@REGISTRY.register("name")` (or
`REGISTRY.add`) beside its own code, the way simonw/llm's plugins register models and commands. Asking for a
kind that is not there raises `UnknownKind` naming the kinds that are, so a typo gets a useful message.
Imports nothing from the workbench.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownKind(LookupError):
    """A name no kind was registered under; the message lists the ones that were."""


class Registry(Generic[T]):
    """Named entries of one kind of thing, in the order they were registered; a name is taken once."""

    def __init__(self, what: str) -> None:
        self.what = what  # "command", "checker kind": how messages name an entry
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register `entry` under `name`; a second entry under the same name is a bug, so it raises."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`: `@COMMANDS.register("compare")` above the handler."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownKind(f"unknown {self.what} {name!r}; use one of: {', '.join(self._entries)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
