"""The evaluation protocols' moving parts (the grid's ``protocol`` section, :mod:`bench.protocol_config`).

Driver side: :func:`official_data` turns the read dataset into its official split (``protocol: official``);
:func:`prepare_test_sets` reads, harmonises and caches the external test sets (``protocol: external``).
Trial side: :func:`evaluate_external` scores a trained model on every test set, with the thresholds it tuned on
its own validation part, and writes each set's outputs into ``<trial>/external/<name>/``, a folder laid out as a
trial's own (``metrics.json``, ``predictions.npz``, ``bootstrap.npz``, ``localisation.csv``, ``gallery/``), so the
reports read it with the same code.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from bench.data.labels import Records

log = logging.getLogger(__name__)


# ---- protocol: official ---------------------------------------------------------------------------------------

def official_data(cfg: Any, reader: Any, rec: Records, cache: Any, cache_dir: Path, *, say: Callable[[str], None]):
    """The records on the official lists, their image cache and the one-fold manifest (:mod:`bench.data.official`)."""
    from bench.data.cache import build_cache
    from bench.data.official import check_official, official_split, official_summary

    train_mask, test_mask = reader.official_lists(rec)
    kept, manifest = official_split(rec, train_mask, test_mask, val_fraction=cfg.splits.val_fraction,
                                    seed=cfg.splits.seed)
    if len(kept) < len(rec):
        cache = build_cache(kept, cfg.dataset.image_size, cache_dir, source=cache)
    check_official(kept, manifest)
    say(official_summary(manifest))
    return kept, cache, manifest


# ---- protocol: external, on the driver ------------------------------------------------------------------------

@dataclass
class TestSet:
    """One external test set as every trial gets it: its records, aligned to the training labels, and its cache."""

    name: str
    records: Records
    cache_key: str
    cache_dir: str
    missing: list[str] = field(default_factory=list)   # training labels this set lacks (NaN there)
    extra: list[str] = field(default_factory=list)     # its own labels the models do not predict (left out)
    cache_ref: dict | None = None                      # where the driver published its cache (--storage)

    def describe(self) -> dict:
        from bench.data.describe import describe

        return {**describe(self.records), "kind": self.records.kind, "root": self.records.root,
                "label_names": list(self.records.label_names), "missing_labels": self.missing,
                "left_out_labels": self.extra}


def prepare_test_sets(cfg: Any, label_names, cache_dir: Path, *, say: Callable[[str], None]) -> list[TestSet]:
    """Read every ``protocol.test_sets`` dataset (its own aliases applied), align its labels to the training
    labels (:func:`bench.data.harmonise.align_to`) and cache its images at the training image size."""
    from bench.data.cache import build_cache
    from bench.data.catalogue import open_reader
    from bench.data.harmonise import align_to
    from bench.errors import BenchError

    out = []
    for name, ds in cfg.protocol.test_sets.items():
        reader = open_reader(ds)
        try:
            rec = reader.load()
        except BenchError as exc:
            raise BenchError(f"protocol.test_sets.{name}: {exc}") from None
        rec, missing, extra = align_to(rec, label_names)
        if len(missing) == len(label_names):
            raise BenchError(f"protocol.test_sets.{name}: none of its labels is a training label "
                             f"({', '.join(label_names)}); map its names with protocol.test_sets.{name}.aliases")
        size = cfg.dataset.image_size
        cache = build_cache(rec, size, cache_dir)
        kept = reader.exclude_bad(rec, cache)
        if len(kept) < len(rec):
            cache = build_cache(kept, size, cache_dir, source=cache)
        rec = kept
        say(f"test set {name}: {len(rec):,} images, {rec.n_patients or 'no'} patients, {len(rec.boxes)} boxes"
            + (f"; lacks {', '.join(missing)} (NaN there)" if missing else "")
            + (f"; leaves out its {', '.join(extra)}" if extra else ""))
        out.append(TestSet(name=name, records=rec, cache_key=cache.key, cache_dir=str(cache.path), missing=missing,
                           extra=extra))
    return out


def publish_test_sets(test_sets: list[TestSet], storage: str, image_size: int, *, say: Callable[[str], None]) -> None:
    """Upload every test set's cache to ``storage`` for the nodes without it (``--storage``)."""
    from bench.data.cache import open_cache
    from bench.data.shipping import publish

    for ts in test_sets:
        cache = open_cache(ts.records, image_size, Path(ts.cache_dir))
        ts.cache_ref = publish(cache, storage, say=say).to_dict()


# ---- protocol: external, in a trial ---------------------------------------------------------------------------

def node_images(ts: TestSet, image_size: int, *, gpu: float) -> np.ndarray:
    """A test set's cached images on this node: here already, fetched from the run's storage, or built here
    (CPU trials only, as for the training images)."""
    from bench.data.cache import build_cache, open_cache

    cache_dir = Path(ts.cache_dir)
    cache = open_cache(ts.records, image_size, cache_dir)
    if cache is None and ts.cache_ref:
        from bench.data.shipping import fetch

        fetch(ts.cache_ref, cache_dir)
        cache = open_cache(ts.records, image_size, cache_dir)
    if cache is None:
        if gpu > 0:
            raise RuntimeError(f"node {platform.node()} has no image cache of test set {ts.name} in {cache_dir}; "
                               "run with --storage (the driver publishes it there) or share dataset.cache_dir")
        cache = build_cache(ts.records, image_size, cache_dir)
    return cache.open_for(ts.records.image_ids)


