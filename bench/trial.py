"""One trial: train a backbone with a strategy on one fold and seed, evaluate, write its outputs.

:func:`run_trial` is plain Python around :mod:`bench.engine`; :mod:`bench.tuner` hands it to Ray
Tune, which calls it with a ``report`` hook (``tune.report``) and the last checkpoint to resume
from. Every epoch ends with a checkpoint (model, optimizer, epoch, history), so a trial whose
worker died continues from its last finished epoch and, because every random draw is derived from
(seed, fold, epoch), finishes with exactly the numbers an uninterrupted run gives.

The outputs of a finished trial (``metrics.json``, ``predictions.npz``, ``config.json``,
``localisation.csv``, ``gallery/*.png``) travel in its last checkpoint, so they reach the run
folder from any node and any storage (local, NFS, s3://).
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bench.data.labels import Records
from bench.runfolder import STATE_FILE, TrialFolder, checkpoint_outputs, checkpoint_staging, write_atomic
from bench.trial_spec import TrialSpec, trial_id  # noqa: F401  (trial_id: re-exported, where it always was)

if TYPE_CHECKING:
    from bench.config import GridConfig

log = logging.getLogger(__name__)


@dataclass
class TrialData:
    """What every trial of a run shares (shipped once through Ray's object store). A trial reads the grid
    through :attr:`cfg`, its typed and frozen sections (``data.cfg.train.batch_size``)."""

    records: Records
    manifest: Any            # bench.data.splits.SplitManifest
    cache_key: str
    cache_dir: str
    image_size: int
    grid: dict               # the resolved grid (GridConfig.to_dict()), as each trial's config.json records it
    run_meta: dict           # versions, git commit, split hash
    cache_ref: dict | None = None  # where the driver published the cache (bench.data.shipping), with --storage
    test_sets: list = field(default_factory=list)  # protocol external: bench.protocols.TestSet

    @functools.cached_property
    def cfg(self) -> "GridConfig":
        """The resolved grid as typed, frozen sections (validated when the run started)."""
        from bench.config import GridConfig

        return GridConfig.from_dict(self.grid)


class OutOfMemory(RuntimeError):
    """A trial ran out of (GPU or host) memory; the message says what to reduce."""


def run_trial(spec: TrialSpec, data: TrialData, *, report: Callable[[dict, str | None], None],
              checkpoint_dir: str | None = None) -> dict:
    """Run one trial. ``report(metrics, checkpoint_folder)`` is called after every epoch.

    Args:
        spec: the trial (:class:`bench.trial_spec.TrialSpec`: backbone, resolved strategy, fold, seed).
        data: the shared :class:`TrialData`.
        report: receives each epoch's metrics and a folder to persist as the checkpoint.
        checkpoint_dir: the folder of the checkpoint to resume from, if any.
    """
    try:
        return _run(spec, data, report=report, checkpoint_dir=checkpoint_dir)
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, OutOfMemory):
            raise
        text = str(exc).strip()
        # numpy raises MemoryError; torch's host allocator a plain RuntimeError naming itself.
        if isinstance(exc, MemoryError) or "DefaultCPUAllocator" in text:
            detail = (text.split("DefaultCPUAllocator: ", 1)[-1].splitlines() or ["no detail"])[0]
            raise OutOfMemory(f"trial {spec.id} ran out of host memory ({detail}); lower train.batch_size "
                              "or run fewer trials at once (resources.max_concurrent)") from None
        if "out of memory" in text.lower():
            raise OutOfMemory(f"trial {spec.id} ran out of GPU memory with {spec.backbone} at batch size "
                              f"{data.cfg.train.batch_size}: lower train.batch_size or give it a whole GPU "
                              "(resources.gpu)") from None
        raise


def _run(spec: TrialSpec, data: TrialData, *, report, checkpoint_dir) -> dict:
    import torch

    from backbones import create_model
    from bench import engine, seeding, staging
    from bench.data.splits import assert_fold_disjoint
    from strategies import create_strategy
    from strategies import stages as stages_lib

    tr, res = data.cfg.train, data.cfg.resources
    seed, fold, rec = spec.seed, spec.fold, data.records
    threads = max(1, int(res.cpu))
    torch.set_num_threads(threads)
    dev = engine.Device.resolve(gpu=float(res.gpu), precision=tr.precision, channels_last=tr.channels_last,
                                fake_gpus=bool(data.run_meta.get("fake_gpus")))

    # ---- data: the node's cache (fetched from the run's storage, or built here, if it has none) and the split ----
    data.manifest.verify(rec)
    cache, cache_source = _node_cache(data, gpu=float(res.gpu))
    if cache.key != data.cache_key:
        raise RuntimeError(f"image cache {cache.key} is not the run's cache {data.cache_key}")
    images = cache.open_for(rec.image_ids)
    train, val, test = data.manifest.rows(fold)
    assert_fold_disjoint(rec.patients, train, val, test)
    y = rec.labels

    # ---- strategy, model, optimizer (restored from the checkpoint when resuming) ----
    strategy = create_strategy(spec.strategy)
    features = thumbnail_features(images, train, seed=seed) if strategy.needs_features else None
    strategy.fit(y[train], features=features)
    epochs = int(tr.epochs)
    stages, spans = strategy.stages, strategy.stage_bounds(epochs)
    seeding.seed_torch(seed, spec.backbone, fold, "init")
    model = create_model(spec.backbone, len(rec.label_names), pretrained=tr.pretrained, image_size=data.image_size)
    model.to(dev.device)
    if dev.channels_last:
        model = model.to(memory_format=torch.channels_last)
    scaler = engine.grad_scaler(dev)
    start, history, state = 0, [], None
    if checkpoint_dir:
        state_file = Path(checkpoint_dir) / STATE_FILE
        done = checkpoint_outputs(checkpoint_dir).metrics
        if done.is_file():  # finished before the worker died: hand the same outputs back
            final = json.loads(done.read_text())["summary"]
            report({**final, "epoch": tr.epochs, "done": True}, checkpoint_dir)
            return final
        state = torch.load(state_file, map_location=dev.device, weights_only=True)
        model.load_state_dict(state["model"])
        if state.get("scaler"):  # saved by an fp16 trial (empty, or absent in older checkpoints, otherwise)
            scaler.load_state_dict(state["scaler"])
        start = int(state["epoch"]) + 1
        history = json.loads(state["history"])
        log.info("trial %s resumes after epoch %d", spec.id, start)
    net = torch.compile(model) if tr.compile and dev.device.type == "cuda" else model

    optimizer, current, head = None, None, None
    for epoch in range(start, epochs):
        k = stages_lib.stage_of(epoch, spans)
        stage = stages[k]
        if k != current:  # entering a stage, or resuming in one
            optimizer, head = staging.enter_stage(k, epoch, stages, spans, model=model, n_labels=len(rec.label_names),
                                           dev=dev, tr=tr, optimizer=optimizer, state=state, seed=seed, fold=fold)
            state, current = None, k
        seeding.seed_torch(seed, fold, "epoch", epoch)  # dropout etc.: same draws after a resume
        order = stage.sampler.epoch_indices(seeding.numpy_rng(seed, fold, "order", epoch))
        rows = train[order]
        mix = None
        if stage.mixup is not None:
            mix_rng = seeding.numpy_rng(seed, fold, "mixup", epoch)
            mix = (train[stage.mixup.partner_rows(mix_rng, len(rows))],
                   stage.mixup.lambdas(mix_rng, engine.n_train_batches(len(rows), int(tr.batch_size))))
        aug = seeding.torch_generator(seed, fold, "augment", epoch) if tr.augment else None
        first, last_stage = stages_lib.segment(k, stages)
        seg_start, seg_stop = spans[first][0], spans[last_stage][1]
        schedule = engine.cosine_factor(epoch - seg_start, seg_stop - seg_start) if tr.scheduler == "cosine" else None
        stats = engine.train_epoch(net, images, y, rows, loss_fn=stage.loss, optimizer=optimizer,
                                   lr_factor=schedule, batch_size=int(tr.batch_size), dev=dev, aug_gen=aug,
                                   num_workers=int(tr.num_workers), scaler=scaler, mix=mix, train_only=head)
        last = epoch == epochs - 1
        if last and strategy.posthoc is not None:  # e.g. tau-normalisation, fitted on the validation part
            staging.posthoc(strategy, model, net, images, val, y, dev=dev, batch_size=int(tr.eval_batch_size),
                            adjust=functools.partial(_adjust, strategy))
        val_logits = engine.predict_logits(net, images, val, batch_size=int(tr.eval_batch_size), dev=dev)
        val_prob = engine.sigmoid(_adjust(strategy, val_logits))
        val_auc = _macro_auc(y[val], val_prob)
        entry = {"epoch": epoch + 1, "train_loss": stats["loss"], "train_images": stats["images"],
                 "train_steps": stats["steps"], "train_seconds": round(stats["seconds"], 3),
                 "train_images_per_s": stats["images_per_s"], "val_macro_auc": val_auc}
        if strategy.staged:
            entry["stage"] = stage.name
        history.append(entry)
        if spec.search:  # hyper-parameter search: validation only, the held-out fold is never touched
            metrics = {**entry, "done": last}
            report(metrics, None)
            continue
        with checkpoint_staging(sweep=epoch == start) as ckpt:  # orphans of killed workers: once a trial
            if not last or tr.keep_weights:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                            "history": json.dumps(history), "scaler": scaler.state_dict(), "stage": k,
                            "loss": stage.loss.state_dict()}, Path(ckpt) / STATE_FILE)
            metrics = {**entry, "done": False}
            if last:
                summary = evaluate(spec, data, model=net, strategy=strategy, images=images, rows=(train, val, test),
                                   history=history, dev=dev, out=checkpoint_outputs(ckpt).path, val_prob=val_prob,
                                   cache_source=cache_source)
                metrics = {**entry, **summary, "done": True}
            report(metrics, str(ckpt))
    return metrics


def _adjust(strategy, logits: np.ndarray) -> np.ndarray:
    """Apply the loss's post-hoc logit correction (identity for most losses)."""
    import torch

    return strategy.loss.adjust_logits(torch.from_numpy(np.ascontiguousarray(logits))).numpy()


def _macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    from reports.curves import roc_auc

    aucs = []
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        yj = y[known, j]
        if 0 < yj.sum() < len(yj):
            aucs.append(roc_auc(yj, p[known, j]))
    return float(np.mean(aucs)) if aucs else float("nan")


def thumbnail_features(images: np.ndarray, rows: np.ndarray, *, seed: int, dims: int = 32) -> np.ndarray:
    """Per-image embeddings for feature-aware samplers: 16x16 thumbnails reduced by PCA (fit on
    the training rows only)."""
    import torch
    from sklearn.decomposition import PCA

    x = torch.from_numpy(np.asarray(images[rows], dtype=np.float32)).unsqueeze(1)
    small = torch.nn.functional.adaptive_avg_pool2d(x, 16).flatten(1).numpy() / 255.0
    k = int(min(dims, small.shape[0] - 1, small.shape[1]))
    return PCA(n_components=max(k, 1), random_state=seed).fit_transform(small).astype(np.float32)


def fit_thresholds(rule, y_val: np.ndarray, p_val: np.ndarray, *, val_ids, test_ids) -> np.ndarray:
    """Fit the decision rule on the validation part; refuses if any validation image is held out."""
    overlap = set(map(str, val_ids)) & set(map(str, test_ids))
    if overlap:
        raise RuntimeError(f"refusing to fit thresholds: {len(overlap)} validation image(s) are in the held-out "
                           f"fold (e.g. {sorted(overlap)[0]!r})")
    return np.asarray(rule.fit(y_val, p_val).thresholds_, dtype=np.float64)


def _node_cache(data: TrialData, *, gpu: float):
    """This node's image cache and where it came from: already here ('local'), fetched from the storage the
    driver published it to ('fetched from storage'), or built here from the dataset's images ('built on this
    node', CPU trials only: a trial never decodes images while holding a GPU)."""
    from bench.data.cache import open_cache

    rec, cache_dir = data.records, Path(data.cache_dir)
    cache = open_cache(rec, data.image_size, cache_dir)
    if cache is not None:
        return cache, "local"
    if data.cache_ref:
        from bench.data.shipping import fetch

        log.warning("no image cache on node %s; fetching it from %s", platform.node(), data.cache_ref["storage"])
        fetch(data.cache_ref, cache_dir)
        cache = open_cache(rec, data.image_size, cache_dir)
        if cache is None:
            raise RuntimeError(f"image cache {data.cache_key} fetched into {cache_dir} on node {platform.node()} "
                               "does not open")
        return cache, "fetched from storage"
    if gpu > 0:
        raise RuntimeError(f"node {platform.node()} has no image cache in {cache_dir} and the run has no storage to "
                           "fetch it from; a trial does not decode the dataset while holding a GPU: run with "
                           "--storage PATH|s3://BUCKET/PREFIX (the driver publishes the cache there) or give every "
                           "node the same dataset.cache_dir")
    from bench.data.cache import build_cache

    log.warning("no image cache on node %s; building it", platform.node())
    return build_cache(rec, data.image_size, cache_dir), "built on this node"


def evaluate(spec: TrialSpec, data: TrialData, *, model, strategy, images, rows, history, dev, out: Path,
             val_prob: np.ndarray, cache_source: str = "local") -> dict:
    """Thresholds on validation, predictions and metrics on the held-out fold, CAM scores; writes ``out``."""
    from bench import engine
    from reports.metrics import label_metrics, summary_metrics

    rec, tr = data.records, data.cfg.train
    train, val, test = rows
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    thresholds = fit_thresholds(strategy.threshold, rec.labels[val], val_prob,
                                val_ids=rec.image_ids[val], test_ids=rec.image_ids[test])
    logits = engine.predict_logits(model, images, test, batch_size=int(tr.eval_batch_size), dev=dev)
    prob = engine.sigmoid(_adjust(strategy, logits))
    y_test = rec.labels[test]
    names = list(rec.label_names)
    summary = summary_metrics(y_test, prob, thresholds=thresholds, label_names=names)
    per_label = label_metrics(y_test, prob, thresholds=thresholds, label_names=names)
    eval_seconds = time.perf_counter() - t0

    from bench.data.labels import positives

    n_train = len(train)
    train_prev = (positives(rec.labels[train]) / max(n_train, 1)).tolist()
    loc_seconds, cam = 0.0, None
    if data.cfg.localisation.enabled and len(rec.boxes):
        import backbones
        from bench.localise import localise_trial

        t1 = time.perf_counter()
        localise_trial(spec, data, model=model, images=images, val=val, test=test, dev=dev, out=out, prob=prob)
        loc_seconds = time.perf_counter() - t1
        cam = backbones.cam_target(model, spec.backbone, data.image_size).as_dict()  # layer, layout, grid, warning

    files = TrialFolder(out)
    np.savez_compressed(
        files.predictions, image_ids=np.asarray(rec.image_ids[test], dtype=str),
        patients=np.asarray(rec.patients[test] if rec.patients is not None else rec.image_ids[test], dtype=str),
        labels=y_test.astype(np.float32), probs=prob.astype(np.float32), logits=logits.astype(np.float32),
        thresholds=thresholds, label_names=np.asarray(names, dtype=str),
        val_image_ids=np.asarray(rec.image_ids[val], dtype=str), val_labels=rec.labels[val].astype(np.float32),
        val_probs=val_prob.astype(np.float32))
    boot_seconds = _write_bootstrap(spec, data, out, y_test, prob, thresholds,
                                    rec.patients[test] if rec.patients is not None else rec.image_ids[test])
    clean = {k: _jsonable(v) for k, v in summary.items()}
    doc = {
        "id": spec.id, "backbone": spec.backbone, "strategy": spec.strategy["name"],
        "fold": spec.fold, "seed": spec.seed, "summary": clean,
        "per_label": json.loads(per_label.to_json(orient="records")),
        "train_prevalence": dict(zip(names, train_prev)),
        "thresholds": dict(zip(names, thresholds.tolist())),
        "sizes": {"train": int(len(train)), "val": int(len(val)), "test": int(len(test))},
        "history": history, "timing": {"eval_seconds": round(eval_seconds, 3),
                                       "localisation_seconds": round(loc_seconds, 3),
                                       "bootstrap_seconds": round(boot_seconds, 3)},
        "node": platform.node(), "node_id": spec.node_id, "device": str(dev.device),
    }
    # MeanIR and label-less share of the training labels and of the first epoch the sampler drew (epoch 0's
    # generator, so the same rows it trained on); see strategies.base.Sampler.imbalance.
    from bench import seeding

    # Reliability-diagram sums (count, sum of p, sum of y per equal-width bin and label): the report adds
    # the trials of a backbone x strategy into one diagram without reading their predictions.
    from reports.calibration import CURVE_EDGES, reliability

    rel = reliability(y_test, prob)
    doc["reliability"] = {"edges": CURVE_EDGES.tolist(), "n": rel["n"].tolist(),
                          "p": np.round(rel["p"], 6).tolist(), "y": rel["y"].tolist()}
    from bench import staging  # stages, post-hoc step, optimiser steps per stage, warnings (too few steps)

    doc.update(_jsonable(staging.describe(strategy, int(tr.epochs), history)))
    if cam is not None:  # which module the CAMs read (a shallower stage than the registry's on small images)
        doc["cam"] = cam
    doc["imbalance"] = _jsonable(strategy.sampler.imbalance(
        seeding.numpy_rng(spec.seed, spec.fold, "order", 0)))
    if data.test_sets:  # protocol external: the same model and thresholds on every test set (bench/protocols.py)
        from bench.protocols import evaluate_external

        doc["external"] = evaluate_external(spec, data, model=model, strategy=strategy, thresholds=thresholds,
                                            images=images, val=val, dev=dev, out=out, trial=_WRITERS)
    _write_json(files.metrics, doc)
    _write_json(files.config, {"trial": spec.to_dict(), "grid": data.grid, "split_hash": data.manifest.hash,
                                      "cache_key": data.cache_key, "cache_source": cache_source, **data.run_meta})
    return {k: v for k, v in clean.items() if isinstance(v, (int, float)) and v is not None}


def _write_bootstrap(spec: TrialSpec, data: TrialData, out: Path, y_test, prob, thresholds, patients, *, shared=False):
    """The trial's bootstrap replicates of its own leaderboard metrics (``bootstrap.npz``; ``shared``: an external
    set's, drawn alike for all folds), computed on the worker from the predictions exactly as saved (float32), so
    ``bench report`` recomputing them from ``predictions.npz`` gives identical numbers."""
    from reports.trial_bootstraps import bootstrap_seed
    from reports.replicates import save, trial_replicates

    n_boot = int(data.cfg.report.bootstrap)
    if n_boot <= 0 or spec.search:
        return 0.0
    t0 = time.perf_counter()
    p = prob.astype(np.float32)
    rep = trial_replicates(y_test.astype(np.float32), p, (p >= thresholds[None, :]).astype(np.int8),
                           np.asarray(patients, dtype=str), n_boot=n_boot, fold=spec.fold,
                           seed=bootstrap_seed(data.grid), shared=shared)
    write_atomic(TrialFolder(out).bootstrap, lambda tmp: save(tmp, rep))
    return time.perf_counter() - t0


def _jsonable(v):
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _write_json(path: Path, obj) -> None:
    """Write ``obj`` atomically (:func:`reports.runfolder.write_atomic`): a full disk leaves nothing."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, default=_jsonable)))


#: The trial's own output writers, handed to bench.protocols (which writes an external test set's files as these).
_WRITERS = SimpleNamespace(adjust=_adjust, jsonable=_jsonable, write_json=_write_json, write_bootstrap=_write_bootstrap)
