"""The ``csv`` dataset kind: any CSV of image paths and labels (the table helpers are :mod:`bench.data.tables`).

A CSV names one image per row and its labels in one of two layouts:

* a **label string**: one column such as ``"Effusion|Mass"`` (NIH style). The string lists the
  positives; every declared label it does not list is a known 0. A blank cell means nothing is known
  about that image, so its whole row is NaN. The ``no_finding`` token (``"No Finding"``) is accepted
  and sets nothing, unless it is itself a declared label.
* **one column per label**: each holds ``1``, ``0`` or blank, and blank is NaN (never 0).

``aliases`` map a name in the file (a column name, or a token of the label string) to a declared
label; mapping a name to ``None`` ignores it. Line numbers in messages count the header as line 1.

Without a declared label list, the labels are the ones the file holds: every token of the label-string
column (after ``aliases``; ``no_finding`` is none), or every column of ``label_columns``; they are logged.

Messages name what the caller can change: :func:`read_csv_dataset`'s arguments (``labels=``) for Python
callers, the grid's keys (``dataset.labels``) for a grid (:class:`CSVReader` passes :data:`GRID_TERMS`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.data.labels import Records
from bench.data.reader import DatasetReader
from bench.data.section import DatasetSection
from bench.data.tables import (
    BLANKS, MISSING_IMAGE, check_aliases, check_label_list, keep_existing, line_numbers, match_label_columns,
    need_column, parse_values, read_table, resolve_path,
)
from bench.errors import BenchError, did_you_mean
from bench.fields import NAMES, PATH, STR, Annotated, optional, section

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Terms:
    """How the reader's messages name the options a caller sets (Python arguments, or grid keys)."""

    labels: str = "labels="
    aliases: str = "aliases="
    label_column: str = "label_column="
    label_columns: str = "label_columns="
    #: the last remedy for label-string tokens that are not declared labels
    unknown: str = "or pass ignore_unknown=True"
    #: the remedy when none of the images exists
    no_images: str = "point the image root at the folder holding them, or pass labels_only=True"


PYTHON_TERMS = Terms()
GRID_TERMS = Terms(labels="dataset.labels", aliases="dataset.aliases", label_column="dataset.label_column",
                   label_columns="dataset.label_columns",
                   unknown="or leave dataset.labels out to take every label the column holds",
                   no_images="point the image root at the folder holding them (dataset.image_root; default: the "
                             "CSV's folder)")


# --------------------------------------------------------------------------------------------------
# The generic reader
# --------------------------------------------------------------------------------------------------

def infer_labels(table: pd.DataFrame, *, label_column: str | None, label_columns: Sequence[str] | None,
                 separator: str, aliases: Mapping[str, str | None], no_finding: str | None) -> list[str]:
    """The labels a file holds, for a caller that declared none: the label-string column's tokens, or the
    ``label_columns``, each mapped through ``aliases`` (a ``None`` target drops it), sorted.

    >>> t = pd.DataFrame({"path": ["a", "b", "c"], "f": ["Mass|Eff", "No Finding", ""]})
    >>> infer_labels(t, label_column="f", label_columns=None, separator="|", aliases={"Eff": "Effusion"},
    ...              no_finding="No Finding")
    ['Effusion', 'Mass']
    """
    if label_column is not None:
        tokens = {t.strip() for text in table[label_column].unique() for t in str(text).split(separator)}
        tokens = {t for t in tokens if t and t != no_finding}
    else:
        tokens = set(label_columns or ())
    return sorted({aliases.get(t, t) for t in tokens} - {None})

def _labels_from_strings(
    cells: pd.Series,
    declared: list[str],
    aliases: dict[str, str | None],
    *,
    separator: str,
    no_finding: str | None,
    ignore_unknown: bool,
    file: Path,
    column: str,
    lines: np.ndarray,
    terms: Terms = PYTHON_TERMS,
) -> np.ndarray:
    index = {name: j for j, name in enumerate(declared)}
    codes, uniques = pd.factorize(cells, sort=False)
    rows = np.zeros((len(uniques), len(declared)), dtype=np.float32)
    unknown: dict[str, int] = {}  # token -> position in uniques of its first occurrence
    for u, text in enumerate(uniques):
        if text == "":
            rows[u] = np.nan
            continue
        for token in (t.strip() for t in str(text).split(separator)):
            if not token:
                continue
            target = aliases[token] if token in aliases else token
            if target is None:
                continue
            if target in index:
                rows[u, index[target]] = 1.0
            elif no_finding is not None and token == no_finding:
                continue
            else:
                unknown.setdefault(token, u)
    if unknown and not ignore_unknown:
        first_row = {tok: int(np.flatnonzero(codes == u)[0]) for tok, u in unknown.items()}
        tokens = sorted(unknown, key=lambda t: first_row[t])
        shown = ", ".join(f"{t!r} (line {int(lines[first_row[t]])}{did_you_mean(t, declared)})" for t in tokens[:8])
        if len(tokens) > 8:
            shown += f", ... ({len(tokens)} in all)"
        raise BenchError(
            f"{file}: column {column!r} has labels that are not declared: {shown}; "
            f"declare them in {terms.labels}, map them with {terms.aliases}, {terms.unknown}"
        )
    return rows[codes]


