"""Experiment tracking (grid section ``tracking``) through Ray Tune's own logger callbacks.

- MLflow (:class:`ray.air.integrations.mlflow.MLflowLoggerCallback`): one parent run for the grid and one run per
  trial under it (tag ``mlflow.parentRunId``) with the trial's parameters, every epoch's metrics, its final
  metrics (``metrics.json``'s summary) and its outputs as artifacts; the parent gets the report's files once
  ``bench run`` has built them (:func:`publish`). The run ids are kept in ``RUN_DIR/tracking.json``: re-running
  the command reuses them, so a resume never makes a second run for a trial, and a trial finished before the
  tracking was switched on gets its run from its outputs.
- TensorBoard (:class:`ray.tune.logger.TBXLoggerCallback`): event files under ``RUN_DIR/tensorboard/<trial id>/``.
- W&B (:class:`ray.air.integrations.wandb.WandbLoggerCallback`): one run per trial, offline by default
  (``RUN_DIR/wandb/offline-run-*``; ``wandb sync`` uploads them later).

The callbacks run in Tune's driver loop, i.e. on the machine that runs ``bench run`` (on the head node under Ray
Client, ``ray://``: the MLflow URI must then be a server both reach).

>>> trial_params(TrialSpec.make("resnet18", {"name": "focal", "loss": "focal", "gamma": 2.0}, fold=1, seed=0),
...              GridConfig())["strategy.gamma"]
'2.0'
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from bench.config import GridConfig
from bench.tracking_config import MLflowTracking
from bench.errors import BenchError
from bench.runfolder import write_json
from bench.trial_spec import TrialSpec, spec_of
from reports.runfolder import TENSORBOARD, TRACKING_JSON, RunFolder, TrialFolder, read_json

log = logging.getLogger(__name__)
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under its parent
#: what Ray Tune adds to every result: bookkeeping, not metrics
RAY_KEYS = frozenset({"done", "should_checkpoint", "training_iteration", "timestamp", "time_this_iter_s",
                      "time_total_s", "time_since_restore", "iterations_since_restore", "timesteps_total",
                      "timesteps_since_restore", "episodes_total", "pid", "node_ip", "hostname", "date",
                      "trial_id", "experiment_tag", "checkpoint_dir_name", "config", "epoch"})
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def callbacks(cfg: GridConfig, run_dir: Path, *, say: Callable[[str], None] = lambda s: None) -> list:
    """The Ray Tune callbacks of the grid's ``tracking`` section (none when it is off); opens (or reopens, on a
    resume) the grid's MLflow parent run first, so an unreachable server stops the run before any training."""
    t, out = cfg.tracking, []
    if t.mlflow is not None:
        book = MLflowBook(run_dir, t.mlflow)
        parent = book.open_parent(cfg)
        say(f"tracking: MLflow experiment {t.mlflow.experiment!r} at {book.uri or 'the default URI'}, parent run "
            f"{parent}")
        out.append(_mlflow_callback(book, cfg, run_dir))
    if t.tensorboard:
        out.append(_tensorboard_callback(RunFolder(run_dir).path / TENSORBOARD))
        say(f"tracking: TensorBoard event files in {run_dir / TENSORBOARD} (tensorboard --logdir {run_dir / TENSORBOARD})")
    if t.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        w = t.wandb
        if w.mode != "online":  # Ray's callback asks for an API key unless W&B's environment says offline
            os.environ["WANDB_MODE"] = w.mode
        out.append(WandbLoggerCallback(project=w.project, group=cfg.name, excludes=["config"], mode=w.mode,
                                       dir=str(run_dir), save_code=False,
                                       **({"entity": w.entity} if w.entity else {})))
        say(f"tracking: W&B project {w.project!r} ({w.mode}) in {run_dir / 'wandb'}")
    return out


def publish(run_dir: Path, *, say: Callable[[str], None] = lambda s: None) -> None:
    """After the report: every finished trial has its complete MLflow run (made from its outputs when the
    callback did not see it finish), and the grid's parent run holds the report's files. No-op without
    ``tracking.mlflow``."""
    folder = RunFolder(run_dir)
    cfg = GridConfig.from_dict(json.loads(folder.grid_json.read_text()))
    if cfg.tracking.mlflow is None:
        return
    book = MLflowBook(run_dir, cfg.tracking.mlflow)
    parent = book.open_parent(cfg)
    client = book.client()
    made = 0
    for trial in folder.finished():
        run_id = book.trials.get(trial.path.name)
        if run_id and _status(client, run_id) == "FINISHED":
            continue
        spec = TrialSpec.from_dict(json.loads(trial.config.read_text())["trial"])
        run_id = book.trial_run(spec, cfg)
        complete_trial_run(client, run_id, trial, artifacts=book.settings.artifacts)
        made += 1
    if book.settings.artifacts:
        for f in sorted(p for p in folder.path.iterdir() if p.is_file() and p.name != TRACKING_JSON):
            client.log_artifact(parent, str(f))
    errors = read_json(folder.errors_json)
    client.set_terminated(parent, "FAILED" if errors else "FINISHED")
    say(f"tracking: MLflow parent run {parent} holds the report" + (f"; {made} trial run(s) completed from their "
                                                                      "outputs" if made else ""))


