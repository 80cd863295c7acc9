"""Trial paths that only a real trial exercises (no Ray): Score-CAM with a numeric binarisation threshold,
the post-hoc logit adjustment of ``la_posthoc``, and the feature-aware sampler ``local_imbalance_ros``.

Each is compared with the plain ``bce`` trial of the same fold and seed, so a test fails for its own reason.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
from _tiny import tiny_spec, tiny_trial_data

from bench.trial import run_trial

pytestmark = pytest.mark.slow


def _run(data, tmp_path, strategy: str = "bce", name: str = "t"):
    spec = tiny_spec(0, strategy)
    kept = []

    def report(metrics, folder):
        if folder is not None:
            kept.append(shutil.copytree(folder, tmp_path / f"{name}{len(kept)}"))

    run_trial(spec, data, report=report)
    return kept[-1] / "outputs"


@pytest.fixture(scope="module")
def plain(synth_root):
    return tiny_trial_data(synth_root, {"enabled": False})


@pytest.fixture(scope="module")
def bce(plain, tmp_path_factory):
    return _run(plain, tmp_path_factory.mktemp("bce"))


def test_scorecam_with_a_numeric_threshold(synth_root, tmp_path):
    data = tiny_trial_data(synth_root, {"methods": ["scorecam"], "threshold": 0.4, "max_images": 6, "gallery": 0})
    out = _run(data, tmp_path)
    loc = pd.read_csv(out / "localisation.csv")
    model_rows = loc[loc["method"] == "scorecam"]
    assert len(model_rows) > 0 and set(loc["method"]) >= {"scorecam"}
    assert (model_rows["threshold"] == 0.4).all()  # the grid's number, not a tuned one
    assert model_rows["hit"].isin([0, 1]).all() and model_rows["energy"].between(0, 1).all()


def test_la_posthoc_trains_like_bce_and_shifts_its_logits_by_the_prior(plain, bce, tmp_path):
    out = _run(plain, tmp_path, "la_posthoc")
    with np.load(bce / "predictions.npz") as a, np.load(out / "predictions.npz") as b:
        assert np.allclose(a["logits"], b["logits"], atol=1e-5)  # the same training: BCE, same seed
        pa, pb = a["probs"].astype(np.float64), b["probs"].astype(np.float64)
    logit_p = np.log(pb / (1 - pb)) - np.log(pa / (1 - pa))
    # probabilities shifted by -tau log(pi / (1 - pi)) per label: one constant per label, positive for rare labels
    shift = logit_p.mean(axis=0)
    assert np.allclose(logit_p, shift[None, :], atol=1e-3)
    assert (shift > 0).all()


def test_local_imbalance_ros_draws_extra_copies_in_a_real_trial(plain, tmp_path):
    import json

    out = _run(plain, tmp_path, "local_imbalance_ros")
    doc = json.loads((out / "metrics.json").read_text())
    imb = doc["imbalance"]
    assert imb["rows_after"] == pytest.approx(1.25 * imb["rows_before"], abs=1)
    assert doc["summary"]["macro_auc"] is not None


def test_a_valid_split_file_is_used_by_the_trial(synth_root, tmp_path):
    """`splits.file` (a manifest written by `bench data split --out`) is the split the trial verifies."""
    from bench.data.splits import SplitManifest

    data = tiny_trial_data(synth_root, {"enabled": False})
    path = tmp_path / "split.json"
    data.manifest.to_json(path)
    loaded = SplitManifest.from_json(path)
    loaded.verify(data.records)
    assert loaded.hash == data.manifest.hash
    out = _run(dataclasses.replace(data, manifest=loaded), tmp_path)
    with np.load(out / "predictions.npz") as z:
        held_out = set(z["image_ids"].tolist())
    assert held_out == set(np.asarray(data.records.image_ids)[loaded.rows(0)[2]].tolist())
