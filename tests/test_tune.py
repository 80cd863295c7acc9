"""`bench tune`: one Optuna + ASHA search per fold on Ray Tune writes a preset that runs on its split can name."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.cli import main
from bench.config import load_grid

pytestmark = pytest.mark.slow


GRID = """\
name: tune-test
dataset: {{kind: synthetic, root: {root}, n: 200, size: 64, image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: {seed}}}
backbones: [test_resnet]
strategies: [{strategies}]
train: {{epochs: {epochs}, batch_size: 32, lr: 0.003}}
resources: {{cpu: 1}}
localisation: {{enabled: false}}
report: {{bootstrap: 0}}
"""


def _split_of(grid):
    """The split manifest ``bench run --grid grid`` would use."""
    from bench.config import resolve_paths
    from bench.run import prepare_data

    return prepare_data(resolve_paths(load_grid(grid)), say=lambda s: None)[2]


def test_tune_per_fold_preset_is_applied_fold_by_fold_and_never_saw_a_held_out_image(
        ray_session, synth_root, tmp_path, monkeypatch, capsys):
    """Nested tuning: one search per fold on that fold's training part; a run on the same split applies fold
    F's parameters to fold F, and the images fold F's search saw are disjoint from fold F's held-out images
    (checked on the image ids the run's trials actually held out). The same preset on another split, whose
    held-out folds the searches did see, is refused with one line naming the file, the fold and the count."""
    import numpy as np
    from ray import tune

    from bench.tuned_presets import decode_images

    fits, real_fit = [], tune.Tuner.fit

    def fit(self):  # the worker process (pid) of each trial of each search
        results = real_fit(self)
        fits.append([r.metrics.get("pid") for r in results])
        return results

    monkeypatch.setattr(tune.Tuner, "fit", fit)
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "g.yaml"
    grid.write_text(GRID.format(root=synth_root, seed=0, strategies="bce", epochs=2))
    assert main(["tune", "--grid", str(grid), "--strategy", "focal", "--trials", "2",
                 "--out", str(tmp_path / "search")]) == 0
    out = capsys.readouterr().out
    # each fold's search trials ran one after another in one worker process, which imported torch and timm once
    assert len(fits) == 2 and all(len(pids) == 2 and len(set(pids)) == 1 and None not in pids for pids in fits), fits
    assert "fold 0: best val_macro_auc" in out and "fold 1: best val_macro_auc" in out
    preset = tmp_path / "presets" / "focal_tuned.yaml"
    doc = yaml.safe_load(preset.read_text())
    assert doc["loss"] == {"name": "focal", "gamma": 2.0}  # the untuned base; the tuned values are per fold
    assert sorted(doc["folds"]) == [0, 1]
    assert all(1.0 <= doc["folds"][f]["loss.gamma"] <= 4.0 for f in (0, 1))
    search = pd.read_csv(tmp_path / "search" / "search.csv")
    assert sorted(search["fold"].unique()) == [0, 1] and len(search) == 4
    # The record names the grid's split and, per image, the fold the searches held out.
    manifest = _split_of(grid)
    assert doc["tuned"]["split"]["hash"] == manifest.hash
    ids, held = decode_images(doc["tuned"]["images"], where=str(preset))
    assert ids.tolist() == list(manifest.image_ids) and held.tolist() == list(manifest.folds)
    assert main(["list", "strategies", "focal_tuned"]) == 0
    capsys.readouterr()

    # A run on the same split accepts it and applies each fold's own parameters.
    run_grid = tmp_path / "run.yaml"
    run_grid.write_text(GRID.format(root=synth_root, seed=0, strategies="focal_tuned", epochs=1))
    assert main(["-q", "run", "--grid", str(run_grid), "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    for fold in (0, 1):
        trial = tmp_path / "run" / "trials" / f"test_resnet-focal_tuned-f{fold}-s0"
        spec = json.loads((trial / "config.json").read_text())["trial"]["strategy"]
        assert spec["loss"] == {"name": "focal", "gamma": doc["folds"][fold]["loss.gamma"]}
        held_out = set(np.load(trial / "predictions.npz")["image_ids"].tolist())
        tuned_on = set(ids[held != fold].tolist())
        assert held_out and len(tuned_on) == len(ids) - len(held_out)
        assert not held_out & tuned_on

    # On another split the searches saw that split's held-out images: refused, nothing written.
    other = tmp_path / "other.yaml"
    other.write_text(GRID.format(root=synth_root, seed=1, strategies="focal_tuned", epochs=1))
    m1 = _split_of(other)
    leaked = len(set(np.asarray(m1.image_ids)[np.asarray(m1.folds) == 0].tolist()) & set(ids[held != 0].tolist()))
    assert leaked > 0
    rc = main(["-q", "run", "--grid", str(other), "--out", str(tmp_path / "leaky")])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "leaky").exists(), err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert (f"{preset}: preset 'focal_tuned' was tuned on {leaked} image(s) of this run's held-out fold 0 "
            f"(tuning split {manifest.hash[:12]}, this run's split {m1.hash[:12]})") in lines[0], lines[0]
    assert f"bench tune --grid {other} --strategy focal" in lines[0]

    # A second search may not overwrite the preset.
    assert main(["tune", "--grid", str(grid), "--strategy", "focal", "--trials", "1"]) == 2
    assert "exists already" in capsys.readouterr().err


def test_check_presets_counts_the_overlap_image_by_image(tmp_path):
    """Known answer without Ray: 40 images of 20 patients; a preset tuned on the run's own split passes, one tuned
    on another split is refused with exactly the brute-force count of fold 0's held-out images its search saw."""
    import numpy as np

    from bench.data.labels import Records
    from bench.data.splits import make_split
    from bench.errors import BenchError
    from bench.tune_search import write_preset
    from bench.tuned_presets import check_presets, tuning_record
    from strategies.user_presets import load_preset_file

    y = np.array([[1, 0], [0, 1]] * 20, dtype=np.float32)
    rec = Records(y, ("a", "b"), [f"i{i}" for i in range(40)], [""] * 40, patients=np.arange(40) // 2)
    run = make_split(rec, n_folds=2, val_fraction=0.25, seed=0)
    other = make_split(rec, n_folds=2, val_fraction=0.25, seed=3)
    for name, manifest in (("focal_same_split", run), ("focal_other_split", other)):
        write_preset(tmp_path / f"{name}.yaml", {
            "name": name, "loss": {"name": "focal", "gamma": 2.0}, "sampler": "none", "threshold": "f1",
            "folds": {0: {"loss.gamma": 3.0}, 1: {"loss.gamma": 1.5}},
            "tuned": {"from": "focal", **tuning_record(manifest)}})
        load_preset_file(tmp_path / f"{name}.yaml")
    check_presets(["bce", "focal_same_split"], run)
    ids, held_run, held_other = np.asarray(run.image_ids), np.asarray(run.folds), np.asarray(other.folds)
    expected = len(set(ids[held_other != 0]) & set(ids[held_run == 0]))
    assert expected > 0
    with pytest.raises(BenchError, match=rf"focal_other_split.yaml: preset 'focal_other_split' was tuned on "
                                         rf"{expected} image\(s\) of this run's held-out fold 0 "):
        check_presets(["bce", "focal_other_split"], run)


def _capture_searches(monkeypatch) -> list:
    """Record the (data, fold) every search of ``bench tune`` is given (on the driver: its trials read
    ``data.manifest.rows(fold)``'s training and validation rows, bench.trial.run_trial in search mode)."""
    from bench import tune_search

    seen, search_fold = [], tune_search._search_fold

    def spy(cfg, data, *args, **kw):
        seen.append((data, args[3]))  # (base, space, backbone, fold, ...)
        return search_fold(cfg, data, *args, **kw)

    monkeypatch.setattr(tune_search, "_search_fold", spy)
    return seen


def _read_by_searches(seen) -> list[set]:
    """The image ids each search's trials train and score on (its fold's training and validation rows)."""
    import numpy as np

    return [set(np.asarray(data.records.image_ids)[np.concatenate(data.manifest.rows(fold)[:2])].tolist())
            for data, fold in seen]


def test_tune_on_the_official_protocol_searches_the_training_list_only(ray_session, synth_root, tmp_path,
                                                                       monkeypatch, capsys):
    """``protocol: official``: one search on the official training list (its validation part scores it), never an
    image of the test list; the preset's record says so, and a run of the grid applies it to its one trial, whose
    test images (the test list) the search never saw."""
    from bench.tuned_presets import decode_images

    read = lambda name: {x.strip() for x in (synth_root / name).read_text().splitlines() if x.strip()}  # noqa: E731
    train_list, test_list = read("train_val_list.txt"), read("test_list.txt")
    monkeypatch.chdir(tmp_path)
    seen = _capture_searches(monkeypatch)
    grid, run_grid = tmp_path / "g.yaml", tmp_path / "run.yaml"
    for path, strategies in ((grid, "bce"), (run_grid, "focal_official")):
        path.write_text(GRID.format(root=synth_root, seed=0, strategies=strategies, epochs=1)
                        + "protocol: {kind: official}\n")
    assert main(["tune", "--grid", str(grid), "--strategy", "focal", "--trials", "2", "--preset-name", "focal_official",
                 "--out", str(tmp_path / "search")]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "on the official training list" in out and "fold 0: best val_macro_auc" in out
    [searched] = _read_by_searches(seen)  # one search
    assert searched and searched <= train_list and not searched & test_list
    doc = yaml.safe_load((tmp_path / "presets" / "focal_official.yaml").read_text())
    assert sorted(doc["folds"]) == [0] and doc["tuned"]["split"]["n_folds"] == 1
    ids, held = decode_images(doc["tuned"]["images"], where="focal_official.yaml")
    assert set(ids[held == 0]) == test_list & set(ids) and set(ids[held == -1]) <= train_list

    assert main(["-q", "run", "--grid", str(run_grid), "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    import numpy as np

    trial = tmp_path / "run" / "trials" / "test_resnet-focal_official-f0-s0"
    spec = json.loads((trial / "config.json").read_text())["trial"]["strategy"]
    assert spec["loss"] == {"name": "focal", "gamma": doc["folds"][0]["loss.gamma"]}
    held_out = set(np.load(trial / "predictions.npz")["image_ids"].tolist())
    assert held_out and held_out <= test_list and not held_out & set(ids[held != 0])


def test_tune_on_the_external_protocol_never_reads_the_test_sets(ray_session, synth_root, tmp_path, monkeypatch,
                                                                  capsys):
    """``protocol: external``: the searches run per fold of the training dataset's split, as for kfold; the
    external test sets are not read (nor generated: the synthetic site-b folder never appears)."""
    from bench import protocols

    def never(*a, **k):
        raise AssertionError("bench tune read the external test sets")

    monkeypatch.setattr(protocols, "prepare_test_sets", never)  # bench.run imports it from there when it runs
    monkeypatch.chdir(tmp_path)
    seen = _capture_searches(monkeypatch)
    site_b = tmp_path / "site-b"
    grid = tmp_path / "g.yaml"
    grid.write_text(GRID.format(root=synth_root, seed=0, strategies="bce", epochs=1)
                    + f"protocol: {{kind: external, test_sets: {{site-b: {{kind: synthetic, root: {site_b}, n: 200, "
                      "size: 64, site: b}}}\n")
    assert main(["tune", "--grid", str(grid), "--strategy", "focal", "--trials", "1", "--preset-name", "focal_external",
                 "--out", str(tmp_path / "search")]) == 0, capsys.readouterr().err
    assert "protocol.test_sets (site-b) are not read" in capsys.readouterr().out
    assert not site_b.exists()
    manifest = _split_of(grid)
    assert [fold for _, fold in seen] == [0, 1] and all(not data.test_sets for data, _ in seen)
    for (data, fold), searched in zip(seen, _read_by_searches(seen)):
        assert Path(data.records.root).resolve() == synth_root.resolve()  # the training dataset only
        held_out = {i for i, f in zip(manifest.image_ids, manifest.folds) if f == fold}
        assert searched and not searched & held_out


def test_tune_refuses_presets_without_a_space(synth_root, tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text(f"dataset: {{kind: synthetic, root: {synth_root}, n: 200, size: 64}}\nbackbones: [test_resnet]\n")
    assert main(["tune", "--grid", str(grid), "--strategy", "bce", "--trials", "2"]) == 2
    assert "declares no tunable parameters" in capsys.readouterr().err
    assert main(["tune", "--grid", str(grid), "--strategy", "focl", "--trials", "2"]) == 2
    assert "did you mean 'focal'" in capsys.readouterr().err


def test_ray_client_connection_is_retried_when_the_head_fails_to_start_its_server(monkeypatch, caplog):
    """Ray's proxy sometimes fails to start the per-client server (ConnectionAbortedError, ray-project/ray#63202):
    two retries, each announced with the bug and the setting that avoids it; a third failure is raised."""
    import ray

    from bench import tuner

    calls = []

    def init(address, **kw):
        calls.append((address, kw["log_to_driver"]))
        if len(calls) < 3:
            raise ConnectionAbortedError("Initialization failure from server:\nTraceback ...")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(tuner, "_client_console", lambda debug: calls.append("console"))
    monkeypatch.setattr(tuner.time, "sleep", lambda s: None)
    monkeypatch.delenv("BENCH_DEBUG", raising=False)
    tuner.init_ray("ray://127.0.0.1:10001")
    assert calls == [("ray://127.0.0.1:10001", True)] * 3 + ["console"]
    retries = [r.getMessage() for r in caplog.records if "per-client server did not start" in r.getMessage()]
    assert len(retries) == 2 and "(Initialization failure from server; a known Ray bug" in retries[0]
    assert "GRPC_ENABLE_FORK_SUPPORT=0" in retries[0] and "(2/3)" in retries[0] and "(3/3)" in retries[1]

    def always_fails(address, **kw):
        calls.append(address)
        raise ConnectionAbortedError("Initialization failure from server:")

    calls.clear()
    monkeypatch.setattr(ray, "init", always_fails)
    with pytest.raises(ConnectionAbortedError):
        tuner.init_ray("ray://127.0.0.1:10001")
    assert len(calls) == tuner.CLIENT_ATTEMPTS


def test_ctrl_c_during_a_folds_search_stops_bench_tune_without_a_preset(ray_session, synth_root, tmp_path, monkeypatch,
                                                                        capsys):
    """A Ctrl-C that Ray Tune catches ends that fold's search early (bench.tune_fit.fit tells it: the search raises
    KeyboardInterrupt). ``bench tune`` then stops, exit 130, instead of going on to the next fold and writing a preset
    from a cut-short search; the next step it names is true (the same command would refuse the non-empty --out)."""
    from bench import tune_search

    folds = []

    def search_fold(cfg, data, base, space, backbone, fold, out, **kw):
        folds.append(fold)
        if fold == 1:
            raise KeyboardInterrupt
        return [{"fold": fold, "loss.gamma": 2.0, "val_macro_auc": 0.6, "epochs": cfg.train.epochs}]

    monkeypatch.setattr(tune_search, "_search_fold", search_fold)
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "g.yaml"
    grid.write_text(GRID.format(root=synth_root, seed=0, strategies="bce", epochs=1))
    search = tmp_path / "search"
    # (a name of its own: the registry has loaded the other tests' presets/focal_tuned.yaml)
    assert main(["tune", "--grid", str(grid), "--strategy", "focal", "--trials", "2", "--out", str(search),
                 "--preset-name", "focal_interrupted"]) == 130, capsys.readouterr().err
    assert folds == [0, 1] and not (tmp_path / "presets").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted; no preset was written; the search so far is in {search}: remove it (or give another --out) "
        "to search again")


def test_a_private_ray_instance_prestarts_no_idle_workers_and_a_cluster_is_left_as_it_is(monkeypatch):
    """``bench run`` without ``--address`` starts its own Ray: no idle workers for its first driver (Tune's trial actors
    start their own), Ray's setting read by the node it starts. A cluster's nodes are started by their owner: an
    ``--address`` run leaves the setting alone."""
    import os

    import ray

    from bench import tuner

    seen = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: seen.append(os.environ.get("RAY_prestart_worker_first_driver")))
    for address in ("127.0.0.1:6379", None):
        monkeypatch.delenv("RAY_prestart_worker_first_driver", raising=False)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        tuner.init_ray(address)
    assert seen == [None, "0"]
