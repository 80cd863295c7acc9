"""The one data contract every reader returns, and the multi-label imbalance measures.

Labels are an (N, L) float32 matrix of 1 (present), 0 (absent) or NaN (unknown, e.g. a CheXpert
uncertain label under the ``ignore`` policy). Nothing here turns a missing value into 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

# The 14 findings of NIH ChestX-ray14, in the order of the CheXNet paper.
NIH_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)

BOX_COLUMNS = ("image_id", "label", "x", "y", "w", "h", "img_w", "img_h")


@dataclass
class Records:
    """A labelled set of chest X-rays.

    Attributes:
        labels: (N, L) float32 of 1 / 0 / NaN.
        label_names: the L label names, in column order.
        image_ids: (N,) unique image identifiers (NIH "Image Index", a CheXpert path, ...).
        paths: (N,) absolute image locations; ``npz://FILE#split/index`` for arrays in a ``.npz``.
        patients: (N,) patient ids, or ``None`` when the dataset has none.
        views: (N,) view position ("PA", "AP", "LL", ... or "" when unknown).
        boxes: one row per box: image_id, label, x, y, w, h in pixels of the image as stored on
            disk, and that image's img_w, img_h (NaN when not read yet).
        dropped: reason -> number of rows the reader left out.
        kind, root: where the records came from.
    """

    labels: np.ndarray
    label_names: tuple[str, ...]
    image_ids: np.ndarray
    paths: np.ndarray
    patients: np.ndarray | None = None
    views: np.ndarray | None = None
    boxes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(BOX_COLUMNS)))
    dropped: dict[str, int] = field(default_factory=dict)
    kind: str = ""
    root: str = ""
    # Optional official split, e.g. NIH's test_list.txt: True where the image is in the official test set.
    official_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.float32)
        n = len(self.labels)
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.label_names):
            raise ValueError(f"labels must be (N, {len(self.label_names)}), got {self.labels.shape}")
        self.image_ids = np.asarray(self.image_ids, dtype=object)
        self.paths = np.asarray(self.paths, dtype=object)
        if self.views is None:
            self.views = np.full(n, "", dtype=object)
        for name in ("image_ids", "paths", "views"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, labels have {n}")
        if self.patients is not None:
            self.patients = np.asarray(self.patients, dtype=object)
            if len(self.patients) != n:
                raise ValueError(f"patients has {len(self.patients)} rows, labels have {n}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_patients(self) -> int | None:
        return None if self.patients is None else int(len(pd.unique(self.patients)))

    def subset(self, index: np.ndarray | Sequence[int]) -> "Records":
        """Rows ``index`` (int positions or a boolean mask); boxes follow their images."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        ids = self.image_ids[index]
        boxes = self.boxes[self.boxes["image_id"].isin(set(ids))].reset_index(drop=True)
        return dataclasses.replace(
            self,
            labels=self.labels[index],
            image_ids=ids,
            paths=self.paths[index],
            patients=None if self.patients is None else self.patients[index],
            views=self.views[index],
            boxes=boxes,
            official_test=None if self.official_test is None else self.official_test[index],
        )

    def select_labels(self, names: Sequence[str]) -> "Records":
        """Keep only the label columns ``names`` (in that order)."""
        missing = [n for n in names if n not in self.label_names]
        if missing:
            raise KeyError(missing[0])
        cols = [self.label_names.index(n) for n in names]
        boxes = self.boxes[self.boxes["label"].isin(set(names))].reset_index(drop=True)
        return dataclasses.replace(self, labels=self.labels[:, cols], label_names=tuple(names), boxes=boxes)

    def fingerprint(self) -> str:
        """A short hash of the image ids and labels; splits and caches are keyed by it."""
        h = hashlib.sha256()
        h.update("\n".join(map(str, self.image_ids)).encode())
        h.update("\n".join(self.label_names).encode())
        h.update(np.nan_to_num(self.labels, nan=-1).astype(np.int8).tobytes())
        if self.patients is not None:
            h.update("\n".join(map(str, self.patients)).encode())
        return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Multi-label imbalance measures (Charte et al., Neurocomputing 2015; SCUMBLE: HAIS 2014)
# --------------------------------------------------------------------------------------------------

def positives(labels: np.ndarray) -> np.ndarray:
    """Per-label count of known positives (NaN counts as not positive)."""
    return np.nansum(np.asarray(labels, dtype=np.float64) == 1, axis=0).astype(np.int64)


def irlbl(labels: np.ndarray) -> np.ndarray:
    """IRLbl(l) = max_j n_j / n_l; ``inf`` for a label with no positives."""
    n = positives(labels).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(n > 0, n.max(initial=0) / np.where(n > 0, n, 1), np.inf)


def scumble(labels: np.ndarray) -> float:
    """SCUMBLE (Charte et al., HAIS 2014): how much rare and frequent labels co-occur, over ALL images.

    SCUMBLE_i = 1 - (prod_{l in Y_i} IRLbl_l) ** (1 / |Y_i|) / mean_{l in Y_i} IRLbl_l for an image with
    positive labels Y_i, and 0 for an image without any (NaN is not a positive); the dataset's SCUMBLE
    is the mean over all N images, as in the ``mldr`` R package. NaN when no label has a positive.

    >>> y = np.array([[1, 1], [1, 0], [1, 0], [0, 0]])  # IRLbl (1, 3)
    >>> round(scumble(y), 4)  # the first image scores 1 - sqrt(1 * 3) / 2 = 0.134, the others 0
    0.0335
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"labels must be an (N, L) matrix, got shape {y.shape}")
    pos = y == 1
    if not pos.any():
        return float("nan")
    ir = irlbl(y)  # finite on every label that has a positive, so on every entry of ``pos``
    k = pos.sum(axis=1)
    has = k > 0
    ir_pos = np.where(pos, ir, 1.0)[has]
    geo = np.exp(np.log(ir_pos).sum(axis=1) / k[has])
    arith = np.where(pos[has], ir_pos, 0.0).sum(axis=1) / k[has]
    per_image = np.zeros(len(y))
    per_image[has] = 1.0 - geo / arith
    return float(per_image.mean())


def imbalance_summary(labels: np.ndarray) -> dict:
    """MeanIR, MaxIR, SCUMBLE, cardinality and density of a label matrix.

    Labels without any positive are left out of MeanIR / MaxIR (their IRLbl is infinite) and
    counted in ``labels_without_positives``.

    >>> y = np.array([[1, 0], [1, 1], [1, 0], [0, 0]], dtype=float)
    >>> s = imbalance_summary(y); round(s["mean_ir"], 3), round(s["max_ir"], 3)
    (2.0, 3.0)
    """
    y = np.asarray(labels, dtype=np.float64)
    pos = (y == 1)
    ir = irlbl(y)
    finite = np.isfinite(ir)
    mean_ir = float(ir[finite].mean()) if finite.any() else float("nan")
    max_ir = float(ir[finite].max()) if finite.any() else float("nan")
    card = float(pos.sum(axis=1).mean()) if len(y) else 0.0
    return {
        "irlbl": ir.tolist(),
        "mean_ir": mean_ir,
        "max_ir": max_ir,
        "scumble": scumble(y) if len(y) else float("nan"),
        "cardinality": card,
        "density": card / y.shape[1] if y.shape[1] else 0.0,
        "labels_without_positives": int((~finite).sum()),
    }
