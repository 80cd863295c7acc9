"""``bench data synth | describe | split``: write the synthetic dataset, describe a dataset, write its split."""

from __future__ import annotations

import json
from pathlib import Path

from bench.commands.output import add_set_argument, json_default, make_bar, say
from bench.errors import BenchError


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="dataset tools: synth, describe, split")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    s = dsub.add_parser("synth", help="write the built-in synthetic dataset (NIH layout)")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=1500, help="images (default 1500)")
    s.add_argument("--size", type=int, default=128, help="PNG size in pixels (default 128)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--site", default="a", help="a (default) or b: another hospital (bench/data/synthetic_sites.py)")
    s.set_defaults(func=cmd_synth)
    for name, helptext, func in (("describe", "images, patients, label counts and imbalance measures", cmd_describe),
                                 ("split", "write the patient-disjoint, label-balanced split manifest", cmd_split)):
        d = dsub.add_parser(name, help=helptext)
        d.add_argument("--grid", help="take the dataset from a grid")
        d.add_argument("--dataset", help="dataset kind: synthetic, nih, chexpert, chestmnist, csv")
        d.add_argument("--root", help="dataset folder")
        d.add_argument("--labels-only", action="store_true", help="use the label file only (images not needed)")
        d.add_argument("--json", action="store_true", help="print JSON")
        add_set_argument(d)
        if name == "split":
            d.add_argument("--folds", type=int, default=None)
            d.add_argument("--seed", type=int, default=None)
            d.add_argument("--val-fraction", type=float, default=None)
            d.add_argument("--out", help="write the manifest here (a grid names it in splits.file)")
        d.set_defaults(func=func)


def cmd_synth(args) -> int:
    from bench.data.synthetic import write_synthetic

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"--out {args.out!r} exists and is not empty; choose a new folder")
    summary = write_synthetic(out, n=args.n, size=args.size, seed=args.seed, site=args.site,
                              progress=make_bar(args.quiet)("writing"))
    say(f"wrote {summary.get('images', args.n)} images of {summary.get('patients', '?')} patients to {out}")
    labels = summary.get("labels") or summary.get("positives") or {}
    if labels:
        say("positives: " + ", ".join(f"{k} {v}" for k, v in labels.items()))
    return 0


def _dataset_from_args(args):
    """The dataset section (its kind's class) and the grid, from --grid or --dataset/--root."""
    import dataclasses

    from bench.config import load_grid, resolve_paths

    if args.grid:
        cfg = resolve_paths(load_grid(args.grid, overrides=args.overrides))
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
    cfg = resolve_paths(parse_grid({"dataset": {"kind": args.dataset, "root": args.root}}, source="--dataset",
                                   overrides=args.overrides))
    return dataclasses.replace(cfg.dataset), cfg


def cmd_describe(args) -> int:
    from bench.data.describe import describe, format_description
    from bench.data.load import load_records

    ds, _ = _dataset_from_args(args)
    rec = load_records(ds, labels_only=args.labels_only, progress=make_bar(args.quiet)("synthesising"))
    desc = describe(rec)
    if args.json:
        print(json.dumps(desc, indent=1, default=json_default))
    else:
        say(format_description(desc))
    return 0


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
        print(json.dumps(doc, indent=1, default=json_default))
    else:
        say(f"{folds} folds over {len(rec):,} images / {rec.n_patients or 'no'} patients in {seconds:.2f}s")
        say(f"fold sizes: {doc['fold_sizes']}")
        say(f"largest label deviation from ideal: {doc['max_label_deviation']:.2%}; shared patients: "
            f"{doc['shared_patients']}")
        for name, dev in (doc["per_label_deviation"] or {}).items():
            say(f"  {name:<20} {dev:.2%}")
        say(f"hash: {manifest.hash}" + (f"\nwrote {args.out}" if args.out else ""))
    return 0
