"""User-facing errors: one line that names the file, key or value and what would be valid."""

from __future__ import annotations

import difflib
from typing import Iterable


class BenchError(Exception):
    """An error caused by the user's input; the CLI prints ``error: <message>`` and exits 2."""

    exit_code = 2


class GridIncomplete(BenchError):
    """Some trials of a grid errored; their results are missing from the leaderboard."""

    exit_code = 3


def did_you_mean(value: str, choices: Iterable[str], *, n: int = 3) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choices, or ``""``.

    >>> did_you_mean("focl", ["focal", "bce"])
    "; did you mean 'focal'?"
    """
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), choices, n=n, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(str(value).lower(), list(lowered), n=n, cutoff=0.6)]
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def choices_text(choices: Iterable[str], *, limit: int = 12) -> str:
    """Render a short list of valid choices: ``'a', 'b', ... (40 in all)``."""
    choices = sorted(str(c) for c in choices)
    shown = ", ".join(repr(c) for c in choices[:limit])
    if len(choices) > limit:
        shown += f", ... ({len(choices)} in all)"
    return shown
