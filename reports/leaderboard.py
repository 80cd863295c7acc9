"""Aggregate a run folder's trial outputs into leaderboards (files on disk only: no Ray, no bench).

Inputs (written by trials): ``RUN_DIR/trials/<id>/metrics.json``, ``predictions.npz``,
``localisation.csv``; ``RUN_DIR/grid.json``, ``dataset.json``, ``split.json``.
Outputs: ``leaderboard.csv`` (one row per backbone x strategy), ``per_label.csv``,
``groups.csv`` (head / medium / tail), ``significance.csv`` (paired tests against the baseline),
``friedman.json``, ``reliability.csv`` (the reliability diagrams' bins), ``localisation.csv``,
``localisation_significance.csv`` (paired tests of the maps against the baseline's) and ``leaderboard.html``.

A leaderboard value is the mean over folds of the mean over each fold's seeds (seeds share the fold's test images, so
the fold is the unit); standard deviations are over the trials (folds x seeds). Confidence intervals (95%) of those
same values come from the patient-bootstrap replicates and jackknife values each trial computed about itself, by
``reports.replicates.INTERVAL``'s method; tests are ``reports.compare``'s."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reports import compare, protocols, replicates, stats
from reports import runfolder as RF
from reports.metrics import group_labels
from reports.runfolder import RunFolder, TrialFolder, read_json, write_atomic
from reports.trial_bootstraps import bootstrap_all, bootstrap_seed, trial_predictions

log = logging.getLogger(__name__)

METRICS = ("macro_auc", "micro_auc", "macro_f1", "micro_f1", "macro_f1_fixed", "micro_f1_fixed", "macro_ap",
           "macro_sensitivity", "macro_specificity", "macro_ece", "macro_brier")
KEYS = ["backbone", "strategy"]
LEADING = ["backbone", "strategy", "n_trials", "macro_auc", "macro_auc_std", "micro_auc", "micro_auc_std", "macro_f1",
           "macro_f1_std", "micro_f1", "micro_f1_std", "macro_f1_fixed", "micro_f1_fixed", "n_folds"]


@dataclass
class Report:
    run_dir: Path
    trials: pd.DataFrame
    leaderboard: pd.DataFrame
    per_label: pd.DataFrame
    groups: pd.DataFrame
    significance: pd.DataFrame
    friedman: dict
    localisation: pd.DataFrame
    label_names: list[str]
    grid: dict
    dataset: dict
    split: dict
    run: dict
    files: dict = field(default_factory=dict)
    localisation_significance: pd.DataFrame = field(default_factory=pd.DataFrame)
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)
    protocol: protocols.ProtocolReport = field(default_factory=protocols.ProtocolReport)  # official / external
    docs: list[dict] = field(default_factory=list, repr=False)  # the trials' metrics.json (load_trials), read once


def load_trials(run_dir: Path) -> list[dict]:
    """Every finished trial's ``metrics.json`` (sorted by id), with ``_dir``, its folder."""
    return [r.as_record() for r in RunFolder(run_dir).results()]


def trial_table(docs: list[dict], label_names: list[str]) -> pd.DataFrame:
    rows = []
    for d in docs:
        row = {"id": d["id"], "backbone": d["backbone"], "strategy": d["strategy"], "fold": d["fold"],
               "seed": d["seed"]}
        for m in METRICS:
            v = d["summary"].get(m)
            row[m] = np.nan if v is None else float(v)
        auc = {r["label"]: r.get("auc") for r in d["per_label"]}
        for name in label_names:
            v = auc.get(name)
            row[f"auc_{name}"] = np.nan if v is None else float(v)
        hist = d.get("history") or [{}]
        row["train_seconds"] = float(sum(h.get("train_seconds", 0.0) for h in hist))
        row["train_images_per_s"] = float(np.nanmean([h.get("train_images_per_s", np.nan) for h in hist]))
        row["excluded"] = "; ".join(f"{k}: {v}" for k, v in (d["summary"].get("excluded") or {}).items())
        cam = d.get("cam") or {}
        row.update({f"cam_{k}": cam.get(k) for k in ("layer", "declared_layer", "warning")})
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_std_table(trials: pd.DataFrame, label_names: list[str]) -> pd.DataFrame:
    """One row per backbone x strategy: each metric's mean over folds of its mean over the fold's seeds
    (seeds share a fold's test images, so they are averaged first), and its sd over the trials."""
    out = []
    for (b, s), g in trials.groupby(KEYS, sort=False):
        row = {"backbone": b, "strategy": s, "n_trials": len(g), "n_folds": int(g["fold"].nunique())}
        for m in METRICS:
            _, std = stats.mean_std(g[m].to_numpy())
            row[m], row[f"{m}_std"] = _fold_mean(g, m), std
        for name in label_names:
            row[f"auc_{name}"] = _fold_mean(g, f"auc_{name}")
        out.append(row)
    return pd.DataFrame(out)


