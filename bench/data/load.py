"""Dispatch a grid's ``dataset`` section to its reader, then apply label selection and aliases."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from bench.config import DatasetConfig
from bench.data.labels import Records, positives
from bench.errors import BenchError, did_you_mean

log = logging.getLogger(__name__)


def load_records(ds: DatasetConfig, *, labels_only: bool = False, n_folds: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Records:
    """Read the dataset a grid names (paths already resolved), then select / rename labels.

    For ``kind: synthetic`` the dataset is generated at ``root`` first when it is not there.
    """
    kind = ds.kind
    root = Path(ds.root).expanduser()
    if kind == "synthetic":
        from bench.data.synthetic import ensure_synthetic

        ensure_synthetic(root, n=ds.n, size=ds.size, seed=ds.seed, progress=progress)
    if kind in ("synthetic", "nih"):
        if not root.exists():
            raise BenchError(f"dataset.root: {str(root)!r} does not exist (download NIH ChestX-ray14 there, or "
                             "use kind: synthetic for the built-in data)")
        from bench.data.nih import read_nih

        rec = read_nih(root, label_file=ds.label_file, box_file=ds.box_file, labels_only=labels_only,
                       official_test=ds.official_test)
        rec.kind = kind
    elif kind == "chexpert":
        if not root.exists():
            raise BenchError(f"dataset.root: {str(root)!r} does not exist (the folder holding train.csv)")
        from bench.data.chexpert import read_chexpert

        rec = read_chexpert(root, split=ds.split, uncertainty=ds.uncertainty, views=ds.views,
                            labels_only=labels_only)
    elif kind == "chestmnist":
        from bench.data.chestmnist import read_chestmnist

        target = Path(ds.file) if ds.file else root
        if not target.exists():
            raise BenchError(f"dataset.{'file' if ds.file else 'root'}: {str(target)!r} does not exist "
                             "(a MedMNIST chestmnist*.npz file or the folder holding it)")
        split = ds.split if ds.split in ("train", "val", "test") else "all"
        rec = read_chestmnist(target, split=split)
    elif kind == "csv":
        from bench.data.csvfile import read_csv_dataset

        if not Path(ds.csv).is_file():
            raise BenchError(f"dataset.csv: {ds.csv!r} does not exist")
        if not ds.labels:
            raise BenchError("dataset.labels: a csv dataset must declare its label list (e.g. [Effusion, Edema])")
        rec = read_csv_dataset(ds.csv, image_root=ds.image_root or ds.root, image_column=ds.image_column,
                               labels=list(ds.labels), label_column=ds.label_column, separator=ds.separator,
                               label_columns=list(ds.label_columns) if ds.label_columns else None,
                               patient_column=ds.patient_column, view_column=ds.view_column,
                               aliases=dict(ds.aliases) or None, labels_only=labels_only)
    else:  # pragma: no cover - config validation prevents it
        raise BenchError(f"dataset.kind: {kind!r} is not supported")

    if ds.aliases and kind != "csv":
        from bench.data.harmonise import harmonise

        rec = harmonise(rec, dict(ds.aliases))
    if ds.labels and kind != "csv":
        for name in ds.labels:
            if name not in rec.label_names:
                raise BenchError(f"dataset.labels: {name!r} is not a label of this dataset"
                                 f"{did_you_mean(name, rec.label_names)} (labels: {', '.join(rec.label_names)})")
        rec = rec.select_labels(list(ds.labels))
    if len(rec) == 0:
        raise BenchError(f"dataset {str(root)!r}: no images left after filtering ({_dropped_text(rec)})")
    if ds.min_positives:
        pos = positives(rec.labels)
        keep = [n for n, p in zip(rec.label_names, pos) if p >= ds.min_positives]
        gone = [f"{n} ({p})" for n, p in zip(rec.label_names, pos) if p < ds.min_positives]
        if gone:
            log.warning("dropping labels with fewer than %d positives: %s", ds.min_positives, ", ".join(gone))
            if not keep:
                raise BenchError(f"dataset.min_positives: {ds.min_positives} leaves no label "
                                 f"(most positives: {int(pos.max())})")
            rec = rec.select_labels(keep)
    return rec


def _dropped_text(rec: Records) -> str:
    return ", ".join(f"{v:,} {k}" for k, v in rec.dropped.items()) or "nothing dropped"


def check_spreadable(rec: Records, n_folds: int) -> None:
    """Every label needs at least one positive per fold (else its held-out AUC is undefined)."""
    pos = positives(rec.labels)
    for name, p in zip(rec.label_names, pos):
        if p < n_folds:
            raise BenchError(f"label {name!r} has {int(p)} positive image(s), too few to spread over {n_folds} "
                             f"folds; drop it (dataset.labels or dataset.min_positives) or use fewer folds")
    if rec.patients is not None:
        n_pat = rec.n_patients or 0
        if n_pat < n_folds:
            raise BenchError(f"the dataset has {n_pat} patient(s), fewer than splits.folds = {n_folds}")
    elif len(rec) < n_folds:
        raise BenchError(f"the dataset has {len(rec)} image(s), fewer than splits.folds = {n_folds}")


def no_positive_rows(rec: Records) -> np.ndarray:
    return ~(rec.labels == 1).any(axis=1)
