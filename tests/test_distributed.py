"""Distribution on real Ray processes, no mocks of Ray: a two-node cluster on this machine, a killed
trial worker, a killed driver, fractional GPUs (and the check that refuses GPUs torch cannot use), ``s3://``
storage on a local S3 server (and a lost run folder restored from it), a run driven from outside the cluster
through Ray Client (``ray://``) and one submitted with ``ray job submit``.

One cluster serves the module: a head node (1 CPU, 1 fake GPU) and a worker node (1 CPU), each a
separate ``ray start --block`` process with its own temp dir and ports. ``bench run --address``
runs against it as a subprocess, the way a user runs it. Every trial of these grids is
deterministic (every random draw derives from seed, fold and epoch), so an interrupted run must
finish with exactly the numbers of the uninterrupted baseline (the run submitted with ``ray job submit``).

The nodes are started with ``--node-ip-address 127.0.0.1``; Ray 2.60 advertises this host's own
interface address in its place for multi-node clusters (see ``cluster``). Nothing here talks to
another machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cluster import BIN, S3_ENV, SHARED, Cluster, kill_tree, one_at_a_time

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

EPOCHS = 5
GRID = """\
name: dist
dataset: {{kind: synthetic, root: {root}, n: 200, size: 64, image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_resnet]
strategies: [bce, focal]
train: {{epochs: {epochs}, batch_size: 32, lr: 0.003}}
seeds: [0]
resources: {resources}
localisation: {{enabled: false}}
report: {{bootstrap: 0}}
"""
TRIALS = sorted(f"test_resnet-{s}-f{f}-s0" for s in ("bce", "focal") for f in (0, 1))
# For drivers whose test does not watch each epoch's saved state: Ray Tune saves it (and syncs it to storage) once a
# second instead of at every step, the cluster's setting (tests/_cluster.py). Measured on the S3 test: 43 CPU-seconds
# at every step, 33 once a second, most of the difference the uploads to the local S3 server.
UNWATCHED = {"TUNE_GLOBAL_CHECKPOINT_S": "1"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head (1 CPU, 1 fake GPU, Ray Client and Jobs API) and worker (1 CPU) as separate `ray start` processes,
    shared with test_faults.py (tests/_cluster.py: SharedCluster; tests/conftest.py stops it)."""
    return SHARED.get(tmp_path_factory.mktemp("cluster"))


# ---- drivers -------------------------------------------------------------------------------------

@dataclass
class Driver:
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 240) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.proc)
            out = self.output()
            last = next((line for line in reversed(out.splitlines()) if line.strip()), "")
            # The last line first: a CI summary shows the failure's first line only.
            pytest.fail(f"bench run did not finish in {timeout}s; its last line: {last[:300]!r}\n{out[-3000:]}")


class Drivers:
    """Starts `bench run` subprocesses; whatever still runs is killed at teardown."""

    def __init__(self, cluster: Cluster, root: Path, folder: Path):
        self.cluster, self.root, self.folder, self.started = cluster, root, folder, []

    def grid(self, name: str, resources: str = "{cpu: 1}") -> Path:
        path = self.folder / f"{name}.yaml"
        path.write_text(GRID.format(root=self.root, epochs=EPOCHS, resources=resources))
        return path

    def start(self, grid: Path, out: Path, *, storage: str | None = None, env: dict | None = None,
              address: str | None = None) -> Driver:
        log = self.folder / f"driver-{out.name}-{len(self.started)}.log"
        cmd = [str(BIN / "bench"), "run", "--grid", str(grid), "--out", str(out),
               "--address", address or self.cluster.address]
        if storage:
            cmd += ["--storage", storage]
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.cluster.env, **(env or {})}, cwd=self.folder, start_new_session=True)
        driver = Driver(proc, log)
        self.started.append(driver)
        return driver

    def run(self, grid: Path, out: Path, **kw) -> Driver:
        driver = self.start(grid, out, **kw)
        driver.wait()
        return driver

    def close(self) -> None:
        for d in self.started:
            if d.proc.poll() is None:
                kill_tree(d.proc)


@pytest.fixture
def drivers(cluster, synth_root, tmp_path):
    d = Drivers(cluster, synth_root, tmp_path)
    yield d
    d.close()


