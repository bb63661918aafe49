"""A name -> entry table for one extension point (optimizers, learning-rate schedules,
augmentations, samplers, schedulers), after timm's model registry and Ray Tune's scheduler
table: entries register with a decorator, and an unknown name is an error that lists the valid
ones. The model registry (``models/_registry.py``) is the same idea with more to record."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, in the order they were registered.

    Args:
        kind: What the entries are, for error messages ("optimizer", "augmentation").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """A decorator that registers its function (or class) under each of ``names``."""

        def decorator(entry: T) -> T:
            for name in names:
                if name in self._entries:
                    raise ValueError(f"{self.kind} {name!r} is already registered")
                self._entries[name] = entry
            return entry

        return decorator

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r} (valid: {', '.join(self._entries)})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, in registration order."""
        return list(self._entries.items())
