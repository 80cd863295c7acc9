"""Compare run folders side by side (``bench compare RUN_A RUN_B ...``): NIH vs synthetic, 64 vs 224 px, before vs
after a change.

Each run is read from its files alone (``leaderboard.csv`` and ``per_label.csv`` as ``bench report`` wrote them,
its trials' ``metrics.json``, ``bootstrap.npz`` / ``predictions.npz``). The first run is the reference; every
other run is compared with it for each backbone x strategy both ran:

- **Same split** (equal split hashes: the same images in the same folds, e.g. two image sizes of one dataset):
  the difference is tested exactly as a strategy against the baseline within a run (``reports.compare``): the
  paired patient bootstrap (both runs' replicates use the same patient draws per fold) and Nadeau and Bengio's
  corrected resampled t-test on the fold-level differences, Holm across the rows of each metric, "better" /
  "worse" only when both agree.
- **Different splits** (another dataset, another split seed): nothing pairs, so there is no test. The difference
  of the leaderboard values gets an interval from the two runs' own bootstrap replicates taken as independent
  (test-set uncertainty only), and the table says the runs are not paired, and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reports import compare as C
from reports import replicates as R
from reports.runfolder import RunFolder, read_json

__all__ = ["Run", "Comparison", "load_run", "compare_runs", "METRICS"]

#: (leaderboard column, label) compared side by side; the paired tests use reports.compare.PAIRED_METRICS.
METRICS = [("macro_auc", "macro AUC"), ("micro_auc", "micro AUC"), ("macro_ap", "mAP"), ("macro_f1", "macro F1"),
           ("macro_ece", "ECE"), ("macro_brier", "Brier")]
KEYS = ["backbone", "strategy"]


@dataclass
class Run:
    name: str
    path: Path
    leaderboard: pd.DataFrame
    per_label: pd.DataFrame
    localisation: pd.DataFrame
    docs: list
    grid: dict
    dataset: dict
    split_hash: str

    @property
    def describe(self) -> dict:
        ds = self.grid.get("dataset") or {}
        return {"run": self.name, "folder": str(self.path), "dataset": ds.get("kind") or self.dataset.get("kind"),
                "images": self.dataset.get("images"), "image_size": ds.get("image_size"),
                "epochs": (self.grid.get("train") or {}).get("epochs"), "trials": len(self.docs),
                "split_hash": self.split_hash[:12]}


@dataclass
class Comparison:
    runs: list
    values: pd.DataFrame          # long: run, backbone, strategy, metric, value, ci_low, ci_high
    tests: pd.DataFrame           # one row per (other run, backbone, strategy, metric)
    per_label: pd.DataFrame       # long: run, backbone, strategy, label, auc
    localisation: pd.DataFrame    # long: run, backbone, strategy, method, value, ci_low, ci_high (hit rate)
    files: dict = field(default_factory=dict)
    metrics: list = field(default_factory=lambda: list(METRICS))  # (column, label) shown side by side


def load_run(path, name: str | None = None) -> Run:
    """A run folder's reports and trials; a ``ValueError`` names the folder and what is missing."""
    from reports.leaderboard import load_trials

    path = Path(path)
    folder = RunFolder(path)
    board_file = path / "leaderboard.csv"
    if not path.is_dir():
        raise ValueError(f"{path}: run folder not found")
    if not board_file.is_file():
        raise ValueError(f"{path}: no leaderboard.csv; run `bench report {path}` first")
    split = read_json(folder.split_json, {})
    read = (lambda f: pd.read_csv(path / f) if (path / f).is_file() else pd.DataFrame())
    return Run(name=name or path.name, path=path, leaderboard=pd.read_csv(board_file), per_label=read("per_label.csv"),
               localisation=read("localisation.csv"), docs=load_trials(path), grid=read_json(folder.grid_json, {}),
               dataset=read_json(folder.dataset_json, {}), split_hash=str(split.get("hash") or ""))


