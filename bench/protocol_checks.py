"""The checks of the grid's ``protocol`` section that need the dataset kinds' readers (``bench.config`` calls them
once the grid is built): an official split needs a kind that has one; a test set's keys are its kind's."""

from __future__ import annotations

from typing import Any, Callable

from bench.data.catalogue import reader_class
from bench.data.section import DatasetSection


def official_kinds() -> list[str]:
    """The dataset kinds whose reader knows an official train / test split."""
    from bench.data.catalogue import dataset_kinds

    return [k for k in dataset_kinds() if reader_class(k).official_split is not None]


def check_protocol(cfg: Any, bad: Callable[[str, Any, str], None]) -> None:
    """Refuse a protocol the grid's datasets cannot run, with the grid's one-line error (``bad``)."""
    proto, ds = cfg.protocol, cfg.dataset
    if proto.split == "official":
        key = "protocol.train" if proto.kind == "external" else "protocol.kind"
        reader = reader_class(ds.kind)
        if reader.official_split is None:
            bad(key, "official", f"'kfold' for dataset.kind {ds.kind!r}: only {', '.join(official_kinds())} have an "
                                 "official train / test split")
        if getattr(ds, "official_test", "ignore") == "exclude":
            bad("dataset.official_test", "exclude", "'ignore' with the official protocol (it tests on that list)")
        if cfg.splits.file:
            bad("splits.file", cfg.splits.file, "no split file with the official protocol (the lists are the split)")
        if ds.kind == "chexpert" and ds.split != "both":
            bad("dataset.split", ds.split, "'both' with the official protocol (train.csv trains, valid.csv tests)")
    for name, ts in proto.test_sets.items():
        prefix = f"protocol.test_sets.{name}"

        def bad_here(key: str, value: Any, expected: str, prefix=prefix) -> None:
            bad(prefix + key[len("dataset"):] if key.startswith("dataset") else f"{prefix}.{key}", value, expected)

        reader_class(ts.kind).check(ts, bad_here)
        if ts.image_size not in (DatasetSection().image_size, ds.image_size):
            bad(f"{prefix}.image_size", ts.image_size, f"{ds.image_size} (dataset.image_size) or no value: test images "
                                                       "are cached at the training images' size")
