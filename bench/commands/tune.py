"""``bench tune``: search a strategy's declared space once per fold of a grid's split (Optuna + ASHA)."""

from __future__ import annotations

from bench.commands.output import add_set_argument, say


def add_parser(sub) -> None:
    t = sub.add_parser("tune", help="search a strategy's hyper-parameters once per fold, on that fold's training "
                       "part (Optuna + ASHA on Ray Tune)")
    t.add_argument("--grid", required=True, help="grid whose dataset, split, training budget and resources are used")
    t.add_argument("--strategy", required=True, help="preset to tune, e.g. focal")
    t.add_argument("--trials", type=int, default=16, help="search trials per fold (default 16)")
    t.add_argument("--backbone", help="backbone (default: the grid's first)")
    t.add_argument("--out", help="folder for the search (default runs/tune-<strategy>)")
    t.add_argument("--preset-name", help="name of the preset written (default <strategy>_tuned)")
    t.add_argument("--address")
    add_set_argument(t)
    t.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    from bench.tune_search import run_search

    return run_search(args.grid, strategy=args.strategy, trials=args.trials, backbone=args.backbone,
                      preset_name=args.preset_name, out=args.out, address=args.address, overrides=args.overrides,
                      say=say)