@pytest.fixture(scope="module")
def baseline(cluster, synth_root, tmp_path_factory):
    """The grid run once, uninterrupted, on the two-node cluster: the reference numbers. Submitted as a job,
    ``ray job submit --address http://HEAD:8265 -- bench run ...``, so that this one run also covers that path
    (test_ray_job_submit_runs_the_grid_on_the_head); every other test drives the cluster with ``bench run
    --address`` from here."""
    folder = tmp_path_factory.mktemp("baseline")
    grid, out = folder / "grid.yaml", folder / "run"
    grid.write_text(GRID.format(root=synth_root, epochs=EPOCHS, resources="{cpu: 1}"))
    cmd = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--",
           str(BIN / "bench"), "run", "--grid", str(grid), "--out", str(out)]
    proc = subprocess.run(cmd, env=cluster.env, cwd=folder, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)
    return {"out": out, "rc": proc.returncode, "output": proc.stdout + proc.stderr}


# ---- reading a run -------------------------------------------------------------------------------

def metrics(out: Path) -> dict[str, dict]:
    return {tid: json.loads((out / "trials" / tid / "metrics.json").read_text()) for tid in collected(out)}


def assert_same_metrics(out: Path, reference: Path, trials: list[str] = TRIALS) -> None:
    """``out`` holds exactly ``trials``, each with the numbers it has in ``reference`` (to 1e-6)."""
    got, want = metrics(out), metrics(reference)
    assert sorted(got) == sorted(trials) and set(trials) <= set(want) and sorted(want) == TRIALS
    assert not list((out / "trials").glob(".*")), "a half-made copy of outputs is left"
    for tid in trials:
        a, b = got[tid]["summary"], want[tid]["summary"]
        assert abs(a["macro_auc"] - b["macro_auc"]) < 1e-6, tid
        keys = [k for k, v in b.items() if isinstance(v, float)]
        np.testing.assert_allclose([a[k] for k in keys], [b[k] for k in keys], atol=1e-6, rtol=0, err_msg=tid)


def assert_same_leaderboard(out: Path, reference: Path) -> None:
    a = pd.read_csv(out / "leaderboard.csv").set_index(["backbone", "strategy"]).sort_index()
    b = pd.read_csv(reference / "leaderboard.csv").set_index(["backbone", "strategy"]).sort_index()
    assert list(a.columns) == list(b.columns) and list(a.index) == list(b.index)
    num = b.select_dtypes("number").columns
    np.testing.assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), atol=1e-6, rtol=0, equal_nan=True)


def parse_state(text: str) -> dict[str, dict]:
    """Tune's own record of each trial (status times, failures) in an experiment state file."""
    out = {}
    for trial_json, meta_json in json.loads(text)["trial_data"]:
        trial = json.loads(trial_json)
        out[trial["config"]["trial"]["id"]] = {**json.loads(meta_json), "status": trial["status"]}
    return out


def tune_state(experiment: Path) -> dict[str, dict]:
    """Tune's own record of each trial, from the newest experiment state in a local experiment folder."""
    newest = max(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    return parse_state(newest.read_text())


def bucket_state(s3: dict, prefix: str) -> dict[str, dict]:
    """Tune's own record of each trial, from the newest experiment state under ``prefix`` in the bucket."""
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=s3["bucket"], Prefix=prefix)
    states = [o for page in pages for o in page.get("Contents", []) if "/experiment_state-" in o["Key"]]
    if not states:
        return {}
    newest = max(states, key=lambda o: (o["LastModified"], o["Key"]))
    return parse_state(s3["client"].get_object(Bucket=s3["bucket"], Key=newest["Key"])["Body"].read().decode())


def resume_checkpoints(experiment: Path) -> dict[str, list[Path]]:
    """Unfinished trials whose last recorded checkpoint is certainly in Tune's saved experiment state, with
    their checkpoint folders on storage.

    Tune syncs a trial's result rows to storage together with the experiment state, and registers the
    checkpoint reported with a row before it processes the next row; so once storage shows two rows of a
    running trial, the saved state records a checkpoint of it, and that checkpoint is one of the folders
    listed. Deleting every listed folder stages Tune's own race (it deletes a trial's previous checkpoint
    before it saves the state, so a driver killed in between leaves the state pointing at a folder that is
    gone) without reading Tune's pickled checkpoint manager.
    """
    out = {}
    for tid, state in tune_state(experiment).items():
        folders = sorted((experiment / tid).glob("checkpoint_*"))
        if state["status"] != "TERMINATED" and len(results(experiment, tid)) >= 2 and folders:
            out[tid] = folders
    return out