def _fold_mean(g: pd.DataFrame, col: str) -> float:
    """Mean over folds of the mean over each fold's seeds, NaN-skipping (NaN when nothing is defined)."""
    per_fold = g.groupby("fold")[col].mean()
    return float(per_fold.mean()) if per_fold.notna().any() else float("nan")


CI_METRICS = replicates.METRICS


def _confidence(board: pd.DataFrame, docs: list[dict], reps: dict[str, dict]) -> pd.DataFrame:
    """95% intervals of the leaderboard's own numbers (means over folds of seed means).

    Each replicate resamples patients within every held-out fold (folds are patient-disjoint: a
    bootstrap stratified by fold) with the same draws for every trial of a fold, recomputes each trial's
    metric and averages them exactly as the leaderboard does (``reports.replicates.aggregate``). The
    interval method per metric is ``reports.replicates.INTERVAL``'s (basic for AP and ECE, jackknife t for macro
    AUC, percentile otherwise), chosen by ``benchmarks/stats_calibration.py``'s coverage.
    """
    if not reps:
        return board
    groups: dict[tuple[str, str], list[dict]] = {}
    for d in docs:
        groups.setdefault((d["backbone"], d["strategy"]), []).append(d)
    for i, row in board.iterrows():
        members = groups.get((row["backbone"], row["strategy"]), [])
        if not members or any(d["id"] not in reps for d in members):
            continue  # an interval over some of the row's trials would not be the row's (warned above)
        trials = [reps[d["id"]] for d in members]
        for m in CI_METRICS:
            agg = replicates.aggregate(trials, m)
            board.loc[i, f"{m}_ci_low"], board.loc[i, f"{m}_ci_high"] = replicates.interval(
                m, agg["replicates"], agg["estimate"], agg["jackknife"])
    return board


def _per_label(docs: list[dict]) -> pd.DataFrame:
    rows = []
    for d in docs:
        for r in d["per_label"]:
            rows.append({"backbone": d["backbone"], "strategy": d["strategy"], "fold": d["fold"], "seed": d["seed"],
                         **r})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    num = [c for c in ("auc", "ap", "f1", "f1_fixed", "sensitivity", "specificity", "threshold", "ece", "brier")
           if c in df.columns]
    agg = df.groupby(KEYS + ["label"], sort=False)[num].agg(["mean", "std"])
    agg.columns = [f"{a}_{b}" if b == "std" else a for a, b in agg.columns]
    agg["n_trials_defined"] = df[df["defined"]].groupby(KEYS + ["label"], sort=False).size()
    return agg.reset_index()


def _groups(docs: list[dict], per_label: pd.DataFrame, head: float, tail: float) -> pd.DataFrame:
    if per_label.empty:
        return pd.DataFrame()
    prev = pd.DataFrame([d["train_prevalence"] for d in docs]).mean().to_dict()
    groups = group_labels(prev, (head, tail))
    rows = []
    for (b, s), g in per_label.groupby(KEYS, sort=False):
        for name, labels in groups.items():
            sub = g[g["label"].isin(labels)]
            rows.append({"backbone": b, "strategy": s, "group": name, "n_labels": len(labels),
                         "labels": ", ".join(labels), "auc": float(sub["auc"].mean()) if len(sub) else np.nan,
                         "ap": float(sub["ap"].mean()) if len(sub) else np.nan,
                         "f1": float(sub["f1"].mean()) if len(sub) else np.nan})
    return pd.DataFrame(rows)


