"""The report at full-grid scale: synthetic run folders of T trials x N test images, `bench report` timed.

For each size ``TxN`` (default 30 / 120 / 1,080 trials x 5,606 / 22,424 test images per trial) this
writes a run folder in the project's own format under ``--work`` (default a fresh folder in ``/tmp``):
``grid.json``, ``dataset.json``, ``split.json``, ``run.json`` and, per trial, ``trials/<id>/``
``metrics.json``, ``predictions.npz``, ``bootstrap.npz``, ``config.json``, ``localisation.csv`` and
``gallery/`` (two overlays + ``gallery.json``), with the keys and array shapes that
``bench.trial.evaluate``, ``_write_bootstrap`` and ``bench.localise.localise_trial`` write. Then it times:

* ``report``: ``reports.leaderboard.build_report(run, html=False)`` (what ``bench report --no-html`` runs),
  in a fresh process (imports not counted, so the figure is the report's own work; ``--in-process``
  times it in this process instead, for quick tests);
* ``page``: ``build_report(run, html=True)`` in another fresh process, with ``reports.html.write_html``
  timed on its own (``build_seconds``), and the page's size in bytes;
* ``load``: the page opened in headless Chromium (Debian's ``/usr/bin/chromium`` through playwright, as
  ``tests/test_browser.py`` drives it, network off): seconds from navigation to the ``load`` event
  (``load_seconds``), to the figures near the first screen drawn (``first_screen_seconds``: the page draws a
  figure when it comes within 800 px of the screen) and to every figure drawn once all are asked for at once
  (``rendered_seconds``: a ``beforeprint`` event, as printing does; ``div.fig[data-figure]`` all turned
  ``.js-plotly-plot``); best of ``--loads`` openings.

A run folder's grid is a share of ``grids/full.yaml``: 5 folds x 3 seeds (when T is a multiple of 15,
else 1 seed), and T / (folds x seeds) backbone x strategy rows taken from the full grid's 4 backbones and
18 strategies (``bce`` first, the baseline). Labels: the 14 NIH findings at NIH-like prevalence, 3.64
images per patient (NIH's 112,120 images of 30,805 patients); every trial of a fold holds the same test
images (as in a real run). Validation part: 0.4 x N images (``grids/full.yaml``: 8,970 for 22,424).

What is synthetic and how:

* predictions: per trial, scores from a binormal model (label-specific skill + trial noise), as float32
  like the real ones; ``predictions.npz`` holds every array ``evaluate`` saves (test ids, patients,
  labels, probs, logits, thresholds, label names, validation ids / labels / probs), stored uncompressed
  (``np.savez``; the real one is ``np.savez_compressed``, which ``np.load`` reads the same way; random
  float32 scores barely compress, and compressing them tripled the time to write a folder);
* ``metrics.json``: the summary and per-label metrics of those predictions computed by
  :func:`fast_metrics` (AUC and AP of the scores binned to 1 / 4,096, exact F1, sensitivity,
  specificity), not by ``reports.metrics``, which takes seconds per trial at 22,424 images; the report
  reads the values as given, so its cost does not depend on how they were computed;
* ``bootstrap.npz``: written by ``reports.replicates.save`` with arrays of the right shapes (1,000
  replicates, 20 jackknife values per metric: ``--bootstrap``) around the trial's estimate, with a
  component shared by every trial of a fold (their replicates pair). Computing them with
  ``reports.replicates.trial_replicates`` takes about 4 s per trial at 22,424 images (72 minutes for
  1,080 trials on this machine), which is the trial's cost on its worker, not the report's;
* ``localisation.csv``: the columns ``localise_trial`` writes, for gradcam and gradcam++ and the two
  chance maps (identical in every trial of a (fold, seed), as the report requires), on
  round(197 x N / 22,424) boxed test images (NIH's 984 boxes over 5 folds; at least 4), one finding of
  NIH's 8 boxed ones each, the same pairs in every trial of a fold;
* ``gallery/``: two 96-px overlay PNGs per trial.

Usage::

    .venv/bin/python benchmarks/scale.py [--sizes 30x5606,120x5606,1080x5606,30x22424,120x22424,1080x22424]
        [--page-sizes all|none|TxN,...] [--bootstrap 1000] [--loads 3] [--no-load] [--in-process]
        [--keep] [--work DIR] [--json]

``--json`` prints one JSON object: ``report`` (a list of ``{"trials", "images", "seconds"}``),
``exponent_trials`` and ``exponent_images`` (least squares of log seconds on log trials and log images
together, over the sizes), ``page`` (per size: ``build_seconds``, ``report_with_page_seconds``,
``bytes``, ``load_seconds``, ``first_screen_seconds``, ``rendered_seconds``), ``write_seconds`` (writing
each folder) and the load average before and after. Run folders are deleted after their size unless ``--keep``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_SIZES = "30x5606,120x5606,1080x5606,30x22424,120x22424,1080x22424"
FULL_BACKBONES = ("densenet121", "resnet50", "efficientnet_b0", "convnext_nano")
FULL_STRATEGIES = ("bce", "weighted_bce", "cb", "cb_focal", "focal", "asl", "dbloss", "la_loss", "la_posthoc",
                   "ml_ros", "ml_rus", "class_aware", "sqrt_sampling", "focal_ros", "asl_ros", "local_imbalance_ros",
                   "bce_youden", "bce_precision")
IMAGES_PER_PATIENT = 112_120 / 30_805
FULL_TEST, FULL_PAIRS = 22_424, 197
CAM_METHODS, CHANCE = ("gradcam", "gradcam++"), ("random", "centre")
TARGETS = {"report_seconds": 120.0, "load_seconds": 3.0, "page_bytes": 20_000_000}


# ---- the run folder ------------------------------------------------------------------------------
def layout(trials: int) -> dict:
    """Folds, seeds, backbones and strategies of a ``trials``-trial share of ``grids/full.yaml``.

    >>> d = layout(1080); d["folds"], d["seeds"], len(d["backbones"]), len(d["strategies"])
    (5, [0, 1, 2], 4, 18)
    >>> d = layout(30); len(d["backbones"]), len(d["strategies"]), d["strategies"][0]
    (1, 2, 'bce')
    >>> d = layout(120); len(d["backbones"]), len(d["strategies"])
    (4, 2)
    """
    if trials < 5 or trials % 5:
        raise ValueError(f"trials must be a multiple of 5 (5 folds); got {trials}")
    seeds = 3 if trials % 15 == 0 else 1
    rows = trials // (5 * seeds)
    fits = [nb for nb in (4, 3, 2, 1) if rows % nb == 0 and rows // nb <= len(FULL_STRATEGIES)]
    if not fits:
        raise ValueError(f"{trials} trials do not fit the full grid's 4 backbones x 18 strategies x 5 folds x 3 seeds")
    nb = sorted(fits, key=lambda nb: rows // nb < 2)[0]  # the most backbones that leave 2 strategies or more
    return {"folds": 5, "seeds": list(range(seeds)), "backbones": list(FULL_BACKBONES[:nb]),
            "strategies": list(FULL_STRATEGIES[:rows // nb])}


@functools.lru_cache(maxsize=1)
def _labels():
    from bench.data.synthetic import NIH_LABELS, PREVALENCE

    return tuple(NIH_LABELS), np.array([PREVALENCE[n] for n in NIH_LABELS])


@functools.lru_cache(maxsize=8)
def _fold_data(n: int, fold: int, *, n_val: int) -> dict:
    """A fold's test labels, patients and ids, and its validation part: the same for every trial of the fold."""
    prev = _labels()[1]
    rng = np.random.default_rng([7, fold])
    n_pat = max(1, round(n / IMAGES_PER_PATIENT))
    first = min(n_pat, n)  # every patient has an image; the rest go to random patients
    pat_idx = np.sort(np.concatenate([np.arange(first), rng.integers(0, n_pat, n - first)]))
    patients = np.array([f"{fold}{i:06d}" for i in pat_idx])
    ids = np.array([f"{fold}{i:06d}_{k:03d}.png" for k, i in enumerate(pat_idx)])
    y = (rng.random((n, prev.size)) < prev).astype(np.float32)
    yv = (rng.random((n_val, prev.size)) < prev).astype(np.float32)
    return {"y": y, "patients": patients, "ids": ids, "y_val": yv,
            "val_ids": np.array([f"v{fold}{k:07d}.png" for k in range(n_val)])}


