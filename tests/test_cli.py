"""The command line: help without torch or Ray, registry listings, one-line errors.

How fast ``bench --help`` starts is measured by ``bench perf`` (BENCHMARKS.md), not asserted here: what
makes it fast, and what this tests, is that it imports none of the heavy packages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main


def run(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=timeout)


def test_help_imports_neither_torch_nor_ray():
    code = ("import sys; from bench.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'ray', 'timm', 'sklearn', 'pandas') if m in sys.modules], file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "[]", f"bench --help imported {r.stderr.strip()}"
    r = run("--help")
    assert r.returncode == 0 and "run" in r.stdout and "report" in r.stdout


@pytest.mark.parametrize("what, expect", [("backbones", "densenet121"), ("strategies", "asl"),
                                          ("losses", "focal"), ("samplers", "ml_ros"), ("thresholds", "youden"),
                                          ("datasets", "csv"), ("cams", "gradcam++")])
def test_list_prints_one_line_per_entry_without_torch(what, expect):
    code = f"import sys; from bench.cli import main; main(['list', '{what}']); assert 'torch' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert any(line.split()[0] == expect for line in lines)
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # name and description


def test_list_counts_and_patterns(capsys):
    import strategies

    assert main(["list", "strategies"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert listed == [e.name for e in strategies.list_strategies()]  # every registered preset, once, in order
    built_in = [e.name for e in strategies.STRATEGIES.list() if "file" not in e.meta]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert len(built_in) == int(re.search(r"\((\d+) presets:", readme).group(1))  # the README's count
    assert main(["list", "backbones", "resnet*"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert names == ["resnet18", "resnet34", "resnet50"]  # natural sort
    assert main(["list", "strategies", "nothing*"]) == 2
    assert "no strategies match" in capsys.readouterr().err


def test_unknown_command_and_missing_grid():
    r = run("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run("run", "--grid", "no/such/grid.yaml")
    assert r.returncode == 2
    assert r.stderr.strip() == "error: no/such/grid.yaml: grid file not found"


def test_data_synth_writes_nih_layout(tmp_path):
    r = run("-q", "data", "synth", "--out", str(tmp_path / "s"), "--n", "60", "--size", "32")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s" / "Data_Entry_2017.csv").is_file() and (tmp_path / "s" / "BBox_List_2017.csv").is_file()
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 60
    r = run("-q", "data", "synth", "--out", str(tmp_path / "s"), "--n", "60")
    assert r.returncode == 2 and "not empty" in r.stderr


def test_list_strategies_registers_the_presets_of_bench_presets(tmp_path):
    """``$BENCH_PRESETS`` folders add their YAML presets to ``bench list strategies`` (one more line, described)."""
    base = run("list", "strategies")
    assert base.returncode == 0, base.stderr
    (tmp_path / "focal_mine.yaml").write_text("name: focal_mine\ndescription: my focal preset\nloss: focal\n"
                                              "sampler: none\nthreshold: f1\n")
    env = {**os.environ, "BENCH_PRESETS": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "bench", "list", "strategies"], capture_output=True, text=True,
                       timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(base.stdout.strip().splitlines()) + 1
    assert [line.split(None, 1) for line in lines if line.startswith("focal_mine")] == [["focal_mine",
                                                                                       "my focal preset"]]


def test_report_options_reach_the_report(tmp_path, capsys):
    """``bench report --bootstrap N --no-html --top K``: N replicates (the intervals of build_report(n_boot=N),
    not the grid's), no page, K rows printed."""
    import pandas as pd
    from test_html import make_fake_run

    from reports.leaderboard import build_report

    run = make_fake_run(tmp_path / "cli", n_boot=40)
    ref = build_report(make_fake_run(tmp_path / "ref", n_boot=40), n_boot=25, html=False).leaderboard
    assert main(["report", str(run), "--bootstrap", "25", "--no-html", "--top", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    table = printed[:printed.index(next(line for line in printed if line.startswith("wrote ")))]
    assert len(table) == 1 + 3 and table[0].split()[:2] == ["backbone", "strategy"]
    assert not (run / "leaderboard.html").exists() and not any("leaderboard.html" in line for line in printed)
    board = pd.read_csv(run / "leaderboard.csv")
    assert len(board) > 3
    # macro AP's interval comes from the bootstrap replicates (macro AUC's from the jackknife, which --bootstrap
    # does not change)
    for col in ("macro_ap_ci_low", "macro_ap_ci_high"):
        assert board[col].to_numpy() == pytest.approx(ref[col].to_numpy(), abs=1e-6), col  # the CSV keeps 6 places
    other = build_report(make_fake_run(tmp_path / "other", n_boot=40), n_boot=40, html=False).leaderboard
    assert not (other["macro_ap_ci_low"].to_numpy() == pytest.approx(board["macro_ap_ci_low"].to_numpy(), abs=1e-6))
