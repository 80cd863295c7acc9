"""How often Ray Client's first handshake fails because the head's proxy could not start the client's own server,
with gRPC's fork handlers on (Ray's default) and off (``GRPC_ENABLE_FORK_SUPPORT=0``, as cluster.yaml's head).

Every ``ray.init("ray://HEAD:PORT")`` makes the head's Ray Client proxy start a server for that client with
``subprocess.Popen(..., preexec_fn=...)``, i.e. a ``fork()`` of a process full of gRPC threads. With gRPC's fork
handlers on, the child sometimes aborts before it reaches ``exec`` ("Check failed: next_worker->state == KICKED"
in the proxy's ``ray_client_server.err``, ray-project/ray#63202); the client is told only after the proxy's channel
timeout (``RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S``, 30 s by default), and ``bench run`` then retries.

The measurement: per setting, the test suite's two-node cluster on this machine's loopback (``tests/_cluster.py``:
a head with the dashboard and Ray Client, as a ``ray up`` head serves them, and a worker node), then
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
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy.stats import beta

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test suite's two-node cluster: the one the numbers are for

from _cluster import two_node_cluster  # noqa: E402

CONNECT = ("import ray, sys; ray.init(address=sys.argv[1], logging_level=40); "
           "assert ray.cluster_resources(); ray.shutdown()")


def upper_95(failures: int, n: int) -> float:
    """One-sided 95 % upper bound of a failure rate (Clopper-Pearson; 1 - 0.05**(1/n) when none failed).

    >>> round(upper_95(0, 60), 4), round(1 - 0.05 ** (1 / 60), 4)
    (0.0487, 0.0487)
    """
    return 1.0 if failures >= n else float(beta.ppf(0.95, failures + 1, n - failures))


def burn(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        sum(i * i for i in range(10_000))


def measure(fork_support: bool, connections: int) -> dict:
    """The test suite's two-node cluster (tests/_cluster.py, with Ray Client and the Jobs API, as a `ray up` head
    serves them), ``connections`` clients one after another."""
    logs = Path(tempfile.mkdtemp(prefix="rcf", dir="/tmp"))
    failed, seconds = [], []
    try:
        with two_node_cluster(logs, services=True, grpc_fork_handlers=fork_support,
                              extra_env={"RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "10"}) as cluster:
            for i in range(connections):
                t0 = time.time()
                proc = subprocess.run([sys.executable, "-c", CONNECT, cluster.client_address], env=cluster.env,
                                      capture_output=True, text=True, timeout=300)
                seconds.append(time.time() - t0)
                if proc.returncode:
                    failed.append(i)
                    last = (proc.stderr.strip().splitlines() or [""])[-1]
                    print(f"  connection {i + 1}: failed after {seconds[-1]:.0f} s: {last[:160]}", file=sys.stderr)
                if (i + 1) % 10 == 0:
                    print(f"  fork handlers {'on' if fork_support else 'off'}: {i + 1}/{connections} connections, "
                          f"{len(failed)} failed", file=sys.stderr, flush=True)
            # the proxy's own record of each server it could not start (the child aborted, crashed or was a zombie)
            head = cluster.procs[0].args[cluster.procs[0].args.index("--temp-dir") + 1]
            aborts = sum(p.read_text(errors="replace").count("SpecificServer startup failed")
                         for p in Path(head).glob("session_*/logs/ray_client_server.err"))
    finally:
        shutil.rmtree(logs, ignore_errors=True)
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
