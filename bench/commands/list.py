"""``bench list``: the registries (backbones, strategies, losses, samplers, thresholds, dataset kinds, CAM
methods), one line each."""

from __future__ import annotations

from bench.commands.output import say
from bench.errors import BenchError


def add_parser(sub) -> None:
    ls = sub.add_parser("list", help="list registered backbones, strategies, losses, samplers, thresholds, "
                                     "dataset kinds, CAM methods")
    ls.add_argument("what", choices=["backbones", "strategies", "losses", "samplers", "thresholds", "datasets",
                                     "cams"])
    ls.add_argument("pattern", nargs="?", help="shell-style pattern, e.g. 'resnet*'")
    ls.set_defaults(func=cmd_list)


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
