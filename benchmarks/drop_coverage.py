"""Known-answer check of the internal-vs-external drop's 95% interval (``reports.protocols.drop_table``).

The trained models are fixed and known: model (fold k, seed s) scores label l of an image as
d_l (1 + q_ks) y + sqrt(1 - m^2) z + m e, with z the image's own difficulty (unit variance, shared by every
model, correlated within a patient: ``stats_calibration.Population.sample``), e the model's own noise (sd m)
and q_ks its quality (fixed once per setting). On a site whose binormal separations are d_l its population AUC of
label l is Phi(d_l (1 + q_ks) / sqrt 2), so the population drop is known: the internal site's population macro
AUCs (its d_l) minus the external site's (other d_l, lower AUCs; other prevalences; the labels the external set
has), each averaged the leaderboard's way (mean over folds of seed means).

Each simulated study draws K internal held-out folds (fold k scored by fold k's models) and one external test
set (scored by every model), computes each trial's replicates as the run does (``reports.replicates``, with the
draws ``replicates.draws_of`` gives the trial's ``metrics.json``), and calls ``drop_table`` itself on the
documents and replicates a run folder holds. Coverage: the share of studies whose interval contains the population
drop, with its Monte-Carlo standard error. ``per_fold_draws`` is the rule before the external set's draws were
shared by all folds (each fold's models resampled it independently): kept to show the check has teeth.

Usage::

    .venv/bin/python benchmarks/drop_coverage.py --json              # every setting (README figures, ~3 core-hours)
    .venv/bin/python benchmarks/drop_coverage.py --json --quick      # common labels and the demo, fewer studies
    .venv/bin/python benchmarks/drop_coverage.py --only nih-chexpert --studies 400
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

from bench.data.synthetic_sites import PREVALENCE_A, PREVALENCE_B
from reports import replicates as R
from reports.protocols import ExternalReport, drop_table
from stats_calibration import NIH_PREVALENCE, Population  # the shared binormal scorer (benchmarks/)

# The 14 findings from the most to the least frequent (NIH_PREVALENCE's order, and PREVALENCE_A's).
LABELS = tuple(sorted(PREVALENCE_A, key=PREVALENCE_A.get, reverse=True))
NIH = dict(zip(LABELS, NIH_PREVALENCE))
# An inpatient second site (the synthetic site b's mix) at full scale, Hernia back at NIH's 0.2%.
SITE_B_NIH = {**PREVALENCE_B, "Hernia": 0.002}
# CheXpert's validation set (234 images, 200 patients): its positives of the 7 labels it shares with NIH, as
# usually reported for valid.csv (approximate); the other 7 are unknown there (NaN), as the harness aligns them.
CHEXPERT_VALID = {"Atelectasis": 80 / 234, "Cardiomegaly": 68 / 234, "Consolidation": 33 / 234,
                  "Edema": 45 / 234, "Effusion": 67 / 234, "Pneumonia": 8 / 234, "Pneumothorax": 8 / 234}


@dataclass(frozen=True)
class Setting:
    """One simulated benchmark: K internal held-out folds of ``fold_images`` each, one external test set."""

    folds: int
    fold_images: int
    internal: dict          # label -> prevalence (the labels the set has; the others are NaN there)
    internal_followups: str
    external_images: int
    external: dict          # the same for the external test set
    external_followups: str
    seeds: int = 1
    n_boot: int = 500


# The test suite's: five common labels (10-30%) only, where the interval should reach 95%
COMMON = {"Infiltration": 0.30, "Effusion": 0.20, "Atelectasis": 0.15, "Nodule": 0.12, "Mass": 0.10}
COMMON_B = {"Infiltration": 0.20, "Effusion": 0.30, "Atelectasis": 0.20, "Nodule": 0.10, "Mass": 0.12}

SETTINGS = {
    "common": Setting(3, 400, COMMON, "few", 200, COMMON_B, "few", n_boot=200),
    # grids/external-demo.yaml: 1,500 site-a images in 5 folds, 1,500 site-b images (SyntheticSection.n)
    "demo": Setting(5, 300, PREVALENCE_A, "demo", 1500, PREVALENCE_B, "demo"),
    # 5 held-out folds of 22,424 images in all, NIH's prevalences (Hernia 0.2%); a CheXpert-valid-like set
    "nih-chexpert": Setting(5, 4485, NIH, "nih", 234, CHEXPERT_VALID, "few", n_boot=300),
    # the same internal folds; a large second hospital with the inpatient mix
    "nih-large": Setting(5, 4485, NIH, "nih", 20000, SITE_B_NIH, "nih", n_boot=200),
}


def _site(prevalence: dict, auc_high: float, auc_low: float) -> tuple[Population, np.ndarray]:
    """The site's scorer over the 14 labels and the mask of the labels it has (absent: placeholder 0.05)."""
    known = np.array([name in prevalence for name in LABELS])
    pop = Population.make([prevalence.get(name, 0.05) for name in LABELS], auc_low=auc_low, auc_high=auc_high)
    return pop, known


def _macro_auc(d: np.ndarray, known: np.ndarray) -> float:
    return float(np.mean(sps.norm.cdf(d[known] / np.sqrt(2))))


