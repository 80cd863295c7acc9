"""A trained model looks at the lesions: on synthetic data, whose lesions sit exactly in their boxes, the
pointing-game hit rate of its CAMs is clearly above the centre-prior and random-map baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.config import parse_grid, resolve_paths
from bench.data.cache import build_cache
from bench.data.nih import read_nih
from bench.data.splits import make_split
from bench.trial import TrialData, run_trial, trial_id
from strategies import resolve_spec

pytestmark = pytest.mark.slow


def test_trained_model_beats_centre_prior(tmp_path_factory):
    from bench.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("loc") / "data"
    write_synthetic(root, n=1200, size=128, seed=0)
    rec = read_nih(root)
    cfg = resolve_paths(parse_grid({
        "dataset": {"kind": "synthetic", "root": str(root), "n": 1200, "size": 128, "image_size": 64},
        "splits": {"folds": 3, "val_fraction": 0.2},
        "backbones": ["test_resnet"], "strategies": ["bce"],
        "train": {"epochs": 10, "batch_size": 32, "lr": 0.003, "scheduler": "none"},
        "resources": {"cpu": 2},
        "localisation": {"methods": ["gradcam", "gradcam++"], "max_images": 150, "gallery": 0},
    }))
    cache = build_cache(rec, 64)
    manifest = make_split(rec, n_folds=3, val_fraction=0.2, seed=0)
    data = TrialData(records=rec, manifest=manifest, cache_key=cache.key, cache_dir=str(cache.path),
                     image_size=64, grid=cfg.to_dict(), run_meta={})
    out = tmp_path_factory.mktemp("final")

    def keep(metrics, folder):
        if metrics.get("done"):
            import shutil

            shutil.copytree(folder, out, dirs_exist_ok=True)

    spec = {"id": trial_id("test_resnet", "bce", 0, 0), "backbone": "test_resnet", "strategy": resolve_spec("bce"),
            "fold": 0, "seed": 0}
    final = run_trial(spec, data, report=keep)
    assert final["macro_auc"] > 0.7
    loc = pd.read_csv(out / "outputs" / "localisation.csv")
    hit = loc.groupby("method")["hit"].mean()
    n = int((loc["method"] == "centre").sum())
    assert n >= 100
    # Clearly above chance: at least 1.5x the centre prior and the random map, and the centre prior outside the
    # model's 95% interval (binomial normal approximation over the (image, finding) pairs).
    for method in ("gradcam", "gradcam++"):
        p = hit[method]
        half = 1.96 * np.sqrt(p * (1 - p) / n)
        assert p > 1.5 * hit["centre"] and p > 1.5 * hit["random"], hit.to_dict()
        assert p - half > hit["centre"], hit.to_dict()
