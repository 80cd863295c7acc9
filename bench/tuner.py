"""Ray Tune drives the trials: one Tune trial per (backbone, strategy, fold, seed).

Nothing here trains: :func:`bench.trial.run_trial` does, wrapped in a function trainable that
reports each epoch with ``tune.report(metrics, checkpoint=tune.Checkpoint...)`` and resumes from
``tune.get_checkpoint()``. Failed workers are retried from their last checkpoint
(``FailureConfig(max_failures)``); an interrupted driver is resumed with ``Tuner.restore``.

Settings that keep the driver flat at 1,000+ trials (measured by ``benchmarks/driver_scale.py``):
Tune's ``CheckpointConfig(num_to_keep=N)`` makes the driver save the whole experiment state (every
trial's, so O(trials)) after each trial checkpoint, O(trials x epochs) saves in all. Instead, Tune keeps
every checkpoint and :class:`KeepLatestCheckpoints` deletes a trial's older ones from storage; the
experiment state is then saved on Tune's own period (``TUNE_GLOBAL_CHECKPOINT_S``, default ``auto``:
at least 10 s apart and at most ~5% of the driver's time). Trial names are module functions, not
lambdas, so that each trial's saved state does not carry two pickled closures.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from bench.trial_spec import TrialSpec, grid_point, spec_of

log = logging.getLogger(__name__)
EXPERIMENT = "tune"
# Under Ray Client, Tune's loop (and our progress callback) runs on the head node; its printed lines
# reach this machine through Ray's log stream, marked with this tag so that only they are shown.
CLIENT_TAG = "\x1fbench\x1f "
CLIENT_ATTEMPTS = 3
KEEP_CHECKPOINTS = 2  # per running trial; 1 once it has finished


def ray_env() -> None:
    """Environment defaults: no usage statistics leave the machine; quiet logs."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Tune's own loggers: JSON and CSV are added explicitly (see build_tuner); no TensorBoard files.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")


def init_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Connect to ``address`` (``auto``, ``ray://host:port``, ``host:port``) or start a local Ray."""
    ray_env()
    address = address or os.environ.get("RAY_ADDRESS")  # set for drivers started by `ray job submit`
    if not address:
        # A private single-machine instance: Ray then binds its servers to 127.0.0.1 instead of the
        # machine's network address (Ray reads this before its first import).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Ray starts one idle Python worker per CPU for the first driver, which Tune's trial actors never use (they
        # start workers of their own): about 0.5 CPU-seconds each at start and a poll while idle, for nothing.
        os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    import ray

    # Trial tracebacks are collected from their error files and summarised by the driver (also when the
    # caller started Ray itself).
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return
    # The local instance keeps Ray's token authentication; its notice about it is not for our users.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING,
                    "log_to_driver": bool(os.environ.get("BENCH_DEBUG"))}
    if is_client(address):
        # Ray Client: Tune's loop runs on the head node; its progress lines are streamed back here (the
        # rest of the cluster's output only with BENCH_DEBUG). No runtime_env: through Ray Client's proxy
        # it needs the head's runtime-env agent at a fixed port, and otherwise the connection times out.
        debug = bool(os.environ.get("BENCH_DEBUG"))
        if not debug:  # the head's own Ray log records (e.g. its client server's startup notices)
            logging.getLogger("ray.util.client.logsclient").setLevel(logging.ERROR)
        for attempt in range(1, CLIENT_ATTEMPTS + 1):
            try:
                ray.init(address=address, **{**kwargs, "log_to_driver": True})
                break
            except ConnectionAbortedError as exc:
                # The head's proxy forks this client's own server; with gRPC's fork handlers on, about 1 child
                # in 25 aborts ("SpecificServer startup failed" in its log; ray-project/ray#63202).
                if attempt == CLIENT_ATTEMPTS:
                    raise
                log.warning("Ray Client at %s: the head's per-client server did not start (%s; a known Ray bug, "
                            "ray-project/ray#63202, which a head started with GRPC_ENABLE_FORK_SUPPORT=0 avoids, "
                            "as cluster.yaml's does); retrying (%d/%d)",
                            address, str(exc).splitlines()[0].rstrip(":"), attempt + 1, CLIENT_ATTEMPTS)
                time.sleep(2.0 * attempt)
        _client_console(debug=debug)
    elif address:
        ray.init(address=address, **kwargs)
    else:  # a private local instance, reachable from this machine only
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, _node_ip_address="127.0.0.1", **kwargs)


