"""Aggregate a run folder's trial outputs into leaderboards (files on disk only: no Ray, no bench).

Inputs (written by trials): ``RUN_DIR/trials/<id>/metrics.json``, ``predictions.npz``,
``localisation.csv``; ``RUN_DIR/grid.json``, ``dataset.json``, ``split.json``.
Outputs: ``leaderboard.csv`` (one row per backbone x strategy), ``per_label.csv``,
``groups.csv`` (head / medium / tail), ``significance.csv`` (paired tests against the baseline),
``friedman.json``, ``localisation.csv``, ``localisation_significance.csv`` (paired tests of the maps
against the baseline's) and ``leaderboard.html``.

Means and standard deviations are over the trials (folds x seeds) of a backbone x strategy.
Confidence intervals are 95% patient-bootstrap intervals of those same means (patients resampled
within each held-out fold, every trial's metric recomputed, averaged over the trials).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reports import stats
from reports.metrics import group_labels

log = logging.getLogger(__name__)

METRICS = ("macro_auc", "micro_auc", "macro_f1", "micro_f1", "macro_f1_fixed", "micro_f1_fixed", "macro_ap",
           "macro_sensitivity", "macro_specificity")
KEYS = ["backbone", "strategy"]
LEADING = ["backbone", "strategy", "n_trials", "macro_auc", "macro_auc_std", "micro_auc", "micro_auc_std", "macro_f1",
           "macro_f1_std", "micro_f1", "micro_f1_std", "macro_f1_fixed", "micro_f1_fixed"]


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


def load_trials(run_dir: Path) -> list[dict]:
    """Every finished trial's ``metrics.json`` (sorted by id)."""
    docs = []
    for path in sorted((run_dir / "trials").glob("*/metrics.json")):
        if path.parent.name.startswith("."):  # a copy being made (or cut short): not a finished trial
            continue
        doc = json.loads(path.read_text())
        doc["_dir"] = str(path.parent)
        docs.append(doc)
    return docs


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
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_std_table(trials: pd.DataFrame, label_names: list[str]) -> pd.DataFrame:
    out = []
    for (b, s), g in trials.groupby(KEYS, sort=False):
        row = {"backbone": b, "strategy": s, "n_trials": len(g)}
        for m in METRICS:
            mean, std = stats.mean_std(g[m].to_numpy())
            row[m], row[f"{m}_std"] = mean, std
        for name in label_names:
            row[f"auc_{name}"] = float(np.nanmean(g[f"auc_{name}"])) if g[f"auc_{name}"].notna().any() else np.nan
        out.append(row)
    return pd.DataFrame(out)


def _trial_predictions(doc: dict) -> dict | None:
    f = Path(doc["_dir"]) / "predictions.npz"
    if not f.is_file():
        return None
    with np.load(f, allow_pickle=False) as z:
        y, p, thr = z["labels"], z["probs"], z["thresholds"]
        return {"y": y, "p": p, "dec": (p >= thr[None, :]).astype(np.int8), "pat": z["patients"].astype(str)}


CI_METRICS = ("macro_auc", "micro_auc", "macro_ap", "macro_f1", "micro_f1")


def _confidence(board: pd.DataFrame, docs: list[dict], n_boot: int) -> pd.DataFrame:
    """95% patient-bootstrap intervals of the leaderboard's own numbers (means over folds x seeds).

    Each replicate resamples patients within every held-out fold (folds are patient-disjoint, so this
    is a bootstrap over patients stratified by fold), recomputes each trial's metric and averages over
    the trials exactly as the leaderboard does. The same fold gets the same resampled patients for
    every seed, backbone and strategy, so intervals of different rows are comparable.
    """
    if n_boot <= 0:
        return board
    groups: dict[tuple[str, str], list[dict]] = {}
    for d in docs:
        groups.setdefault((d["backbone"], d["strategy"]), []).append(d)
    for i, row in board.iterrows():
        reps = {m: [] for m in CI_METRICS}
        for d in groups.get((row["backbone"], row["strategy"]), []):
            e = _trial_predictions(d)
            if e is None:
                continue
            ci = stats.bootstrap_macro_ci(e["y"], e["p"], e["pat"], decisions=e["dec"], n_boot=n_boot,
                                          rng=np.random.default_rng(1000 + int(d["fold"])), return_replicates=True)
            for m in CI_METRICS:
                reps[m].append(ci["replicates"][m])
        for m in CI_METRICS:
            if not reps[m]:
                continue
            with np.errstate(all="ignore"):
                mean = np.nanmean(np.vstack(reps[m]), axis=0)
            mean = mean[np.isfinite(mean)]
            if mean.size:
                board.loc[i, f"{m}_ci_low"], board.loc[i, f"{m}_ci_high"] = np.quantile(mean, [0.025, 0.975])
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
    num = [c for c in ("auc", "ap", "f1", "f1_fixed", "sensitivity", "specificity", "threshold") if c in df.columns]
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


def _significance(trials: pd.DataFrame, baseline: str) -> pd.DataFrame:
    rows = []
    for backbone, g in trials.groupby("backbone", sort=False):
        base = g[g["strategy"] == baseline].set_index(["fold", "seed"])
        if base.empty:
            continue
        block = []
        for strategy, gs in g[g["strategy"] != baseline].groupby("strategy", sort=False):
            gs = gs.set_index(["fold", "seed"])
            common = gs.index.intersection(base.index)
            for metric in ("macro_auc", "macro_f1", "micro_auc"):
                a, b = gs.loc[common, metric].to_numpy(), base.loc[common, metric].to_numpy()
                t = stats.paired_test(a, b) if len(common) >= 2 else {"mean_diff": np.nan, "p_t": np.nan}
                block.append({"backbone": backbone, "strategy": strategy, "baseline": baseline, "metric": metric,
                              "n_pairs": int(len(common)), "mean_diff": float(t.get("mean_diff", np.nan)),
                              "p": float(t.get("p_t", t.get("p", np.nan)))})
        if block:
            df = pd.DataFrame(block)
            for metric, idx in df.groupby("metric").groups.items():  # Holm within backbone x metric
                df.loc[idx, "p_holm"] = stats.holm(df.loc[idx, "p"].to_numpy())
            rows.append(df)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["backbone", "strategy", "baseline", "metric", "n_pairs", "mean_diff", "p", "p_holm"])


