"""The official split of a dataset (``protocol.kind: official``): train on its official training list, tune
thresholds on a patient-disjoint part carved from that list, test once on its official test list.

The split is a :class:`bench.data.splits.SplitManifest` of one fold (``protocol="official"``): a row of the test
list is fold 0, a row of the training list -1 (never tested on), and ``val[0]`` the validation rows carved from
the training list by :func:`bench.data.splits.carve_validation` (patient-disjoint, label-balanced). Images on
neither list are left out of the records first (counted in ``dropped``).

>>> from bench.data.labels import Records
>>> y = np.array([[1, 0], [0, 1]] * 20, dtype=np.float32)
>>> r = Records(y, ("a", "b"), [f"i{i}" for i in range(40)], [""] * 40, patients=np.arange(40) // 2)
>>> rec, m = official_split(r, np.arange(40) < 30, np.arange(40) >= 30, val_fraction=0.2, seed=0)
>>> [len(x) for x in m.rows(0)], m.protocol
([24, 6, 10], 'official')
"""

from __future__ import annotations

import numpy as np

from bench.data.labels import Records, positives
from bench.data.splits import SplitManifest, _group_index, _int_seed, assert_patient_disjoint, carve_validation
from bench.errors import BenchError


def official_split(rec: Records, train_mask: np.ndarray, test_mask: np.ndarray, *, val_fraction: float,
                   seed: int) -> tuple[Records, SplitManifest]:
    """The records on either official list and their one-fold manifest (module docstring)."""
    train_mask, test_mask = np.asarray(train_mask, bool), np.asarray(test_mask, bool)
    listed = train_mask | test_mask
    if not train_mask.any() or not test_mask.any():
        raise BenchError(f"protocol official: {int(train_mask.sum())} image(s) of the dataset are on the official "
                         f"training list and {int(test_mask.sum())} on the test list; both must be non-empty")
    if not listed.all():
        rec = rec.subset(np.flatnonzero(listed))
        rec.dropped = {**rec.dropped, "on neither official list": int((~listed).sum())}
        train_mask, test_mask = train_mask[listed], test_mask[listed]
    pool, test = np.flatnonzero(train_mask), np.flatnonzero(test_mask)
    try:
        assert_patient_disjoint(rec.patients, pool, test, what="the official training and test lists")
    except RuntimeError as exc:
        raise BenchError(f"protocol official: {exc}") from None
    groups = None if rec.patients is None else _group_index(rec.patients, len(rec))[0]
    train, val = carve_validation(rec.labels, groups, pool, val_fraction, seed=_int_seed(seed, 0))
    folds = np.where(test_mask, 0, -1)
    names = list(rec.label_names)
    quality = {
        "protocol": "official", "fold_sizes": [int(len(test))], "shared_patients": 0,
        "sizes": {"train": int(len(train)), "val": int(len(val)), "test": int(len(test))},
        "per_label_deviation": {},
        "positives": {part: dict(zip(names, positives(rec.labels[rows]).tolist()))
                      for part, rows in (("train", train), ("val", val), ("test", test))},
    }
    manifest = SplitManifest(n_folds=1, seed=int(seed), val_fraction=float(val_fraction),
                             fingerprint=rec.fingerprint(), image_ids=[str(i) for i in rec.image_ids],
                             folds=folds.astype(int).tolist(), val={0: val.tolist()}, quality=quality,
                             protocol="official")
    return rec, manifest


def official_summary(manifest: SplitManifest) -> str:
    """One line on an official split: its sizes and the labels without a positive in the test list."""
    q = manifest.quality
    sizes = q.get("sizes") or {}
    none = [n for n, c in (q.get("positives") or {}).get("test", {}).items() if not c]
    text = (f"split: official lists, {sizes.get('train')} training + {sizes.get('val')} validation images "
            f"(patient-disjoint, carved from the training list), {sizes.get('test')} test images")
    if none:
        text += f"; no positive in the test list (AUC undefined there, NaN): {', '.join(none)}"
    return text + f"; hash {manifest.hash[:12]}"


def check_official(rec: Records, manifest: SplitManifest) -> None:
    """Every label needs a positive among the training rows (else nothing can be learnt about it)."""
    train, val, _ = manifest.rows(0)
    pos = positives(rec.labels[np.concatenate([train, val])])
    for name, p in zip(rec.label_names, pos):
        if p == 0:
            raise BenchError(f"protocol official: label {name!r} has no positive image on the official training "
                             "list; drop it (dataset.labels or dataset.min_positives)")

