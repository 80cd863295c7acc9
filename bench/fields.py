"""The one mechanism that turns a grid's raw YAML values into typed section fields, or into one-line errors.

A section of the grid is a frozen pydantic dataclass whose fields say their type and their rule with
``Annotated`` metadata from here::

    epochs: Annotated[int, INT, rule(lambda v: v >= 1, "an integer >= 1")] = 3

``INT`` / ``FLOAT`` / ``BOOL`` / ``STR`` / ``NAMES`` / ``MAPPING`` coerce a YAML value the way the grid
always has (``1e-3``, which YAML 1.1 reads as a string, is a number; ``3.0`` is an integer; ``true`` is
never a string), ``CHOICE`` checks a ``Literal[...]`` field's string, :func:`rule` checks the coerced value,
and :func:`build` turns the first failure into ``FILE:LINE: section.key: VALUE is not valid; expected WHAT``
(the raw value for a type, the coerced one for a rule). :func:`parse` adds the mapping check and the unknown
key check (with a "did you mean"); every section of the grid, each dataset kind's included, and the grid's
top level go through it. ``PATH`` marks a field that names a file or folder (made absolute by
``bench.config.resolve_paths``). Pydantic also writes the grid's JSON Schema from the same fields
(``bench schema``).

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
import functools
import math
from collections.abc import Mapping
from typing import Annotated, Any, Callable, get_args

from pydantic import AfterValidator, BeforeValidator, ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic_core import PydanticCustomError, core_schema

from bench.errors import BenchError, did_you_mean

__all__ = ["Annotated", "BOOL", "CHOICE", "FLOAT", "INT", "MAPPING", "NAMES", "PATH", "STR", "build", "check_keys",
           "fail", "fields_with", "optional", "parse", "rule", "section"]

#: Decorates a section of the grid: a frozen pydantic dataclass that refuses keys it does not have.
section = functools.partial(_pydantic_dataclass, frozen=True, config=ConfigDict(extra="forbid"))


def _bad(expected: str, **value):
    """Fail with ``expected EXPECTED``; ``value=`` names the coerced value (a rule's), else the raw one shows;
    ``at=`` a part of the key below the field (``"[2]"``: the field's third item)."""
    raise PydanticCustomError("bench", "expected {expected}", {"expected": expected, **value})


def fail(message: str, *, at: str = "") -> None:
    """Fail with a whole message of its own (the text after ``FILE:LINE: ``), located at the field, or at
    ``at`` below it (``"[2]"``)."""
    raise PydanticCustomError("bench_text", "{message}", {"message": message, "at": at})


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


class _Choice:
    """``Annotated[Literal["a", "b"], CHOICE]``: the value as a string (see ``STR``), one of the ``Literal``'s;
    the error lists them (``expected 'a' or 'b'``, ``expected one of 'a', 'b', 'c'``)."""

    def __get_pydantic_core_schema__(self, source, handler):
        values = get_args(source)
        expected = (" or ".join(map(repr, values)) if len(values) <= 2
                    else "one of " + ", ".join(map(repr, values)))

        def check(raw):
            value = _str(raw)
            if value not in values:
                _bad(expected, value=value)
            return value

        return core_schema.no_info_before_validator_function(check, handler(source))


class _Path:
    """Marks a field that names a file or a folder (``bench.config.resolve_paths`` makes it absolute)."""

    def __repr__(self) -> str:
        return "PATH"


CHOICE, PATH = _Choice(), _Path()


def fields_with(cls, marker: Any) -> tuple[str, ...]:
    """The fields of section ``cls`` whose ``Annotated`` metadata holds ``marker`` (e.g. :data:`PATH`)."""
    return tuple(name for name, info in cls.__pydantic_fields__.items() if any(m is marker for m in info.metadata))


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


def check_keys(data: Mapping, allowed, prefix: str, where: Callable[[str], str]) -> None:
    """Refuse a key of ``data`` that is not in ``allowed``: one line with close matches and the valid keys."""
    allowed = set(allowed)
    for key in data:
        if key not in allowed:
            full = f"{prefix}.{key}" if prefix else str(key)
            raise BenchError(f"{where(full)}: unknown key {full!r}{did_you_mean(str(key), allowed)} "
                             f"(valid{' under ' + prefix if prefix else ''}: {', '.join(sorted(allowed))})")


def parse(cls, value: Any, prefix: str, where: Callable[[str], str], *, allowed=None, **given: Any):
    """Section ``cls`` from the grid's value at ``prefix``: a mapping (null is an empty one) whose keys are
    fields of ``cls`` (or ``allowed``), each value coerced and checked by :func:`build`. ``given`` are
    fields the grid does not write (already built, such as nested sections)."""
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise BenchError(f"{where(prefix)}: {prefix} must be a mapping, got {value!r}")
    check_keys(value, [f.name for f in dataclasses.fields(cls)] if allowed is None else allowed, prefix, where)
    return build(cls, {**value, **given}, prefix, where)


def build(cls, value: Mapping, prefix: str, where: Callable[[str], str]):
    """Construct section ``cls`` from the grid's mapping ``value`` (keys already checked); the first value
    that fails, in the order the grid gives them, is a one-line :class:`BenchError`."""
    try:
        return cls(**value)
    except ValidationError as exc:
        order = {str(k): i for i, k in enumerate(value)}
        errors = sorted(exc.errors(), key=lambda e: order.get(str(e["loc"][0]) if e["loc"] else "", len(order)))
        err = errors[0]
        ctx = err.get("ctx") or {}
        name = str(err["loc"][0]) if err["loc"] else ""
        key = ".".join(p for p in (prefix, name) if p) + (ctx.get("at") or "")
        if err["type"] == "bench_text":
            raise BenchError(f"{where(key)}: {ctx['message']}") from None
        # our coercions and rules say what they expected; so does a Literal ("'adamw' or 'sgd'")
        known = err["type"] in ("bench", "literal_error") and ctx.get("expected")
        text = f"expected {ctx['expected']}" if known else err["msg"]
        value = ctx["value"] if "value" in ctx else err["input"]
        if err["type"] == "literal_error" and not isinstance(value, (bool, str)):
            value = str(value)  # a Literal field is a string field (STR): show the value as it was coerced
        raise BenchError(f"{where(key)}: {key}: {value!r} is not valid; {text}") from None
