"""A tiny name -> factory registry, so that a method's name is written in one place only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from histolatent.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Register with the decorator, build with :meth:`get`.

    Parameters
    ----------
    kind : str
        What the registry holds ("model", "dataset"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise InputError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
