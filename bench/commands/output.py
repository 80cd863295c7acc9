"""What every subcommand prints with: result lines on stdout, progress bars on stderr, JSON of numpy values."""

from __future__ import annotations

import sys


def say(text: str) -> None:
    print(text, flush=True)


def make_bar(quiet: bool):
    """Factory of progress callbacks ``(done, total)`` drawing a tqdm bar on stderr."""

    def bar(desc: str):
        if quiet:
            return None
        from tqdm import tqdm

        state: dict = {}

        def update(done: int, total: int) -> None:
            if "bar" not in state:
                state["bar"] = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False,
                                    mininterval=0.5)
            b = state["bar"]
            b.update(done - b.n)
            if done >= total:
                b.close()

        return update

    return bar


def json_default(o):
    """``json.dumps``'s ``default`` for numpy scalars and arrays (anything else as its string)."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def add_set_argument(parser) -> None:
    """``--set KEY=VALUE`` (repeatable): change a grid value from the command line (:mod:`bench.overrides`)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="change a grid value, e.g. --set train.epochs=1 --set 'strategies=[bce, focal]' "
                             "(VALUE read as YAML; repeatable; validated like the grid file)")
