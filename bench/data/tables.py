"""Table helpers the CSV-based readers share (the generic CSV kind, CheXpert): reading a CSV as strings,
required columns, declared labels and aliases, label columns, cell values, image paths and line numbers.

Every problem is a one-line :class:`~bench.errors.BenchError` naming the file (and line, counting the
header as line 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.data.images import NPZ_SCHEME
from bench.errors import BenchError, choices_text, did_you_mean

MISSING_IMAGE = "image file missing"
BLANKS = frozenset({"", "nan", "NaN", "NA", "N/A", "null", "None"})


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
    aliases_key: str = "aliases=",
) -> dict[str, str]:
    """Map each declared label to the one file column holding it (its own name or an alias).

    ``known`` lists the names to suggest in the error (default: ``columns``); ``aliases_key`` is how the
    messages name the aliases option (``aliases=``, or a grid's ``dataset.aliases``).

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
                + ("keep one (aliases) or merge them afterwards with bench.data.harmonise.harmonise"
                   if aliases_key == "aliases=" else
                   f"keep one (map the other to null in {aliases_key})")
            )
        source[target] = column
    known = list(columns if known is None else known)
    for label in declared:
        if label not in source:
            raise BenchError(
                f"{file}: no column for label {label!r}{did_you_mean(label, known)} "
                f"(file has: {choices_text(known)}; map a differently named column with {aliases_key})"
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
    blank = text.isin(BLANKS).to_numpy()
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


def keep_existing(paths: np.ndarray, where: str, *, labels_only: bool,
                  remedy: str = "point the image root at the folder holding them, or pass labels_only=True"
                  ) -> np.ndarray:
    """Boolean mask of rows whose image exists (all True when ``labels_only``).

    Raises a :class:`BenchError` when none of the images exists: a wrong root, not a dataset; ``remedy``
    says what to change (the caller's own option names).

    >>> keep_existing(np.array(["/nowhere/a.png"]), "list.csv", labels_only=True)
    array([ True])
    """
    if labels_only or len(paths) == 0:
        return np.ones(len(paths), dtype=bool)
    keep = np.fromiter((image_exists(p) for p in paths), dtype=bool, count=len(paths))
    if not keep.any():
        raise BenchError(
            f"{where}: none of the {len(paths)} images exists (first: {paths[0]}); {remedy}"
        )
    return keep


def line_numbers(n: int) -> np.ndarray:
    """File line of each data row: the header is line 1.

    >>> line_numbers(3)
    array([2, 3, 4])
    """
    return np.arange(n, dtype=np.int64) + 2
