"""``bench cluster validate``: check a Ray cluster file offline."""

from __future__ import annotations

import sys

from bench.commands.output import say


def add_parser(sub) -> None:
    c = sub.add_parser("cluster", help="Ray cluster tools")
    csub = c.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND")
    csub.required = True
    v = csub.add_parser("validate", help="check cluster.yaml against Ray's autoscaler schema (offline)")
    v.add_argument("file", nargs="?", default="cluster.yaml")
    v.set_defaults(func=cmd_cluster_validate)


def cmd_cluster_validate(args) -> int:
    from bench.cluster import validate_cluster_file

    problems = validate_cluster_file(args.file)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    say(f"{args.file}: valid Ray cluster configuration")
    return 0
