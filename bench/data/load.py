"""Read the dataset a grid's ``dataset`` section names: its kind's reader (:mod:`bench.data.catalogue`) reads
the files, the reader base class (:mod:`bench.data.reader`) selects and renames labels; then the checks a
split needs.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from bench.data.labels import Records, positives
from bench.errors import BenchError


def load_records(ds: Any, *, labels_only: bool = False, n_folds: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Records:
    """Read the dataset a grid names (paths already resolved), then select / rename labels.

    ``ds`` is the grid's dataset section (its kind's ``bench.data.section.DatasetSection``, or any object with
    its attributes).
    For ``kind: synthetic`` the dataset is generated at ``root`` first when it is not there.
    """
    from bench.data.catalogue import open_reader

    return open_reader(ds).load(labels_only=labels_only, progress=progress)


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
