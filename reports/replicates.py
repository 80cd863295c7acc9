"""Bootstrap replicates a trial computes about itself, and the intervals the report builds from them.

**What a trial computes** (on its worker, beside its training): the leaderboard metrics of its held-out
fold under ``n_boot`` patient-bootstrap weightings and ``groups`` delete-a-group jackknife weightings
(:func:`trial_replicates`), saved as ``bootstrap.npz``. The weights depend only on (``seed``, fold, the
fold's sorted patient ids): every trial of a fold (any backbone, strategy, seed) gets the same resampled
patients, so replicates **pair** across strategies, and folds are resampled independently (a bootstrap
stratified by fold; folds are patient-disjoint). An external test set (``protocol: external``) is another
matter: every fold's models score the *same* images, so its weights depend on (``seed``, the set's patients)
alone (``shared=True``, :func:`draws_of`): resampling it independently per fold would average K independent
draws of one set and shrink its interval about sqrt(K)-fold (``benchmarks/drop_coverage.py`` measured it).

**What only the report can compute**: anything across trials. A leaderboard row is the mean over its
folds of the mean over the fold's seeds (seeds are averaged first: they share the fold's test images);
its replicate b is the same mean of the trials' replicates b (:func:`aggregate`), and its interval is the
one :data:`INTERVAL` names for the metric, chosen by coverage simulation (``benchmarks/stats_calibration.py``):
percentile for micro AUC and F1, basic (reverse percentile) for AP and ECE, whose bootstrap distributions
duplicated images push upwards, and for macro AUC a t interval with the jackknife's standard error
(:func:`jackknife_interval`: the bootstrap under-states a rare label's AUC variance with 1-2 positive
patients); :func:`bca_interval` (acceleration from the jackknife values) is measured beside them. A
difference between two rows is the difference of their aggregates, replicate by replicate (paired by
construction), and jackknife value by jackknife value.
``reports.compare`` turns that into the paired bootstrap test.

The report recomputes the replicates from ``predictions.npz`` with the same function when a trial's
``bootstrap.npz`` is missing or was made with other settings, so both paths give identical numbers.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from reports.runfolder import BOOTSTRAP_NPZ
from reports.stats import MacroScorer, _patient_codes

__all__ = ["FILE", "METRICS", "INTERVAL", "trial_replicates", "save", "load", "aggregate", "interval", "bca_interval",
           "basic_interval", "percentile_interval", "jackknife_interval", "patients_digest", "draws_of"]

FILE = BOOTSTRAP_NPZ  # a trial folder's name for its replicates (reports.runfolder owns the layout)
METRICS = ("macro_auc", "micro_auc", "macro_ap", "macro_f1", "micro_f1", "macro_ece", "macro_brier")
JACKKNIFE_GROUPS = 20
SHARED_STREAM = 2 ** 31 - 1  # the random stream of a test set shared by all folds (never a fold number)


def patients_digest(patients) -> str:
    """A short hash of a fold's sorted unique patient ids (checks that two trials' replicates pair)."""
    uniq = np.unique(np.asarray(patients).astype(str))
    return hashlib.sha256("\n".join(uniq.tolist()).encode()).hexdigest()[:16]


def draws_of(doc: Mapping) -> dict:
    """The keys of a trial's patient draws, from its ``metrics.json``: ``fold``, and ``shared`` for the scores
    of an external test set (the document names its ``test_set``), whose draws every fold's models share.

    >>> draws_of({"fold": 3}), draws_of({"fold": 3, "test_set": "site-b"})
    ({'fold': 3, 'shared': False}, {'fold': 3, 'shared': True})
    """
    return {"fold": int(doc["fold"]), "shared": bool(doc.get("test_set"))}


def fold_weights(patients, *, n_boot: int, fold: int, seed: int, groups: int = JACKKNIFE_GROUPS,
                 shared: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(n_boot, N) bootstrap and (G, N) jackknife image weights (integers) for one held-out fold.

    Bootstrap: P patients drawn with replacement out of the fold's P (multinomial counts), from
    ``np.random.default_rng([seed, fold])`` (``[seed, SHARED_STREAM]`` when ``shared``: a test set every
    fold's models score, drawn alike for all of them); an image gets its patient's count, so the weights do
    not depend on the images' order. Jackknife: patients in sorted order are dealt into G groups (patient i
    to group i mod G); weighting g gives weight 0 to group g and 1 elsewhere.

    >>> b, j = fold_weights(["p2", "p1", "p1"], n_boot=3, fold=0, seed=0, groups=2)
    >>> b.shape, j.tolist()
    ((3, 3), [[1, 0, 0], [0, 1, 1]])
    """
    codes, n_patients = _patient_codes(patients, np.asarray(patients).size)
    rng = np.random.default_rng([int(seed), SHARED_STREAM if shared else int(fold)])
    counts = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=int(n_boot))
    boot = np.take(counts, codes, axis=1)
    g = min(int(groups), n_patients)
    jack = (codes[None, :] % g != np.arange(g)[:, None]).astype(np.int64)
    return boot, jack