def search_state_loads(experiment: Path) -> bool:
    """Whether the search state a restore reads (the newest ``basic-variant-state-*.json``, a pickle) loads whole."""
    import pickle

    newest = max(experiment.glob("basic-variant-state-*.json"), key=lambda p: p.name, default=None)
    try:
        return newest is not None and isinstance(pickle.loads(newest.read_bytes()), dict)
    except (EOFError, pickle.UnpicklingError, OSError, ValueError):
        return False


def results(experiment: Path, tid: str) -> list[dict]:
    rows = []
    path = experiment / tid / "result.json"
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return rows


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def wait_for(what: str, check, driver: Driver, *, timeout: float = 180, every: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        if driver.proc.poll() is not None:
            pytest.fail(f"bench run ended (exit {driver.proc.returncode}) before {what}:\n{driver.output()[-3000:]}")
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}:\n{driver.output()[-3000:]}")


def collected(out: Path) -> list[str]:
    """Trials whose outputs reached the run folder (not the hidden folder a copy is made in)."""
    return sorted(p.parent.name for p in (out / "trials").glob("*/metrics.json") if not p.parent.name.startswith("."))


def finished_some(out: Path, experiment: Path | None = None):
    """Some, not all, trials finished: outputs collected and, when ``experiment`` is given, also recorded
    as finished in the experiment state Tune saved, with all their result rows. (Tune saves it a moment after a
    trial ends; a driver killed in between has Tune resume the trial, and bench hands its collected numbers back
    without training: the s3 test usually meets that case. Tune copies the state and the result logs to storage
    one file after another: a fresh clone's CI once saw the state without a finished trial's rows.)"""
    done = collected(out)
    if not 0 < len(done) < len(TRIALS):
        return None
    if experiment is not None:
        try:
            state = tune_state(experiment)
        except (ValueError, KeyError, OSError):  # being written
            return None
        if any(state.get(tid, {}).get("status") != "TERMINATED" or len(results(experiment, tid)) != EPOCHS
               for tid in done):
            return None
    return done


# ---- tests ---------------------------------------------------------------------------------------

def test_grid_runs_on_both_nodes(baseline):
    assert baseline["rc"] == 0, baseline["output"][-3000:]
    out = baseline["out"]
    found = metrics(out)
    assert sorted(found) == TRIALS
    nodes = {m["node_id"] for m in found.values()}
    assert None not in nodes and len(nodes) == 2, f"trials ran on {nodes}"
    # Tune's trial folders carry the short readable ids.
    assert sorted(p.name for p in (out / "tune").iterdir() if p.is_dir()) == TRIALS
    assert (out / "leaderboard.csv").is_file() and json.loads((out / "run.json").read_text())["status"] == "complete"


