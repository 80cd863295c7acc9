"""``bench run``: from a grid file to a run folder with every trial's outputs and the reports.

The driver validates everything (grid, dataset, labels, split) before it writes anything, so a bad
input leaves no half-made run folder. Re-running the same command on the same ``--out`` resumes:
Ray Tune restores the experiment and only unfinished or errored trials run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from bench import runfolder, tune_outcome
from bench.config import GridConfig, resolve_paths
from bench.errors import BenchError
from bench.runfolder import RunFolder, collect_trial, finished_trials, write_atomic, write_json  # noqa: F401
from bench.trial_spec import TrialSpec

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run_dir: Path
    completed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def expand(cfg: GridConfig) -> list[TrialSpec]:
    """Every (backbone, strategy, fold, seed) of the grid as a trial spec, in a stable order (a preset
    tuned per fold by ``bench tune`` gets that fold's parameters)."""
    from strategies import fold_spec

    out = []
    for backbone in cfg.backbones:
        for strategy in cfg.strategy_specs():
            for seed in cfg.seeds:
                for fold in range(n_folds(cfg)):
                    out.append(TrialSpec.make(backbone, fold_spec(strategy, fold), fold=fold, seed=seed))
    return out


def n_folds(cfg: GridConfig) -> int:
    """How many test folds each (backbone, strategy, seed) runs: ``splits.folds``, or 1 for the official split."""
    return 1 if cfg.protocol.split == "official" else cfg.splits.folds


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("cxr-imbalance-bench", "torch", "torchvision", "timm", "ray", "numpy", "scikit-learn", "pandas",
                "scipy", "grad-cam", "optuna", "iterative-stratification", "plotly"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> dict:
    here = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if sha.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def check_run_dir(run_dir: Path, cfg: GridConfig) -> bool:
    """True when ``run_dir`` holds an earlier run of the same grid (resume); raises for another grid.

    A run folder whose ``grid.json`` an older version wrote (another layout of the resolved grid, e.g. every
    dataset kind's keys in one section) is the same grid when it reads back (:meth:`GridConfig.from_dict`)
    as this one."""
    try:
        return runfolder.check_run_dir(run_dir, cfg.digest())
    except BenchError:
        recorded = RunFolder(run_dir).grid_json
        try:
            same = GridConfig.from_dict(json.loads(recorded.read_text())).digest() == cfg.digest()
        except Exception:  # noqa: BLE001 - not a grid this version reads: the refusal stands
            same = False
        if same:
            return True
        raise


def prepare_data(cfg: GridConfig, *, say: Callable[[str], None], bar=None):
    """Read, cache and split the dataset; returns (records, cache, manifest). Writes only the cache."""
    from bench.data.cache import build_cache, default_cache_dir
    from bench.data.catalogue import open_reader
    from bench.data.load import check_spreadable
    from bench.data.splits import SplitManifest, make_split

    ds = cfg.dataset
    reader = open_reader(ds)
    rec = reader.load(progress=bar("synthesising images") if bar and ds.kind == "synthetic" else None)
    dropped = ", ".join(f"{v:,} {k}" for k, v in rec.dropped.items())
    say(f"dataset: {len(rec):,} images, {rec.n_patients or 'no'} patients, {len(rec.label_names)} labels, "
        f"{len(rec.boxes)} boxes" + (f" (dropped: {dropped})" if dropped else ""))
    cache_dir = Path(ds.cache_dir) if ds.cache_dir else default_cache_dir()
    cache = build_cache(rec, ds.image_size, cache_dir, progress=bar(f"caching {ds.image_size}px images") if bar else None)
    kept = reader.exclude_bad(rec, cache)
    if len(kept) < len(rec):  # trials (and nodes that build their own cache) read a cache of exactly these images
        cache = build_cache(kept, ds.image_size, cache_dir, source=cache)
    rec = kept
    if cfg.protocol.split == "official":  # the dataset's own train / test lists (bench/protocols.py)
        from bench.protocols import official_data

        return official_data(cfg, reader, rec, cache, cache_dir, say=say)
    check_spreadable(rec, cfg.splits.folds)
    if cfg.splits.file:
        manifest = SplitManifest.from_json(cfg.splits.file)
        manifest.verify(rec)
        if manifest.n_folds != cfg.splits.folds:
            raise BenchError(f"splits.file {cfg.splits.file!r} has {manifest.n_folds} folds but splits.folds is "
                             f"{cfg.splits.folds}")
        check_patient_disjoint(manifest, rec, cfg.splits.file)
    else:
        manifest = make_split(rec, n_folds=cfg.splits.folds, val_fraction=cfg.splits.val_fraction,
                              seed=cfg.splits.seed)
    say(split_summary(manifest, rec))
    return rec, cache, manifest


def check_patient_disjoint(manifest, rec, source: str) -> None:
    """Refuse a split manifest (given as a file, so possibly edited by hand) in which a patient has images
    on both sides of a fold's boundaries; every trial checks its own fold again."""
    from bench.data.splits import assert_fold_disjoint

    for fold in range(manifest.n_folds):
        try:
            assert_fold_disjoint(rec.patients, *manifest.rows(fold), fold=fold)
        except RuntimeError as exc:
            raise BenchError(f"splits.file {source!r}: {exc}; make the split again (bench data split --out FILE)") \
                from None


def split_summary(manifest, records=None) -> str:
    """One line on a split's balance: how many labels are within 2% of their ideal per-fold count, and
    why the furthest one is off (few positives, or one patient holding many of them)."""
    q = manifest.quality
    dev = {k: v for k, v in (q.get("per_label_deviation") or {}).items() if v == v}
    within = sum(v <= 0.02 for v in dev.values())
    worst = max(dev, key=dev.get) if dev else None
    text = (f"split: {manifest.n_folds} patient-disjoint folds of {q.get('fold_sizes')} images, "
            f"{q.get('shared_patients')} shared patients; {within} of {len(dev)} labels within 2% of their ideal "
            f"per-fold positives")
    if worst and dev[worst] > 0.02:
        counts = (q.get("fold_positives") or {}).get(worst) or []
        why = ""
        if records is not None and records.patients is not None:
            import pandas as pd

            col = records.labels[:, list(records.label_names).index(worst)] == 1
            per_patient = pd.Series(col).groupby(records.patients).sum()
            top = int(per_patient.max())
            if counts and top > sum(counts) / manifest.n_folds / 4:
                why = f": one patient holds {top} of its {int(sum(counts))} positives"
        if not why and counts and sum(counts) < 20 * manifest.n_folds:
            why = ": too few positives to split evenly"
        text += f" (furthest: {worst} {counts}, {dev[worst]:.0%} off{why})"
    return text + f"; hash {manifest.hash[:12]}"


def run_grid(grid_path: str | Path, *, out: str | Path | None = None, address: str | None = None,
             storage: str | None = None, resume: bool = False, say: Callable[[str], None] = lambda s: None,
             bar=None, cfg: GridConfig | None = None, overrides: Sequence[str] = ()) -> RunOutcome:
    """Run (or resume) a grid; returns the outcome, errored trials in ``outcome.errors`` (``bench run``
    turns them into GridIncomplete, exit 3). ``overrides`` (``KEY=VALUE``, ``bench run --set``) change the
    grid file's values: the run folder records the grid they make, and a resume must make the same one."""
    from bench import tune_fit, tuner
    from bench.config import load_grid

    t0 = time.time()
    cfg = resolve_paths(cfg or load_grid(grid_path, overrides=overrides))
    run_dir = Path(out or Path("runs") / cfg.name).resolve()
    existing = check_run_dir(run_dir, cfg)
    if tuner.is_client(address) and not storage:
        # Under Ray Client, Tune's driver loop runs on the head node: it cannot reach this machine's folder.
        raise BenchError(f"--address {address}: add --storage s3://BUCKET/PREFIX (or gs://..., or a path that every "
                         "node and this machine share): the cluster cannot write into this machine's run folder")
    if resume and not existing:
        raise BenchError(f"--resume: {str(run_dir)!r} holds no earlier run of this grid to resume")
    if existing:
        say(f"resuming the run in {run_dir}")

    rec, cache, manifest = prepare_data(cfg, say=say, bar=bar)
    test_sets = []
    if cfg.protocol.kind == "external":  # read, harmonise and cache the test sets before anything is written
        from bench.protocols import prepare_test_sets

        test_sets = prepare_test_sets(cfg, rec.label_names, cache.path, say=say)
    from bench.tuned_presets import check_presets

    check_presets(cfg.strategies, manifest, grid=str(cfg.source or grid_path or "GRID"))  # before anything is written
    trials = expand(cfg)
    storage_path, name, filesystem = _storage(run_dir, storage, cfg)

    collected = {p.parent.name for p in (run_dir / "trials").glob("*/metrics.json")}
    if cfg.resources.gpu > 0 and {t.id for t in trials} - collected:
        # Trials that ask for GPUs: torch must see CUDA on every GPU node now in the cluster (bench/devices.py).
        from bench.devices import check_gpu_nodes

        tuner.init_ray(address)
        check_gpu_nodes(float(cfg.resources.gpu), local=not (address or os.environ.get("RAY_ADDRESS")), say=say)

    # ---- nothing above wrote into the run folder; from here on it exists ----
    run_dir.mkdir(parents=True, exist_ok=True)
    # grid.json first: it marks the folder as this grid's run (a first write that fails leaves it empty).
    folder = RunFolder(run_dir)
    write_json(folder.grid_json, {**cfg.to_dict(), "digest": cfg.digest()})
    folder.trials_dir.mkdir(exist_ok=True)
    if not folder.grid_yaml.is_file() and grid_path and Path(grid_path).is_file():
        if overrides:  # the grid the run ran: the file's mapping with the overrides applied
            from bench.overrides import effective_yaml

            text = effective_yaml(grid_path, overrides)
            write_atomic(folder.grid_yaml, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        else:
            write_atomic(folder.grid_yaml, lambda tmp: shutil.copyfile(grid_path, tmp))
    manifest.to_json(folder.split_json)
    from bench.data.describe import describe

    write_json(folder.dataset_json, {**describe(rec), "kind": rec.kind, "root": rec.root,
                                          "image_size": cfg.dataset.image_size, "label_names": list(rec.label_names)})
    if test_sets:
        write_json(folder.external_json, {ts.name: ts.describe() for ts in test_sets})
    meta = {"versions": package_versions(), "git": git_commit(), "split_hash": manifest.hash,
            "cache_key": cache.key, "storage": storage_path, "experiment": name,
            "command": " ".join(sys.argv), "host": platform.node(),
            **({"overrides": list(overrides)} if overrides else {})}
    run_json = folder.run_json
    previous = json.loads(run_json.read_text()) if run_json.is_file() else {}
    write_json(run_json, {**previous, **meta, "started": previous.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"),
                          "status": "running", "trials": len(trials)})

    from bench.trial import TrialData

    runfolder.remove_stale_copies(run_dir)
    done_ids = {t.id for t in folder.finished()}
    todo = [t for t in trials if t.id not in done_ids]
    folds = f"{cfg.splits.folds} folds" if cfg.protocol.split == "kfold" else "the official split"
    say(f"{len(trials)} trials ({len(cfg.backbones)} backbones x {len(cfg.strategies)} strategies x {folds} x "
        f"{len(cfg.seeds)} seeds); {len(done_ids & {t.id for t in trials})} already done")
    outcome = RunOutcome(run_dir)
    with _marks_interruption(run_json):
        if todo:
            from bench.devices import fake_gpus_for_tests

            tuner.init_ray(address)
            cache_ref = None
            if storage:  # nodes without the cache (or the dataset) fetch it from there instead of decoding images
                from bench.data.shipping import publish

                cache_ref = publish(cache, storage, say=say).to_dict()
                if test_sets:
                    from bench.protocols import publish_test_sets

                    publish_test_sets(test_sets, storage, cfg.dataset.image_size, say=say)
            data = TrialData(records=rec, manifest=manifest, cache_key=cache.key, cache_dir=str(cache.path),
                             image_size=cfg.dataset.image_size, grid=cfg.to_dict(),
                             run_meta={"versions": meta["versions"], "git": meta["git"],
                                       "fake_gpus": fake_gpus_for_tests()}, cache_ref=cache_ref, test_sets=test_sets)
            progress = tuner.Progress(total=len(trials), done=set(done_ids))

            client = tuner.is_client(address)

            def on_done(tid: str, checkpoint) -> None:
                # Under Ray Client this runs on the head node: outputs are collected below, on this machine.
                # Never overwrite outputs collected earlier (a restored experiment may hand a trial back again).
                if not client and not folder.trial(tid).is_finished():
                    collect_trial(run_dir, tid, checkpoint)

            # Under Ray Client the callback prints on the head node; tagged lines are shown here.
            callback = tuner.make_callback(progress, tuner.remote_say if client else say, on_done,
                                           epochs=cfg.train.epochs)
            from bench import tracking

            # After the bench's own: a finished trial's outputs are in the run folder when a tracker sees it end.
            callbacks = [callback, *tracking.callbacks(cfg, run_dir, say=say)]
            finished = finished_trials(run_dir, cfg.train.epochs)
            # Shared storage may hold the experiment even when the run folder is gone (a lost head node).
            restore = tuner.can_restore(storage_path, name, filesystem)
            if restore:
                say("restoring the Ray Tune experiment (finished trials are kept, unfinished and errored ones resume)")
                t = tuner.build_tuner(data, todo, cfg=cfg, storage_path=storage_path, name=name, filesystem=filesystem,
                                      callbacks=callbacks, restore=True, finished=finished)
            else:
                if existing:  # a fresh experiment over the missing trials only
                    name = _new_experiment(name, run_json)
                t = tuner.build_tuner(data, todo, cfg=cfg, storage_path=storage_path, name=name, filesystem=filesystem,
                                      callbacks=callbacks)
            results, interrupted = tune_fit.fit(t)
            if restore and not interrupted and any(tune_outcome.checkpoint_gone(r.error) for r in results):
                # Tune deletes a trial's previous checkpoint before it saves the experiment state: a driver
                # killed in between leaves the state pointing at a checkpoint that is gone, and resuming
                # from it fails every time. Start those trials over (every draw is seeded: same numbers).
                say("some trials' last recorded checkpoint is gone (the driver stopped while Ray Tune saved it); "
                    "restarting the errored trials from scratch")
                t = tuner.build_tuner(data, todo, cfg=cfg, storage_path=storage_path, name=name, filesystem=filesystem,
                                      callbacks=callbacks, restore=True, restart_errored=True, finished=finished)
                results, interrupted = tune_fit.fit(t)
            stopped, unseen, ended = tune_outcome.settle_run(t, results, todo, folder, outcome.errors, interrupted)
            # Never started (a restored generator skipped them: bench.tune_grid), or ended early without a Ctrl-C
            if (unseen or ended) and not stopped and not interrupted:
                name, again = _new_experiment(name, run_json), unseen + ended
                say(tune_outcome.rerun_line(unseen, ended, name))
                t = tuner.build_tuner(data, again, cfg=cfg, storage_path=storage_path, name=name,
                                      filesystem=filesystem, callbacks=callbacks, finished=finished)
                results, interrupted = tune_fit.fit(t)
                stopped, _, ended = tune_outcome.settle_run(t, results, again, folder, outcome.errors, interrupted)
                outcome.errors.update({s.id: tune_outcome.ENDED_TWICE for s in ended})
            if stopped or interrupted:  # Ctrl-C (also one after the last trial ended): the same command resumes
                raise KeyboardInterrupt(f"{len(stopped)} trial(s) stopped before they finished" if stopped else
                                        "Ctrl-C after Ray Tune's last trial ended")
    outcome.completed = [t.id for t in folder.finished()]
    missing = [t.id for t in trials if t.id not in outcome.completed and t.id not in outcome.errors]
    for tid in missing:
        outcome.errors[tid] = "no outputs were produced"
    outcome.seconds = time.time() - t0
    status = "complete" if not outcome.errors else "incomplete"
    write_json(run_json, {**json.loads(run_json.read_text()), "status": status,
                          "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(outcome.seconds, 1),
                          "errors": outcome.errors})
    if outcome.errors:
        write_json(folder.errors_json, outcome.errors)
    elif folder.errors_json.exists():
        folder.errors_json.unlink()
    return outcome


@contextlib.contextmanager
def _marks_interruption(run_json: Path):
    """run.json says ``interrupted`` when a Ctrl-C (KeyboardInterrupt) ends the block, wherever it came."""
    try:
        yield
    except KeyboardInterrupt:
        write_json(run_json, {**json.loads(run_json.read_text()), "status": "interrupted",
                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        raise


def _new_experiment(name: str, run_json: Path) -> str:
    """A new Tune experiment's name, recorded in run.json: the one a later ``bench run`` resumes."""
    name = f"{name}-{time.strftime('%Y%m%d%H%M%S')}"
    write_json(run_json, {**json.loads(run_json.read_text()), "experiment": name})
    return name


def _storage(run_dir: Path, storage: str | None, cfg: GridConfig) -> tuple[str, str, object]:
    """(storage_path, experiment name, pyarrow filesystem or None) for the Tune experiment."""
    from bench import tuner

    if not storage:
        return str(run_dir), tuner.EXPERIMENT, None
    if "://" not in storage:
        path = Path(storage).expanduser().resolve()
        return str(path), f"{run_dir.name}-{cfg.digest()[:8]}", None
    from bench.storage import storage_filesystem

    fs = storage_filesystem(storage)
    if fs is not None:  # pyarrow wants bucket/key without the scheme when given a filesystem
        return storage.split("://", 1)[1], f"{run_dir.name}-{cfg.digest()[:8]}", fs
    return storage, f"{run_dir.name}-{cfg.digest()[:8]}", None