def trial_replicates(y, p, decisions, patients, *, n_boot: int, fold: int, seed: int,
                     groups: int = JACKKNIFE_GROUPS, shared: bool = False) -> dict:
    """One trial's metrics on its held-out fold (or, ``shared``, on a test set all folds share): estimate,
    bootstrap replicates, jackknife values.

    ``decisions`` (N, L) 0 / 1 (``p >= thresholds``). Returns ``{"estimate": {m: float}, "replicates":
    {m: (n_boot,)}, "jackknife": {m: (G,)}, "n_boot", "fold", "seed", "groups", "patients", "shared"}`` for
    the metrics of :data:`METRICS` (NaN where a metric is undefined under a weighting).

    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random((80, 2)) < 0.3).astype(float); p = 0.4 * y + 0.6 * rng.random((80, 2))
    >>> r = trial_replicates(y, p, (p >= 0.5).astype(float), np.arange(80) // 2, n_boot=50, fold=1, seed=0)
    >>> r["replicates"]["macro_ap"].shape, r["jackknife"]["macro_ap"].shape
    ((50,), (20,))
    """
    scorer = MacroScorer(y, p, decisions)
    boot, jack = fold_weights(patients, n_boot=n_boot, fold=fold, seed=seed, groups=groups, shared=shared)
    est = scorer.estimate()
    estimate = {m: est.get(m, float("nan")) for m in METRICS}
    reps = {m: [] for m in METRICS}
    for start in range(0, boot.shape[0], scorer.block):
        part = _complete(scorer.evaluate(boot[start:start + scorer.block]), min(scorer.block, boot.shape[0] - start))
        for m in METRICS:
            reps[m].append(part[m])
    jk = _complete(scorer.evaluate(jack), jack.shape[0])
    return {"estimate": {m: estimate[m] for m in METRICS},
            "replicates": {m: (np.concatenate(reps[m]) if reps[m] else np.zeros(0)) for m in METRICS},
            "jackknife": {m: jk[m] for m in METRICS}, "n_boot": int(n_boot), "fold": int(fold),
            "seed": int(seed), "groups": int(jack.shape[0]), "patients": patients_digest(patients),
            "shared": bool(shared)}


def _complete(values: Mapping, n: int) -> dict:
    """(n,) replicates of every metric of :data:`METRICS`, NaN for those the scorer does not compute
    (calibration of scores that are not probabilities)."""
    return {m: np.asarray(values[m], dtype=np.float64) if m in values else np.full(n, np.nan) for m in METRICS}


