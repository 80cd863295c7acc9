"""``bench perf``: every measurement of BENCHMARKS.md, each a ratio against a baseline taken in the same run.

Sections (``--only`` names them, comma-separated):

========== ===============================================================================  ======================
name       what                                                                             module
========== ===============================================================================  ======================
overhead   a trial's training images/s through ``bench`` on Ray Tune vs a plain PyTorch loop  :mod:`bench.perf.train`
data       cache reads vs PNG decoding; the loader vs the smallest backbone's training        :mod:`bench.perf.data`
grid       the demo grid end to end; trials per hour with 1 vs 2 concurrent trials          :mod:`bench.perf.grid`
cost       GPU-hours (or CPU-hours) of grids/full.yaml from measured per-image costs         :mod:`bench.perf.cost`
gpu        benchmarks/gpu_check.py on a CUDA machine (skipped, with the reason, elsewhere)   :mod:`bench.perf.gpu`
eval       metrics / bootstrap vs naive sklearn loops; batched vs per-pair Grad-CAM          :mod:`bench.perf.eval`
========== ===============================================================================  ======================

BENCHMARKS.md is rewritten atomically. Every section carries its own date, command and machine line;
a section that was not run this time is kept verbatim from the previous file.

Working files (run folders, the synthetic dataset when ``BENCH_PERF_DATA`` is set) go to
``$BENCH_PERF_DIR`` (default ``runs/perf`` in the repository); the demo grid's synthetic dataset
(``data/synthetic``) is shared with ``make demo``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import time
from importlib import import_module
from pathlib import Path
from typing import Callable

from bench.perf.common import (  # noqa: F401  (the sections' helpers, re-exported)
    REPO, Context, Result, Target, best_of, fmt, machine, markdown_table, random_memmap, ratio, torch_threads)

log = logging.getLogger(__name__)

SECTIONS = {  # name -> (title, "module:function")
    "overhead": ("Harness overhead: a trial on Ray Tune vs plain PyTorch", "bench.perf.train:run_overhead"),
    "data": ("Data path: cache vs PNG decoding, loader vs training", "bench.perf.data:run_data"),
    "grid": ("Grid wall-clock and concurrency", "bench.perf.grid:run_grid_section"),
    "cost": ("Cost model of the full NIH grid (grids/full.yaml)", "bench.perf.cost:run_cost"),
    "gpu": ("GPU path (benchmarks/gpu_check.py)", "bench.perf.gpu:run_gpu"),
    "eval": ("Evaluation and CAM throughput", "bench.perf.eval:run_eval"),
}
BEGIN, END = "<!-- perf:begin {} -->", "<!-- perf:end {} -->"
_SECTION_RE = re.compile(r"<!-- perf:begin (\w+) -->\n(.*?)<!-- perf:end \1 -->", re.S)
_DATA_RE = re.compile(r"<!-- perf:data (.*?) -->")


def render_section(name: str, result: Result, *, stamp: str) -> str:
    """A section's markdown, between its markers, with its own measurement line."""
    title = SECTIONS[name][0]
    parts = [BEGIN.format(name), f"## {title} (`{name}`)\n", stamp + "\n"]
    if result.skipped:
        parts.append(f"Not measured: {result.skipped}\n")
    for caption, rows in result.tables:
        if caption:
            parts.append(caption + "\n")
        parts.append(markdown_table(rows) + "\n")
    parts += [n + "\n" for n in result.notes]
    data = {"ratios": {k: (v if math.isfinite(v) else None) for k, v in result.ratios.items()},
            "targets": [dataclasses.asdict(t) for t in result.targets], "skipped": result.skipped}
    parts.append(f"<!-- perf:data {json.dumps(data, default=float)} -->")
    parts.append(END.format(name))
    return "\n".join(parts) + "\n"


def read_sections(path: Path) -> dict[str, str]:
    """The sections of an existing BENCHMARKS.md, verbatim (markers included), by name."""
    if not path.is_file():
        return {}
    return {m.group(1): m.group(0) + "\n" for m in _SECTION_RE.finditer(path.read_text())}


def read_tail(path: Path) -> str:
    """What an existing BENCHMARKS.md holds after its last ``bench perf`` section: the sections that
    ``benchmarks/*.py`` scripts measure on their own (driver, cache, report scale), kept verbatim."""
    if not path.is_file():
        return ""
    text = path.read_text()
    ends = list(re.finditer(r"<!-- perf:end \w+ -->\n", text))
    return text[ends[-1].end():].lstrip("\n") if ends else ""


def section_data(text: str) -> dict:
    m = _DATA_RE.search(text)
    return json.loads(m.group(1)) if m else {}


def summary_table(sections: dict[str, str]) -> str:
    rows = [["section", "figure", "value", "target", "met"]]
    for name in SECTIONS:
        for t in section_data(sections.get(name, "")).get("targets", []):
            met = {True: "yes", False: "**no**", None: ""}[t.get("met")]
            rows.append([f"[`{name}`](#{name})", t["what"], fmt(t["value"]), t.get("target", ""), met])
    return markdown_table(rows) if len(rows) > 1 else "(no section measured yet)"


