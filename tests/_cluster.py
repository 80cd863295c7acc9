"""A real multi-node Ray cluster on this machine, for the fault tests (no mocks of Ray).

Each node is a separate ``ray start --block`` process with its own temp dir and ports, started with
``--node-ip-address 127.0.0.1``; :func:`two_node_cluster` starts a head (1 CPU, 1 fake GPU) and a
worker (1 CPU) and stops both afterwards. ``Cluster.procs`` holds the nodes' processes, so a test
can take one node away (:func:`kill_tree`). Used by ``test_distributed.py`` and ``test_faults.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# Credentials for the local S3 server; on AWS the nodes take theirs from an instance profile.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}


# ---- processes --------------------------------------------------------------------------------------

def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(pid: int, sig: int, *, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(proc: subprocess.Popen, *, grace: float = 2.0) -> None:
    """Stop a process started with ``start_new_session=True``, its group and every descendant
    (Ray's workers start sessions of their own): SIGTERM, then SIGKILL after ``grace`` seconds; with
    ``grace=0`` SIGKILL at once, so a fault lands at the state the caller observed (no process gets to
    finish what it was doing)."""
    family = [proc.pid, *_descendants(proc.pid)]
    steps = ((signal.SIGKILL, 5.0),) if grace <= 0 else ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0))
    for sig, wait in steps:
        _signal(proc.pid, sig, group=True)
        for pid in family:
            if _alive(pid):
                _signal(pid, sig)
        deadline = time.time() + wait
        while time.time() < deadline and any(_alive(p) for p in family):
            time.sleep(0.1)
        if not any(_alive(p) for p in family):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def one_at_a_time(**more) -> str:
    """``resources`` of a test grid whose subject is not where or how many trials run at once: one CPU a trial and
    one trial at a time, so one trial worker, reused by every trial, imports torch and timm once (a second worker at
    once costs that import again, about 7 CPU-seconds a run here, and saves no time with trials this small).
    Resources never change a trial's numbers. ``more``: other keys, e.g. ``max_failures=1``."""
    return "{" + ", ".join(f"{k}: {v}" for k, v in {"cpu": 1, "max_concurrent": 1, **more}.items()) + "}"


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ---- the cluster ---------------------------------------------------------------------------------

@dataclass
class Cluster:
    address: str
    env: dict
    logs: list
    procs: list = field(default_factory=list)  # [head, worker] `ray start --block` processes
    client_address: str | None = None  # ray://127.0.0.1:PORT (Ray Client), with services=True
    dashboard: str | None = None  # http://127.0.0.1:PORT (the Jobs API of `ray job submit`), with services=True
    hidden: tuple = ()  # folders the worker node cannot see (two_node_cluster's worker_hidden)


# Runs a command in a private mount namespace with an empty tmpfs over each of the first N arguments' folders:
# `sh -c HIDE sh N DIR... CMD...`. The node's processes then cannot see those folders (another machine's disk).
HIDE = 'n=$1; shift; while [ "$n" -gt 0 ]; do mount -t tmpfs tmpfs "$1" || exit 97; shift; n=$((n-1)); done; exec "$@"'


def _start_node(args: list[str], *, temp: str, log: Path, env: dict, hidden: tuple = ()) -> subprocess.Popen:
    cmd = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", "--temp-dir", temp,
           "--node-ip-address", "127.0.0.1", *args]
    if hidden:  # needs CAP_SYS_ADMIN (root in this project's machines and CI): fails loudly otherwise
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE, "sh", str(len(hidden)),
               *map(str, hidden), *cmd]
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def _wait_until(ready, what: str, proc: subprocess.Popen, log: Path, *, timeout: float = 90) -> None:
    """Poll ``ready()`` until true; fail with the node's log if ``proc`` exits or ``timeout`` passes."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.3)
    pytest.fail(f"{what} (exit {proc.poll()}, {timeout}s):\n{log.read_text(errors='replace')[-3000:]}")


def _wait_started(proc: subprocess.Popen, log: Path) -> None:
    _wait_until(lambda: "Ray runtime started" in log.read_text(errors="replace"), "`ray start` did not start",
                proc, log)


def _answers(url: str) -> bool:
    """Whether ``url`` (on 127.0.0.1) answers 200."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _node_ports(taken: set[int]) -> tuple[list[str], int]:
    """``ray start`` options for one node's ports (several nodes share this host), and one more free port (the
    head's GCS port). Workers bind to port 0 (``--min/max-worker-port 0``) and Ray's node manager, object
    manager, agents' gRPC, runtime-env agent and metrics ports are left to Ray, which binds them to 0; only
    the ports another process must know before the node starts are chosen here: the GCS port the worker node
    joins and the dashboard agent's HTTP port (fixed at 52365 by default, which two nodes would share)."""
    p = [q for q in free_ports(4) if q not in taken][:2]
    taken.update(p)
    return ["--min-worker-port", "0", "--max-worker-port", "0", "--dashboard-agent-listen-port", str(p[0])], p[1]


