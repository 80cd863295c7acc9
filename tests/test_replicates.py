"""reports.replicates and reports.compare against independent computations (sklearn, scipy, pandas, loops)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from reports import compare as C
from reports import replicates as R
from reports.metrics import summary_metrics
from reports.stats import holm


def _fold(n=150, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    patients = np.array([f"p{i}" for i in np.sort(rng.integers(0, n // 2, n))])
    y = (rng.random((n, labels)) < np.linspace(0.08, 0.4, labels)).astype(float)
    y[rng.random(y.shape) < 0.05] = np.nan
    p = np.clip(0.35 * np.nan_to_num(y) + 0.65 * rng.random(y.shape), 0, 1).round(2)  # ties
    thr = np.linspace(0.4, 0.6, labels)
    return y, p, (p >= thr).astype(float), patients


def _naive(y, p, d, w):
    """Macro / micro metrics under integer weights by repeating rows, with sklearn."""
    rows = np.repeat(np.arange(len(y)), w.astype(int))
    yy, pp, dd = y[rows], p[rows], d[rows]
    auc, ap, f1 = [], [], []
    for j in range(y.shape[1]):
        k = ~np.isnan(yy[:, j])
        if k.sum() and 0 < yy[k, j].sum() < k.sum():
            auc.append(roc_auc_score(yy[k, j], pp[k, j]))
            ap.append(average_precision_score(yy[k, j], pp[k, j]))
            f1.append(f1_score(yy[k, j], dd[k, j], zero_division=0.0))
    k = ~np.isnan(yy)
    ece, brier = [], []  # calibration: equal-mass bins of the unweighted fold (fixed over replicates)
    for j in range(y.shape[1]):
        kj = ~np.isnan(y[:, j])
        edges = np.percentile(p[kj, j], np.linspace(0, 1, 16) * 100)
        bin_of = np.searchsorted(edges[1:-1], p[:, j])[rows]
        kk = ~np.isnan(yy[:, j])
        if kk.sum():
            brier.append(brier_score_loss(yy[kk, j], pp[kk, j]))
            gaps = [abs(pp[kk & (bin_of == b), j].mean() - yy[kk & (bin_of == b), j].mean()) * (kk & (bin_of == b)).sum()
                    for b in range(15) if (kk & (bin_of == b)).any()]
            ece.append(sum(gaps) / kk.sum())
    return {"macro_auc": np.mean(auc), "macro_ap": np.mean(ap), "macro_f1": np.mean(f1),
            "micro_auc": roc_auc_score(yy[k], pp[k]), "micro_f1": f1_score(yy[k], dd[k], zero_division=0.0),
            "macro_ece": np.mean(ece), "macro_brier": np.mean(brier)}


def test_trial_replicates_equal_sklearn_on_each_resample():
    y, p, d, pat = _fold()
    rep = R.trial_replicates(y, p, d, pat, n_boot=6, fold=2, seed=7, groups=5)
    boot, jack = R.fold_weights(pat, n_boot=6, fold=2, seed=7, groups=5)
    for b in range(6):
        ref = _naive(y, p, d, boot[b])
        for m in R.METRICS:
            assert rep["replicates"][m][b] == pytest.approx(ref[m], abs=1e-12), (m, b)
    for g in range(5):
        keep = jack[g] > 0
        s = summary_metrics(y[keep], p[keep], thresholds=np.linspace(0.4, 0.6, 4), label_names=list("abcd"))
        for m in ("macro_auc", "micro_auc", "macro_ap", "macro_f1", "micro_f1"):
            assert rep["jackknife"][m][g] == pytest.approx(s[m], abs=1e-12), (m, g)
    s = summary_metrics(y, p, thresholds=np.linspace(0.4, 0.6, 4), label_names=list("abcd"))
    assert rep["estimate"]["macro_ap"] == pytest.approx(s["macro_ap"], abs=1e-12)


def test_fold_weights_pair_trials_of_a_fold_whatever_the_image_order():
    y, p, d, pat = _fold()
    order = np.random.default_rng(1).permutation(len(pat))
    b1, j1 = R.fold_weights(pat, n_boot=20, fold=0, seed=3)
    b2, j2 = R.fold_weights(pat[order], n_boot=20, fold=0, seed=3)
    assert np.array_equal(b1[:, order], b2) and np.array_equal(j1[:, order], j2)
    same_patient = pat[:, None] == pat[None, :]
    assert all(((w[:, None] == w[None, :]) | ~same_patient).all() for w in b1)  # a patient's images move together
    other, _ = R.fold_weights(pat, n_boot=20, fold=1, seed=3)
    assert not np.array_equal(b1, other)  # folds are resampled independently
    assert (j1.sum(0) == j1.shape[0] - 1).all()  # every image is left out by exactly one jackknife group


def test_save_load_roundtrip(tmp_path):
    y, p, d, pat = _fold()
    rep = R.trial_replicates(y, p, d, pat, n_boot=30, fold=0, seed=0)
    R.save(tmp_path / "b.npz", rep)
    back = R.load(tmp_path / "b.npz")
    for m in R.METRICS:
        assert np.array_equal(back["replicates"][m], rep["replicates"][m], equal_nan=True)
        assert np.array_equal(back["jackknife"][m], rep["jackknife"][m], equal_nan=True)
        assert back["estimate"][m] == rep["estimate"][m]
    assert {k: back[k] for k in ("n_boot", "fold", "seed", "groups", "patients", "shared")} == \
        {k: rep[k] for k in ("n_boot", "fold", "seed", "groups", "patients", "shared")}


def test_an_external_sets_draws_are_shared_by_every_folds_models(tmp_path):
    """Every fold's models score the same external images: one resampling for all of them (else the report would
    average K independent resamplings of one set and shrink its interval); an older per-fold file is redone."""
    from reports.trial_bootstraps import trial_bootstrap

    y, p, d, pat = _fold()
    shared = [R.fold_weights(pat, n_boot=20, fold=f, seed=3, shared=True)[0] for f in (0, 4)]
    assert np.array_equal(*shared)
    assert not np.array_equal(shared[0], R.fold_weights(pat, n_boot=20, fold=0, seed=3)[0])  # nor any fold's own
    doc = {"id": "t", "fold": 4, "test_set": "site-b", "_dir": str(tmp_path)}
    assert R.draws_of(doc) == {"fold": 4, "shared": True} and not R.draws_of({"fold": 4})["shared"]
    np.savez(tmp_path / "predictions.npz", labels=y, probs=p, thresholds=np.linspace(0.4, 0.6, 4), patients=pat)
    R.save(tmp_path / R.FILE, R.trial_replicates(y, p, d, pat, n_boot=20, fold=4, seed=3))  # per fold: stale
    rep = trial_bootstrap(doc, n_boot=20, seed=3)
    assert rep["shared"] and rep["fold"] == 4  # the fold still groups it with its fold's models (aggregate)
    other_fold = R.trial_replicates(y, p, d, pat, n_boot=20, fold=0, seed=3, shared=True)
    assert np.array_equal(rep["replicates"]["macro_auc"], other_fold["replicates"]["macro_auc"])
    R.save(tmp_path / R.FILE, rep)
    (tmp_path / "predictions.npz").unlink()
    assert trial_bootstrap(doc, n_boot=20, seed=3)["shared"]  # a shared file is used as it is


def test_aggregate_equals_pandas_fold_then_seed_means():
    rng = np.random.default_rng(0)
    trials = [{"fold": f, "seed": s, "estimate": {"m": rng.random()}, "replicates": {"m": rng.random(8)},
               "jackknife": {"m": rng.random(3)}} for f in range(3) for s in range(1 + f)]  # unequal seeds
    a = R.aggregate(trials, "m")
    df = pd.DataFrame([{"fold": t["fold"], "v": t["estimate"]["m"]} for t in trials])
    assert a["estimate"] == pytest.approx(df.groupby("fold")["v"].mean().mean(), abs=1e-15)
    reps = pd.DataFrame([{"fold": t["fold"], "b": b, "v": v} for t in trials for b, v in enumerate(t["replicates"]["m"])])
    ref = reps.groupby(["b", "fold"])["v"].mean().groupby("b").mean().to_numpy()
    assert np.allclose(a["replicates"], ref, atol=1e-15)
    assert a["jackknife"].shape == (9,)  # 3 folds x 3 groups
    fold0 = np.mean([t["jackknife"]["m"][1] for t in trials if t["fold"] == 0])
    means = df.groupby("fold")["v"].mean().to_numpy()
    assert a["jackknife"][1] == pytest.approx(np.mean([fold0, means[1], means[2]]), abs=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_bca_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=30)
    res = sps.bootstrap((x,), np.mean, method="BCa", n_resamples=4000, random_state=seed, confidence_level=0.9)
    jack = (x.sum() - x) / (x.size - 1)
    lo, hi = R.bca_interval(res.bootstrap_distribution, x.mean(), jack, alpha=0.1)
    assert (lo, hi) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), rel=1e-3)


def test_bca_recentres_a_shifted_bootstrap_and_handles_degenerate_input():
    rng = np.random.default_rng(0)
    reps = 0.5 + 0.03 + rng.normal(0, 0.02, 2000)  # replicates biased upwards of the estimate 0.5
    lo, hi = R.bca_interval(reps, 0.5, rng.normal(0, 0.01, 20))
    plo, phi = np.quantile(reps, [0.025, 0.975])
    assert lo < plo and hi < phi  # moved down, towards the estimate
    assert all(np.isnan(R.bca_interval([np.nan, np.nan], 0.5, [0.1, 0.2])))
    assert all(np.isnan(R.bca_interval([0.4, 0.6], np.nan, [0.1, 0.2])))


@pytest.mark.parametrize("seed", range(3))
def test_jackknife_interval_matches_scipy_t_intervals(seed):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=40)
    # leave-one-out means: the jackknife standard error of a mean is s / sqrt(n), the interval Student's
    loo = (x.sum() - x) / (x.size - 1)
    lo, hi = R.jackknife_interval(None, x.mean(), loo, alpha=0.1)
    ref = sps.t.interval(0.9, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)
    # delete-a-group (8 equal groups): the standard error of the mean of the 8 group means
    groups = x.reshape(8, 5)
    dag = (x.sum() - groups.sum(1)) / (x.size - 5)
    ref = sps.t.interval(0.95, 7, loc=x.mean(), scale=sps.sem(groups.mean(1)))
    assert R.jackknife_interval(None, x.mean(), dag) == pytest.approx(ref, rel=1e-12)
    # what the leaderboard calls for macro AUC (INTERVAL), replicates unused
    assert R.interval("macro_auc", rng.random(50), x.mean(), dag) == R.jackknife_interval(None, x.mean(), dag)


def test_jackknife_interval_nan_contract():
    jack = np.array([0.80, 0.82, np.nan, 0.79, 0.81])
    assert R.jackknife_interval([0.5], 0.8, jack) == R.jackknife_interval(None, 0.8, jack[~np.isnan(jack)])
    assert all(np.isnan(R.jackknife_interval(None, 0.8, [0.8, np.nan])))  # one value: no spread to estimate
    assert all(np.isnan(R.jackknife_interval(None, np.nan, jack)))
    lo, hi = R.jackknife_interval(None, 0.8, [0.8, 0.8, 0.8])
    assert (lo, hi) == pytest.approx((0.8, 0.8), abs=1e-12)  # no spread: a point, not NaN


def test_corrected_t_formula_and_reduction_to_scipy():
    d = np.array([0.012, -0.004, 0.02, 0.007, 0.011])
    r = C.corrected_t(d, 0.25)
    t = d.mean() / np.sqrt((1 / 5 + 0.25) * d.var(ddof=1))
    assert r["t"] == pytest.approx(t) and r["p"] == pytest.approx(2 * sps.t.sf(abs(t), 4)) and r["df"] == 4
    assert C.corrected_t(d, 0.0)["p"] == pytest.approx(sps.ttest_1samp(d, 0).pvalue)
    assert C.corrected_t(d, 0.25)["p"] > sps.ttest_1samp(d, 0).pvalue  # the correction only widens
    assert np.isnan(C.corrected_t([0.1], 0.25)["p"]) and C.corrected_t([0, 0, 0], 0.25)["p"] == 1.0
    with pytest.raises(ValueError, match="test_train_ratio"):
        C.corrected_t(d, -1)


def _anova_f_by_least_squares(a: np.ndarray) -> float:
    """Two-way (block + strategy) ANOVA F for strategies, as the drop in residual sum of squares between
    least-squares fits with and without the strategy dummies (an independent route to the same F)."""
    n, k = a.shape
    y = a.reshape(-1)
    blocks = np.kron(np.eye(n), np.ones((k, 1)))
    strategies = np.kron(np.ones((n, 1)), np.eye(k))[:, 1:]

    def rss(x):
        return float(np.sum((y - x @ np.linalg.lstsq(x, y, rcond=None)[0]) ** 2))

    full, reduced = rss(np.hstack([blocks, strategies])), rss(blocks)
    return ((reduced - full) / (k - 1)) / (full / ((k - 1) * (n - 1)))


def test_corrected_f_is_the_two_way_anova_f_divided_by_the_overlap_factor():
    a = np.random.default_rng(3).normal(0.8, 0.02, (5, 4)) + [0.0, 0.01, 0.02, -0.01]
    ref = _anova_f_by_least_squares(a)
    plain, corrected = C.corrected_f(a, 0.0), C.corrected_f(a, 0.25)
    assert plain["F"] == pytest.approx(ref) and plain["p"] == pytest.approx(sps.f.sf(ref, 3, 12))
    assert corrected["inflation"] == pytest.approx(1 + 5 * 0.25) and corrected["F"] == pytest.approx(ref / 2.25)
    assert corrected["p"] == pytest.approx(sps.f.sf(ref / 2.25, 3, 12)) and corrected["p"] > plain["p"]
    # two strategies: F is the corrected t squared, and the p-values agree
    t = C.corrected_t(a[:, 1] - a[:, 0], 0.25)
    two = C.corrected_f(a[:, :2], 0.25)
    assert two["F"] == pytest.approx(t["t"] ** 2) and two["p"] == pytest.approx(t["p"])
    # NaN blocks dropped; too little data gives NaN; identical means give p = 1
    b = np.vstack([a, [np.nan, 0.8, 0.8, 0.8]])
    assert C.corrected_f(b, 0.25)["n_blocks"] == 5 and C.corrected_f(b, 0.25)["F"] == pytest.approx(ref / 2.25)
    assert np.isnan(C.corrected_f(a[:1], 0.25)["p"]) and np.isnan(C.corrected_f(a[:, :1], 0.25)["p"])
    assert C.corrected_f(np.full((4, 3), 0.8), 0.25)["p"] == 1.0
    with pytest.raises(ValueError, match="test_train_ratio"):
        C.corrected_f(a, float("nan"))


def test_friedman_permutation_p_equals_exact_enumeration():
    values = np.array([[0.9, 0.8, 0.7], [0.85, 0.86, 0.7], [0.9, 0.7, 0.75]])
    ranks = sps.rankdata(-values, axis=1)
    obs = np.sum(ranks.sum(0) ** 2)
    perms = list(itertools.permutations(range(3)))
    stats = [np.sum(sum(ranks[i][list(pi)] for i, pi in enumerate(combo)) ** 2)
             for combo in itertools.product(perms, repeat=3)]
    exact = np.mean(np.asarray(stats) >= obs - 1e-9)
    p = C.friedman_permutation_p(values, n_perm=40000, rng=np.random.default_rng(0))
    assert p == pytest.approx(exact, abs=0.01)


def test_bootstrap_p():
    assert C.bootstrap_p(np.full(99, 0.01)) == pytest.approx(2 / 100)
    assert C.bootstrap_p(np.r_[np.full(50, 0.01), np.full(50, -0.01)]) == 1.0
    assert np.isnan(C.bootstrap_p([np.nan]))


def _trial_rows(values: np.ndarray, strategies, metric="macro_auc"):
    rows = []
    for s, name in enumerate(strategies):
        for f in range(values.shape[1]):
            for k in range(values.shape[2]):
                rows.append({"id": f"{name}-{f}-{k}", "backbone": "b", "strategy": name, "fold": f, "seed": k,
                             metric: values[s, f, k]})
    return pd.DataFrame(rows)


def test_significance_without_replicates_uses_fold_means_and_holm():
    rng = np.random.default_rng(0)
    v = 0.8 + rng.normal(0, 0.01, (3, 5, 3))
    v[1] += 0.03
    trials = _trial_rows(v, ["bce", "good", "same"])
    docs = [{"sizes": {"test": 100, "train": 320, "val": 80}}]
    sig = C.significance(trials, {}, docs, baseline="bce", metrics=("macro_auc",)).set_index("strategy")
    fm = v.mean(2)
    for s, name in ((1, "good"), (2, "same")):
        ref = C.corrected_t(fm[s] - fm[0], 0.25)
        assert sig.loc[name, "p_t"] == pytest.approx(ref["p"]) and sig.loc[name, "n_folds"] == 5
        assert sig.loc[name, "mean_diff"] == pytest.approx(fm[s].mean() - fm[0].mean())
    assert sig["p_t_holm"].tolist() == pytest.approx(list(holm(sig["p_t"].to_numpy(dtype=float))))
    assert (sig["verdict"] == "no evidence").all()  # no replicates: the bootstrap half of the verdict is missing
    with pytest.raises(ValueError, match="sizes"):
        C.significance(trials, {}, [{"id": "t", "sizes": {"test": 1}}], baseline="bce")


def test_friedman_folds_reports_too_few_blocks():
    s = pd.DataFrame({"a": [0.9, 0.8, 0.85], "b": [0.7, 0.75, 0.8], "c": [0.6, 0.7, 0.9]})
    r = C.friedman_folds(s, n_perm=2000)
    assert r["n_blocks"] == 3 and r["enough_blocks"] is False and 0 < r["p"] <= 1 and r["p"] == r["p_perm"]
