"""Compare patient-disjoint K-fold splitters on the full NIH ChestX-ray14 label file.

Splitters: ``bench.data.splits.stratified_group_kfold`` (ours), iterstrat's
``MultilabelStratifiedKFold`` run on per-patient label maxima, and random patient assignment.
Reports, per splitter, the worst relative deviation of a label's per-fold positive count from
total / K, the per-label deviations, the fold-size spread, shared patients and the time.

Usage::

    .venv/bin/python benchmarks/split_quality.py [--csv PATH] [--folds 5] [--seeds 0 1 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bench.data.labels import NIH_LABELS
from bench.data.splits import split_quality, stratified_group_kfold

DEFAULT_CSV = Path(__file__).resolve().parents[1].parent / "shared/data/nih-cxr14/Data_Entry_2017_v2020.csv"


def read_nih_labels(csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 14) float32 labels in NIH_LABELS order and (N,) patient ids, from ``Finding Labels``."""
    df = pd.read_csv(csv, usecols=["Image Index", "Finding Labels", "Patient ID"])
    dummies = df["Finding Labels"].str.get_dummies(sep="|")
    labels = dummies.reindex(columns=list(NIH_LABELS), fill_value=0).to_numpy(np.float32)
    return labels, df["Patient ID"].to_numpy()


def iterstrat_patient_maxima(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """iterstrat's MultilabelStratifiedKFold on one row per patient (label max over its images)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    gidx, uniques = pd.factorize(groups)
    per_patient = pd.DataFrame(labels == 1).groupby(gidx).max().to_numpy().astype(int)
    patient_fold = np.empty(len(uniques), dtype=np.int64)
    mskf = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for f, (_, test) in enumerate(mskf.split(np.zeros(len(per_patient)), per_patient)):
        patient_fold[test] = f
    return patient_fold[gidx]


def random_patients(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Each patient to a uniformly random fold, as near-equal patient counts (a shuffled round robin)."""
    gidx, uniques = pd.factorize(groups)
    rng = np.random.default_rng(seed)
    patient_fold = rng.permutation(np.arange(len(uniques)) % n_folds)
    return patient_fold[gidx]


def ours(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    return stratified_group_kfold(labels, groups, n_folds, seed=seed)


SPLITTERS: dict[str, Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]] = {
    "stratified_group_kfold": ours,
    "iterstrat_patient_maxima": iterstrat_patient_maxima,
    "random_patients": random_patients,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="+", choices=list(SPLITTERS), default=list(SPLITTERS))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    if not args.csv.is_file():
        print(f"error: NIH label file not found at {args.csv}; pass --csv", file=sys.stderr)
        return 2
    labels, groups = read_nih_labels(args.csv)
    n_patients = len(pd.unique(groups))
    print(f"{len(labels)} images, {n_patients} patients, {labels.shape[1]} labels, K={args.folds}")
    results = []
    for name in args.only:
        for seed in args.seeds:
            t0 = time.perf_counter()
            folds = SPLITTERS[name](labels, groups, args.folds, seed)
            elapsed = time.perf_counter() - t0
            q = split_quality(labels, groups, folds, args.folds, label_names=NIH_LABELS)
            worst = max(q["per_label_deviation"], key=q["per_label_deviation"].get)
            results.append({"splitter": name, "seed": seed, "seconds": elapsed, **q})
            print(f"{name:26s} seed={seed}  max_label_deviation={q['max_label_deviation']:.4f} ({worst})  "
                  f"size_spread={q['size_spread']:.4f}  shared_patients={q['shared_patients']}  "
                  f"time={elapsed:.2f}s")
            print("    " + "  ".join(f"{k}={v:.4f}" for k, v in q["per_label_deviation"].items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
