"""``bench schema``: the grid's JSON Schema, for editors."""

from __future__ import annotations

import json
from pathlib import Path

from bench.commands.output import say


def add_parser(sub) -> None:
    sc = sub.add_parser("schema", help="print the grid's JSON Schema (for editors; from the grid's own sections)")
    sc.add_argument("--out", help="write it to this file instead")
    sc.set_defaults(func=cmd_schema)


def cmd_schema(args) -> int:
    from bench.schema import grid_schema

    text = json.dumps(grid_schema(), indent=1)
    if args.out:
        from reports.runfolder import write_atomic

        write_atomic(Path(args.out), lambda tmp: tmp.write_text(text + "\n"))
        say(f"wrote {args.out}")
    else:
        print(text)
    return 0
