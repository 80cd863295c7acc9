"""Binary ranking curves and their areas in NumPy, with scikit-learn's definitions and arithmetic.

:func:`roc_auc`, :func:`average_precision`, :func:`roc_curve` and :func:`precision_recall_curve` return
exactly (to the bit) what ``sklearn.metrics.roc_auc_score``, ``average_precision_score``, ``roc_curve`` and
``precision_recall_curve`` return for 0/1 labels and finite scores without sample weights: the same
cumulative counts at the same distinct thresholds, the same divisions and the same sums, in the same order
(``tests/test_curves.py`` checks it against scikit-learn on ties, constant scores and imbalance down to one
positive). They exist because importing ``sklearn.metrics`` costs about 1.5 CPU-seconds (it loads
``scipy.stats``), paid again by every process that scores a trial, each Ray trial worker among them; a trial
needs only these four. Weighted variants for the bootstrap are in ``reports.stats``.

Inputs are 1-D arrays of equal length: ``y`` holding 0 / 1 (any numeric or boolean dtype), ``p`` finite
scores (only their order matters). Validation (NaN labels masked, both classes present) is the caller's:
``reports.metrics`` and ``strategies.thresholds`` do it.

>>> y, p = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
>>> roc_auc(y, p), average_precision(y, p)
(0.75, 0.8333333333333333)
>>> precision_recall_curve(y, p)[2].tolist()
[0.1, 0.35, 0.4, 0.8]
"""

from __future__ import annotations

import numpy as np

__all__ = ["counts_at_thresholds", "roc_curve", "precision_recall_curve", "roc_auc", "average_precision"]


def counts_at_thresholds(y, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fps, tps, thresholds)``: false and true positives among the scores ``>= t`` for each distinct score
    ``t``, in descending order of ``t`` (counts as float64, as scikit-learn keeps them).

    >>> [a.tolist() for a in counts_at_thresholds([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1])]
    [[0.0, 1.0, 2.0], [1.0, 2.0, 2.0], [0.9, 0.5, 0.1]]
    """
    y, p = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(p).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"y and p must have the same length; got {y.size} and {p.size}")
    order = np.argsort(p, kind="stable")[::-1]  # descending; the order within a tie never shows in the counts
    p, y = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(p)), y.size - 1]  # the last index of each run of equal scores
    tps = np.cumsum(y)[last]
    fps = 1 + last.astype(np.float64) - tps
    return fps, tps, p[last]


def roc_curve(y, p, *, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` starting at (0, 0) with threshold ``inf``; ``drop_intermediate`` leaves out
    the points on a straight segment (their removal changes no area). NaN rates where a class is absent."""
    fps, tps, thr = counts_at_thresholds(y, p)
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thr = np.r_[np.inf, thr.astype(np.float64)]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thr


def precision_recall_curve(y, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` over every distinct score in ascending order, ending with the point
    (recall 0, precision 1) that has no threshold. Recall is 1 throughout when ``y`` has no positive."""
    return _precision_recall(*counts_at_thresholds(y, p))


def _precision_recall(fps: np.ndarray, tps: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ps = tps + fps
    precision = np.divide(tps, ps, out=np.zeros_like(tps), where=ps != 0)
    recall = tps / tps[-1] if tps[-1] != 0 else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def roc_auc(y, p) -> float:
    """Area under the ROC curve (trapezoids); NaN unless ``y`` holds both classes."""
    fpr, tpr, _ = roc_curve(y, p)
    if np.isnan(fpr[-1]) or np.isnan(tpr[-1]):
        return float("nan")
    return float(np.trapezoid(tpr, fpr))


def average_precision(y, p) -> float:
    """Average precision: the sum over thresholds of precision times the recall gained there (no
    interpolation); NaN when ``y`` has no positive."""
    fps, tps, thr = counts_at_thresholds(y, p)
    if not tps[-1] > 0:
        return float("nan")
    precision, recall, _ = _precision_recall(fps, tps, thr)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))
