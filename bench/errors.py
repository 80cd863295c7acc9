"""User-facing errors: one line that names the file, key or value and what would be valid."""

from __future__ import annotations

from typing import Iterable

from strategies._registry import did_you_mean  # noqa: F401  (the one close-match helper; bench's messages use it)


class BenchError(Exception):
    """An error caused by the user's input; the CLI prints ``error: <message>`` and exits 2."""

    exit_code = 2


class GridIncomplete(BenchError):
    """Some trials of a grid errored; their results are missing from the leaderboard."""

    exit_code = 3


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C, with what the user can do next: the CLI prints ``interrupted; <next_step>`` and exits 130 (a plain
    KeyboardInterrupt: ``interrupted; re-run the same command to resume``)."""

    def __init__(self, next_step: str):
        super().__init__(next_step)
        self.next_step = next_step


def choices_text(choices: Iterable[str], *, limit: int = 12) -> str:
    """Render a short list of valid choices: ``'a', 'b', ... (40 in all)``."""
    choices = sorted(str(c) for c in choices)
    shown = ", ".join(repr(c) for c in choices[:limit])
    if len(choices) > limit:
        shown += f", ... ({len(choices)} in all)"
    return shown
