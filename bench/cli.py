"""The ``bench`` command line. Thin: parses arguments, calls the library, prints results.

Heavy libraries are imported inside the commands, so ``bench --help`` and ``bench list`` start
in well under a second without torch or Ray.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path

from bench import __version__
from bench.errors import BenchError, GridIncomplete


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


# ---- commands ----------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from bench.run import run_grid
    from reports.leaderboard import build_report, format_top

    outcome = run_grid(args.grid, out=args.out, address=args.address, storage=args.storage, resume=args.resume,
                       say=say if not args.quiet else (lambda s: None), bar=make_bar(args.quiet))
    if not outcome.completed:
        raise GridIncomplete(f"no trial finished; errors: {_first_errors(outcome.errors)}. Re-run the same command "
                             "to retry them")
    report = build_report(outcome.run_dir)
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
    return 0


def cmd_list(args) -> int:
    if args.what == "backbones":
        from backbones import list_backbones

        entries = list_backbones(args.pattern)
        for e in entries:
            say(f"{e.name:<24} {e.description}" + ("  [tiny]" if e.meta.get("tiny") else ""))
    elif args.what in ("datasets", "cams"):
        if args.what == "datasets":
            from bench.data.catalogue import DATASETS as reg
        else:
            from bench.cam_methods import CAMS as reg

        entries = reg.list(args.pattern)
        for e in entries:
            say(f"{e.name:<24} {e.description}")
    else:
        import strategies

        reg = {"strategies": strategies.STRATEGIES, "losses": strategies.LOSSES, "samplers": strategies.SAMPLERS,
               "thresholds": strategies.THRESHOLDS}[args.what]
        # list_strategies also registers the preset files of ./presets and $BENCH_PRESETS (bench tune's)
        entries = strategies.list_strategies(args.pattern) if args.what == "strategies" else reg.list(args.pattern)
        for e in entries:
            say(f"{e.name:<24} {e.description}")
    if not entries:
        raise BenchError(f"no {args.what} match {args.pattern!r}")
    return 0


def cmd_synth(args) -> int:
    from bench.data.synthetic import write_synthetic

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"--out {args.out!r} exists and is not empty; choose a new folder")
    summary = write_synthetic(out, n=args.n, size=args.size, seed=args.seed, progress=make_bar(args.quiet)("writing"))
    say(f"wrote {summary.get('images', args.n)} images of {summary.get('patients', '?')} patients to {out}")
    labels = summary.get("labels") or summary.get("positives") or {}
    if labels:
        say("positives: " + ", ".join(f"{k} {v}" for k, v in labels.items()))
    return 0


def _dataset_from_args(args):
    """A DatasetConfig from --grid or --dataset/--root."""
    import dataclasses

    from bench.config import load_grid, resolve_paths

    if args.grid:
        cfg = resolve_paths(load_grid(args.grid))
        return cfg.dataset, cfg
    if not args.dataset or not args.root:
        raise BenchError("give --grid GRID.yaml, or --dataset KIND --root PATH")
    from bench.config import parse_grid
    from bench.data.catalogue import DATASETS, dataset_kinds

    if args.dataset not in DATASETS:
        from bench.errors import did_you_mean

        kinds = dataset_kinds()
        raise BenchError(f"--dataset: {args.dataset!r} is not valid{did_you_mean(args.dataset, kinds)} "
                         f"(choose from: {', '.join(kinds)})")
    cfg = resolve_paths(parse_grid({"dataset": {"kind": args.dataset, "root": args.root}}, source="--dataset"))
    return dataclasses.replace(cfg.dataset), cfg


def cmd_describe(args) -> int:
    from bench.data.describe import describe, format_description
    from bench.data.load import load_records

    ds, _ = _dataset_from_args(args)
    rec = load_records(ds, labels_only=args.labels_only, progress=make_bar(args.quiet)("synthesising"))
    desc = describe(rec)
    if args.json:
        print(json.dumps(desc, indent=1, default=_json_default))
    else:
        say(format_description(desc))
    return 0


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def cmd_split(args) -> int:
    import time

    from bench.data.load import check_spreadable, load_records
    from bench.data.splits import make_split

    ds, cfg = _dataset_from_args(args)
    folds = args.folds or cfg.splits.folds
    seed = cfg.splits.seed if args.seed is None else args.seed
    val = cfg.splits.val_fraction if args.val_fraction is None else args.val_fraction
    if folds < 2:
        raise BenchError(f"--folds: {folds} is not valid; expected an integer >= 2")
    rec = load_records(ds, labels_only=args.labels_only)
    check_spreadable(rec, folds)
    t0 = time.perf_counter()
    manifest = make_split(rec, n_folds=folds, val_fraction=val, seed=seed)
    seconds = time.perf_counter() - t0
    if args.out:
        manifest.to_json(args.out)
    q = dict(manifest.quality)
    doc = {"images": len(rec), "patients": rec.n_patients, "folds": folds, "seed": seed, "val_fraction": val,
           "fold_sizes": q.get("fold_sizes"), "max_label_deviation": q.get("max_label_deviation"),
           "per_label_deviation": q.get("per_label_deviation"), "shared_patients": q.get("shared_patients"),
           "hash": manifest.hash, "seconds": round(seconds, 3), "out": args.out, **{
               k: v for k, v in q.items() if k not in ("fold_sizes", "max_label_deviation", "per_label_deviation",
                                                       "shared_patients")}}
    if args.json:
        print(json.dumps(doc, indent=1, default=_json_default))
    else:
        say(f"{folds} folds over {len(rec):,} images / {rec.n_patients or 'no'} patients in {seconds:.2f}s")
        say(f"fold sizes: {doc['fold_sizes']}")
        say(f"largest label deviation from ideal: {doc['max_label_deviation']:.2%}; shared patients: "
            f"{doc['shared_patients']}")
        for name, dev in (doc["per_label_deviation"] or {}).items():
            say(f"  {name:<20} {dev:.2%}")
        say(f"hash: {manifest.hash}" + (f"\nwrote {args.out}" if args.out else ""))
    return 0


def cmd_tune(args) -> int:
    from bench.tune_search import run_search

    return run_search(args, say=say)


def cmd_cluster_validate(args) -> int:
    from bench.cluster import validate_cluster_file

    problems = validate_cluster_file(args.file)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    say(f"{args.file}: valid Ray cluster configuration")
    return 0


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


def cmd_perf(args) -> int:
    from bench.perf import main as perf_main

    return perf_main(args, say=say)


# ---- parser --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Benchmark class-imbalance strategies for multi-label "
                                "chest X-ray classification on Ray Tune.")
    p.add_argument("--version", action="version", version=f"bench {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="run a grid (backbone x strategy x fold x seed) on Ray Tune")
    r.add_argument("--grid", required=True, help="grid YAML, e.g. grids/demo.yaml")
    r.add_argument("--out", help="run folder (default runs/<grid name>); re-running resumes it")
    r.add_argument("--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: local Ray)")
    r.add_argument("--storage", help="experiment storage: a shared path, s3://bucket/prefix or gs://... "
                   "(default: inside the run folder)")
    r.add_argument("--resume", action="store_true", help="require an earlier run of this grid in --out to resume")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="rebuild leaderboard.csv / .html from a run folder's files")
    rep.add_argument("run_dir")
    rep.add_argument("--bootstrap", type=int, default=None, help="bootstrap replicates (default: the grid's)")
    rep.add_argument("--no-html", action="store_true")
    rep.add_argument("--top", type=int, default=10, help="rows printed")
    rep.set_defaults(func=cmd_report)

    ls = sub.add_parser("list", help="list registered backbones, strategies, losses, samplers, thresholds, "
                                     "dataset kinds, CAM methods")
    ls.add_argument("what", choices=["backbones", "strategies", "losses", "samplers", "thresholds", "datasets",
                                     "cams"])
    ls.add_argument("pattern", nargs="?", help="shell-style pattern, e.g. 'resnet*'")
    ls.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="dataset tools: synth, describe, split")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    s = dsub.add_parser("synth", help="write the built-in synthetic dataset (NIH layout)")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=1500, help="images (default 1500)")
    s.add_argument("--size", type=int, default=128, help="PNG size in pixels (default 128)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_synth)
    for name, helptext, func in (("describe", "images, patients, label counts and imbalance measures", cmd_describe),
                                 ("split", "write the patient-disjoint, label-balanced split manifest", cmd_split)):
        d = dsub.add_parser(name, help=helptext)
        d.add_argument("--grid", help="take the dataset from a grid")
        d.add_argument("--dataset", help="dataset kind: synthetic, nih, chexpert, chestmnist, csv")
        d.add_argument("--root", help="dataset folder")
        d.add_argument("--labels-only", action="store_true", help="use the label file only (images not needed)")
        d.add_argument("--json", action="store_true", help="print JSON")
        if name == "split":
            d.add_argument("--folds", type=int, default=None)
            d.add_argument("--seed", type=int, default=None)
            d.add_argument("--val-fraction", type=float, default=None)
            d.add_argument("--out", help="write the manifest here (a grid names it in splits.file)")
        d.set_defaults(func=func)

    t = sub.add_parser("tune", help="search a strategy's hyper-parameters once per fold, on that fold's training "
                       "part (Optuna + ASHA on Ray Tune)")
    t.add_argument("--grid", required=True, help="grid whose dataset, split, training budget and resources are used")
    t.add_argument("--strategy", required=True, help="preset to tune, e.g. focal")
    t.add_argument("--trials", type=int, default=16, help="search trials per fold (default 16)")
    t.add_argument("--backbone", help="backbone (default: the grid's first)")
    t.add_argument("--out", help="folder for the search (default runs/tune-<strategy>)")
    t.add_argument("--preset-name", help="name of the preset written (default <strategy>_tuned)")
    t.add_argument("--address")
    t.set_defaults(func=cmd_tune)

    c = sub.add_parser("cluster", help="Ray cluster tools")
    csub = c.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND")
    csub.required = True
    v = csub.add_parser("validate", help="check cluster.yaml against Ray's autoscaler schema (offline)")
    v.add_argument("file", nargs="?", default="cluster.yaml")
    v.set_defaults(func=cmd_cluster_validate)

    sc = sub.add_parser("schema", help="print the grid's JSON Schema (for editors; from the grid's own sections)")
    sc.add_argument("--out", help="write it to this file instead")
    sc.set_defaults(func=cmd_schema)

    pf = sub.add_parser("perf", help="measure throughput against plain PyTorch and regenerate BENCHMARKS.md")
    pf.add_argument("--quick", action="store_true", help="smaller measurements (about a minute)")
    pf.add_argument("--only", help="comma-separated sections: overhead,data,grid,cost,gpu,eval")
    pf.add_argument("--out", default="BENCHMARKS.md")
    pf.set_defaults(func=cmd_perf)
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
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
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
