"""``bench list``: the registries (backbones, strategies, losses, samplers, thresholds, post-hoc steps, dataset
kinds, CAM methods), one line each; ``bench list backbones --all 'vit*'``: timm's model names, registered ones
marked."""

from __future__ import annotations

from bench.commands.output import say
from bench.errors import BenchError


def add_parser(sub) -> None:
    ls = sub.add_parser("list", help="list registered backbones, strategies, losses, samplers, thresholds, "
                                     "post-hoc steps, dataset kinds, CAM methods")
    ls.add_argument("what", choices=["backbones", "strategies", "losses", "samplers", "thresholds", "posthoc",
                                     "datasets", "cams"])
    ls.add_argument("pattern", nargs="?", help="shell-style pattern, e.g. 'resnet*'")
    ls.add_argument("--all", nargs="?", const="*", default=None, metavar="PATTERN",
                    help="backbones: every timm model (matching PATTERN, e.g. --all 'vit*'), any of which can go in a "
                         "grid; the registered ones marked [registered] with their description (imports timm)")
    ls.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    every = getattr(args, "all", None)  # --all's own PATTERN, '*' when it has none
    if every is not None and args.what != "backbones":
        raise BenchError(f"--all lists timm's models: it goes with 'bench list backbones', not {args.what!r}")
    if every is not None:
        from backbones import list_timm

        if args.pattern and every != "*":
            raise BenchError(f"give one pattern, not {args.pattern!r} and --all {every!r}")
        args.pattern = args.pattern or every
        entries = list_timm(args.pattern)
        for name, e in entries:
            say(f"{name:<40} " + (f"[registered] {e.description}" if e is not None else "timm model"))
    elif args.what == "backbones":
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
               "thresholds": strategies.THRESHOLDS, "posthoc": strategies.POSTHOC}[args.what]
        # list_strategies also registers the preset files of ./presets and $BENCH_PRESETS (bench tune's)
        entries = strategies.list_strategies(args.pattern) if args.what == "strategies" else reg.list(args.pattern)
        for e in entries:
            say(f"{e.name:<24} {e.description}")
    if not entries:
        raise BenchError(f"no {args.what} match {args.pattern!r}")
    return 0
