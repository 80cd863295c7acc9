"""Known-answer checks of the report's statistics: false-positive rates, power and interval coverage.

Every simulation calls the project's own functions (``reports.compare``, ``reports.replicates``,
``reports.stats``) on data whose answer is known:

- ``false_positive_rate``: a **correlated null** as in a real cross-validated benchmark: 4 strategies,
  5 folds x 3 seeds, no true difference, a strategy x fold effect with sd r x the seed sd (r = 1, 2),
  and (``overlap``) a component shared by a strategy's folds with correlation n_test / (n_test + n_train),
  from overlapping training sets. Each test's rate of p < 0.05, per comparison with the baseline. The old
  tests (``naive_*``: (fold, seed) pairs or blocks counted as independent) are listed for comparison.
  The paired bootstrap is also checked at the prediction level, under the null it can answer (the trained
  models are equally good on the population; models differ image by image) and under the correlated
  null above, which it cannot see (the report's verdict also needs the corrected t-test).
- ``power``: the same tests when one strategy is better by 0.02 macro AUC.
- ``coverage``: the share of nominal 95% intervals (the report's per-metric choice, and each method:
  percentile, basic, BCa, jackknife t) containing the population value, for a scorer whose population macro / micro AUC, macro AP and macro / micro F1 are
  known (binormal scores, NIH-like prevalences, patients with several correlated images), at the demo's
  test-fold size (3 folds of 400 images) and full NIH's (22,424 images per fold).

Usage::

    .venv/bin/python benchmarks/stats_calibration.py --json            # full settings (README figures)
    .venv/bin/python benchmarks/stats_calibration.py --json --quick    # fewer replicates (the test suite)
    .venv/bin/python benchmarks/stats_calibration.py --json --only coverage > cov.json   # one part
    .venv/bin/python benchmarks/stats_calibration.py --json --only coverage --size nih --boot 2   # jackknife only
    .venv/bin/python benchmarks/stats_calibration.py --markdown fold.json cov.json       # README tables
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from reports import compare as C
from reports import replicates as R
from reports.stats import MacroScorer, paired_test

# Image-level prevalences of the 14 findings in NIH ChestX-ray14's full label file (112,120 images),
# Infiltration 17.7% down to Hernia 0.20%.
NIH_PREVALENCE = (0.1774, 0.1188, 0.1031, 0.0565, 0.0516, 0.0473, 0.0416, 0.0302, 0.0248, 0.0224, 0.0205,
                  0.0150, 0.0128, 0.0020)
# The demo's synthetic prevalences (bench/data/synthetic.py PREVALENCE; Hernia raised to 0.5%).
DEMO_PREVALENCE = (0.177, 0.119, 0.103, 0.056, 0.052, 0.047, 0.042, 0.030, 0.025, 0.022, 0.020, 0.015, 0.013,
                   0.005)


# ------------------------------------------------------------------------------ fold-level null
def _fold_values(rng, *, n_strategies, folds, seeds, r, sd_seed, delta, overlap):
    """(strategies, folds, seeds) per-trial metric values; strategy 1 is better by ``delta``."""
    fold_sd = r * sd_seed
    u = rng.normal(0.0, fold_sd, (n_strategies, folds, 1))
    if overlap:  # training sets overlap: a strategy's folds share a component, corr n_test / n_total
        rho = 1.0 / folds
        u = np.sqrt(1 - rho) * u + np.sqrt(rho) * rng.normal(0.0, fold_sd, (n_strategies, 1, 1))
    v = 0.80 + u + rng.normal(0.0, sd_seed, (n_strategies, folds, seeds))
    v[1] += delta
    return v


def fold_level(n_studies: int, *, r: float, delta: float = 0.0, overlap: bool = False, folds: int = 5,
               seeds: int = 3, n_strategies: int = 4, sd_seed: float = 0.01, seed: int = 0,
               n_perm: int = 2000) -> dict[str, float]:
    """Rejection rates (p < 0.05) of the fold-level tests and of the old trial-level ones."""
    rng = np.random.default_rng([seed, int(r * 100), int(delta * 1e4), int(overlap)])
    hits = {"corrected_t": [], "corrected_f": [], "friedman_folds": [], "naive_paired_t": [], "naive_friedman": []}
    ratio = 1.0 / (folds - 1)
    for _ in range(n_studies):
        v = _fold_values(rng, n_strategies=n_strategies, folds=folds, seeds=seeds, r=r, sd_seed=sd_seed,
                         delta=delta, overlap=overlap)
        fm = v.mean(axis=2)
        pairs = [1] if delta else range(1, n_strategies)  # power: the better strategy only
        for s in pairs:
            hits["corrected_t"].append(C.corrected_t(fm[s] - fm[0], ratio)["p"] < 0.05)
            hits["naive_paired_t"].append(paired_test(v[s].ravel(), v[0].ravel())["p"] < 0.05)
        # the report's omnibus test (reports.compare.corrected_f), over all strategies
        hits["corrected_f"].append(C.corrected_f(fm.T, ratio)["p"] < 0.05)
        # the Friedman rank test's p (reports.compare.friedman_folds; descriptive on the page)
        hits["friedman_folds"].append(C.friedman_permutation_p(fm.T, n_perm=n_perm, rng=rng) < 0.05)
        # the old test: every (fold, seed) a block, chi-square p (reports.stats.friedman_nemenyi's p)
        hits["naive_friedman"].append(sps.friedmanchisquare(*v.reshape(n_strategies, -1)).pvalue < 0.05)
    return {k: float(np.mean(x)) for k, x in hits.items()}


# ------------------------------------------------------------------------------ prediction level
@dataclass
class Population:
    """A multi-label scorer with known population metrics: label l's scores are N(0, 1) for negatives
    and N(d_l, 1) for positives; the decision threshold t_l maximises the population F1."""

    prevalence: np.ndarray
    d: np.ndarray
    temperature: float = 0.7  # probabilities: the calibrated ones' logit x this (< 1: under-confident)

    @classmethod
    def make(cls, prevalence, auc_low: float = 0.70, auc_high: float = 0.90) -> "Population":
        prevalence = np.asarray(prevalence, dtype=np.float64)
        auc = np.linspace(auc_high, auc_low, prevalence.size)
        return cls(prevalence, np.sqrt(2) * sps.norm.ppf(auc))

    def __post_init__(self):
        grid = np.linspace(-8, 12, 40001)
        self.thresholds = np.empty_like(self.d)
        self.tpr, self.fpr, self.ap = (np.empty_like(self.d) for _ in range(3))
        for j, (pi, d) in enumerate(zip(self.prevalence, self.d)):
            tpr, fpr = sps.norm.sf(grid - d), sps.norm.sf(grid)
            f1 = 2 * pi * tpr / (pi * tpr + (1 - pi) * fpr + pi)
            k = int(np.argmax(f1))
            self.thresholds[j], self.tpr[j], self.fpr[j] = grid[k], tpr[k], fpr[k]
            prec = pi * tpr / np.maximum(pi * tpr + (1 - pi) * fpr, 1e-300)
            self.ap[j] = np.trapezoid(prec * sps.norm.pdf(grid - d), grid)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """The scorer's probabilities: the calibrated P(y = 1 | score) of the binormal model, its logit
        ``logit(prevalence) + d * score - d ** 2 / 2`` multiplied by ``temperature`` (a known miscalibration).
        Monotone in the score, so AUC, AP and the F1 decisions are those of the scores."""
        logit = np.log(self.prevalence / (1 - self.prevalence)) + self.d * scores - self.d ** 2 / 2
        return 1.0 / (1.0 + np.exp(-self.temperature * logit))

    def calibration_values(self, n_bins: int = 15) -> dict[str, float]:
        """Population macro Brier score and macro ECE over ``n_bins`` equal-mass bins of the population's
        scores (the quantity the report's ECE estimates as the fold grows), by numerical integration."""
        grid = np.linspace(-8, 12, 200001)
        ece, brier = [], []
        for j, (pi, d) in enumerate(zip(self.prevalence, self.d)):
            dens = (1 - pi) * sps.norm.pdf(grid) + pi * sps.norm.pdf(grid - d)
            q = pi * sps.norm.pdf(grid - d) / dens  # P(y = 1 | score)
            p = self.probabilities(np.broadcast_to(grid[:, None], (grid.size, self.d.size)))[:, j]
            w = dens / dens.sum()
            brier.append(float(np.sum(w * (p * p - 2 * p * q + q))))
            cdf = np.cumsum(w)
            bins = np.minimum((cdf * n_bins).astype(int), n_bins - 1)
            mass = np.bincount(bins, weights=w, minlength=n_bins)
            gap = np.bincount(bins, weights=w * (p - q), minlength=n_bins)
            ece.append(float(np.sum(np.abs(gap)) / mass.sum()))
        return {"macro_ece": float(np.mean(ece)), "macro_brier": float(np.mean(brier))}

    def micro_auc(self) -> float:
        """Population AUC of every (image, label) pair's **probability** pooled (what the report's micro AUC
        measures): P(p_j(S+) > p_k(S-)) over a positive of label j and a negative of label k, weighted by
        their shares of the pooled positives and negatives. ``p_k(S) < p_j(s)`` iff the calibrated logits
        compare the same way (the temperature cancels), i.e. ``S < (L_j(s) - logit(pi_k) + d_k^2 / 2) / d_k``."""
        pi, d = self.prevalence, self.d
        grid = np.linspace(-8, 12, 40001)
        step = grid[1] - grid[0]
        lp = np.log(pi / (1 - pi))
        a, b = pi / pi.sum(), (1 - pi) / (1 - pi).sum()
        total = 0.0
        for j in range(pi.size):
            logit_j = lp[j] + d[j] * grid - d[j] ** 2 / 2
            dens = sps.norm.pdf(grid - d[j]) * step
            below = sps.norm.cdf((logit_j[None, :] - lp[:, None] + d[:, None] ** 2 / 2) / d[:, None])  # (k, s)
            total += a[j] * float(np.sum(b[:, None] * below * dens[None, :]))
        return total

    def values(self) -> dict[str, float]:
        """Population macro / micro AUC, macro AP, macro / micro F1 (F1 at the thresholds), macro ECE and Brier."""
        pi, tpr, fpr = self.prevalence, self.tpr, self.fpr
        auc = sps.norm.cdf(self.d / np.sqrt(2))
        f1 = 2 * pi * tpr / (pi * tpr + (1 - pi) * fpr + pi)
        tp, fp, fn = np.sum(pi * tpr), np.sum((1 - pi) * fpr), np.sum(pi * (1 - tpr))
        return {"macro_auc": float(auc.mean()), "micro_auc": self.micro_auc(),
                "macro_ap": float(self.ap.mean()), "macro_f1": float(f1.mean()),
                "micro_f1": float(2 * tp / (2 * tp + fp + fn)), **self.calibration_values()}

    def sample(self, rng, n: int, *, followups: str = "nih", patient_sd: float = 0.5, share: float = 0.5):
        """``n`` images of patients with several correlated images: an image copies its patient's label
        vector with probability ``share`` and shares a score offset of sd ``patient_sd``; marginally every
        label keeps its prevalence and its binormal scores. ``followups``: images per patient as in NIH's
        label file (1 + negative binomial: mean 3.6, sd 7.3, up to ~200), as in the demo's synthetic
        cohort (55% single, else 1 + geometric(0.17) capped at 30), or ``few`` as in CheXpert's validation
        set (234 images of 200 patients: 1 + Poisson(0.17))."""
        if followups == "nih":
            sizes = 1 + rng.negative_binomial(0.139, 0.05, size=n)
        elif followups == "demo":
            sizes = np.where(rng.random(n) < 0.55, 1, np.minimum(30, 1 + rng.geometric(0.17, size=n)))
        elif followups == "few":
            sizes = 1 + rng.poisson(0.17, size=n)
        else:
            raise ValueError(f"followups={followups!r}: expected 'nih', 'demo' or 'few'")
        patients = np.repeat(np.arange(n), sizes)[:n]
        n_p = patients[-1] + 1
        base = rng.random((n_p, self.prevalence.size)) < self.prevalence
        own = rng.random((n, self.prevalence.size)) < self.prevalence
        y = np.where(rng.random((n, 1)) < share, base[patients], own).astype(np.float64)
        offset = rng.normal(0.0, patient_sd, n_p)[patients][:, None]
        noise = np.sqrt(1 - patient_sd ** 2) * rng.normal(size=y.shape)
        return y, offset + noise, patients

    def decisions(self, scores: np.ndarray) -> np.ndarray:
        return (scores >= self.thresholds[None, :]).astype(np.float64)


def coverage(n_reps: int, *, n_images: int, folds: int, prevalence, n_boot: int, followups: str = "nih",
             seed: int = 0) -> dict:
    """Share of nominal 95% intervals of a leaderboard row that contain the population value, for the
    interval the report uses (``coverage``: ``reports.replicates.INTERVAL``) and for each method
    (``coverage_by_method``); the row averages ``folds`` held-out folds of ``n_images`` images scored by
    the same scorer, so its population value is the scorer's. Also the estimator's own bias and sd, and
    (``rare_label_auc``) for a label with m = 1..6 positive patients in a fold the mean bootstrap variance of
    its AUC over the mean squared error of its estimate about the population AUC (1 when the bootstrap is right)."""
    pop = Population.make(prevalence)
    truth = pop.values()
    rng = np.random.default_rng([seed, n_images, folds])
    methods = ("percentile", "basic", "bca", "jackknife")
    inside = {k: {m: [] for m in R.METRICS} for k in methods}
    errors = {m: [] for m in R.METRICS}
    undefined, rare = [], {m: ([], []) for m in range(1, 7)}  # m -> squared errors, bootstrap variances
    label_auc = sps.norm.cdf(pop.d / np.sqrt(2))
    for rep in range(n_reps):
        trials = []
        for f in range(folds):
            y, noise, pat = pop.sample(rng, n_images, followups=followups)
            undefined.append(int(np.sum((y.sum(0) == 0) | (y.sum(0) == n_images))))
            score = pop.d[None, :] * y + noise
            trials.append(R.trial_replicates(y, pop.probabilities(score), pop.decisions(score), pat.astype(str),
                                             n_boot=n_boot, fold=f, seed=rep))
            positives = [np.unique(pat[y[:, j] == 1]).size for j in range(y.shape[1])]
            if any(m in rare for m in positives):  # the trial's own bootstrap weights, one label at a time
                boot = R.fold_weights(pat.astype(str), n_boot=n_boot, fold=f, seed=rep)[0]
                scorer = MacroScorer(y, score)
                for j in (j for j, m in enumerate(positives) if m in rare):
                    est = scorer.problems[j].auc_ap(np.ones((1, n_images)))[0][0]
                    rare[positives[j]][0].append((est - label_auc[j]) ** 2)
                    rare[positives[j]][1].append(np.nanvar(scorer.problems[j].auc_ap(boot)[0]))
        for m in R.METRICS:
            a = R.aggregate(trials, m)
            errors[m].append(a["estimate"] - truth[m])
            for k in methods:
                lo, hi = R.interval(m, a["replicates"], a["estimate"], a["jackknife"], method=k)
                inside[k][m].append(lo <= truth[m] <= hi)
    by_method = {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in inside.items()}
    return {"coverage": {m: by_method[R.INTERVAL[m]][m] for m in R.METRICS}, "interval": dict(R.INTERVAL),
            "coverage_by_method": by_method, "population": truth,
            "estimator_bias": {m: float(np.mean(e)) for m, e in errors.items()},
            "estimator_sd": {m: float(np.std(e)) for m, e in errors.items()},
            "undefined_labels_per_fold": float(np.mean(undefined)),
            "rare_label_auc": {m: {"folds": len(e), "bootstrap_variance_ratio": float(np.mean(v) / np.mean(e))}
                               for m, (e, v) in rare.items() if e},
            "settings": {"replicates": n_reps, "images_per_fold": n_images, "folds": folds, "bootstrap": n_boot,
                         "followups": followups}}


def bootstrap_null(n_studies: int, *, r: float, n_images: int = 400, folds: int = 3, seeds: int = 2,
                   n_boot: int = 200, prevalence=DEMO_PREVALENCE, model_sd: float = 0.6, seed: int = 0) -> dict:
    """Rejection rates of the paired bootstrap (p < 0.05), the corrected t-test and the report's verdict
    (both) for a strategy against the baseline, with predictions simulated per trial.

    Every trained model scores image i of label l as d_l (1 + q) y_il + z_il + e_il: z is the image's own
    difficulty (shared by all models), e the model's own error (sd ``model_sd``, new for every trial), q
    the model's quality shift: 0 when ``r`` = 0 (the conditional null: every model equally good on the
    population), else a strategy x fold shift of sd ``r`` x the seed shift's sd (0.02), as in the
    correlated null of :func:`fold_level`.
    """
    pop = Population.make(prevalence)
    rng = np.random.default_rng([seed, int(r * 100), n_images])
    hits = {"paired_bootstrap": [], "corrected_t": [], "verdict": []}
    sd_q = 0.02
    for study in range(n_studies):
        rows, reps = [], {}
        for f in range(folds):
            y, z, pat = pop.sample(rng, n_images)
            for s in range(2):
                q_sf = rng.normal(0.0, r * sd_q) if r else 0.0
                for k in range(seeds):
                    q = q_sf + (rng.normal(0.0, sd_q) if r else 0.0)
                    score = pop.d[None, :] * (1 + q) * y + np.sqrt(1 - model_sd ** 2) * z \
                        + model_sd * rng.normal(size=y.shape)
                    tid = f"s{s}-f{f}-k{k}"
                    reps[tid] = R.trial_replicates(y, score, pop.decisions(score), pat.astype(str),
                                                   n_boot=n_boot, fold=f, seed=study)
                    rows.append({"id": tid, "backbone": "b", "strategy": f"s{s}", "fold": f, "seed": k,
                                 "macro_auc": reps[tid]["estimate"]["macro_auc"]})
        trials = pd.DataFrame(rows)
        docs = [{"sizes": {"test": 1, "train": folds - 1, "val": 0}}]
        sig = C.significance(trials, reps, docs, baseline="s0", metrics=("macro_auc",))
        row = sig.iloc[0]
        hits["paired_bootstrap"].append(row["p_boot"] < 0.05)
        hits["corrected_t"].append(row["p_t"] < 0.05)
        hits["verdict"].append(row["verdict"] != "no evidence")
    return {k: float(np.mean(v)) for k, v in hits.items()}


# ------------------------------------------------------------------------------ the report
SECTIONS = ("fold", "bootstrap", "coverage")
SIZES = ("demo", "nih")  # the coverage settings: the demo's test folds, full NIH's


def run(quick: bool, only: tuple[str, ...] = SECTIONS, studies: int | None = None,
        sizes: tuple[str, ...] = SIZES, boot: int | None = None) -> dict:
    """Every simulation; ``quick`` for the test suite's fewer replicates, ``only`` a subset of SECTIONS,
    ``studies`` the fold-level null studies (default 400 quick, 1,000 full), ``sizes`` the coverage settings
    (NIH's only without ``quick``), ``boot`` the coverage's bootstrap replicates per trial (default 300 quick,
    500 demo, 200 NIH; the jackknife interval does not use them, so 2 measures it alone, fast)."""
    n_null = studies or (400 if quick else 1000)
    t0 = time.perf_counter()
    out: dict = {"settings": {"quick": quick, "null_studies": n_null, "nominal": 0.05, "folds": 5, "seeds": 3,
                              "strategies": 4, "seed_sd": 0.01, "power_difference": 0.02},
                 "false_positive_rate": {}, "power": {}, "coverage": {}}
    if "fold" in only:
        for r in (1, 2):
            for overlap in (False, True):
                key = f"r={r}" + (", overlapping training sets" if overlap else "")
                out["false_positive_rate"][key] = fold_level(n_null, r=r, overlap=overlap)
                out["power"][key] = fold_level(n_null // 2, r=r, overlap=overlap, delta=0.02)
    if "bootstrap" in only:
        n_studies, n_boot = (120, 100) if quick else (400, 100)
        out["false_positive_rate"]["predictions, models equally good on the population"] = bootstrap_null(
            n_studies, r=0, n_boot=n_boot)
        out["false_positive_rate"]["predictions, r=1"] = bootstrap_null(n_studies, r=1, n_boot=n_boot)
    if "coverage" in only and "demo" in sizes:
        out["coverage"]["demo: 3 folds x 400 images, synthetic prevalences (Hernia 0.5%)"] = coverage(
            150 if quick else 400, n_images=400, folds=3, prevalence=DEMO_PREVALENCE,
            n_boot=boot or (300 if quick else 500), followups="demo")
    if "coverage" in only and "nih" in sizes and not quick:
        out["coverage"]["full NIH: 22,424 images, NIH prevalences (Hernia 0.2%)"] = coverage(
            400, n_images=22424, folds=1, prevalence=NIH_PREVALENCE, n_boot=boot or 200, followups="nih")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def markdown(res: dict) -> str:
    """README tables of a result (false-positive rates, power, coverage)."""
    lines = ["| null (nominal 0.05) | " + " | ".join(TEST_NAMES) + " |", "|---" * (len(TEST_NAMES) + 1) + "|"]
    for key, rates in res["false_positive_rate"].items():
        if key.startswith("r="):
            lines.append(f"| {key} | " + " | ".join(f"{rates[t]:.3f}" for t in TEST_NAMES) + " |")
    lines += ["", "| power, difference 0.02 macro AUC | " + " | ".join(TEST_NAMES) + " |",
              "|---" * (len(TEST_NAMES) + 1) + "|"]
    for key, rates in res["power"].items():
        lines.append(f"| {key} | " + " | ".join(f"{rates[t]:.3f}" for t in TEST_NAMES) + " |")
    pred = {k: v for k, v in res["false_positive_rate"].items() if k.startswith("predictions")}
    if pred:
        lines += ["", "| prediction-level null | paired bootstrap | corrected t | verdict (both) |", "|---|---|---|---|"]
        for key, r in pred.items():
            lines.append(f"| {key} | {r['paired_bootstrap']:.3f} | {r['corrected_t']:.3f} | {r['verdict']:.3f} |")
    for key, c in res["coverage"].items():
        lines += ["", f"| coverage, {key} | " + " | ".join(R.METRICS) + " |", "|---" * (len(R.METRICS) + 1) + "|",
                  "| interval used (method) | " + " | ".join(f"{c['coverage'][m]:.3f} ({c['interval'][m]})"
                                                          for m in R.METRICS) + " |"]
        for method, cov in c["coverage_by_method"].items():
            lines.append(f"| {method} | " + " | ".join(f"{cov[m]:.3f}" for m in R.METRICS) + " |")
        lines.append("| estimator bias / sd | " + " | ".join(
            f"{c['estimator_bias'][m]:+.4f} / {c['estimator_sd'][m]:.4f}" for m in R.METRICS) + " |")
    return "\n".join(lines)


TEST_NAMES = ("corrected_t", "corrected_f", "friedman_folds", "naive_paired_t", "naive_friedman")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="fewer replicates (what the test suite runs)")
    ap.add_argument("--only", action="append", choices=SECTIONS,
                    help="run only this part (repeatable): fold-level tests, the bootstrap at prediction level, "
                         "interval coverage")
    ap.add_argument("--markdown", nargs="+", metavar="JSON",
                    help="print README tables from saved --json outputs (merged) instead of simulating")
    ap.add_argument("--studies", type=int, default=None,
                    help="fold-level null studies (default 400 with --quick, 1000 without; >= 400 for the README)")
    ap.add_argument("--size", action="append", choices=SIZES,
                    help="coverage at this size only (repeatable; default both, NIH's not with --quick)")
    ap.add_argument("--boot", type=int, default=None,
                    help="bootstrap replicates per trial in the coverage part (default 300 with --quick, else 500 "
                         "demo, 200 NIH; the jackknife interval does not use them)")
    args = ap.parse_args(argv)
    if args.studies is not None and args.studies < 1:
        ap.error(f"--studies {args.studies}: expected a positive integer")
    if args.boot is not None and args.boot < 2:
        ap.error(f"--boot {args.boot}: expected an integer >= 2")
    if args.markdown:
        res: dict = {"false_positive_rate": {}, "power": {}, "coverage": {}}
        for path in args.markdown:
            with open(path) as fh:
                part = json.load(fh)
            for k in res:
                res[k].update(part.get(k, {}))
        print(markdown(res))
        return 0
    res = run(args.quick, tuple(args.only or SECTIONS), args.studies, tuple(args.size or SIZES), args.boot)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
