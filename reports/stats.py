"""Statistics for comparing strategies: mean / std, patient bootstrap CIs, paired tests, Holm, Friedman.

Everything random takes a ``numpy.random.Generator``; nothing seeds a global RNG.

The bootstrap resamples PATIENTS, not images: a patient's images enter or leave a replicate together.
Each replicate is a vector of per-image weights (the multinomial count of the image's patient), so one
sort of each label's scores serves every replicate: weighted AUC and AP of all replicates come from
cumulative sums over a (replicates x images) weight matrix, with no Python loop over replicates.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd

from reports.calibration import CalibrationScorer
from reports.metrics import check_inputs, is_probability

__all__ = ["mean_std", "weighted_auc", "weighted_average_precision", "patient_bootstrap_weights", "MacroScorer",
           "bootstrap_macro_ci", "paired_test", "holm", "nemenyi_q", "friedman_nemenyi"]

# Elements of one (replicates x entries) float64 block; a few such temporaries live at once.
_BLOCK_ELEMENTS = 1 << 22


def mean_std(values, *, return_count: bool = False) -> tuple[float, float] | tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1) of the non-NaN values.

    NaN values are ignored; with ``return_count=True`` the number of values used is returned third.
    The std of a single value is NaN; mean and std of no value are NaN.

    >>> m, s, n = mean_std([0.80, 0.82, np.nan, 0.84], return_count=True)
    >>> round(m, 4), round(s, 4), n
    (0.82, 0.02, 3)
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    mean = float(v.mean()) if v.size else float("nan")
    std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return (mean, std, int(v.size)) if return_count else (mean, std)


# --------------------------------------------------------------------------------------- weighted AUC / AP
class _Ranked:
    """One binary problem sorted once: positive / negative columns of the weight matrix and tie bounds.

    ``pos_cols`` / ``neg_cols`` index the columns of a (B, N) weight matrix (repeats are allowed, for
    pooled micro averages), each sorted by ascending score.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray, cols: np.ndarray):
        pos, neg = y == 1, y == 0
        op, on = np.argsort(s[pos], kind="stable"), np.argsort(s[neg], kind="stable")
        sp, sn = s[pos][op], s[neg][on]
        self.pos_cols, self.neg_cols = cols[pos][op], cols[neg][on]
        # negatives strictly below / at-or-below each positive (ties count 1/2 for AUC)
        self.n_lt, self.n_le = np.searchsorted(sn, sp, "left"), np.searchsorted(sn, sp, "right")
        # AP: positives and negatives scored >= each positive are the first sorted index >= it
        self.p_ge = np.searchsorted(sp, sp, "left")
        # without ties the gathers below reduce to one (AUC) or to a slice (AP): fewer passes
        self.cross_ties = not np.array_equal(self.n_lt, self.n_le)
        self.pos_ties = not np.array_equal(self.p_ge, np.arange(sp.size))

    def auc_ap(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted ROC-AUC and average precision for each row of ``w`` (B, N); NaN where undefined."""
        # int64 weights (counts) sum in integers: exact, as float64's, and numpy's cumsum is 5x faster on them
        b, acc = w.shape[0], (np.int64 if w.dtype == np.int64 else np.float64)
        wp = np.take(w, self.pos_cols, axis=1)
        cn = np.zeros((b, self.neg_cols.size + 1), dtype=acc)
        np.cumsum(np.take(w, self.neg_cols, axis=1), axis=1, out=cn[:, 1:])
        cp = np.zeros((b, self.pos_cols.size + 1), dtype=acc)
        np.cumsum(wp, axis=1, out=cp[:, 1:])
        tot_p, tot_n = cp[:, -1], cn[:, -1]
        ok = (tot_p > 0) & (tot_n > 0)
        below = np.take(cn, self.n_lt, axis=1)  # weighted negatives scored < s_j
        if self.cross_ties:  # ties count 1/2: mean of the strict and non-strict counts
            num = np.einsum("bj,bj->b", wp, below + np.take(cn, self.n_le, axis=1)) * 0.5
        else:
            num = np.einsum("bj,bj->b", wp, below)
        up_to = np.take(cp, self.p_ge, axis=1) if self.pos_ties else cp[:, :-1]
        tp = tot_p[:, None] - up_to  # weighted positives scored >= s_j
        fp = np.subtract(tot_n[:, None], below, out=below)  # negatives scored >= s_j
        prec = np.divide(tp, np.add(tp, fp, out=fp), out=np.zeros(tp.shape), where=wp > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = np.where(ok, num / (tot_p * tot_n), np.nan)
            ap = np.where(ok, np.einsum("bj,bj->b", wp, prec) / tot_p, np.nan)
        return auc, ap


def _binary(y, s, w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, s = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(s, dtype=np.float64).reshape(-1)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
    if not y.shape == s.shape == w.shape:
        raise ValueError(f"y, s and w must have the same length; got {y.size}, {s.size}, {w.size}")
    known = ~np.isnan(y)
    if not np.isin(y[known], (0.0, 1.0)).all() or (w < 0).any() or not np.isfinite(s[known]).all():
        raise ValueError("y must be 1 / 0 / NaN, weights >= 0 and scores finite where y is known")
    return y[known], s[known], w[known]


def weighted_auc(y, s, w=None) -> float:
    """ROC-AUC with per-sample weights: P(score of a positive > score of a negative), ties counting 1/2.

    Equals ``sklearn.metrics.roc_auc_score(y, s, sample_weight=w)``; NaN entries of ``y`` are masked,
    and the result is NaN when either class has zero total weight.

    >>> weighted_auc([1, 0, 1, 0], [0.9, 0.3, 0.5, 0.5], [1, 1, 2, 1])
    0.8333333333333334
    """
    y, s, w = _binary(y, s, w)
    return float(_Ranked(y, s, np.arange(y.size)).auc_ap(w[None, :])[0][0])


def weighted_average_precision(y, s, w=None) -> float:
    """Average precision with per-sample weights; equals sklearn's ``average_precision_score``.

    >>> weighted_average_precision([1, 0, 1, 0], [0.9, 0.3, 0.5, 0.5], [1, 1, 2, 1])
    0.8333333333333334
    """
    y, s, w = _binary(y, s, w)
    return float(_Ranked(y, s, np.arange(y.size)).auc_ap(w[None, :])[1][0])


# ----------------------------------------------------------------------------------------- bootstrap
def _patient_codes(patients, n: int) -> tuple[np.ndarray, int]:
    patients = np.asarray(patients).reshape(-1)
    if patients.size != n:
        raise ValueError(f"patients has {patients.size} entries for {n} images")
    uniq, codes = np.unique(patients, return_inverse=True)
    return codes.reshape(-1), int(uniq.size)


def _weight_blocks(codes: np.ndarray, n_patients: int, n_boot: int, block: int,
                   rng: np.random.Generator) -> Iterator[np.ndarray]:
    probs = np.full(n_patients, 1.0 / n_patients)
    for start in range(0, n_boot, block):
        counts = rng.multinomial(n_patients, probs, size=min(block, n_boot - start))
        yield np.take(counts, codes, axis=1)


def patient_bootstrap_weights(patients, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, N) integer image weights: each replicate draws P patients with replacement out of the P present,
    and every image of a patient gets that patient's draw count (so a patient's images move together).

    >>> w = patient_bootstrap_weights(["a", "a", "b"], n_boot=4, rng=np.random.default_rng(0))
    >>> bool((w[:, 0] == w[:, 1]).all()), w.shape
    (True, (4, 3))
    """
    codes, n_patients = _patient_codes(patients, np.asarray(patients).size)
    return np.concatenate(list(_weight_blocks(codes, n_patients, n_boot, n_boot, rng)))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN) with zero_division=0.0."""
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den, dtype=np.float64), where=den > 0)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(a)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)


class MacroScorer:
    """Macro / micro AUC, AP and F1 of fixed predictions under any (B, N) image-weight matrix.

    Sorts each label's scores once; :meth:`evaluate` then scores B weightings at a time with no Python
    loop over them. ``y`` (N, L) 1 / 0 / NaN, ``p`` (N, L) scores, ``decisions`` (N, L) in [0, 1] or
    None: 0 / 1 decisions (e.g. ``p >= thresholds``), or fractions (a seed-average of decisions, whose
    confusion counts are the seeds' average counts). Conventions are those of
    ``reports.metrics.summary_metrics``: macro = mean over the labels defined (both classes present)
    under the weights, micro pools every known entry, F1 uses zero_division=0.0. When ``p`` are
    probabilities, also ``macro_ece`` and ``macro_brier`` (``reports.calibration.CalibrationScorer``).

    >>> y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], float); p = np.array([[.9, .2], [.1, .8], [.6, .4], [.3, .5]])
    >>> s = MacroScorer(y, p, (p >= 0.5).astype(float))
    >>> {k: round(float(v[0]), 3) for k, v in s.evaluate(np.ones((1, 4))).items()}["macro_auc"]  # (1 + 0.75) / 2
    0.875
    """

    def __init__(self, y, p, decisions=None):
        y, p, _ = check_inputs(y, p)
        self.n, self.n_labels = y.shape
        known = ~np.isnan(y)
        self.problems = [_Ranked(y[known[:, j], j], p[known[:, j], j], np.flatnonzero(known[:, j]))
                         for j in range(self.n_labels)]
        rows, cols = np.nonzero(known)
        self.n_entries = rows.size
        self.pooled = _Ranked(y[rows, cols], p[rows, cols], rows)
        self.metrics = ["macro_auc", "micro_auc", "macro_ap", "micro_ap"]
        # calibration only for probabilities (reports.metrics' convention: other scores have none)
        self.calibration = CalibrationScorer(y, p) if is_probability(y, p) else None
        if self.calibration is not None:
            self.metrics += list(CalibrationScorer.metrics)
        self.conf = None
        if decisions is not None:
            d = np.asarray(decisions, dtype=np.float64)
            if d.shape != y.shape or not np.all((d[known] >= 0) & (d[known] <= 1)):
                raise ValueError(f"decisions must be (N, L) in [0, 1] like y {y.shape}; got {d.shape}")
            d, yz = np.where(known, d, 0.0), np.where(known, y, 0.0)  # unknown entries count nowhere
            self.conf = np.stack([d * yz, d * (1 - yz) * known, (1 - d) * yz])  # TP, FP, FN indicators
            self.metrics += ["macro_f1", "micro_f1"]

    @property
    def block(self) -> int:
        """Weight rows evaluated at once, bounding the temporaries to a few x 32 MB."""
        return max(1, _BLOCK_ELEMENTS // max(self.n, self.n_entries, 1))

    def evaluate(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric for each row of ``w`` (B, N): {metric: (B,)}; NaN where undefined."""
        w = np.asarray(w)
        # integer weights (bootstrap counts, jackknife 0 / 1) sum exactly in integers in the ranked scorers
        ranked = w.astype(np.int64 if w.dtype.kind in "iub" else np.float64, copy=False)
        w = w.astype(np.float64, copy=False)
        auc, ap = np.full((w.shape[0], self.n_labels), np.nan), np.full((w.shape[0], self.n_labels), np.nan)
        for j, prob in enumerate(self.problems):
            auc[:, j], ap[:, j] = prob.auc_ap(ranked)
        micro_auc, micro_ap = self.pooled.auc_ap(ranked)
        out = {"macro_auc": _nanmean_rows(auc), "micro_auc": micro_auc,
               "macro_ap": _nanmean_rows(ap), "micro_ap": micro_ap}
        if self.conf is not None:
            tp, fp, fn = (w @ c for c in self.conf)  # each (b, L)
            f1 = np.where(np.isnan(auc), np.nan, _f1(tp, fp, fn))  # defined labels only
            out["macro_f1"] = _nanmean_rows(f1)
            out["micro_f1"] = _f1(tp.sum(1), fp.sum(1), fn.sum(1))
        if self.calibration is not None:
            out.update(self.calibration.evaluate(w))
        return out

    def estimate(self) -> dict[str, float]:
        """The metrics on the data as they are (every weight 1)."""
        return {k: float(v[0]) for k, v in self.evaluate(np.ones((1, self.n))).items()}