def read_csv_dataset(
    csv_path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    image_root: str | os.PathLike | None = None,
    image_column: str = "path",
    label_column: str | None = None,
    separator: str = "|",
    label_columns: Sequence[str] | None = None,
    patient_column: str | None = None,
    view_column: str | None = None,
    aliases: Mapping[str, str | None] | None = None,
    no_finding: str | None = "No Finding",
    ignore_unknown: bool = False,
    labels_only: bool = False,
    terms: Terms = PYTHON_TERMS,
) -> Records:
    """Read any CSV of images and labels into :class:`Records`.

    Args:
        csv_path: the CSV file (comma separated, one header line).
        labels: the declared label list, in column order of the result. Without it the labels are the
            ones the file holds (:func:`infer_labels`; needs ``label_column`` or ``label_columns``).
        image_root: folder that relative image paths start from (default: the CSV's folder).
        image_column: column holding the image path; it is also the image id.
        label_column: a label-string column (``"Effusion|Mass"``), split on ``separator``.
        label_columns: the file's per-label columns (1 / 0 / blank). When neither this nor
            ``label_column`` is given, each declared label is looked up as a column (or an alias).
        patient_column, view_column: optional columns; without a patient column ``patients`` is None
            and splits fall back to image-level stratification.
        aliases: name in the file -> declared label (``None``: ignore that name).
        no_finding: the label-string token meaning "no finding" (``None`` to treat it as unknown).
        ignore_unknown: drop undeclared label-string tokens instead of raising.
        labels_only: keep rows whose image file is missing (no file checks at all).
        terms: how messages name the options (:data:`PYTHON_TERMS`, or :data:`GRID_TERMS` for a grid).

    Rows whose image file is missing are dropped and counted in ``dropped["image file missing"]``.

    >>> recs = read_csv_dataset("cxr.csv", labels=["Effusion", "Mass"], label_column="findings",
    ...                         aliases={"Pleural Effusion": "Effusion"})  # doctest: +SKIP
    >>> recs.labels[:2]  # doctest: +SKIP
    array([[1., 0.], [0., 0.]], dtype=float32)
    """
    csv_path = Path(csv_path)
    t = terms
    declared = None if labels is None else check_label_list(labels)
    alias_map = None if declared is None else check_aliases(aliases, declared)
    if label_column is not None and label_columns is not None:
        raise BenchError(
            f"{csv_path}: pass {t.label_column}{label_column!r} (one label-string column) or "
            f"{t.label_columns} (one column per label), not both"
        )
    if declared is None and label_column is None and label_columns is None:
        raise BenchError(f"{csv_path}: declare the label list ({t.labels}), or name the labels' columns "
                         f"({t.label_column} for one label-string column, {t.label_columns} for one column per "
                         "label) to take every label they hold")
    table = read_table(csv_path)
    need_column(table, image_column, csv_path, role="image column")
    if declared is None:
        if label_column is not None:
            need_column(table, label_column, csv_path, role="label column")
        raw_aliases = {str(k): v for k, v in (aliases or {}).items()}
        inferred = infer_labels(table, label_column=label_column, label_columns=label_columns, separator=separator,
                                aliases=raw_aliases, no_finding=no_finding)
        source = f"column {label_column!r}" if label_column is not None else t.label_columns.rstrip("=")
        log.warning("%s: %s not given; %d label(s) taken from %s: %s", csv_path, t.labels.rstrip("="),
                    len(inferred), source, ", ".join(inferred))
        declared = check_label_list(inferred)
        alias_map = check_aliases(aliases, declared)
    lines = line_numbers(len(table))

    if label_column is not None:
        if not separator:
            raise BenchError(f"{csv_path}: separator must be a non-empty string, got {separator!r}")
        need_column(table, label_column, csv_path, role="label column")
        y = _labels_from_strings(
            table[label_column], declared, alias_map, separator=separator, no_finding=no_finding,
            ignore_unknown=ignore_unknown, file=csv_path, column=label_column, lines=lines, terms=t,
        )
    else:
        if label_columns is not None:
            if isinstance(label_columns, str):
                raise BenchError(f"{t.label_columns.rstrip('=')} must be a list of column names, got {label_columns!r}")
            for column in label_columns:
                need_column(table, column, csv_path, role="label column")
                target = alias_map[column] if column in alias_map else column
                if target not in declared:
                    raise BenchError(
                        f"{csv_path}: label column {column!r} is not a declared label"
                        f"{did_you_mean(column, declared)}; declare it in {t.labels} or map it with {t.aliases}"
                    )
            candidates = list(label_columns)
        else:
            candidates = [c for c in table.columns if c != image_column]
        source = match_label_columns(candidates, declared, alias_map, csv_path, known=list(table.columns),
                                     aliases_key=t.aliases)
        y = np.empty((len(table), len(declared)), dtype=np.float32)
        for j, label in enumerate(declared):
            y[:, j] = parse_values(table[source[label]], (0.0, 1.0), file=csv_path,
                                   column=source[label], lines=lines)

    images = table[image_column]
    empty = (images == "").to_numpy()
    if empty.any():
        raise BenchError(f"{csv_path} line {int(lines[empty.argmax()])}: image column {image_column!r} is empty")
    dup = images.duplicated().to_numpy()
    if dup.any():
        i = int(dup.argmax())
        first = int(np.flatnonzero((images == images.iloc[i]).to_numpy())[0])
        raise BenchError(
            f"{csv_path} line {int(lines[i])}: duplicate image {images.iloc[i]!r} "
            f"(first on line {int(lines[first])}); each image must appear once"
        )

    patients = None
    if patient_column is not None:
        need_column(table, patient_column, csv_path, role="patient column")
        patients = table[patient_column].to_numpy(dtype=object)
        blank = table[patient_column].isin(BLANKS).to_numpy()
        if blank.any():
            raise BenchError(
                f"{csv_path} line {int(lines[blank.argmax()])}: patient column {patient_column!r} is empty "
                f"({int(blank.sum())} such row(s)); every row needs a patient id, or leave patient_column unset"
            )
    views = None
    if view_column is not None:
        need_column(table, view_column, csv_path, role="view column")
        views = table[view_column].where(~table[view_column].isin(BLANKS), "").to_numpy(dtype=object)

    root = os.path.abspath(image_root if image_root is not None else csv_path.parent)
    paths = np.array([resolve_path(v, root) for v in images], dtype=object)
    keep = keep_existing(paths, f"{csv_path} (image root {root})", labels_only=labels_only, remedy=t.no_images)
    dropped = {MISSING_IMAGE: int((~keep).sum())} if not keep.all() else {}
    return Records(
        labels=y[keep],
        label_names=tuple(declared),
        image_ids=images.to_numpy(dtype=object)[keep],
        paths=paths[keep],
        patients=None if patients is None else patients[keep],
        views=None if views is None else views[keep],
        dropped=dropped,
        kind="csv",
        root=root,
    )


