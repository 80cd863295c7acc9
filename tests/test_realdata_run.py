"""grids/nih-sample.yaml's path end to end on the real NIH subset (tiny model, few epochs), boxes included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from bench.config import parse_grid
from bench.run import run_grid
from reports.leaderboard import build_report

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_nih_sample_grid_runs_end_to_end(nih_root, ray_session, tmp_path):
    repo = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((repo / "grids" / "nih-sample.yaml").read_text())
    # 64 px and 4 epochs: enough for the tiny model to learn above chance (macro AUC about 0.6), still quick.
    raw["dataset"].update(root=str(nih_root), image_size=64)
    raw["splits"]["folds"] = 2
    raw.update(backbones=["test_resnet"], strategies=["bce"])
    raw["train"].update(epochs=4, batch_size=64, lr=0.003)
    raw["localisation"].update(max_images=40, gallery=1)
    raw["report"]["bootstrap"] = 50
    cfg = parse_grid(raw, source="grids/nih-sample.yaml (reduced)")
    out = tmp_path / "run"
    outcome = run_grid(None, out=out, cfg=cfg)
    assert not outcome.errors and len(outcome.completed) == 2
    report = build_report(out)
    board = report.leaderboard
    assert len(board) == 1 and board["n_trials"].iloc[0] == 2
    assert len([c for c in board.columns if c.startswith("auc_")]) == 14
    # Each trial's macro AUC is the mean of sklearn's per-label AUCs over its held-out predictions ...
    aucs = []
    for fold in (0, 1):
        trial = out / "trials" / f"test_resnet-bce-f{fold}-s0"
        reported = json.loads((trial / "metrics.json").read_text())["summary"]["macro_auc"]
        with np.load(trial / "predictions.npz") as z:
            y, p = z["labels"], z["probs"]
        by_label = [roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
        assert len(by_label) >= 12 and reported == pytest.approx(np.mean(by_label), abs=1e-9)
        aucs.append(reported)
    # ... and the model learnt something: the mean over folds is above chance, and so is its interval.
    row = board.iloc[0]
    assert row["macro_auc"] == pytest.approx(np.mean(aucs), abs=1e-9)
    assert 0.5 < row["macro_auc_ci_low"] <= row["macro_auc"] <= row["macro_auc_ci_high"], row.to_dict()
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["images"] == 1891 and dataset["patients"] == 1000
    loc = pd.read_csv(out / "trials" / "test_resnet-bce-f0-s0" / "localisation.csv")
    assert set(loc["method"]) == {"gradcam", "gradcam++", "random", "centre"}
    assert set(loc["finding"]) <= {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                                   "Pneumonia", "Pneumothorax"}
    assert loc.loc[loc["method"] == "gradcam", "image_id"].nunique() == 40
    assert "Wang" in (out / "leaderboard.html").read_text()  # published reference rows shown on NIH data
