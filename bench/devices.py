"""Which device a trial trains on, checked loudly: a trial that asks for a GPU never trains on a CPU.

Two checks, the same diagnosis:

* **Before scheduling** (:func:`check_gpu_nodes`, called by ``bench run`` once Ray is up): one small Ray task
  per GPU node the cluster has now asks torch there whether it sees CUDA; if any node's torch cannot, the run
  stops before its first trial with one line per node (exit 2). An autoscaling cluster may have no GPU node yet:
  then nothing is probed, and the trials check themselves.
* **In each trial** (:func:`bench.engine.Device.resolve`): a trial whose ``resources.gpu`` is above 0 and
  whose torch sees no CUDA device fails at once with :class:`DeviceUnavailable`, whose one-line message names
  the node, the GPUs Ray assigned it (``CUDA_VISIBLE_DEVICES``), the NVIDIA driver's version, torch's version
  and CUDA build, and what to do.

The diagnosis reads the driver version from ``/proc/driver/nvidia/version`` (no subprocess, no NVML).

The project's tests schedule trials on fake GPUs (a Ray node started with ``--num-gpus 1`` on a machine
without one) to test fractional packing; they set the test-only environment variable named by
:data:`TEST_SWITCH` on the driver, which carries it to the trials. Nothing in a message mentions it.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

TEST_SWITCH = "BENCH_TEST_FAKE_GPUS"
DRIVER_FILE = Path("/proc/driver/nvidia/version")
# The oldest NVIDIA Linux driver each CUDA major version of torch's wheels runs on (CUDA's minor-version
# compatibility: any 12.x runtime runs on a 12.0-era driver, 13.x on a 13.0-era one).
MIN_DRIVER = {12: "525.60.13", 13: "580.65.06"}


class DeviceUnavailable(RuntimeError):
    """A trial asked for a GPU that torch on its node cannot use; the message says why and what to do."""


def fake_gpus_for_tests() -> bool:
    """Whether the test-only switch is set in this process's environment."""
    return os.environ.get(TEST_SWITCH) == "1"


def nvidia_driver(path: Path = DRIVER_FILE) -> str | None:
    """The loaded NVIDIA kernel driver's version (e.g. ``580.65.06``), or None when there is none.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     f = Path(d) / "version"
    ...     _ = f.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build\\n")
    ...     print(nvidia_driver(f), nvidia_driver(Path(d) / "missing"))
    580.65.06 None
    """
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"Kernel Module\b.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    return m.group(1) if m else None


def cuda_report() -> dict:
    """What torch on this node can use: host, Ray's assigned GPUs, driver, torch and its CUDA build."""
    import torch

    available = bool(torch.cuda.is_available())
    return {"host": platform.node(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "driver": nvidia_driver(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cuda_available": available, "devices": torch.cuda.device_count() if available else 0}


def _older(version: str, minimum: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v))

    return key(version) < key(minimum)


def advice(report: dict) -> str:
    """What to do about a node whose torch sees no CUDA device.

    >>> advice({"torch_cuda": None, "driver": "580.65.06"})[:42]
    'install a CUDA build of torch on the nodes'
    >>> advice({"torch_cuda": "13.0", "driver": "535.104.05"})[:40]
    "the driver is older than torch's CUDA 13"
    """
    gpu0 = "or set resources.gpu: 0 to train on CPUs"
    cuda, driver = report.get("torch_cuda"), report.get("driver")
    if not cuda:
        return ("install a CUDA build of torch on the nodes (PyPI's default build is CUDA 13, for drivers "
                f">= {MIN_DRIVER[13]}; https://download.pytorch.org/whl/cu126 has CUDA 12.6 builds for drivers >= "
                f"{MIN_DRIVER[12]}), {gpu0}")
    if not driver:
        return f"the node has no NVIDIA driver loaded: use a GPU image or AMI with the driver installed, {gpu0}"
    major = int(str(cuda).split(".")[0])
    need = MIN_DRIVER.get(major)
    if need and _older(driver, need):
        return (f"the driver is older than torch's CUDA {major} needs (>= {need}): install a newer driver, or a torch "
                f"build for CUDA 12 (https://download.pytorch.org/whl/cu126, drivers >= {MIN_DRIVER[12]}), {gpu0}")
    return f"check that the node's GPUs are visible to the container/process (nvidia-smi on the node), {gpu0}"


def describe(report: dict) -> str:
    """One clause naming what torch on a node sees, e.g. for an error line."""
    assigned = report.get("cuda_visible_devices")
    return (f"node {report.get('host')}: torch sees no CUDA device (Ray assigned GPUs: "
            f"{assigned if assigned not in (None, '') else 'none'}; NVIDIA driver: "
            f"{report.get('driver') or 'none found'}; torch {report.get('torch')} built for CUDA "
            f"{report.get('torch_cuda') or 'none (a CPU-only build)'})")


def no_gpu_message(gpu: float, report: dict) -> str:
    """The one-line error of a trial that asked for ``gpu`` and cannot have it."""
    return f"resources.gpu: {gpu:g} asked for a GPU, but on {describe(report)}; {advice(report)}"


def check_gpu_nodes(gpu: float, *, local: bool, say=lambda s: None, timeout: float = 180.0) -> list[dict]:
    """Before any trial: ask torch on every GPU node the Ray cluster has now whether it sees CUDA.

    Returns the nodes' reports. Raises :class:`bench.errors.BenchError` naming every node whose torch
    cannot use its GPUs, and, on this machine's own Ray instance (``local``: no autoscaler will add a node),
    when no node has GPUs or none has ``gpu`` of them (Ray would wait for them forever). Nothing is probed
    when ``gpu`` is 0, when a cluster has no GPU node yet (its autoscaler adds them when trials ask; each
    trial then checks itself), or under the test-only switch.
    """
    if gpu <= 0:
        return []
    if fake_gpus_for_tests():
        say("GPU check skipped (test-only fake GPUs)")
        return []
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from bench.errors import BenchError

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0]
    largest = max((n["Resources"]["GPU"] for n in nodes), default=0)
    if local and largest < gpu:
        seen = "no GPU" if not nodes else f"at most {largest:g} GPU(s) per node"
        raise BenchError(f"resources.gpu: {gpu:g} asks for GPUs, but this machine's Ray instance has {seen} "
                         f"({describe(cuda_report())}); set resources.gpu: 0 to train on CPUs, or run on a cluster "
                         "with GPU nodes (bench run --address HEAD:6379)")
    if not nodes:
        say("no GPU node in the cluster yet; its autoscaler adds them as trials ask, and each trial checks its GPU "
            "when it starts")
        return []
    probe = ray.remote(num_cpus=0)(cuda_report)
    refs = [probe.options(num_gpus=min(float(gpu), float(n["Resources"]["GPU"])),
                          scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    reports = ray.get(ready)
    if pending:  # its GPUs are busy (another job): its trials will check themselves
        say(f"GPU check: {len(pending)} node(s) did not answer within {timeout:.0f} s (busy GPUs?); their trials "
            "check their GPU when they start")
    bad = [r for r in reports if not r["cuda_available"]]
    if bad:
        raise BenchError(f"resources.gpu: {gpu:g} asked for GPUs, but on "
                         + "; ".join(describe(r) for r in bad) + f"; {advice(bad[0])}")
    for r in reports:
        say(f"GPU check: {r['host']}: {r['devices']} CUDA device(s), driver {r['driver'] or '?'}, torch {r['torch']} "
            f"(CUDA {r['torch_cuda']})")
    return reports