def bootstrap_macro_ci(
    y, p, patients, *, decisions=None, n_boot: int = 1000, alpha: float = 0.05,
    rng: np.random.Generator, return_replicates: bool = False,
) -> dict:
    """Percentile CIs from a patient-level bootstrap for macro / micro AUC, AP and F1.

    ``y`` (N, L) 1 / 0 / NaN, ``p`` (N, L) scores, ``patients`` (N,) patient ids, ``decisions`` (N, L)
    0 / 1 (e.g. ``p >= thresholds``) to add ``macro_f1`` / ``micro_f1``. Conventions follow
    ``reports.metrics.summary_metrics`` (see :class:`MacroScorer`): labels undefined in a replicate are
    skipped for that replicate only. Returns, per metric, ``estimate`` (on the original data, equal to
    ``summary_metrics``), ``lo`` / ``hi`` (the alpha/2 and 1 - alpha/2 quantiles of the replicates) and
    ``n_valid`` (replicates where the metric was defined), plus ``n_boot``, ``n_patients`` and
    ``alpha``; with ``return_replicates`` also ``replicates`` {metric: (n_boot,)}. The replicates' image
    weights are those of :func:`patient_bootstrap_weights` given the same generator state (drawn in
    blocks of replicates to bound memory; the stream is the same). Percentile intervals of AP are
    shifted upwards (duplicated positives raise precision): the leaderboard uses the basic interval for AP
    (``reports.replicates.INTERVAL``), chosen by ``benchmarks/stats_calibration.py``'s coverage.

    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, (60, 3)).astype(float); p = 0.3 * y + 0.7 * rng.random((60, 3))
    >>> ci = bootstrap_macro_ci(y, p, np.arange(60) // 2, n_boot=200, rng=rng)
    >>> ci["macro_auc"]["lo"] < ci["macro_auc"]["estimate"] < ci["macro_auc"]["hi"]
    True
    """
    scorer = MacroScorer(y, p, decisions)
    codes, n_patients = _patient_codes(patients, scorer.n)
    if not 0 < alpha < 1 or n_boot < 1:
        raise ValueError(f"need 0 < alpha < 1 and n_boot >= 1; got alpha={alpha}, n_boot={n_boot}")
    if decisions is not None:
        d, known = np.asarray(decisions, dtype=np.float64), ~np.isnan(np.asarray(y, dtype=np.float64))
        if not np.isin(d[known], (0.0, 1.0)).all():
            raise ValueError(f"decisions must be (N, L) of 0 / 1 like y {known.shape}; got other values")
    estimate = scorer.estimate()
    parts = [scorer.evaluate(w) for w in _weight_blocks(codes, n_patients, n_boot, scorer.block, rng)]
    reps = {k: np.concatenate([part[k] for part in parts]) for k in scorer.metrics}
    result: dict = {"n_boot": int(n_boot), "n_patients": n_patients, "alpha": float(alpha)}
    for k in scorer.metrics:
        r = reps[k][~np.isnan(reps[k])]
        lo, hi = np.quantile(r, [alpha / 2, 1 - alpha / 2]) if r.size else (np.nan, np.nan)
        result[k] = {"estimate": estimate[k], "lo": float(lo), "hi": float(hi), "n_valid": int(r.size)}
    if return_replicates:
        result["replicates"] = reps
    return result