def save(path: Path, rep: Mapping) -> None:
    """Write :func:`trial_replicates`' result to ``path`` (an ``.npz``; written by the caller atomically)."""
    arrays = {f"est_{m}": np.float64(rep["estimate"][m]) for m in METRICS}
    arrays.update({f"rep_{m}": rep["replicates"][m] for m in METRICS})
    arrays.update({f"jack_{m}": rep["jackknife"][m] for m in METRICS})
    arrays.update({k: np.asarray(rep[k]) for k in ("n_boot", "fold", "seed", "groups", "patients", "shared")})
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load(path: Path) -> dict:
    """Read a file written by :func:`save` back into :func:`trial_replicates`' form. Raises ``KeyError`` for a
    file that lacks one of :data:`METRICS` (written before that metric existed: recompute it). A file written
    before ``shared`` existed has per-fold draws (``shared`` False)."""
    with np.load(path, allow_pickle=False) as z:
        missing = [m for m in METRICS if f"rep_{m}" not in z.files]
        if missing:
            raise KeyError(f"{path}: no replicates of {', '.join(missing)}")
        return {"estimate": {m: float(z[f"est_{m}"]) for m in METRICS},
                "replicates": {m: z[f"rep_{m}"].astype(np.float64) for m in METRICS},
                "jackknife": {m: z[f"jack_{m}"].astype(np.float64) for m in METRICS},
                "n_boot": int(z["n_boot"]), "fold": int(z["fold"]), "seed": int(z["seed"]),
                "groups": int(z["groups"]), "patients": str(z["patients"]),
                "shared": bool(z["shared"]) if "shared" in z.files else False}


def _fold_mean(values: Sequence[np.ndarray]) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (undefined metric) stays NaN
        return np.nanmean(np.vstack(values), axis=0)


def aggregate(trials: Sequence[Mapping], metric: str) -> dict:
    """A leaderboard row's estimate, replicates and jackknife values from its trials' replicates.

    The row is the mean over folds of the mean over each fold's seeds (NaN-skipping). Its replicate b
    averages the trials' replicates b the same way (trials of a fold share their patient draws).
    Jackknife values: one per (fold, group): the row with that fold's trials replaced by their
    jackknife value for that group. Returns ``estimate``, ``replicates`` (n_boot,), ``jackknife`` (units,),
    ``folds`` (sorted fold numbers).

    >>> t = [{"fold": f, "estimate": {"m": v}, "replicates": {"m": np.array([v, v + .1])},
    ...       "jackknife": {"m": np.array([v, v])}} for f, v in [(0, .8), (0, .6), (1, .9)]]
    >>> a = aggregate(t, "m"); round(a["estimate"], 3), a["replicates"].round(3).tolist(), a["folds"]
    (0.8, [0.8, 0.9], [0, 1])
    """
    by_fold: dict[int, list[Mapping]] = {}
    for t in trials:
        by_fold.setdefault(int(t["fold"]), []).append(t)
    folds = sorted(by_fold)
    est_f = np.array([float(_fold_mean([np.atleast_1d(t["estimate"][metric]) for t in by_fold[f]])[0])
                      for f in folds])
    reps_f = np.vstack([_fold_mean([t["replicates"][metric] for t in by_fold[f]]) for f in folds])
    jack_f = [_fold_mean([t["jackknife"][metric] for t in by_fold[f]]) for f in folds]
    estimate = float(_fold_mean(list(est_f[:, None]))[0])
    replicates = _fold_mean(list(reps_f)) if len(folds) > 1 else reps_f[0]
    jack = []
    for i, jf in enumerate(jack_f):
        for value in jf:
            others = np.delete(est_f, i)
            jack.append(float(_fold_mean(list(np.append(others, value)[:, None]))[0]))
    return {"estimate": estimate, "replicates": np.asarray(replicates, dtype=np.float64),
            "jackknife": np.asarray(jack, dtype=np.float64), "folds": folds}


