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

from bench.config import DATASET_KINDS, DatasetConfig, load_grid, parse_grid, resolve_paths
from bench.data.catalogue import DATASETS, dataset_kinds, open_reader, reader_class
from bench.data.load import load_records
from bench.data.reader import COMMON_KEYS, DatasetReader
from bench.errors import BenchError
from strategies._registry import Entry

FIELDS = {f.name for f in dataclasses.fields(DatasetConfig)}


@pytest.mark.parametrize("kind", dataset_kinds())
def test_every_registered_kind_is_a_reader_with_its_own_keys(kind):
    cls = reader_class(kind)
    assert issubclass(cls, DatasetReader) and cls is not DatasetReader
    assert cls.read is not DatasetReader.read, f"{kind}: no read()"
    assert set(cls.keys) <= FIELDS, f"{kind}: keys the grid schema does not have: {set(cls.keys) - FIELDS}"
    assert not set(cls.keys) & set(COMMON_KEYS), f"{kind}: re-declares a common key"
    assert DATASETS.get(kind).description


def test_the_kinds_the_grid_accepts_are_the_registered_ones_in_registration_order():
    assert DATASET_KINDS == dataset_kinds() == ("synthetic", "nih", "chexpert", "chestmnist", "csv")
    assert set(FIELDS) == set(COMMON_KEYS) | {k for kind in DATASET_KINDS for k in reader_class(kind).keys}


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