def _friedman(trials: pd.DataFrame, ratio: float, metric: str = "macro_auc") -> dict:
    """Per backbone over fold blocks (seeds averaged, ``reports.compare``): the omnibus corrected F test
    (``corrected_f``, with the runs' mean n_test / n_train ``ratio``) and Friedman's mean ranks, Nemenyi's
    critical difference and the rank test's p (descriptive: they assume independent folds)."""
    from reports.html_common import clean

    out: dict = {"metric": metric, "unit": compare.UNIT, "min_blocks": compare.MIN_BLOCKS, "by_backbone": {}}
    if trials["strategy"].nunique() < 2:
        out["reason"] = "fewer than 2 strategies"
        return out
    means = compare.fold_means(trials, metric)
    for backbone, g in means.groupby("backbone", sort=False):
        wide = g.pivot_table(index="fold", columns="strategy", values=metric).dropna()
        if wide.shape[1] < 2 or len(wide) < 2:
            out["by_backbone"][backbone] = {"reason": f"{len(wide)} complete fold(s) of {wide.shape[1]} strategies",
                                           "n_blocks": int(len(wide))}
            continue
        res = compare.friedman_folds(wide)
        res["corrected_f"] = compare.corrected_f(wide.to_numpy(), ratio)
        out["by_backbone"][backbone] = {**clean(res), "blocks": int(len(wide))}
    return out


