"""reports.calibration against scikit-learn (brier_score_loss, calibration_curve) and known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from reports import calibration as C
from reports.metrics import label_metrics, summary_metrics


def _data(n=900, labels=5, seed=0, prevalence=(0.3, 0.1, 0.02, 0.005, 0.5)):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < np.asarray(prevalence[:labels])).astype(float)
    p = np.clip(0.5 * y + rng.beta(1, 6, (n, labels)), 0, 1).round(3)  # ties, miscalibrated
    y[rng.random(y.shape) < 0.04] = np.nan
    return y, p


def _sklearn_ece(yj, pj, n_bins):
    """ECE from calibration_curve's per-bin means; bin counts from the same quantile edges (non-empty bins
    in order, as calibration_curve returns them)."""
    prob_true, prob_pred = calibration_curve(yj, pj, n_bins=n_bins, strategy="quantile")
    edges = np.percentile(pj, np.linspace(0, 1, n_bins + 1) * 100)
    counts = np.bincount(np.searchsorted(edges[1:-1], pj), minlength=n_bins)
    counts = counts[counts > 0]
    assert counts.size == prob_true.size
    return float(np.sum(counts * np.abs(prob_true - prob_pred)) / counts.sum())


@pytest.mark.parametrize("n_bins", [5, 15])
def test_ece_and_brier_equal_sklearn_per_label(n_bins):
    y, p = _data()
    ece, brier = C.ece(y, p, n_bins=n_bins), C.brier(y, p)
    for j in range(y.shape[1]):
        k = ~np.isnan(y[:, j])
        assert brier[j] == pytest.approx(brier_score_loss(y[k, j], p[k, j]), abs=1e-12)
        assert ece[j] == pytest.approx(_sklearn_ece(y[k, j], p[k, j], n_bins), abs=1e-12)


def test_calibrated_scores_have_small_ece_and_shifted_scores_large():
    rng = np.random.default_rng(1)
    p = rng.random((20000, 1))
    y = (rng.random((20000, 1)) < p).astype(float)  # calibrated by construction: P(y = 1 | p) = p
    assert C.ece(y, p)[0] < 0.02
    assert C.ece(y, np.clip(p + 0.2, 0, 1))[0] == pytest.approx(0.2 - 0.02, abs=0.02)  # clip takes ~0.02 off
    # Brier of calibrated uniform scores: E[p (1 - p)] = 1/6
    assert C.brier(y, p)[0] == pytest.approx(1 / 6, abs=0.01)


def test_weighted_scorer_equals_repeated_rows():
    y, p = _data(n=300)
    w = np.random.default_rng(2).integers(0, 3, (4, 300)).astype(float)
    s = C.CalibrationScorer(y, p)
    vals = s.label_values(w)
    for b in range(4):
        rows = np.repeat(np.arange(300), w[b].astype(int))
        for j in range(y.shape[1]):
            k = ~np.isnan(y[rows, j])
            assert vals["brier"][b, j] == pytest.approx(brier_score_loss(y[rows][k, j], p[rows][k, j]), abs=1e-12)
        # the unweighted case equals the definition
    assert s.label_values(np.ones((1, 300)))["ece"][0] == pytest.approx(C.ece(y, p), abs=1e-12)


def test_label_without_known_entries_is_nan_and_left_out_of_the_macro():
    y, p = _data(n=200, labels=3)
    y[:, 1] = np.nan
    assert np.isnan(C.brier(y, p)[1]) and np.isnan(C.ece(y, p)[1])
    names = ["a", "b", "c"]
    s = summary_metrics(y, p, label_names=names)
    assert s["macro_brier"] == pytest.approx(np.mean(C.brier(y, p)[[0, 2]]), abs=1e-12)
    assert s["macro_ece"] == pytest.approx(np.mean(C.ece(y, p)[[0, 2]]), abs=1e-12)


def test_label_without_positives_keeps_its_calibration():
    y, p = _data(n=200, labels=2)
    y[:, 1] = np.where(np.isnan(y[:, 1]), np.nan, 0.0)
    df = label_metrics(y, p, label_names=["a", "b"])
    assert not df.defined[1] and np.isnan(df.auc[1])
    assert df.brier[1] == pytest.approx(np.nanmean(p[~np.isnan(y[:, 1]), 1] ** 2), abs=1e-12)
    assert summary_metrics(y, p, label_names=["a", "b"])["macro_brier"] == pytest.approx(df.brier.mean())


def test_scores_that_are_not_probabilities():
    y, p = _data(n=100, labels=2)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        C.brier(y, p * 3 - 1)
    s = summary_metrics(y, p * 3 - 1, label_names=["a", "b"])  # AUC still defined; calibration is not
    assert np.isfinite(s["macro_auc"]) and np.isnan(s["macro_ece"]) and np.isnan(s["macro_brier"])


def test_reliability_sums_add_up_and_match_calibration_curve_uniform_bins():
    y, p = _data()
    r = C.reliability(y, p)
    for j in range(y.shape[1]):
        k = ~np.isnan(y[:, j])
        assert r["n"][j].sum() == k.sum()
        assert r["y"][j].sum() == pytest.approx(y[k, j].sum())
        prob_true, prob_pred = calibration_curve(y[k, j], p[k, j], n_bins=10, strategy="uniform")
        full = r["n"][j] > 0
        assert np.allclose(r["y"][j][full] / r["n"][j][full], prob_true)
        assert np.allclose(r["p"][j][full] / r["n"][j][full], prob_pred)
