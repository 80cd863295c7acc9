"""CheXpert (v1.0 and v1.0-small): ``train.csv`` / ``valid.csv`` -> :class:`Records`.

Each CSV has the columns Path, Sex, Age, Frontal/Lateral, AP/PA and the 14 observations below,
each 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or blank (not mentioned in the report).

Label semantics (decided here, applied to every declared label):

* **Uncertain (-1)** follows ``uncertainty``: ``"ignore"`` -> NaN (default; the loss and the
  metrics mask it), ``"ones"`` -> 1, ``"zeros"`` -> 0 (the U-Ignore / U-Ones / U-Zeros policies
  of Irvin et al., AAAI 2019).
* **Blank (not mentioned)** -> 0 by default (``blank="zeros"``): this is CheXpert's own training
  convention, since a radiology report that does not mention a finding is read as negative.
  The convention is doubtful in one case, kept NaN: a row where *none* of the 14 observations is
  mentioned (the labeler extracted nothing from that report, so a row of zeros would claim a
  confidently normal study). ``blank="nan"`` keeps every blank as NaN (torchxrayvision's reading).
* **No Finding** is a column of the file but not a finding: it is 1 when no pathology is
  positive or uncertain. It is dropped from the default label list (:data:`CHEXPERT_FINDINGS`);
  declare it in ``labels=`` to keep it (it then follows the same uncertainty and blank rules).

Image paths in the CSV start with the dataset folder's own name
(``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``); they are resolved against the
folder holding ``train.csv``, whatever it is called now. ``root`` may be that folder or its parent.
The patient id is the ``patientNNNNN`` part of the path; the view is the AP/PA column ("AP", "PA",
"LL", "RL"), or "LATERAL" for a lateral image whose AP/PA cell is blank.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.data.labels import Records
from bench.data.reader import DatasetReader
from bench.data.section import DatasetSection
from bench.data.tables import (
    MISSING_IMAGE, check_aliases, check_label_list, keep_existing, line_numbers, match_label_columns,
    need_column, parse_values, read_table,
)
from bench.errors import BenchError, choices_text, did_you_mean
from bench.fields import CHOICE, Annotated, section

# The 14 observations, in the order of the CheXpert CSVs.
CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
# The default label list: the 13 observations without "No Finding" (the absence of the others).
CHEXPERT_FINDINGS: tuple[str, ...] = CHEXPERT_LABELS[1:]

UNCERTAINTY_POLICIES: dict[str, float] = {"ignore": float("nan"), "ones": 1.0, "zeros": 0.0}
BLANK_POLICIES: tuple[str, ...] = ("zeros", "nan")
SPLITS: dict[str, tuple[str, ...]] = {"train": ("train",), "valid": ("valid",), "both": ("train", "valid")}
VIEW_FILTERS: tuple[str, ...] = ("frontal", "lateral", "all")

_PATIENT = re.compile(r"(patient\d+)")
_SPLIT_DIRS = ("train", "valid", "test")


def _choice(key: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise BenchError(
            f"{key}={value!r} is not valid{did_you_mean(str(value), valid)}; "
            f"use one of {', '.join(repr(v) for v in valid)}"
        )
    return value


def find_chexpert_root(root: str | os.PathLike) -> Path:
    """The folder holding ``train.csv`` / ``valid.csv``: ``root`` itself or its only such subfolder.

    >>> find_chexpert_root("/data")  # doctest: +SKIP
    PosixPath('/data/CheXpert-v1.0-small')
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchError(f"{root}: CheXpert folder not found")
    has_csv = lambda d: (d / "train.csv").is_file() or (d / "valid.csv").is_file()  # noqa: E731
    if has_csv(root):
        return root.resolve()
    inner = sorted(d for d in root.iterdir() if d.is_dir() and has_csv(d))
    if len(inner) == 1:
        return inner[0].resolve()
    if len(inner) > 1:
        raise BenchError(
            f"{root}: several CheXpert folders ({', '.join(d.name for d in inner)}); pass one of them as root"
        )
    raise BenchError(
        f"{root}: no train.csv or valid.csv here nor in a subfolder; pass the CheXpert-v1.0(-small) folder"
    )


def chexpert_image_path(value: str, dataset_dir: Path) -> str:
    """Absolute path of a CSV ``Path`` value: its first part (the dataset folder's name) is dropped.

    >>> chexpert_image_path("CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", Path("/d/cx"))
    '/d/cx/valid/patient64541/study1/view1_frontal.jpg'
    """
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if parts and parts[0] == "/":
        return os.path.abspath(value)
    if parts and parts[0] not in _SPLIT_DIRS:
        parts = parts[1:]
    return os.path.abspath(os.path.join(dataset_dir, *parts))


