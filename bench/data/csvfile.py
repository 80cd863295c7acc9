"""The generic CSV reader, and the table helpers the CheXpert reader shares.

A CSV names one image per row and its labels in one of two layouts:

* a **label string**: one column such as ``"Effusion|Mass"`` (NIH style). The string lists the
  positives; every declared label it does not list is a known 0. A blank cell means nothing is known
  about that image, so its whole row is NaN. The ``no_finding`` token (``"No Finding"``) is accepted
  and sets nothing, unless it is itself a declared label.
* **one column per label**: each holds ``1``, ``0`` or blank, and blank is NaN (never 0).

``aliases`` map a name in the file (a column name, or a token of the label string) to a declared
label; mapping a name to ``None`` ignores it. Line numbers in messages count the header as line 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.data.images import NPZ_SCHEME
from bench.data.labels import Records
from bench.errors import BenchError, choices_text, did_you_mean

MISSING_IMAGE = "image file missing"
_BLANKS = frozenset({"", "nan", "NaN", "NA", "N/A", "null", "None"})


# --------------------------------------------------------------------------------------------------
# Helpers shared with the other CSV-based readers
# --------------------------------------------------------------------------------------------------

def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV as strings: stripped header names and cells, blanks as ``""``, never NaN.

    >>> read_table("labels.csv").columns.tolist()  # doctest: +SKIP
    ['path', 'Effusion', 'Mass']
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a CSV file" if path.is_dir() else "file not found"
        raise BenchError(f"{path}: {what}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise BenchError(f"{path}: empty file; expected a header line naming the columns") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"{path}: cannot parse as CSV ({first})") from None
    table.columns = [str(c).strip() for c in table.columns]
    for column in table.columns:
        table[column] = table[column].astype(str).str.strip()
    return table


def need_column(table: pd.DataFrame, column: str, file: str | os.PathLike, *, role: str = "column") -> None:
    """Raise a one-line :class:`BenchError` unless ``column`` is in ``table``.

    >>> need_column(pd.DataFrame(columns=["path"]), "Path", "a.csv")
    Traceback (most recent call last):
    bench.errors.BenchError: a.csv: no column 'Path'; did you mean 'path'? (columns: 'path')
    """
    if column not in table.columns:
        raise BenchError(
            f"{file}: no {role} {column!r}{did_you_mean(column, table.columns)} "
            f"(columns: {choices_text(table.columns)})"
        )


def check_label_list(labels: Iterable[str] | None, *, key: str = "labels") -> list[str]:
    """A non-empty list of unique, non-empty label names, or a one-line :class:`BenchError`.

    >>> check_label_list(("Mass", "Nodule"))
    ['Mass', 'Nodule']
    """
    if labels is None or isinstance(labels, str):
        raise BenchError(f"{key} must be a list of label names, got {labels!r}")
    names = list(labels)
    if not names:
        raise BenchError(f"{key} is empty; declare at least one label")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise BenchError(f"{key}: {name!r} is not a label name (expected a non-empty string)")
        if name in seen:
            raise BenchError(f"{key}: label {name!r} is declared twice")
        seen.add(name)
    return names


def check_aliases(aliases: Mapping[str, str | None] | None, declared: Sequence[str]) -> dict[str, str | None]:
    """Validate ``aliases`` (name in the file -> declared label, or ``None`` to ignore the name).

    >>> check_aliases({"Pleural Effusion": "Effusion"}, ["Effusion"])
    {'Pleural Effusion': 'Effusion'}
    """
    if aliases is None:
        return {}
    if not isinstance(aliases, Mapping):
        raise BenchError(f"aliases must be a dict of name in the file -> declared label, got {aliases!r}")
    out: dict[str, str | None] = {}
    for source, target in aliases.items():
        if target is not None and target not in declared:
            raise BenchError(
                f"aliases: {source!r} -> {target!r}, but {target!r} is not a declared label"
                f"{did_you_mean(str(target), declared)} (declared: {choices_text(declared)})"
            )
        out[str(source)] = target
    return out


def match_label_columns(
    columns: Sequence[str],
    declared: Sequence[str],
    aliases: Mapping[str, str | None],
    file: str | os.PathLike,
    *,
    known: Sequence[str] | None = None,
) -> dict[str, str]:
    """Map each declared label to the one file column holding it (its own name or an alias).

    ``known`` lists the names to suggest in the error (default: ``columns``).

    >>> match_label_columns(["path", "Pleural Effusion"], ["Effusion"], {"Pleural Effusion": "Effusion"}, "a.csv")
    {'Effusion': 'Pleural Effusion'}
    """
    source: dict[str, str] = {}
    for column in columns:
        target = aliases[column] if column in aliases else column
        if target is None or target not in declared:
            continue
        if target in source:
            raise BenchError(
                f"{file}: columns {source[target]!r} and {column!r} both give label {target!r}; "
                "keep one (aliases) or merge them afterwards with bench.data.harmonise.harmonise"
            )
        source[target] = column
    known = list(columns if known is None else known)
    for label in declared:
        if label not in source:
            raise BenchError(
                f"{file}: no column for label {label!r}{did_you_mean(label, known)} "
                f"(file has: {choices_text(known)}; map a differently named column with aliases=)"
            )
    return {label: source[label] for label in declared}


def parse_values(
    cells: pd.Series,
    allowed: Sequence[float],
    *,
    file: str | os.PathLike,
    column: str,
    lines: np.ndarray,
) -> np.ndarray:
    """Cells such as ``"1"``, ``"0.0"``, ``"-1.0"`` or blank -> float64 with NaN for blank.

    Anything else, or a number outside ``allowed``, is a one-line error naming the line.

    >>> parse_values(pd.Series(["1", "", "0.0"]), (0, 1), file="a.csv", column="Mass", lines=np.array([2, 3, 4]))
    array([ 1., nan,  0.])
    """
    text = cells.astype(str).str.strip()
    blank = text.isin(_BLANKS).to_numpy()
    values = np.array(pd.to_numeric(text.where(~blank, None), errors="coerce"), dtype=np.float64)
    bad = (~blank & ~np.isin(values, np.asarray(allowed, dtype=np.float64)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        valid = ", ".join(repr(f"{v:g}") for v in allowed)
        raise BenchError(
            f"{file} line {int(lines[i])}: column {column!r} has value {text.iloc[i]!r}; "
            f"valid values are {valid} or blank ({int(bad.sum())} bad cell(s) in all)"
        )
    values[blank] = np.nan
    return values


def resolve_path(value: str, root: str) -> str:
    """An absolute path for ``value`` (kept when absolute or ``npz://``), else ``root/value``.

    >>> resolve_path("a/b.png", "/data")
    '/data/a/b.png'
    """
    if value.startswith(NPZ_SCHEME):
        return value
    return os.path.abspath(os.path.join(root, value))


def image_exists(path: str) -> bool:
    """True when the file behind ``path`` (for ``npz://`` paths, the ``.npz`` file) exists.

    >>> image_exists("npz:///nowhere/chestmnist.npz#train_images/0")
    False
    """
    if path.startswith(NPZ_SCHEME):
        path = path[len(NPZ_SCHEME):].partition("#")[0]
    return os.path.isfile(path)


def keep_existing(paths: np.ndarray, where: str, *, labels_only: bool) -> np.ndarray:
    """Boolean mask of rows whose image exists (all True when ``labels_only``).

    Raises a :class:`BenchError` when none of the images exists: a wrong root, not a dataset.

    >>> keep_existing(np.array(["/nowhere/a.png"]), "list.csv", labels_only=True)
    array([ True])
    """
    if labels_only or len(paths) == 0:
        return np.ones(len(paths), dtype=bool)
    keep = np.fromiter((image_exists(p) for p in paths), dtype=bool, count=len(paths))
    if not keep.any():
        raise BenchError(
            f"{where}: none of the {len(paths)} images exists (first: {paths[0]}); "
            "point the image root at the folder holding them, or pass labels_only=True"
        )
    return keep


def line_numbers(n: int) -> np.ndarray:
    """File line of each data row: the header is line 1.

    >>> line_numbers(3)
    array([2, 3, 4])
    """
    return np.arange(n, dtype=np.int64) + 2


# --------------------------------------------------------------------------------------------------
# The generic reader
# --------------------------------------------------------------------------------------------------

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
            "declare them in labels=, map them with aliases=, "
            "or pass ignore_unknown=True"
        )
    return rows[codes]


def read_csv_dataset(
    csv_path: str | os.PathLike,
    *,
    labels: Sequence[str],
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
) -> Records:
    """Read any CSV of images and labels into :class:`Records`.

    Args:
        csv_path: the CSV file (comma separated, one header line).
        labels: the declared label list, in column order of the result.
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

    Rows whose image file is missing are dropped and counted in ``dropped["image file missing"]``.

    >>> recs = read_csv_dataset("cxr.csv", labels=["Effusion", "Mass"], label_column="findings",
    ...                         aliases={"Pleural Effusion": "Effusion"})  # doctest: +SKIP
    >>> recs.labels[:2]  # doctest: +SKIP
    array([[1., 0.], [0., 0.]], dtype=float32)
    """
    csv_path = Path(csv_path)
    declared = check_label_list(labels)
    alias_map = check_aliases(aliases, declared)
    if label_column is not None and label_columns is not None:
        raise BenchError(
            f"{csv_path}: pass label_column={label_column!r} (one label-string column) or "
            "label_columns= (one column per label), not both"
        )
    table = read_table(csv_path)
    need_column(table, image_column, csv_path, role="image column")
    lines = line_numbers(len(table))

    if label_column is not None:
        if not separator:
            raise BenchError(f"{csv_path}: separator must be a non-empty string, got {separator!r}")
        need_column(table, label_column, csv_path, role="label column")
        y = _labels_from_strings(
            table[label_column], declared, alias_map, separator=separator, no_finding=no_finding,
            ignore_unknown=ignore_unknown, file=csv_path, column=label_column, lines=lines,
        )
    else:
        if label_columns is not None:
            if isinstance(label_columns, str):
                raise BenchError(f"label_columns must be a list of column names, got {label_columns!r}")
            for column in label_columns:
                need_column(table, column, csv_path, role="label column")
                target = alias_map[column] if column in alias_map else column
                if target not in declared:
                    raise BenchError(
                        f"{csv_path}: label column {column!r} is not a declared label"
                        f"{did_you_mean(column, declared)}; declare it in labels= or map it with aliases="
                    )
            candidates = list(label_columns)
        else:
            candidates = [c for c in table.columns if c != image_column]
        source = match_label_columns(candidates, declared, alias_map, csv_path, known=list(table.columns))
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
        blank = table[patient_column].isin(_BLANKS).to_numpy()
        if blank.any():
            raise BenchError(
                f"{csv_path} line {int(lines[blank.argmax()])}: patient column {patient_column!r} is empty "
                f"({int(blank.sum())} such row(s)); every row needs a patient id, or leave patient_column unset"
            )
    views = None
    if view_column is not None:
        need_column(table, view_column, csv_path, role="view column")
        views = table[view_column].where(~table[view_column].isin(_BLANKS), "").to_numpy(dtype=object)

    root = os.path.abspath(image_root if image_root is not None else csv_path.parent)
    paths = np.array([resolve_path(v, root) for v in images], dtype=object)
    keep = keep_existing(paths, f"{csv_path} (image root {root})", labels_only=labels_only)
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
