"""grids/nih-sample.yaml's path end to end on the real NIH subset (tiny model, few epochs), boxes included."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.config import parse_grid
from bench.run import run_grid
from reports.leaderboard import build_report

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_nih_sample_grid_runs_end_to_end(nih_root, ray_session, tmp_path):
    repo = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((repo / "grids" / "nih-sample.yaml").read_text())
    raw["dataset"].update(root=str(nih_root), image_size=32)
    raw["splits"]["folds"] = 2
    raw.update(backbones=["test_resnet"], strategies=["bce"])
    raw["train"].update(epochs=1, batch_size=64)
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
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["images"] == 1891 and dataset["patients"] == 1000
    loc = pd.read_csv(out / "trials" / "test_resnet-bce-f0-s0" / "localisation.csv")
    assert set(loc["method"]) == {"gradcam", "gradcam++", "random", "centre"}
    assert set(loc["finding"]) <= {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                                   "Pneumonia", "Pneumothorax"}
    assert loc.loc[loc["method"] == "gradcam", "image_id"].nunique() == 40
    assert "Wang" in (out / "leaderboard.html").read_text()  # published reference rows shown on NIH data
