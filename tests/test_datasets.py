"""Dataset kinds as registry entries: every registered reader passes one conformance suite; a new kind is a
reader class plus one registry line; the csv kind reads its labels from a label-string column when the grid
declares none, and its messages name grid keys, never Python arguments."""

from __future__ import annotations

import dataclasses
import logging
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench.config import DATASET_KINDS, GridConfig, load_grid, parse_grid, resolve_paths
from bench.data.catalogue import DATASETS, dataset_kinds, open_reader, reader_class
from bench.data.load import load_records
from bench.data.reader import COMMON_KEYS, DatasetReader
from bench.data.section import DatasetSection
from bench.errors import BenchError
from bench.schema import grid_schema
from strategies._registry import Entry


@pytest.mark.parametrize("kind", dataset_kinds())
def test_every_registered_kind_is_a_reader_with_its_own_section(kind):
    cls = reader_class(kind)
    assert issubclass(cls, DatasetReader) and cls is not DatasetReader
    assert cls.read is not DatasetReader.read, f"{kind}: no read()"
    assert issubclass(cls.config, DatasetSection) and cls.config.__module__ == cls.__module__, \
        f"{kind}: its section is not a DatasetSection defined beside its reader"
    fields = [f.name for f in dataclasses.fields(cls.config)]
    assert fields[:len(COMMON_KEYS)] == list(COMMON_KEYS) and tuple(fields[len(COMMON_KEYS):]) == cls.keys
    assert cls.config().kind == kind  # its kind is a Literal of its own name: the union's discriminator
    assert parse_grid({"dataset": {"kind": kind, "root": "/data", "csv": "/data/x.csv"} if kind == "csv" else
                       {"kind": kind, "root": "/data"}}).dataset.__class__ is cls.config
    assert DATASETS.get(kind).description


def test_the_kinds_the_grid_accepts_are_the_registered_ones_in_registration_order():
    assert DATASET_KINDS == dataset_kinds() == ("synthetic", "nih", "chexpert", "chestmnist", "csv")
    assert not set(COMMON_KEYS) & {k for kind in DATASET_KINDS for k in reader_class(kind).keys}


def test_an_unknown_kind_is_a_one_line_error_with_close_matches():
    with pytest.raises(BenchError, match=r"dataset.kind: 'chexpret' is not valid; did you mean 'chexpert'\?"):
        parse_grid({"dataset": {"kind": "chexpret", "root": "x"}})


class _Folder(DatasetReader):
    """A new kind for the test: every image of ``root`` labelled by the name of the folder it is in."""

    root_help = "a folder with one sub-folder of images per label"

    def read(self, *, labels_only=False):
        from bench.data.labels import Records

        paths = sorted(self.root.glob("*/*.png"))
        names = sorted({p.parent.name for p in paths})
        y = np.array([[float(p.parent.name == n) for n in names] for p in paths], dtype=np.float32)
        return Records(labels=y, label_names=tuple(names), image_ids=[p.name for p in paths],
                       paths=[str(p) for p in paths], kind="folders", root=str(self.root))


def test_a_new_kind_is_one_reader_class_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS._entries, "folders", Entry("folders", _Folder, "one folder per label"))
    for i, label in enumerate(["Mass", "Mass", "Edema", "Hernia"]):
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / f"{i}.png").write_bytes(b"")
    with pytest.raises(BenchError, match=r"dataset.root is required for kind 'folders' \(a folder with one sub-"):
        parse_grid({"dataset": {"kind": "folders"}})
    with pytest.raises(BenchError, match=r"dataset.n does not apply to kind 'folders' \(keys for folders: none\)"):
        parse_grid({"dataset": {"kind": "folders", "root": str(tmp_path), "n": 100}})
    cfg = parse_grid({"dataset": {"kind": "folders", "root": str(tmp_path), "labels": ["Mass", "Edema"],
                                  "aliases": {"Hernia": None}}})
    rec = load_records(cfg.dataset)  # the base class applies aliases and labels for the new reader
    assert rec.label_names == ("Mass", "Edema") and rec.labels.sum(axis=0).tolist() == [2, 1]
    with pytest.raises(BenchError, match=r"dataset.root: '.*absent' does not exist \(a folder with one sub-"):
        load_records(dataclasses.replace(cfg.dataset, root=str(tmp_path / "absent")))
    assert "FoldersSection" in grid_schema()["$defs"]  # a kind on the common section is a member of the union