def is_client(address: str | None) -> bool:
    """Whether ``address`` connects through Ray Client (``ray://HOST:PORT``)."""
    return str(address or "").startswith("ray://")


def remote_say(text: str) -> None:
    """``say`` for code that runs on the head node under Ray Client: printed there, shown here
    (without Ray's ``(TunerInternal pid=...)`` prefix) by :func:`_client_console`."""
    print(CLIENT_TAG + text, flush=True)


def _client_console(*, debug: bool) -> None:
    """Show the cluster's tagged progress lines on this console as they are, drop the rest of its
    output (workers' logs, Tune's notices) unless ``debug``. Uses Ray Client's documented hook
    (``LogstreamClient.stdstream``: "by default, calls print but this can be overridden")."""
    from ray.util.client import ray as client_api

    try:
        log_client = client_api.get_context().client_worker.log_client
    except AttributeError:  # another Ray version: its default printing (prefixed lines) stays
        log.debug("Ray Client's log stream has no stdstream hook; cluster output is shown as Ray prints it")
        return

    def stdstream(level: int, msg: str) -> None:
        for line in msg.splitlines():
            if CLIENT_TAG in line:
                print(line.split(CLIENT_TAG, 1)[1], flush=True)
            elif debug:
                print(line, file=sys.stderr if level == -2 else sys.stdout, flush=True)

    log_client.stdstream = stdstream


def _trainable(config: dict, data=None, finished=None):
    import ray
    from ray import tune

    from bench.trial import run_trial

    # Which Ray node ran the trial (several nodes may share one host and IP): recorded in metrics.json.
    spec = spec_of(config).replace(node_id=ray.get_runtime_context().get_node_id())
    if spec.id in (finished or {}):
        # Its outputs reached the run folder before the driver stopped, but Tune's saved state missed
        # the end (it is saved a moment after): hand the same numbers back instead of training again.
        tune.report({**finished[spec.id], "done": True})
        return

    def report(metrics: dict, folder: str | None) -> None:
        ckpt = tune.Checkpoint.from_directory(folder) if folder else None
        tune.report(metrics, checkpoint=ckpt)

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        run_trial(spec, data, report=report)
        return
    with ckpt.as_directory() as folder:
        # Copy: the folder may be a temporary download that disappears with the context. (A worker folder: one
        # that a killed worker leaves is swept by a later trial on the node.)
        import shutil

        from bench.runfolder import worker_folder

        with worker_folder() as local:
            shutil.copytree(folder, local, dirs_exist_ok=True)
            run_trial(spec, data, report=report, checkpoint_dir=str(local))


@dataclass
class Progress:
    """Counts shown while a grid runs."""

    total: int
    done: set = field(default_factory=set)
    failed: set = field(default_factory=set)
    started: float = field(default_factory=time.time)


