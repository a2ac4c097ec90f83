"""Name -> object registries for everything a config or a sweep can name."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from practicum.errors import UsageError

T = TypeVar("T")


def nearest(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry(Generic[T]):
    """A dict with a decorator and an error that names the nearest valid entry."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None):
        """``reg.register("x", obj)`` or ``@reg.register("x")`` on a function or class."""

        def add(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = o
            return o

        return add(obj) if obj is not None else add

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items))
            raise UsageError(
                f"unknown {self.kind} '{name}'{nearest(name, self._items)}; valid: {valid}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())


def build(registry: Registry[Callable[..., T]], name: str, **kwargs) -> T:
    return registry[name](**kwargs)