@contextlib.contextmanager
def two_node_cluster(logs: Path, *, extra_env: dict | None = None, services: bool = False,
                     worker_hidden: tuple = (), grpc_fork_handlers: bool = False):
    """Head (1 CPU, 1 fake GPU) and worker (1 CPU) as separate `ray start` processes; stopped afterwards.

    ``extra_env`` reaches both nodes (e.g. Ray's ``RAY_health_check_*`` settings). With ``services`` the
    head also serves Ray Client and the dashboard's Jobs API, on 127.0.0.1, as a `ray up` head does.
    ``worker_hidden``: folders the worker node cannot see (each covered by an empty tmpfs in its own mount
    namespace), as a machine without the dataset or the head's image cache. ``grpc_fork_handlers``: gRPC's default
    (on) instead of cluster.yaml's GRPC_ENABLE_FORK_SUPPORT=0 (benchmarks/ray_client_fork.py compares the two)."""
    env = {**os.environ, **S3_ENV, **(extra_env or {})}  # nodes inherit BENCH_CACHE_DIR: the image cache is reused
    env.pop("RAY_ADDRESS", None)
    env.pop("BENCH_DEBUG", None)  # drivers print what a user sees without --debug
    # Ray 2.60 refuses to start a second node (`ray start --address`) with this off (conftest turns it off
    # to keep single-machine instances on loopback); with it on, Ray advertises this host's own interface
    # address for --node-ip-address 127.0.0.1. Nodes and drivers must agree on it.
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
    # The fault tests watch each trial's result log and recorded checkpoints in RUN/tune, which Ray Tune syncs
    # there when it saves the experiment state. `bench run` leaves that on Tune's own period (10 s or more:
    # bench/tuner.py keeps the driver flat at 1,000+ trials); these drivers save at every step instead, so the
    # tests can see each epoch and kill at a known state. What is restored, and how, is the same.
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "0"
    # As cluster.yaml's head: with gRPC's fork handlers on, the Ray Client proxy's fork of a client's own server
    # aborts about 1 time in 25 ("Check failed: next_worker->state == KICKED", ray-project/ray#63202), and the
    # connection then waits out the proxy's channel timeout before bench run retries (the Ray Client test took
    # 160 s instead of 35). Measured on this cluster: 4 of 70 connections failed with the handlers on, 0 of 120 off.
    env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
    if grpc_fork_handlers:
        env.pop("GRPC_ENABLE_FORK_SUPPORT")
    temps = [tempfile.mkdtemp(prefix="rt", dir="/tmp") for _ in range(2)]  # short: socket paths are limited
    taken: set[int] = set()
    procs: list[subprocess.Popen] = []
    try:
        head_ports, gcs = _node_ports(taken)
        dash, client = [p for p in free_ports(4) if p not in taken][:2]
        taken.update((dash, client))
        extra = (["--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--ray-client-server-port",
                  str(client)] if services else ["--include-dashboard", "false"])
        procs.append(_start_node(["--head", "--port", str(gcs), "--num-cpus", "1", "--num-gpus", "1",
                                  "--dashboard-port", str(dash), *extra, *head_ports],
                                 temp=temps[0], log=logs / "head.log", env=env))
        _wait_started(procs[0], logs / "head.log")
        if services:
            _wait_until(lambda: _answers(f"http://127.0.0.1:{dash}/api/version"), "the head's dashboard did not answer",
                        procs[0], logs / "head.log")
        worker_ports, _ = _node_ports(taken)
        procs.append(_start_node(["--address", f"127.0.0.1:{gcs}", "--num-cpus", "1", *worker_ports],
                                 temp=temps[1], log=logs / "worker.log", env=env, hidden=tuple(worker_hidden)))
        _wait_started(procs[1], logs / "worker.log")
        yield Cluster(address=f"127.0.0.1:{gcs}", env=env, logs=[logs / "head.log", logs / "worker.log"],
                      procs=procs, client_address=f"ray://127.0.0.1:{client}" if services else None,
                      dashboard=f"http://127.0.0.1:{dash}" if services else None,
                      hidden=tuple(Path(h) for h in worker_hidden))
    finally:
        for proc in reversed(procs):
            kill_tree(proc)
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)


class SharedCluster:
    """The two-node cluster (with services) that ``test_distributed.py`` and ``test_faults.py`` share, one after the
    other on one pytest-xdist worker: started by the first test that asks for it, started again when a node of it is
    gone (test_faults' lost-node test takes its worker node away), stopped by ``tests/conftest.py`` as soon as the
    next test is in neither module. One start and stop fewer than a cluster per module (about 10 CPU-seconds), and
    no idle nodes left behind. Its worker node cannot see one folder, ``hidden`` (empty when the cluster starts):
    what a test puts there is on the head's machine only (test_distributed's worker without the dataset)."""

    MODULES = ("tests/test_distributed.py", "tests/test_faults.py")

    def __init__(self):
        self.current: Cluster | None = None
        self.context = None
        self.started = 0

    def get(self, folder: Path) -> Cluster:
        """The running cluster, or a new one logging under ``folder``."""
        if self.current is None or any(proc.poll() is not None for proc in self.current.procs):
            self.close()
            self.started += 1
            logs, hidden = Path(folder) / f"ray-logs-{self.started}", Path(folder) / f"hidden-{self.started}"
            logs.mkdir(parents=True, exist_ok=True)
            hidden.mkdir(parents=True, exist_ok=True)
            self.context = two_node_cluster(logs, services=True, worker_hidden=(hidden,))
            self.current = self.context.__enter__()
        return self.current

    def close(self) -> None:
        if self.context is not None:
            context, self.context, self.current = self.context, None, None
            context.__exit__(None, None, None)


SHARED = SharedCluster()
