"""Rename and merge labels so that datasets with different vocabularies can be compared or pooled.

``harmonise(records, {"Pleural Effusion": "Effusion"})`` renames a label; two sources mapped to one
target are merged: the merged value is the maximum over the sources' *known* values (any 1 -> 1,
else any 0 -> 0), and NaN only where every source is NaN. Boxes follow their labels.

:data:`CHEXPERT_TO_NIH` maps the CheXpert observations that have an NIH ChestX-ray14 counterpart
with the same meaning. Left out on purpose, because neither direction of the implication holds:
"Lung Lesion" (a mass *or* a nodule, not saying which), "Lung Opacity" (broader than Infiltration),
"Pleural Other" (includes, but is not, Pleural_Thickening), "Enlarged Cardiomediastinum",
"Fracture", "Support Devices" and "No Finding".
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from bench.data.labels import Records
from bench.errors import BenchError, choices_text, did_you_mean

CHEXPERT_TO_NIH: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
}


def merge_known_max(columns: np.ndarray) -> np.ndarray:
    """Row-wise max over the known (non-NaN) values of an (N, k) block; NaN where all k are NaN.

    >>> merge_known_max(np.array([[0, np.nan], [np.nan, np.nan], [1, 0]]))
    array([ 0., nan,  1.])
    """
    block = np.asarray(columns, dtype=np.float64)
    known = ~np.isnan(block)
    out = np.where(known, block, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(known.any(axis=1), out, np.nan)


def harmonise(
    records: Records, mapping: Mapping[str, str | None], *, keep_unmapped: bool = True, strict: bool = True
) -> Records:
    """Rename labels by ``mapping`` (source -> target), merging sources that share a target; a ``None``
    target drops the source label (the grid's ``aliases: {Name: null}``).

    Labels not in ``mapping`` keep their name (or are dropped with ``keep_unmapped=False``); a label
    that keeps its name and is also the target of another merges with it. The result's columns are
    in the order each target first appears in ``records.label_names``. A source that is not a label
    of ``records`` is an error, or skipped with ``strict=False`` (to apply :data:`CHEXPERT_TO_NIH` to
    records that kept only some CheXpert labels).

    >>> r = Records(labels=np.array([[1, np.nan, 0, 0]]), image_ids=["a"], paths=["/a.png"],
    ...             label_names=("Pleural Effusion", "Edema", "Lung Lesion", "Pleural Other"))
    >>> h = harmonise(r, {"Pleural Effusion": "Effusion", "Lung Lesion": "Other", "Pleural Other": "Other"})
    >>> h.label_names, h.labels.tolist()
    (('Effusion', 'Edema', 'Other'), [[1.0, nan, 0.0]])
    >>> harmonise(r, {"Lung Lesion": None, "Pleural Other": None}).label_names
    ('Pleural Effusion', 'Edema')
    """
    if not isinstance(mapping, Mapping):
        raise BenchError(f"mapping must be a dict of source label -> target label, got {mapping!r}")
    names = list(records.label_names)
    if not strict:
        mapping = {source: target for source, target in mapping.items() if source in names}
    for source, target in mapping.items():
        if source not in names:
            raise BenchError(
                f"mapping: {source!r} is not a label of these records{did_you_mean(str(source), names)} "
                f"(labels: {choices_text(names)})"
            )
        if target is not None and (not isinstance(target, str) or not target.strip()):
            raise BenchError(f"mapping: {source!r} -> {target!r}; the target must be a non-empty label name")

    targets: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        if name in mapping:
            if mapping[name] is not None:
                targets.setdefault(mapping[name], []).append(j)
        elif keep_unmapped:
            targets.setdefault(name, []).append(j)
    labels = np.empty((len(records), len(targets)), dtype=np.float32)
    for k, columns in enumerate(targets.values()):
        labels[:, k] = merge_known_max(records.labels[:, columns])

    rename = {names[j]: target for target, columns in targets.items() for j in columns}
    boxes = records.boxes[records.boxes["label"].isin(set(rename))].copy()
    boxes["label"] = boxes["label"].map(rename)
    return dataclasses.replace(records, labels=labels, label_names=tuple(targets), boxes=boxes.reset_index(drop=True))


def align_to(records: Records, names: Sequence[str]) -> tuple[Records, list[str], list[str]]:
    """``records`` with exactly the label columns ``names``, in that order: a name it lacks is a column of NaN
    (unknown there, never 0), a label of its own that ``names`` lacks is left out (its boxes too). Returns the
    records, the missing names and the left-out ones. Apply the dataset's ``aliases`` first (:func:`harmonise`).

    >>> r = Records(labels=np.array([[1, 0], [0, 1]]), image_ids=["a", "b"], paths=["/a", "/b"],
    ...             label_names=("Effusion", "Fracture"))
    >>> a, missing, extra = align_to(r, ["Edema", "Effusion"])
    >>> a.label_names, a.labels.tolist(), missing, extra
    (('Edema', 'Effusion'), [[nan, 1.0], [nan, 0.0]], ['Edema'], ['Fracture'])
    """
    names = list(names)
    own = list(records.label_names)
    labels = np.full((len(records), len(names)), np.nan, dtype=np.float32)
    for j, name in enumerate(names):
        if name in own:
            labels[:, j] = records.labels[:, own.index(name)]
    boxes = records.boxes[records.boxes["label"].isin(set(names))].reset_index(drop=True)
    out = dataclasses.replace(records, labels=labels, label_names=tuple(names), boxes=boxes)
    return out, [n for n in names if n not in own], [n for n in own if n not in names]
