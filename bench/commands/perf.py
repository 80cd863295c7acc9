"""``bench perf``: the measurements of BENCHMARKS.md, regenerated."""

from __future__ import annotations

from bench.commands.output import say


def add_parser(sub) -> None:
    pf = sub.add_parser("perf", help="measure throughput against plain PyTorch and regenerate BENCHMARKS.md")
    pf.add_argument("--quick", action="store_true", help="smaller measurements (about a minute)")
    pf.add_argument("--only", help="comma-separated sections: overhead,data,grid,cost,gpu,eval")
    pf.add_argument("--out", default="BENCHMARKS.md")
    pf.set_defaults(func=cmd_perf)


def cmd_perf(args) -> int:
    from bench.perf import main as perf_main

    return perf_main(only=args.only, quick=args.quick, out=args.out, say=say)