class MLflowBook:
    """The MLflow runs of one run folder: the experiment, the parent run and each trial's run id, kept in
    ``RUN_DIR/tracking.json`` (another URI or experiment starts a new book)."""

    def __init__(self, run_dir: Path, settings: MLflowTracking):
        self.path = Path(run_dir) / TRACKING_JSON
        self.settings = settings
        self.uri = settings.uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        doc = read_json(self.path, {})
        mine = doc.get("mlflow") or {}
        if mine.get("uri") != self.uri or mine.get("experiment") != settings.experiment:
            mine = {"uri": self.uri, "experiment": settings.experiment, "experiment_id": None,
                    "parent_run_id": None, "trials": {}}
        self.doc = {**doc, "mlflow": mine}

    @property
    def trials(self) -> dict[str, str]:
        return self.doc["mlflow"]["trials"]

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def save(self) -> None:
        write_json(self.path, self.doc)

    def open_parent(self, cfg: GridConfig) -> str:
        """The grid's parent run id: the recorded one (marked running again), or a new one."""
        mine, client = self.doc["mlflow"], self.client()
        try:
            run_id = mine.get("parent_run_id")
            if run_id and _status(client, run_id) is not None:
                client.update_run(run_id, status="RUNNING")
                return run_id
            exp = client.get_experiment_by_name(self.settings.experiment)
            if exp is not None and exp.lifecycle_stage == "deleted":
                raise BenchError(f"tracking.mlflow.experiment: {self.settings.experiment!r} is a deleted MLflow "
                                 "experiment; restore it (mlflow experiments restore) or name another")
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.settings.experiment)
            run = client.create_run(exp_id, run_name=cfg.name, tags={"bench.role": "grid", "bench.grid": cfg.name,
                                                                      "bench.digest": cfg.digest()})
        except BenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to reach the server: one line naming it
            raise BenchError(f"tracking.mlflow: cannot use the MLflow tracking server at {self.uri or 'the default URI'}"
                             f": {_first_line(exc)}") from None
        _log_params(client, run.info.run_id, grid_params(cfg))
        mine.update(experiment_id=exp_id, parent_run_id=run.info.run_id)
        self.save()
        return run.info.run_id

    def trial_run(self, spec: TrialSpec, cfg: GridConfig) -> str:
        """The run of trial ``spec``: the recorded one, or a new one under the parent with the trial's parameters."""
        mine, client = self.doc["mlflow"], self.client()
        run_id = self.trials.get(spec.id)
        if run_id and _status(client, run_id) is not None:
            return run_id
        run = client.create_run(mine["experiment_id"], run_name=spec.id,
                                tags={PARENT_TAG: mine["parent_run_id"], "bench.role": "trial", "trial_name": spec.id,
                                      "bench.grid": cfg.name})
        _log_params(client, run.info.run_id, trial_params(spec, cfg))
        self.trials[spec.id] = run.info.run_id
        self.save()
        return run.info.run_id


def _mlflow_callback(book: MLflowBook, cfg: GridConfig, run_dir: Path):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from bench.tuner import trial_name

    class BenchMLflowCallback(MLflowLoggerCallback):
        """Ray Tune's MLflow logger with the bench's run ids (:class:`MLflowBook`): a trial whose run has
        finished is not logged again; one that resumes logs into its run; parameters are the trial's
        (backbone, strategy, fold, seed, training settings), metrics each epoch's, then ``metrics.json``'s."""

        def __init__(self):
            super().__init__(tracking_uri=book.uri, experiment_name=book.settings.experiment,
                             tags={PARENT_TAG: book.doc["mlflow"]["parent_run_id"]})
            self.book, self.cfg, self.run_dir = book, cfg, str(run_dir)
            self._done: set[str] = set()

        def log_trial_start(self, trial):
            if trial in self._trial_runs:  # a restarted attempt: the same run
                return
            spec = spec_of(trial.config)
            run_id = self.book.trial_run(spec, self.cfg)
            self._trial_runs[trial] = run_id
            client = self.book.client()
            if _status(client, run_id) == "FINISHED":
                self._done.add(spec.id)  # tracked to the end by an earlier driver
            else:
                client.update_run(run_id, status="RUNNING")

        def log_trial_result(self, iteration, trial, result):
            if trial not in self._trial_runs:
                self.log_trial_start(trial)
            if trial_name(trial) in self._done:
                return
            step = int(result.get("epoch") or result.get("training_iteration") or 0)
            _log_metrics(self.book.client(), self._trial_runs[trial], result, step=step)

        def log_trial_end(self, trial, failed=False):
            tid = trial_name(trial)
            run_id = self._trial_runs.get(trial)
            if run_id is None or tid in self._done:
                return
            folder = RunFolder(Path(self.run_dir)).trial(tid)
            client = self.book.client()
            if failed:  # a resume reuses the run (marked running again)
                client.set_terminated(run_id, "FAILED")
            elif folder.is_finished():  # its outputs were collected just before (bench.run's callback)
                complete_trial_run(client, run_id, folder, artifacts=self.book.settings.artifacts)
                self._done.add(tid)
            # else its outputs reach the run folder later, and bench.tracking.publish completes its run

    return BenchMLflowCallback()