def bca_interval(replicates, estimate: float, jackknife, *, alpha: float = 0.05) -> tuple[float, float]:
    """Bias-corrected and accelerated bootstrap interval (Efron 1987; Efron & Tibshirani 1993, ch. 14).

    z0 = Phi^-1(share of replicates below the estimate, ties counting 1/2) corrects the bootstrap
    distribution's median bias (e.g. AP's upward shift); the acceleration a = sum d^3 / (6 (sum d^2)^1.5),
    d = mean(jackknife) - jackknife, corrects for a standard error that changes with the parameter. The
    interval is the replicates' quantiles at Phi(z0 + (z0 + z) / (1 - a (z0 + z))) for z = z_{alpha/2},
    z_{1-alpha/2}. NaN replicates are dropped; (NaN, NaN) when none is left or the estimate is NaN.
    Agrees with ``scipy.stats.bootstrap(method="BCa")`` given the same replicates and leave-one-out
    jackknife (tests/test_replicates.py).

    >>> rng = np.random.default_rng(0); x = rng.exponential(size=40)
    >>> reps = rng.choice(x, (2000, 40)).mean(1); jack = (x.sum() - x) / 39
    >>> lo, hi = bca_interval(reps, x.mean(), jack); bool(lo < x.mean() < hi)
    True
    """
    from scipy import stats as sps

    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0 or not np.isfinite(estimate):
        return float("nan"), float("nan")
    below = (np.count_nonzero(r < estimate) + 0.5 * np.count_nonzero(r == estimate)) / r.size
    below = min(max(below, 0.5 / r.size), 1 - 0.5 / r.size)  # keep z0 finite with every replicate on one side
    z0 = sps.norm.ppf(below)
    j = np.asarray(jackknife, dtype=np.float64)
    j = j[np.isfinite(j)]
    d = j.mean() - j if j.size > 1 else np.zeros(1)
    den = 6.0 * float(np.sum(d ** 2)) ** 1.5
    a = float(np.sum(d ** 3) / den) if den > 0 else 0.0
    levels = []
    for q in (alpha / 2, 1 - alpha / 2):
        z = sps.norm.ppf(q)
        levels.append(float(sps.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))))
    lo, hi = np.quantile(r, levels)
    return float(lo), float(hi)


