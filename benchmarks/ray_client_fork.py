"""How often Ray Client's first handshake fails because the head's proxy could not start the client's own server,
with gRPC's fork handlers on (Ray's default) and off (``GRPC_ENABLE_FORK_SUPPORT=0``, as cluster.yaml's head).

Every ``ray.init("ray://HEAD:PORT")`` makes the head's Ray Client proxy start a server for that client with
``subprocess.Popen(..., preexec_fn=...)``, i.e. a ``fork()`` of a process full of gRPC threads. With gRPC's fork
handlers on, the child sometimes aborts before it reaches ``exec`` ("Check failed: next_worker->state == KICKED"
in the proxy's ``ray_client_server.err``, ray-project/ray#63202); the client is told only after the proxy's channel
timeout (``RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S``, 30 s by default), and ``bench run`` then retries.

The measurement: per setting, a small cluster on this machine's loopback as ``ray up`` makes one (a head with
the dashboard and Ray Client, and a worker node, each a ``ray start --block`` with ports of its own), then
``--connections`` clients one after another, each a fresh Python process that connects and disconnects. A
failure is a client that could not connect; the proxy's log counts the servers it could not start. The proxy's
channel timeout is set to 10 s here (a failure then costs about 30 s). ``--burn`` keeps one more
process busy on a core meanwhile (a loaded machine, as under the test suite).

Usage::

    .venv/bin/python benchmarks/ray_client_fork.py --json                      # 60 connections per setting
    .venv/bin/python benchmarks/ray_client_fork.py --connections 120 --burn --only off
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CONNECT = ("import ray, sys; ray.init(address=sys.argv[1], logging_level=40); "
           "assert ray.cluster_resources(); ray.shutdown()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upper_95(failures: int, n: int) -> float:
    """One-sided 95 % upper bound of a failure rate (exact binomial; 1 - 0.05**(1/n) when none failed)."""
    if failures >= n:
        return 1.0
    lo, hi = failures / n, 1.0
    for _ in range(60):  # bisection on P(X <= failures | p) = 0.05
        mid = (lo + hi) / 2
        tail = sum(math.comb(n, k) * mid ** k * (1 - mid) ** (n - k) for k in range(failures + 1))
        lo, hi = (mid, hi) if tail > 0.05 else (lo, mid)
    return hi


def burn(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        sum(i * i for i in range(10_000))


def start_node(args: list[str], temp: str, env: dict) -> subprocess.Popen:
    """``ray start --block ...`` in a session of its own, logging to TEMP/node.log, once Ray says it started."""
    log = Path(temp) / "node.log"
    cmd = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", "--temp-dir", temp,
           "--node-ip-address", "127.0.0.1", "--min-worker-port", "0", "--max-worker-port", "0",
           "--dashboard-agent-listen-port", str(free_port()), *args]
    with open(log, "wb") as out:
        node = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if node.poll() is not None or time.time() > deadline:
            stop(node)
            raise SystemExit(f"error: `ray start` did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    return node


def stop(node: subprocess.Popen) -> None:
    """Stops one node (`ray stop` would stop every Ray instance of the machine)."""
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
    try:
        node.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


def measure(fork_support: bool, connections: int) -> dict:
    """A head (1 CPU, the dashboard and its Jobs API, Ray Client) and a worker node (1 CPU), as a small `ray up`
    cluster, on this machine's loopback; ``connections`` clients one after another."""
    temps = [tempfile.mkdtemp(prefix="rcf", dir="/tmp") for _ in range(2)]  # short: Ray's socket paths are limited
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "10",
           # Ray 2.60 refuses a second node on one machine without it (the nodes then advertise this host's own
           # interface address for 127.0.0.1)
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
    env.pop("RAY_ADDRESS", None)
    if fork_support:
        env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    else:
        env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
    gcs, client = free_port(), free_port()
    nodes = [start_node(["--head", "--port", str(gcs), "--num-cpus", "1", "--include-dashboard", "true",
                         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(free_port()),
                         "--ray-client-server-port", str(client)], temps[0], env)]
    failed, seconds = [], []
    try:
        nodes.append(start_node(["--address", f"127.0.0.1:{gcs}", "--num-cpus", "1"], temps[1], env))
        for i in range(connections):
            t0 = time.time()
            proc = subprocess.run([sys.executable, "-c", CONNECT, f"ray://127.0.0.1:{client}"], env=env,
                                  capture_output=True, text=True, timeout=300)
            seconds.append(time.time() - t0)
            if proc.returncode:
                failed.append(i)
                last = (proc.stderr.strip().splitlines() or [""])[-1]
                print(f"  connection {i + 1}: failed after {seconds[-1]:.0f} s: {last[:160]}", file=sys.stderr)
            if (i + 1) % 10 == 0:
                print(f"  fork handlers {'on' if fork_support else 'off'}: {i + 1}/{connections} connections, "
                      f"{len(failed)} failed", file=sys.stderr, flush=True)
        logs = sorted(Path(temps[0]).glob("session_*/logs/ray_client_server.err"))
        # the proxy's own record of each server it could not start (the child aborted, crashed or was a zombie)
        aborts = sum(p.read_text(errors="replace").count("SpecificServer startup failed") for p in logs)
    finally:
        for node in reversed(nodes):
            stop(node)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)
    ok = [s for i, s in enumerate(seconds) if i not in failed]
    return {"fork_handlers": "on" if fork_support else "off", "connections": connections,
            "failed": len(failed), "failure_rate": len(failed) / connections,
            "failure_rate_upper_95": upper_95(len(failed), connections), "startup_failures_in_proxy_log": aborts,
            "median_connect_s": sorted(ok)[len(ok) // 2] if ok else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=60, help="clients per setting (default 60)")
    ap.add_argument("--only", choices=("on", "off"), help="one setting only")
    ap.add_argument("--burn", action="store_true", help="keep one core busy meanwhile")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `kill` stops the nodes too (the finally blocks)
    if args.connections < 1:
        ap.error(f"--connections {args.connections}: must be at least 1")
    burner = None
    if args.burn:
        burner = multiprocessing.get_context("spawn").Process(target=burn, args=(24 * 3600,), daemon=True)
        burner.start()
    try:
        rows = [measure(setting == "on", args.connections) for setting in ("on", "off")
                if args.only in (None, setting)]
    finally:
        if burner is not None:
            burner.terminate()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"fork handlers {r['fork_handlers']}: {r['failed']} of {r['connections']} connections failed "
                  f"(upper 95 % bound {r['failure_rate_upper_95']:.1%}), {r['startup_failures_in_proxy_log']} "
                  f"startup failures in the proxy's log, median connection {r['median_connect_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