BOX_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax")


@functools.lru_cache(maxsize=8)
def _boxed_pairs(n: int, fold: int, labels: tuple | list) -> np.ndarray:
    """(row, label) pairs of a fold's boxed test images: round(197 x n / 22,424) (at least 4) images, one
    positive finding of NIH's 8 boxed ones each (NIH: 984 boxes on 880 images, 5 folds)."""
    fd = _fold_data(n, fold, n_val=max(1, int(0.4 * n)))
    cols = [labels.index(b) for b in BOX_FINDINGS if b in labels]
    hits = np.argwhere(fd["y"][:, cols] == 1)
    _, first = np.unique(hits[:, 0], return_index=True)
    chosen = hits[np.sort(first)][:max(4, round(FULL_PAIRS * n / FULL_TEST))]
    return np.column_stack([chosen[:, 0], np.asarray(cols)[chosen[:, 1]]])


def _scores(rng, y: np.ndarray, skill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = (skill * (2 * y - 1) + rng.standard_normal(y.shape, dtype=np.float32) * 1.5 - 2.0).astype(np.float32)
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32), logits


BINS = 4096


def fast_metrics(y: np.ndarray, p: np.ndarray, thr: np.ndarray) -> tuple[dict, dict]:
    """Per-label (dict of (L,) arrays) and micro metrics of complete 0 / 1 labels, in O(N x L).

    AUC and AP as sklearn computes them (ties count half for AUC; AP steps once per distinct score) on
    the scores rounded down to multiples of 1 / 4096: each label's positives and negatives are counted per
    score bin (one ``bincount``), so nothing is sorted. F1 / sensitivity / specificity at ``thr`` and
    F1 at 0.5 use the exact scores.

    >>> y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]], float); p = np.array([[.9, .2], [.3, .8], [.6, .4], [.1, .1]])
    >>> lab, micro = fast_metrics(y, p, np.array([.5, .5])); lab["auc"].tolist(), lab["ap"].tolist()
    ([1.0, 1.0], [1.0, 1.0])
    >>> from sklearn.metrics import roc_auc_score, average_precision_score
    >>> rng = np.random.default_rng(0); y = (rng.random((500, 3)) < .2) * 1.; p = (rng.integers(0, 50, (500, 3)) + .5) / 50
    >>> lab, micro = fast_metrics(y, p, np.full(3, .5))
    >>> bool(np.allclose(lab["auc"], [roc_auc_score(y[:, j], p[:, j]) for j in range(3)]))
    True
    >>> bool(np.allclose(lab["ap"], [average_precision_score(y[:, j], p[:, j]) for j in range(3)]))
    True
    >>> bool(np.isclose(micro["micro_auc"], roc_auc_score(y.ravel(), p.ravel())))
    True
    """
    n, n_labels = y.shape
    q = np.clip((np.asarray(p, dtype=np.float64) * BINS).astype(np.int64), 0, BINS - 1)
    idx = (q + BINS * np.arange(n_labels)[None, :]).ravel()
    yy = (np.asarray(y) == 1).ravel()
    pos_h = np.bincount(idx[yy], minlength=BINS * n_labels).reshape(n_labels, BINS)[:, ::-1].astype(np.float64)
    neg_h = np.bincount(idx[~yy], minlength=BINS * n_labels).reshape(n_labels, BINS)[:, ::-1].astype(np.float64)

    def auc_ap(ph, nh):  # bins from the highest score down, last axis
        tp, fp = np.cumsum(ph, -1), np.cumsum(nh, -1)
        pos, neg = tp[..., -1], fp[..., -1]
        with np.errstate(all="ignore"):
            auc = 1.0 - ((fp - 0.5 * nh) * ph).sum(-1) / (pos * neg)
            prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
            ap = (ph * prec).sum(-1) / pos
        return auc, ap, pos, neg

    auc, ap, pos, neg = auc_ap(pos_h, neg_h)
    out = {"n": np.full(n_labels, n), "positives": pos, "auc": auc, "ap": ap}
    counts = {}
    with np.errstate(all="ignore"):
        for name, t in (("f1", thr), ("f1_fixed", np.full_like(thr, 0.5))):
            d = p >= t[None, :]
            tpd = (d & (y == 1)).sum(0)
            fpd = (d & (y == 0)).sum(0)
            fnd = (~d & (y == 1)).sum(0)
            denom = 2 * tpd + fpd + fnd
            out[name] = np.where(denom > 0, 2 * tpd / np.maximum(denom, 1), 0.0)
            counts[name] = 2 * tpd.sum() / max(denom.sum(), 1)
            if name == "f1":
                out["sensitivity"], out["specificity"] = tpd / pos, (neg - fpd) / neg
    m_auc, m_ap, _, _ = auc_ap(pos_h.sum(0), neg_h.sum(0))
    micro = {"micro_auc": float(m_auc), "micro_ap": float(m_ap), "micro_f1": float(counts["f1"]),
             "micro_f1_fixed": float(counts["f1_fixed"])}
    return out, micro


