"""The command line: fast help without torch or Ray, registry listings, one-line errors."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.cli import main


def run(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=timeout)


def test_help_is_fast_and_imports_neither_torch_nor_ray():
    code = ("import sys, time; t = time.perf_counter(); from bench.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'ray', 'timm', 'sklearn', 'pandas') if m in sys.modules]\n"
            "print(heavy, time.perf_counter() - t, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    heavy, seconds = r.stderr.strip().rsplit("] ", 1)
    assert heavy == "[", f"bench --help imported {heavy}]"
    assert float(seconds) < 2.0
    t0 = time.perf_counter()
    r = run("--help")
    assert r.returncode == 0 and "run" in r.stdout and "report" in r.stdout
    assert time.perf_counter() - t0 < 2.0 + 1.0  # interpreter start included


@pytest.mark.parametrize("what, expect", [("backbones", "densenet121"), ("strategies", "asl"),
                                          ("losses", "focal"), ("samplers", "ml_ros"), ("thresholds", "youden")])
def test_list_prints_one_line_per_entry_without_torch(what, expect):
    code = f"import sys; from bench.cli import main; main(['list', '{what}']); assert 'torch' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert any(line.split()[0] == expect for line in lines)
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # name and description


def test_list_counts_and_patterns(capsys):
    assert main(["list", "strategies"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) >= 10
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