# ----------------------------------------------------------------------------------------- tests
def paired_test(a, b) -> dict:
    """Paired comparison of a strategy ``a`` with the baseline ``b`` on matched (fold, seed) scores.

    Pairs with a NaN on either side are dropped (``n`` says how many remain). Returns ``mean_diff``
    (mean of a - b), ``std_diff``, ``t`` and ``p_t`` (``scipy.stats.ttest_rel``), ``p_wilcoxon``
    (``scipy.stats.wilcoxon``, exact for small untied samples; NaN when every difference is 0), and
    ``p`` = ``p_t`` with ``test`` = 't'. Only for independent pairs: (fold, seed) results of a
    cross-validation are not (they share test images and training data), so the leaderboard's tests
    are ``reports.compare``'s; this one stays for the old rule's known-answer comparison
    (``benchmarks/stats_calibration.py``) and for pairs that are independent.

    >>> r = paired_test([0.821, 0.818, 0.790, 0.830, 0.825], [0.80, 0.80, 0.80, 0.80, 0.80])
    >>> r["n"], round(r["mean_diff"], 4), round(r["p_wilcoxon"], 4)
    (5, 0.0168, 0.125)
    """
    from scipy import stats as sps

    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a and b must be matched pairs; got {a.size} and {b.size} values")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = a - b
    out = {"n": int(diff.size), "mean_diff": float(diff.mean()) if diff.size else float("nan"),
           "std_diff": float(diff.std(ddof=1)) if diff.size > 1 else float("nan"),
           "t": float("nan"), "p_t": float("nan"), "p_wilcoxon": float("nan"), "test": "t"}
    if diff.size > 1 and np.any(diff != 0):
        with warnings.catch_warnings():  # constant nonzero differences: t = +-inf, p = 0 (scipy warns)
            warnings.simplefilter("ignore", RuntimeWarning)
            t = sps.ttest_rel(a, b)
        out["t"], out["p_t"] = float(t.statistic), float(t.pvalue)
        out["p_wilcoxon"] = float(sps.wilcoxon(a, b).pvalue)
    out["p"] = out["p_t"]
    return out


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN.

    The family is the non-NaN p-values (m of them): the i-th smallest gets
    max_{j <= i} min(1, (m - j + 1) p_(j)), as statsmodels' ``multipletests(method="holm")``.

    >>> holm([0.01, 0.04, 0.03, 0.005, np.nan]).round(3).tolist()
    [0.03, 0.06, 0.06, 0.02, nan]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.reshape(-1)
    out = np.full(flat.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(flat))
    if np.any((flat[ok] < 0) | (flat[ok] > 1)):
        raise ValueError(f"p-values must lie in [0, 1]; got {flat[ok].tolist()}")
    m = ok.size
    order = ok[np.argsort(flat[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * flat[order]))
    out[order] = adj
    return out.reshape(p.shape)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha of the Nemenyi test for k methods (Demsar 2006, Table 5a).

    q_alpha = studentized range quantile (1 - alpha, k, df=inf) / sqrt(2).

    >>> round(nemenyi_q(5), 3)
    2.728
    """
    from scipy import stats as sps

    if k < 2:
        raise ValueError(f"the Nemenyi test needs k >= 2 methods; got {k}")
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def _cliques(ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal runs of methods (sorted by rank) whose rank range is < cd, with at least 2 members."""
    r = ranks.sort_values(kind="stable")
    names, v = list(r.index), r.to_numpy()
    out: list[list[str]] = []
    last_end = -1
    for i in range(len(v)):
        end = i
        while end + 1 < len(v) and v[end + 1] - v[i] < cd:
            end += 1
        if end > last_end and end > i:  # not contained in the previous run
            out.append(names[i:end + 1])
        last_end = max(last_end, end)
    return out


def friedman_nemenyi(scores: pd.DataFrame, *, alpha: float = 0.05, higher_is_better: bool = True) -> dict:
    """Friedman test, average ranks, Nemenyi critical difference and cliques for a CD diagram.

    ``scores``: rows = blocks (e.g. backbone x fold x seed), columns = methods. Rows with a NaN are
    dropped (``n_blocks_dropped``). Rank 1 = best in each block, ties averaged. Returns plain,
    JSON-ready values: ``statistic`` / ``p`` (``scipy.stats.friedmanchisquare``, tie-corrected; NaN with
    a ``reason`` for fewer than 3 methods or 2 blocks), ``iman_davenport`` / ``iman_davenport_p`` (the
    F form Demsar recommends), ``average_ranks`` ({method: rank}, best first), ``q_alpha``, ``cd`` =
    q_alpha * sqrt(k (k + 1) / (6 N)), ``pairwise_p`` ({method: {method: Nemenyi p}}) and ``cliques``:
    maximal groups (>= 2 methods, best first) whose pairwise rank differences are all < CD, the bars of
    the diagram. Demsar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7.

    >>> s = pd.DataFrame({"a": [0.9, 0.8, 0.85], "b": [0.7, 0.75, 0.8], "c": [0.6, 0.7, 0.9]})
    >>> r = friedman_nemenyi(s)
    >>> {m: round(v, 3) for m, v in r["average_ranks"].items()}, round(r["cd"], 3)
    ({'a': 1.333, 'b': 2.333, 'c': 2.333}, 1.914)
    """
    from scipy import stats as sps

    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame (blocks x methods); got {type(scores).__name__}")
    complete = scores.dropna(axis=0, how="any").astype(np.float64)
    n, k = complete.shape
    values = complete.to_numpy()
    ranks = sps.rankdata(-values if higher_is_better else values, axis=1)
    avg = pd.Series(ranks.mean(axis=0) if n else np.full(k, np.nan),
                    index=[str(c) for c in complete.columns]).sort_values(kind="stable")
    out: dict = {"n_blocks": int(n), "n_blocks_dropped": int(len(scores) - n), "k": int(k),
                 "statistic": float("nan"), "p": float("nan"), "iman_davenport": float("nan"),
                 "iman_davenport_p": float("nan"), "reason": "",
                 "average_ranks": {m: float(v) for m, v in avg.items()},
                 "q_alpha": float("nan"), "cd": float("nan"), "pairwise_p": {}, "cliques": []}
    if k < 3 or n < 2:
        out["reason"] = f"Friedman needs >= 3 methods and >= 2 complete blocks; got {k} and {n}"
    elif np.all(ranks == ranks[:, :1]):
        out["reason"] = "every method tied in every block"
    else:
        chi2, pval = sps.friedmanchisquare(*values.T)
        out["statistic"], out["p"] = float(chi2), float(pval)
        if chi2 < n * (k - 1):
            ff = (n - 1) * chi2 / (n * (k - 1) - chi2)
            out["iman_davenport"] = float(ff)
            out["iman_davenport_p"] = float(sps.f.sf(ff, k - 1, (k - 1) * (n - 1)))
    if k >= 2 and n >= 1:
        se = np.sqrt(k * (k + 1) / (6.0 * n))
        out["q_alpha"] = nemenyi_q(k, alpha)
        out["cd"] = float(out["q_alpha"] * se)
        diff = np.abs(avg.to_numpy()[:, None] - avg.to_numpy()[None, :]) / se
        pv = sps.studentized_range.sf(diff * np.sqrt(2), k, np.inf)
        pv = np.clip(np.where(diff == 0, 1.0, pv), 0.0, 1.0)
        names = list(avg.index)
        out["pairwise_p"] = {a: {b: float(pv[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}
        out["cliques"] = _cliques(avg, out["cd"])
    return out
