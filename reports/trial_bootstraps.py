"""A run's trials' bootstrap replicates, for the report: each trial's own ``bootstrap.npz`` when it was made with
the report's settings, else computed from its ``predictions.npz`` with the same function
(``reports.replicates.trial_replicates``), so both give identical numbers."""

from __future__ import annotations

import logging
import os

import numpy as np

from reports import replicates
from reports.runfolder import TrialFolder

log = logging.getLogger(__name__)

# Replicates are computed in worker processes only when there is enough work to pay for starting them: 20 to 30 ns
# of one core per image x label x replicate here (reports.replicates.trial_replicates, 400 to 22,424 images, 2026-12-02,
# with the integer sums), and about 2 s and 4 CPU-seconds to start two spawned workers that import this package, so
# two workers break even at about 4 s of work. 2 x 10^8 is about 5 s: one full-NIH test fold (22,424 images, 14
# labels) at 640 replicates. The tests' reports stay in process, and so does the demo's at its 500 replicates
# (30 trials x 400 images x 14 labels: 8.4 x 10^7).
PARALLEL_WORK = 200_000_000


def trial_predictions(doc: dict) -> dict | None:
    f = TrialFolder(doc["_dir"]).predictions
    if not f.is_file():
        return None
    with np.load(f, allow_pickle=False) as z:
        y, p, thr = z["labels"], z["probs"], z["thresholds"]
        return {"y": y, "p": p, "dec": (p >= thr[None, :]).astype(np.int8), "pat": z["patients"].astype(str)}


def bootstrap_seed(grid: dict) -> int:
    """The seed of every trial's patient draws: the split's seed, shared by all trials of a run."""
    return int((grid.get("splits") or {}).get("seed", 0))


def _stored(doc: dict, n_boot: int, seed: int) -> dict | None:
    f = TrialFolder(doc["_dir"]).bootstrap
    if not f.is_file():
        return None
    try:
        rep = replicates.load(f)
    except KeyError:  # written before a metric existed: recomputed from predictions.npz
        return None
    same = rep["n_boot"] == n_boot and rep["seed"] == seed  # and the draws (an external file made per fold: redone)
    return rep if same and replicates.draws_of(doc) == {"fold": rep["fold"], "shared": rep["shared"]} else None


def trial_bootstrap(doc: dict, *, n_boot: int, seed: int) -> dict | None:
    """A trial's bootstrap replicates: its ``bootstrap.npz`` when made with these settings, else computed
    from its ``predictions.npz`` with the same function (``reports.replicates.trial_replicates``), so
    both give identical numbers. None when the trial has neither."""
    rep = _stored(doc, n_boot, seed)
    if rep is not None:
        return rep
    e = trial_predictions(doc)
    if e is None:
        return None
    return replicates.trial_replicates(e["y"], e["p"], e["dec"], e["pat"], n_boot=n_boot, seed=seed,
                                       **replicates.draws_of(doc))


def bootstrap_all(docs: list[dict], n_boot: int, seed: int) -> dict[str, dict]:
    """Every trial's replicates (trial id -> replicates). Trials normally bring them (``bootstrap.npz``,
    computed on their worker); those that do not (another ``--bootstrap``, an older run) are computed
    here on the head's cores."""
    if n_boot <= 0:
        return {}
    out = {d["id"]: r for d in docs if (r := _stored(d, n_boot, seed)) is not None}
    todo = [d for d in docs if d["id"] not in out]
    if todo:
        log.warning("%d trial(s) have no bootstrap.npz made with bootstrap=%d and seed=%d: computing their "
                    "replicates from predictions.npz here (same numbers, on this machine's cores)", len(todo),
                    n_boot, seed)
        workers = min(len(todo), os.cpu_count() or 1)
        if workers > 1 and _worth_workers(todo, n_boot):
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the report may run in a process that holds Ray's threads
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(_bootstrap_one, [(d, n_boot, seed) for d in todo]))
        else:
            results = [_bootstrap_one((d, n_boot, seed)) for d in todo]
        out.update({d["id"]: r for d, r in zip(todo, results) if r is not None})
        lost = [d["id"] for d, r in zip(todo, results) if r is None]
        if lost:
            log.warning("%d trial(s) have neither bootstrap.npz nor predictions.npz (e.g. %s): their rows get no "
                        "confidence interval and no paired bootstrap", len(lost), lost[0])
    return out


def _worth_workers(todo: list[dict], n_boot: int) -> bool:
    """Whether the trials' replicates are at least :data:`PARALLEL_WORK` image x label x replicates (the size of each
    ``predictions.npz``, read until the sum gets there: one trial of a full-NIH run)."""
    work = 0
    for d in todo:
        f = TrialFolder(d["_dir"]).predictions
        if f.is_file():
            with np.load(f, allow_pickle=False) as z:
                work += n_boot * z["labels"].size
            if work >= PARALLEL_WORK:
                return True
    return False


def _bootstrap_one(args) -> dict | None:
    doc, n_boot, seed = args
    return trial_bootstrap(doc, n_boot=n_boot, seed=seed)
