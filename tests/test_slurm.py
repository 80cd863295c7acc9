"""slurm/bench.sbatch, run on this machine as a SLURM job of two "nodes" on 127.0.0.1.

SLURM itself is not here: the job's environment (SLURM_JOB_ID, SLURM_JOB_NODELIST=node[1-2], ...) is set by
hand and ``tests/slurm_shim`` stands in for ``srun`` (runs the step's command here, as the node named by ``-w``),
``scontrol show hostnames`` and ``hostname --ip-address`` (127.0.0.1 for every node). Everything else is real:
the script starts one ``ray start --block`` per node through srun, waits for both, runs ``bench run`` against
them and stops them. The grid (1 strategy x 2 folds on the tests' synthetic data) must end with the
leaderboard of a plain local ``bench run`` to 1e-6, with trials on both nodes; resubmitting the same command
resumes the finished run instead of training again; the resubmission runs "in a container" (``BENCH_CONTAINER``)
through a stand-in for ``apptainer exec`` that runs the command here, so only the script's use of Apptainer is
tested, not Apptainer (not installed here).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cluster import BIN, kill_tree, one_at_a_time

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "slurm" / "bench.sbatch"
SHIM = Path(__file__).resolve().parent / "slurm_shim"
GRID = """\
name: slurm
dataset: {{kind: synthetic, root: {root}, n: 200, size: 64, image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_resnet]
strategies: [bce]
train: {{epochs: 2, batch_size: 32, lr: 0.003}}
seeds: [0]
resources: {resources}
localisation: {{enabled: false}}
report: {{bootstrap: 0}}
"""
TRIALS = [f"test_resnet-bce-f{f}-s0" for f in (0, 1)]  # one CPU a trial, one a node: one trial on each node


def job_env(tmp: Path, **extra) -> dict:
    """The environment of a two-node SLURM job whose batch script runs on node1 (the shims first on PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM") and k not in ("RAY_ADDRESS", "BENCH_DEBUG")}
    env.update({
        "PATH": os.pathsep.join([str(SHIM), str(BIN), env.get("PATH", "")]),
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "cxr-bench", "SLURM_JOB_NODELIST": "node[1-2]",
        "SLURM_JOB_NUM_NODES": "2", "SLURM_NNODES": "2", "SLURMD_NODENAME": "node1", "SLURM_CPUS_PER_TASK": "1",
        "SLURM_SUBMIT_DIR": str(tmp), "SLURM_SHIM_LOG": str(tmp / "srun.log"),
        "TMPDIR": str(tmp),  # where the nodes' Ray session folders go (short: Ray's socket paths are limited)
        # Only 127.0.0.1 is contacted: no usage stats, no token auth, and Ray's multi-node-on-one-host switch
        # (tests/_cluster.py explains it).
        "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
        "BENCH_NODE_WAIT": "240",
    })
    env.update(extra)
    return env


def sbatch(args: list[str], env: dict, cwd: Path, *, timeout: float = 420) -> subprocess.CompletedProcess:
    """`bash slurm/bench.sbatch ARGS` as the batch step would run it; every process it left is stopped after."""
    log = cwd / f"sbatch-{len(list(cwd.glob('sbatch-*.log')))}.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(["bash", str(SBATCH), *args], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
    kill_tree(proc)
    out = log.read_text(errors="replace")
    if rc is None:
        pytest.fail(f"bench.sbatch did not finish in {timeout}s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(proc.args, rc, out, "")


def leftover_ray(tmp: Path) -> list[int]:
    """Processes whose command line names this test's folder (the nodes' --temp-dir): none may outlive the job."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"{tmp}/ray-424" in cmd:
                found.append(int(entry))
    return found


def assert_same_leaderboard(out: Path, reference: Path) -> None:
    a = pd.read_csv(out / "leaderboard.csv").set_index(["backbone", "strategy"]).sort_index()
    b = pd.read_csv(reference / "leaderboard.csv").set_index(["backbone", "strategy"]).sort_index()
    assert list(a.columns) == list(b.columns) and list(a.index) == list(b.index)
    num = b.select_dtypes("number").columns
    np.testing.assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), atol=1e-6, rtol=0, equal_nan=True)


@pytest.fixture
def job_dir():
    """A short folder under /tmp for the job (Ray's socket paths under TMPDIR must stay short)."""
    d = Path(tempfile.mkdtemp(prefix="sl", dir="/tmp"))
    yield d
    for pid in leftover_ray(d):  # only after a failure: the job's own Ray processes, by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.cluster
@pytest.mark.slow
def test_a_grid_runs_across_two_nodes_and_resumes_when_resubmitted(job_dir, synth_root, ray_session, capsys):
    grid = job_dir / "grid.yaml"
    grid.write_text(GRID.format(root=synth_root, resources="{cpu: 1}"))

    # The reference: a plain local run of the same grid, in this process on the tests' own Ray instance (no second
    # instance to start), its trials one at a time (resources change no number)
    plain_grid = job_dir / "plain.yaml"
    plain_grid.write_text(GRID.format(root=synth_root, resources=one_at_a_time()))
    assert main(["-q", "run", "--grid", str(plain_grid), "--out", str(job_dir / "plain")]) == 0, \
        capsys.readouterr().err[-3000:]

    env = job_env(job_dir)
    args = ["--grid", str(grid), "--out", str(job_dir / "runs" / "slurm")]
    first = sbatch(args, env, job_dir)
    assert first.returncode == 0, first.stdout[-4000:]
    assert "Ray head on node1 (127.0.0.1:" in first.stdout and "1 more node(s): node2" in first.stdout
    assert "all 2 node(s) joined" in first.stdout
    steps = (job_dir / "srun.log").read_text().splitlines()  # "NODE COMMAND", the two nodes' in either order
    assert steps[0] == "node1 hostname --ip-address ", steps  # the head's address, looked up on the head
    roles = sorted((s.split()[0], s.split()[-2]) for s in steps[1:])
    assert roles == [("node1", "head"), ("node2", "worker")] and all(" 127.0.0.1:" in s for s in steps[1:]), steps

    out = job_dir / "runs" / "slurm"
    assert sorted(p.name for p in (out / "trials").iterdir()) == TRIALS
    nodes = {json.loads((out / "trials" / t / "metrics.json").read_text())["node_id"] for t in TRIALS}
    assert len(nodes) == 2, f"the trials ran on {len(nodes)} node(s), not on both"
    assert_same_leaderboard(out, job_dir / "plain")
    # --storage defaulted to the submit directory's runs/ray-storage (the shared file system on a real cluster).
    assert list((job_dir / "runs" / "ray-storage").glob("slurm-*/experiment_state-*.json"))
    assert leftover_ray(job_dir) == []

    # Resubmitting the same command resumes the finished run: nothing is trained again. This time through
    # BENCH_CONTAINER: every Ray node and `bench run` start inside the (stand-in) Apptainer image.
    before = {t: (out / "trials" / t / "metrics.json").stat().st_mtime_ns for t in TRIALS}
    (job_dir / "srun.log").unlink()
    (job_dir / "cxr-bench.sif").write_bytes(b"")
    second = sbatch(args, {**env, "SLURM_JOB_ID": "4243", "BENCH_CONTAINER": str(job_dir / "cxr-bench.sif"),
                           "APPTAINER_SHIM_LOG": str(job_dir / "apptainer.log")}, job_dir)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "resuming the run in" in second.stdout, second.stdout[-3000:]
    inside = [line.split()[1] for line in (job_dir / "apptainer.log").read_text().splitlines()]
    assert sorted(set(inside)) == ["bash", "bench", "python"] and inside.count("bash") == 2, inside
    steps = (job_dir / "srun.log").read_text().splitlines()
    assert all(f" apptainer exec --nv {job_dir}/cxr-bench.sif bash -c " in s for s in steps[1:]), steps
    assert {t: (out / "trials" / t / "metrics.json").stat().st_mtime_ns for t in TRIALS} == before
    assert_same_leaderboard(out, job_dir / "plain")
    assert leftover_ray(job_dir) == []


# (environment changes, arguments, the one error line expected)
BAD = {
    "not in a job": ({"SLURM_JOB_ID": None}, ["--grid", "g.yaml"],
                     "bench.sbatch: error: SLURM_JOB_ID / SLURM_JOB_NODELIST are not set: submit this script with sbatch"),
    "no arguments": ({}, [], "bench.sbatch: error: no options for bench run: give at least --grid"),
    "no container file": ({"BENCH_CONTAINER": "/nonexistent/cxr-bench.sif"}, ["--grid", "g.yaml"],
                          "bench.sbatch: error: BENCH_CONTAINER=/nonexistent/cxr-bench.sif: no such file"),
    "no bench on PATH": ({"PATH": f"{SHIM}:/usr/bin:/bin"}, ["--grid", "g.yaml"],
                         "bench.sbatch: error: bench is not on PATH: activate the project's virtual environment"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line(job_dir, case):
    changes, args, line = BAD[case]
    env = job_env(job_dir)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    r = subprocess.run(["bash", str(SBATCH), *args], env=env, cwd=job_dir, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith(line) and r.stderr.count("\n") == 1, r.stderr
    assert not (job_dir / "srun.log").exists(), "a step started despite the bad input"


def test_the_script_asks_slurm_for_one_task_per_node():
    head = [line for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --ntasks-per-node=1" in head and any(h.startswith("#SBATCH --gpus-per-node=") for h in head)
