"""One trial without Ray: outputs, leakage guards, and resuming from a checkpoint gives the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _tiny import Recorder

from bench.config import parse_grid, resolve_paths
from bench.data.cache import build_cache
from bench.data.nih import read_nih
from bench.data.splits import make_split
from bench.trial import TrialData, fit_thresholds, run_trial, trial_id
from bench.trial_spec import TrialSpec
from strategies import resolve_spec


@pytest.fixture(scope="module")
def data(synth_root, tmp_path_factory):
    rec = read_nih(synth_root)
    cfg = resolve_paths(parse_grid({
        "dataset": {"kind": "synthetic", "root": str(synth_root), "image_size": 32},
        "splits": {"folds": 2, "val_fraction": 0.25},
        "backbones": ["test_resnet"], "strategies": ["bce"],
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.003},
        "localisation": {"max_images": 10, "gallery": 1},
    }))
    cache = build_cache(rec, 32)
    manifest = make_split(rec, n_folds=2, val_fraction=0.25, seed=0, min_positives_per_fold=0)
    return TrialData(records=rec, manifest=manifest, cache_key=cache.key, cache_dir=str(cache.path),
                     image_size=32, grid=cfg.to_dict(), run_meta={})


def spec(strategy="bce", fold=0, seed=0):
    spec = TrialSpec.make("test_resnet", resolve_spec(strategy), fold=fold, seed=seed)
    assert spec.id == trial_id("test_resnet", strategy, fold, seed)
    return spec


def test_trial_writes_outputs_and_resumes_identically(data, tmp_path, monkeypatch):
    from bench import engine

    full = Recorder(tmp_path / "a")
    run_trial(spec(), data, report=full)
    assert [m["epoch"] for m in full.metrics] == [1, 2] and full.metrics[-1]["done"] is True
    out = full.folders[-1] / "outputs"
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["sizes"]["test"] + doc["sizes"]["train"] + doc["sizes"]["val"] == len(data.records)
    for key in ("macro_auc", "micro_auc", "macro_f1", "micro_f1", "macro_f1_fixed", "micro_f1_fixed"):
        assert key in doc["summary"]
    with np.load(out / "predictions.npz") as z:
        assert z["probs"].shape == z["labels"].shape == (doc["sizes"]["test"], len(data.records.label_names))
        assert set(z["image_ids"]).isdisjoint(set(z["val_image_ids"]))
    assert (out / "config.json").is_file() and (out / "localisation.csv").is_file()
    # The epoch-1 checkpoint holds weights; resuming from it reproduces the uninterrupted run.
    assert (full.folders[0] / "state.pt").is_file()
    resumed = Recorder(tmp_path / "b")
    run_trial(spec(), data, report=resumed, checkpoint_dir=str(full.folders[0]))
    assert [m["epoch"] for m in resumed.metrics] == [2]
    for key in ("macro_auc", "micro_auc", "macro_f1", "val_macro_auc", "train_loss"):
        assert resumed.metrics[-1][key] == pytest.approx(full.metrics[-1][key], abs=1e-6), key

    # A checkpoint that already holds the outputs is reported as it is: no epoch trains, no prediction runs, the
    # files are not rewritten (a deterministic retrain would match the numbers, not these).
    last = full.folders[-1]
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(last.rglob("*")) if p.is_file()}
    calls = []

    def refuse(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"engine.{name} ran while handing back a finished trial")
        return called

    for name in ("train_epoch", "predict_logits"):
        monkeypatch.setattr(engine, name, refuse(name))
    again = Recorder(tmp_path / "c")
    run_trial(spec(), data, report=again, checkpoint_dir=str(last))
    assert calls == []
    assert len(again.metrics) == 1 and again.metrics[0]["done"] is True and again.metrics[0]["epoch"] == 2
    summary = json.loads((last / "outputs" / "metrics.json").read_text())["summary"]
    assert {k: again.metrics[0][k] for k in summary} == summary
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(last.rglob("*")) if p.is_file()} == files


def test_thresholds_are_fitted_on_the_validation_part_only(data, tmp_path, monkeypatch):
    """Fails if the decision rule ever sees held-out (test) labels."""
    from strategies.thresholds import MaxF1

    seen = []
    original = MaxF1.fit

    def spy(self, y, p):
        seen.append(np.array(y, copy=True))
        return original(self, y, p)

    monkeypatch.setattr(MaxF1, "fit", spy)
    run_trial(spec(fold=1), data, report=Recorder(tmp_path))
    train, val, test = data.manifest.rows(1)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], data.records.labels[val])
    assert len(seen[0]) != len(test)


def test_fit_thresholds_refuses_held_out_images():
    from strategies.thresholds import MaxF1

    y = np.array([[1.0], [0.0], [1.0]])
    p = np.array([[0.9], [0.2], [0.6]])
    with pytest.raises(RuntimeError, match="refusing to fit thresholds"):
        fit_thresholds(MaxF1(), y, p, val_ids=["a", "b", "c"], test_ids=["c", "d"])
    assert fit_thresholds(MaxF1(), y, p, val_ids=["a", "b", "c"], test_ids=["d"]).shape == (1,)


def test_patient_leak_is_refused(data, tmp_path, monkeypatch):
    """A split that passes the manifest's own checks (hash, records fingerprint, image ids) but puts one
    patient's images on both sides of fold 0 is stopped by the trial's leakage guard before any training."""
    import dataclasses

    from bench import engine

    m = data.manifest
    train, val, test = m.rows(0)
    patients = data.records.patients
    # A held-out patient with two or more images; move one of them to fold 1 (training for fold 0).
    pid = next(p for p in patients[test] if (patients[test] == p).sum() >= 2)
    moved = int(test[patients[test] == pid][0])
    assert all(moved not in v for v in m.val.values())
    folds = list(m.folds)
    folds[moved] = 1
    leaky = dataclasses.replace(m, folds=folds, hash="")  # hash recomputed: the manifest verifies
    leaky.verify(data.records)
    monkeypatch.setattr(engine, "train_epoch", lambda *a, **k: pytest.fail("trained on a leaky split"))
    with pytest.raises(RuntimeError, match=rf"^patient leakage in training and held-out rows: 1 patient\(s\) have "
                                           rf"images on both sides, e.g. '{pid}'$"):
        run_trial(spec(), dataclasses.replace(data, manifest=leaky), report=Recorder(tmp_path))


def test_metrics_json_reports_the_samplers_mean_ir_before_and_after(data, tmp_path):
    """metrics.json's ``imbalance``: MeanIR of the training labels and of the first epoch ML-RUS drew."""
    from bench import seeding
    from strategies import create_strategy

    rec = Recorder(tmp_path)
    run_trial(spec("ml_rus"), data, report=rec)
    doc = json.loads((rec.folders[-1] / "outputs" / "metrics.json").read_text())
    imb = doc["imbalance"]
    train = data.manifest.rows(0)[0]
    sampler = create_strategy("ml_rus").fit(data.records.labels[train]).sampler
    rows = sampler.epoch_indices(seeding.numpy_rng(0, 0, "order", 0))  # the trial's first epoch
    y, y_epoch = data.records.labels[train], data.records.labels[train][rows]
    assert imb["rows_before"] == len(train) == doc["sizes"]["train"] and imb["rows_after"] == len(rows)
    counts, epoch_counts = (y == 1).sum(axis=0), (y_epoch == 1).sum(axis=0)
    assert imb["mean_ir_before"] == pytest.approx(np.mean(counts.max() / counts[counts > 0]))
    assert imb["mean_ir_after"] == pytest.approx(np.mean(epoch_counts.max() / epoch_counts[epoch_counts > 0]))
    assert imb["mean_ir_after"] < imb["mean_ir_before"]
    assert imb["no_finding_after"] == pytest.approx(np.mean(~(y_epoch == 1).any(axis=1)))
