"""A trained model's CAMs on the planted lesions, scored by the fair pointing game against fair baselines.

The synthetic lesions sit exactly in their boxes, so a model that learnt them should point at them. The pointing
game takes one point per map (the centroid of the maximal plateau). A CAM read at test_resnet's (and resnet18's)
last stage is 2 x 2 at 64 px: its upsampled maximum is a flat corner block, so every map points at one of four
fixed pixels whatever the model learnt. The CAM therefore reads the deepest stage with at least 6 x 6 cells
(``backbones.cam_layer_name``: layer2 here). This test trains a model that classifies well (macro AUC above 0.7)
and checks the known answer: its maps beat both chance maps (which went through the maps' procedure, including
their own validation-tuned threshold) on the pointing game, outside the chance maps' 95% intervals; and that the
old layer's 2 x 2 maps could only ever point at four corner pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.config import parse_grid, resolve_paths
from bench.data.cache import build_cache
from bench.data.nih import read_nih
from bench.data.splits import make_split
from bench.localise import boxes_at
from bench.trial import TrialData, run_trial
from bench.trial_spec import TrialSpec
from reports import localisation as L
from strategies import resolve_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
SIZE = 64


def test_trained_cams_find_the_planted_lesions_better_than_chance(tmp_path_factory):
    from pytorch_grad_cam.utils.image import scale_cam_image

    from bench.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("loc") / "data"
    write_synthetic(root, n=1200, size=128, seed=0)
    rec = read_nih(root)
    cfg = resolve_paths(parse_grid({
        "dataset": {"kind": "synthetic", "root": str(root), "n": 1200, "size": 128, "image_size": SIZE},
        "splits": {"folds": 3, "val_fraction": 0.2},
        "backbones": ["test_resnet"], "strategies": ["bce"],
        "train": {"epochs": 10, "batch_size": 32, "lr": 0.003, "scheduler": "none"},
        "resources": {"cpu": 1},  # one torch thread: as fast here, and no spinning beside another test process
        "localisation": {"methods": ["gradcam", "gradcam++"], "max_images": 150, "gallery": 0},
    }))
    cache = build_cache(rec, SIZE)
    manifest = make_split(rec, n_folds=3, val_fraction=0.2, seed=0)
    data = TrialData(records=rec, manifest=manifest, cache_key=cache.key, cache_dir=str(cache.path),
                     image_size=SIZE, grid=cfg.to_dict(), run_meta={})
    out = tmp_path_factory.mktemp("final")

    def keep(metrics, folder):
        if metrics.get("done"):
            import shutil

            shutil.copytree(folder, out, dirs_exist_ok=True)

    spec = TrialSpec.make("test_resnet", resolve_spec("bce"), fold=0, seed=0)
    final = run_trial(spec, data, report=keep)
    assert final["macro_auc"] > 0.7
    loc = pd.read_csv(out / "outputs" / "localisation.csv")
    # the chance maps went through the maps' procedure: one validation-tuned threshold per kind of map
    assert loc.groupby("method")["threshold"].nunique().eq(1).all()
    assert int((loc["method"] == "centre").sum()) >= 100

    import backbones

    assert backbones.cam_layer_name(backbones.create_model("test_resnet", num_classes=2), "test_resnet",
                                    SIZE) == "layer2"
    # the only points a 2 x 2 CAM (the last stage at this size) could take: four, whatever the image
    rng = np.random.default_rng(0)
    corners = {L.pointing_point(scale_cam_image(rng.random((1, 2, 2), dtype=np.float32), (SIZE, SIZE))[0])
               for _ in range(100)}
    assert len(corners) == 4
    s = L.summarise(loc, by=("method",), n_boot=1000, rng=np.random.default_rng(0))
    hit = s[s["metric"] == "hit"].set_index("method")
    for method in ("gradcam", "gradcam++"):
        assert hit.loc[method, "ci_low"] > max(hit.loc["centre", "ci_high"], hit.loc["random", "ci_high"]), \
            hit[["value", "ci_low", "ci_high"]].to_dict("index")
