"""The one mechanism that turns a grid's raw YAML values into typed section fields, or into one-line errors.

A section of the grid is a frozen pydantic dataclass whose fields say their type and their rule with
``Annotated`` metadata from here::

    epochs: Annotated[int, INT, rule(lambda v: v >= 1, "an integer >= 1")] = 3

``INT`` / ``FLOAT`` / ``BOOL`` / ``STR`` / ``NAMES`` / ``MAPPING`` coerce a YAML value the way the grid
always has (``1e-3``, which YAML 1.1 reads as a string, is a number; ``3.0`` is an integer; ``true`` is
never a string), :func:`rule` checks the coerced value, and :func:`build` turns the first failure into
``FILE:LINE: section.key: VALUE is not valid; expected WHAT`` (the raw value for a type, the coerced one for
a rule). Pydantic also writes the grid's JSON Schema from the same fields (``bench schema``).

>>> from pydantic.dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo:
...     epochs: Annotated[int, INT, rule(lambda v: v >= 1, "an integer >= 1")] = 3
>>> build(Demo, {"epochs": 2.0}, "train", lambda key: "g.yaml:3").epochs
2
>>> build(Demo, {"epochs": 0}, "train", lambda key: "g.yaml:3")
Traceback (most recent call last):
bench.errors.BenchError: g.yaml:3: train.epochs: 0 is not valid; expected an integer >= 1
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

from bench.errors import BenchError

__all__ = ["Annotated", "BOOL", "FLOAT", "INT", "MAPPING", "NAMES", "STR", "build", "optional", "rule"]


def _bad(expected: str, **value):
    """Fail with ``expected EXPECTED``; ``value=`` names the coerced value (a rule's), else the raw one shows."""
    raise PydanticCustomError("bench", "expected {expected}", {"expected": expected, **value})


def _int(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        _bad("an integer")
    return raw


def _float(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        try:  # YAML 1.1 reads "1e-3" as a string: a numeric string is a number
            value = float(raw)
        except (TypeError, ValueError):
            _bad("a number")
        if not math.isfinite(value):
            _bad("a finite number")
        return value
    return float(raw)


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    _bad("true or false")


def _str(raw: Any) -> str:
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return str(raw)
    _bad("a string")


def _names(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(x, (str, int, float)) for x in raw):
        _bad("a list of names")
    return tuple(str(x) for x in raw)


def _mapping(raw: Any) -> dict[str, str | None]:
    if not isinstance(raw, Mapping):
        _bad("a mapping")
    # a null value is kept (aliases: {Lipoid: null} drops that name), never turned into the string 'None'
    return {str(k): (None if v is None else str(v)) for k, v in raw.items()}


INT, FLOAT, BOOL, STR = (BeforeValidator(_int), BeforeValidator(_float), BeforeValidator(_bool),
                         BeforeValidator(_str))
NAMES, MAPPING = BeforeValidator(_names), BeforeValidator(_mapping)


def optional(coerce: BeforeValidator) -> BeforeValidator:
    """``coerce``, with ``null`` kept as None (for a field typed ``X | None``)."""
    return BeforeValidator(lambda raw: None if raw is None else coerce.func(raw))


@dataclasses.dataclass(frozen=True, slots=True)
class _Rule(AfterValidator):
    """An after-validator that also says what it allows in JSON Schema words (``minimum``, ...)."""

    schema: dict | None = None

    def __get_pydantic_json_schema__(self, core_schema, handler):
        out = handler(core_schema)
        out.update(self.schema or {})
        return out


def rule(ok: Callable[[Any], bool], expected: str, **schema: Any) -> AfterValidator:
    """Check the coerced value: ``ok(value)`` or the error ``expected EXPECTED`` (None always passes);
    ``schema`` is the same rule for the grid's JSON Schema (``minimum=1``), where it can say it."""
    def check(value):
        if value is not None and not ok(value):
            _bad(expected, value=value)
        return value

    return _Rule(check, schema or None)


def build(cls, value: Mapping, prefix: str, where: Callable[[str], str]):
    """Construct section ``cls`` from the grid's mapping ``value`` (keys already checked); the first value
    that fails, in the order the grid gives them, is a one-line :class:`BenchError`."""
    try:
        return cls(**value)
    except ValidationError as exc:
        order = {str(k): i for i, k in enumerate(value)}
        errors = sorted(exc.errors(), key=lambda e: order.get(str(e["loc"][0]) if e["loc"] else "", len(order)))
        err = errors[0]
        key = f"{prefix}.{err['loc'][0]}" if err["loc"] else prefix
        ctx = err.get("ctx") or {}
        # our coercions and rules say what they expected; so does a Literal ("'adamw' or 'sgd'")
        known = err["type"] in ("bench", "literal_error") and ctx.get("expected")
        text = f"expected {ctx['expected']}" if known else err["msg"]
        value = ctx["value"] if "value" in ctx else err["input"]
        if err["type"] == "literal_error" and not isinstance(value, (bool, str)):
            value = str(value)  # a Literal field is a string field (STR): show the value as it was coerced
        raise BenchError(f"{where(key)}: {key}: {value!r} is not valid; {text}") from None
