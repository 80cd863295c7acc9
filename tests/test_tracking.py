"""Grid section ``tracking``: MLflow against a real ``mlflow server`` on 127.0.0.1 (SQLite backend, local
artifacts), TensorBoard event files read back by tensorboard's own reader, W&B offline; a resume makes no
second MLflow run. One small grid runs once (then resumes once) for the whole module."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import parse_grid
from bench.errors import BenchError

# Nothing leaves the machine: no telemetry, W&B offline without code or git capture.
for _k, _v in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "WANDB_MODE": "offline",
               "WANDB_DISABLE_CODE": "true", "WANDB_DISABLE_GIT": "true", "WANDB_SILENT": "true",
               "WANDB_CONSOLE": "off", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}.items():
    os.environ[_k] = _v

GRID = """\
name: tracked
dataset: {{kind: synthetic, root: {root}, n: 200, size: 64, image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_resnet]
strategies: [bce, focal]
train: {{epochs: 2, batch_size: 32, lr: 0.003}}
seeds: [0]
resources: {{cpu: 1}}
localisation: {{max_images: 10, gallery: 1}}
report: {{bootstrap: 20}}
tracking:
  mlflow: {{uri: "{uri}", experiment: cxr-bench-test}}
  tensorboard: true
  wandb: {{project: cxr-bench, mode: offline}}
"""
TRIALS = [f"test_resnet-{s}-f{f}-s0" for s in ("bce", "focal") for f in (0, 1)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on a free 127.0.0.1 port: SQLite backend store, artifacts served from a local folder."""
    pytest.importorskip("mlflow")
    d = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(d / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}",
                             "--artifacts-destination", str(d / "artifacts")],
                            cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start: {(d / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _runs(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


@pytest.fixture(scope="module")
def tracked(ray_session, synth_root, mlflow_server, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    d = tmp_path_factory.mktemp("tracked")
    grid = d / "grid.yaml"
    grid.write_text(GRID.format(root=synth_root, uri=mlflow_server))
    out = d / "run"
    client = MlflowClient(tracking_uri=mlflow_server)
    t0 = time.time()
    first = main(["-q", "run", "--grid", str(grid), "--out", str(out)])
    seconds = time.time() - t0
    runs_first = {r.info.run_id for r in _runs(client, "cxr-bench-test")}
    # The same command again on the finished folder (a resume): no run is made twice
    again = main(["-q", "run", "--grid", str(grid), "--out", str(out)])
    return {"out": out, "grid": grid, "codes": (first, again), "client": client, "runs_first": runs_first,
            "seconds": seconds}


@pytest.mark.slow
def test_every_trial_has_its_mlflow_run_under_the_grids_parent(tracked):
    out, client = tracked["out"], tracked["client"]
    assert tracked["codes"] == (0, 0)
    book = json.loads((out / "tracking.json").read_text())["mlflow"]
    assert sorted(book["trials"]) == TRIALS
    parent = client.get_run(book["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["bench.role"] == "grid"
    assert {"leaderboard.csv", "leaderboard.html", "significance.csv"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)}
    for tid, run_id in book["trials"].items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.info.run_name == tid
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        backbone, strategy, fold, _ = tid.split("-")
        p = run.data.params
        assert (p["backbone"], p["strategy"], "f" + p["fold"], p["seed"]) == (backbone, strategy, fold, "0")
        assert p["train.epochs"] == "2" and p["image_size"] == "32" and p["strategy.loss"]
        doc = json.loads((out / "trials" / tid / "metrics.json").read_text())
        finals = {k: v for k, v in doc["summary"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert {"macro_auc", "macro_f1", "micro_auc"} <= set(finals)
        for key, value in finals.items():  # the run's final metrics are metrics.json's
            assert run.data.metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key
        history = client.get_metric_history(run_id, "val_macro_auc")
        assert sorted(m.step for m in history) == [1, 2]
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            [e["val_macro_auc"] for e in doc["history"]])
        assert len(client.get_metric_history(run_id, "train_loss")) == 2
        names = {a.path for a in client.list_artifacts(run_id)}
        assert {"metrics.json", "predictions.npz", "config.json", "localisation.csv"} <= names


@pytest.mark.slow
def test_a_resume_makes_no_second_run(tracked):
    client = tracked["client"]
    runs = _runs(client, "cxr-bench-test")
    assert {r.info.run_id for r in runs} == tracked["runs_first"]
    assert len(runs) == len(TRIALS) + 1  # one per trial and the grid's parent
    names = [r.info.run_name for r in runs]
    assert sorted(names) == sorted(TRIALS + ["tracked"])
    for tid in TRIALS:  # and no epoch was logged twice
        run_id = json.loads((tracked["out"] / "tracking.json").read_text())["mlflow"]["trials"][tid]
        assert len(client.get_metric_history(run_id, "val_macro_auc")) == 2


@pytest.mark.slow
def test_a_trial_finished_before_tracking_gets_its_run_from_its_outputs(tracked, tmp_path):
    """A partly tracked folder: the run of one trial is forgotten (as if that trial finished before tracking was
    switched on); re-running the command makes exactly that run, complete, and nothing else."""
    import shutil

    out, client = tmp_path / "run", tracked["client"]
    shutil.copytree(tracked["out"], out)
    book_file = out / "tracking.json"
    doc = json.loads(book_file.read_text())
    tid = TRIALS[-1]
    del doc["mlflow"]["trials"][tid]
    book_file.write_text(json.dumps(doc))
    before = {r.info.run_id for r in _runs(client, "cxr-bench-test")}
    assert main(["-q", "run", "--grid", str(tracked["grid"]), "--out", str(out)]) == 0
    new = {r.info.run_id for r in _runs(client, "cxr-bench-test")} - before
    assert len(new) == 1
    run = client.get_run(new.pop())
    assert run.info.run_name == tid and run.info.status == "FINISHED"
    summary = json.loads((out / "trials" / tid / "metrics.json").read_text())["summary"]
    assert run.data.metrics["macro_auc"] == pytest.approx(summary["macro_auc"])
    assert len(client.get_metric_history(run.info.run_id, "val_macro_auc")) == 2


@pytest.mark.slow
def test_tensorboard_event_files_are_readable_by_tensorboard(tracked):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    root = tracked["out"] / "tensorboard"
    assert sorted(p.name for p in root.iterdir()) == TRIALS
    for tid in TRIALS:
        acc = event_accumulator.EventAccumulator(str(root / tid))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        assert "ray/tune/val_macro_auc" in tags and "ray/tune/train_loss" in tags, tags
        assert len(acc.Scalars("ray/tune/train_loss")) >= 2
        macro = acc.Scalars("ray/tune/macro_auc")[-1].value
        summary = json.loads((tracked["out"] / "trials" / tid / "metrics.json").read_text())["summary"]
        assert macro == pytest.approx(summary["macro_auc"], abs=1e-6)


@pytest.mark.slow
def test_wandb_offline_writes_its_run_folders(tracked):
    runs = sorted((tracked["out"] / "wandb").glob("offline-run-*"))
    assert len(runs) >= len(TRIALS)
    assert all(any(r.glob("*.wandb")) for r in runs)


# ---- validation (no run) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("tracking, message", [
    ({"mlflw": {}}, r"unknown key 'tracking.mlflw'; did you mean 'mlflow'\?"),
    ({"mlflow": {"urii": "x"}}, r"unknown key 'tracking.mlflow.urii'; did you mean 'uri'\?"),
    ({"mlflow": True}, r"tracking.mlflow: True is not valid; expected a mapping"),
    ({"wandb": {"mode": "offlin"}}, r"tracking.wandb.mode: 'offlin' is not valid; expected one of 'offline'"),
    ({"tensorboard": "yes"}, r"tracking.tensorboard: 'yes' is not valid; expected true or false"),
    ({"mlflow": {"experiment": ""}}, r"tracking.mlflow.experiment: '' is not valid; expected a non-empty"),
    ("on", r"tracking must be a mapping"),
])
def test_every_bad_tracking_value_is_one_line_naming_it(tracking, message):
    with pytest.raises(BenchError, match=message) as err:
        parse_grid({"tracking": tracking})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("package, key", [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_package_is_named_with_its_extra(monkeypatch, package, key):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(BenchError, match=rf"tracking.{key} needs the {package} package, which is not installed: "
                                         r"pip install -e '.\[tracking\]'"):
        parse_grid({"tracking": {key: {}}})


def test_tracking_is_off_by_default_and_does_not_change_the_grids_digest():
    plain, tracked = parse_grid({}), parse_grid({"tracking": {"tensorboard": True, "wandb": {}}})
    assert plain.tracking.mlflow is None and plain.tracking.wandb is None and not plain.tracking.tensorboard
    assert tracked.digest() == plain.digest()  # switching it on for a resume is the same grid


def test_the_grid_schema_knows_the_tracking_section():
    import jsonschema

    from bench.schema import grid_schema

    schema = grid_schema(user_presets=False)
    good = {"tracking": {"mlflow": {"uri": "http://127.0.0.1:5000", "experiment": "cxr-bench"}, "tensorboard": True,
                         "wandb": {"project": "cxr-bench", "mode": "offline"}}}
    jsonschema.validate(good, schema)
    parse_grid(good)
    for bad in ({"tracking": {"mlflw": {}}}, {"tracking": {"wandb": {"mode": "offlin"}}},
                {"tracking": {"mlflow": {"experiment": ""}}}, {"tracking": {"tensorboard": "yes"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(BenchError):
            parse_grid(bad)
