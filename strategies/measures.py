"""Multi-label imbalance measures (Charte et al. 2015), in NumPy: IRLbl, MeanIR, minority labels.

Labels are an (N, L) matrix of 1, 0 or NaN; only known positives count. A label with no positive
has an undefined IRLbl (``inf``) and is left out of MeanIR and of the minority/majority split.

>>> import numpy as np
>>> y = np.array([[1, 0], [1, 0], [1, 1], [1, np.nan]])
>>> irlbl(y).tolist(), mean_ir(y)
([1.0, 4.0], 2.5)
"""

from __future__ import annotations

import numpy as np


def positive_counts(y: np.ndarray) -> np.ndarray:
    """Known positives per label (NaN counts as not positive)."""
    return (np.asarray(y, dtype=np.float64) == 1).sum(axis=0).astype(np.float64)


def irlbl_from_counts(counts: np.ndarray) -> np.ndarray:
    """IRLbl(l) = max_j n_j / n_l; ``inf`` where n_l = 0."""
    counts = np.asarray(counts, dtype=np.float64)
    safe = np.where(counts > 0, counts, 1.0)
    return np.where(counts > 0, counts.max(initial=0.0) / safe, np.inf)


def irlbl(y: np.ndarray) -> np.ndarray:
    """Per-label imbalance ratio of a label matrix."""
    return irlbl_from_counts(positive_counts(y))


def mean_ir_from_counts(counts: np.ndarray) -> float:
    """MeanIR over the labels that have at least one positive (NaN if none has)."""
    ir = irlbl_from_counts(counts)
    finite = np.isfinite(ir)
    return float(ir[finite].mean()) if finite.any() else float("nan")


def mean_ir(y: np.ndarray) -> float:
    """Mean of IRLbl over the labels present in ``y``."""
    return mean_ir_from_counts(positive_counts(y))


def minority_labels(counts: np.ndarray, mean: float | None = None) -> np.ndarray:
    """Boolean mask of minority labels, IRLbl > MeanIR (present labels only)."""
    ir = irlbl_from_counts(counts)
    mean = mean_ir_from_counts(counts) if mean is None else mean
    return np.isfinite(ir) & (ir > mean)
