"""`bench run` end to end on Ray Tune (the session's local Ray), then `bench report` from files alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import main

pytestmark = pytest.mark.slow

GRID = """\
name: e2e
dataset: {{kind: synthetic, root: {root}, n: 200, size: 64, image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_resnet]
strategies: [bce, focal, ml_ros]
train: {{epochs: 2, batch_size: 32, lr: 0.003}}
seeds: [0]
resources: {{cpu: 1}}
localisation: {{max_images: 10, gallery: 1}}
report: {{bootstrap: 50}}
"""

REQUIRED = ["backbone", "strategy", "n_trials", "macro_auc", "macro_auc_std", "micro_auc", "micro_auc_std",
            "macro_f1", "macro_f1_std", "micro_f1", "micro_f1_std", "macro_f1_fixed", "micro_f1_fixed"]


@pytest.fixture(scope="module")
def run(ray_session, synth_root, tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    grid = d / "grid.yaml"
    grid.write_text(GRID.format(root=synth_root))
    out = d / "run"
    code = main(["-q", "run", "--grid", str(grid), "--out", str(out)])
    return {"grid": grid, "out": out, "code": code}


def test_run_writes_leaderboard_and_trials(run):
    assert run["code"] == 0
    out = run["out"]
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.columns[: len(REQUIRED)]) == REQUIRED
    labels = json.loads((out / "dataset.json").read_text())["label_names"]
    assert [c for c in board.columns if c.startswith("auc_")] == [f"auc_{n}" for n in labels]
    assert sorted(board["strategy"]) == ["bce", "focal", "ml_ros"] and (board["n_trials"] == 2).all()
    for tdir in (out / "trials").iterdir():  # every trial's macro AUC against sklearn on its saved predictions
        import numpy as np
        from sklearn.metrics import roc_auc_score

        with np.load(tdir / "predictions.npz") as z:
            y, p = z["labels"], z["probs"]
        aucs = [roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1]) if 0 < np.nansum(y[:, j]) < len(y)]
        summary = json.loads((tdir / "metrics.json").read_text())["summary"]
        assert summary["macro_auc"] == pytest.approx(np.mean(aucs), abs=1e-6)
    trials = sorted(p.name for p in (out / "trials").iterdir())
    assert trials == [f"test_resnet-{s}-f{f}-s0" for s in ("bce", "focal", "ml_ros") for f in (0, 1)]
    for t in trials:
        for f in ("metrics.json", "predictions.npz", "config.json"):
            assert (out / "trials" / t / f).is_file()
    cfg = json.loads((out / "trials" / trials[0] / "config.json").read_text())
    assert cfg["split_hash"] == json.loads((out / "split.json").read_text())["hash"]
    run_meta = json.loads((out / "run.json").read_text())
    assert run_meta["status"] == "complete" and run_meta["versions"]["torch"] and "commit" in run_meta["git"]
    html = (out / "leaderboard.html").read_text()
    assert html.count("Plotly") > 0 and "displaylogo" in html
    assert (out / "localisation.csv").is_file()


def test_report_rebuilds_from_files_alone(run, tmp_path):
    out = run["out"]
    before = pd.read_csv(out / "leaderboard.csv")
    (out / "leaderboard.csv").unlink()
    (out / "leaderboard.html").unlink()
    # In a fresh interpreter that never imports Ray.
    code = ("import sys; from bench.cli import main; rc = main(['report', sys.argv[1]]); "
            "assert 'ray' not in sys.modules, 'reports imported ray'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after = pd.read_csv(out / "leaderboard.csv")
    pd.testing.assert_frame_equal(before, after)
    assert (out / "leaderboard.html").is_file()


def test_replicates_from_trials_equal_those_computed_at_report_time(run, tmp_path, monkeypatch):
    """Trials bring their bootstrap replicates; a report without them recomputes the same numbers, in this process
    when the work is small (this run's), in spawned worker processes when it is large enough to pay for them."""
    import concurrent.futures
    import os
    import shutil

    import numpy as np

    from reports import trial_bootstraps
    from reports.leaderboard import build_report

    out = run["out"]
    files = sorted((out / "trials").glob("*/bootstrap.npz"))
    assert len(files) == 6  # every trial computed its own replicates on its worker
    with_files, without = tmp_path / "with", tmp_path / "without"
    shutil.copytree(out, with_files)
    shutil.copytree(out, without)
    for f in (without / "trials").glob("*/bootstrap.npz"):
        f.unlink()
    a = build_report(with_files, html=False)
    pool = concurrent.futures.ProcessPoolExecutor

    started = []

    class Recorded(pool):
        def __init__(self, *args, **kwargs):
            started.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Recorded)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    b = build_report(without, html=False)
    assert started == []  # this run's 6 small trials: in this process
    monkeypatch.setattr(trial_bootstraps, "PARALLEL_WORK", 1)  # any work: worker processes compute them
    c = build_report(without, html=False)
    assert started == [(2,)]
    assert not list((without / "trials").glob("*/bootstrap.npz"))  # the report does not write into trials
    for other in (b, c):
        pd.testing.assert_frame_equal(a.leaderboard, other.leaderboard, check_exact=False, rtol=0, atol=1e-12)
        pd.testing.assert_frame_equal(a.significance, other.significance, check_exact=False, rtol=0, atol=1e-12)
        assert a.friedman == other.friedman
    sig = pd.read_csv(out / "significance.csv")
    assert sig["ci_low"].notna().all() and sig["p_boot"].between(0, 1).all()
    assert np.isfinite(pd.read_csv(out / "leaderboard.csv")[["macro_ap_ci_low", "macro_ap_ci_high"]]).all().all()


def test_aggregates_equal_pandas_over_trials_csv(run):
    """Leaderboard values and paired differences from an independent pandas computation over trials.csv."""
    out = run["out"]
    trials, board = pd.read_csv(out / "trials.csv"), pd.read_csv(out / "leaderboard.csv").set_index("strategy")
    fold_means = trials.groupby(["strategy", "fold"])[["macro_auc", "macro_ap", "macro_f1"]].mean()
    ref = fold_means.groupby("strategy").mean()
    for m in ("macro_auc", "macro_ap", "macro_f1"):
        assert board[m].to_dict() == pytest.approx(ref[m].to_dict(), abs=1e-6)  # CSVs keep 6 significant digits
    sig = pd.read_csv(out / "significance.csv").set_index(["strategy", "metric"])
    for s in ("focal", "ml_ros"):
        for m in ("macro_auc", "macro_ap", "macro_f1"):
            diff = (fold_means.loc[s, m] - fold_means.loc["bce", m]).mean()
            assert sig.loc[(s, m), "mean_diff"] == pytest.approx(diff, abs=1e-6)
            assert sig.loc[(s, m), "n_folds"] == 2
    fr = json.loads((out / "friedman.json").read_text())
    assert fr["by_backbone"]["test_resnet"]["n_blocks"] == 2 and not fr["by_backbone"]["test_resnet"]["enough_blocks"]
    # the omnibus F: fold means as blocks, the trials' own n_test / n_train, by an independent ANOVA by hand
    import numpy as np

    sizes = [json.loads(m.read_text())["sizes"] for m in sorted((out / "trials").glob("*/metrics.json"))]
    ratio = np.mean([z["test"] / (z["train"] + z.get("val", 0)) for z in sizes])
    a = fold_means["macro_auc"].unstack("strategy").to_numpy()  # folds x strategies
    n, k = a.shape
    resid = a - a.mean(1, keepdims=True) - a.mean(0, keepdims=True) + a.mean()
    f_ref = (n * a.mean(0).var() * k / (k - 1)) / ((resid ** 2).sum() / ((k - 1) * (n - 1)) * (1 + n * ratio))
    cf = fr["by_backbone"]["test_resnet"]["corrected_f"]
    assert cf["df"] == [k - 1, (k - 1) * (n - 1)] and cf["F"] == pytest.approx(f_ref, rel=1e-4)


def test_calibration_on_the_leaderboard_and_in_paper_tables(run, capsys):
    """ECE and Brier of each trial equal sklearn's on its saved predictions; the leaderboard carries them with
    intervals; the reliability bins add up; ``bench report --format`` writes both paper tables."""
    import numpy as np
    from sklearn.metrics import brier_score_loss

    out = run["out"]
    for tdir in (out / "trials").iterdir():
        with np.load(tdir / "predictions.npz") as z:
            y, p = z["labels"].astype(float), z["probs"].astype(float)
        briers = [brier_score_loss(y[~np.isnan(y[:, j]), j], p[~np.isnan(y[:, j]), j]) for j in range(y.shape[1])]
        doc = json.loads((tdir / "metrics.json").read_text())
        assert doc["summary"]["macro_brier"] == pytest.approx(np.mean(briers), abs=1e-6)
        assert 0 < doc["summary"]["macro_ece"] < 1
        assert np.sum(doc["reliability"]["n"]) == np.sum(~np.isnan(y))
    board = pd.read_csv(out / "leaderboard.csv")
    for m in ("macro_ece", "macro_brier"):
        assert np.isfinite(board[[m, f"{m}_ci_low", f"{m}_ci_high"]]).all().all()
        assert (board[f"{m}_ci_low"] <= board[f"{m}_ci_high"]).all()
    rel = pd.read_csv(out / "reliability.csv")
    labels = json.loads((out / "dataset.json").read_text())["label_names"]
    assert len(rel) == 3 * len(labels) * 10 and (rel["n_trials"] == 2).all()
    assert "Calibration" in (out / "leaderboard.html").read_text()
    for fmt, name in (("markdown", "leaderboard.md"), ("latex", "leaderboard.tex")):
        assert main(["report", str(out), "--format", fmt, "--bootstrap", "50"]) == 0
        text = (out / name).read_text()
        assert text.strip() in capsys.readouterr().out
        rows = [ln for ln in text.splitlines() if "test" in ln and ("|" in ln or "&" in ln)]
        assert len(rows) == 3, rows  # one per backbone x strategy
    tex = (out / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and tex.count("{") == tex.count("}")
    assert "test\\_resnet" in tex and "ml\\_ros" in tex


def test_rerun_resumes_without_training_again(run, capsys):
    out = run["out"]
    stamps = {p: p.stat().st_mtime for p in (out / "trials").glob("*/metrics.json")}
    assert main(["run", "--grid", str(run["grid"]), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime for p in (out / "trials").glob("*/metrics.json")} == stamps
    assert "6 already done" in capsys.readouterr().out


def test_other_grid_in_same_folder_is_refused(run, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text(run["grid"].read_text().replace("epochs: 2", "epochs: 3"))
    assert main(["run", "--grid", str(other), "--out", str(run["out"])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run folder") and "different grid" in err and "\n" not in err


@pytest.mark.parametrize("change, message", [
    (("[test_resnet]", "[resnet_999]"), "unknown backbone 'resnet_999'"),
    (("[bce, focal, ml_ros]", "[bce, focla]"), "unknown strategy 'focla'; did you mean 'focal'"),
    (("kind: synthetic, root: ", "kind: nih, root: /nonexistent, label_file: "), "does not exist"),
    (("name: e2e", "name: [e2e"), "YAML syntax error"),
])
def test_bad_grids_fail_in_one_line_without_writing(run, tmp_path, capsys, change, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(run["grid"].read_text().replace(*change).replace("n: 200, size: 64, " if "nih" in change[1] else
                                                                     "\0", ""))
    out = tmp_path / "never"
    assert main(["run", "--grid", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()
