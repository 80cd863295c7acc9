"""Is a strategy's difference from the baseline real? Tests whose unit of replication is the held-out fold.

Seeds of one fold share its test images and its training data, and folds share training data, so
(fold, seed) results are not independent replicates. Every test here first averages seeds within a fold.

- :func:`corrected_t`: Nadeau and Bengio's corrected resampled t-test (2003) on the K fold-level
  differences, variance inflated by n_test / n_train for the overlap of the training sets. Chosen over
  the Bayesian correlated t-test (``baycomp``), which uses the same correlation, because it gives a
  p-value that Holm's correction can take and needs no region of practical equivalence to be chosen.
- :func:`bootstrap_p`: the paired patient bootstrap of the leaderboard's own difference (mean over folds
  of the seed-averaged metric), patients resampled within folds with the same draws for both strategies
  (``reports.replicates``). It measures test-set uncertainty for these trained models only: it cannot see
  how a model would change with another training set, so the report calls a difference real only when
  both tests agree after Holm (:func:`significance`).
- :func:`corrected_f`: the omnibus "do the strategies differ at all?" test: the repeated-measures F test over
  fold blocks (seeds averaged) with the strategy mean square's variance inflated by Nadeau and Bengio's
  factor 1 + K n_test / n_train, the corrected t-test's allowance extended to k strategies (with k = 2 its F
  is the corrected t squared).
- :func:`friedman_folds`: Friedman's mean ranks and Nemenyi's critical difference over fold blocks, with the
  rank test's p-value from the permutation distribution (Monte Carlo over within-block rank permutations).
  It assumes independent folds; folds share training data, and a rank test cannot take the overlap
  allowance (with 5 folds, dividing its statistic by the factor leaves no attainable p below 0.05), so the
  report reads the ranks and the diagram as descriptive and gives the verdicts to :func:`corrected_f` and
  :func:`corrected_t` (``benchmarks/stats_calibration.py`` measures all of them under a correlated null).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from reports import replicates as R
from reports.stats import friedman_nemenyi, holm

__all__ = ["PAIRED_METRICS", "fold_means", "corrected_t", "corrected_f", "bootstrap_p", "friedman_folds", "significance",
           "friedman_permutation_p", "overlap_ratio", "MIN_BLOCKS", "UNIT", "TEST_T", "TEST_BOOT", "ASSUMPTIONS"]

PAIRED_METRICS = ("macro_auc", "macro_ap", "macro_f1")
MIN_BLOCKS = 5  # fewer independent blocks: the page says there are too few to conclude
UNIT = ("the held-out fold: seeds are averaged within each fold first, because they share its test images "
        "and training data")
TEST_T = ("Nadeau and Bengio's corrected resampled t-test on the fold-level differences (variance x "
          "(1/K + n_test/n_train), Student's t with K - 1 degrees of freedom)")
TEST_BOOT = ("paired patient bootstrap of the leaderboard difference: patients resampled within each fold, "
             "the same draws for the strategy and the baseline")
ASSUMPTIONS = ("the t-test assumes fold-level differences with a common correlation n_test / (n_test + "
               "n_train) from the overlap of training sets; the bootstrap treats the trained models as fixed "
               "and patients as independent, so a difference is called real only when both agree after "
               "Holm's correction")


def fold_means(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seed-averaged metric per (backbone, strategy, fold): the unit of replication.

    >>> t = pd.DataFrame({"backbone": "r", "strategy": "a", "fold": [0, 0, 1], "seed": [0, 1, 0],
    ...                   "m": [0.8, 0.6, 0.9]})
    >>> fold_means(t, "m")["m"].round(3).tolist()
    [0.7, 0.9]
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return trials.groupby(["backbone", "strategy", "fold"], sort=False)[metric].mean().reset_index()


def corrected_t(diffs, test_train_ratio: float) -> dict:
    """Corrected resampled t-test (Nadeau & Bengio 2003) on K fold-level differences.

    t = mean(d) / sqrt((1/K + n_test/n_train) var(d)), Student's t with K - 1 degrees of freedom,
    two-sided. NaN differences are dropped; ``p`` is NaN with fewer than 2 differences, and 1.0 when
    every difference is 0 (0.0 when they are all equal and nonzero).

    >>> r = corrected_t([0.02, 0.01, 0.03, 0.015, 0.025], 0.25)
    >>> r["n"], round(r["t"], 3), round(r["p"], 4)
    (5, 3.771, 0.0196)
    """
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    d = d[np.isfinite(d)]
    if not np.isfinite(test_train_ratio) or test_train_ratio < 0:
        raise ValueError(f"test_train_ratio must be a finite number >= 0; got {test_train_ratio!r}")
    out = {"n": int(d.size), "mean_diff": float(d.mean()) if d.size else float("nan"),
           "t": float("nan"), "p": float("nan"), "df": int(max(d.size - 1, 0))}
    if d.size < 2:
        return out
    var = float(d.var(ddof=1))
    if var == 0:
        out["p"] = 1.0 if np.all(d == 0) else 0.0
        out["t"] = 0.0 if np.all(d == 0) else float(np.sign(d.mean()) * np.inf)
        return out
    t = d.mean() / np.sqrt((1.0 / d.size + test_train_ratio) * var)
    out["t"], out["p"] = float(t), float(2 * sps.t.sf(abs(t), d.size - 1))
    return out


def corrected_f(scores, test_train_ratio: float) -> dict:
    """Repeated-measures F test over fold blocks, corrected for overlapping training sets.

    ``scores``: (blocks x strategies) array or DataFrame (folds, seeds averaged); rows with a NaN are
    dropped. With K blocks and k strategies, F = MS_strategy / (MS_residual (1 + K n_test/n_train)), where
    MS_residual is the strategy x block interaction mean square, on (k - 1, (k - 1)(K - 1)) degrees of
    freedom. The factor is the one :func:`corrected_t` applies: a strategy's mean over K folds whose training
    sets overlap varies (1/K + n_test/n_train) / (1/K) times more than K independent folds' would. With
    ``test_train_ratio`` 0 it is the classical two-way (strategy x block) ANOVA F; with k = 2 it is
    :func:`corrected_t`'s t squared. ``p`` is NaN with fewer than 2 complete blocks or 2 strategies, 1.0
    when every strategy has the same mean, 0.0 when the means differ with no interaction at all.

    >>> r = corrected_f([[0.80, 0.78, 0.75], [0.82, 0.80, 0.74], [0.79, 0.76, 0.76],
    ...                  [0.84, 0.80, 0.77], [0.81, 0.79, 0.73]], 0.25)
    >>> r["n_blocks"], r["df"], round(r["F"], 2), round(r["p"], 4), r["inflation"]
    (5, (2, 8), 10.95, 0.0051, 2.25)
    >>> t = corrected_t([0.02, 0.02, 0.03, 0.04, 0.02], 0.25)["t"]
    >>> f = corrected_f([[0.80, 0.78], [0.82, 0.80], [0.79, 0.76], [0.84, 0.80], [0.81, 0.79]], 0.25)["F"]
    >>> bool(np.isclose(f, t ** 2))
    True
    """
    a = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(test_train_ratio) or test_train_ratio < 0:
        raise ValueError(f"test_train_ratio must be a finite number >= 0; got {test_train_ratio!r}")
    a = a[np.all(np.isfinite(a), axis=1)] if a.ndim == 2 else np.empty((0, 0))
    n, k = a.shape if a.ndim == 2 else (0, 0)
    out = {"n_blocks": int(n), "n_strategies": int(k), "df": (int(max(k - 1, 0)), int(max((k - 1) * (n - 1), 0))),
           "inflation": float(1.0 + n * test_train_ratio), "F": float("nan"), "p": float("nan")}
    if n < 2 or k < 2:
        return out
    col, row, grand = a.mean(axis=0), a.mean(axis=1, keepdims=True), a.mean()
    ms_strategy = n * float(np.sum((col - grand) ** 2)) / (k - 1)
    ms_residual = float(np.sum((a - row - col + grand) ** 2)) / ((k - 1) * (n - 1))
    tiny = 1e-24 * max(float(np.max(np.abs(a))) ** 2, 1e-300)  # below rounding of the values themselves
    if ms_residual <= tiny:
        out["F"], out["p"] = (0.0, 1.0) if ms_strategy <= tiny else (float("inf"), 0.0)
        return out
    f = ms_strategy / (ms_residual * out["inflation"])
    out["F"], out["p"] = float(f), float(sps.f.sf(f, *out["df"]))
    return out


def bootstrap_p(diff_replicates) -> float:
    """Two-sided bootstrap p-value that a difference is 0: 2 x the smaller tail share of the replicates
    on either side of 0, each tail counted as (1 + #) / (1 + B) so p is never 0; capped at 1.

    >>> bootstrap_p(np.r_[np.full(97, 0.01), np.full(3, -0.01)])
    0.0792...
    """
    r = np.asarray(diff_replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan")
    tail = min(np.count_nonzero(r <= 0), np.count_nonzero(r >= 0))
    return float(min(1.0, 2 * (1 + tail) / (1 + r.size)))


def friedman_folds(scores: pd.DataFrame, *, n_perm: int = 20000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Friedman / Nemenyi (``reports.stats.friedman_nemenyi``) over fold blocks, p by permutation.

    ``scores``: rows = blocks (folds, seeds averaged), columns = strategies. ``p_perm`` is the share of
    ``n_perm`` within-block rank permutations (plus the observed one) whose Friedman statistic is at least
    the observed one: exact up to Monte Carlo error for any number of independent blocks. ``p`` = ``p_perm``;
    ``p_chi2`` keeps the chi-square approximation. ``enough_blocks`` is False below :data:`MIN_BLOCKS`.
    Folds share training data, so their blocks are not fully independent: a ranking shared by every fold
    because of the overlap passes as real (``benchmarks/stats_calibration.py`` measures by how much), so
    the page gives the verdict to the corrected t-test and says so.

    >>> s = pd.DataFrame({"a": [.9, .8, .85, .9, .7], "b": [.7, .75, .8, .6, .65], "c": [.6, .7, .9, .5, .6]})
    >>> r = friedman_folds(s, n_perm=2000); r["n_blocks"], r["enough_blocks"], round(r["p_perm"], 2)
    (5, True, 0.08)
    """
    res = friedman_nemenyi(scores, alpha=alpha)
    res["p_chi2"] = res["p"]
    res["p_perm"] = float("nan")
    complete = scores.dropna(axis=0, how="any").to_numpy(dtype=np.float64)
    n = complete.shape[0] if complete.ndim == 2 else 0
    res["enough_blocks"] = bool(n >= MIN_BLOCKS)
    if np.isfinite(res["statistic"]):
        res["p_perm"] = friedman_permutation_p(complete, n_perm=n_perm, rng=np.random.default_rng(seed))
        res["p"] = res["p_perm"]
    return res


def friedman_permutation_p(values, *, n_perm: int, rng: np.random.Generator) -> float:
    """Permutation p-value of Friedman's statistic for a (blocks x methods) array, higher = better.

    Under the null every method order within a block is equally likely and blocks are independent, so
    the p-value is the share of ``n_perm`` random within-block rank permutations (plus the observed one)
    whose centred statistic sum_j (R_j - N (k + 1) / 2)^2 (R_j: rank sums; Friedman's chi-square is
    proportional to it) is at least the observed one.

    >>> round(friedman_permutation_p([[3, 2, 1]] * 4, n_perm=5000, rng=np.random.default_rng(0)), 3)
    0.005
    """
    ranks = sps.rankdata(-np.asarray(values, dtype=np.float64), axis=1)
    n, k = ranks.shape
    centre = n * (k + 1) / 2.0

    def stat(r: np.ndarray) -> np.ndarray:
        return np.sum((r.sum(axis=-2) - centre) ** 2, axis=-1)

    observed = stat(ranks)
    count, done = 0, 0
    while done < n_perm:
        b = min(4000, n_perm - done)
        perm = rng.permuted(np.broadcast_to(ranks, (b, n, k)), axis=2)
        count += int(np.count_nonzero(stat(perm) >= observed - 1e-9))
        done += b
    return float((1 + count) / (1 + n_perm))


def overlap_ratio(docs: Sequence[Mapping]) -> float:
    """Mean n_test / n_train over trials (n_train: the images the model could learn from, train + val);
    every trial's ``metrics.json`` records its ``sizes``."""
    r = []
    for d in docs:
        sizes = d.get("sizes") or {}
        if not {"test", "train"} <= set(sizes):
            raise ValueError(f"trial {d.get('id')!r}: metrics.json has no sizes.test / sizes.train, which the "
                             "corrected t-test needs (re-run the trial with this version)")
        r.append(sizes["test"] / max(sizes["train"] + sizes.get("val", 0), 1))
    return float(np.mean(r)) if r else float("nan")


def significance(trials: pd.DataFrame, reps: Mapping[str, Mapping], docs: Sequence[Mapping], *, baseline: str,
                 metrics: Sequence[str] = PAIRED_METRICS, alpha: float = 0.05) -> pd.DataFrame:
    """Each strategy against ``baseline`` within each backbone, on the folds both ran.

    ``trials``: one row per trial (``id``, ``backbone``, ``strategy``, ``fold``, ``seed`` and the metrics);
    ``reps``: trial id -> :func:`reports.replicates.trial_replicates` result (may be empty: no bootstrap).
    Columns: ``n_folds``, ``n_trials``, ``mean_diff`` (difference of the leaderboard values over the
    common folds), ``ci_low`` / ``ci_high`` (paired bootstrap, ``reports.replicates.interval``), ``p_boot`` /
    ``p_boot_holm``, ``t`` / ``p_t`` / ``p_t_holm`` (corrected t), ``verdict`` (better / worse / no evidence: both Holm p-values below alpha
    with the same sign), Holm within backbone x metric.
    """
    ratio = overlap_ratio(docs)
    rows = []
    baseline_aggs: dict = {}  # the baseline's aggregate over a set of folds serves every strategy compared with it
    for backbone, g in trials.groupby("backbone", sort=False):
        base = g[g["strategy"] == baseline]
        if base.empty:
            continue
        for strategy, gs in g[g["strategy"] != baseline].groupby("strategy", sort=False):
            folds = sorted(set(gs["fold"]) & set(base["fold"]))
            a, b = gs[gs["fold"].isin(folds)], base[base["fold"].isin(folds)]
            for metric in metrics:
                fa = fold_means(a, metric).set_index("fold")[metric]
                fb = fold_means(b, metric).set_index("fold")[metric]
                t = corrected_t((fa - fb).reindex(folds).to_numpy(), ratio)
                row = {"backbone": backbone, "strategy": strategy, "baseline": baseline, "metric": metric,
                       "n_folds": len(folds), "n_trials": int(len(a) + len(b)),
                       "mean_diff": float(fa.mean() - fb.mean()) if folds else np.nan,
                       "t": t["t"], "p_t": t["p"], "ci_low": np.nan, "ci_high": np.nan, "p_boot": np.nan}
                ra = [reps[i] for i in a["id"] if i in reps]
                rb = [reps[i] for i in b["id"] if i in reps]
                if folds and len(ra) == len(a) and len(rb) == len(b) and metric in R.METRICS:
                    key = (backbone, tuple(folds), metric)
                    if key not in baseline_aggs:
                        baseline_aggs[key] = R.aggregate(rb, metric)
                    ga, gb = R.aggregate(ra, metric), baseline_aggs[key]
                    diff = ga["replicates"] - gb["replicates"]
                    est = ga["estimate"] - gb["estimate"]
                    row["ci_low"], row["ci_high"] = R.interval(metric, diff, est, ga["jackknife"] - gb["jackknife"],
                                                               alpha=alpha)
                    row["p_boot"] = bootstrap_p(diff)
                rows.append(row)
    cols = ["backbone", "strategy", "baseline", "metric", "n_folds", "n_trials", "mean_diff", "ci_low", "ci_high",
            "p_boot", "p_boot_holm", "t", "p_t", "p_t_holm", "verdict"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    for _, idx in df.groupby(["backbone", "metric"], sort=False).groups.items():
        df.loc[idx, "p_boot_holm"] = holm(df.loc[idx, "p_boot"].to_numpy(dtype=float))
        df.loc[idx, "p_t_holm"] = holm(df.loc[idx, "p_t"].to_numpy(dtype=float))
    real = (df["p_boot_holm"] < alpha) & (df["p_t_holm"] < alpha)
    df["verdict"] = np.where(real & (df["mean_diff"] > 0), "better",
                             np.where(real & (df["mean_diff"] < 0), "worse", "no evidence"))
    return df[cols]
