"""The grid's ``dataset`` section: the keys every kind shares, in :class:`DatasetSection`.

Each kind's reader module subclasses it with the kind's own keys, their types, rules and ``Literal``
choices, and names it in its reader's ``config`` (:class:`bench.data.reader.DatasetReader`)::

    @section
    class NIHSection(DatasetSection):
        kind: Literal["nih"] = "nih"
        official_test: Annotated[Literal["ignore", "exclude"], CHOICE] = "ignore"

The grid (:mod:`bench.config`) builds the class its ``dataset.kind`` names with the one mechanism every
section goes through (:mod:`bench.fields`), and the grid's JSON Schema is the union of the kinds' sections,
told apart by ``kind``. A kind without keys of its own uses :class:`DatasetSection` itself.

>>> DatasetSection().image_size, COMMON_KEYS[:3]
(64, ('kind', 'root', 'image_size'))
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from bench.fields import CHOICE, INT, MAPPING, NAMES, PATH, STR, Annotated, optional, rule, section


@section
class DatasetSection:
    """Where the images come from and how they are prepared: the keys of every dataset kind."""

    kind: Annotated[str, STR] = "synthetic"
    root: Annotated[str, STR, PATH] = "data/synthetic"
    image_size: Annotated[int, INT, rule(lambda v: 16 <= v <= 1024, "an integer from 16 to 1024", minimum=16,
                                         maximum=1024)] = 64
    labels: Annotated[tuple[str, ...] | None, optional(NAMES)] = None  # keep only these (default: all it knows)
    aliases: Annotated[dict[str, str | None], MAPPING] = dataclasses.field(default_factory=dict)  # null drops
    on_bad_image: Annotated[Literal["exclude", "fail"], CHOICE] = "exclude"
    cache_dir: Annotated[str | None, optional(STR), PATH] = None  # default: $BENCH_CACHE_DIR or ~/.cache/cxr-bench
    min_positives: Annotated[int | None, optional(INT), rule(lambda v: v >= 1, "an integer >= 1", minimum=1)] = None


#: The keys of the dataset section that every kind has (what the reader base class uses).
COMMON_KEYS = tuple(f.name for f in dataclasses.fields(DatasetSection))