def _readme_reader():
    """The reader of the README's "Adding a dataset kind" example, run as the README shows it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(# bench/data/folders.py\n.*?)```", readme, re.S).group(1)
    namespace = {"__name__": "folders_from_readme"}
    exec(compile(code, "README.md", "exec", dont_inherit=True), namespace)  # as a module of its own would
    return namespace["FoldersReader"], namespace["FoldersSection"]


def test_the_readme_kind_with_a_key_of_its_own_is_one_section_class_beside_its_reader(tmp_path, monkeypatch):
    reader, FoldersSection = _readme_reader()
    monkeypatch.setitem(DATASETS._entries, "folders", Entry("folders", reader, "one folder per label"))
    assert reader.keys == ("pattern",)
    for i, (label, ext) in enumerate([("Mass", "png"), ("Mass", "jpg"), ("Edema", "jpg")]):
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / f"{i}.{ext}").write_bytes(b"")
    cfg = parse_grid({"dataset": {"kind": "folders", "root": str(tmp_path), "pattern": "*.jpg"}})
    assert isinstance(cfg.dataset, FoldersSection) and cfg.dataset.pattern == "*.jpg"
    assert sorted(load_records(cfg.dataset).image_ids) == ["1.jpg", "2.jpg"]  # the pattern picks the images
    assert GridConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(BenchError, match=r"^grid: dataset.pattern: '\*.gif' is not valid; expected '\*.png' or "
                                         r"'\*.jpg'$"):
        parse_grid({"dataset": {"kind": "folders", "root": str(tmp_path), "pattern": "*.gif"}})
    with pytest.raises(BenchError, match=r"dataset.pattern does not apply to kind 'nih' \(keys for nih: box_file, "):
        parse_grid({"dataset": {"kind": "nih", "root": str(tmp_path), "pattern": "*.png"}})
    schema = grid_schema()
    assert schema["properties"]["dataset"]["discriminator"]["mapping"]["folders"] == "#/$defs/FoldersSection"
    assert schema["$defs"]["FoldersSection"]["properties"]["pattern"]["enum"] == ["*.png", "*.jpg"]


# ---- the csv kind through a grid -----------------------------------------------------------------------

def _csv_grid(tmp_path: Path, dataset: str) -> Path:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "list.csv").write_text("path,findings\na.png,Effusion|Lipoid\nb.png,No Finding\nc.png,Mass|Effusion\n"
                                       "d.png,\n")
    grid = tmp_path / "g.yaml"
    grid.write_text(textwrap.dedent(f"""\
        dataset: {{kind: csv, csv: {tmp_path / 'list.csv'}, image_column: path, label_column: findings, {dataset}}}
        backbones: [test_resnet]
        strategies: [bce]
        """))
    return grid


def test_csv_labels_are_taken_from_the_label_string_column_when_absent(tmp_path, caplog):
    cfg = resolve_paths(load_grid(_csv_grid(tmp_path, "aliases: {Lipoid: null}")))
    assert cfg.dataset.labels is None
    with caplog.at_level(logging.WARNING):
        rec = load_records(cfg.dataset, labels_only=True)
    assert rec.label_names == ("Effusion", "Mass")  # sorted; 'No Finding' is none; Lipoid dropped by its alias
    np.testing.assert_array_equal(rec.labels, [[1, 0], [0, 0], [1, 1], [np.nan, np.nan]])
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "dataset.labels not given; 2 label(s) taken from column 'findings': Effusion, Mass" in said
    with caplog.at_level(logging.WARNING):
        every = load_records(resolve_paths(load_grid(_csv_grid(tmp_path, "image_root: ."))).dataset, labels_only=True)
    assert every.label_names == ("Effusion", "Lipoid", "Mass")


def test_csv_messages_name_grid_keys_not_python_arguments(tmp_path):
    python_argument = re.compile(r"\b\w+=(?!\S)|ignore_unknown|labels_only|harmonise")
    cases = [("labels: [Effusion, Mass]", ["'Lipoid' (line 2)", "dataset.labels", "dataset.aliases",
                                           "leave dataset.labels out"]),
             ("labels: [Effusion, Mass, Lipoid]", ["none of the 4 images exists", "dataset.image_root"])]
    for dataset, needles in cases:
        cfg = resolve_paths(load_grid(_csv_grid(tmp_path, dataset)))
        with pytest.raises(BenchError) as info:
            load_records(dataclasses.replace(cfg.dataset, image_root=str(tmp_path / "elsewhere")))
        message = str(info.value)
        assert "\n" not in message
        for needle in needles:
            assert needle in message, (needle, message)
        assert not python_argument.search(message), message


def test_csv_without_labels_or_label_columns_says_what_to_give(tmp_path):
    (tmp_path / "wide.csv").write_text("path,Mass\na.png,1\n")
    cfg = parse_grid({"dataset": {"kind": "csv", "csv": str(tmp_path / "wide.csv")}})
    with pytest.raises(BenchError, match=r"dataset.labels: a csv dataset must declare its label list \(e.g. "
                                         r"\[Effusion, Edema\]\), or name its labels' columns \(dataset.label_column"):
        open_reader(cfg.dataset).load(labels_only=True)
