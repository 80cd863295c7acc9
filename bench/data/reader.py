"""The dataset reader base class: what every dataset kind shares, and the hooks a kind fills in.

A dataset kind is a :class:`DatasetReader` subclass in its own module plus one line in
:mod:`bench.data.catalogue`. The subclass names its section of the grid (``config``: a subclass of
:class:`bench.data.section.DatasetSection` with the kind's own keys, their types and choices; its ``keys``
follow from it), checks what no field can check alone (:meth:`~DatasetReader.check`), says what
``dataset.root`` must hold (``root_help``) and reads the files (:meth:`~DatasetReader.read`); the base class
owns the steps every kind shares, in this order (:meth:`~DatasetReader.load`): prepare (the synthetic kind
generates its images), check the root, read, apply ``aliases``, select ``labels``, refuse an empty result,
drop labels under ``min_positives``; and, once the images are cached, the bad-image policy
(:meth:`~DatasetReader.exclude_bad`).

The ``dataset`` section a reader gets is its ``config`` as the grid built it, or any object with the same
attributes: this module, like the rest of ``bench.data``, does not import the grid's schema.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from bench.data.section import COMMON_KEYS, DatasetSection
from bench.errors import BenchError, did_you_mean

if TYPE_CHECKING:
    import numpy as np

    from bench.data.cache import ImageCache
    from bench.data.labels import Records

log = logging.getLogger(__name__)
__all__ = ["COMMON_KEYS", "DatasetReader", "DatasetSection"]


class DatasetReader:
    """One dataset kind. Subclasses set ``config`` (when the kind has keys of its own) and ``root_help``, and
    implement :meth:`read`.

    >>> from bench.fields import STR, Annotated, section
    >>> @section
    ... class TinySection(DatasetSection):
    ...     file: Annotated[str, STR] = "tiny.npz"
    >>> class Tiny(DatasetReader):
    ...     config = TinySection
    ...     def read(self, *, labels_only=False):
    ...         ...
    >>> Tiny.keys, Tiny.root_help
    (('file',), 'the dataset folder')
    """

    #: The kind's section of the grid: :class:`DatasetSection` or a subclass with the kind's own keys.
    config: ClassVar[type] = DatasetSection
    #: The kind's own keys of the dataset section (beyond :data:`COMMON_KEYS`): its ``config``'s other fields.
    keys: ClassVar[tuple[str, ...]] = ()
    #: What ``dataset.root`` must hold (shown when it is missing); None: the default root will do.
    root_help: ClassVar[str | None] = "the dataset folder"
    #: Whether :meth:`read` applies ``aliases`` and ``labels`` itself (a reader that needs them to read).
    reads_labels: ClassVar[bool] = False
    #: The files of the kind's official train / test split (``protocol.kind: official``), None: it has none.
    official_split: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.keys = tuple(f.name for f in dataclasses.fields(cls.config) if f.name not in COMMON_KEYS)

    def __init__(self, section: Any):
        self.ds = section

    # ---- hooks ------------------------------------------------------------------------------------------

    @classmethod
    def check(cls, ds: Any, bad: Callable[[str, Any, str], None]) -> None:
        """Check what the section's fields cannot check alone (each value's type, rule and choices are checked
        when the section is built); ``bad(key, value, expected)`` raises the grid's one-line error."""

    @classmethod
    def implied_root(cls, ds: Any) -> str | None:
        """The root to use when the grid gives no ``dataset.root`` (None: the grid must give one)."""
        return None

    def prepare(self, progress: Callable[[int, int], None] | None) -> None:
        """Anything to do before the root is checked (the synthetic kind writes its images here)."""

    def check_root(self) -> None:
        """Refuse a root that does not exist, naming what it should hold."""
        if not self.root.exists():
            raise BenchError(f"dataset.root: {str(self.root)!r} does not exist ({self.root_help})")

    def read(self, *, labels_only: bool = False) -> "Records":
        """The kind's images, labels, patients and boxes (every label the files know)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement read()")

    def official_lists(self, rec: "Records") -> tuple["np.ndarray", "np.ndarray"]:
        """Boolean masks over ``rec``'s rows: (in the official training list, in the official test list)."""
        raise BenchError(f"dataset kind {self.ds.kind!r} has no official train / test split; use protocol.kind: kfold")

    # ---- the shared steps ---------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return Path(self.ds.root).expanduser()

    def load(self, *, labels_only: bool = False, progress: Callable[[int, int], None] | None = None) -> "Records":
        """Read the dataset the section names (paths already resolved), then select and rename labels."""
        self.prepare(progress)
        self.check_root()
        rec = self.read(labels_only=labels_only)
        if not self.reads_labels:
            rec = self.apply_aliases(rec)
            rec = self.select_labels(rec)
        if len(rec) == 0:
            raise BenchError(f"dataset {str(self.root)!r}: no images left after filtering ({_dropped_text(rec)})")
        return self.drop_rare_labels(rec)

    def apply_aliases(self, rec: "Records") -> "Records":
        """Rename / merge labels (``aliases``; a null target drops the name)."""
        if not self.ds.aliases:
            return rec
        from bench.data.harmonise import harmonise

        return harmonise(rec, dict(self.ds.aliases))

    def select_labels(self, rec: "Records") -> "Records":
        """Keep only the ``labels`` the section names (every one must be a label of the dataset)."""
        if not self.ds.labels:
            return rec
        for name in self.ds.labels:
            if name not in rec.label_names:
                raise BenchError(f"dataset.labels: {name!r} is not a label of this dataset"
                                 f"{did_you_mean(name, rec.label_names)} (labels: {', '.join(rec.label_names)})")
        return rec.select_labels(list(self.ds.labels))

    def drop_rare_labels(self, rec: "Records") -> "Records":
        """Drop the labels with fewer than ``min_positives`` positive images (with a warning naming them)."""
        floor = self.ds.min_positives
        if not floor:
            return rec
        from bench.data.labels import positives

        pos = positives(rec.labels)
        keep = [n for n, p in zip(rec.label_names, pos) if p >= floor]
        gone = [f"{n} ({p})" for n, p in zip(rec.label_names, pos) if p < floor]
        if gone:
            log.warning("dropping labels with fewer than %d positives: %s", floor, ", ".join(gone))
            if not keep:
                raise BenchError(f"dataset.min_positives: {floor} leaves no label (most positives: {int(pos.max())})")
            rec = rec.select_labels(keep)
        return rec

    def exclude_bad(self, rec: "Records", cache: "ImageCache") -> "Records":
        """Apply ``on_bad_image`` to the images the cache could not decode: exclude them (with a warning
        listing them) or fail."""
        from bench.data.cache import exclude_bad

        return exclude_bad(rec, cache, policy=self.ds.on_bad_image)


def _dropped_text(rec: "Records") -> str:
    return ", ".join(f"{v:,} {k}" for k, v in rec.dropped.items()) or "nothing dropped"
