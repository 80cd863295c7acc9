"""What a process imports at start-up (CPU the suite and every `bench run` pay): checking a grid builds its
strategies without torch (except AUC-M's, whose optimiser subclasses torch's), and a model-building process
imports timm without W&B's client, which stays importable for the tracking callbacks, and scoring a trial loads
neither scikit-learn nor scipy.stats.

Each check runs in a fresh interpreter, since this one has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_building_every_strategy_but_aucm_imports_no_torch():
    got = _fresh("""
import json, sys
from strategies import create_strategy, list_strategies
names = [e.name for e in list_strategies()]
uses_torch = []
for n in names:
    before = 'torch' in sys.modules
    create_strategy(n)
    if not before and 'torch' in sys.modules:
        uses_torch.append(n)
print(json.dumps({"names": names, "uses_torch": uses_torch}))
""")
    assert len(got["names"]) >= 29
    assert got["uses_torch"] in ([], ["aucm"], ["aucm_2stage"])  # whichever AUC-M preset is built first, only


def test_timm_loads_without_wandb_and_wandb_still_imports():
    got = _fresh("""
import json, sys
from backbones.zoo import import_timm
timm = import_timm()
loaded = 'wandb' in sys.modules
import wandb
print(json.dumps({"timm": timm.__name__, "wandb_during_timm": loaded, "wandb": wandb.__name__,
                  "real": hasattr(wandb, "init")}))
""")
    assert got == {"timm": "timm", "wandb_during_timm": False, "wandb": "wandb", "real": True}



def test_scoring_a_trial_imports_neither_scikit_learn_nor_scipy_stats():
    """What a trial worker runs after training (its test metrics, the three threshold rules, its bootstrap
    replicates, the per-epoch validation AUC) loads neither: ``sklearn.metrics`` alone costs about 1.5
    CPU-seconds (it loads ``scipy.stats``), in every trial worker (reports.curves)."""
    got = _fresh("""
import json, sys
import numpy as np
from bench.trial import _macro_auc
from reports.metrics import summary_metrics
from reports.replicates import trial_replicates
from strategies.thresholds import MaxF1, PrecisionTarget, Youden
rng = np.random.default_rng(0)
y = (rng.random((300, 3)) < [0.3, 0.05, 0.01]).astype(float); y[:3] = 1; y[3:6] = 0
p = np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1)
t = np.array([rule.fit_label(y[:, j], p[:, j]) for j, rule in enumerate((MaxF1(), Youden(), PrecisionTarget()))])
s = summary_metrics(y, p, thresholds=t, label_names=["a", "b", "c"])
r = trial_replicates(y, p, (p >= t).astype(np.int8), np.arange(300) // 2, n_boot=20, fold=0, seed=0)
print(json.dumps({"auc": s["macro_auc"], "epoch_auc": _macro_auc(y, p), "reps": len(r["replicates"]["macro_auc"]),
                  "loaded": sorted(m for m in ("sklearn", "scipy.stats") if m in sys.modules)}))
""")
    assert got["loaded"] == [] and got["reps"] == 20
    assert 0.5 < got["auc"] == got["epoch_auc"] < 1

# Ray Tune's count of the callbacks it is given, as `tune.run` calls it at the start of every fit() (through the
# module attribute, which is what bench.tune_fit.skip_callback_usage_tag replaces).
_TAG = """
import json, os, sys
os.environ["RAY_USAGE_STATS_ENABLED"] = {enabled!r}
from types import SimpleNamespace
from ray import tune
from ray.air._internal import usage
from bench import tuner
from bench.config import ResourcesConfig
if {build}:  # the bench's tuner, built as bench run builds it (Ray is not started: building needs no cluster)
    cfg = SimpleNamespace(resources=ResourcesConfig(cpu=1, max_concurrent=1))
    tuner.build_tuner({{}}, [], cfg=cfg, storage_path={storage!r}, name="exp",
                      trainable=lambda config, data, finished: None)
usage.tag_callbacks([tune.Callback()])
print(json.dumps({{"imported": sorted(m for m in ("mlflow", "wandb") if m in sys.modules)}}))
"""


def test_a_bench_run_driver_imports_neither_mlflow_nor_wandb_for_ray_tunes_usage_statistics(tmp_path):
    """With usage statistics off (bench's default), building the bench's tuner keeps Tune's callback count from
    importing mlflow and wandb (1.6 CPU-seconds a driver); with them on, and without the bench's tuner, Ray's own
    count runs and imports both: the cost is real on this Ray (when an upgrade removes it, this says so)."""
    def imported(enabled: str, build: bool) -> list:
        code = _TAG.format(enabled=enabled, build=build, storage=str(tmp_path / f"s{enabled}{build}"))
        return _fresh(code)["imported"]

    assert imported("0", build=True) == []
    assert imported("0", build=False) == ["mlflow", "wandb"]
    assert imported("1", build=True) == ["mlflow", "wandb"]
