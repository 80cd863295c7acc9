"""What every section of ``bench perf`` shares: the repository's path, the context a section runs in, its
result, and the small measuring and formatting helpers. The sections (:mod:`bench.perf.train`, ``data``,
``grid``, ``cost``, ``gpu``, ``eval``) import from here; :mod:`bench.perf` runs them and writes BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Target:
    """One headline figure against its target (``met`` is None when there is no target)."""

    what: str
    value: float
    target: str = ""
    met: bool | None = None


@dataclass
class Result:
    """What a section measured: tables (first row = header), notes (markdown), ratios and targets."""

    tables: list[tuple[str, list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    skipped: str | None = None      # the one-line reason when the section measured nothing
    keep_previous: bool = False     # skipped: keep the previous file's section as it is
    stamp: str | None = None        # the measurement line, when not this run on this machine (a results file)


@dataclass
class Context:
    """What every section gets: the mode, paths, threads, and the output function."""

    quick: bool
    say: Callable[[str], None]
    work: Path
    data_root: Path
    threads: int
    command: str

    def section_dir(self, name: str) -> Path:
        """A fresh working folder for one section (the previous one is removed)."""
        import shutil

        d = self.work / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def grid(self, **changes):
        """The demo grid (grids/demo.yaml) with its dataset at ``data_root`` and ``changes`` applied
        (top-level keys replace; ``train`` / ``resources`` / ``localisation`` dicts update)."""
        from bench.config import parse_grid, resolve_paths
        from bench.yaml_lines import read_yaml

        data, _ = read_yaml(REPO / "grids" / "demo.yaml")
        data["dataset"]["root"] = str(self.data_root)
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return resolve_paths(parse_grid(data, source="grids/demo.yaml (bench perf)"))


def machine() -> dict:
    """CPU model, cores, versions, GPU (when CUDA sees one)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
    try:
        from importlib.metadata import version

        info["ray"] = version("ray")
    except Exception:  # noqa: BLE001 - Ray is optional here
        info["ray"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def fmt(x: float, digits: int = 3) -> str:
    """A number for a table: 3 significant digits, thousands separators, '-' for missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def best_of(fn: Callable, repeats: int) -> tuple[float, object]:
    """(the shortest of ``repeats`` timed calls of ``fn()`` in seconds, the last call's result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to ``n`` for the block, then restored."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def random_memmap(path: Path, n: int, size: int, seed: int = 0):
    """``n`` random uint8 ``size`` x ``size`` images written to the .npy ``path`` (in chunks) and opened
    memory-mapped read-only, like the image cache."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size))
    for i in range(0, n, 256):
        arr[i:i + 256] = rng.integers(0, 256, arr[i:i + 256].shape, dtype=np.uint8)
    arr.flush()
    del arr
    return np.load(path, mmap_mode="r")


def ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")


def markdown_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(lines)