def _values(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for r in run.leaderboard.to_dict("records"):
            for m, _ in METRICS:
                if m in r:
                    rows.append({"run": run.name, "backbone": r["backbone"], "strategy": r["strategy"], "metric": m,
                                 "value": r[m], "ci_low": r.get(f"{m}_ci_low", np.nan),
                                 "ci_high": r.get(f"{m}_ci_high", np.nan), "n_trials": r.get("n_trials")})
    return pd.DataFrame(rows, columns=["run", "backbone", "strategy", "metric", "value", "ci_low", "ci_high",
                                       "n_trials"])


def _trial_table(run: Run) -> pd.DataFrame:
    return pd.DataFrame([{"id": d["id"], "backbone": d["backbone"], "strategy": d["strategy"], "fold": d["fold"],
                          "seed": d["seed"], **{m: (d["summary"].get(m) if d["summary"].get(m) is not None
                                                    else np.nan) for m in C.PAIRED_METRICS}} for d in run.docs])


def _replicates(run: Run, docs: list, n_boot: int, seed: int) -> list | None:
    from reports.trial_bootstraps import trial_bootstrap

    reps = [trial_bootstrap(d, n_boot=n_boot, seed=seed) for d in docs]
    return None if any(r is None for r in reps) else reps


def _tests(ref: Run, other: Run, n_boot: int) -> list[dict]:
    from reports.trial_bootstraps import bootstrap_seed

    paired = bool(ref.split_hash) and ref.split_hash == other.split_hash
    seed_a, seed_b = bootstrap_seed(ref.grid), bootstrap_seed(other.grid)
    ta, tb = _trial_table(ref), _trial_table(other)
    rows = []
    if ta.empty or tb.empty:
        return rows
    ratio = C.overlap_ratio(ref.docs) if paired else float("nan")
    common = ta[KEYS].drop_duplicates().merge(tb[KEYS].drop_duplicates())
    for b, s in common.itertuples(index=False):
        ga, gb = ta[(ta.backbone == b) & (ta.strategy == s)], tb[(tb.backbone == b) & (tb.strategy == s)]
        folds = sorted(set(ga.fold) & set(gb.fold)) if paired else sorted(set(ga.fold))
        da = [d for d in ref.docs if d["backbone"] == b and d["strategy"] == s and (d["fold"] in folds)]
        db = [d for d in other.docs if d["backbone"] == b and d["strategy"] == s and (not paired or d["fold"] in folds)]
        ra = _replicates(ref, da, n_boot, seed_a)
        rb = _replicates(other, db, n_boot, seed_a if paired else seed_b)
        for m in C.PAIRED_METRICS:
            row = {"reference": ref.name, "run": other.name, "backbone": b, "strategy": s, "metric": m,
                   "paired": paired, "n_folds": len(folds), "mean_diff": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                   "p_boot": np.nan, "t": np.nan, "p_t": np.nan}
            fa = C.fold_means(ga[ga.fold.isin(folds)], m).set_index("fold")[m]
            fb = C.fold_means(gb[gb.fold.isin(folds)] if paired else gb, m).set_index("fold")[m]
            row["mean_diff"] = float(fb.mean() - fa.mean())
            if paired:
                t = C.corrected_t((fb - fa).reindex(folds).to_numpy(), ratio)
                row["t"], row["p_t"] = t["t"], t["p"]
            if ra is not None and rb is not None:
                a, bb = R.aggregate(ra, m), R.aggregate(rb, m)
                diff = bb["replicates"] - a["replicates"]  # paired draws, or independent ones (different patients)
                est = bb["estimate"] - a["estimate"]
                if paired:
                    row["ci_low"], row["ci_high"] = R.interval(m, diff, est, bb["jackknife"] - a["jackknife"])
                    row["p_boot"] = C.bootstrap_p(diff)
                else:
                    row["ci_low"], row["ci_high"] = R.percentile_interval(diff, est)
            rows.append(row)
    return rows


def compare_runs(paths, *, names: list[str] | None = None, n_boot: int | None = None) -> Comparison:
    """Read the runs and compare every other run with the first (see the module's docstring)."""
    from reports.stats import holm

    if len(paths) < 2:
        raise ValueError(f"compare needs at least two run folders; got {len(paths)}")
    names = list(names) if names else [Path(p).name for p in paths]
    if len(names) != len(paths):
        raise ValueError(f"--names gives {len(names)} names for {len(paths)} runs")
    if len(set(names)) < len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    runs = [load_run(p, n) for p, n in zip(paths, names)]
    ref = runs[0]
    n_boot = int(n_boot or (ref.grid.get("report") or {}).get("bootstrap", 1000) or 0)
    rows = [r for other in runs[1:] for r in _tests(ref, other, n_boot)] if n_boot > 0 else []
    cols = ["reference", "run", "backbone", "strategy", "metric", "paired", "n_folds", "mean_diff", "ci_low",
            "ci_high", "p_boot", "p_boot_holm", "t", "p_t", "p_t_holm", "verdict", "note"]
    tests = pd.DataFrame(rows)
    if tests.empty:
        tests = pd.DataFrame(columns=cols)
    else:
        tests["p_boot_holm"], tests["p_t_holm"] = np.nan, np.nan
        for _, idx in tests[tests["paired"]].groupby(["run", "metric"], sort=False).groups.items():
            tests.loc[idx, "p_boot_holm"] = holm(tests.loc[idx, "p_boot"].to_numpy(dtype=float))
            tests.loc[idx, "p_t_holm"] = holm(tests.loc[idx, "p_t"].to_numpy(dtype=float))
        real = tests["paired"] & (tests["p_boot_holm"] < 0.05) & (tests["p_t_holm"] < 0.05)
        tests["verdict"] = np.where(~tests["paired"], "not paired",
                                    np.where(real & (tests["mean_diff"] > 0), "higher",
                                             np.where(real & (tests["mean_diff"] < 0), "lower", "no evidence")))
        tests["note"] = np.where(tests["paired"], "same split: paired patient bootstrap (patients resampled within "
                                 "each fold, the same draws for both runs) and the corrected resampled t-test over folds",
                                 "different splits (split hashes differ): the runs score different images, so nothing "
                                 "pairs; interval from both runs' bootstrap replicates as independent, no test")
        tests = tests[cols]
    per_label = pd.concat([run.per_label.assign(run=run.name)[["run", "backbone", "strategy", "label", "auc"]]
                           for run in runs if not run.per_label.empty and "auc" in run.per_label], ignore_index=True) \
        if any(not run.per_label.empty for run in runs) else pd.DataFrame()
    loc = []
    for run in runs:
        lo = run.localisation
        if not lo.empty and {"metric", "finding"} <= set(lo.columns):
            sub = lo[(lo["metric"] == "hit") & (lo["finding"] == "all")]
            loc.append(sub.assign(run=run.name)[["run", "backbone", "strategy", "method", "value", "ci_low", "ci_high"]])
    return Comparison(runs=runs, values=_values(runs), tests=tests, per_label=per_label,
                      localisation=pd.concat(loc, ignore_index=True) if loc else pd.DataFrame())


def write(comparison: Comparison, out) -> dict:
    """``comparison.csv`` (side by side), ``comparison_tests.csv``, ``comparison.json`` (the runs) and
    ``comparison.html`` in ``out``; returns {name: path}."""
    from reports.html_compare import page
    from reports.leaderboard import write_csv
    from reports.runfolder import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, df in (("comparison.csv", comparison.values), ("comparison_tests.csv", comparison.tests)):
        write_csv(df, out / name)
        files[name] = out / name
    runs = [r.describe for r in comparison.runs]
    write_atomic(out / "comparison.json", lambda tmp: tmp.write_text(json.dumps(runs, indent=1)))
    files["comparison.json"] = out / "comparison.json"
    html = page(comparison)
    write_atomic(out / "comparison.html", lambda tmp: tmp.write_text(html, encoding="utf-8"))
    files["comparison.html"] = out / "comparison.html"
    comparison.files = files
    return files
