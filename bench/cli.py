"""The ``bench`` command line: a small dispatcher over :mod:`bench.commands`, one module per subcommand.

Each subcommand's module adds its own arguments beside its action; heavy libraries are imported inside the
actions, so ``bench --help`` and ``bench list`` start in well under a second without torch or Ray.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from importlib import import_module

from bench import __version__
from bench.commands import COMMANDS
from bench.errors import BenchError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Benchmark class-imbalance strategies for multi-label "
                                "chest X-ray classification on Ray Tune.")
    p.add_argument("--version", action="version", version=f"bench {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        import_module(f"bench.commands.{name}").add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.debug:
        os.environ.setdefault("BENCH_DEBUG", "1")
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"interrupted; {getattr(exc, 'next_step', None) or 're-run the same command to resume'}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if args.debug:
            raise
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" while writing {exc.filename}" if exc.filename else ""
            print(f"error: no space left on the device{where}; nothing was left half-written. Free some space (or "
                  "give --out / --storage on another disk) and re-run the same command: finished trials are kept",
                  file=sys.stderr)
            return 1
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {msg} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
