"""The driver at scale: a resume reads each finished trial's metrics.json once and never its predictions;
``benchmarks/driver_scale.py`` measures Tune's driver (interrupted, then restored) without errors."""

from __future__ import annotations

import builtins
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bench import tuner
from bench.config import parse_grid, resolve_paths
from bench.run import expand, run_grid

REPO = Path(__file__).resolve().parents[1]


def test_resume_reads_metrics_once_and_never_predictions(synth_root, tmp_path, monkeypatch):
    cfg = resolve_paths(parse_grid({
        "dataset": {"kind": "synthetic", "root": str(synth_root), "n": 200, "size": 64, "image_size": 32},
        "splits": {"folds": 2, "val_fraction": 0.25}, "backbones": ["test_resnet"], "strategies": ["bce", "focal"],
        "train": {"epochs": 1, "batch_size": 32},
    }))
    trials = expand(cfg)
    run_dir = tmp_path / "run"
    (run_dir / "trials").mkdir(parents=True)
    (run_dir / "grid.json").write_text(json.dumps({**cfg.to_dict(), "digest": cfg.digest()}, default=str))
    done = trials[:-1]
    for i, t in enumerate(done):  # finished trials, as collect_trial leaves them
        folder = run_dir / "trials" / t.id
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({"summary": {"macro_auc": 0.6 + i / 100, "note": "x"}}))
        (folder / "predictions.npz").write_bytes(b"not read at resume")
        (folder / "config.json").write_text("{}")

    opened: list[str] = []

    def spy(real):
        def wrapper(file, *a, **kw):
            opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else repr(file))
            return real(file, *a, **kw)
        return wrapper

    real_load = np.load
    monkeypatch.setattr(builtins, "open", spy(builtins.open))
    monkeypatch.setattr(io, "open", spy(io.open))
    monkeypatch.setattr(np, "load", lambda file, *a, **kw: (opened.append(os.fspath(file)), real_load(file, *a, **kw))[1])

    seen = {}

    def fake_build_tuner(data, todo, **kw):  # the driver's hand-over to Ray Tune, without Ray
        seen.update(todo=[t.id for t in todo], **kw)
        return SimpleNamespace(fit=lambda: [])

    monkeypatch.setattr(tuner, "init_ray", lambda *a, **kw: None)
    monkeypatch.setattr(tuner, "can_restore", lambda *a, **kw: True)  # an experiment to restore: Tuner.restore
    monkeypatch.setattr(tuner, "build_tuner", fake_build_tuner)
    outcome = run_grid(None, cfg=cfg, out=run_dir, resume=True)

    trial_files = [p for p in opened if "/trials/" in p]
    assert not [p for p in opened if "predictions" in p], trial_files
    for t in done:
        assert trial_files.count(str(run_dir / "trials" / t.id / "metrics.json")) == 1, trial_files
    assert seen["restore"] is True and seen["todo"] == [trials[-1].id]
    assert seen["finished"] == {t.id: {"macro_auc": 0.6 + i / 100, "epoch": 1} for i, t in enumerate(done)}
    assert outcome.completed == sorted(t.id for t in done)
    assert outcome.errors == {trials[-1].id: "no outputs were produced"}  # the fake fit trained nothing


@pytest.mark.slow
def test_driver_scale_benchmark_interrupts_restores_and_reports(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "driver_scale.py"), "--trials", "3", "--epochs", "2",
                        "--slots", "2", "--json"], capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    (row,) = out["sizes"]
    assert row["trials"] == 3 and row["collected"] == 3 and row["n_errors"] == 0 and row["all_done"]
    # Interrupted once a trial had finished (the running one may finish before Tune stops), then restored.
    assert 1 <= row["done_before"] <= 3 and row["checkpoints_left"] == {"trials": 3, "max": 1, "total": 3}
    assert row["restore_s"] > 0 and row["snapshot"]["count"] > 0 and row["snapshot"]["file_kb"] > 0
    assert row["rss_mb"]["peak"] >= row["rss_mb"]["after_ray_init"] > 0
    assert set(out["exponents"]) >= {"wall", "driver_cpu", "snapshot_mean", "rss_growth", "restore"}


def test_prune_checkpoints_keeps_the_newest(tmp_path):
    from ray import tune

    trial = tmp_path / "trial"
    for i in range(5):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
        (trial / f"checkpoint_{i:06d}" / "state.bin").write_bytes(b"x")
    (trial / "result.json").write_text("{}")
    latest = tune.Checkpoint(str(trial / "checkpoint_000003"))
    deleted = tuner.prune_checkpoints(latest, keep=2)
    assert [Path(p).name for p in deleted] == ["checkpoint_000000", "checkpoint_000001"]
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000002", "checkpoint_000003", "checkpoint_000004",
                                                       "result.json"]  # a newer one than `latest` is never touched
    assert tuner.prune_checkpoints(latest, keep=1) == [str(trial / "checkpoint_000002")]
    assert tuner.prune_checkpoints(latest, keep=1) == []
