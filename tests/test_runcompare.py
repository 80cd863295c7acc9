"""``bench compare``: runs side by side, checked against independent pandas computations over the runs' files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from test_html import make_fake_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from reports.leaderboard import build_report

    tmp = tmp_path_factory.mktemp("compare")
    small = dict(backbones=("resnet18",), strategies=("bce", "focal"), n_boot=30, localisation=False)
    a = make_fake_run(tmp / "a", name="a", seed=0, **small)
    b = make_fake_run(tmp / "b", name="b", seed=1, **small)       # other predictions of the same split
    c = make_fake_run(tmp / "c", name="c", seed=2, kind="synthetic", **small)
    split = json.loads((c / "split.json").read_text())
    (c / "split.json").write_text(json.dumps({**split, "hash": "0" * 64}))  # another dataset: nothing pairs
    for r in (a, b, c):
        build_report(r, html=False)
    return {"a": a, "b": b, "c": c, "tmp": tmp}


def _fold_means(run, metric):
    t = pd.read_csv(run / "trials.csv")
    return t.groupby(["backbone", "strategy", "fold"])[metric].mean()


def test_side_by_side_values_and_paired_differences_match_the_runs_files(runs, capsys):
    out = runs["tmp"] / "cmp"
    assert main(["compare", str(runs["a"]), str(runs["b"]), str(runs["c"]), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "c: not paired with a (different split): intervals only, no test" in said
    values = pd.read_csv(out / "comparison.csv")
    for name in ("a", "b", "c"):
        board = pd.read_csv(runs[name] / "leaderboard.csv").set_index(["backbone", "strategy"])
        mine = values[(values.run == name) & (values.metric == "macro_auc")].set_index(["backbone", "strategy"])
        assert mine["value"].to_dict() == pytest.approx(board["macro_auc"].to_dict(), abs=1e-6)
        assert mine["ci_low"].to_dict() == pytest.approx(board["macro_auc_ci_low"].to_dict(), abs=1e-6)
    tests = pd.read_csv(out / "comparison_tests.csv")
    assert set(tests["metric"]) == {"macro_auc", "macro_ap", "macro_f1"} and len(tests) == 2 * 2 * 3
    paired = tests[tests.run == "b"].set_index(["strategy", "metric"])
    for s in ("bce", "focal"):
        for m in ("macro_auc", "macro_ap", "macro_f1"):
            want = (_fold_means(runs["b"], m) - _fold_means(runs["a"], m)).loc[("resnet18", s)].mean()
            assert paired.loc[(s, m), "mean_diff"] == pytest.approx(want, abs=1e-6)
            assert paired.loc[(s, m), "paired"] and 0 < paired.loc[(s, m), "p_t"] <= 1
            assert paired.loc[(s, m), "ci_low"] <= paired.loc[(s, m), "mean_diff"] + 1e-9 or m == "macro_ap"
    other = tests[tests.run == "c"]
    assert (~other["paired"]).all() and other["p_t"].isna().all() and other["p_boot"].isna().all()
    assert (other["verdict"] == "not paired").all() and other["ci_low"].notna().all()
    assert other["note"].str.contains("split hashes differ").all()
    page = (out / "comparison.html").read_text()
    assert "Not paired:" in page and "<script src" not in page and page.count("Plotly") > 0
    assert [r["run"] for r in json.loads((out / "comparison.json").read_text())] == ["a", "b", "c"]


def test_a_run_against_itself_differs_by_nothing(runs):
    from reports.runcompare import compare_runs

    cmp = compare_runs([runs["a"], runs["a"]])
    assert [r.name for r in cmp.runs] == ["a (1)", "a (2)"]
    t = cmp.tests
    assert np.allclose(t["mean_diff"], 0) and np.allclose(t[["ci_low", "ci_high"]], 0)
    assert (t["p_boot"] == 1).all() and (t["verdict"] == "no evidence").all()


def test_bad_inputs_are_one_line_errors(runs, tmp_path, capsys):
    assert main(["compare", str(runs["a"])]) == 2
    assert "needs at least two run folders" in capsys.readouterr().err
    assert main(["compare", str(runs["a"]), str(tmp_path / "nowhere")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    (tmp_path / "bare").mkdir()
    assert main(["compare", str(runs["a"]), str(tmp_path / "bare")]) == 2
    err = capsys.readouterr().err
    assert "no leaderboard.csv; run `bench report" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--names", "x"]) == 2
    assert "--names gives 1 names for 2 runs" in capsys.readouterr().err