def _localisation(docs: list[dict], n_boot: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames, owners = [], []
    for d in docs:
        f = TrialFolder(d["_dir"]).localisation
        if f.is_file():
            frames.append(pd.read_csv(f))
            owners.append(d)
    if not frames:
        return pd.DataFrame(), pd.DataFrame()
    raw = pd.concat(frames, ignore_index=True)
    sizes = [len(f) for f in frames]  # the trial columns first, each repeated over its trial's rows
    front = pd.DataFrame({k: np.repeat([d[k if k != "trial" else "id"] for d in owners], sizes)
                          for k in ("trial", "backbone", "strategy", "fold", "seed")})
    raw = pd.concat([front, raw], axis=1)
    from reports.localisation import CHANCE_KEYS, CHANCE_METHODS, summarise

    chance = raw["method"].isin(CHANCE_METHODS)
    groups = list(raw[~chance].groupby(["backbone", "strategy", "method"], sort=False))
    if chance.any():
        # A chance map never sees the model: every trial of one (fold, seed) scores the same maps on the same
        # images, so each (fold, seed, image, finding) is counted once and the chance rows appear once per run.
        c = raw[chance]
        key = ["fold", "seed", "image_id", "finding", "method"]
        scores = [k for k in ("hit", "energy", "iou", "iobb", "mask_iou") if k in c]
        once = c.drop_duplicates(subset=key)
        if len(c.drop_duplicates(subset=key + scores)) != len(once):
            raise ValueError("localisation.csv: the chance maps of one (fold, seed, image, finding) score differently "
                             "in different trials; they must not depend on the model")
        groups += [((*CHANCE_KEYS, m), g) for m, g in once.groupby("method", sort=False)]
    out = []
    for (b, s, m), g in groups:
        summ = summarise(g, by=("finding",), n_boot=n_boot, rng=np.random.default_rng(0))
        summ.insert(0, "method", m)
        summ.insert(0, "strategy", s)
        summ.insert(0, "backbone", b)
        out.append(summ)
    return raw, pd.concat(out, ignore_index=True)


def _reliability(docs: list[dict], label_names: list[str]) -> pd.DataFrame:
    """The reliability diagrams' bins: each trial's sums from its ``metrics.json``, or, for a trial written
    before they existed, the same sums computed here from its ``predictions.npz``."""
    from reports.calibration import CURVE_EDGES, reliability, reliability_table

    filled, recomputed = [], 0
    for d in docs:
        if not d.get("reliability") and (e := trial_predictions(d)) is not None:
            rel = reliability(e["y"], e["p"])
            d = {**d, "reliability": {"edges": CURVE_EDGES.tolist(), **{k: v.tolist() for k, v in rel.items()}}}
            recomputed += 1
        filled.append(d)
    if recomputed:
        log.warning("%d trial(s) have no reliability sums in metrics.json (written before calibration existed): "
                    "their reliability diagrams were computed here from predictions.npz", recomputed)
    return reliability_table(filled, label_names)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.6g"))


def build_report(run_dir: str | Path, *, n_boot: int | None = None, html: bool = True) -> Report:
    """Rebuild every report of ``run_dir`` from its files. Raises FileNotFoundError without trials."""
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    grid, dataset = read_json(folder.grid_json, {}), read_json(folder.dataset_json, {})
    split, run = read_json(folder.split_json, {}), read_json(folder.run_json, {})
    docs = load_trials(run_dir)
    if not docs:
        raise FileNotFoundError(f"{run_dir}: no finished trials ({RF.TRIALS}/*/{RF.METRICS_JSON})")
    label_names = dataset.get("label_names") or [r["label"] for r in docs[0]["per_label"]]
    rep_cfg = grid.get("report", {})
    n_boot = int(rep_cfg.get("bootstrap", 1000) if n_boot is None else n_boot)
    trials = trial_table(docs, label_names)
    board = _mean_std_table(trials, label_names)
    reps = bootstrap_all(docs, n_boot, bootstrap_seed(grid))
    board = _confidence(board, docs, reps)
    # The documented columns first, then one AUC per label, then everything else.
    extra = [c for m in METRICS for c in (m, f"{m}_std") if c not in LEADING]
    ci_cols = [c for c in board.columns if c.endswith(("_ci_low", "_ci_high"))]
    board = board[LEADING + [f"auc_{n}" for n in label_names] + extra + ci_cols]
    board = board.sort_values("macro_auc", ascending=False, kind="stable").reset_index(drop=True)
    per_label = _per_label(docs)
    groups = _groups(docs, per_label, float(rep_cfg.get("head", 0.05)), float(rep_cfg.get("tail", 0.01)))
    significance = compare.significance(trials, reps, docs, baseline=rep_cfg.get("baseline", "bce"))
    friedman = _friedman(trials, compare.overlap_ratio(docs))
    loc_raw, loc = _localisation(docs, n_boot)
    report = Report(run_dir, trials, board, per_label, groups, significance, friedman, loc, label_names, grid,
                    dataset, split, run, docs=docs)
    report.reliability = _reliability(docs, label_names)
    if not loc_raw.empty:
        from reports.localisation import paired_against

        report.localisation_significance = paired_against(loc_raw, rep_cfg.get("baseline", "bce"))
    files = {RF.LEADERBOARD_CSV: board, RF.TRIALS_CSV: trials, RF.PER_LABEL_CSV: per_label, RF.GROUPS_CSV: groups,
             RF.SIGNIFICANCE_CSV: significance}
    if not report.reliability.empty:
        files[RF.RELIABILITY_CSV] = report.reliability
    if not loc.empty:
        files[RF.LOCALISATION_CSV] = loc
        files[RF.LOCALISATION_SIGNIFICANCE_CSV] = report.localisation_significance
    files.update(protocols.protocol_reports(report, docs, reps, board=lambda ext: _board_of(
        ext, label_names, n_boot, bootstrap_seed(grid))))
    for name, df in files.items():
        write_csv(df, run_dir / name)
        report.files[name] = str(run_dir / name)
    write_atomic(folder / RF.FRIEDMAN_JSON, lambda tmp: tmp.write_text(json.dumps(friedman, indent=1)))
    if html:
        from reports.html import write_html

        report.files[RF.LEADERBOARD_HTML] = str(write_html(report, folder / RF.LEADERBOARD_HTML, loc_raw=loc_raw))
    return report


def _board_of(docs: list[dict], label_names: list[str], n_boot: int, seed: int) -> tuple:
    """The leaderboard's steps on some trials' files (an external test set's): board, trials, replicates, CAMs."""
    trials, reps = trial_table(docs, label_names), bootstrap_all(docs, n_boot, seed)
    board = _confidence(_mean_std_table(trials, label_names), docs, reps).sort_values(
        "macro_auc", ascending=False, kind="stable").reset_index(drop=True)
    return board, trials, reps, _localisation(docs, n_boot)[1]


def format_top(board: pd.DataFrame, n: int = 10) -> str:
    """The top rows of a leaderboard as a fixed-width text table for the terminal."""
    cols = ["backbone", "strategy", "n_trials", "macro_auc", "macro_auc_std", "micro_auc", "macro_f1",
            "macro_f1_fixed", "micro_f1"]
    view = board[[c for c in cols if c in board.columns]].head(n).copy()
    for c in view.columns:
        if view[c].dtype.kind == "f":
            view[c] = view[c].map(lambda v: "nan" if pd.isna(v) else f"{v:.3f}")
    return view.to_string(index=False)
