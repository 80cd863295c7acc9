"""``--set KEY=VALUE`` overrides: parsed as YAML, applied to the grid file's mapping, validated exactly like the
file, errors naming the override; the run folder records the grid they make, and a resume must make the same."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.config import load_grid, parse_grid
from bench.errors import BenchError
from bench.overrides import apply_overrides, split_override

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "grids" / "demo.yaml"


def one_line_error(capsys, argv: list[str]) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0][len("error: "):]


def test_values_are_yaml_and_applied_in_order_to_the_files_mapping():
    assert split_override("train.lr=1e-3") == ("train.lr", "1e-3")  # YAML 1.1's string: the grid's float rule reads it
    assert split_override("localisation.threshold=") == ("localisation.threshold", None)
    cfg = load_grid(DEMO, overrides=["train.epochs=1", "strategies=[bce, focal]", "train.lr=1e-3",
                                     "report={baseline: focal}", "train.epochs=2", "dataset.aliases={Hernia: null}",
                                     "localisation.methods=[gradcam, scorecam]"])
    assert cfg.train.epochs == 2 and cfg.train.lr == 1e-3 and cfg.strategies == ("bce", "focal")
    assert cfg.report.baseline == "focal" and cfg.report.bootstrap == 1000  # a section replaced: its defaults
    assert cfg.dataset.aliases == {"Hernia": None}  # null works where the schema allows it
    assert cfg.localisation.methods == ("gradcam", "scorecam")
    plain = load_grid(DEMO)
    assert cfg.backbones == plain.backbones and cfg.splits == plain.splits  # the rest as the file says
    assert cfg.dataset == dataclasses.replace(plain.dataset, aliases={"Hernia": None})
    assert load_grid(DEMO, overrides=[f"train.epochs={plain.train.epochs}"]).digest() == plain.digest()
    assert load_grid(DEMO, overrides=["train.epochs=1"]).digest() != plain.digest()
    # sections the file leaves out (or null) are created; the file's mapping is never changed
    given = {"train": None}
    assert apply_overrides(given, ["train.epochs=1", "resources.cpu=2"]) == {"train": {"epochs": 1},
                                                                         "resources": {"cpu": 2}}
    assert given == {"train": None}
    assert parse_grid({}, overrides=["dataset.kind=chexpert", "dataset.root=/data"]).dataset.kind == "chexpert"


@pytest.mark.parametrize("override, message", [
    ("train.epochs=x", "--set train.epochs=x: train.epochs: 'x' is not valid; expected an integer"),
    ("train.epochs=0", "--set train.epochs=0: train.epochs: 0 is not valid; expected an integer >= 1"),
    ("train.epoch=1", "--set train.epoch=1: unknown key 'train.epoch'; did you mean 'epochs'? (valid under train: "),
    ("trian.epochs=1", "--set trian.epochs=1: unknown key 'trian'; did you mean 'train'"),
    ("strategies=[bce, focl]", "--set strategies=[bce, focl]: strategies[1]: unknown strategy 'focl'; did you mean "
                               "'focal'"),
    ("seeds=[0, 0]", "--set seeds=[0, 0]: seeds: [0, 0] repeats a seed"),
    ("dataset.uncertainty=ones", "--set dataset.uncertainty=ones: dataset.uncertainty does not apply to kind "
                                 "'synthetic'"),
    ("train=3", "--set train=3: train must be a mapping, got 3"),
    ("backbones.first=resnet18", "--set backbones.first=resnet18: backbones is not a mapping"),
    ("train.epochs", "--set train.epochs: expected KEY=VALUE with a dotted grid key"),
    ("train.epochs=[1", "--set train.epochs=[1: the value is not valid YAML"),
])
@pytest.mark.parametrize("command, extra", [(["run"], ["--out", "/nonexistent/never"]),
                                            (["data", "describe"], ["--labels-only"]),
                                            (["data", "split"], ["--labels-only"])],
                         ids=["run", "data describe", "data split"])
def test_a_bad_override_is_one_line_naming_it(capsys, command, extra, override, message):
    argv = [*command, "--grid", DEMO, *extra, "--set", override]
    assert one_line_error(capsys, argv).startswith(message)


def test_tune_takes_overrides_too(capsys):
    assert one_line_error(capsys, ["tune", "--grid", DEMO, "--strategy", "focal", "--set", "train.epochs=x"]) == \
        "--set train.epochs=x: train.epochs: 'x' is not valid; expected an integer"


def test_an_error_in_the_file_still_names_the_file_and_line(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("train:\n  epochs: 2\n  lr: -1\n")
    with pytest.raises(BenchError, match=rf"^{re.escape(str(grid))}:3: train.lr: -1.0 is not valid"):
        load_grid(grid, overrides=["train.epochs=1"])
    with pytest.raises(BenchError, match=r"^--set train.lr=-2: train.lr: -2.0 is not valid"):
        load_grid(grid, overrides=["train.lr=-2"])


def test_data_split_reads_the_grid_with_its_overrides(synth_root, tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text(f"dataset: {{kind: synthetic, root: {synth_root}, n: 200, size: 64}}\nsplits: {{folds: 2}}\n")
    assert main(["data", "split", "--grid", str(grid), "--labels-only", "--json", "--set", "splits.folds=3"]) == 0
    assert json.loads(capsys.readouterr().out)["folds"] == 3
    assert main(["data", "describe", "--dataset", "synthetic", "--root", str(synth_root), "--labels-only", "--json",
                 "--set", "dataset.labels=[Mass, Hernia]", "--set", "dataset.n=200", "--set", "dataset.size=64"]) == 0
    assert list(json.loads(capsys.readouterr().out)["labels"]) == ["Mass", "Hernia"]


@pytest.mark.slow
def test_the_run_folder_records_the_grid_the_overrides_make_and_resume_compares_it(ray_session, synth_root,
                                                                                    tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text(textwrap.dedent(f"""\
        name: sets
        dataset: {{kind: synthetic, root: {synth_root}, n: 200, size: 64, image_size: 32}}
        splits: {{folds: 2, val_fraction: 0.25}}
        backbones: [test_resnet]
        strategies: [bce, focal]
        train: {{epochs: 3, batch_size: 32}}
        localisation: {{enabled: false}}
        report: {{bootstrap: 0}}
        """))
    out = tmp_path / "run"
    sets = ["--set", "train.epochs=1", "--set", "strategies=[bce]"]
    assert main(["-q", "run", "--grid", str(grid), "--out", str(out), *sets]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["test_resnet-bce-f0-s0", "test_resnet-bce-f1-s0"]
    recorded = yaml.safe_load((out / "grid.yaml").read_text())
    assert recorded == apply_overrides(yaml.safe_load(grid.read_text()), ["train.epochs=1", "strategies=[bce]"])
    assert (out / "grid.yaml").read_text().startswith(f"# {grid} with --set train.epochs=1 --set strategies=[bce]")
    resolved = json.loads((out / "grid.json").read_text())
    assert resolved["train"]["epochs"] == 1 and resolved["strategies"] == ["bce"]
    assert json.loads((out / "run.json").read_text())["overrides"] == ["train.epochs=1", "strategies=[bce]"]
    capsys.readouterr()
    for other in ([], ["--set", "train.epochs=1"], [*sets, "--set", "train.lr=0.01"]):  # another effective grid
        assert main(["run", "--grid", str(grid), "--out", str(out), *other]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: run folder") and "different grid" in err and "\n" not in err
    # the same effective grid, however it is spelt, resumes without training again
    assert main(["run", "--grid", str(grid), "--out", str(out), "--set", "strategies=bce", "--set",
                 "train={epochs: 1, batch_size: 32}"]) == 0
    assert "2 already done" in capsys.readouterr().out