def make_callback(progress: Progress, say: Callable[[str], None], on_done: Callable[[str, object], None], *,
                  epochs: int):
    from ray import tune

    class Reporter(tune.Callback):
        """Prints one line per finished epoch and trial; copies finished trials' outputs at once."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            tid = trial_name(trial)
            if result.get("done") is True:
                return
            auc, ips = result.get("val_macro_auc", float("nan")), result.get("train_images_per_s", float("nan"))
            say(f"  {tid}: epoch {result.get('epoch')}/{epochs}  train loss {result.get('train_loss', float('nan')):.4f}"
                f"  val AUC {auc:.3f}  {ips:.0f} img/s")

        def on_trial_complete(self, iteration, trials, trial, **info):
            tid = trial_name(trial)
            last = trial.last_result or {}
            if "macro_auc" not in last:  # its trainable returned before the last epoch (bench.tune_outcome.settle_run)
                say(f"  {tid}: ended after epoch {last.get('epoch', 0)}/{epochs} without its final results")
                return
            progress.done.add(tid)
            progress.failed.discard(tid)  # errored once, then restarted
            try:
                on_done(tid, trial.checkpoint)
            except Exception as exc:  # noqa: BLE001 - reported, collected again at the end
                log.warning("could not copy the outputs of %s yet: %s", tid, exc)
            elapsed = time.time() - progress.started
            say(f"[{len(progress.done | progress.failed)}/{progress.total}] {tid} done: "
                f"macro AUC {last.get('macro_auc', float('nan')):.3f}, macro F1 {last.get('macro_f1', float('nan')):.3f}"
                f"  ({elapsed:.0f}s elapsed)")

        def on_trial_error(self, iteration, trials, trial, **info):
            tid = trial_name(trial)
            progress.failed.add(tid)
            say(f"[{len(progress.done | progress.failed)}/{progress.total}] {tid} FAILED "
                f"(after {trial.num_failures} attempt(s)); see {trial.error_file or 'its error file'}")

        def on_trial_recover(self, iteration, trials, trial, **info):
            say(f"  {trial_name(trial)}: attempt failed (worker lost or error); retrying from its last "
                "checkpoint")

    return Reporter()


def trial_name(trial) -> str:
    """A Tune trial's name and folder: the bench's trial id (``unresolved-<Tune's id>`` for a trial without one,
    which the grid generator never hands to Tune: see :mod:`bench.tune_grid`)."""
    tid = grid_point(trial)
    return tid if tid is not None else f"unresolved-{trial.trial_id}"


def _keep_latest_callback(keep: int):
    from ray import tune

    class KeepLatestCheckpoints(tune.Callback):
        """Delete each trial's checkpoints older than its newest ``keep`` from storage as new ones are
        persisted, and all but the last once the trial has finished (the last holds its outputs).

        Two while it runs: the experiment state saved before a trial's newest checkpoint still names one that
        exists if the driver is killed before it saves the state again, as long as the trial checkpoints at
        most once between two saves (epochs longer than Tune's period, 10 s or more). Otherwise the restored
        trial finds its checkpoint gone and ``bench run`` restarts it from scratch (same numbers: every
        draw is seeded), as it does for Tune's own deletions.
        """

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            prune_checkpoints(checkpoint, keep=keep)

        def on_trial_complete(self, iteration, trials, trial, **info):
            if trial.checkpoint is not None:
                prune_checkpoints(trial.checkpoint, keep=1)

    return KeepLatestCheckpoints()


def prune_checkpoints(latest, *, keep: int) -> list[str]:
    """Delete the ``checkpoint_NNNNNN`` folders beside ``latest`` (a persisted ``tune.Checkpoint``) that are
    older than the newest ``keep`` of them, ``latest`` always kept; returns the deleted paths."""
    import posixpath

    import pyarrow.fs as pafs

    fs, path = latest.filesystem, latest.path.rstrip("/")
    siblings = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(posixpath.dirname(path)))
                      if i.type == pafs.FileType.Directory and posixpath.basename(i.path).startswith("checkpoint_"))
    older = [p for p in siblings if p < path]  # zero-padded indices: name order is save order
    doomed = older[: max(0, len(older) - (keep - 1))]
    for p in doomed:
        fs.delete_dir(p)
    return doomed


def build_tuner(trainable_data, trials: list[TrialSpec], *, cfg, storage_path: str, name: str, filesystem=None,
                callbacks=(), restore: bool = False, restart_errored: bool = False, finished: dict | None = None,
                trainable: Callable | None = None):
    """A new ``tune.Tuner`` over ``trials``, or the restored one when ``restore`` (errored trials resume
    from their last checkpoint, or start over when ``restart_errored``). ``finished`` maps the ids of
    trials whose outputs were already collected to their final metrics: they are never trained again.
    ``trainable`` (``fn(config, data, finished)``) replaces the bench's own, e.g. a stand-in that
    measures Tune's driver alone (``benchmarks/driver_scale.py``)."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from bench.tune_fit import skip_callback_usage_tag
    from bench.tune_grid import restore_safe_grid

    skip_callback_usage_tag()
    res = cfg.resources
    resources = {"cpu": float(res.cpu), "gpu": float(res.gpu)}
    trainable = tune.with_resources(tune.with_parameters(trainable or _trainable, data=trainable_data,
                                                         finished=finished or {}), resources)
    path = storage_path.rstrip("/") + "/" + name
    # The same list, in the same order, for new and restored tuners (Tune restores callback state by index).
    grid, census = restore_safe_grid(int(res.max_concurrent))
    callbacks = [*callbacks, _keep_latest_callback(KEEP_CHECKPOINTS), JsonLoggerCallback(), CSVLoggerCallback(), census]
    if restore:
        restored = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                                      resume_errored=not restart_errored, restart_errored=restart_errored,
                                      storage_filesystem=filesystem)
        _use_callbacks(restored, callbacks)
        return restored
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage_path,
        storage_filesystem=filesystem,
        failure_config=tune.FailureConfig(max_failures=int(res.max_failures)),
        # num_to_keep unset: with it Tune saves the whole experiment state after every trial checkpoint;
        # KeepLatestCheckpoints deletes the old checkpoints instead (see the module's docstring).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        verbose=0,  # no progress table: the bench's callback prints one line per epoch and per trial
        callbacks=callbacks,
    )
    tune_config = tune.TuneConfig(
        search_alg=grid,  # the grid, limited to resources.max_concurrent running trials
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_name,
        # Keep worker processes between trials: torch / timm are imported once per worker.
        reuse_actors=True,
    )
    # Ray Tune's param_space holds plain values: each spec as its dict (the trainable reads it back, spec_of)
    return tune.Tuner(trainable, param_space={"trial": tune.grid_search([t.to_dict() for t in trials])},
                      tune_config=tune_config, run_config=run_config)


