"""`bench perf`: quick sections write BENCHMARKS.md with finite ratios; `--only gpu` skips cleanly without
CUDA and keeps the other sections; unknown sections are refused."""

from __future__ import annotations

import json
import math
import re

import pytest

from bench.cli import main
from bench.perf import read_sections, section_data


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`bench perf --quick --only data,eval` on its own synthetic dataset and working folder, one torch
    thread (several threads crawl when the test machine is busy: their barriers wait on preempted threads)."""
    import torch

    d = tmp_path_factory.mktemp("perf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("BENCH_PERF_DIR", str(d / "work"))
    mp.setenv("BENCH_PERF_DATA", str(d / "synthetic"))
    out = d / "BENCHMARKS.md"
    try:
        code = main(["perf", "--quick", "--only", "data,eval", "--out", str(out)])
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return {"code": code, "out": out, "dir": d}


def test_quick_data_and_eval_write_finite_ratios(quick_run):
    assert quick_run["code"] == 0
    text = quick_run["out"].read_text()
    sections = read_sections(quick_run["out"])
    assert {"data", "eval"} <= set(sections)
    for name in ("data", "eval"):
        body = sections[name]
        assert "bench perf --quick --only data,eval" in body and "with 1 thread" in body and "Load average" in body
        ratios = section_data(body)["ratios"]
        assert ratios, f"section {name} recorded no ratio"
        for key, value in ratios.items():
            assert value is not None and math.isfinite(value) and value > 0, (name, key, value)
    assert "loader_vs_mobilenetv3_small_100" in section_data(sections["data"])["ratios"]
    assert "bootstrap_speedup" in section_data(sections["eval"])["ratios"]
    # Sections not run yet are placeholders; the summary lists the measured targets.
    assert "Not measured yet: run `bench perf --only overhead`" in text
    assert re.search(r"\| \[`data`\]\(#data\) \| loader / mobilenetv3_small_100", text)
    assert not list(quick_run["out"].parent.glob(".BENCHMARKS.md.tmp*"))  # written atomically


def test_gpu_skips_without_cuda_and_keeps_other_sections(quick_run, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: the gpu section would run")
    out = quick_run["out"]
    before = read_sections(out)
    capsys.readouterr()
    assert main(["perf", "--only", "gpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "CUDA" in printed
    after = read_sections(out)
    assert after["data"] == before["data"] and after["eval"] == before["eval"]  # kept verbatim
    assert "gpu" in after


def test_unknown_section_is_refused(tmp_path, capsys):
    assert main(["perf", "--only", "overhed", "--out", str(tmp_path / "B.md")]) == 2
    assert "did you mean 'overhead'" in capsys.readouterr().err
    assert not (tmp_path / "B.md").exists()


def test_section_data_round_trips():
    from bench.perf import Result, Target, render_section

    r = Result(tables=[("caption", [["a", "b"], ["1", "2"]])], ratios={"x": 2.5, "y": float("nan")},
               targets=[Target("x", 2.5, ">= 1", True)])
    text = render_section("data", r, stamp="Measured now.")
    data = section_data(text)
    assert data["ratios"] == {"x": 2.5, "y": None} and data["targets"][0]["met"] is True
    assert json.loads(json.dumps(data))  # plain JSON


def test_bench_perf_keeps_the_sections_that_benchmark_scripts_wrote(tmp_path):
    """`bench perf` rewrites its own sections and keeps, verbatim, what follows them (driver, cache, scale)."""
    from bench.perf import read_tail, write_benchmarks

    out = tmp_path / "BENCHMARKS.md"
    extra = "## Ray Tune's driver at 1,000+ trials (`benchmarks/driver_scale.py`)\n\n| trials | s |\n| 120 | 9 |\n"
    write_benchmarks(out, {}, extra)
    assert read_tail(out) == extra
    sections = read_sections(out)
    write_benchmarks(out, sections, read_tail(out))  # what `bench perf --only X` does with the file
    assert out.read_text().endswith(extra) and out.read_text().count("driver_scale.py") == 1
