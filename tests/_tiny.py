"""One tiny trial's inputs without Ray: a 2-fold split of the session's synthetic dataset at 32 px and test_resnet."""

from __future__ import annotations

import shutil
from pathlib import Path


def tiny_trial_data(synth_root, localisation: dict):
    """TrialData for ``test_resnet`` x ``bce``, 1 epoch, 2 folds at 32 px, with the grid's ``localisation``."""
    from bench.config import parse_grid, resolve_paths
    from bench.data.cache import build_cache
    from bench.data.nih import read_nih
    from bench.data.splits import make_split
    from bench.trial import TrialData

    rec = read_nih(synth_root)
    cfg = resolve_paths(parse_grid({
        "dataset": {"kind": "synthetic", "root": str(synth_root), "image_size": 32},
        "splits": {"folds": 2, "val_fraction": 0.25}, "backbones": ["test_resnet"], "strategies": ["bce"],
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.003}, "localisation": localisation,
    }))
    cache = build_cache(rec, 32)
    manifest = make_split(rec, n_folds=2, val_fraction=0.25, seed=0, min_positives_per_fold=0)
    return TrialData(records=rec, manifest=manifest, cache_key=cache.key, cache_dir=str(cache.path), image_size=32,
                     grid=cfg.to_dict(), run_meta={})


def tiny_spec(fold: int = 0, strategy: str = "bce"):
    """The trial spec of ``test_resnet`` x ``strategy`` (default ``bce``) on ``fold``, seed 0."""
    from bench.trial_spec import TrialSpec
    from strategies import resolve_spec

    return TrialSpec.make("test_resnet", resolve_spec(strategy), fold=fold, seed=0)


class Recorder:
    """A report hook that keeps every epoch's metrics and a copy of its checkpoint folder."""

    def __init__(self, root: Path):
        self.root, self.metrics, self.folders = root, [], []

    def __call__(self, metrics, folder):
        self.metrics.append(metrics)
        dest = self.root / f"ckpt{len(self.folders)}"
        shutil.copytree(folder, dest)
        self.folders.append(dest)
