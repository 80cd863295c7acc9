"""Grid parsing and validation: every bad value is a one-line error naming file, line and key."""

from __future__ import annotations

import textwrap

import pytest

from bench.config import GridConfig, load_grid, parse_grid, resolve_paths
from bench.errors import BenchError

GOOD = """\
name: t
dataset: {kind: synthetic, root: data/s, image_size: 32, n: 100, size: 64}
splits: {folds: 3, val_fraction: 0.2, seed: 0}
backbones: [test_resnet]
strategies: [bce, focal, {name: focal3, loss: {name: focal, gamma: 3}}]
train: {epochs: 1, batch_size: 16, lr: 1e-3}
seeds: [0, 1]
"""


def grid(tmp_path, text):
    p = tmp_path / "g.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_good_grid_parses(tmp_path):
    cfg = load_grid(grid(tmp_path, GOOD))
    assert isinstance(cfg, GridConfig)
    assert cfg.train.lr == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as a string: coerced
    assert [s["name"] for s in cfg.strategy_specs()] == ["bce", "focal", "focal3"]
    assert cfg.strategy_specs()[2]["loss"] == {"name": "focal", "gamma": 3}
    assert cfg.seeds == (0, 1)
    assert resolve_paths(cfg).dataset.root.startswith("/")


@pytest.mark.parametrize(("value", "expected"), [("true", "true"), ("false", "false"), ("auto", "auto"), ("'True'", "true")])
def test_channels_last_takes_yaml_booleans_as_the_readme_shows(tmp_path, value, expected):
    cfg = load_grid(grid(tmp_path, GOOD.replace("lr: 1e-3}", f"lr: 1e-3, channels_last: {value}}}")))
    assert cfg.train.channels_last == expected


def test_digest_ignores_resources_but_not_training(tmp_path):
    a = load_grid(grid(tmp_path, GOOD))
    b = load_grid(grid(tmp_path, GOOD + "resources: {cpu: 2, max_concurrent: 1}\n"))
    c = load_grid(grid(tmp_path, GOOD.replace("epochs: 1", "epochs: 2")))
    assert a.digest() == b.digest() != c.digest()


@pytest.mark.parametrize("change, expected", [
    (("epochs: 1", "epochs: -1"), r"g.yaml:6: train.epochs: -1 is not valid; expected an integer >= 1"),
    (("folds: 3", "folds: 1"), r"splits.folds: 1 is not valid; expected an integer >= 2"),
    (("lr: 1e-3", "lr: 0"), r"train.lr: 0(\.0)? is not valid; expected a number > 0"),
    (("lr: 1e-3", "lr: fast"), r"train.lr: 'fast' is not valid; expected a number"),
    (("[test_resnet]", "[resnet181]"), r"unknown backbone 'resnet181'; did you mean 'resnet18'"),
    (("[bce, focal,", "[bce, focl,"), r"unknown strategy 'focl'; did you mean 'focal'"),
    (("gamma: 3", "gama: 3"), r"unknown parameter 'gama' for loss 'focal'; did you mean 'gamma'"),
    (("train: {", "trian: {"), r"g.yaml:6: unknown key 'trian'; did you mean 'train'"),
    (("epochs: 1,", "epoch: 1,"), r"unknown key 'train.epoch'; did you mean 'epochs'"),
    (("kind: synthetic", "kind: nhi"), r"dataset.kind: 'nhi' is not valid; did you mean 'nih'"),
    (("seeds: [0, 1]", "seeds: [0, 0]"), r"seeds: \[0, 0\] repeats a seed"),
    (("image_size: 32", "image_size: 8"), r"dataset.image_size: 8 is not valid"),
    (("n: 100, size: 64", "n: 100, size: 64, uncertainty: ones"), r"dataset.uncertainty does not apply to kind 'synthetic'"),
    (("lr: 1e-3}", "lr: 1e-3, channels_last: maybe}"), r"train.channels_last: 'maybe' is not valid; expected 'auto', true or false"),
])
def test_bad_values_name_file_line_and_key(tmp_path, change, expected):
    with pytest.raises(BenchError, match=expected) as info:
        load_grid(grid(tmp_path, GOOD.replace(*change)))
    assert "\n" not in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(BenchError, match=r"g.yaml:\d+: YAML syntax error"):
        load_grid(grid(tmp_path, GOOD + "train: {epochs: [1\n"))


def test_missing_file_and_not_a_mapping(tmp_path):
    with pytest.raises(BenchError, match="grid file not found"):
        load_grid(tmp_path / "nope.yaml")
    with pytest.raises(BenchError, match="a grid must be a mapping"):
        load_grid(grid(tmp_path, "- a\n- b\n"))
    with pytest.raises(BenchError, match="the grid is empty"):
        load_grid(grid(tmp_path, "\n"))


def test_pretrained_file_must_exist(tmp_path):
    with pytest.raises(BenchError, match="train.pretrained"):
        parse_grid({"backbones": ["test_resnet"], "train": {"pretrained": str(tmp_path / "missing.pth")}})


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(BenchError, match="YAML syntax error|could not determine a constructor|not valid"):
        load_grid(grid(tmp_path, GOOD + "extra: !!python/object/apply:os.system ['echo pwned']\n"))


def test_null_alias_ignores_the_name_through_the_grid(tmp_path):
    """`aliases: {Name: null}` (documented as "ignore this label") reaches the reader as None, not 'None'."""
    from bench.data.load import load_records

    (tmp_path / "a.png").write_bytes(b"")
    csv = tmp_path / "list.csv"
    csv.write_text("path,labels\na.png,Effusion|Lipoid\nb.png,Mass\nc.png,Lipoid\n")
    grid = tmp_path / "g.yaml"
    grid.write_text(textwrap.dedent(f"""\
        dataset: {{kind: csv, root: {tmp_path}, csv: {csv}, image_column: path, label_column: labels,
                  labels: [Effusion, Mass], aliases: {{Lipoid: null}}}}
        backbones: [test_resnet]
        strategies: [bce]
        """))
    cfg = load_grid(grid)
    assert cfg.dataset.aliases == {"Lipoid": None}
    rec = load_records(cfg.dataset, labels_only=True)
    assert list(rec.label_names) == ["Effusion", "Mass"]
    assert rec.labels.tolist() == [[1, 0], [0, 1], [0, 0]]


def test_a_run_folder_written_with_the_old_flat_dataset_section_resumes_when_it_is_the_same_grid(tmp_path):
    """Before each dataset kind had its own section, grid.json held every kind's keys in one dataset section (so
    its digest differs): it is the same grid when it reads back as this one, and another grid is still refused."""
    import json

    from bench.run import check_run_dir

    cfg = resolve_paths(parse_grid({"dataset": {"kind": "nih", "root": "/data/nih", "official_test": "exclude"},
                                    "train": {"epochs": 2}}))
    old = cfg.to_dict()
    old["dataset"] = {**old["dataset"], "n": 1500, "size": 128, "seed": 0, "split": "train", "uncertainty": "ignore",
                      "views": "frontal", "file": None, "csv": None, "image_root": None, "image_column": "path",
                      "label_column": None, "separator": "|", "label_columns": None, "patient_column": None,
                      "view_column": None}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "grid.json").write_text(json.dumps({**old, "digest": "0123456789abcdef"}))
    assert check_run_dir(run_dir, cfg) is True
    other = resolve_paths(parse_grid({"dataset": {"kind": "nih", "root": "/data/nih"}, "train": {"epochs": 2}}))
    with pytest.raises(BenchError, match="was made by a different grid"):
        check_run_dir(run_dir, other)
