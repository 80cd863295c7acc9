"""Tests for reports.stats: weighted AUC / AP, the patient bootstrap, paired tests, Holm, Friedman-Nemenyi."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from reports.metrics import summary_metrics
from reports.stats import (bootstrap_macro_ci, friedman_nemenyi, holm, mean_std, nemenyi_q,
                           paired_test, patient_bootstrap_weights, weighted_auc,
                           weighted_average_precision)


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([1.0, np.nan, 3.0], return_count=True) == (2.0, pytest.approx(np.sqrt(2)), 2)
    m, s = mean_std([0.7])
    assert m == 0.7 and np.isnan(s)
    assert all(np.isnan(mean_std([np.nan])))


# ---------------------------------------------------------------------------- weighted AUC / AP
@pytest.mark.parametrize("seed", range(6))
def test_weighted_auc_and_ap_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = (rng.random(n) < rng.uniform(0.1, 0.6)).astype(float)
    y[:2] = [0, 1]
    s = (0.3 * y + rng.random(n)).round(int(rng.integers(1, 3)))  # coarse rounding: many ties
    w = rng.integers(0, 4, n).astype(float)  # zeros included, as in a bootstrap replicate
    w[:2] = 1
    assert weighted_auc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert weighted_average_precision(y, s, w) == pytest.approx(
        average_precision_score(y, s, sample_weight=w), abs=1e-12)
    assert weighted_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_weighted_auc_hand_case_and_undefined():
    # positives .9 (w 1), .5 (w 2); negatives .3 (w 1), .5 (w 1): 1 + 1 + 2 + 2 * 1/2 = 5 of 3 * 2
    assert weighted_auc([1, 0, 1, 0], [0.9, 0.3, 0.5, 0.5], [1, 1, 2, 1]) == pytest.approx(5 / 6)
    assert weighted_auc([1, 0, np.nan], [0.9, 0.3, 0.1]) == 1.0  # NaN label masked
    assert np.isnan(weighted_auc([1, 0], [0.9, 0.3], [1, 0]))  # no negative weight


# ---------------------------------------------------------------------------- patient bootstrap
def _dataset(n, n_labels=5, seed=0, nan_rate=0.1):
    rng = np.random.default_rng(seed)
    patients = np.sort(rng.integers(0, max(2, n // 3), n))
    y = (rng.random((n, n_labels)) < np.linspace(0.05, 0.4, n_labels)).astype(float)
    y[rng.random((n, n_labels)) < nan_rate] = np.nan
    p = np.clip(0.3 * np.nan_to_num(y) + 0.7 * rng.random((n, n_labels)), 0, 1)
    return y, p, patients


def test_bootstrap_weights_keep_patients_together():
    patients = np.array(["big"] * 40 + [f"p{i}" for i in range(20)])
    w = patient_bootstrap_weights(patients, n_boot=500, rng=np.random.default_rng(1))
    assert w.shape == (500, 60)
    assert (w[:, :40] == w[:, [0]]).all()  # the 40 images of one patient move together
    assert np.allclose(w[:, [0] + list(range(40, 60))].sum(axis=1), 21)  # 21 patients drawn each time
    assert (w[:, 0] == 0).any() and (w[:, 0] >= 2).any()


def test_bootstrap_equals_naive_loop_over_replicates():
    y, p, patients = _dataset(120, seed=2)
    y[:, 0] = np.nan
    y[patients == patients[0], 0] = 1.0  # label 0: positives from one patient only, negatives elsewhere
    y[patients == patients[-1], 0] = 0.0
    d = np.where(np.isnan(y), np.nan, p >= 0.45)  # NaN decisions where the label is unknown are fine
    ci = bootstrap_macro_ci(y, p, patients, decisions=d, n_boot=40, rng=np.random.default_rng(5),
                            return_replicates=True)
    w_all = patient_bootstrap_weights(patients, n_boot=40, rng=np.random.default_rng(5))
    known = ~np.isnan(y)
    skipped = 0
    for b, w in enumerate(w_all):
        aucs, aps, f1s = [], [], []
        for j in range(y.shape[1]):
            k = known[:, j]
            yj, wj = y[k, j], w[k]
            if wj[yj == 1].sum() == 0 or wj[yj == 0].sum() == 0:
                skipped += 1
                continue
            aucs.append(roc_auc_score(yj, p[k, j], sample_weight=wj))
            aps.append(average_precision_score(yj, p[k, j], sample_weight=wj))
            f1s.append(f1_score(yj, d[k, j], sample_weight=wj, zero_division=0.0))
        reps = {k: v[b] for k, v in ci["replicates"].items()}
        assert reps["macro_auc"] == pytest.approx(np.mean(aucs))
        assert reps["macro_ap"] == pytest.approx(np.mean(aps))
        assert reps["macro_f1"] == pytest.approx(np.mean(f1s))
        ww = np.broadcast_to(w[:, None], y.shape)[known]
        assert reps["micro_auc"] == pytest.approx(roc_auc_score(y[known], p[known], sample_weight=ww))
        assert reps["micro_ap"] == pytest.approx(
            average_precision_score(y[known], p[known], sample_weight=ww))
        assert reps["micro_f1"] == pytest.approx(
            f1_score(y[known], d[known], sample_weight=ww, zero_division=0.0))
    assert skipped > 0  # the one-patient label really was undefined in some replicates


def test_whole_number_weights_sum_in_integers_with_the_float_results_and_fractional_ones_match_sklearn():
    from reports.stats import MacroScorer

    y, p, patients = _dataset(150, seed=4)
    y[::7, 1] = np.nan
    p = np.round(p, 1)  # ties within and across the classes
    scorer = MacroScorer(y, p, (p >= 0.5).astype(float))
    counts = patient_bootstrap_weights(patients, n_boot=30, rng=np.random.default_rng(1))
    for prob in [*scorer.problems, scorer.pooled]:  # the integer path gives the float path's numbers, to the bit
        exact, floating = prob.auc_ap(counts.astype(np.int64)), prob.auc_ap(counts.astype(np.float64))
        for a, b in zip(exact, floating):
            assert np.array_equal(a, b, equal_nan=True)
    # fractional weights stay in floats: each row against sklearn
    w = np.random.default_rng(2).uniform(0.1, 2.0, (3, y.shape[0]))
    got = scorer.evaluate(w)
    known = ~np.isnan(y)
    for b in range(w.shape[0]):
        ww = np.broadcast_to(w[b][:, None], y.shape)[known]
        assert got["micro_auc"][b] == pytest.approx(roc_auc_score(y[known], p[known], sample_weight=ww), abs=1e-12)
        assert got["micro_ap"][b] == pytest.approx(average_precision_score(y[known], p[known], sample_weight=ww),
                                                   abs=1e-12)
        aucs = [roc_auc_score(y[known[:, j], j], p[known[:, j], j], sample_weight=w[b][known[:, j]])
                for j in range(y.shape[1])]
        assert got["macro_auc"][b] == pytest.approx(np.mean(aucs), abs=1e-12)


def test_bootstrap_estimate_matches_summary_and_ci_covers_it():
    y, p, patients = _dataset(600, seed=3)
    t = np.full(y.shape[1], 0.45)
    names = [f"l{j}" for j in range(y.shape[1])]
    s = summary_metrics(y, p, thresholds=t, label_names=names)
    ci = bootstrap_macro_ci(y, p, patients, decisions=(p >= t).astype(int), n_boot=300,
                            rng=np.random.default_rng(0))
    for k in ("macro_auc", "micro_auc", "macro_ap", "micro_ap", "macro_f1", "micro_f1"):
        assert ci[k]["estimate"] == pytest.approx(s[k], abs=1e-12)
        assert ci[k]["lo"] < ci[k]["estimate"] < ci[k]["hi"]
        assert ci[k]["n_valid"] == 300
    assert "macro_f1" not in bootstrap_macro_ci(y, p, patients, n_boot=5, rng=np.random.default_rng(0))


def test_bootstrap_blocks_draw_the_same_replicates_as_one_block(monkeypatch):
    import reports.stats as st

    y, p, patients = _dataset(200, seed=6)
    one = bootstrap_macro_ci(y, p, patients, n_boot=50, rng=np.random.default_rng(9))
    monkeypatch.setattr(st, "_BLOCK_ELEMENTS", 7 * 200 * 5)  # blocks of 7 replicates
    many = bootstrap_macro_ci(y, p, patients, n_boot=50, rng=np.random.default_rng(9))
    for k in ("macro_auc", "micro_auc", "macro_ap", "micro_ap"):
        assert many[k] == pytest.approx(one[k], rel=1e-12)


def test_bootstrap_is_reproducible_and_shrinks_with_n():
    widths = []
    for n in (300, 3000):
        y, p, patients = _dataset(n, seed=4)
        a = bootstrap_macro_ci(y, p, patients, n_boot=200, rng=np.random.default_rng(7))
        b = bootstrap_macro_ci(y, p, patients, n_boot=200, rng=np.random.default_rng(7))
        assert a == b
        widths.append(a["macro_auc"]["hi"] - a["macro_auc"]["lo"])
    assert widths[1] < 0.6 * widths[0]  # about 1 / sqrt(10) expected


def test_bootstrap_n1500_at_full_size():
    """The leaderboard's size (1,500 images, 14 labels, 1,000 replicates) runs through; its speed is measured by
    `bench perf` (eval section, BENCHMARKS.md), not asserted here."""
    y, p, patients = _dataset(1500, n_labels=14, seed=5)
    d = (p >= 0.5).astype(int)
    ci = bootstrap_macro_ci(y, p, patients, decisions=d, n_boot=1000, rng=np.random.default_rng(0))
    for metric in ("macro_auc", "micro_auc", "macro_f1", "micro_f1"):
        assert ci[metric]["lo"] <= ci[metric]["estimate"] <= ci[metric]["hi"], metric
        assert ci[metric]["n_valid"] == 1000, metric


def test_bootstrap_rejects_bad_inputs():
    y, p, patients = _dataset(20)
    with pytest.raises(ValueError, match="patients"):
        bootstrap_macro_ci(y, p, patients[:-1], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="decisions"):
        bootstrap_macro_ci(y, p, patients, decisions=p, rng=np.random.default_rng(0))


# ---------------------------------------------------------------------------- paired tests
def test_paired_test_known_example():
    # differences .021 .018 -.010 .030 .025: mean .0168; ranks of |d| 3 2 1 5 4, W- = 1:
    # exact two-sided p = 2 * #{sign patterns with W- <= 1} / 2^5 = 2 * 2 / 32 = .125
    # t: sum of squared deviations 9.788e-4 -> sd sqrt(9.788e-4 / 4) = .015643 -> t = .0168 / (sd / sqrt 5)
    a = [0.821, 0.818, 0.790, 0.830, 0.825]
    b = [0.80] * 5
    r = paired_test(a, b)
    d = np.array([0.021, 0.018, -0.010, 0.030, 0.025])
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert r["n"] == 5 and r["mean_diff"] == pytest.approx(0.0168)
    assert r["t"] == pytest.approx(t) and t == pytest.approx(2.4015, abs=1e-4)
    assert r["p_t"] == pytest.approx(2 * sps.t.sf(t, df=4))
    assert r["p_wilcoxon"] == pytest.approx(0.125)
    assert r["p"] == r["p_t"] and r["test"] == "t"


def test_paired_test_degenerate_cases():
    r = paired_test([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert np.isnan(r["p_t"]) and np.isnan(r["p_wilcoxon"]) and r["mean_diff"] == 0
    r = paired_test([0.8, np.nan, 0.9, 0.85], [0.7, 0.7, 0.8, 0.8])
    assert r["n"] == 3
    with pytest.raises(ValueError, match="matched"):
        paired_test([1, 2], [1])


# ---------------------------------------------------------------------------- Holm
def test_holm_hand_computed():
    # sorted .005 .01 .03 .04 -> x4 x3 x2 x1 = .02 .03 .06 .04 -> running max .02 .03 .06 .06
    out = holm([0.01, 0.04, 0.03, 0.005])
    assert out == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # statsmodels multipletests([.2, .5, .01, .3], method="holm")[1] = [.6, .6, .04, .6] (by hand:
    # .01 x4 = .04; .2 x3 = .6; .3 x2 = .6; .5 x1 -> max .6)
    assert holm([0.2, 0.5, 0.01, 0.3]) == pytest.approx([0.6, 0.6, 0.04, 0.6])
    assert holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])
    assert holm([0.9, 0.8, 0.7]).max() == 1.0  # capped
    nan = holm([np.nan, 0.02, 0.04])  # the family is the 2 non-NaN values
    assert np.isnan(nan[0]) and nan[1:] == pytest.approx([0.04, 0.04])
    assert holm([]).shape == (0,)


# ---------------------------------------------------------------------------- Friedman / Nemenyi
def test_nemenyi_q_matches_demsar_table_5a():
    q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}
    q10 = {2: 1.645, 3: 2.052, 4: 2.291, 5: 2.459, 6: 2.589, 7: 2.693, 8: 2.780, 9: 2.855, 10: 2.920}
    for k in q05:
        assert nemenyi_q(k, 0.05) == pytest.approx(q05[k], abs=1e-3)
        assert nemenyi_q(k, 0.10) == pytest.approx(q10[k], abs=1e-3)


# Demsar (2006), Table 6: ranks of C4.5 with and without m / cf tuning on 14 data sets (AUC).
DEMSAR_RANKS = pd.DataFrame(
    [[4, 3, 2, 1], [1, 2, 3, 4], [4, 1, 2, 3], [4, 1, 3, 2], [4, 2, 3, 1], [1, 2.5, 4, 2.5],
     [3, 2, 4, 1], [2.5, 2.5, 4, 1], [4, 3, 2, 1], [2.5, 2.5, 2.5, 2.5], [4, 2.5, 1, 2.5],
     [3, 2, 4, 1], [4, 1, 2, 3], [3, 1, 4, 2]],
    columns=["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"])


def test_friedman_nemenyi_demsar_example():
    r = friedman_nemenyi(DEMSAR_RANKS, higher_is_better=False)  # ranks as scores: lower is better
    assert {m: round(v, 3) for m, v in r["average_ranks"].items()} == {"C4.5+m+cf": 1.964, "C4.5+m": 2.0, "C4.5+cf": 2.893,
                                                 "C4.5": 3.143}
    n, k = 14, 4
    assert list(r["average_ranks"]) == ["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]  # best first
    rk = np.array(list(r["average_ranks"].values()))
    chi2_demsar = 12 * n / (k * (k + 1)) * (np.sum(rk**2) - k * (k + 1) ** 2 / 4)
    assert chi2_demsar == pytest.approx(9.28, abs=0.005)  # the paper's value (no tie correction)
    # scipy divides by the tie correction 1 - sum(t^3 - t) / (N k (k^2 - 1)) = 1 - 78 / 840
    assert r["statistic"] == pytest.approx(chi2_demsar / (1 - 78 / 840))
    assert r["cd"] == pytest.approx(1.25, abs=0.005)  # "CD = 2.569 sqrt(4 * 5 / (6 * 14)) = 1.25"
    assert r["cliques"] == [["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]]  # 3.143 - 1.964 < 1.25
    r10 = friedman_nemenyi(DEMSAR_RANKS, higher_is_better=False, alpha=0.10)
    assert r10["cd"] == pytest.approx(1.12, abs=0.005)
    # at alpha .10 C4.5 differs from C4.5+m+cf (1.179) and from C4.5+m (1.143), as in the paper
    assert r10["cliques"] == [["C4.5+m+cf", "C4.5+m", "C4.5+cf"], ["C4.5+cf", "C4.5"]]
    pv = r10["pairwise_p"]
    assert pv["C4.5"]["C4.5+m+cf"] < 0.10 < pv["C4.5"]["C4.5+cf"]
    assert pv["C4.5"]["C4.5+m+cf"] > 0.05 and pv["C4.5"]["C4.5"] == 1.0
    json.dumps(r10)  # plain values only: the report writes it to friedman.json


def test_friedman_small_hand_case_and_direction():
    # ranks (1 = best) 1 2 3 / 1 3 2 / 1 2 3 / 2 1 3 -> mean 1.25 2 2.75; chi2 = 12*4/(3*4) *
    # (1.25^2 + 2^2 + 2.75^2 - 3 * 4^2 / 4) = 4.5, p = exp(-4.5 / 2); F = 3 * 4.5 / (8 - 4.5)
    scores = pd.DataFrame({"a": [0.9, 0.8, 0.7, 0.6], "b": [0.8, 0.6, 0.6, 0.7], "c": [0.7, 0.7, 0.5, 0.5]})
    r = friedman_nemenyi(scores)
    assert r["average_ranks"] == {"a": 1.25, "b": 2.0, "c": 2.75}
    assert r["statistic"] == pytest.approx(4.5) and r["p"] == pytest.approx(np.exp(-2.25))
    assert r["iman_davenport"] == pytest.approx(13.5 / 3.5)
    assert r["cd"] == pytest.approx(nemenyi_q(3) * np.sqrt(3 * 4 / (6 * 4)))
    losses = friedman_nemenyi(1 - scores, higher_is_better=False)
    assert losses["average_ranks"] == r["average_ranks"]


def test_friedman_needs_three_methods_and_drops_incomplete_blocks():
    r = friedman_nemenyi(pd.DataFrame({"a": [0.9, 0.8], "b": [0.7, 0.85]}))
    assert np.isnan(r["p"]) and "3 methods" in r["reason"]
    assert r["average_ranks"] == {"a": 1.5, "b": 1.5}
    scores = pd.DataFrame({"a": [0.9, 0.8, np.nan], "b": [0.7, 0.6, 0.5], "c": [0.6, 0.5, 0.4]})
    r = friedman_nemenyi(scores)
    assert r["n_blocks"] == 2 and r["n_blocks_dropped"] == 1