def _friedman(trials: pd.DataFrame, metric: str = "macro_auc") -> dict:
    if trials["strategy"].nunique() < 2:
        return {"reason": "fewer than 2 strategies"}
    wide = trials.pivot_table(index=["backbone", "fold", "seed"], columns="strategy", values=metric)
    wide = wide.dropna()
    if len(wide) < 2:
        return {"reason": "fewer than 2 complete blocks"}
    from reports.html import clean

    res = stats.friedman_nemenyi(wide)
    return {**clean(res), "metric": metric, "blocks": int(len(wide))}


def _localisation(docs: list[dict], n_boot: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames = []
    for d in docs:
        f = Path(d["_dir"]) / "localisation.csv"
        if f.is_file():
            df = pd.read_csv(f)
            df.insert(0, "trial", d["id"])
            df.insert(1, "backbone", d["backbone"])
            df.insert(2, "strategy", d["strategy"])
            df.insert(3, "fold", d["fold"])
            df.insert(4, "seed", d["seed"])
            frames.append(df)
    if not frames:
        return pd.DataFrame(), pd.DataFrame()
    raw = pd.concat(frames, ignore_index=True)
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


def write_csv(df: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.6g"))


def write_atomic(path: Path, write) -> None:
    """Call ``write(tmp)`` and rename ``tmp`` to ``path``: a failed write (a full disk) leaves the previous
    file untouched and no temporary file; an ``OSError`` names ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:
            exc.filename = str(path)
        raise


def build_report(run_dir: str | Path, *, n_boot: int | None = None, html: bool = True) -> Report:
    """Rebuild every report of ``run_dir`` from its files. Raises FileNotFoundError without trials."""
    run_dir = Path(run_dir)
    grid = json.loads((run_dir / "grid.json").read_text()) if (run_dir / "grid.json").is_file() else {}
    dataset = json.loads((run_dir / "dataset.json").read_text()) if (run_dir / "dataset.json").is_file() else {}
    split = json.loads((run_dir / "split.json").read_text()) if (run_dir / "split.json").is_file() else {}
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    docs = load_trials(run_dir)
    if not docs:
        raise FileNotFoundError(f"{run_dir}: no finished trials (trials/*/metrics.json)")
    label_names = dataset.get("label_names") or [r["label"] for r in docs[0]["per_label"]]
    rep_cfg = grid.get("report", {})
    n_boot = int(rep_cfg.get("bootstrap", 1000) if n_boot is None else n_boot)
    trials = trial_table(docs, label_names)
    board = _mean_std_table(trials, label_names)
    board = _confidence(board, docs, n_boot)
    # The documented columns first, then one AUC per label, then everything else.
    extra = [c for m in METRICS for c in (m, f"{m}_std") if c not in LEADING]
    ci_cols = [c for c in board.columns if c.endswith(("_ci_low", "_ci_high"))]
    board = board[LEADING + [f"auc_{n}" for n in label_names] + extra + ci_cols]
    board = board.sort_values("macro_auc", ascending=False, kind="stable").reset_index(drop=True)
    per_label = _per_label(docs)
    groups = _groups(docs, per_label, float(rep_cfg.get("head", 0.05)), float(rep_cfg.get("tail", 0.01)))
    significance = _significance(trials, rep_cfg.get("baseline", "bce"))
    friedman = _friedman(trials)
    loc_raw, loc = _localisation(docs, n_boot)
    report = Report(run_dir, trials, board, per_label, groups, significance, friedman, loc, label_names, grid,
                    dataset, split, run)
    if not loc_raw.empty:
        from reports.localisation import paired_against

        report.localisation_significance = paired_against(loc_raw, rep_cfg.get("baseline", "bce"))
    files = {"leaderboard.csv": board, "trials.csv": trials, "per_label.csv": per_label, "groups.csv": groups,
             "significance.csv": significance}
    if not loc.empty:
        files["localisation.csv"] = loc
        files["localisation_significance.csv"] = report.localisation_significance
    for name, df in files.items():
        write_csv(df, run_dir / name)
        report.files[name] = str(run_dir / name)
    write_atomic(run_dir / "friedman.json", lambda tmp: tmp.write_text(json.dumps(friedman, indent=1)))
    if html:
        from reports.html import write_html

        report.files["leaderboard.html"] = str(write_html(report, run_dir / "leaderboard.html", loc_raw=loc_raw))
    return report


def format_top(board: pd.DataFrame, n: int = 10) -> str:
    """The top rows of a leaderboard as a fixed-width text table for the terminal."""
    cols = ["backbone", "strategy", "n_trials", "macro_auc", "macro_auc_std", "micro_auc", "macro_f1",
            "macro_f1_fixed", "micro_f1"]
    view = board[[c for c in cols if c in board.columns]].head(n).copy()
    for c in view.columns:
        if view[c].dtype.kind == "f":
            view[c] = view[c].map(lambda v: "nan" if pd.isna(v) else f"{v:.3f}")
    return view.to_string(index=False)