def _view_of(frontal_lateral: pd.Series, ap_pa: pd.Series | None) -> np.ndarray:
    side = np.asarray(ap_pa.str.upper() if ap_pa is not None else [""] * len(frontal_lateral), dtype=object)
    lateral = (frontal_lateral == "Lateral").to_numpy()
    return np.where(lateral & (side == ""), "LATERAL", side).astype(object)


def _read_split(
    csv_path: Path,
    dataset_dir: Path,
    declared: list[str],
    aliases: dict[str, str | None],
    *,
    uncertain_value: float,
    blank: str,
) -> dict[str, np.ndarray]:
    table = read_table(csv_path)
    need_column(table, "Path", csv_path, role="image column")
    need_column(table, "Frontal/Lateral", csv_path)
    lines = line_numbers(len(table))
    observations = [c for c in table.columns if c in CHEXPERT_LABELS or c in aliases]
    source = match_label_columns(observations, declared, aliases, csv_path, known=CHEXPERT_LABELS)

    raw = {c: parse_values(table[c], (1.0, 0.0, -1.0), file=csv_path, column=c, lines=lines)
           for c in observations}
    mentioned = np.zeros(len(table), dtype=bool)
    for values in raw.values():
        mentioned |= ~np.isnan(values)
    y = np.empty((len(table), len(declared)), dtype=np.float32)
    for j, label in enumerate(declared):
        values = raw[source[label]].copy()
        if blank == "zeros":
            values[np.isnan(values) & mentioned] = 0.0
        values[values == -1.0] = uncertain_value
        y[:, j] = values

    bad = ~table["Frontal/Lateral"].isin(("Frontal", "Lateral")).to_numpy()
    if bad.any():
        i = int(bad.argmax())
        raise BenchError(
            f"{csv_path} line {int(lines[i])}: column 'Frontal/Lateral' has value "
            f"{table['Frontal/Lateral'].iloc[i]!r}; valid values are 'Frontal', 'Lateral'"
        )
    patients = table["Path"].str.extract(_PATIENT, expand=False)
    missing = patients.isna().to_numpy()
    if missing.any():
        i = int(missing.argmax())
        raise BenchError(
            f"{csv_path} line {int(lines[i])}: no patient id (patientNNNNN) in Path {table['Path'].iloc[i]!r}"
        )
    return {
        "labels": y,
        "image_ids": table["Path"].to_numpy(dtype=object),
        "paths": np.array([chexpert_image_path(v, dataset_dir) for v in table["Path"]], dtype=object),
        "patients": patients.to_numpy(dtype=object),
        "views": _view_of(table["Frontal/Lateral"], table["AP/PA"] if "AP/PA" in table.columns else None),
        "lateral": (table["Frontal/Lateral"] == "Lateral").to_numpy(),
    }