def _tensorboard_callback(root: Path):
    from ray.tune.logger import TBXLoggerCallback

    from bench.tuner import trial_name

    class BenchTBXCallback(TBXLoggerCallback):
        """Ray Tune's TensorBoard logger, writing each trial's events to ``RUN_DIR/tensorboard/<trial id>/``."""

        def __init__(self):
            super().__init__()
            self.root = str(root)

        def log_trial_start(self, trial):
            if trial in self._trial_writer:
                self._trial_writer[trial].close()
            logdir = Path(self.root) / trial_name(trial)
            logdir.mkdir(parents=True, exist_ok=True)
            self._trial_writer[trial] = self._summary_writer_cls(str(logdir), flush_secs=30)
            self._trial_result[trial] = {}

    return BenchTBXCallback()


def complete_trial_run(client, run_id: str, trial: TrialFolder, *, artifacts: bool) -> None:
    """Finish a trial's MLflow run from its outputs: the epochs its history has that the run lacks, the final
    metrics (``metrics.json``'s summary, at the last epoch) where they differ from the run's, the outputs as
    artifacts; then mark it finished."""
    doc = json.loads(trial.metrics.read_text())
    history = doc.get("history") or []
    have = {m.step for m in client.get_metric_history(run_id, "train_loss")}
    for entry in history:
        if int(entry.get("epoch", 0)) not in have:
            _log_metrics(client, run_id, entry, step=int(entry.get("epoch", 0)))
    last = max([int(e.get("epoch", 0)) for e in history] or [0])
    logged = client.get_run(run_id).data.metrics
    summary = {k: v for k, v in _numeric(doc.get("summary") or {}).items() if not _same(logged.get(k), v)}
    _log_metrics(client, run_id, summary, step=last)
    if artifacts:
        client.log_artifacts(run_id, str(trial.path))
    client.set_terminated(run_id, "FINISHED")


def trial_params(spec: TrialSpec, cfg: GridConfig) -> dict[str, str]:
    """A trial's MLflow parameters: what it is (backbone, strategy and its parts, fold, seed) and how it trained."""
    t, d = cfg.train, cfg.dataset
    params = {"trial": spec.id, "backbone": spec.backbone, "strategy": spec.strategy["name"], "fold": spec.fold,
              "seed": spec.seed, **{f"strategy.{k}": v for k, v in spec.strategy.items() if k != "name"},
              "dataset": d.kind, "image_size": d.image_size, "folds": cfg.splits.folds, "split_seed": cfg.splits.seed,
              **{f"train.{k}": getattr(t, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "optimizer",
                                                       "scheduler", "pretrained", "augment", "precision")}}
    return {k: _param(v) for k, v in params.items()}


def grid_params(cfg: GridConfig) -> dict[str, str]:
    """The parent run's parameters: the grid's axes and shared settings."""
    t = cfg.train
    params = {"grid": cfg.name, "digest": cfg.digest(), "backbones": list(cfg.backbones),
              "strategies": [s["name"] for s in cfg.strategy_specs()], "folds": cfg.splits.folds,
              "seeds": list(cfg.seeds), "dataset": cfg.dataset.kind, "image_size": cfg.dataset.image_size,
              **{f"train.{k}": getattr(t, k) for k in ("epochs", "batch_size", "lr", "optimizer", "scheduler")}}
    return {k: _param(v) for k, v in params.items()}


def _param(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)


def _log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    have = client.get_run(run_id).data.params
    new = [Param(k, v) for k, v in params.items() if k not in have]  # a parameter is written once
    if new:
        client.log_batch(run_id, params=new)


def _numeric(values: dict) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items()
            if k not in RAY_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _log_metrics(client, run_id: str, values: dict, *, step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, v in _numeric(values).items()]
    for i in range(0, len(metrics), MAX_BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + MAX_BATCH])


def _same(a: float | None, b: float) -> bool:
    return a is not None and (a == b or (math.isnan(a) and math.isnan(b)))


def _status(client, run_id: str) -> str | None:
    """The run's status (``RUNNING``, ``FINISHED``, ...), or None when the server has no such (live) run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run.info.status


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
