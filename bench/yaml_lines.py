r"""YAML read safely, with every key's line: what turns a bad value into ``FILE:LINE: key: ...`` errors.

Used by the grid (:mod:`bench.config`) and the cluster file (:mod:`bench.cluster`).

>>> import yaml
>>> line_map(yaml.compose("train:\n  epochs: 3\nseeds: [0, 1]\n"))
{'train': 1, 'train.epochs': 2, 'seeds': 3, 'seeds[0]': 3, 'seeds[1]': 3}
>>> line_of({'train': 1}, "train.epochs")
1
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import BenchError


class Where:
    """Maps key paths ("train.epochs") to line numbers in the YAML file."""

    def __init__(self, path: str, lines: dict[str, int]):
        self.path, self.lines = path, lines

    def __call__(self, key: str) -> str:
        line = line_of(self.lines, key)
        return f"{self.path}:{line}" if line else self.path


def line_of(lines: dict[str, int], key: str) -> int | None:
    """The line of ``key`` ("train.epochs", "head_start_ray_commands[1]") in a :func:`line_map`, or of
    the nearest key that encloses it."""
    while key:
        if key in lines:
            return lines[key]
        key = key[:max(key.rfind("."), key.rfind("["), 0)]
    return None


def line_map(node, prefix: str = "", out: dict | None = None) -> dict[str, int]:
    """Key paths of a composed YAML node ("train.epochs", "a[0].b") -> 1-based line numbers."""
    import yaml

    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[key] = k.start_mark.line + 1
            line_map(v, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            key = f"{prefix}[{i}]"
            out[key] = v.start_mark.line + 1
            line_map(v, key, out)
    return out


def read_yaml(path: Path, *, shown: str | None = None):
    """Safely load a YAML file; returns (data, node) where ``node`` locates keys (see :func:`line_map`).

    Raises BenchError ``FILE:LINE: YAML syntax error: ...`` on malformed YAML; only plain YAML types are
    constructed (``yaml.SafeLoader``), so a ``!!python/...`` tag is an error, never code.
    """
    import yaml

    shown = shown or str(path)
    text = Path(path).read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark else shown
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchError(f"{where}: YAML syntax error: {problem}") from None
