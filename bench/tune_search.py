"""``bench tune``: search one strategy's declared space with Optuna (seeded) and ASHA on Ray Tune, once
per outer fold (nested), and write a preset that grids name like a built-in strategy.

Why per outer fold: the parameters a trial on fold F uses must be chosen without any image of fold F.
Tuning on fold 0 and applying the result everywhere fails that (fold 0's training part *is* the other
folds' test images); a reserved tuning partition would pass it but shrink every benchmark fold and
change the split every run uses. So the search runs once per fold of the grid's own split, on that
fold's training part (train on its training rows, score each epoch's macro AUC on its validation
rows; the held-out fold is never touched), and the preset stores one parameter set per fold
(``folds``) plus, in ``tuned.images``, every image id of the split with its held-out fold: fold F's
search saw exactly the images whose held-out fold is not F. The cost is K searches instead of one.

A run (:func:`bench.tuned_presets.check_presets`, called by ``bench run`` before it writes anything)
applies fold F's parameters to its fold-F trials only after checking, image id by image id, that fold F's
search saw none of the run's held-out fold F; a preset tuned on another split, or an older preset without that
record, is refused with one line naming the file, the fold and the overlap. Leaderboard grids
themselves never search: every trial there gets the same fixed epoch budget.

Other protocols (the grid's ``protocol`` section) search the split their runs train on. ``official``: one
search, on the official training list (trained on its training rows, scored on the validation part carved from
it); the official test list is the held-out "fold 0" (its images are recorded with -1 and 0 in ``tuned.images``),
never touched. ``external``: as ``protocol.train`` says; its ``test_sets`` are not even read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bench.errors import BenchError, Interrupted
from bench.trial_spec import TrialSpec, spec_of
from bench.tuned_presets import tuning_record

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

    spec = spec_of(config)
    params = {k: (float(v) if isinstance(v, float) else v) for k, v in config["params"].items()}
    spec = spec.replace(strategy=apply_params(spec.strategy, params), search=True)

    def report(metrics: dict, folder: str | None) -> None:
        tune.report(metrics)  # searches keep no checkpoints: a lost trial is simply re-sampled

    run_trial(spec, data, report=report)


# ---- bench tune --------------------------------------------------------------------------------------

def run_search(grid: str | os.PathLike, *, strategy: str, trials: int = 16, backbone: str | None = None,
               preset_name: str | None = None, out: str | os.PathLike | None = None, address: str | None = None,
               overrides: Sequence[str] = (), say: Callable[[str], None]) -> int:
    """Search ``strategy``'s declared space once per fold of ``grid``'s split (``trials`` Optuna + ASHA trials
    each, on ``backbone``, default the grid's first) and write ``presets/<preset_name>.yaml`` (default
    ``<strategy>_tuned``); ``out`` holds the search (default ``runs/tune-<preset_name>``). ``overrides`` are
    ``KEY=VALUE`` changes to the grid (``bench tune --set``). Messages name the ``bench tune`` options."""
    from bench.config import load_grid, resolve_paths
    from bench.run import prepare_data
    from strategies import STRATEGIES, UnknownNameError, preset_space, resolve_spec

    cfg = resolve_paths(load_grid(grid, overrides=overrides))
    try:
        base = resolve_spec(strategy)
    except UnknownNameError as exc:
        raise BenchError(f"--strategy: {exc}") from None
    space = preset_space(strategy)
    if not space:
        raise BenchError(f"--strategy: preset {strategy!r} declares no tunable parameters")
    if trials < 1:
        raise BenchError(f"--trials: {trials} is not valid; expected an integer >= 1")
    backbone = backbone or cfg.backbones[0]
    from backbones import UnknownBackboneError, check_backbone

    try:
        check_backbone(backbone)
    except UnknownBackboneError as exc:
        raise BenchError(f"--backbone: {exc}") from None
    name = preset_name or f"{strategy}_tuned"
    preset_file = Path("presets") / f"{name}.yaml"
    if name in STRATEGIES or preset_file.exists():
        raise BenchError(f"--preset-name: {name!r} exists already ({preset_file}); choose another name")
    out = Path(out or Path("runs") / f"tune-{name}").resolve()
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"--out {str(out)!r} is not empty; choose another folder")

    rec, cache, manifest = prepare_data(cfg, say=say)
    from bench import tuner
    from bench.trial import TrialData

    tuner.init_ray(address)
    data = TrialData(records=rec, manifest=manifest, cache_key=cache.key, cache_dir=str(cache.path),
                     image_size=cfg.dataset.image_size, grid=cfg.to_dict(), run_meta={})
    where = ("once, on the official training list: scored on its validation part; the official test list is never "
             "touched" if cfg.protocol.split == "official" else f"once per fold ({manifest.n_folds} folds): scored on "
             "the fold's validation part; the held-out fold is never touched")
    if cfg.protocol.test_sets:
        where += f"; protocol.test_sets ({', '.join(cfg.protocol.test_sets)}) are not read"
    say(f"searching {len(space)} parameter(s) of {strategy!r} ({', '.join(space)}) with Optuna + ASHA, {trials} "
        f"trials of up to {cfg.train.epochs} epochs each on {backbone}, {where}")
    t0 = time.time()
    rows, best = [], {}
    # A Ctrl-C anywhere in the searches (in one, or between two) stops them all: they cannot resume, and a preset
    # from some of them would mislead.
    try:
        for fold in range(manifest.n_folds):
            fold_rows = _search_fold(cfg, data, base, space, backbone, fold, out, strategy=strategy, trials=trials)
            full = [r for r in fold_rows if r["epochs"] == cfg.train.epochs] or fold_rows
            best[fold] = max(full, key=lambda r: float("-inf") if r[METRIC] is None else r[METRIC])
            rows += fold_rows
            say(f"fold {fold}: best {METRIC} {best[fold][METRIC]:.4f} with "
                f"{ {k: best[fold][k] for k in space} } ({len(fold_rows)} trials)")
    except KeyboardInterrupt:
        raise Interrupted(f"no preset was written; the search so far is in {out}: remove it (or give another --out) "
                          "to search again") from None
    import pandas as pd

    table = pd.DataFrame(rows).sort_values(["fold", METRIC], ascending=[True, False])
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "search.csv", index=False)
    params = {fold: {k: b[k] for k in space} for fold, b in best.items()}
    chosen = "; ".join(f"fold {f}: " + ", ".join(f"{k}={_num(v)}" for k, v in p.items()) for f, p in params.items())
    doc = {"name": name,
           "description": f"{base['description']}; tuned per fold by bench tune ({chosen})",
           "loss": base["loss"], "sampler": base["sampler"], "threshold": base["threshold"],
           "folds": params,
           "tuned": {"from": strategy, "grid": str(grid), **({"overrides": list(overrides)} if overrides else {}),
                     "backbone": backbone, "trials": trials,
                     "epochs": cfg.train.epochs, METRIC: {f: b[METRIC] for f, b in best.items()},
                     "seconds": round(time.time() - t0, 1), "date": time.strftime("%Y-%m-%d"),
                     **tuning_record(manifest)}}
    write_preset(preset_file, doc)
    say(table.head(10).to_string(index=False))
    say(f"\nwrote preset {preset_file} (one parameter set per fold; name it in a grid on this split: "
        f"strategies: [{name}]) and {out / 'search.csv'}")
    return 0


def _search_fold(cfg, data, base: dict, space: dict, backbone: str, fold: int, out: Path, *, strategy: str,
                 trials: int) -> list[dict]:
    """One Optuna + ASHA search on ``fold``'s training part; one row per finished search trial."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from bench import tune_fit
    from bench.seeding import derive_seed

    seed = cfg.seeds[0]
    trial = TrialSpec(id=f"search-{strategy}-f{fold}", backbone=backbone, strategy=base, fold=fold, seed=seed)
    res = cfg.resources
    trainable = tune.with_resources(tune.with_parameters(_search_trainable, data=data),
                                    {"cpu": float(res.cpu), "gpu": float(res.gpu)})
    epochs = cfg.train.epochs
    t = tune.Tuner(
        trainable,
        param_space={"trial": trial.to_dict(), "params": search_space(space)},  # plain values: spec_of reads it
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=trials,
            search_alg=OptunaSearch(seed=derive_seed(seed, "search", fold)),
            scheduler=ASHAScheduler(max_t=epochs, grace_period=1, reduction_factor=2),
            max_concurrent_trials=int(res.max_concurrent) or None,
            # As bench run's: a search trial (and the next one when ASHA stops it) runs in the worker process of
            # the one before, which has imported torch and timm already (Tune's default starts one per trial).
            reuse_actors=True,
            trial_dirname_creator=lambda tr: f"{strategy}-f{fold}-{tr.trial_id}",
        ),
        run_config=tune.RunConfig(name=f"search-f{fold}", storage_path=str(out), verbose=0),
    )
    results, interrupted = tune_fit.fit(t)
    if interrupted:  # Tune caught the Ctrl-C and returned the trials so far
        raise KeyboardInterrupt
    rows = []
    for r in results:
        if r.error is not None or not r.metrics:
            continue
        rows.append({"fold": fold, **{k: r.config["params"][k] for k in space}, METRIC: r.metrics.get(METRIC),
                     "epochs": r.metrics.get("epoch")})
    if not rows:
        raise BenchError(f"every search trial of fold {fold} failed; first error: "
                         f"{next(iter(results.errors), 'unknown')}")
    return rows


def write_preset(path: Path, doc: dict) -> None:
    """Write a preset document as YAML, atomically (a temporary name renamed into place)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(_plain(doc), sort_keys=False, width=120))
    os.replace(tmp, path)


def _plain(x):
    """``x`` with numpy scalars as Python ones (fold numbers stay integer keys, unlike a JSON round trip)."""
    if isinstance(x, dict):
        return {_plain(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x.item() if isinstance(x, np.generic) else x


def _num(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)
