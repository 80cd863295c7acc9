"""``bench report``: rebuild every CSV and the HTML page from a run folder's files."""

from __future__ import annotations

from pathlib import Path

from bench.commands.output import say
from bench.errors import BenchError


def add_parser(sub) -> None:
    rep = sub.add_parser("report", help="rebuild leaderboard.csv / .html from a run folder's files")
    rep.add_argument("run_dir")
    rep.add_argument("--bootstrap", type=int, default=None, help="bootstrap replicates (default: the grid's)")
    rep.add_argument("--no-html", action="store_true")
    rep.add_argument("--top", type=int, default=10, help="rows printed")
    rep.add_argument("--format", dest="table_format", choices=["latex", "markdown"], default=None,
                     help="also write the leaderboard as a paper table (leaderboard.tex / leaderboard.md: means, "
                          "95%% intervals, best per backbone in bold, the tests in a footnote) and print it")
    rep.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from reports.leaderboard import build_report, format_top

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise BenchError(f"{args.run_dir}: run folder not found")
    try:
        report = build_report(run_dir, n_boot=args.bootstrap, html=not args.no_html)
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from None
    say(format_top(report.leaderboard, n=args.top))
    for name, path in report.files.items():
        say(f"wrote {path}")
    if args.table_format:
        from reports import paper
        from reports.runfolder import write_atomic

        text = paper.render(report.leaderboard, args.table_format, significance=report.significance,
                            baseline=(report.grid.get("report") or {}).get("baseline"))
        path = run_dir / paper.FORMATS[args.table_format]
        write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        say(text.rstrip("\n"))
        say(f"wrote {path}")
    return 0
