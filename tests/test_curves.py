"""reports.curves against scikit-learn, its independent reference: the same arrays and areas to the bit, on
the inputs a trial meets (ties from rounded or saturated scores, constant scores, one positive in a fold,
NIH-like prevalence down to 0.2% at full-NIH test-fold size), and the threshold rules built on them.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from reports import curves
from strategies.thresholds import MaxF1, PrecisionTarget, Youden


def cases():
    """(name, y, p): each a binary problem with both classes."""
    rng = np.random.default_rng(0)
    out = []
    for n, prevalence in ((133, 0.3), (400, 0.05), (2_000, 0.01), (22_424, 0.002)):
        y = (rng.random(n) < prevalence).astype(np.int64)
        y[rng.integers(n)], y[rng.integers(n)] = 1, 0  # both classes, whatever the draw
        p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y)))
        out += [(f"{n}@{prevalence}", y, p),
                (f"{n}@{prevalence} rounded to 2 digits", y, np.round(p, 2)),
                (f"{n}@{prevalence} float32", y, p.astype(np.float32))]
    y = np.zeros(500, dtype=np.int64)
    y[17] = 1
    out.append(("one positive", y, rng.random(500)))
    out.append(("one negative", 1 - y, rng.random(500)))
    out.append(("constant scores", (rng.random(300) < 0.2).astype(np.int64), np.full(300, 0.5)))
    out.append(("saturated sigmoid", (rng.random(300) < 0.2).astype(np.float64),
                np.clip(rng.normal(size=300), 0, None).round(1)))
    out.append(("boolean labels, two scores", rng.random(64) < 0.5, rng.integers(0, 2, 64).astype(np.float64)))
    out.append(("perfect ranking", np.r_[np.zeros(50), np.ones(5)], np.linspace(0, 1, 55)))
    out.append(("reversed ranking", np.r_[np.ones(5), np.zeros(50)], np.linspace(0, 1, 55)))
    return out


CASES = cases()


def same(a, b) -> bool:
    """Equal to the bit (NaN equal to NaN), and of one dtype."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.mark.parametrize("name, y, p", CASES, ids=[c[0] for c in CASES])
def test_curves_and_areas_equal_sklearn_to_the_bit(name, y, p):
    assert curves.roc_auc(y, p) == skm.roc_auc_score(y, p)
    assert curves.average_precision(y, p) == skm.average_precision_score(y, p)
    for drop in (True, False):
        for mine, theirs in zip(curves.roc_curve(y, p, drop_intermediate=drop),
                                skm.roc_curve(y, p, drop_intermediate=drop)):
            assert same(mine, theirs), (name, drop)
    for mine, theirs in zip(curves.precision_recall_curve(y, p), skm.precision_recall_curve(y, p)):
        assert same(mine, theirs), name


def test_one_class_gives_nan_areas_and_the_curves_sklearn_gives_with_a_warning():
    p = np.linspace(0, 1, 20)
    for y in (np.zeros(20), np.ones(20)):
        assert np.isnan(curves.roc_auc(y, p))
        with pytest.warns(Warning):
            theirs = skm.roc_curve(y, p)
        assert all(same(a, b) for a, b in zip(curves.roc_curve(y, p), theirs))
    assert np.isnan(curves.average_precision(np.zeros(20), p))  # no positive: undefined (sklearn warns, says 0)
    assert curves.average_precision(np.ones(20), p) == skm.average_precision_score(np.ones(20), p)  # 1 + 2e-16
    with pytest.warns(Warning):
        theirs = skm.precision_recall_curve(np.zeros(20), p)
    assert all(same(a, b) for a, b in zip(curves.precision_recall_curve(np.zeros(20), p), theirs))


def test_lengths_must_match():
    with pytest.raises(ValueError, match="same length; got 3 and 2"):
        curves.roc_auc([0, 1, 1], [0.2, 0.4])


def _reference_rules(y, p):
    """The three rules' thresholds computed the way they were before reports.curves: straight from sklearn."""
    precision, recall, thr = skm.precision_recall_curve(y, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    max_f1 = float(thr[int(np.argmax(f1[:-1]))])
    fpr, tpr, rthr = skm.roc_curve(y, p, drop_intermediate=False)
    j = tpr - fpr
    youden = float(rthr[int(np.argmax(j))]) if j.max() > 0 else 0.5
    reached = np.flatnonzero(precision[:-1] >= 0.6)
    target = float(thr[reached[0]]) if len(reached) else max_f1
    return max_f1, youden, target


@pytest.mark.parametrize("name, y, p", CASES, ids=[c[0] for c in CASES])
def test_threshold_rules_pick_what_sklearns_curves_pick(name, y, p):
    y = np.asarray(y, dtype=np.float64)
    got = (MaxF1().fit_label(y, p), Youden().fit_label(y, p), PrecisionTarget(target=0.6).fit_label(y, p))
    assert got == _reference_rules(y, p), name
