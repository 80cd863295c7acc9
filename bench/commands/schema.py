"""``bench schema`` (also ``bench grid schema``): the grid's JSON Schema, for editors."""

from __future__ import annotations

import json
from pathlib import Path

from bench.commands.output import say


def add_parser(sub) -> None:
    sc = sub.add_parser("schema", help="print the grid's JSON Schema (for editors; from the grid's own sections)")
    _arguments(sc)
    grid = sub.add_parser("grid", help="grid tools: schema (the same as bench schema)")
    gsub = grid.add_subparsers(dest="grid_command", metavar="SUBCOMMAND")
    gsub.required = True
    _arguments(gsub.add_parser("schema", help="print the grid's JSON Schema (the same as bench schema)"))


def _arguments(parser) -> None:
    parser.add_argument("--out", help="write it to this file instead")
    parser.add_argument("--builtin", action="store_true",
                        help="list the built-in strategy presets only, not ./presets and $BENCH_PRESETS files "
                             "(what grids/grid.schema.json ships)")
    parser.set_defaults(func=cmd_schema)


def cmd_schema(args) -> int:
    from bench.schema import grid_schema

    text = json.dumps(grid_schema(user_presets=not args.builtin), indent=1)
    if args.out:
        from reports.runfolder import write_atomic

        write_atomic(Path(args.out), lambda tmp: tmp.write_text(text + "\n"))
        say(f"wrote {args.out}")
    else:
        print(text)
    return 0