def _savez(path: Path, **arrays) -> None:
    """``np.savez``: the arrays ``np.savez_compressed`` would hold, stored uncompressed (faster to write;
    ``np.load`` reads both the same way)."""
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _png_bytes(rng, size: int = 96) -> bytes:
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = rng.integers(10, size - 10, 2)
    heat = 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (size * 4))
    noise = rng.integers(0, 40, (size, size))
    rgb = np.stack([np.clip(60 + heat + noise, 0, 255), 80 + noise, np.clip(160 - heat / 2, 0, 255)], -1)
    im = Image.fromarray(rgb.astype(np.uint8))
    ImageDraw.Draw(im).rectangle([size // 4, size // 4, size // 2, size // 2], outline=(0, 220, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _write_trial(args) -> None:
    root, spec, n, n_boot = args
    from reports import replicates
    from reports.runfolder import write_atomic

    labels, prev = _labels()
    b, s, f, sd, k = spec["backbone"], spec["strategy"], spec["fold"], spec["seed"], spec["index"]
    fd = _fold_data(n, f, n_val=max(1, int(0.4 * n)))
    rng = np.random.default_rng([11, k])
    skill = (0.9 + 0.1 * (FULL_BACKBONES.index(b) if b in FULL_BACKBONES else 0)
             + 0.03 * (FULL_STRATEGIES.index(s) % 5) + rng.normal(0, 0.05) + rng.normal(0, 0.3, len(labels)))
    skill = skill.astype(np.float32)
    p, logits = _scores(rng, fd["y"], skill)
    pv, _ = _scores(rng, fd["y_val"], skill)
    thr = np.clip(rng.normal(0.25, 0.05, len(labels)), 0.05, 0.95)
    lab, micro = fast_metrics(fd["y"], p, thr)
    from reports import calibration

    lab["ece"], lab["brier"] = calibration.ece(fd["y"], p), calibration.brier(fd["y"], p)  # as evaluate() does
    rel = calibration.reliability(fd["y"], p)
    out = root / "trials" / spec["id"]
    out.mkdir(parents=True, exist_ok=True)
    _savez(out / "predictions.npz", image_ids=fd["ids"], patients=fd["patients"], labels=fd["y"], probs=p,
           logits=logits, thresholds=thr, label_names=np.asarray(labels, dtype=str), val_image_ids=fd["val_ids"],
           val_labels=fd["y_val"], val_probs=pv)

    defined = (lab["positives"] > 0) & (lab["positives"] < n)

    def mean(a):  # a macro average is over the defined labels only (reports.metrics)
        a = np.asarray(a, dtype=np.float64)[defined]
        return float(np.nanmean(a)) if np.isfinite(a).any() else None

    summary = {"macro_auc": mean(lab["auc"]), "micro_auc": micro["micro_auc"], "macro_ap": mean(lab["ap"]),
               "micro_ap": micro["micro_ap"], "macro_f1": mean(lab["f1"]), "micro_f1": micro["micro_f1"],
               "macro_f1_fixed": mean(lab["f1_fixed"]), "micro_f1_fixed": micro["micro_f1_fixed"],
               "macro_sensitivity": mean(lab["sensitivity"]), "macro_specificity": mean(lab["specificity"]),
               "macro_ece": float(np.nanmean(lab["ece"])), "macro_brier": float(np.nanmean(lab["brier"])),
               "n_labels_macro": len(labels), "excluded": {}}
    def val(x):  # metrics.json holds null where a value is undefined, as evaluate() writes it
        return float(x) if np.isfinite(x) else None

    reasons = ["no positives in this fold" if lab["positives"][j] == 0 else
               "no negatives in this fold" if lab["positives"][j] == n else "" for j in range(len(labels))]
    summary["excluded"] = {name: r for name, r in zip(labels, reasons) if r}
    summary["n_labels_macro"] = len(labels) - len(summary["excluded"])
    per_label = [{"label": name, "n": int(lab["n"][j]), "positives": int(lab["positives"][j]),
                  **{m: val(lab[m][j]) for m in ("auc", "ap", "f1_fixed", "f1", "sensitivity", "specificity", "ece",
                                                 "brier")},
                  "threshold": float(thr[j]), "defined": not reasons[j], "excluded_reason": reasons[j]}
                 for j, name in enumerate(labels)]
    n_train = int(round(0.9 * (n / 0.2 - n))) if n else 0
    doc = {"id": spec["id"], "backbone": b, "strategy": s, "fold": f, "seed": sd, "summary": summary,
           "per_label": per_label, "train_prevalence": dict(zip(labels, prev.tolist())),
           "thresholds": dict(zip(labels, thr.tolist())),
           "sizes": {"train": n_train, "val": int(0.4 * n), "test": n},
           "history": [{"epoch": e + 1, "train_loss": 0.3 / (e + 1), "train_images": n_train, "train_seconds": 600.0,
                        "train_images_per_s": 130.0, "val_macro_auc": 0.7 + 0.005 * e} for e in range(10)],
           "timing": {"eval_seconds": 30.0, "localisation_seconds": 60.0, "bootstrap_seconds": 4.0},
           "node": "scale-benchmark", "node_id": None, "device": "cuda",
           "imbalance": {"mean_ir": 20.0, "label_less": 0.54},
           "reliability": {"edges": calibration.CURVE_EDGES.tolist(), "n": rel["n"].tolist(),
                           "p": np.round(rel["p"], 6).tolist(), "y": rel["y"].tolist()}}

    # Replicates of the right shapes around the estimate; the fold's component is shared by its trials.
    frng, trng = np.random.default_rng([13, f]), np.random.default_rng([17, k])
    shared, jshared = frng.standard_normal(n_boot), frng.standard_normal(replicates.JACKKNIFE_GROUPS)
    est = {m: float(summary[m]) for m in replicates.METRICS}
    se = 0.6 / math.sqrt(max(n, 1))
    rep = {"estimate": est,
           "replicates": {m: est[m] + se * (shared + 0.3 * trng.standard_normal(n_boot)) for m in replicates.METRICS},
           "jackknife": {m: est[m] + se / 4 * (jshared + 0.3 * trng.standard_normal(jshared.size))
                         for m in replicates.METRICS},
           "n_boot": n_boot, "fold": f, "seed": spec["boot_seed"], "groups": replicates.JACKKNIFE_GROUPS,
           "patients": replicates.patients_digest(fd["patients"]), "shared": False}  # internal: per-fold draws
    if n_boot > 0:
        write_atomic(out / replicates.FILE, lambda tmp: replicates.save(tmp, rep))

    # Localisation rows: CAM methods depend on the trial, chance maps only on (fold, seed).
    pos = _boxed_pairs(n, f, labels)
    lines = ["image_id,finding,method,threshold,tolerance,prob,hit,energy,iou,iobb,mask_iou"]
    for method in CAM_METHODS + CHANCE:
        r = rng if method in CAM_METHODS else np.random.default_rng([19, f, sd, CHANCE.index(method)])
        t = 0.5 if method == "centre" else float(r.uniform(0.2, 0.6))
        for i, j in pos:
            q = 0.45 if method in CAM_METHODS else 0.2
            lines.append(f"{fd['ids'][i]},{labels[j]},{method},{t:.6g},0.0,{float(p[i, j]):.6g},"
                         f"{float(r.random() < q)},{r.beta(2, 5):.6g},{r.beta(1, 6):.6g},{r.beta(1.5, 4):.6g},"
                         f"{r.beta(1, 6):.6g}")
    (out / "localisation.csv").write_text("\n".join(lines) + "\n")
    gal = out / "gallery"
    gal.mkdir(exist_ok=True)
    meta = []
    for g, (i, j) in enumerate(pos[:2]):
        (gal / f"{g:03d}.png").write_bytes(_png_bytes(rng))
        meta.append({"file": f"{g:03d}.png", "image_id": str(fd["ids"][i]), "finding": labels[j],
                     "prob": float(p[i, j]), "label": 1, "hit": g == 0, "energy": 0.4 - 0.2 * g, "map_range": 1.0,
                     "method": CAM_METHODS[0], "rank": "confident hit" if g == 0 else "confident miss"})
    (gal / "gallery.json").write_text(json.dumps(meta))
    (out / "config.json").write_text(json.dumps({"trial": {k2: v for k2, v in spec.items() if k2 != "index"},
                                                 "grid": spec["grid"], "split_hash": "f" * 64}))
    (out / "metrics.json").write_text(json.dumps(doc))  # last: a trial folder counts as finished with it


def write_run(root: Path, trials: int, images: int, *, n_boot: int = 1000, workers: int | None = None) -> Path:
    """Write a ``trials`` x ``images`` run folder at ``root`` (see the module docstring); returns ``root``."""
    lay = layout(trials)
    labels, prev = _labels()
    root.mkdir(parents=True, exist_ok=False)
    grid = {"name": f"scale-{trials}x{images}",
            "dataset": {"kind": "nih", "root": "/home/ray/data/nih-cxr14", "image_size": 224},
            "splits": {"folds": lay["folds"], "val_fraction": 0.1, "seed": 0}, "backbones": lay["backbones"],
            "strategies": lay["strategies"], "seeds": lay["seeds"], "train": {"epochs": 10, "batch_size": 64},
            "localisation": {"enabled": True, "methods": list(CAM_METHODS), "max_images": 0, "gallery": 4},
            "report": {"baseline": "bce", "head": 0.05, "tail": 0.01, "bootstrap": n_boot}, "digest": "5ca1e000"}
    total = images * lay["folds"]
    counts = (prev * total).round().astype(int)
    irl = counts.max() / np.maximum(counts, 1)
    dataset = {"kind": "nih", "images": total, "patients": int(total / IMAGES_PER_PATIENT), "dropped": {},
               "label_names": labels, "labels": dict(zip(labels, counts.tolist())),
               "prevalence": dict(zip(labels, prev.tolist())), "unknown": {n: 0 for n in labels},
               "irlbl": dict(zip(labels, irl.tolist())), "mean_ir": float(irl.mean()), "max_ir": float(irl.max()),
               "scumble": 0.08, "cardinality": float(prev.sum()), "density": float(prev.mean()),
               "no_finding": int(total * 0.54), "boxes": {"per_label": {labels[0]: 180, labels[1]: 146}}, "pairs": []}
    split = {"n_folds": lay["folds"], "val_fraction": 0.1, "hash": "f" * 64,
             "quality": {"fold_sizes": [images] * lay["folds"], "size_spread": 0.0, "max_label_deviation": 0.01,
                         "per_label_deviation": {n: 0.01 for n in labels}, "sparse_labels": [], "shared_patients": 0,
                         "fold_positives": {n: [int(prev[j] * images)] * lay["folds"] for j, n in enumerate(labels)}}}
    run = {"versions": {"python": sys.version.split()[0]}, "git": {}, "split_hash": "f" * 64,
           "command": "benchmarks/scale.py", "host": os.uname().nodename, "status": "complete",
           "started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:00:00", "seconds": 0.0, "errors": {},
           "trials": trials}
    for name, doc in (("grid.json", grid), ("dataset.json", dataset), ("split.json", split), ("run.json", run)):
        (root / name).write_text(json.dumps(doc, indent=1))
    specs, k = [], 0
    for b in lay["backbones"]:
        for s in lay["strategies"]:
            for sd in lay["seeds"]:
                for f in range(lay["folds"]):
                    specs.append({"id": f"{b}-{s}-f{f}-s{sd}", "backbone": b, "strategy": s, "fold": f, "seed": sd,
                                  "index": k, "boot_seed": 0, "grid": grid})
                    k += 1
    jobs = [(root, spec, images, n_boot) for spec in specs]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_trial, jobs, chunksize=max(1, len(jobs) // (workers * 8))))
    else:
        for job in jobs:
            _write_trial(job)
    return root


# ---- measurements --------------------------------------------------------------------------------
def _child_report(run_dir: str, html: bool) -> dict:
    """In a fresh process: build_report's wall-clock (and write_html's, when ``html``)."""
    import reports.html as H
    from reports.leaderboard import build_report

    inner = {}
    real = H.write_html

    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            inner["build_seconds"] = time.perf_counter() - t

    H.write_html = timed
    t0 = time.perf_counter()
    rep = build_report(run_dir, html=html)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, **inner, "rows": int(len(rep.leaderboard)), "trials": int(len(rep.trials)),
            "files": sorted(rep.files), "per_label_rows": int(len(rep.per_label)),
            "significance_rows": int(len(rep.significance)), "localisation_rows": int(len(rep.localisation))}


def time_report(run_dir: Path, *, html: bool, in_process: bool = False) -> dict:
    """``_child_report`` in a fresh interpreter (the parent's imports and caches do not help it), or in
    this one (``in_process``: quicker for small sizes; the report's modules are then imported once)."""
    if in_process:
        return _child_report(str(run_dir), html)
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.scale import _child_report; "
            "print('RESULT ' + json.dumps(_child_report(sys.argv[2], sys.argv[3] == '1')))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code, str(REPO), str(run_dir), "1" if html else "0"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"build_report({run_dir}, html={html}) failed:\n{res.stderr[-4000:]}")
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def chromium() -> str:
    for cand in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError("Chromium not found at /usr/bin/chromium (apt-get install -y chromium) or $CHROMIUM")


def time_load(page: Path, *, repeats: int = 3) -> dict:
    """Best of ``repeats`` openings of ``page`` in headless Chromium: seconds to the load event, to the figures
    near the first screen drawn, and to every figure drawn when all are asked for (``beforeprint``); console
    errors are returned (a page that errors is not a page that loaded)."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run",
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
    near = ("() => [...document.querySelectorAll('div.fig[data-figure]')]"
            ".filter(d => d.getBoundingClientRect().top < window.innerHeight + 800)"
            ".every(d => d.classList.contains('js-plotly-plot'))")
    loads, first, rendered, errors, figures = [], [], [], [], 0
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="scale-chromium-") as prof:
        ctx = pw.chromium.launch_persistent_context(prof, executable_path=chromium(), headless=True, args=args,
                                                    viewport={"width": 1400, "height": 900}, service_workers="block")
        ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:", "blob:", "about:"))
                  else r.abort())
        for _ in range(repeats):
            pg = ctx.new_page()
            pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
            pg.on("pageerror", lambda e: errors.append(str(e)))
            t0 = time.perf_counter()
            pg.goto(page.resolve().as_uri(), wait_until="load", timeout=120_000)
            t1 = time.perf_counter()
            pg.wait_for_function(near, timeout=120_000, polling=20)
            t2 = time.perf_counter()
            figures = pg.locator("div.fig[data-figure]").count()
            pg.evaluate("() => window.dispatchEvent(new Event('beforeprint'))")
            pg.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {figures}",
                                 timeout=120_000, polling=20)
            t3 = time.perf_counter()
            loads.append(t1 - t0)
            first.append(t2 - t0)
            rendered.append(t3 - t0)
            pg.close()
        ctx.close()
    return {"load_seconds": min(loads), "first_screen_seconds": min(first), "rendered_seconds": min(rendered),
            "figures": figures, "console_errors": errors[:5]}


def fit_exponents(points: list[dict]) -> tuple[float | None, float | None]:
    """Least squares of log(seconds) = a + b log(trials) + c log(images); (b, c), None where not identifiable.

    >>> pts = [{"trials": t, "images": n, "seconds": 1e-6 * t * n ** 0.5} for t in (10, 100) for n in (100, 400)]
    >>> [round(v, 6) for v in fit_exponents(pts)]
    [1.0, 0.5]
    """
    t = np.log([p["trials"] for p in points])
    n = np.log([p["images"] for p in points])
    s = np.log([p["seconds"] for p in points])
    cols, names = [np.ones_like(t)], []
    for name, v in (("trials", t), ("images", n)):
        if np.ptp(v) > 0:
            cols.append(v)
            names.append(name)
    coef = np.linalg.lstsq(np.column_stack(cols), s, rcond=None)[0]
    got = dict(zip(names, coef[1:]))
    return (float(got["trials"]) if "trials" in got else None, float(got["images"]) if "images" in got else None)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"30x400,120x400"`` -> ``[(30, 400), (120, 400)]``.

    >>> parse_sizes("30x5606, 1080x22424")
    [(30, 5606), (1080, 22424)]
    """
    out = []
    for part in text.split(","):
        t, sep, n = part.strip().lower().partition("x")
        if not sep or not t.isdigit() or not n.isdigit():
            raise ValueError(f"a size is TRIALSxIMAGES, e.g. 30x5606; got {part.strip()!r}")
        out.append((int(t), int(n)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help=f"TRIALSxIMAGES,... (default {DEFAULT_SIZES})")
    ap.add_argument("--page-sizes", default="all",
                    help="sizes whose page is built and loaded: all, none, or TRIALSxIMAGES,... (default all)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="replicates per trial in bootstrap.npz (default 1000)")
    ap.add_argument("--loads", type=int, default=3, help="page openings per size; the best counts (default 3)")
    ap.add_argument("--no-load", action="store_true", help="build the page but do not open it in Chromium")
    ap.add_argument("--work", type=Path, default=None, help="where run folders go (default a new /tmp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    ap.add_argument("--in-process", action="store_true",
                    help="time the reports in this process rather than a fresh one per report (quick tests)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    sizes = parse_sizes(args.sizes)
    page_sizes = (sizes if args.page_sizes == "all" else [] if args.page_sizes == "none"
                  else parse_sizes(args.page_sizes))
    work = args.work or Path(tempfile.mkdtemp(prefix="cxr-scale-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    result = {"command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cores": os.cpu_count(), "load_before": os.getloadavg()[0], "bootstrap": args.bootstrap,
              "report": [], "page": [], "write": [], "targets": TARGETS}
    for trials, images in sizes:
        root = work / f"run-{trials}x{images}"
        if root.exists():
            shutil.rmtree(root)
        t0 = time.perf_counter()
        write_run(root, trials, images, n_boot=args.bootstrap)
        wrote = time.perf_counter() - t0
        result["write"].append({"trials": trials, "images": images, "seconds": wrote, "bytes": _du(root)})
        load = os.getloadavg()[0]
        rep = time_report(root, html=False, in_process=args.in_process)
        result["report"].append({"trials": trials, "images": images, "seconds": rep["seconds"], "load": load,
                                 "rows": rep["rows"], "trials_read": rep["trials"], "files": rep["files"],
                                 "per_label_rows": rep["per_label_rows"],
                                 "significance_rows": rep["significance_rows"],
                                 "localisation_rows": rep["localisation_rows"]})
        say(f"{trials:>5} trials x {images:>6} images: wrote {wrote:.0f} s ({_du(root) / 1e9:.2f} GB), "
            f"report {rep['seconds']:.1f} s (load {load:.1f})")
        if (trials, images) in page_sizes:
            pg = time_report(root, html=True, in_process=args.in_process)
            path = root / "leaderboard.html"
            entry = {"trials": trials, "images": images, "build_seconds": pg["build_seconds"],
                     "report_with_page_seconds": pg["seconds"], "bytes": path.stat().st_size}
            if not args.no_load:
                entry.update(time_load(path, repeats=args.loads))
            result["page"].append(entry)
            say(f"      page: built {entry['build_seconds']:.1f} s, {entry['bytes'] / 1e6:.2f} MB"
                + ("" if args.no_load else f", load {entry['load_seconds']:.2f} s, first screen "
                   f"{entry['first_screen_seconds']:.2f} s, all {entry['rendered_seconds']:.2f} s "
                   f"({entry['figures']} figures)"))
        if not args.keep:
            shutil.rmtree(root)
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    result["exponent_trials"], result["exponent_images"] = fit_exponents(result["report"])
    result["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result))
    else:
        say(f"growth exponents: trials {result['exponent_trials']}, images {result['exponent_images']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