def test_killed_worker_resumes_from_its_checkpoint(drivers, baseline, tmp_path):
    """A trial whose worker dies continues from its last epoch checkpoint; once its retries
    (resources.max_failures) are spent it errors, the run exits 3 naming it, and re-running the
    command restores the experiment and resumes the errored trial from its checkpoint."""
    out, grid = tmp_path / "run", drivers.grid("grid", one_at_a_time(max_failures=1))
    driver = drivers.start(grid, out)

    def first_epoch_reported():
        for tid in TRIALS:
            rows = results(out / "tune", tid)
            if len(rows) == 1 and rows[0].get("epoch") == 1 and not rows[0].get("done"):
                return tid, rows[0]["pid"]
        return None

    victim, pid = wait_for("a trial's first epoch", first_epoch_reported, driver)
    os.kill(pid, signal.SIGKILL)

    def retried():  # the victim reporting again, from another worker process
        rows = results(out / "tune", victim)
        last = rows[-1] if rows else {}
        return last["pid"] if last.get("pid") not in (None, pid) and not last.get("done") else None

    retried_pid = wait_for("the retried trial's next epoch", retried, driver)
    # The epochs that may be in flight at each kill: the last one the storage copy of the result log shows,
    # or the next (Tune writes result rows to the driver's staging folder and syncs them to RUN/tune a moment
    # later, once the checkpoint reported with them is registered).
    last = results(out / "tune", victim)[-1]["epoch"]
    in_flight = {1, 2, last, last + 1}
    os.kill(retried_pid, signal.SIGKILL)
    assert driver.wait() == 3, driver.output()[-3000:]  # GridIncomplete
    assert f"{victim}: attempt failed (worker lost or error); retrying from its last checkpoint" in driver.output()
    assert f"errored: {victim}: " in driver.output()
    assert collected(out) == sorted(set(TRIALS) - {victim})
    assert json.loads((out / "run.json").read_text())["status"] == "incomplete"

    again = drivers.run(grid, out)
    assert again.proc.returncode == 0, again.output()[-3000:]
    assert "restoring the Ray Tune experiment" in again.output()
    epochs = [r["epoch"] for r in results(out / "tune", victim)]
    if f"before their last epoch without a Ctrl-C ({victim};" in again.output():
        # Ray Tune ended the resumed trial early with no Ctrl-C (seen once, on a STOP restored with the experiment,
        # which bench.tune_grid now drops; any other cause: bench.tune_outcome.settle_run): it started over, whole
        experiment = json.loads((out / "run.json").read_text())["experiment"]
        assert experiment != "tune" and epochs == sorted(epochs) and max(epochs) < EPOCHS, epochs
        assert [r["epoch"] for r in results(out / experiment, victim)] == list(range(1, EPOCHS + 1))
    else:
        # Always continued from its last registered checkpoint. Ray Tune logs an epoch's result before it registers
        # the checkpoint reported with it, so a worker killed in between repeats that one epoch: at most one epoch
        # per kill runs twice, and only one in flight at a kill (a restart from scratch repeats every epoch before).
        assert epochs == sorted(epochs) and sorted(set(epochs)) == list(range(1, EPOCHS + 1)), epochs
        repeated = {e for e in epochs if epochs.count(e) > 1}
        assert max(epochs.count(e) for e in epochs) <= 2 and len(repeated) <= 2 and repeated <= in_flight, \
            (epochs, in_flight)
    for tid in set(TRIALS) - {victim}:  # the others ran once, uninterrupted
        assert [r["epoch"] for r in results(out / "tune", tid)] == list(range(1, EPOCHS + 1)), tid
    assert not (out / "errors.json").exists()
    assert_same_metrics(out, baseline["out"])


def test_a_killed_driver_then_ctrl_c_and_the_same_command_runs_only_what_is_missing(drivers, baseline, tmp_path):
    """Two stops of one run, each followed by the same command. SIGKILL the driver once some trials finished and an
    unfinished one has a recorded checkpoint: the same command restores the experiment and runs only the rest, even a
    trial whose recorded checkpoint Tune had already deleted. SIGINT (Ctrl-C) to that driver once another trial
    finished: exit 130 with the resume hint, and the unfinished trials are not reported as errors. The same command
    restores the experiment again and ends with the uninterrupted run's numbers. (One scenario for both stops: each
    driver and each new trial worker costs this machine about 6 CPU-seconds, which a second test of the grid would pay
    again.)"""
    out, grid = tmp_path / "run", drivers.grid("grid", one_at_a_time())
    first = drivers.start(grid, out)

    def ready():  # some trials finished, and an unfinished one has a recorded checkpoint to resume from
        try:
            return finished_some(out, out / "tune") and resume_checkpoints(out / "tune")
        except (ValueError, KeyError, OSError):  # state being written
            return None

    wait_for("a finished trial and a checkpointed one", ready, first)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.wait(timeout=30)
    done = collected(out)
    assert 0 < len(done) < len(TRIALS) - 1, done  # the trial to resume and one more are left
    before = {tid: snapshot(out / "trials" / tid) for tid in done}
    lines = {tid: len(results(out / "tune", tid)) for tid in done}
    gone_tid, gone = sorted(resume_checkpoints(out / "tune").items())[0]
    for folder in gone:  # as if Tune deleted the recorded one and the driver died before the state recorded the next
        shutil.rmtree(folder)
    # ... and as if the driver died while copying that trial's outputs (a copy is renamed when whole).
    shutil.copytree(out / "trials" / done[0], out / "trials" / f".{gone_tid}.tmp99999")
    # Ray Tune rewrites its search state beside the experiment state at every step: a driver killed meanwhile can
    # leave it empty. Tune then cannot restore the run ("Failed to restore the run state") and starts an experiment
    # without trials; bench runs the unfinished ones as a new experiment, from scratch (same numbers), in order.
    restorable = search_state_loads(out / "tune")

    second = drivers.start(grid, out)
    others = [tid for tid in TRIALS if tid not in done and tid != gone_tid]
    wait_for("another trial's end", lambda: set(others) & set(collected(out)), second)
    os.kill(second.proc.pid, signal.SIGINT)
    second.wait(timeout=120)
    output = second.output()
    assert second.proc.returncode == 130, output[-3000:]
    assert "restoring the Ray Tune experiment" in output
    assert f"{len(done)} already done" in output
    # This driver's progress callback replaced the one Tune unpickled with the experiment.
    assert f"[{len(done) + 1}/{len(TRIALS)}] " in output
    assert "interrupted; re-run the same command to resume" in output
    assert "holds no outputs" not in output and not (out / "errors.json").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    new_experiment = (f"Ray Tune ended without starting {len(TRIALS) - len(done)} trial(s): running them as a new "
                      "experiment")
    if restorable:  # the gone trial errored when resumed; the others ran first, and one ended before the Ctrl-C
        assert gone_tid not in collected(out) and new_experiment not in output, output[-3000:]
    else:  # said in one warning, then done
        assert "Ray Tune could not restore the experiment from its saved state (EOFError: " in output, output[-3000:]
        assert new_experiment in output, output[-3000:]

    again = drivers.run(grid, out)
    assert again.proc.returncode == 0, again.output()[-3000:]
    assert "restoring the Ray Tune experiment" in again.output()
    if restorable:
        # The trial whose checkpoint is gone errors when resumed, and starts over once the others ended: in the
        # second driver (the Ctrl-C then stops it there) or in this one.
        assert "restarting the errored trials from scratch" in output + again.output()
        assert f"{gone_tid} done" in again.output()
    else:  # started over in the new experiment, in the second driver or in this one
        assert f"{gone_tid} done" in output + again.output()
    for tid in done:  # finished before the first stop: outputs untouched, not run again
        assert snapshot(out / "trials" / tid) == before[tid], tid
        assert len(results(out / "tune", tid)) == lines[tid] == EPOCHS, tid
        assert f"{tid}: epoch" not in output and f"{tid}: epoch" not in again.output(), tid
    assert_same_metrics(out, baseline["out"])
    assert_same_leaderboard(out, baseline["out"])


