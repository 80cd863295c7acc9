"""``bench compare RUN_A RUN_B ...``: runs side by side, one page and two CSVs, tests where the runs pair."""

from __future__ import annotations

from pathlib import Path

from bench.commands.output import say
from bench.errors import BenchError


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare run folders side by side (the first is the reference): "
                                       "comparison.html, comparison.csv, comparison_tests.csv")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more run folders (bench report written)")
    p.add_argument("--out", help="folder for the comparison (default: runs/compare-<first>-vs-<second>[...])")
    p.add_argument("--names", help="comma-separated names for the runs (default: their folder names)")
    p.add_argument("--bootstrap", type=int, default=None,
                   help="bootstrap replicates for the differences (default: the reference grid's report.bootstrap)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from reports.runcompare import compare_runs, write

    if len(args.runs) < 2:
        raise BenchError(f"bench compare needs at least two run folders; got {len(args.runs)}")
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    try:
        cmp = compare_runs(args.runs, names=names, n_boot=args.bootstrap)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    out = Path(args.out or Path("runs") / ("compare-" + "-vs-".join(Path(r).name for r in args.runs)))
    files = write(cmp, out)
    tests = cmp.tests
    if not tests.empty:
        for run, g in tests.groupby("run", sort=False):
            if not g["paired"].any():
                say(f"{run}: not paired with {cmp.runs[0].name} (different split): intervals only, no test")
            else:
                called = g[g["verdict"].isin(["higher", "lower"])]
                say(f"{run} vs {cmp.runs[0].name}: {len(called)} of {len(g)} differences called real "
                    "(paired bootstrap and corrected t, Holm)")
    for path in files.values():
        say(f"wrote {path}")
    return 0
