"""The reports of the evaluation protocols (the grid's ``protocol`` section), from the run folder's files alone.

``official``: :func:`official_table`, each label's AUC on the official test list beside the published figures
(Wang et al. 2017 on the same official split; CheXNet on a random split), with what differs between the two
settings (:func:`caveats`).

``external``: every trial brings ``trials/<id>/external/<set>/`` (laid out as a trial's own folder), so each test
set gets a leaderboard built by the same code as the internal one (:func:`external_reports`), and its
localisation when it has boxes. :func:`drop_table` is the internal-minus-external macro AUC per backbone x
strategy: both terms average the *same* trained models the leaderboard's way (mean over folds of seed means),
and its 95% interval comes from the difference of their bootstrap replicates, paired over those models
(each replicate resamples the patients of the internal held-out folds and of the test set, independently,
the test set alike for every fold's models, and recomputes both averages over the same models). Its coverage
of a known population drop is measured by ``benchmarks/drop_coverage.py`` (README, "Protocols").

>>> caveats({"dataset": {"image_size": 64, "kind": "nih"}, "train": {"epochs": 2, "pretrained": False}}, 1000)[0]
'image size: 64 px here; 224 px or more published'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from reports import replicates
from reports.runfolder import RunFolder, TrialFolder, read_json

log = logging.getLogger(__name__)

#: The published settings (REFERENCES.md): what the per-label table's caveats compare the run with.
PUBLISHED_SETTING = {"image_size": 224, "images": 112_120, "pretrained": "ImageNet"}
KEYS = ["backbone", "strategy"]


@dataclass
class ProtocolReport:
    """The protocol's part of a report: ``kind``; official: ``official`` (per-label AUC beside the published) and
    ``caveats``; external: ``external`` (test set name -> :class:`ExternalReport`) and ``drop``."""

    kind: str = "kfold"
    official: pd.DataFrame = field(default_factory=pd.DataFrame)
    caveats: list = field(default_factory=list)
    external: dict = field(default_factory=dict)
    drop: pd.DataFrame = field(default_factory=pd.DataFrame)


def protocol_reports(report, docs: list[dict], reps: dict, *, board: Callable[[list[dict]], tuple]) -> dict:
    """Fill ``report.protocol`` from the run's files; returns the CSV files to write (name -> table).
    ``board(docs)`` builds a leaderboard the internal one's way (``reports.leaderboard``)."""
    from reports import runfolder as RF

    proto = protocol_of(report.grid)
    out = report.protocol = ProtocolReport(kind=proto["kind"])
    files = {}
    if "official" in (proto["kind"], proto.get("train")):
        out.official = official_table(report)
        out.caveats = caveats(report.grid, ((report.split.get("quality") or {}).get("sizes") or {}).get("train"))
        files[RF.OFFICIAL_CSV] = out.official
    if proto["kind"] == "external":
        out.external = external_reports(report.run_dir, docs, board=board)
        out.drop = drop_table(docs, reps, out.external)
        if out.external:
            files[RF.EXTERNAL_LEADERBOARD_CSV] = pd.concat(
                [e.leaderboard.assign(test_set=n) for n, e in out.external.items()], ignore_index=True)
            files[RF.EXTERNAL_DROP_CSV] = out.drop
            loc = [e.localisation.assign(test_set=n) for n, e in out.external.items() if not e.localisation.empty]
            if loc:
                files[RF.EXTERNAL_LOCALISATION_CSV] = pd.concat(loc, ignore_index=True)
    return files


def protocol_of(grid: dict) -> dict:
    """The grid's protocol section (``kind: kfold`` for a grid written before protocols existed)."""
    return {"kind": "kfold", "train": "kfold", "test_sets": {}, **(grid.get("protocol") or {})}


# ---- official -------------------------------------------------------------------------------------------------

def caveats(grid: dict, n_train: int | None) -> list[str]:
    """What differs between this run and the published settings: image size, pretraining, epochs, data."""
    ds, tr = grid.get("dataset") or {}, grid.get("train") or {}
    pre = tr.get("pretrained", False)
    pre_text = "none (from scratch)" if pre is False else ("timm hub weights" if pre is True else f"weights {pre}")
    out = [f"image size: {ds.get('image_size')} px here; {PUBLISHED_SETTING['image_size']} px or more published",
           f"pretraining: {pre_text} here; {PUBLISHED_SETTING['pretrained']} published",
           f"epochs: {tr.get('epochs')} here; the published models trained far longer, on the full dataset"]
    data = f"{n_train:,} training images here" if n_train else "this run's training images"
    out.append(f"data: {data} ({ds.get('kind')}); all {PUBLISHED_SETTING['images']:,} NIH images published")
    out.append("split: Wang et al. 2017 tested on NIH's official test list; CheXNet on a random patient split of "
               "its own")
    if str(ds.get("kind")) != "nih":
        out.append(f"dataset kind {ds.get('kind')!r}: not NIH ChestX-ray14, the published figures only name the labels")
    return out