def read_chexpert(
    root: str | os.PathLike,
    *,
    split: str = "train",
    uncertainty: str = "ignore",
    views: str = "frontal",
    labels: Sequence[str] | None = None,
    aliases: Mapping[str, str | None] | None = None,
    labels_only: bool = False,
    blank: str = "zeros",
    missing_remedy: str = "point the image root at the folder holding them, or pass labels_only=True",
) -> Records:
    """Read CheXpert's ``train.csv``, ``valid.csv`` or both into :class:`Records`.

    Args:
        root: the CheXpert-v1.0(-small) folder, or the folder that holds it.
        split: ``"train"``, ``"valid"`` or ``"both"``.
        uncertainty: what -1 becomes: ``"ignore"`` (NaN), ``"ones"`` (1) or ``"zeros"`` (0).
        views: keep ``"frontal"`` images, ``"lateral"`` ones, or ``"all"``; the others are counted
            in ``dropped`` ("lateral view" / "frontal view").
        labels: declared labels (default :data:`CHEXPERT_FINDINGS`, or those renamed by ``aliases``).
        aliases: CheXpert column -> declared label, e.g. ``{"Pleural Effusion": "Effusion"}``.
        labels_only: keep rows whose image file is missing (no file checks at all).
        blank: ``"zeros"`` (blank -> 0 except in rows that mention nothing) or ``"nan"``.
        missing_remedy: what the error says to do when none of the images exists (the caller's options).

    >>> recs = read_chexpert("/data/CheXpert-v1.0-small", uncertainty="ones")  # doctest: +SKIP
    >>> recs.label_names[:2], recs.views[0], recs.patients[0]  # doctest: +SKIP
    (('Enlarged Cardiomediastinum', 'Cardiomegaly'), 'AP', 'patient00001')
    """
    _choice("split", split, tuple(SPLITS))
    _choice("uncertainty", uncertainty, tuple(UNCERTAINTY_POLICIES))
    _choice("views", views, VIEW_FILTERS)
    _choice("blank", blank, BLANK_POLICIES)
    if aliases is not None and not isinstance(aliases, Mapping):
        raise BenchError(f"aliases must be a dict of CheXpert column -> label, got {aliases!r}")
    if labels is None:
        renamed = [(aliases or {}).get(c, c) for c in CHEXPERT_FINDINGS]
        labels = [name for name in renamed if name is not None]
    declared = check_label_list(labels)
    alias_map = check_aliases(aliases, declared)
    for source in alias_map:
        if source not in CHEXPERT_LABELS:
            raise BenchError(
                f"aliases: {source!r} is not a CheXpert column{did_you_mean(source, CHEXPERT_LABELS)} "
                f"(columns: {choices_text(CHEXPERT_LABELS, limit=14)})"
            )

    dataset_dir = find_chexpert_root(root)
    parts = []
    for name in SPLITS[split]:
        csv_path = dataset_dir / f"{name}.csv"
        if not csv_path.is_file():
            raise BenchError(f"{csv_path}: file not found (split={split!r} needs {name}.csv)")
        parts.append(_read_split(csv_path, dataset_dir, declared, alias_map,
                                 uncertain_value=UNCERTAINTY_POLICIES[uncertainty], blank=blank))
    data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    ids = pd.Series(data["image_ids"])
    if ids.duplicated().any():
        raise BenchError(f"{dataset_dir}: image {ids[ids.duplicated()].iloc[0]!r} is listed twice")

    dropped: dict[str, int] = {}
    keep = np.ones(len(ids), dtype=bool)
    if views != "all":
        keep = data["lateral"] if views == "lateral" else ~data["lateral"]
        left_out = int((~keep).sum())
        if left_out:
            dropped["frontal view" if views == "lateral" else "lateral view"] = left_out
    present = keep_existing(data["paths"][keep], f"{dataset_dir} ({split})", labels_only=labels_only,
                            remedy=missing_remedy)
    if not present.all():
        dropped[MISSING_IMAGE] = int((~present).sum())
    index = np.flatnonzero(keep)[present]
    return Records(
        labels=data["labels"][index],
        label_names=tuple(declared),
        image_ids=data["image_ids"][index],
        paths=data["paths"][index],
        patients=data["patients"][index],
        views=data["views"][index],
        dropped=dropped,
        kind="chexpert",
        root=str(dataset_dir),
    )


@section
class CheXpertSection(DatasetSection):
    """The ``dataset`` section of ``kind: chexpert``."""

    kind: Literal["chexpert"] = "chexpert"
    split: Annotated[Literal["train", "valid", "both"], CHOICE] = "train"
    uncertainty: Annotated[Literal["ignore", "ones", "zeros"], CHOICE] = "ignore"  # what an uncertain (-1) becomes
    views: Annotated[Literal["frontal", "lateral", "all"], CHOICE] = "frontal"


class CheXpertReader(DatasetReader):
    """The ``chexpert`` kind: CheXpert's ``train.csv`` / ``valid.csv`` (:func:`read_chexpert`)."""

    config = CheXpertSection
    root_help = "the folder holding train.csv"
    official_split = "train.csv / valid.csv"

    def read(self, *, labels_only: bool = False) -> Records:
        ds = self.ds
        return read_chexpert(self.root, split=ds.split, uncertainty=ds.uncertainty, views=ds.views,
                             labels_only=labels_only,
                             missing_remedy="point dataset.root at the CheXpert folder whose images these are")

    def official_lists(self, rec: Records) -> tuple[np.ndarray, np.ndarray]:
        """train.csv's images train, valid.csv's test (``split: both`` reads both): each image's path says which."""
        if self.ds.split != "both":
            raise BenchError(f"protocol official: dataset.split is {self.ds.split!r}; set it to 'both' (train.csv "
                             "trains, valid.csv tests)")
        part = np.array([_split_of(i) for i in rec.image_ids], dtype=object)
        return part == "train", part == "valid"


def _split_of(image_id: str) -> str | None:
    """``train`` or ``valid``: the folder of a CheXpert path (``CheXpert-v1.0-small/valid/patient64541/...``)."""
    parts = PurePosixPath(str(image_id)).parts
    return next((p for p in parts[:2] if p in ("train", "valid")), None)
