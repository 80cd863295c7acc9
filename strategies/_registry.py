"""A small decorator registry with lazy entries, wildcard listing and close-match errors.

Shared by ``strategies`` and ``backbones``. Entries are either objects or ``"module:attr"``
strings resolved on first use, so listing names never imports torch.

>>> reg = Registry("loss")
>>> @reg.register("bce", description="binary cross-entropy")
... class BCE: ...
>>> [e.name for e in reg.list("b*")]
['bce']
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping


def did_you_mean(value: Any, choices: Iterable[Any], *, n: int = 3, cutoff: float = 0.6,
                 fold_case: bool = True) -> str:
    """``"; did you mean 'x'?"`` naming up to ``n`` close matches of ``value`` among ``choices``, or ``""``.

    The one close-match helper of the harness (``bench.errors`` re-exports it). ``cutoff`` is difflib's
    similarity ratio; with ``fold_case`` a value with no close match is tried again ignoring case.

    >>> did_you_mean("focl", ["focal", "bce"])
    "; did you mean 'focal'?"
    >>> did_you_mean("PATH", ["path"]), did_you_mean("PATH", ["path"], fold_case=False)
    ("; did you mean 'path'?", '')
    """
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), choices, n=n, cutoff=cutoff)
    if not close and fold_case:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(str(value).lower(), list(lowered), n=n, cutoff=cutoff)]
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""


class UnknownNameError(KeyError):
    """An unknown registry name; ``str()`` is a one-line message with close matches."""

    def __init__(self, kind: str, name: str, choices: list[str]):
        self.kind, self.name, self.choices = kind, name, choices
        super().__init__(name)

    def __str__(self) -> str:
        hint = did_you_mean(self.name, self.choices, n=3, cutoff=0.5, fold_case=False)
        listing = ", ".join(self.choices[:20]) + (", ..." if len(self.choices) > 20 else "")
        return f"unknown {self.kind} {self.name!r}{hint} (choose from: {listing})"


def natural_key(text: str) -> list:
    """Sort key that orders ``resnet18`` before ``resnet101``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Entry:
    name: str
    target: Any  # an object, or "package.module:attribute"
    description: str = ""
    meta: dict = field(default_factory=dict)

    def load(self) -> Any:
        if isinstance(self.target, str) and ":" in self.target:
            module, attr = self.target.split(":", 1)
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        return self.target


class Registry:
    """Names -> entries for one kind of thing ("loss", "sampler", "backbone", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: Any = None, *, description: str = "", **meta) -> Callable:
        """Register ``target`` under ``name``; without ``target`` it works as a decorator."""

        def add(obj: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, obj, description, dict(meta))
            return obj

        if target is not None:
            add(target)
            return lambda obj: obj
        return add

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries, key=natural_key)

    def registered(self) -> list[str]:
        """The names in the order they were registered."""
        return list(self._entries)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def list(self, pattern: str | None = None) -> list[Entry]:
        """Entries whose name matches the shell-style ``pattern`` (all when ``None``), naturally sorted."""
        names = self.names()
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return [self._entries[n] for n in names]

    def create(self, name: str, **params) -> Any:
        """Instantiate entry ``name`` with its registered defaults overridden by ``params``."""
        entry = self.get(name)
        kwargs = {**entry.meta.get("defaults", {}), **params}
        return entry.load()(**kwargs)


def as_mapping(part) -> dict:
    """A component given in a spec as a name or as a mapping with a ``name``, as a new dict.

    >>> as_mapping("focal"), as_mapping({"name": "cb", "beta": 0.99})
    ({'name': 'focal'}, {'name': 'cb', 'beta': 0.99})
    """
    if isinstance(part, str):
        return {"name": part}
    if isinstance(part, Mapping):
        return dict(part)
    raise ValueError(f"expected a name or a mapping, got {part!r}")
