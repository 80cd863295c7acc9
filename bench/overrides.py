"""Command-line overrides of a grid: ``--set KEY=VALUE`` (``bench run``, ``bench tune``, ``bench data``).

``KEY`` is a dotted path into the grid (``train.epochs``, ``dataset.root``, ``strategies``); ``VALUE`` is
read as YAML, like the grid file (``1``, ``1e-3``, ``true``, ``null``, ``[bce, focal]``,
``{name: focal_g3, loss: {name: focal, gamma: 3}}``). The overrides are applied, in order, to the mapping
the grid file holds, and the result is validated exactly like a file; an error about a key an override set
names the override instead of the file's line::

    --set train.epochs=x: train.epochs: 'x' is not valid; expected an integer

>>> apply_overrides({"train": {"epochs": 3}}, ["train.epochs=1", "strategies=[bce, focal]"])
{'train': {'epochs': 1}, 'strategies': ['bce', 'focal']}
>>> where = OverrideWhere(lambda key: "g.yaml:4", ["train.epochs=x"])
>>> where("train.epochs"), where("train.lr")
('--set train.epochs=x', 'g.yaml:4')
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Callable, Sequence

from bench.errors import BenchError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def split_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=1"`` -> ``("train.epochs", 1)`` (the value read as YAML); a one-line error otherwise."""
    import yaml

    key, eq, raw = str(text).partition("=")
    key = key.strip()
    if not eq or not _KEY.match(key):
        raise BenchError(f"--set {text}: expected KEY=VALUE with a dotted grid key (e.g. --set train.epochs=1, "
                         "--set 'strategies=[bce, focal]')")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchError(f"--set {text}: the value is not valid YAML ({problem})") from None
    return key, value


def apply_overrides(data: Mapping | None, overrides: Sequence[str]) -> dict:
    """A copy of the grid mapping ``data`` with each ``KEY=VALUE`` of ``overrides`` set, in order (sections
    the grid leaves out, or null, are created)."""
    out = copy.deepcopy(dict(data or {}))
    for text in overrides:
        key, value = split_override(text)
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                here = ".".join(parts[:i + 1])
                raise BenchError(f"--set {text}: {here} is not a mapping (it is {child!r}); set {here} itself, "
                                 f"e.g. --set '{here}=...'")
            node = child
        node[parts[-1]] = value
    return out


class OverrideWhere:
    """Where a grid key comes from, for its error messages: the override that set it (or set a key inside
    it), else the grid file's line (``base``)."""

    def __init__(self, base: Callable[[str], str], overrides: Sequence[str], given: Mapping | None = None):
        self.base, self.given = base, given or {}
        self.keys = [(split_override(text)[0], text) for text in overrides]

    def known(self, key: str) -> bool:
        """Whether the grid as given (before the overrides) has ``key``."""
        node: Any = self.given
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True

    def __call__(self, key: str) -> str:
        for set_key, text in reversed(self.keys):  # the last override of a key is the one that counts
            if key == set_key or key.startswith((set_key + ".", set_key + "[")):
                return f"--set {text}"
        if not self.known(key):  # a key only an override brought in (an unknown one, a new section)
            for set_key, text in reversed(self.keys):
                if set_key.startswith(key + "."):
                    return f"--set {text}"
        return self.base(key)


def effective_yaml(path, overrides: Sequence[str]) -> str:
    """The grid file at ``path`` with ``overrides`` applied, as YAML (what a run folder's ``grid.yaml`` records
    when ``--set`` changed the file's values), headed by a comment naming the file and the overrides."""
    from pathlib import Path

    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    head = f"# {path} with " + " ".join(f"--set {text}" for text in overrides) + "\n"
    return head + yaml.safe_dump(apply_overrides(data, overrides), sort_keys=False, width=120)