def official_table(report) -> pd.DataFrame:
    """One row per label and backbone x strategy: its AUC on the official test list (mean over seeds ± sd), and
    the published per-label AUCs of Wang et al. 2017 and CheXNet where the label is one of NIH's 14."""
    from reports.html_figures import REFERENCE_AUC

    t = report.trials
    if t.empty:
        return pd.DataFrame()
    rows = []
    for (b, s), g in t.groupby(KEYS, sort=False):
        for name in report.label_names:
            col = f"auc_{name}"
            vals = g[col].to_numpy(dtype=float) if col in g else np.array([np.nan])
            known = vals[~np.isnan(vals)]
            row = {"backbone": b, "strategy": s, "label": name, "auc": float(known.mean()) if len(known) else np.nan,
                   "auc_std": float(known.std(ddof=1)) if len(known) > 1 else np.nan, "n_seeds": int(len(known))}
            for ref, values in REFERENCE_AUC.items():
                row[ref] = values.get(name, np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


# ---- external -------------------------------------------------------------------------------------------------

@dataclass
class ExternalReport:
    """One external test set: its leaderboard, per-trial table, localisation summary and description."""

    name: str
    leaderboard: pd.DataFrame
    trials: pd.DataFrame
    localisation: pd.DataFrame
    describe: dict = field(default_factory=dict)
    docs: list = field(default_factory=list, repr=False)
    reps: dict = field(default_factory=dict, repr=False)


def external_docs(docs: list[dict]) -> dict[str, list[dict]]:
    """Test set name -> the ``metrics.json`` of every trial scored on it (with ``_dir``: its folder)."""
    import json

    out: dict[str, list[dict]] = {}
    for d in docs:
        folder = TrialFolder(d["_dir"])
        for name in folder.external_names():
            sub = folder.external(name)
            # the same model: its training history and prevalence are the internal trial's
            out.setdefault(name, []).append({**json.loads(sub.metrics.read_text()), "_dir": str(sub.path),
                                             "train_prevalence": d.get("train_prevalence", {}),
                                             "history": d.get("history") or []})
    return out


def external_reports(run_dir: Path, docs: list[dict], *, board: Callable[[list[dict]], tuple]
                     ) -> dict[str, ExternalReport]:
    """A leaderboard per external test set; ``board(docs)`` is the internal leaderboard's own builder
    (``reports.leaderboard``), returning (leaderboard, trials, replicates, localisation summary)."""
    described = read_json(RunFolder(run_dir).external_json, {}) or {}
    out = {}
    for name, ext in external_docs(docs).items():
        table, trials, reps, loc = board(ext)
        out[name] = ExternalReport(name, table, trials, loc, described.get(name, {}), ext, reps)
    return out


def drop_table(docs: list[dict], internal_reps: dict[str, dict], externals: dict[str, ExternalReport], *,
               metric: str = "macro_auc") -> pd.DataFrame:
    """Internal minus external ``metric`` per test set and backbone x strategy, over the models scored on both,
    with its paired 95% percentile interval (module docstring) and the per-model drops' mean and sd."""
    rows = []
    internal = {d["id"]: d for d in docs}
    for name, ext in externals.items():
        groups: dict[tuple, list[dict]] = {}
        for d in ext.docs:
            if d["id"] in internal:
                groups.setdefault((d["backbone"], d["strategy"]), []).append(d)
        for (b, s), members in groups.items():
            ids = [d["id"] for d in members]
            per_model = np.array([_value(internal[i], metric) - _value(d, metric) for i, d in zip(ids, members)])
            row = {"test_set": name, "backbone": b, "strategy": s, "n_models": len(ids),
                   "drop_per_model_mean": float(np.nanmean(per_model)) if np.isfinite(per_model).any() else np.nan,
                   "drop_per_model_std": float(np.nanstd(per_model, ddof=1)) if np.isfinite(per_model).sum() > 1
                   else np.nan}
            folds = [{"fold": internal[i]["fold"]} for i in ids]
            est_i = _fold_average([_value(internal[i], metric) for i in ids], folds)
            est_e = _fold_average([_value(d, metric) for d in members], folds)
            row.update({"internal": est_i, "external": est_e, "drop": est_i - est_e,
                        "drop_ci_low": np.nan, "drop_ci_high": np.nan})
            if all(i in internal_reps for i in ids) and all(i in ext.reps for i in ids):
                a = replicates.aggregate([internal_reps[i] for i in ids], metric)
                e = replicates.aggregate([ext.reps[i] for i in ids], metric)
                diff = a["replicates"] - e["replicates"]
                if np.isfinite(diff).any():
                    row["drop_ci_low"], row["drop_ci_high"] = replicates.interval(
                        metric, diff, a["estimate"] - e["estimate"], np.array([]), method="percentile")
            rows.append(row)
    return pd.DataFrame(rows)


def _value(doc: dict, metric: str) -> float:
    v = (doc.get("summary") or {}).get(metric)
    return np.nan if v is None else float(v)


def _fold_average(values: list[float], folds: list[dict]) -> float:
    """Mean over folds of the mean over each fold's seeds (the leaderboard's average), NaN-skipping."""
    s = pd.Series(values, dtype=float).groupby([f["fold"] for f in folds]).mean()
    return float(s.mean()) if s.notna().any() else float("nan")
