"""``bench tune``: search one strategy's declared space with Optuna (seeded) and ASHA on Ray Tune.

The search trains on one fold's training part and scores each epoch on that fold's VALIDATION
part (macro AUC); the held-out fold is never touched. The best parameters are written as a preset
file (``presets/<name>.yaml``) that any grid can then name like a built-in strategy. Leaderboard
grids themselves never search: every trial there gets the same fixed epoch budget.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from bench.errors import BenchError

METRIC = "val_macro_auc"


def search_space(space: dict):
    """Translate a preset's declared space into Ray Tune distributions."""
    from ray import tune

    out = {}
    for key, dist in space.items():
        (kind, args), = dist.items()
        if kind == "uniform":
            out[key] = tune.uniform(*args)
        elif kind == "loguniform":
            out[key] = tune.loguniform(*args)
        elif kind == "choice":
            out[key] = tune.choice(list(args))
        elif kind == "randint":
            out[key] = tune.randint(*args)
        else:
            raise BenchError(f"search space of {key!r}: unknown distribution {kind!r} "
                             "(use uniform, loguniform, choice or randint)")
    return out


def _search_trainable(config: dict, data=None):
    from ray import tune

    from bench.trial import run_trial
    from strategies import apply_params

    spec = dict(config["trial"])
    params = {k: (float(v) if isinstance(v, float) else v) for k, v in config["params"].items()}
    spec["strategy"] = apply_params(spec["strategy"], params)
    spec["search"] = True

    def report(metrics: dict, folder: str | None) -> None:
        tune.report(metrics)  # searches keep no checkpoints: a lost trial is simply re-sampled

    run_trial(spec, data, report=report)


def run_search(args, *, say: Callable[[str], None]) -> int:
    from bench.config import load_grid, resolve_paths
    from bench.run import prepare_data
    from strategies import STRATEGIES, UnknownNameError, preset_space, resolve_spec

    cfg = resolve_paths(load_grid(args.grid))
    try:
        base = resolve_spec(args.strategy)
    except UnknownNameError as exc:
        raise BenchError(f"--strategy: {exc}") from None
    space = preset_space(args.strategy)
    if not space:
        raise BenchError(f"--strategy: preset {args.strategy!r} declares no tunable parameters")
    if args.trials < 1:
        raise BenchError(f"--trials: {args.trials} is not valid; expected an integer >= 1")
    backbone = args.backbone or cfg.backbones[0]
    from backbones import BACKBONES

    if backbone not in BACKBONES:
        raise BenchError(f"--backbone: {UnknownNameError('backbone', backbone, BACKBONES.names())}")
    if not 0 <= args.fold < cfg.splits.folds:
        raise BenchError(f"--fold: {args.fold} is not valid; expected 0 .. {cfg.splits.folds - 1}")
    name = args.preset_name or f"{args.strategy}_tuned"
    preset_file = Path("presets") / f"{name}.yaml"
    if name in STRATEGIES or preset_file.exists():
        raise BenchError(f"--preset-name: {name!r} exists already ({preset_file}); choose another name")
    out = Path(args.out or Path("runs") / f"tune-{name}").resolve()
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"--out {str(out)!r} is not empty; choose another folder")

    rec, cache, manifest = prepare_data(cfg, say=say)
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from bench import tuner
    from bench.trial import TrialData

    tuner.init_ray(args.address)
    data = TrialData(records=rec, manifest=manifest, cache_key=cache.key, cache_dir=str(cache.path),
                     image_size=cfg.dataset.image_size, grid=cfg.to_dict(), run_meta={})
    seed = cfg.seeds[0]
    trial = {"id": f"search-{args.strategy}", "backbone": backbone, "strategy": base, "fold": args.fold,
             "seed": seed}
    res = cfg.resources
    trainable = tune.with_resources(tune.with_parameters(_search_trainable, data=data),
                                    {"cpu": float(res.cpu), "gpu": float(res.gpu)})
    epochs = cfg.train.epochs
    t = tune.Tuner(
        trainable,
        param_space={"trial": trial, "params": search_space(space)},
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=args.trials,
            search_alg=OptunaSearch(seed=seed),
            scheduler=ASHAScheduler(max_t=epochs, grace_period=1, reduction_factor=2),
            max_concurrent_trials=int(res.max_concurrent) or None,
            trial_dirname_creator=lambda tr: f"{args.strategy}-{tr.trial_id}",
        ),
        run_config=tune.RunConfig(name="search", storage_path=str(out), verbose=0),
    )
    say(f"searching {len(space)} parameter(s) of {args.strategy!r} ({', '.join(space)}) with Optuna + ASHA: "
        f"{args.trials} trials of up to {epochs} epochs on {backbone}, fold {args.fold}'s validation part")
    t0 = time.time()
    results = t.fit()
    rows = []
    for r in results:
        if r.error is not None or not r.metrics:
            continue
        rows.append({**{k: r.config["params"][k] for k in space}, METRIC: r.metrics.get(METRIC),
                     "epochs": r.metrics.get("epoch")})
    if not rows:
        raise BenchError(f"every search trial failed; first error: {next(iter(results.errors), 'unknown')}")
    full = [r for r in rows if r["epochs"] == epochs] or rows
    best = max(full, key=lambda r: float("-inf") if r[METRIC] is None else r[METRIC])
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pd.DataFrame(rows).sort_values(METRIC, ascending=False).to_csv(out / "search.csv", index=False)
    params = {k: best[k] for k in space}
    from strategies import apply_params

    spec = apply_params(base, params)
    doc = {"name": name,
           "description": f"{base['description']}; tuned by bench tune ({', '.join(f'{k}={_num(v)}' for k, v in params.items())}, "
                          f"val macro AUC {best[METRIC]:.3f})",
           "loss": spec["loss"], "sampler": spec["sampler"], "threshold": spec["threshold"],
           "tuned": {"from": args.strategy, "grid": str(args.grid), "backbone": backbone, "fold": args.fold,
                     "trials": args.trials, "epochs": epochs, METRIC: best[METRIC], "params": params,
                     "seconds": round(time.time() - t0, 1), "date": time.strftime("%Y-%m-%d")}}
    import yaml

    preset_file.parent.mkdir(exist_ok=True)
    tmp = preset_file.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(json.loads(json.dumps(doc, default=float)), sort_keys=False))
    os.replace(tmp, preset_file)
    say(pd.DataFrame(rows).sort_values(METRIC, ascending=False).head(10).to_string(index=False))
    say(f"\nbest {METRIC} {best[METRIC]:.4f} with {params}\nwrote preset {preset_file} "
        f"(name it in a grid: strategies: [{name}]) and {out / 'search.csv'}")
    return 0


def _num(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)
