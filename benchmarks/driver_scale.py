"""Ray Tune's driver as the trial count grows: overhead per trial, experiment-state snapshots, memory, resume.

Each size runs in a fresh driver process (``--one T``) through the project's own Tune set-up:
``bench.tuner.init_ray`` (a private local Ray on 127.0.0.1) and ``bench.tuner.build_tuner`` with its
TuneConfig / RunConfig / CheckpointConfig, the JSON and CSV loggers and the bench's progress callback,
whose ``on_done`` copies each finished trial's outputs into a run folder as ``bench run`` does. Only the
trainable is a stand-in (``standin``): it reports ``--epochs`` epochs like ``bench.trial.run_trial``,
each with a checkpoint of ``--ckpt-kb`` KB, the last one holding ``outputs/metrics.json``. So nearly all
of a trial's time is Tune's and Ray's.

Half-way through (``--interrupt-at``) the driver is sent SIGINT, as a user's Ctrl-C: Tune saves its
state and returns. ``Tuner.restore`` (through ``build_tuner(restore=True)``) then resumes the rest,
the way ``bench run`` resumes a killed run. Measured per size:

* ``driver_cpu_ms_per_trial``: the driver process's CPU time over both fits / trials (less sensitive to
  other load than wall-clock); ``wall_ms_per_trial``: wall-clock of both fits / trials;
* ``snapshot``: Tune's experiment-state snapshots (``TuneController.save_to_dir``, timed by wrapping it
  in this process): how many, their mean and largest time, the state file's size;
* ``rss_mb``: the driver's resident memory after Ray started, after the fits, and its peak;
* ``restore_s``: ``Tuner.restore`` of the interrupted experiment; ``resumed_fit_s``: the restored
  ``fit()`` that runs the rest; ``collect_s``: reading the finished trials' final metrics from the run
  folder (``bench.runfolder.finished_trials``, what ``bench run`` reads when it resumes).

The parent fits growth exponents (``y ~ T^b``, least squares on logs) over the sizes.

Usage::

    RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/driver_scale.py \\
        --trials 120,360,1080 [--epochs 3] [--slots 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def standin(config: dict, data=None, finished=None) -> None:
    """A trial without training: ``data['epochs']`` reports, each with a ``data['ckpt_kb']`` KB checkpoint
    (the last one also holds ``outputs/metrics.json``); resumes after its checkpoint's epoch."""
    from ray import tune

    from bench.trial_spec import spec_of

    epochs, spec = int(data["epochs"]), spec_of(config)
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as folder:
            start = json.loads(Path(folder, "epoch.json").read_text())["epoch"]
    for epoch in range(start, epochs):
        last = epoch == epochs - 1
        entry = {"epoch": epoch + 1, "train_loss": 1.0 / (epoch + 1), "train_images": 64, "train_seconds": 0.01,
                 "train_images_per_s": 6400.0, "val_macro_auc": 0.5}
        with tempfile.TemporaryDirectory(prefix="standin-ckpt-") as d:
            Path(d, "state.bin").write_bytes(os.urandom(int(data["ckpt_kb"]) * 1024))
            Path(d, "epoch.json").write_text(json.dumps({"epoch": epoch + 1}))
            metrics = {**entry, "done": False}
            if last:
                summary = {"macro_auc": 0.5, "macro_f1": 0.25, "micro_auc": 0.5, "micro_f1": 0.25}
                Path(d, "outputs").mkdir()
                Path(d, "outputs", "metrics.json").write_text(json.dumps(
                    {"trial": spec.id, "summary": summary, "history": [entry]}))
                metrics = {**entry, **summary, "done": True}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_snapshots() -> dict:
    """Wrap Tune's experiment-state snapshot (``TuneController.save_to_dir``) to time every call."""
    from ray.tune.execution.tune_controller import TuneController

    stats = {"count": 0, "seconds": 0.0, "max_s": 0.0, "file_kb": 0.0}
    original = TuneController.save_to_dir

    def timed(self, *a, **kw):
        t0 = time.perf_counter()
        out = original(self, *a, **kw)
        dt = time.perf_counter() - t0
        stats["count"] += 1
        stats["seconds"] += dt
        stats["max_s"] = max(stats["max_s"], dt)
        stats["file_kb"] = Path(self.experiment_state_path).stat().st_size / 1024
        return out

    TuneController.save_to_dir = timed
    return stats