def test_gpu_trials_stop_before_scheduling_when_torch_on_a_gpu_node_sees_no_cuda(drivers, tmp_path):
    """The head's GPU is Ray's resource only (``--num-gpus 1`` on a machine without one), as on a node whose
    driver is too old for torch's CUDA build: `bench run` probes it and stops before any trial, one line."""
    out = tmp_path / "run"
    driver = drivers.run(drivers.grid("gpu", "{cpu: 0.25, gpu: 0.5}"), out)
    assert driver.proc.returncode == 2, driver.output()[-3000:]
    last = driver.output().strip().splitlines()[-1]
    assert re.fullmatch(r"error: resources\.gpu: 0\.5 asked for GPUs, but on node \S+: torch sees no CUDA "
                        r"device \(Ray assigned GPUs: 0; NVIDIA driver: none found; torch \S+ built for CUDA [\d.]+\); "
                        r"the node has no NVIDIA driver loaded: .*, or set resources\.gpu: 0 to train on CPUs",
                        last), last
    assert "fake" not in last.lower()
    assert not out.exists()  # nothing written


def test_fractional_gpu_trials_share_one_gpu_two_at_a_time(drivers, baseline, tmp_path):
    from bench.devices import TEST_SWITCH

    out = tmp_path / "run"
    driver = drivers.run(drivers.grid("gpu", "{cpu: 0.25, gpu: 0.5}"), out, env={TEST_SWITCH: "1", **UNWATCHED})
    assert driver.proc.returncode == 0, driver.output()[-3000:]
    found = metrics(out)
    assert sorted(found) == TRIALS
    assert len({m["node_id"] for m in found.values()}) == 1  # only the head node has a GPU
    assert {m["device"] for m in found.values()} == {"cpu"}  # a fake GPU: only the test-only switch allows this
    # Tune's record of when each trial held its resources: [set RUNNING, last result].
    spans = [(s["start_time"], s["last_result_time"]) for s in tune_state(out / "tune").values()]
    assert len(spans) == len(TRIALS)
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    # Never more than two at once on the one GPU (how many did overlap depends on the machine's load).
    assert 1 <= most <= 2, f"{most} trials ran at once on one GPU with gpu: 0.5 each; spans {spans}"
    assert_same_metrics(out, baseline["out"])  # resources change scheduling, never results


