"""The grid's ``protocol`` section: how models are trained and where they are tested, and its checks.

* ``kfold`` (the default): patient-disjoint K-fold cross-validation of ``dataset`` (``splits``).
* ``official``: train on the dataset's official training list (NIH ``train_val_list.txt``, CheXpert
  ``train.csv``), with a patient-disjoint validation part carved from it (``splits.val_fraction``,
  ``splits.seed``) for the decision and CAM thresholds, and test once on the official test list (NIH
  ``test_list.txt``, CheXpert ``valid.csv``). One trial per backbone x strategy x seed: the seeds give the spread.
* ``external``: train as ``train`` says (``kfold`` or ``official``) on ``dataset``, then evaluate every trained
  model, with the thresholds it tuned on its own validation part, on each dataset of ``test_sets`` (a mapping
  of name -> dataset section, the keys of the grid's ``dataset``, ``aliases`` included). A test set's labels
  are matched to the training labels by name after its aliases; a training label it lacks is NaN there.

::

    protocol:
      kind: external
      train: kfold
      test_sets:
        site-b: {kind: synthetic, root: data/synthetic-b, site: b}

>>> parse_protocol({"kind": "official"}, lambda key: "g.yaml").kind
'official'
>>> parse_protocol({"kind": "external"}, lambda key: "g.yaml")  # doctest: +ELLIPSIS
Traceback (most recent call last):
bench.errors.BenchError: g.yaml: protocol.test_sets: {} is not valid; expected at least one test dataset ...
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Callable, Literal

from bench.data.catalogue import reader_class
from bench.data.section import DatasetSection
from bench.errors import BenchError
from bench.fields import CHOICE, PATH, Annotated, fields_with, parse, section

PROTOCOLS = ("kfold", "official", "external")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@section
class ProtocolConfig:
    """Which evaluation protocol the grid runs (module docstring); the default is today's K-fold."""

    kind: Annotated[Literal["kfold", "official", "external"], CHOICE] = "kfold"
    # external only: how the models are trained on the grid's dataset before the test sets see them
    train: Annotated[Literal["kfold", "official"], CHOICE] = "kfold"
    # external only: name -> a dataset section (the grid's ``dataset`` keys); built by parse_protocol
    test_sets: dict[str, DatasetSection] = dataclasses.field(default_factory=dict)

    @property
    def split(self) -> str:
        """How the training dataset is split: ``kfold`` or ``official`` (an external grid's ``train``)."""
        return self.train if self.kind == "external" else self.kind

    def is_default(self) -> bool:
        return self == ProtocolConfig()

    def resolved(self, absolute: Callable[[Any], Any]) -> "ProtocolConfig":
        """The section with every path of its test sets (their ``PATH`` fields) made ``absolute(path)``."""
        sets = {n: dataclasses.replace(ds, **{k: absolute(getattr(ds, k)) for k in fields_with(type(ds), PATH)})
                for n, ds in self.test_sets.items()}
        return dataclasses.replace(self, test_sets=sets)

    @classmethod
    def from_plain(cls, value: Mapping | None, build: Callable[[type, Any], Any],
                   section_of: Callable[..., type]) -> "ProtocolConfig":
        """The section back from ``GridConfig.to_dict()``'s plain values: ``build(cls, values)`` rebuilds a test
        set's section, of class ``section_of(kind, strict=False)`` (``bench.config``'s)."""
        value = dict(value or {})
        sets = {name: build(section_of((v or {}).get("kind", "synthetic"), strict=False), v)
                for name, v in (value.pop("test_sets", None) or {}).items()}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in names}, test_sets=sets)


def parse_protocol(value: Any, where: Callable[[str], str], *,
                   dataset: Callable[[Any, Callable[[str], str], str], DatasetSection] | None = None) -> ProtocolConfig:
    """The protocol section: ``kind``, ``train`` and ``test_sets`` (each one parsed as a dataset section by
    ``dataset(value, where, prefix)``, the grid's own dataset parser); one-line errors naming the key."""
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise BenchError(f"{where('protocol')}: protocol must be a mapping (kind: kfold | official | external), "
                         f"got {value!r}")
    raw_sets = value.get("test_sets")
    proto = parse(ProtocolConfig, {k: v for k, v in value.items() if k != "test_sets"}, "protocol", where,
                  allowed=[f.name for f in dataclasses.fields(ProtocolConfig)])
    if proto.kind != "external":
        for key in ("train", "test_sets"):
            if key in value:
                raise BenchError(f"{where('protocol.' + key)}: protocol.{key} applies to protocol.kind external only "
                                 f"(this grid's protocol.kind is {proto.kind!r})")
        return proto
    sets = {} if raw_sets is None else raw_sets
    if not isinstance(sets, Mapping) or not sets:
        raise BenchError(f"{where('protocol.test_sets')}: protocol.test_sets: {sets!r} is not valid; expected at least "
                         "one test dataset (name: {kind: ..., root: ...}) for protocol.kind external")
    built = {}
    for name, ds in sets.items():
        key = f"protocol.test_sets.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise BenchError(f"{where(key)}: {key}: the name {name!r} is not valid; expected letters, digits, "
                             "'_', '.', '+' or '-' (it names a folder and a report section)")
        if ds is not None and not isinstance(ds, Mapping):
            raise BenchError(f"{where(key)}: {key} must be a dataset section (kind, root, ...), got {ds!r}")
        built[name] = dataset(ds, where, key) if dataset is not None else ds
    return dataclasses.replace(proto, test_sets=built)


# ---- the checks that need the dataset kinds' readers (bench.config calls them once the grid is built) ----

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