@section
class CSVSection(DatasetSection):
    """The ``dataset`` section of ``kind: csv``."""

    kind: Literal["csv"] = "csv"
    csv: Annotated[str | None, optional(STR), PATH] = None           # the label file (required)
    image_root: Annotated[str | None, optional(STR), PATH] = None    # the image paths' folder (default: root)
    image_column: Annotated[str, STR] = "path"
    label_column: Annotated[str | None, optional(STR)] = None        # one label-string column ...
    separator: Annotated[str, STR] = "|"                             # ... and its separator
    label_columns: Annotated[tuple[str, ...] | None, optional(NAMES)] = None  # or one 0/1 column per label
    patient_column: Annotated[str | None, optional(STR)] = None
    view_column: Annotated[str | None, optional(STR)] = None


class CSVReader(DatasetReader):
    """The ``csv`` kind: :func:`read_csv_dataset` with the grid's keys (it applies ``labels`` and ``aliases``
    itself, and takes the labels the file holds when ``labels`` is absent)."""

    config = CSVSection
    root_help = "the folder the image paths start from (default: the CSV's folder)"
    reads_labels = True

    @classmethod
    def check(cls, ds: Any, bad) -> None:
        if not ds.csv:
            bad("dataset.csv", ds.csv, "the path of the CSV label file")

    @classmethod
    def implied_root(cls, ds: Any) -> str | None:
        return str(Path(ds.csv).parent) if ds.csv else ds.root

    def check_root(self) -> None:
        if not Path(self.ds.csv).is_file():
            raise BenchError(f"dataset.csv: {self.ds.csv!r} does not exist")

    def read(self, *, labels_only: bool = False) -> Records:
        ds = self.ds
        if not ds.labels and not ds.label_column and not ds.label_columns:
            raise BenchError("dataset.labels: a csv dataset must declare its label list (e.g. [Effusion, Edema]), "
                             "or name its labels' columns (dataset.label_column: one label-string column, whose "
                             "labels are then all taken; dataset.label_columns: one column per label)")
        return read_csv_dataset(ds.csv, image_root=ds.image_root or ds.root, image_column=ds.image_column,
                                labels=list(ds.labels) if ds.labels else None, label_column=ds.label_column,
                                separator=ds.separator,
                                label_columns=list(ds.label_columns) if ds.label_columns else None,
                                patient_column=ds.patient_column, view_column=ds.view_column,
                                aliases=dict(ds.aliases) or None, labels_only=labels_only, terms=GRID_TERMS)