def percentile_interval(replicates, estimate: float, jackknife=None, *, alpha: float = 0.05) -> tuple[float, float]:
    """The replicates' alpha/2 and 1 - alpha/2 quantiles (NaN replicates dropped).

    >>> percentile_interval(np.arange(101) / 100, 0.5)
    (0.025, 0.975)
    """
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0 or not np.isfinite(estimate):
        return float("nan"), float("nan")
    lo, hi = np.quantile(r, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def basic_interval(replicates, estimate: float, jackknife=None, *, alpha: float = 0.05) -> tuple[float, float]:
    """The basic (reverse-percentile) interval [2 est - q_hi, 2 est - q_lo] (Davison & Hinkley 1997, 5.2):
    it reflects the replicates' offset from the estimate, so a bias the bootstrap reproduces (AP's upward
    one with few positives) is removed instead of added.

    >>> [round(v, 4) for v in basic_interval(0.52 + np.arange(101) / 1000, 0.55)]  # replicates shifted up
    [0.4825, 0.5775]
    """
    lo, hi = percentile_interval(replicates, estimate, alpha=alpha)
    return float(2 * estimate - hi), float(2 * estimate - lo)


def jackknife_interval(replicates, estimate: float, jackknife, *, alpha: float = 0.05) -> tuple[float, float]:
    """Normal-theory interval with the delete-a-group jackknife's standard error: estimate -+ t se, with
    se^2 = (n - 1) / n * sum (j - mean(j))^2 over the n finite jackknife values and t Student's 1 - alpha/2
    quantile on n - 1 degrees of freedom (Efron & Tibshirani 1993, ch. 11; Kott 2001 for groups).

    Unlike the bootstrap, the jackknife variance of a two-sample statistic such as a label's AUC has no
    (m - 1) / m deficit on the side with m positives (for a mean it is s^2 / n exactly), which matters for
    macro AUC with 1-2 positive patients of a rare label in a fold (README, "How far the verdicts can be
    trusted"). :func:`aggregate`'s K x G values of a K-fold row are taken as one jackknife of K G groups:
    (KG - 1) / KG over (G - 1) / G times the fold-stratified variance (3.5% more for 3 folds of 20).
    ``replicates`` are not used. NaN jackknife values are dropped; (NaN, NaN) when the estimate is NaN or
    fewer than 2 values are left.

    >>> x = np.array([1.0, 2.0, 4.0, 7.0]); jack = (x.sum() - x) / 3  # leave-one-out means
    >>> [round(v, 3) for v in jackknife_interval(None, x.mean(), jack)]  # = mean -+ t_3 * s / sqrt(4)
    [-0.71, 7.71]
    """
    from scipy import stats as sps

    j = np.asarray(jackknife, dtype=np.float64).reshape(-1)
    j = j[np.isfinite(j)]
    if j.size < 2 or not np.isfinite(estimate):
        return float("nan"), float("nan")
    se = float(np.sqrt((j.size - 1) / j.size * np.sum((j - j.mean()) ** 2)))
    t = float(sps.t.ppf(1 - alpha / 2, j.size - 1))
    return float(estimate - t * se), float(estimate + t * se)


_METHODS = {"bca": bca_interval, "percentile": percentile_interval, "basic": basic_interval,
            "jackknife": jackknife_interval}
# The interval of each leaderboard metric: the method whose coverage of the population value was closest to
# 95% in benchmarks/stats_calibration.py (README, "How far the verdicts can be trusted"). Macro AUC: the
# jackknife's, because the bootstrap's variance of a rare label's AUC is too small with 1-2 positive patients.
INTERVAL = {"macro_auc": "jackknife", "micro_auc": "percentile", "macro_ap": "basic", "macro_f1": "percentile",
            "micro_f1": "percentile", "macro_ece": "basic", "macro_brier": "percentile"}


#: How the page and the paper tables name each interval method.
METHOD_WORDS = {"jackknife": "a t interval with the delete-a-group jackknife's standard error",
                "basic": "basic bootstrap", "percentile": "percentile bootstrap", "bca": "BCa bootstrap"}


def describe_intervals(names: dict[str, str]) -> str:
    """Which interval each metric of ``names`` (column -> how the table names it) has, by :data:`INTERVAL`: the
    most common method last, as "otherwise".

    >>> describe_intervals({"macro_auc": "macro AUC", "micro_auc": "micro AUC", "macro_ap": "mAP"})
    "a t interval with the delete-a-group jackknife's standard error for macro AUC, basic bootstrap for mAP, percentile bootstrap otherwise"
    """
    shown = [c for c in names if c in INTERVAL]
    methods = list(dict.fromkeys(INTERVAL[c] for c in shown))
    common = max(methods, key=lambda m: (sum(INTERVAL[c] == m for c in shown), list(INTERVAL.values()).count(m)),
                 default=None)  # ties: the method most metrics use
    parts = [f"{METHOD_WORDS.get(m, m)} for " + " and ".join(names[c].replace(" ↓", "") for c in shown
                                                            if INTERVAL[c] == m) for m in methods if m != common]
    return ", ".join(parts + ([f"{METHOD_WORDS.get(common, common)} otherwise"] if common else []))


def interval(metric: str, replicates, estimate: float, jackknife, *, alpha: float = 0.05,
             method: str | None = None) -> tuple[float, float]:
    """The 1 - alpha interval of ``metric`` by ``method`` (default :data:`INTERVAL`'s choice for it)."""
    name = method or INTERVAL.get(metric, "bca")
    if name not in _METHODS:
        raise ValueError(f"interval method {name!r}: expected one of {sorted(_METHODS)}")
    return _METHODS[name](replicates, estimate, jackknife, alpha=alpha)
