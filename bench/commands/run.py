"""``bench run``: run or resume a grid on Ray Tune, then build its reports."""

from __future__ import annotations

from bench.commands.output import add_set_argument, make_bar, say
from bench.errors import GridIncomplete


def add_parser(sub) -> None:
    r = sub.add_parser("run", help="run a grid (backbone x strategy x fold x seed) on Ray Tune")
    r.add_argument("--grid", required=True, help="grid YAML, e.g. grids/demo.yaml")
    r.add_argument("--out", help="run folder (default runs/<grid name>); re-running resumes it")
    r.add_argument("--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: local Ray)")
    r.add_argument("--storage", help="experiment storage: a shared path, s3://bucket/prefix or gs://... "
                   "(default: inside the run folder)")
    r.add_argument("--resume", action="store_true", help="require an earlier run of this grid in --out to resume")
    add_set_argument(r)
    r.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from bench.run import run_grid
    from reports.leaderboard import build_report, format_top

    outcome = run_grid(args.grid, out=args.out, address=args.address, storage=args.storage, resume=args.resume,
                       overrides=args.overrides, say=say if not args.quiet else (lambda s: None),
                       bar=make_bar(args.quiet))
    if not outcome.completed:
        raise GridIncomplete(f"no trial finished; errors: {_first_errors(outcome.errors)}. Re-run the same command "
                             "to retry them")
    report = build_report(outcome.run_dir)
    from bench.tracking import publish

    publish(outcome.run_dir, say=say if not args.quiet else (lambda s: None))  # the report on the MLflow parent run
    say(f"\nfinished {len(outcome.completed)} trial(s) in {outcome.seconds:.0f}s; results in {outcome.run_dir}")
    say(format_top(report.leaderboard))
    from reports.runfolder import LEADERBOARD_CSV, LEADERBOARD_HTML

    say(f"\nleaderboard: {report.files[LEADERBOARD_CSV]}\npage:        {report.files.get(LEADERBOARD_HTML)}")
    if outcome.errors:
        for tid, err in sorted(outcome.errors.items()):
            say(f"  errored: {tid}: {err}")
        raise GridIncomplete(f"{len(outcome.errors)} of {len(outcome.errors) + len(outcome.completed)} trials errored; "
                             f"the leaderboard is incomplete. Re-run the same command to retry them.")
    return 0


def _first_errors(errors: dict) -> str:
    items = sorted(errors.items())[:3]
    return "; ".join(f"{k}: {v}" for k, v in items) + (" ..." if len(errors) > 3 else "")