def coverage(setting: Setting, n_studies: int, *, model_sd: float = 0.5, quality_sd: float = 0.05,
             per_fold_draws: bool = False, seed: int = 0) -> dict:
    """Share of ``drop_table``'s 95% intervals that contain the population drop, over ``n_studies`` studies."""
    s = setting
    (internal, known_i), (external, known_e) = _site(s.internal, 0.90, 0.70), _site(s.external, 0.84, 0.62)
    rng = np.random.default_rng([seed, s.fold_images, s.external_images])
    quality = {(k, j): float(rng.normal(0.0, quality_sd)) for k in range(s.folds) for j in range(s.seeds)}
    by_fold = lambda site, known: np.mean([np.mean([_macro_auc(site.d * (1 + quality[k, j]), known)  # noqa: E731
                                                    for j in range(s.seeds)]) for k in range(s.folds)])
    truth = by_fold(internal, known_i) - by_fold(external, known_e)
    hits, basic, errors, widths = [], [], [], []
    for study in range(n_studies):
        docs, reps, ext_docs, ext_reps = [], {}, [], {}
        y_e, z_e, pat_e = external.sample(rng, s.external_images, followups=s.external_followups)
        y_e[:, ~known_e] = np.nan
        for k in range(s.folds):
            y, z, pat = internal.sample(rng, s.fold_images, followups=s.internal_followups)
            y[:, ~known_i] = np.nan
            for j in range(s.seeds):
                tid = f"m-bce-f{k}-s{j}"
                for site, yy, zz, pp, out, book, extra in (
                        (internal, y, z, pat, docs, reps, {}),
                        (external, y_e, z_e, pat_e, ext_docs, ext_reps, {"test_set": "external"})):
                    doc = {"id": tid, "backbone": "m", "strategy": "bce", "fold": k, "seed": j, **extra}
                    score = np.nan_to_num(site.d * (1 + quality[k, j]) * yy) + np.sqrt(1 - model_sd ** 2) * zz \
                        + model_sd * rng.normal(size=yy.shape)
                    draws = R.draws_of(doc) | ({"shared": False} if per_fold_draws else {})
                    book[tid] = R.trial_replicates(yy, score, None, pp.astype(str), n_boot=s.n_boot, seed=study,
                                                   **draws)
                    out.append({**doc, "summary": {"macro_auc": book[tid]["estimate"]["macro_auc"]}})
        empty = pd.DataFrame()
        row = drop_table(docs, reps, {"external": ExternalReport("external", empty, empty, empty, docs=ext_docs,
                                                                 reps=ext_reps)}).iloc[0]
        hits.append(bool(row["drop_ci_low"] <= truth <= row["drop_ci_high"]))
        # the basic interval from the same replicates (replicates.basic_interval): the percentile one reflected
        basic.append(bool(2 * row["drop"] - row["drop_ci_high"] <= truth <= 2 * row["drop"] - row["drop_ci_low"]))
        errors.append(row["drop"] - truth)
        widths.append(row["drop_ci_high"] - row["drop_ci_low"])
    cov = float(np.mean(hits))
    return {"coverage": cov, "mc_se": float(np.sqrt(cov * (1 - cov) / n_studies)), "population_drop": truth,
            "coverage_basic": float(np.mean(basic)),
            "estimator_bias": float(np.mean(errors)), "estimator_sd": float(np.std(errors)),
            "mean_width": float(np.mean(widths)), "width_over_4sd": float(np.mean(widths) / (4 * np.std(errors))),
            "settings": {"studies": n_studies, "folds": s.folds, "seeds": s.seeds, "fold_images": s.fold_images,
                         "external_images": s.external_images, "external_labels": int(known_e.sum()),
                         "bootstrap": s.n_boot, "model_sd": model_sd, "per_fold_draws": per_fold_draws}}


def run(names, studies: int | None, quick: bool) -> dict:
    """Every setting of ``names``: the report's interval, and the old per-fold draws in half as many studies."""
    out, t0 = {}, time.perf_counter()
    for name in names:
        n = studies or (200 if quick else 400)
        out[name] = {"shared": coverage(SETTINGS[name], n),
                     "per_fold_draws": coverage(SETTINGS[name], max(1, n // 2), per_fold_draws=True)}
    return {"coverage": out, "seconds": round(time.perf_counter() - t0, 1)}


def markdown(res: dict) -> str:
    """The README's table of a result."""
    lines = ["| setting | population drop (estimator bias / sd) | coverage, percentile (± MC se) | basic | "
             "per-fold draws (before) |", "|---|---|---|---|---|"]
    for name, r in res["coverage"].items():
        a, b = r["shared"], r["per_fold_draws"]
        lines.append(f"| {name} | {a['population_drop']:.3f} ({a['estimator_bias']:+.4f} / {a['estimator_sd']:.4f}) | "
                     f"{a['coverage']:.3f} ± {a['mc_se']:.3f} | {a.get('coverage_basic', float('nan')):.3f} | "
                     f"{b['coverage']:.3f} ± {b['mc_se']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="the common-label and demo settings, 200 studies")
    ap.add_argument("--only", action="append", choices=sorted(SETTINGS), help="run only this setting (repeatable)")
    ap.add_argument("--studies", type=int, default=None, help="simulated studies per setting (default 400)")
    args = ap.parse_args(argv)
    if args.studies is not None and args.studies < 1:
        ap.error(f"--studies {args.studies}: expected a positive integer")
    names = args.only or (["common", "demo"] if args.quick else list(SETTINGS))
    res = run(names, args.studies, args.quick)
    print(json.dumps(res, indent=1) if args.json else markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
