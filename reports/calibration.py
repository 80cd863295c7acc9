"""Calibration of predicted probabilities: Brier score, expected calibration error, reliability curves.

Imbalance strategies (re-weighting, focal losses, logit adjustment, resampling) change how far a predicted
probability can be read as a probability. Definitions (inputs as in ``reports.metrics``: ``y`` (N, L) of
1 / 0 / NaN, NaN masked per label; ``p`` (N, L) probabilities in [0, 1]):

- **Brier score** of a label: the mean of ``(p - y) ** 2`` over its known entries
  (``sklearn.metrics.brier_score_loss``). Lower is better; it mixes calibration and discrimination.
- **ECE** (expected calibration error) of a label, with **adaptive (equal-mass) bins** (Nixon et al.
  2019): the label's known scores are cut into ``n_bins`` bins at their quantiles, exactly as
  ``sklearn.calibration.calibration_curve(strategy="quantile")`` cuts them, and
  ``ECE = sum over bins of (n_b / n) * |mean_b(p) - mean_b(y)|`` (Guo et al. 2017's L1 form). Equal-mass
  bins keep every bin populated when most scores of a rare label sit near 0, where equal-width bins
  would put almost every image in the first bin. Default 15 bins (:data:`N_BINS`), as Guo et al.
- **Macro** ECE / Brier: the mean over the labels with at least one known entry. Unlike AUC, calibration
  is defined for a label without positives in a fold (a model that predicts near 0 there is calibrated),
  so no label with known entries is left out.
- **Reliability curve** (the page's diagram): equal-width bins of [0, 1] (:data:`CURVE_EDGES`), with
  per bin the count, the sum of ``p`` and the sum of ``y``; sums, not means, so that the curves of
  several trials (folds, seeds) add up into one.

Under bootstrap weights (:class:`CalibrationScorer`) each replicate re-weights the images; the ECE bins
stay those of the unweighted data, so every replicate measures the same bins.

The binned ECE is biased upwards with few images per bin (a perfectly calibrated model scores above 0);
``benchmarks/stats_calibration.py`` measures how far, and the README quotes it.

>>> y = np.array([[1.0], [0.0], [1.0], [0.0]]); p = np.array([[0.8], [0.3], [0.6], [0.1]])
>>> round(float(brier(y, p)[0]), 4), round(float(ece(y, p, n_bins=2)[0]), 4)
(0.075, 0.25)
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["N_BINS", "CURVE_EDGES", "brier", "ece", "quantile_bins", "reliability", "CalibrationScorer"]

N_BINS = 15
CURVE_EDGES = np.linspace(0.0, 1.0, 11)


def _checked(y, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"y and p must both be (N, L); got y {y.shape} and p {p.shape}")
    known = ~np.isnan(y)
    bad = known & ~((p >= 0.0) & (p <= 1.0))
    if bad.any():
        raise ValueError(f"calibration needs probabilities in [0, 1]; found {np.unique(p[bad])[:3].tolist()} "
                         f"(scores that are not probabilities have no calibration)")
    return y, p, known


def quantile_bins(scores: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Each score's bin (0 .. n_bins - 1) under equal-mass binning, as ``calibration_curve(strategy='quantile')``.

    >>> quantile_bins(np.array([0.1, 0.2, 0.3, 0.9]), 2).tolist()
    [0, 0, 1, 1]
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    edges = np.percentile(scores, np.linspace(0, 1, n_bins + 1) * 100)  # calibration_curve's own edges
    return np.searchsorted(edges[1:-1], scores)


def brier(y, p) -> np.ndarray:
    """(L,) Brier score per label over its known entries; NaN for a label with none."""
    y, p, known = _checked(y, p)
    sq = np.where(known, (p - np.where(known, y, 0.0)) ** 2, 0.0)
    n = known.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sq.sum(0) / n, np.nan)


def ece(y, p, *, n_bins: int = N_BINS) -> np.ndarray:
    """(L,) adaptive-bin expected calibration error per label over its known entries; NaN for a label with none."""
    return CalibrationScorer(y, p, n_bins=n_bins).label_values(np.ones((1, np.asarray(y).shape[0])))["ece"][0]


def reliability(y, p, *, edges: np.ndarray = CURVE_EDGES) -> dict[str, np.ndarray]:
    """Per label and equal-width bin of [0, 1]: ``n`` (count), ``p`` (sum of scores), ``y`` (sum of labels),
    each (L, len(edges) - 1), over known entries; bins as ``calibration_curve(strategy='uniform')``'s (a
    score on an inner edge falls in the lower bin).

    >>> r = reliability(np.array([[1.0], [0.0]]), np.array([[0.95], [0.05]]), edges=np.array([0, 0.5, 1]))
    >>> r["n"].tolist(), r["y"].tolist()
    ([[1, 1]], [[0.0, 1.0]])
    """
    y, p, known = _checked(y, p)
    nb = len(edges) - 1
    idx = np.searchsorted(edges[1:-1], p)  # calibration_curve's rule: bin k is (edge k, edge k + 1]
    out = {"n": np.zeros((y.shape[1], nb), dtype=np.int64), "p": np.zeros((y.shape[1], nb)),
           "y": np.zeros((y.shape[1], nb))}
    for j in range(y.shape[1]):
        k = known[:, j]
        out["n"][j] = np.bincount(idx[k, j], minlength=nb)
        out["p"][j] = np.bincount(idx[k, j], weights=p[k, j], minlength=nb)
        out["y"][j] = np.bincount(idx[k, j], weights=y[k, j], minlength=nb)
    return out


class CalibrationScorer:
    """Per-label and macro ECE and Brier score of fixed predictions under any (B, N) image-weight matrix.

    Bins are fixed from the unweighted data; a weighting ``w`` gives a label's ECE as
    ``sum_b |sum_{i in b} w_i (p_i - y_i)| / sum_i w_i`` (the weighted form of the definition above) and
    its Brier score as ``sum_i w_i (p_i - y_i) ** 2 / sum_i w_i``, each over known entries. A label whose
    known entries all get weight 0 is NaN in that weighting, and macro values average the others.

    >>> y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]], float)
    >>> p = np.array([[.9, .2], [.1, .8], [.6, .4], [.3, .5]])
    >>> s = CalibrationScorer(y, p, n_bins=2)
    >>> {k: np.round(v, 4).tolist() for k, v in s.evaluate(np.ones((1, 4))).items()}
    {'macro_ece': [0.2625], 'macro_brier': [0.1421]}
    """

    metrics = ("macro_ece", "macro_brier")

    def __init__(self, y, p, *, n_bins: int = N_BINS):
        y, p, known = _checked(y, p)
        self.n, self.n_labels = y.shape
        self.n_bins = int(n_bins)
        diff = p - np.where(known, y, 0.0)
        rows, cols = np.nonzero(known)
        bins = np.zeros(y.shape, dtype=np.int64)
        for j in range(self.n_labels):
            k = known[:, j]
            if k.any():
                bins[k, j] = quantile_bins(p[k, j], self.n_bins)
        # (N, L * n_bins): p - y of each known entry in its label's bin column; (N, L): known, squared error
        self.signed = sparse.csc_matrix((diff[rows, cols], (rows, cols * self.n_bins + bins[rows, cols])),
                                        shape=(self.n, self.n_labels * self.n_bins))
        self.known = known.astype(np.float64)
        self.squared = np.where(known, diff ** 2, 0.0)

    def label_values(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """{'ece', 'brier'}: (B, L) per weighting and label; NaN where a label has no weight."""
        w = np.asarray(w, dtype=np.float64)
        total = w @ self.known
        binned = np.asarray(self.signed.T @ w.T).T.reshape(w.shape[0], self.n_labels, self.n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            e = np.where(total > 0, np.abs(binned).sum(-1) / total, np.nan)
            b = np.where(total > 0, (w @ self.squared) / total, np.nan)
        return {"ece": e, "brier": b}

    def evaluate(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """{'macro_ece', 'macro_brier'}: (B,) per weighting, the mean over labels with weight."""
        v = self.label_values(w)
        return {"macro_ece": _row_nanmean(v["ece"]), "macro_brier": _row_nanmean(v["brier"])}


def _row_nanmean(a: np.ndarray) -> np.ndarray:
    n = (~np.isnan(a)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(a, 1) / np.maximum(n, 1), np.nan)


def reliability_table(docs, label_names) -> "pd.DataFrame":
    """The reliability diagram of each backbone x strategy: its trials' ``reliability`` sums (``metrics.json``)
    added over folds and seeds. One row per (backbone, strategy, label, bin): ``lo``, ``hi``, ``n``, ``mean_p``,
    ``frac_pos`` (NaN in an empty bin). Trials without sums (older runs) are left out and counted in
    ``n_trials`` (the trials that contributed).

    >>> d = {"backbone": "b", "strategy": "s", "per_label": [{"label": "a"}],
    ...      "reliability": {"edges": [0, 0.5, 1], "n": [[2, 1]], "p": [[0.4, 0.9]], "y": [[0, 1]]}}
    >>> reliability_table([d, d], ["a"])[["n", "mean_p", "frac_pos", "n_trials"]].values.tolist()
    [[4.0, 0.2, 0.0, 2.0], [2.0, 0.9, 1.0, 2.0]]
    """
    import pandas as pd

    sums: dict = {}
    for d in docs:
        rel = d.get("reliability")
        if not rel:
            continue
        key = (d["backbone"], d["strategy"], tuple(rel["edges"]))
        acc = sums.setdefault(key, {"n": 0.0, "p": 0.0, "y": 0.0, "trials": 0})
        for k in ("n", "p", "y"):
            acc[k] = acc[k] + np.asarray(rel[k], dtype=np.float64)
        acc["trials"] += 1
    rows = []
    for (b, s, edges), acc in sums.items():
        for j, label in enumerate(label_names):
            for k in range(len(edges) - 1):
                n = acc["n"][j, k]
                rows.append({"backbone": b, "strategy": s, "label": label, "bin": k, "lo": edges[k],
                             "hi": edges[k + 1], "n": int(n), "mean_p": acc["p"][j, k] / n if n else np.nan,
                             "frac_pos": acc["y"][j, k] / n if n else np.nan, "n_trials": acc["trials"]})
    return pd.DataFrame(rows, columns=["backbone", "strategy", "label", "bin", "lo", "hi", "n", "mean_p",
                                       "frac_pos", "n_trials"])