@pytest.fixture
def s3():
    """A local S3 server (moto) on 127.0.0.1 with an empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # bound to 0: the OS picks
    server.start()
    try:
        port = server.get_host_and_port()[1]
        env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="bench-results")
        yield {"env": env, "client": client, "bucket": "bench-results"}
    finally:
        server.stop()


def test_s3_storage_run_and_a_lost_run_folder_restored_from_it(drivers, baseline, s3, tmp_path):
    """``--storage s3://...``: the experiment lives in the bucket only. The driver is killed after some trials
    finished and the run folder is lost with it (a lost head node); the same command restores the experiment from
    the bucket, collects the finished trials' outputs from their checkpoints there without training them again,
    runs the rest and rebuilds the folder with the uninterrupted run's numbers."""
    out, grid, storage = tmp_path / "run", drivers.grid("grid", one_at_a_time()), "s3://bench-results/runs"
    env = {**s3["env"], **UNWATCHED}
    first = drivers.start(grid, out, storage=storage, env=env)

    def finished_in_the_bucket():  # some, not all, trials finished, and the state in the bucket records one
        done = finished_some(out)
        if not done or not (out / "run.json").is_file():
            return None
        try:
            state = bucket_state(s3, f"runs/{json.loads((out / 'run.json').read_text())['experiment']}/")
        except (ValueError, KeyError):  # being written
            return None
        return {tid for tid in done if state.get(tid, {}).get("status") == "TERMINATED"} or None

    wait_for("a finished trial recorded in the bucket", finished_in_the_bucket, first, every=0.5)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.wait(timeout=30)
    done = collected(out)
    assert 0 < len(done) < len(TRIALS)
    experiment = json.loads((out / "run.json").read_text())["experiment"]
    recorded = {tid for tid, st in bucket_state(s3, f"runs/{experiment}/").items() if st["status"] == "TERMINATED"}
    assert recorded
    shutil.rmtree(out)

    again = drivers.run(grid, out, storage=storage, env=env)
    assert again.proc.returncode == 0, again.output()[-3000:]
    assert "0 already done" in again.output() and "resuming the run" not in again.output()
    assert "restoring the Ray Tune experiment" in again.output()
    # Trials the bucket's state records as finished are handed back from their final checkpoints there, never
    # trained again. (A trial that finished after the last state save is resumed from the checkpoint the state
    # records, or from scratch if Tune had deleted it: same numbers, some epochs run twice.)
    for tid in recorded:
        assert f"{tid}: epoch" not in again.output(), (tid, again.output()[-3000:])
    assert collected(out) == TRIALS
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["experiment"] == experiment
    assert not (out / "tune").exists()  # the experiment lives in the bucket only
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=s3["bucket"], Prefix=f"runs/{experiment}/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert f"runs/{experiment}/tuner.pkl" in keys
    assert any(k.startswith(f"runs/{experiment}/experiment_state-") for k in keys)
    # A trial the bucket's state did not record as finished may run as a new Tune trial: restarted from scratch (its
    # recorded checkpoint was gone: see the killed-driver test), or created again because the state was saved before
    # the killed driver created it. Tune names its folder "<id>_<4 hex digits>" when "<id>" exists. The finished
    # trials keep their folders; no other folder name is allowed.
    for tid in TRIALS:
        suffix = "" if tid in recorded else "(_[0-9a-f]{4})?"
        final = re.compile(rf"runs/{re.escape(experiment)}/{re.escape(tid)}{suffix}/checkpoint_\d+/outputs/metrics\.json")
        assert any(final.fullmatch(k) for k in keys), (tid, sorted(k for k in keys if k.endswith("metrics.json")))
    assert_same_metrics(out, baseline["out"])
    assert_same_leaderboard(out, baseline["out"])