def evaluate_external(spec, data, *, model, strategy, thresholds: np.ndarray, images: np.ndarray, val: np.ndarray,
                      dev, out: Path, trial: Any) -> dict:
    """Score the trained ``model`` on every test set of ``data.test_sets`` with the ``thresholds`` it tuned on its
    own validation part; writes ``out/external/<name>/`` and returns ``{name: headline metrics}``. ``trial``
    brings the trial's own writers (``adjust``, ``jsonable``, ``write_json``, ``write_bootstrap``: the files are
    written exactly as the trial writes its own)."""
    from bench import engine
    from reports.metrics import label_metrics, summary_metrics
    from reports.runfolder import TrialFolder

    tr = data.cfg.train
    names = list(data.records.label_names)
    headline = {}
    for ts in data.test_sets:
        t0 = time.perf_counter()
        folder = TrialFolder(out).external(ts.name)
        folder.path.mkdir(parents=True, exist_ok=True)
        rec = ts.records
        x = node_images(ts, data.image_size, gpu=float(data.cfg.resources.gpu))
        rows = np.arange(len(rec))
        logits = engine.predict_logits(model, x, rows, batch_size=int(tr.eval_batch_size), dev=dev)
        prob = engine.sigmoid(trial.adjust(strategy, logits))
        y = rec.labels
        summary = summary_metrics(y, prob, thresholds=thresholds, label_names=names)
        per_label = label_metrics(y, prob, thresholds=thresholds, label_names=names)
        patients = rec.patients if rec.patients is not None else rec.image_ids
        np.savez_compressed(
            folder.predictions, image_ids=np.asarray(rec.image_ids, dtype=str),
            patients=np.asarray(patients, dtype=str), labels=y.astype(np.float32), probs=prob.astype(np.float32), logits=logits.astype(np.float32),
            thresholds=thresholds, label_names=np.asarray(names, dtype=str))
        trial.write_bootstrap(spec, data, folder.path, y, prob, thresholds, patients, shared=True)  # all folds
        loc = 0.0
        if data.cfg.localisation.enabled and len(rec.boxes):
            t1 = time.perf_counter()
            _localise_external(spec, data, ts, model=model, images=images, val=val, x=x, prob=prob, dev=dev,
                               out=folder.path)
            loc = time.perf_counter() - t1
        clean = {k: trial.jsonable(v) for k, v in summary.items()}
        doc = {"id": spec.id, "backbone": spec.backbone, "strategy": spec.strategy["name"], "fold": spec.fold,
               "seed": spec.seed, "test_set": ts.name, "summary": clean,
               "per_label": json.loads(per_label.to_json(orient="records")),
               "thresholds": dict(zip(names, np.asarray(thresholds).tolist())), "missing_labels": ts.missing,
               "sizes": {"test": int(len(rec))},
               "timing": {"eval_seconds": round(time.perf_counter() - t0 - loc, 3),
                          "localisation_seconds": round(loc, 3)}}
        trial.write_json(folder.metrics, doc)
        headline[ts.name] = {k: clean.get(k) for k in ("macro_auc", "macro_ap", "macro_f1", "n_labels_macro")}
    return headline


def _localise_external(spec, data, ts: TestSet, *, model, images, val, x, prob, dev, out: Path) -> None:
    """The CAMs of the test set's boxed images, scored as a held-out fold's are: the binarisation threshold is
    tuned on the training dataset's validation images (the model's own), never on the test set. The two are
    put side by side in one view for :func:`bench.localise.localise_trial`; the test set's image ids are
    prefixed with its name (two datasets may name images alike)."""
    import pandas as pd

    from bench.localise import localise_trial

    a, b = data.records, ts.records
    val = np.asarray(val, dtype=np.int64)
    prefix = f"{ts.name}:"
    a_ids = a.image_ids[val]
    a_boxes = a.boxes[a.boxes["image_id"].astype(str).isin(set(map(str, a_ids)))]
    b_boxes = b.boxes.assign(image_id=prefix + b.boxes["image_id"].astype(str))
    view = Records(labels=np.concatenate([a.labels[val], b.labels]), label_names=a.label_names,
                   image_ids=np.concatenate([a_ids, [prefix + str(i) for i in b.image_ids]]).astype(object),
                   paths=np.concatenate([a.paths[val], b.paths]), kind=b.kind, root=b.root,
                   boxes=pd.concat([a_boxes, b_boxes], ignore_index=True))
    stacked = np.concatenate([np.asarray(images[val]), np.asarray(x)])
    n_val = len(val)
    localise_trial(spec, SimpleNamespace(cfg=data.cfg, records=view, image_size=data.image_size), model=model,
                   images=stacked, val=np.arange(n_val), test=np.arange(n_val, n_val + len(b)), dev=dev, out=out,
                   prob=prob)