def write_benchmarks(path: Path, sections: dict[str, str], tail: str = "") -> None:
    """Write BENCHMARKS.md atomically from the sections' markdown (missing ones get a placeholder), then
    ``tail`` (:func:`read_tail`: the script-measured sections after them, kept as they are)."""
    out = ["# Benchmarks\n",
           "Every figure is a ratio measured in one run against a baseline taken in the same run, with the "
           "command that produced it and the machine it ran on (each section has its own line: sections are "
           "regenerated independently). Regenerate them all with `bench perf` (= `make perf`), one section with "
           "`bench perf --only NAME`; `--quick` takes smaller measurements. How each is measured: "
           "[benchmarks/README.md](benchmarks/README.md).\n",
           "## Headline figures against their targets\n", summary_table(sections) + "\n"]
    for name, (title, _) in SECTIONS.items():
        out.append(f'<a id="{name}"></a>\n')
        out.append(sections.get(name) or (BEGIN.format(name) + f"\n## {title} (`{name}`)\n\nNot measured yet: "
                                          f"run `bench perf --only {name}`.\n{END.format(name)}\n"))
    if tail:
        out.append(tail)
    from bench.runfolder import write_atomic

    text = "\n".join(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def parse_only(only: str | None) -> list[str]:
    from bench.errors import BenchError, did_you_mean

    if not only:
        return list(SECTIONS)
    names = [s.strip() for s in only.split(",") if s.strip()]
    for n in names:
        if n not in SECTIONS:
            raise BenchError(f"--only: unknown section {n!r}{did_you_mean(n, SECTIONS)}; choose from "
                             f"{', '.join(SECTIONS)}")
    return [n for n in SECTIONS if n in names]  # in the file's order


def stamp_line(info: dict, *, command: str, threads: int, load: tuple[float, float], quick: bool,
               seconds: float) -> str:
    ray_v = f", ray {info['ray']}" if info.get("ray") else ""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return (f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `{command}`{' (quick: smaller measurements)' if quick else ''}"
            f" on {info['cpu']}, {info['cores']} cores{gpu}; torch {info['torch']} with {threads} thread{'s' if threads != 1 else ''}{ray_v}, "
            f"Python {info['python']}. Load average {load[0]:.2f} before, {load[1]:.2f} after; took {seconds:.0f}s. "
            f"This section alone: `bench perf --only {{name}}{' --quick' if quick else ''}`.")


def main(*, only: str | None = None, quick: bool = False, out: str | os.PathLike | None = None,
         say: Callable[[str], None]) -> int:
    """Run the sections named by ``only`` (comma-separated; default all), with smaller measurements when
    ``quick``, and regenerate ``out`` (default BENCHMARKS.md).

    Returns 0, or 1 when a section failed (its error is printed and the previous section is kept).
    """
    import torch

    names = parse_only(only)
    quick = bool(quick)
    out = Path(out or "BENCHMARKS.md")
    threads = max(1, torch.get_num_threads())
    command = "bench perf" + (" --quick" if quick else "") + (f" --only {','.join(names)}" if only else "") + \
        (f" --out {out}" if str(out) != "BENCHMARKS.md" else "")
    work = Path(os.environ.get("BENCH_PERF_DIR") or REPO / "runs" / "perf").resolve()
    data_root = Path(os.environ.get("BENCH_PERF_DATA") or REPO / "data" / "synthetic").resolve()
    ctx = Context(quick=quick, say=say, work=work, data_root=data_root, threads=threads, command=command)
    info = machine()
    say(f"bench perf: {', '.join(names)}{' (quick)' if quick else ''} on {info['cpu']}, {info['cores']} cores, "
        f"torch {info['torch']} ({threads} threads); load average {os.getloadavg()[0]:.2f}")
    sections, tail = read_sections(out), read_tail(out)
    failed = []
    for name in names:
        module, func = SECTIONS[name][1].split(":")
        say(f"\n== {name}: {SECTIONS[name][0]}")
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        try:
            result: Result = getattr(import_module(module), func)(ctx)
        except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
            log.debug("section %s failed", name, exc_info=True)
            say(f"{name}: FAILED: {type(exc).__name__}: {exc} (the previous section is kept)")
            failed.append(name)
            continue
        finally:
            torch.set_num_threads(threads)
        if result.skipped:
            say(f"{name}: skipped: {result.skipped}")
            if result.keep_previous and name in sections:
                continue
        stamp = result.stamp or stamp_line(info, command=command, threads=threads, load=(load0, os.getloadavg()[0]),
                                           quick=quick, seconds=time.perf_counter() - t0).replace("{name}", name)
        sections[name] = render_section(name, result, stamp=stamp)
        for caption, rows in result.tables:
            say((caption + "\n" if caption else "") + markdown_table(rows))
        for t in result.targets:
            say(f"  {t.what}: {fmt(t.value)}" + (f" (target {t.target}: {'met' if t.met else 'MISSED'})"
                                                   if t.target else ""))
        write_benchmarks(out, sections, tail)  # after every section: an interrupted run keeps what it measured
    write_benchmarks(out, sections, tail)
    say(f"\nwrote {out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
