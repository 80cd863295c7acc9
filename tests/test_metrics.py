"""Tests for reports.metrics: hand-computed cases and cross-checks against scikit-learn on masked data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from reports.metrics import group_labels, group_metrics, label_metrics, summary_metrics

# ---------------------------------------------------------------------------- a 5 x 2 case by hand
# Label A: y = 1 0 1 0 0, p = .9 .6 .4 .3 .6
#   AUC: positive .9 beats the 3 negatives (3), positive .4 beats only .3 (1) -> 4 / 6.
#   F1 at 0.5: predicted .9 .6 .6 -> TP 1, FP 2, FN 1 -> 2 / (2 + 2 + 1) = 0.4.
#   F1 at the tuned 0.35: predicted .9 .6 .4 .6 -> TP 2, FP 2, FN 0 -> 4 / 6; sens 1, spec 1 / 3.
#   AP: .9 (P=1, R=.5); tie group .6 .6 adds FP only; .4 (TP 2, FP 2: P=.5, R=1) -> .5 + .25 = .75.
# Label B: y = 0 1 ? 0 1, p = .2 .7 .9 .7 .4 (row 3 unknown: n = 4)
#   AUC: .7 beats .2 (1), ties .7 (1/2); .4 beats .2 (1), loses to .7 -> 2.5 / 4 = .625.
#   F1 at 0.5: predicted .7 (TP) .7 (FP), .4 missed (FN) -> 2 / 4 = .5.
#   F1 at the tuned .75: nothing predicted -> TP 0 -> 0 (zero_division=0); sens 0, spec 1.
#   AP: tie group .7 (TP 1, FP 1: P=.5, R=.5); .4 (TP 2, FP 1: P=2/3, R=1) -> .25 + 1/3.
# Pooled (micro) entries: positives .9 .4 .7 .4, negatives .6 .3 .6 .2 .7:
#   AUC (5 + 4.5 + 2 + 2) / 20 = .675; F1 at .5: TP 2, FP 3, FN 2 -> 4/9; tuned: TP 2, FP 2, FN 2 -> .5.
NAN = np.nan
Y5 = np.array([[1, 0], [0, 1], [1, NAN], [0, 0], [0, 1]], dtype=float)
P5 = np.array([[0.9, 0.2], [0.6, 0.7], [0.4, 0.9], [0.3, 0.7], [0.6, 0.4]])
T5 = np.array([0.35, 0.75])


def test_hand_computed_label_metrics():
    df = label_metrics(Y5, P5, thresholds=T5, label_names=["A", "B"])
    a, b = df.iloc[0], df.iloc[1]
    assert (a.n, a.positives, b.n, b.positives) == (5, 2, 4, 2)
    assert a.auc == pytest.approx(4 / 6) and b.auc == pytest.approx(0.625)
    assert a.ap == pytest.approx(0.75) and b.ap == pytest.approx(0.25 + 1 / 3)
    assert a.f1_fixed == pytest.approx(0.4) and b.f1_fixed == pytest.approx(0.5)
    assert a.f1 == pytest.approx(4 / 6) and b.f1 == 0.0
    assert (a.sensitivity, a.specificity) == pytest.approx((1.0, 1 / 3))
    assert (b.sensitivity, b.specificity) == pytest.approx((0.0, 1.0))
    assert df.threshold.tolist() == [0.35, 0.75]
    assert df.defined.all() and (df.excluded_reason == "").all()


def test_hand_computed_summary():
    s = summary_metrics(Y5, P5, thresholds=T5, label_names=["A", "B"])
    assert s["macro_auc"] == pytest.approx((4 / 6 + 0.625) / 2)
    assert s["micro_auc"] == pytest.approx(0.675)
    assert s["macro_ap"] == pytest.approx((0.75 + 0.25 + 1 / 3) / 2)
    assert s["macro_f1_fixed"] == pytest.approx(0.45)
    assert s["micro_f1_fixed"] == pytest.approx(4 / 9)
    assert s["macro_f1"] == pytest.approx(1 / 3)
    assert s["micro_f1"] == pytest.approx(0.5)
    assert s["macro_sensitivity"] == pytest.approx(0.5)
    assert s["macro_specificity"] == pytest.approx(2 / 3)
    assert s["n_labels_macro"] == 2 and s["excluded"] == {}


def test_without_thresholds_tuned_f1_is_nan_and_rates_use_fixed():
    df = label_metrics(Y5, P5, label_names=["A", "B"])
    assert df.f1.isna().all() and df.threshold.tolist() == [0.5, 0.5]
    # label A at 0.5: TP 1, FN 1 -> sensitivity .5; negatives .6 .3 .6 -> specificity 1/3
    assert (df.sensitivity[0], df.specificity[0]) == pytest.approx((0.5, 1 / 3))
    s = summary_metrics(Y5, P5, label_names=["A", "B"])
    assert np.isnan(s["macro_f1"]) and np.isnan(s["micro_f1"])
    assert s["macro_f1_fixed"] == pytest.approx(0.45)


# ---------------------------------------------------------------------------- against scikit-learn
def _random(n=300, n_labels=6, seed=0, nan_rate=0.0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < np.linspace(0.05, 0.5, n_labels)).astype(float)
    p = np.clip(0.25 * y + 0.75 * rng.random((n, n_labels)), 0, 1).round(2)  # rounding makes ties
    if nan_rate:
        y[rng.random((n, n_labels)) < nan_rate] = np.nan
    return y, p, rng


def test_complete_data_equals_sklearn_macro_and_micro():
    y, p, rng = _random()
    names = [f"l{i}" for i in range(y.shape[1])]
    t = rng.uniform(0.3, 0.7, y.shape[1])
    d = (p >= t).astype(int)
    s = summary_metrics(y, p, thresholds=t, label_names=names)
    assert s["macro_auc"] == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert s["micro_auc"] == pytest.approx(roc_auc_score(y, p, average="micro"))
    assert s["macro_ap"] == pytest.approx(average_precision_score(y, p, average="macro"))
    assert s["micro_ap"] == pytest.approx(average_precision_score(y, p, average="micro"))
    assert s["macro_f1"] == pytest.approx(f1_score(y, d, average="macro", zero_division=0.0))
    assert s["micro_f1"] == pytest.approx(f1_score(y, d, average="micro", zero_division=0.0))
    d5 = (p >= 0.5).astype(int)
    assert s["macro_f1_fixed"] == pytest.approx(f1_score(y, d5, average="macro", zero_division=0.0))
    assert s["micro_f1_fixed"] == pytest.approx(f1_score(y, d5, average="micro", zero_division=0.0))
    assert s["n_labels_macro"] == y.shape[1]


def test_masked_data_equals_sklearn_per_label_and_pooled():
    y, p, rng = _random(n=400, seed=1, nan_rate=0.2)
    y[:, 0] = np.where(np.isnan(y[:, 0]), np.nan, 0.0)  # one class only among the known entries
    y[:, 1] = np.nan  # all unknown
    y[:, 2] = np.where(np.isnan(y[:, 2]), np.nan, 1.0)  # no negatives
    names = [f"l{i}" for i in range(y.shape[1])]
    t = rng.uniform(0.3, 0.7, y.shape[1])
    df = label_metrics(y, p, thresholds=t, label_names=names)
    s = summary_metrics(y, p, thresholds=t, label_names=names)
    aucs, aps, f1s = [], [], []
    for j in range(y.shape[1]):
        k = ~np.isnan(y[:, j])
        assert df.n[j] == k.sum() and df.positives[j] == np.nansum(y[:, j])
        if j in (0, 1, 2):
            assert not df.defined[j] and np.isnan(df.auc[j]) and np.isnan(df.ap[j])
            continue
        aucs.append(roc_auc_score(y[k, j], p[k, j]))
        aps.append(average_precision_score(y[k, j], p[k, j]))
        f1s.append(f1_score(y[k, j], p[k, j] >= t[j], zero_division=0.0))
        assert df.auc[j] == pytest.approx(aucs[-1]) and df.ap[j] == pytest.approx(aps[-1])
        assert df.f1[j] == pytest.approx(f1s[-1])
    assert s["excluded"] == {"l0": "no positives in this fold", "l1": "all unknown",
                             "l2": "no negatives in this fold"}
    assert s["n_labels_macro"] == y.shape[1] - 3
    assert s["macro_auc"] == pytest.approx(np.mean(aucs))
    assert s["macro_ap"] == pytest.approx(np.mean(aps))
    assert s["macro_f1"] == pytest.approx(np.mean(f1s))
    known = ~np.isnan(y)
    tt = np.broadcast_to(t, y.shape)
    assert s["micro_auc"] == pytest.approx(roc_auc_score(y[known], p[known]))
    assert s["micro_ap"] == pytest.approx(average_precision_score(y[known], p[known]))
    assert s["micro_f1"] == pytest.approx(f1_score(y[known], p[known] >= tt[known], zero_division=0.0))
    # the F1 of the one-class label is 0 by zero_division=0.0, and it stays out of macro F1
    assert df.f1_fixed[0] == 0.0 and np.isnan(df.f1_fixed[1])


def test_macro_f1_is_over_defined_labels_as_sklearn_with_labels():
    y, p, _ = _random(seed=2)
    y[:, 3] = 0.0  # complete data, one label without positives
    names = [f"l{i}" for i in range(y.shape[1])]
    s = summary_metrics(y, p, label_names=names)
    d = (p >= 0.5).astype(int)
    defined = [0, 1, 2, 4, 5]
    assert s["macro_f1_fixed"] == pytest.approx(
        f1_score(y, d, average="macro", labels=defined, zero_division=0.0))
    # sklearn's plain macro counts the undefined label as F1 = 0; ours leaves it out (documented)
    assert f1_score(y, d, average="macro", zero_division=0.0) == pytest.approx(
        s["macro_f1_fixed"] * 5 / 6)
    # micro F1 pools every known entry, the undefined label's false positives included
    assert s["micro_f1_fixed"] == pytest.approx(f1_score(y, d, average="micro", zero_division=0.0))


def test_unknown_is_masked_not_counted_as_negative():
    y, p, rng = _random(seed=3, nan_rate=0.3)
    names = [f"l{i}" for i in range(y.shape[1])]
    base = summary_metrics(y, p, label_names=names)
    p2 = np.where(np.isnan(y), rng.random(y.shape), p)  # scores of unknown entries do not matter
    again = summary_metrics(y, p2, label_names=names)
    for k in ("macro_auc", "micro_auc", "macro_ap", "micro_f1_fixed", "macro_f1_fixed"):
        assert again[k] == base[k]
    as_zero = summary_metrics(np.nan_to_num(y), p, label_names=names)
    assert as_zero["micro_auc"] != base["micro_auc"]


def test_no_defined_label_gives_nan_macros():
    y = np.array([[0.0, NAN], [0.0, NAN]])
    s = summary_metrics(y, np.array([[0.2, 0.3], [0.7, 0.1]]), label_names=["a", "b"])
    assert np.isnan(s["macro_auc"]) and np.isnan(s["micro_auc"]) and s["n_labels_macro"] == 0
    assert s["excluded"] == {"a": "no positives in this fold", "b": "all unknown"}
    assert s["micro_f1_fixed"] == 0.0  # one false positive, no true positive


@pytest.mark.parametrize("y, p, t, match", [
    (np.array([[2.0]]), np.array([[0.5]]), None, "1, 0 or NaN"),
    (np.array([[1.0]]), np.array([[np.nan]]), None, "finite"),
    (np.array([[1.0, 0.0]]), np.array([[0.5]]), None, r"\(N, L\)"),
    (np.array([[1.0]]), np.array([[0.5]]), [0.5, 0.5], "thresholds"),
])
def test_bad_inputs_raise(y, p, t, match):
    with pytest.raises(ValueError, match=match):
        label_metrics(y, p, thresholds=t, label_names=["a"] * y.shape[1])


# ---------------------------------------------------------------------------- head / medium / tail
def test_group_labels_boundaries():
    prev = {"Infiltration": 0.18, "Effusion": 0.05, "Mass": 0.03, "Pneumonia": 0.01, "Hernia": 0.002}
    assert group_labels(prev) == {"head": ["Infiltration", "Effusion"], "medium": ["Mass", "Pneumonia"],
                                  "tail": ["Hernia"]}
    assert group_labels(pd.Series(prev), (0.1, 0.03))["medium"] == ["Effusion", "Mass"]
    arr = group_labels(np.array([0.2, 0.001]), label_names=["a", "b"])
    assert arr == {"head": ["a"], "medium": [], "tail": ["b"]}
    assert group_labels([0.2, 0.001])["tail"] == ["1"]
    with pytest.raises(ValueError, match="boundaries"):
        group_labels(prev, (0.01, 0.05))
    with pytest.raises(ValueError, match="Hernia"):
        group_labels({"Hernia": np.nan})


def test_group_metrics_means_over_defined_labels():
    y, p, rng = _random(seed=4)
    y[:, 5] = 0.0
    names = [f"l{i}" for i in range(6)]
    df = label_metrics(y, p, thresholds=np.full(6, 0.4), label_names=names)
    g = group_metrics(df, {"head": ["l0", "l1", "l2"], "tail": ["l3", "l4", "l5"]})
    assert g["head"]["auc"] == pytest.approx(df.auc[:3].mean())
    assert g["tail"]["ap"] == pytest.approx(df.ap[3:5].mean())  # l5 not defined
    assert g["tail"]["f1"] == pytest.approx(df.f1[3:5].mean())
    assert (g["tail"]["n_labels"], g["tail"]["n_labels_total"]) == (2, 3)
    empty = group_metrics(df, {"none": ["l5"]})["none"]
    assert np.isnan(empty["auc"]) and empty["n_labels"] == 0
    with pytest.raises(KeyError, match="nope"):
        group_metrics(df, {"x": ["nope"]})


@pytest.mark.parametrize("seed", range(4))
def test_label_metrics_counts_match_sklearn_per_label(seed):
    """F1, sensitivity and specificity from one confusion matrix per threshold equal sklearn's own scorers,
    zero-division cases included (a label with no positives, one never predicted, one always predicted)."""
    from sklearn.metrics import recall_score

    from reports.metrics import label_metrics

    rng = np.random.default_rng(seed)
    y = (rng.random((300, 6)) < [0.3, 0.1, 0.02, 0.5, 0.0, 0.2]).astype(float)
    y[rng.random(y.shape) < 0.1] = np.nan
    p = rng.random(y.shape)
    thr = np.array([0.5, 0.9, 0.3, 1.01, 0.5, -0.01])  # label 3 never predicted, label 5 always
    df = label_metrics(y, p, thresholds=thr, label_names=[f"l{j}" for j in range(6)])
    for j in range(6):
        k = ~np.isnan(y[:, j])
        yj, d, d5 = y[k, j].astype(int), (p[k, j] >= thr[j]).astype(int), (p[k, j] >= 0.5).astype(int)
        r = df.iloc[j]
        assert r["f1"] == pytest.approx(f1_score(yj, d, zero_division=0.0))
        assert r["f1_fixed"] == pytest.approx(f1_score(yj, d5, zero_division=0.0))
        sens = recall_score(yj, d, zero_division=np.nan)
        spec = recall_score(yj, d, pos_label=0, zero_division=np.nan)
        assert (np.isnan(r["sensitivity"]) and np.isnan(sens)) or r["sensitivity"] == pytest.approx(sens)
        assert (np.isnan(r["specificity"]) and np.isnan(spec)) or r["specificity"] == pytest.approx(spec)
    assert np.isnan(df.iloc[4]["sensitivity"]) and df.iloc[4]["f1"] == 0.0  # no positives at all