def test_a_worker_without_the_dataset_gets_the_image_cache_through_storage(cluster, baseline, s3, tmp_path):
    """The shared cluster's worker node sees neither this test's dataset folder nor the driver's cache folder (both
    in the cluster's ``hidden`` folder, under an empty tmpfs in the worker's own mount namespace, as on another
    machine). With ``--storage`` on the local S3 server (a cloud cluster's case: no shared file system) the driver
    publishes the cache there; the worker's trial fetches it, verifies its checksum and trains without decoding one
    image; the numbers equal the uninterrupted run's (the dataset is the session's synthetic one, written again
    there). Two trials of the grid (one strategy, both folds), one per node: each node has one CPU and each trial
    takes one. (A shared folder as ``--storage`` publishes and fetches through the same code,
    bench.data.shipping, whose folder and S3 paths test_shipping.py checks one by one.)"""
    from bench.data.synthetic import write_synthetic

    trials = [tid for tid in TRIALS if "-bce-" in tid]
    (hidden,) = cluster.hidden
    root, caches, out = hidden / f"data-{tmp_path.name}", hidden / f"caches-{tmp_path.name}", tmp_path / "run"
    write_synthetic(root, n=200, size=64, seed=0)  # as conftest's synth_root, which the worker can see
    caches.mkdir()
    d = Drivers(cluster, root, tmp_path)
    try:
        grid = tmp_path / "grid.yaml"
        grid.write_text(GRID.format(root=root, epochs=EPOCHS, resources="{cpu: 1}").replace(
            "image_size: 32}", f"image_size: 32, cache_dir: {caches}}}").replace(
            "strategies: [bce, focal]", "strategies: [bce]"))
        run = d.run(grid, out, storage="s3://bench-results/runs", env={**s3["env"], **UNWATCHED})
    finally:
        d.close()
    assert run.proc.returncode == 0, run.output()[-3000:]
    # (moto's buckets live in this process: an earlier S3 test's run may have published the same cache)
    assert "publishing image cache" in run.output() or "already in s3://bench-results/runs" in run.output(), \
        run.output()[-2000:]
    sources = {tid: json.loads((out / "trials" / tid / "config.json").read_text())["cache_source"] for tid in trials}
    nodes = {tid: m["node_id"] for tid, m in metrics(out).items()}
    assert len(set(nodes.values())) == 2, nodes  # both nodes trained
    fetched = {tid for tid, src in sources.items() if src == "fetched from storage"}
    assert fetched and set(sources.values()) <= {"local", "fetched from storage"}, sources
    # the worker's trial fetched it; the head's found it 'local' (the head never fetches)
    worker = {nodes[t] for t in fetched}
    assert len(worker) == 1, (sources, nodes)
    assert all(sources[t] == "local" for t in trials if nodes[t] not in worker), (sources, nodes)
    assert_same_metrics(out, baseline["out"], trials)
    key = json.loads((out / "run.json").read_text())["cache_key"]
    objects = s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix="runs/_image_cache/")["Contents"]
    assert f"runs/_image_cache/{key}/{key}.npy" in [o["Key"] for o in objects]


def test_ray_client_drives_the_grid_from_outside_the_cluster(drivers, baseline, tmp_path):
    """``--address ray://HOST:10001``: Tune's loop runs on the head node, the outputs come back through the
    storage both sides share, and this console shows the progress lines as a local run does."""
    from bench.tuner import CLIENT_TAG

    out, store = tmp_path / "run", tmp_path / "store"
    driver = drivers.run(drivers.grid("grid", one_at_a_time()), out, address=drivers.cluster.client_address,
                         storage=str(store))
    output = driver.output()
    assert driver.proc.returncode == 0, output[-3000:]
    for tid in TRIALS:
        assert f"  {tid}: epoch 1/{EPOCHS}  train loss " in output, tid
        assert re.search(rf"^\[\d/{len(TRIALS)}\] {re.escape(tid)} done: macro AUC ", output, re.M), tid
    # Only the progress lines cross over: no Ray prefixes, tags, worker logs or Tune notices.
    assert "pid=" not in output and CLIENT_TAG.rstrip(" ") not in output and "Checkpoint successfully" not in output
    experiment = json.loads((out / "run.json").read_text())["experiment"]
    assert not (out / "tune").exists() and (store / experiment / "tuner.pkl").is_file()
    assert_same_metrics(out, baseline["out"])
    assert_same_leaderboard(out, baseline["out"])


def test_ray_job_submit_runs_the_grid_on_the_head(baseline):
    """``ray job submit --address http://HEAD:8265 -- bench run ...`` (the baseline run): the driver runs on the head
    node (Ray sets RAY_ADDRESS for it), the CLI streams its output and exits 0 when the job succeeds."""
    output, out = baseline["output"], baseline["out"]
    assert baseline["rc"] == 0, output[-3000:]
    assert "succeeded" in output and f"finished {len(TRIALS)} trial(s)" in output, output[-3000:]
    for tid in TRIALS:
        assert f"{tid} done: macro AUC" in output, tid
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["storage"] == str(out)
