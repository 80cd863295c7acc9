"""Every dataset kind a grid can name (``dataset.kind``), and how to find its reader.

Targets are ``"module:Class"`` strings (subclasses of :class:`bench.data.reader.DatasetReader`), so that
listing the kinds imports neither pandas nor torch. A new kind is one module with its reader and one line
here; ``bench list datasets`` shows it.

>>> dataset_kinds()[:2]
('synthetic', 'nih')
>>> reader_class("nih").keys
('label_file', 'box_file', 'official_test', 'train_list', 'test_list')
"""

from __future__ import annotations

from strategies._registry import Registry

DATASETS = Registry("dataset kind")

DATASETS.register("synthetic", "bench.data.synthetic:SyntheticReader",
                  description="the built-in synthetic radiographs in the NIH layout, generated at root on first use")
DATASETS.register("nih", "bench.data.nih:NIHReader", description="NIH ChestX-ray14 (Data_Entry_2017.csv, images/, boxes)")
DATASETS.register("chexpert", "bench.data.chexpert:CheXpertReader",
                  description="CheXpert (train.csv / valid.csv; uncertainty and view policies)")
DATASETS.register("chestmnist", "bench.data.chestmnist:ChestMNISTReader",
                  description="MedMNIST ChestMNIST (.npz, NIH's 14 labels at 28-224 px)")
DATASETS.register("csv", "bench.data.csvfile:CSVReader",
                  description="any CSV of image paths and labels (a label-string column or one column per label)")


def dataset_kinds() -> tuple[str, ...]:
    """The registered kinds, in the order they were registered (the order messages list them in)."""
    return tuple(DATASETS.registered())


def reader_class(kind: str):
    """The reader class of ``kind``; an unknown kind is a ``KeyError`` naming close matches."""
    return DATASETS.get(kind).load()


def open_reader(section):
    """The reader for a grid's ``dataset`` section (its ``kind`` picks the class)."""
    return reader_class(section.kind)(section)