def one(n: int, *, epochs: int, slots: int, ckpt_kb: int, interrupt_at: float) -> dict:
    """Run ``n`` stand-in trials in this process (interrupted, then restored); returns the measurements."""
    from bench import tuner
    from bench.config import ResourcesConfig
    from bench.runfolder import collect_trial, finished_trials
    from bench.trial_spec import TrialSpec

    work = Path(tempfile.mkdtemp(prefix="driver-scale-"))
    run_dir = work / "run"
    (run_dir / "trials").mkdir(parents=True)
    rss0 = rss_mb()
    tuner.init_ray(num_cpus=slots)
    import ray

    try:
        rss_ray = rss_mb()
        snaps = time_snapshots()
        cfg = SimpleNamespace(resources=ResourcesConfig(cpu=1, max_concurrent=0))
        trials = [TrialSpec(id=f"standin-{i:05d}", backbone="standin", strategy={"name": "bce"}, fold=i % 5, seed=0)
                  for i in range(n)]
        data = {"epochs": epochs, "ckpt_kb": ckpt_kb}
        stop_after = max(1, int(n * interrupt_at)) if interrupt_at > 0 else None
        progress = tuner.Progress(total=n)

        marker = work / "interrupted"  # a file: a restored Tune calls copies of the callbacks

        def on_done(tid: str, checkpoint) -> None:
            collect_trial(run_dir, tid, checkpoint)
            if stop_after and len(progress.done) >= stop_after and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C: Tune saves its state and returns

        callback = tuner.make_callback(progress, lambda text: None, on_done, epochs=epochs)
        kw = dict(cfg=cfg, storage_path=str(run_dir), name=tuner.EXPERIMENT, callbacks=[callback], trainable=standin)
        c0, t0 = cpu_s(), time.perf_counter()
        grid = tuner.build_tuner(data, trials, **kw).fit()
        t_first = time.perf_counter() - t0
        done_first = len(progress.done)
        errors = [str(r.error).splitlines()[0] for r in grid if r.error is not None]
        resumed = {}
        if stop_after:
            t1 = time.perf_counter()
            done_ids = finished_trials(run_dir, epochs)
            collect_s = time.perf_counter() - t1
            if not tuner.can_restore(str(run_dir), tuner.EXPERIMENT):
                raise RuntimeError("the interrupted experiment cannot be restored")
            t1 = time.perf_counter()
            restored = tuner.build_tuner(data, trials, restore=True, finished=done_ids, **kw)
            restore_s = time.perf_counter() - t1
            t1 = time.perf_counter()
            grid = restored.fit()
            resumed = {"done_before": done_first, "collect_s": round(collect_s, 4), "restore_s": round(restore_s, 3),
                       "resumed_fit_s": round(time.perf_counter() - t1, 2)}
            errors = [str(r.error).splitlines()[0] for r in grid if r.error is not None]
        wall = time.perf_counter() - t0
        cpu = cpu_s() - c0
        collected = len(list((run_dir / "trials").glob("*/metrics.json")))
        left = {}  # checkpoints left on storage per trial folder
        for c in (run_dir / tuner.EXPERIMENT).glob("*/checkpoint_*"):
            left[c.parent.name] = left.get(c.parent.name, 0) + 1
        statuses = sorted({r.metrics.get("done") is True for r in grid})
        out = {"trials": n, "epochs": epochs, "slots": slots, "ckpt_kb": ckpt_kb, "errors": errors[:5],
               "n_errors": len(errors), "collected": collected, "all_done": statuses == [True],
               "checkpoints_left": {"trials": len(left), "max": max(left.values(), default=0),
                                    "total": sum(left.values())},
               "first_fit_s": round(t_first, 2), "wall_s": round(wall, 2), "driver_cpu_s": round(cpu, 2),
               "wall_ms_per_trial": round(1000 * wall / n, 2), "driver_cpu_ms_per_trial": round(1000 * cpu / n, 2),
               "snapshot": {"count": snaps["count"], "mean_ms": round(1000 * snaps["seconds"] / max(snaps["count"], 1), 2),
                            "max_ms": round(1000 * snaps["max_s"], 2), "total_s": round(snaps["seconds"], 2),
                            "share_of_wall": round(snaps["seconds"] / wall, 3), "file_kb": round(snaps["file_kb"], 1)},
               "rss_mb": {"start": round(rss0, 1), "after_ray_init": round(rss_ray, 1), "end": round(rss_mb(), 1),
                          "peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
               **resumed}
        return out
    finally:
        ray.shutdown()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def exponent(xs: list[float], ys: list[float]) -> float | None:
    """b of y ~ x^b, least squares on logs (None with fewer than 2 positive points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx, 3) if sxx else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", default="120,360,1080", help="trial counts, comma-separated")
    ap.add_argument("--epochs", type=int, default=3, help="reports (each with a checkpoint) per trial")
    ap.add_argument("--slots", type=int, default=4, help="Ray's logical CPUs = trials at once (1 CPU each)")
    ap.add_argument("--ckpt-kb", type=int, default=4, help="size of each checkpoint's state file")
    ap.add_argument("--interrupt-at", type=float, default=0.5,
                    help="fraction of trials finished when the driver is interrupted and restored (0 = never)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds allowed per size")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a single size, in this process
    args = ap.parse_args(argv)
    opts = dict(epochs=args.epochs, slots=args.slots, ckpt_kb=args.ckpt_kb, interrupt_at=args.interrupt_at)
    if args.one:
        print(json.dumps(one(args.one, **opts)))
        return 0

    sizes = [int(t) for t in args.trials.split(",")]
    load0, t0 = os.getloadavg()[0], time.time()
    rows = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--epochs", str(args.epochs), "--slots", str(args.slots),
               "--ckpt-kb", str(args.ckpt_kb), "--interrupt-at", str(args.interrupt_at)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"error: the {n}-trial driver exited with {r.returncode}")
        row = json.loads(r.stdout.strip().splitlines()[-1])
        if row["n_errors"] or not row["all_done"] or row["collected"] != n:
            raise SystemExit(f"error: {n} trials: {row['n_errors']} errored ({row['errors']}), "
                             f"{row['collected']} collected, all done: {row['all_done']}")
        rows.append(row)
        print(json.dumps(row), file=sys.stderr if args.json else sys.stdout, flush=True)  # each size as it ends
    ts = [r["trials"] for r in rows]
    out = {"command": " ".join(["benchmarks/driver_scale.py", *(argv if argv is not None else sys.argv[1:])]),
           "tune_env": {k: v for k, v in os.environ.items() if k.startswith("TUNE_")},
           "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
           "seconds": round(time.time() - t0, 1), "sizes": rows,
           "exponents": {
               "wall": exponent(ts, [r["wall_s"] for r in rows]),
               "driver_cpu": exponent(ts, [r["driver_cpu_s"] for r in rows]),
               "snapshot_mean": exponent(ts, [r["snapshot"]["mean_ms"] for r in rows]),
               "snapshot_total": exponent(ts, [r["snapshot"]["total_s"] for r in rows]),
               "rss_growth": exponent(ts, [r["rss_mb"]["peak"] - r["rss_mb"]["after_ray_init"] for r in rows]),
               "restore": exponent(ts, [r.get("restore_s") for r in rows]),
           }}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
