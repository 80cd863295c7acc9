"""Per-label and summary classification metrics for multi-label predictions with unknown labels.

Inputs everywhere:

- ``y`` (N, L) float of 1 / 0 / NaN. NaN means *unknown* (e.g. a CheXpert uncertain label under the
  "ignore" policy); it is masked per label and never counted as a negative.
- ``p`` (N, L) probabilities (or any scores: only their order matters for AUC / AP).
- ``thresholds`` (L,) one decision threshold per label, tuned on a validation part elsewhere
  (``strategies.thresholds``). A sample is predicted positive when ``p >= threshold``, the rule of
  ``strategies.base.ThresholdRule.predict``.

Conventions (shared by :func:`label_metrics`, :func:`summary_metrics` and ``reports.stats``):

- A label is *defined* in some data when its known entries hold both classes. AUC and AP exist only
  for defined labels; every **macro** average (AUC, AP, F1, sensitivity, specificity) is the mean over
  the defined labels only, and ``n_labels_macro`` says how many that was.
- F1 uses ``zero_division=0.0`` explicitly: a label with no positive and no predicted positive has
  F1 = 0. Because that is a property of the fold, not of the model, such labels are left out of
  macro F1 (they are not defined). On complete data where every label is defined, macro F1 equals
  ``sklearn.metrics.f1_score(y, d, average="macro", zero_division=0.0)``; in general it equals that
  call with ``labels=<defined labels>``, each label scored on its own known entries.
- **Micro** averages pool every known (image, label) entry, including those of undefined labels.
- Sensitivity / specificity use ``zero_division=nan``: undefined when a label has no positive / no
  negative (they are NaN only for labels that are not defined, so macro values are unaffected).
- **Calibration** (``ece``, ``brier``; ``reports.calibration``) exists only when ``p`` holds probabilities
  (every known score in [0, 1]); for other scores it is NaN. It is defined for every label with a known
  entry, positives or not, so macro ECE / Brier average those labels, not only the defined ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from reports import calibration
from reports.curves import average_precision, roc_auc

__all__ = ["label_metrics", "summary_metrics", "group_labels", "group_metrics", "check_inputs", "is_probability"]

REASON_ALL_UNKNOWN = "all unknown"
REASON_NO_POSITIVES = "no positives in this fold"
REASON_NO_NEGATIVES = "no negatives in this fold"


def check_inputs(
    y, p, label_names: Sequence[str] | None = None, thresholds=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and convert ``y``, ``p`` and ``thresholds``; raise ``ValueError`` naming the bad value.

    >>> y, p, t = check_inputs([[1, np.nan], [0, 1]], [[0.9, 0.2], [0.1, 0.7]], ["a", "b"])
    >>> y.shape, t is None
    ((2, 2), True)
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"y and p must both be (N, L); got y {y.shape} and p {p.shape}")
    known = ~np.isnan(y)
    bad = known & (y != 0) & (y != 1)
    if bad.any():
        raise ValueError(f"y must hold 1, 0 or NaN; found {np.unique(y[bad])[:5].tolist()}")
    if not np.isfinite(p[known]).all():
        raise ValueError("p must be finite wherever y is known (NaN / inf scores found)")
    if label_names is not None and len(label_names) != y.shape[1]:
        raise ValueError(f"{len(label_names)} label names for {y.shape[1]} label columns")
    if thresholds is not None:
        thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if thresholds.shape != (y.shape[1],) or not np.isfinite(thresholds).all():
            raise ValueError(f"thresholds must be {y.shape[1]} finite values; got {thresholds.tolist()}")
    return y, p, thresholds


def _reason(n: int, pos: int) -> str:
    if n == 0:
        return REASON_ALL_UNKNOWN
    if pos == 0:
        return REASON_NO_POSITIVES
    if pos == n:
        return REASON_NO_NEGATIVES
    return ""


def is_probability(y: np.ndarray, p: np.ndarray) -> bool:
    """Whether every known score is in [0, 1] (calibration is defined only for probabilities)."""
    known = ~np.isnan(y)
    return bool(np.all((p[known] >= 0.0) & (p[known] <= 1.0)))


def label_metrics(
    y, p, *, thresholds=None, label_names: Sequence[str], fixed: float = 0.5
) -> pd.DataFrame:
    """One row per label: counts, AUC, AP, F1 (fixed and tuned threshold), sensitivity, specificity, calibration.

    Columns: ``label, n`` (known entries), ``positives, auc, ap, f1_fixed`` (at ``fixed``), ``f1`` (at
    the tuned threshold; NaN when ``thresholds`` is None), ``sensitivity, specificity`` (at the tuned
    threshold, else at ``fixed``), ``threshold`` (the one used for them), ``defined`` (both classes among
    the known entries) and ``excluded_reason`` ('' when defined). AUC / AP are NaN for labels that are
    not defined. F1 uses ``zero_division=0.0``; sensitivity / specificity ``zero_division=nan``. ``ece``
    (15 equal-mass bins) and ``brier`` over the known entries (``reports.calibration``; NaN for a label with
    none, or when ``p`` are not probabilities).

    >>> y = np.array([[1, 0], [0, 0], [1, np.nan], [0, 0]])
    >>> p = np.array([[0.9, 0.2], [0.3, 0.1], [0.6, 0.5], [0.7, 0.4]])
    >>> df = label_metrics(y, p, label_names=["Effusion", "Hernia"])
    >>> df[["label", "n", "positives", "auc", "f1_fixed", "excluded_reason"]].to_dict("records")[1]
    {'label': 'Hernia', 'n': 3, 'positives': 0, 'auc': nan, 'f1_fixed': 0.0, 'excluded_reason': 'no positives in this fold'}
    >>> float(df.auc[0]), float(df.f1_fixed[0])
    (0.75, 0.8)
    """
    y, p, thresholds = check_inputs(y, p, label_names, thresholds)
    cal = (calibration.ece(y, p), calibration.brier(y, p)) if is_probability(y, p) else None
    rows = []
    for j, name in enumerate(label_names):
        known = ~np.isnan(y[:, j])
        yj, pj = y[known, j].astype(np.int64), p[known, j]
        n, pos = int(known.sum()), int(yj.sum())
        reason = _reason(n, pos)
        defined = reason == ""
        thr = float(thresholds[j]) if thresholds is not None else float(fixed)
        row = dict(label=str(name), n=n, positives=pos, auc=np.nan, ap=np.nan, f1_fixed=np.nan,
                   f1=np.nan, sensitivity=np.nan, specificity=np.nan, threshold=thr,
                   defined=defined, excluded_reason=reason,
                   ece=float(cal[0][j]) if cal else np.nan, brier=float(cal[1][j]) if cal else np.nan)
        if defined:
            row["auc"] = roc_auc(yj, pj)
            row["ap"] = average_precision(yj, pj)
        if n > 0:
            # One confusion matrix per threshold, the ratios from its counts with the documented zero_division:
            # sklearn's f1_score / recall_score (tests/test_metrics.py), without their validation cost.
            tn, fp, fn, tp = counts = _counts(yj, pj >= fixed)
            row["f1_fixed"] = _f1_of(counts)
            if thresholds is not None:  # else thr is fixed: the counts above
                tn, fp, fn, tp = counts = _counts(yj, pj >= thr)
                row["f1"] = _f1_of(counts)
            row["sensitivity"] = _ratio(tp, tp + fn, np.nan)
            row["specificity"] = _ratio(tn, tn + fp, np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["label", "n", "positives", "auc", "ap", "f1_fixed", "f1",
                                       "sensitivity", "specificity", "threshold", "defined",
                                       "excluded_reason", "ece", "brier"])


def _counts(y: np.ndarray, decision: np.ndarray) -> tuple[int, int, int, int]:
    """(tn, fp, fn, tp) of 0/1 labels against boolean decisions (``sklearn.metrics.confusion_matrix``'s order)."""
    pos, decision = y.astype(bool), decision.astype(bool)
    tp, fp = int(np.count_nonzero(pos & decision)), int(np.count_nonzero(~pos & decision))
    fn = int(np.count_nonzero(pos)) - tp
    return y.size - tp - fp - fn, fp, fn, tp


def _f1_of(counts: tuple[int, int, int, int]) -> float:
    """Binary F1 of ``(tn, fp, fn, tp)`` with ``zero_division=0.0`` (``sklearn.metrics.f1_score``):
    2 tp / (2 tp + fp + fn)."""
    _, fp, fn, tp = counts
    return _ratio(2 * tp, 2 * tp + fp + fn, 0.0)


def _ratio(num: int, den: int, zero_division: float) -> float:
    return float(num / den) if den else float(zero_division)


def _mean_known(df: pd.DataFrame, column: str) -> float:
    values = df.loc[df["n"] > 0, column].to_numpy(dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _mean_defined(df: pd.DataFrame, column: str) -> float:
    values = df.loc[df["defined"], column].to_numpy(dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _pooled(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    known = ~np.isnan(y)
    cols = np.broadcast_to(np.arange(y.shape[1]), y.shape)[known]
    return y[known].astype(np.int64), p[known], cols


def summary_metrics(
    y, p, *, thresholds=None, label_names: Sequence[str], fixed: float = 0.5
) -> dict:
    """Macro and micro AUC, AP (mAP), F1, sensitivity and specificity in one dict.

    Macro averages are over the labels defined in this data (both classes known), ``n_labels_macro``
    of them; ``excluded`` maps each other label to its reason. Micro averages pool every known entry
    (for AUC / AP that is ``roc_auc_score(y[known], p[known])``, sklearn's ``average="micro"`` on
    complete data). F1 uses ``zero_division=0.0`` (a label with no positive and no predicted positive
    scores 0; such labels are not defined, so they enter micro F1 but not macro F1). ``macro_f1`` /
    ``micro_f1`` use the tuned ``thresholds`` (NaN when None); ``*_f1_fixed`` use ``fixed``;
    sensitivity / specificity use the tuned thresholds, else ``fixed``. ``macro_ap`` is the mAP of
    the CXR-LT challenges. ``macro_ece`` / ``macro_brier`` average the labels with known entries (NaN when
    ``p`` are not probabilities; see the module's conventions).

    >>> y = np.array([[1, 0], [0, 1], [1, np.nan], [0, 0]])
    >>> p = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.5], [0.7, 0.4]])
    >>> s = summary_metrics(y, p, thresholds=[0.65, 0.5], label_names=["a", "b"])
    >>> s["macro_auc"], s["n_labels_macro"], s["excluded"]
    (0.875, 2, {})
    """
    y, p, thresholds = check_inputs(y, p, label_names, thresholds)
    df = label_metrics(y, p, thresholds=thresholds, label_names=label_names, fixed=fixed)
    yk, pk, cols = _pooled(y, p)
    both = yk.size > 0 and 0 < yk.sum() < yk.size
    out: dict = {
        "macro_auc": _mean_defined(df, "auc"),
        "micro_auc": roc_auc(yk, pk) if both else float("nan"),
        "macro_ap": _mean_defined(df, "ap"),
        "micro_ap": average_precision(yk, pk) if both else float("nan"),
        "macro_f1": _mean_defined(df, "f1") if thresholds is not None else float("nan"),
        "micro_f1": float("nan"),
        "macro_f1_fixed": _mean_defined(df, "f1_fixed"),
        "micro_f1_fixed": float("nan"),
        "macro_sensitivity": _mean_defined(df, "sensitivity"),
        "macro_specificity": _mean_defined(df, "specificity"),
        "macro_ece": _mean_known(df, "ece"),
        "macro_brier": _mean_known(df, "brier"),
        "n_labels_macro": int(df["defined"].sum()),
        "excluded": {r.label: r.excluded_reason for r in df.itertuples() if not r.defined},
    }
    if yk.size:
        out["micro_f1_fixed"] = _f1_of(_counts(yk, pk >= fixed))
        if thresholds is not None:
            out["micro_f1"] = _f1_of(_counts(yk, pk >= thresholds[cols]))
    return out


def group_labels(
    train_prevalence: Mapping[str, float] | pd.Series | np.ndarray | Sequence[float],
    boundaries: tuple[float, float] = (0.05, 0.01),
    *,
    label_names: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Split labels into 'head' (prevalence >= hi), 'medium' (lo <= prevalence < hi) and 'tail' (< lo).

    ``train_prevalence`` is the positive rate over the known TRAINING entries, as a mapping / Series
    (label -> rate) or an array with ``label_names`` (names default to the column numbers).

    >>> group_labels({"Effusion": 0.12, "Mass": 0.03, "Hernia": 0.002})
    {'head': ['Effusion'], 'medium': ['Mass'], 'tail': ['Hernia']}
    """
    hi, lo = (float(b) for b in boundaries)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"boundaries must be (hi, lo) with 0 <= lo <= hi <= 1; got {boundaries}")
    if isinstance(train_prevalence, Mapping):
        items = [(str(k), float(v)) for k, v in train_prevalence.items()]
    elif isinstance(train_prevalence, pd.Series):
        items = [(str(k), float(v)) for k, v in train_prevalence.items()]
    else:
        values = np.asarray(train_prevalence, dtype=np.float64).reshape(-1)
        names = list(label_names) if label_names is not None else [str(i) for i in range(values.size)]
        if len(names) != values.size:
            raise ValueError(f"{len(names)} label names for {values.size} prevalences")
        items = list(zip(map(str, names), values.tolist()))
    bad = [k for k, v in items if not 0.0 <= v <= 1.0]  # also catches NaN
    if bad:
        raise ValueError(f"prevalence must be in [0, 1] for every label; bad for {bad}")
    groups: dict[str, list[str]] = {"head": [], "medium": [], "tail": []}
    for name, v in items:
        groups["head" if v >= hi else "tail" if v < lo else "medium"].append(name)
    return groups


def group_metrics(per_label_df: pd.DataFrame, groups: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """Per group: mean AUC, AP, F1 (tuned) and F1 at the fixed threshold over its DEFINED labels.

    ``n_labels`` is how many defined labels the means used, ``n_labels_total`` the group's size.
    Means over no label are NaN.

    >>> df = pd.DataFrame({"label": ["a", "b"], "auc": [0.8, np.nan], "ap": [0.4, np.nan],
    ...                    "f1": [0.5, 0.0], "f1_fixed": [0.3, 0.0], "defined": [True, False]})
    >>> group_metrics(df, {"head": ["a"], "tail": ["b"]})["head"]
    {'auc': 0.8, 'ap': 0.4, 'f1': 0.5, 'f1_fixed': 0.3, 'n_labels': 1, 'n_labels_total': 1}
    """
    by_label = per_label_df.set_index("label")
    out: dict[str, dict] = {}
    for group, labels in groups.items():
        missing = [lab for lab in labels if lab not in by_label.index]
        if missing:
            raise KeyError(f"group {group!r}: labels {missing} are not in the per-label table")
        sub = by_label.loc[list(labels)]
        sub = sub[sub["defined"].astype(bool)]
        stats: dict = {}
        for col in ("auc", "ap", "f1", "f1_fixed"):
            v = sub[col].to_numpy(dtype=np.float64) if col in sub else np.array([])
            v = v[~np.isnan(v)]
            stats[col] = float(v.mean()) if v.size else float("nan")
        stats["n_labels"] = int(len(sub))
        stats["n_labels_total"] = int(len(labels))
        out[group] = stats
    return out
