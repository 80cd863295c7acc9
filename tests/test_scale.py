"""``benchmarks/scale.py`` at a small size: its JSON's structure, and that the reports it timed were complete.

Not a timing test: the figures are checked for shape and sign only. The page's load in Chromium is
exercised where ``/usr/bin/chromium`` and playwright are present (skipped otherwise, failed under CI,
as in tests/test_browser.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import scale  # noqa: E402
from reports import compare, replicates  # noqa: E402

SIZES = [(30, 200), (45, 120)]


def _chromium_ready() -> bool:
    try:
        scale.chromium()
        import playwright.sync_api  # noqa: F401
    except (FileNotFoundError, ImportError):
        return False
    return True


def test_run_folder_has_the_trials_format(tmp_path):
    root = scale.write_run(tmp_path / "run", 30, 90, n_boot=30, workers=1)
    grid = json.loads((root / "grid.json").read_text())
    assert {"grid.json", "dataset.json", "split.json", "run.json"} <= {p.name for p in root.iterdir()}
    trials = sorted((root / "trials").iterdir())
    assert len(trials) == 30 == len(grid["backbones"]) * len(grid["strategies"]) * grid["splits"]["folds"] * len(
        grid["seeds"])
    t = trials[0]
    doc = json.loads((t / "metrics.json").read_text())
    assert {"id", "backbone", "strategy", "fold", "seed", "summary", "per_label", "train_prevalence", "thresholds",
            "sizes", "history"} <= set(doc)
    assert doc["sizes"]["test"] == 90 and len(doc["per_label"]) == 14
    with np.load(t / "predictions.npz") as z:
        assert z["probs"].shape == z["labels"].shape == z["logits"].shape == (90, 14)
        assert z["probs"].dtype == np.float32 and z["thresholds"].shape == (14,)
        assert z["val_probs"].shape == (36, 14) and z["image_ids"].shape == z["patients"].shape == (90,)
        # metrics.json holds these predictions' metrics
        lab, micro = scale.fast_metrics(z["labels"], z["probs"], z["thresholds"])
        assert doc["summary"]["micro_auc"] == pytest.approx(micro["micro_auc"])
        assert [np.nan if r["auc"] is None else r["auc"] for r in doc["per_label"]] == pytest.approx(
            lab["auc"].tolist(), nan_ok=True)
    rep = replicates.load(t / replicates.FILE)
    assert rep["n_boot"] == 30 and rep["fold"] == doc["fold"] and rep["seed"] == grid["splits"]["seed"]
    assert all(rep["replicates"][m].shape == (30,) for m in replicates.METRICS)
    assert rep["estimate"]["macro_auc"] == pytest.approx(doc["summary"]["macro_auc"])
    loc = pd.read_csv(t / "localisation.csv")
    assert set(loc["method"]) == {"gradcam", "gradcam++", "random", "centre"}
    # the chance maps of a (fold, seed) score the same in every trial (the report refuses otherwise)
    b = grid["backbones"][0]
    one, two = (pd.read_csv(root / "trials" / f"{b}-{s}-f1-s2" / "localisation.csv") for s in grid["strategies"][:2])
    chance = ["random", "centre"]
    pd.testing.assert_frame_equal(one[one.method.isin(chance)].drop(columns="prob").reset_index(drop=True),
                                  two[two.method.isin(chance)].drop(columns="prob").reset_index(drop=True))
    assert set(one["image_id"]) == set(two["image_id"])


def test_json_structure_and_the_timed_reports(tmp_path):
    sizes = ",".join(f"{t}x{n}" for t, n in SIZES)
    load = _chromium_ready()
    cmd = [sys.executable, str(REPO / "benchmarks" / "scale.py"), "--sizes", sizes, "--page-sizes", "30x200",
           "--bootstrap", "50", "--loads", "1", "--in-process", "--work", str(tmp_path), "--keep", "--json"]
    if not load:
        cmd.append("--no-load")
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)  # one JSON object, nothing else on stdout
    assert [(r["trials"], r["images"]) for r in out["report"]] == SIZES
    assert all(r["seconds"] > 0 for r in out["report"])
    assert isinstance(out["exponent_trials"], float) and isinstance(out["exponent_images"], float)
    assert [(w["trials"], w["images"]) for w in out["write"]] == SIZES
    (page,) = out["page"]
    assert (page["trials"], page["images"]) == (30, 200)
    assert page["build_seconds"] > 0 and page["report_with_page_seconds"] >= page["build_seconds"]
    html = tmp_path / "run-30x200" / "leaderboard.html"
    assert page["bytes"] == html.stat().st_size > 100_000
    if load:
        assert 0 < page["load_seconds"] <= page["first_screen_seconds"] <= page["rendered_seconds"]
        assert page["figures"] >= 6 and page["console_errors"] == []
    for entry in out["report"]:
        root = tmp_path / f"run-{entry['trials']}x{entry['images']}"
        grid = json.loads((root / "grid.json").read_text())
        n_rows = len(grid["backbones"]) * len(grid["strategies"])
        board = pd.read_csv(root / "leaderboard.csv")
        assert len(board) == entry["rows"] == n_rows
        assert board["n_trials"].sum() == entry["trials"] == entry["trials_read"]
        assert board["macro_auc_ci_low"].notna().all()  # intervals came from the trials' bootstrap.npz
        assert len(pd.read_csv(root / "trials.csv")) == entry["trials"]
        assert len(pd.read_csv(root / "per_label.csv")) == n_rows * 14 == entry["per_label_rows"]
        sig = pd.read_csv(root / "significance.csv")
        assert len(sig) == entry["significance_rows"] == len(grid["backbones"]) * (len(grid["strategies"]) - 1) * len(compare.PAIRED_METRICS)
        assert (root / "friedman.json").is_file() and (root / "localisation.csv").is_file()
        assert {"leaderboard.csv", "per_label.csv", "groups.csv", "significance.csv"} <= set(entry["files"])


def test_docstring_examples():
    import doctest

    assert doctest.testmod(scale, raise_on_error=False).failed == 0