def _use_callbacks(tuner, callbacks: list) -> None:
    """Give a restored tuner this driver's callbacks, the last one (the trial census) excepted: the restored
    one is kept, bound to the restored generator (:mod:`bench.tune_grid`; both come back from one pickle).

    ``Tuner.restore`` takes no ``RunConfig``: the callbacks come back unpickled from the experiment's
    ``tuner.pkl``, bound to the first driver's progress counters and output settings, and Ray 2.60 has
    no public way to replace them (ray-project/ray#41364). They live on the run config that the local
    ``TunerInternal`` hands out with ``get_run_config()``; that is what is replaced here, guarded.
    Where it is missing (under Ray Client the tuner is a remote actor), the unpickled callbacks run
    as they are: they still copy each finished trial's outputs, only their progress counts are stale.
    """
    run_config = _local_run_config(tuner)
    if run_config is None:
        log.warning("this Ray (Client) restores the first run's callbacks; progress counts may be stale")
        return
    census = _census(run_config)
    run_config.callbacks = [*callbacks[:-1], *census[:1]]


def ended_early(tuner) -> bool:
    """Whether ``tuner.fit()`` returned before the grid generator had handed out every grid point, i.e. Ray Tune
    was stopped (Ctrl-C: SIGINT, which Tune catches, ending its loop and returning). Its loop ends otherwise only
    once the generator is finished and every trial has ended. This tells a stop between two trials, when no trial
    is left unfinished to show it, from a restored generator that skipped grid points it should not have.
    False under Ray Client (Tune's loop runs on the head node; Ctrl-C here interrupts ``fit()`` itself)."""
    run_config = _local_run_config(tuner)
    census = _census(run_config) if run_config is not None else []
    return bool(census) and not census[0].grid.is_finished()


def _local_run_config(tuner):
    local = getattr(tuner, "_local_tuner", None)
    run_config = local.get_run_config() if hasattr(local, "get_run_config") else None
    return run_config if hasattr(run_config, "callbacks") else None


def _census(run_config) -> list:
    """The run config's trial census (by class name: an experiment saved before it moved to bench.tune_grid holds
    a copy of the class)."""
    return [c for c in run_config.callbacks or () if type(c).__name__ == "TrialCensus"]


def can_restore(storage_path: str, name: str, filesystem=None) -> bool:
    from ray import tune

    try:
        return bool(tune.Tuner.can_restore(storage_path.rstrip("/") + "/" + name, storage_filesystem=filesystem))
    except Exception:  # noqa: BLE001 - unreachable storage means nothing to restore
        return False
