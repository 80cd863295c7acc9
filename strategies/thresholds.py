"""Decision rules: one threshold per label, fitted on validation predictions only."""

from __future__ import annotations

import numpy as np

from reports.curves import precision_recall_curve, roc_curve
from strategies.base import ThresholdRule


class Fixed(ThresholdRule):
    """The same threshold (default 0.5) for every label."""


    def __init__(self, value: float = 0.5):
        self.value = value

    def check_params(self):
        self._check_range("value", 0.0, 1.0)

    def fit_label(self, y, p):
        return float(self.value)


class MaxF1(ThresholdRule):
    """Per label, the threshold that maximises F1 on the validation part (0.5 if it has no positive)."""


    def __init__(self, default: float = 0.5):
        self.default = default

    def fit_label(self, y, p):
        if len(y) == 0 or y.sum() == 0:
            return float(self.default)
        precision, recall, thr = precision_recall_curve(y, p)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        best = int(np.argmax(f1[:-1])) if len(thr) else 0
        return float(thr[best]) if len(thr) else float(self.default)


def _has_both_classes(y: np.ndarray) -> bool:
    return len(y) > 0 and 0 < y.sum() < len(y)


class Youden(ThresholdRule):
    """Per label, the threshold maximising Youden's J = TPR - FPR on the validation ROC.

    Uses the validation ROC with all its points (``sklearn.metrics.roc_curve``'s, from ``reports.curves``);
    ``default`` (0.5) when the validation part lacks positives or negatives, or when no threshold beats chance
    (max J <= 0).
    """


    def __init__(self, default: float = 0.5):
        self.default = default

    def fit_label(self, y, p):
        if not _has_both_classes(y):
            return float(self.default)
        fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
        j = tpr - fpr
        best = int(np.argmax(j))
        if j[best] <= 0 or not np.isfinite(thr[best]):
            return float(self.default)
        return float(thr[best])


class PrecisionTarget(ThresholdRule):
    """Per label, the smallest threshold whose validation precision reaches ``target``.

    The threshold is the smallest validation score t with precision(p >= t) >= ``target`` (on the curve of
    ``sklearn.metrics.precision_recall_curve``, from ``reports.curves``), which keeps the most recall. When no
    threshold reaches the target, ``fallback="f1"`` uses the max-F1 threshold and ``fallback="default"`` uses
    ``default`` (0.5); a label without validation positives always gets ``default``.
    """


    def __init__(self, target: float = 0.8, fallback: str = "f1", default: float = 0.5):
        self.target = target
        self.fallback = fallback
        self.default = default

    def check_params(self):
        self._check_range("target", 0.0, 1.0)
        self._check_choice("fallback", ("f1", "default"))

    def fit_label(self, y, p):
        if len(y) == 0 or y.sum() == 0:
            return float(self.default)
        precision, _, thr = precision_recall_curve(y, p)
        reached = np.flatnonzero(precision[:-1] >= self.target)  # thresholds ascend
        if len(reached):
            return float(thr[reached[0]])
        if self.fallback == "f1":
            return MaxF1(default=self.default).fit_label(y, p)
        return float(self.default)
