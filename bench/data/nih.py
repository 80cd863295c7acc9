"""NIH ChestX-ray14 reader (also reads the built-in synthetic dataset, which uses the same layout).

Layout (as released by the NIH Clinical Center)::

    ROOT/Data_Entry_2017.csv  or  Data_Entry_2017_v2020.csv
    ROOT/BBox_List_2017.csv                      (optional; 984 boxes on 880 images)
    ROOT/images/*.png                            (one flat folder) or
    ROOT/images_001/images/*.png ...             (the archives' nesting)
    ROOT/train_val_list.txt, ROOT/test_list.txt  (optional official split)

Rows whose image is absent are dropped and counted (a partial download is normal). Boxes are
given in the 1024x1024 pixel space of the released PNGs; they are scaled by the stored image's
width / 1024 (and height / 1024). The box file's ``Infiltrate`` is the label file's ``Infiltration``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from bench.data.labels import BOX_COLUMNS, NIH_LABELS, Records
from bench.data.reader import DatasetReader
from bench.data.section import DatasetSection
from bench.fields import CHOICE, PATH, STR, Annotated, optional, section
from bench.errors import BenchError, did_you_mean

log = logging.getLogger(__name__)

LABEL_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
BOX_FILE = "BBox_List_2017.csv"
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
BOX_ALIASES = {"Infiltrate": "Infiltration"}
NO_FINDING = "No Finding"
NIH_SPACE = 1024.0
TRAIN_LIST, TEST_LIST = "train_val_list.txt", "test_list.txt"


def find_label_file(root: Path) -> Path:
    for name in LABEL_FILES:
        if (root / name).is_file():
            return root / name
    raise BenchError(f"{root}: no NIH label file found (expected {' or '.join(LABEL_FILES)})")


def index_images(root: Path) -> dict[str, str]:
    """Image file name -> absolute path, for ``images/`` and ``images_NNN/images/`` folders."""
    found: dict[str, str] = {}
    folders = []
    if (root / "images").is_dir():
        folders.append(root / "images")
    folders += sorted(p / "images" for p in root.glob("images_*") if (p / "images").is_dir())
    folders += sorted(p for p in root.glob("images_*") if p.is_dir() and not (p / "images").is_dir())
    for folder in folders:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.lower().endswith((".png", ".jpg", ".jpeg")) and entry.is_file():
                    found.setdefault(entry.name, entry.path)
    return found


def read_nih(root: str | os.PathLike, *, labels: Sequence[str] | None = None, label_file: str | None = None,
             box_file: str | None = None, labels_only: bool = False, official_test: str = "ignore",
             test_list: str | None = None) -> Records:
    """Read an NIH ChestX-ray14 folder into :class:`Records`.

    Args:
        root: the dataset folder.
        labels: keep only these findings (default: all 14).
        label_file, box_file: override the file locations.
        labels_only: keep every row of the label file even if its image is absent (to describe or
            split a dataset before the images are downloaded).
        official_test: ``ignore`` or ``exclude`` the images listed in ``test_list.txt``.
        test_list: that list's location (default: ``root/test_list.txt``).

    >>> r = read_nih("../shared/data/nih-cxr14")  # doctest: +SKIP
    >>> len(r), r.dropped  # doctest: +SKIP
    (1891, {'image file missing': 110229})
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchError(f"dataset root {str(root)!r} does not exist or is not a folder")
    lf = Path(label_file) if label_file else find_label_file(root)
    if not lf.is_file():
        raise BenchError(f"{lf}: label file not found")
    try:
        df = pd.read_csv(lf, dtype={"Patient ID": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise BenchError(f"{lf}: cannot parse the label file ({str(exc).splitlines()[0]})") from None
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise BenchError(f"{lf}: column {col!r} is missing{did_you_mean(col, df.columns)} "
                             f"(found: {', '.join(map(str, df.columns[:12]))})")
    if len(df) == 0:
        raise BenchError(f"{lf}: the label file has no rows")
    ids = df["Image Index"].astype(str).str.strip()
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise BenchError(f"{lf}:{i + 2}: duplicate image row {ids.iloc[i]!r} (each image must appear once)")
    patients = df["Patient ID"].astype(str).str.strip()
    empty = (patients == "") | (patients.str.lower() == "nan")
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise BenchError(f"{lf}:{i + 2}: patient id is missing for image {ids.iloc[i]!r}")

    # Labels: one column per finding.
    findings = df["Finding Labels"].astype(str).str.split("|")
    exploded = findings.explode().str.strip()
    known = set(NIH_LABELS) | {NO_FINDING, ""}
    unknown = sorted(set(exploded) - known)
    if unknown:
        row = int(exploded.index[exploded == unknown[0]][0])
        raise BenchError(f"{lf}:{row + 2}: unknown finding {unknown[0]!r}{did_you_mean(unknown[0], NIH_LABELS)} "
                         f"(NIH findings: {', '.join(NIH_LABELS)}, or {NO_FINDING!r})")
    wanted = tuple(labels) if labels else NIH_LABELS
    for name in wanted:
        if name not in NIH_LABELS:
            raise BenchError(f"dataset.labels: {name!r} is not an NIH finding{did_you_mean(name, NIH_LABELS)} "
                             f"(choose from: {', '.join(NIH_LABELS)})")
    y = np.zeros((len(df), len(wanted)), dtype=np.float32)
    col_of = {n: j for j, n in enumerate(wanted)}
    rows = exploded.index.to_numpy()
    cols = exploded.map(col_of)
    keep = cols.notna().to_numpy()
    y[rows[keep], cols[keep].astype(int).to_numpy()] = 1.0

    views = df["View Position"].astype(str).to_numpy(dtype=object) if "View Position" in df.columns else None
    dropped: dict[str, int] = {}
    present = np.ones(len(df), dtype=bool)
    if labels_only:
        paths = np.array([str(root / "images" / i) for i in ids], dtype=object)
    else:
        index = index_images(root)
        paths = ids.map(index).to_numpy(dtype=object)
        present = pd.notna(paths)
        if not present.any():
            raise BenchError(f"{root}: none of the {len(df):,} images in {lf.name} were found under "
                             f"{root / 'images'} or {root / 'images_*/images'}")
        if (~present).sum():
            dropped["image file missing"] = int((~present).sum())
            log.info("%s: %d of %d label rows have no image and are dropped", root, (~present).sum(), len(df))

    official = _official_test(Path(test_list) if test_list else root / TEST_LIST, ids)
    if official is not None and official_test == "exclude":
        n = int((official & present).sum())
        if n:
            dropped["in the official test list"] = n
        present &= ~official

    rec = Records(labels=y, label_names=wanted, image_ids=ids.to_numpy(dtype=object), paths=paths,
                  patients=patients.to_numpy(dtype=object), views=views, dropped=dropped, kind="nih",
                  root=str(root), official_test=official)
    rec = rec.subset(np.flatnonzero(present)) if not present.all() else rec

    bf = Path(box_file) if box_file else root / BOX_FILE
    if bf.is_file():
        rec.boxes = read_boxes(bf, set(ids), rec, labels_only=labels_only)
    elif box_file:
        raise BenchError(f"{bf}: box file not found")
    return rec


def _official_test(test_list: Path, ids: pd.Series) -> np.ndarray | None:
    if not test_list.is_file():
        return None
    return ids.isin(read_list(test_list)).to_numpy()


def read_list(path: Path) -> set[str]:
    """The image names of an NIH list file (one per line, blank lines skipped)."""
    return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}


def official_lists(image_ids, root: Path, *, train_list: str | None = None,
                   test_list: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masks over ``image_ids``: (in ``train_val_list.txt``, in ``test_list.txt``), read from ``root`` or the
    given files; a missing file is a one-line error naming it; an image on both lists is refused.

    >>> official_lists(["a.png"], Path("/nowhere"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    bench.errors.BenchError: protocol official: '/nowhere/train_val_list.txt' not found (NIH's official training list...
    """
    ids = pd.Series([str(i) for i in image_ids])
    masks = []
    for given, default, what, key in ((train_list, TRAIN_LIST, "training", "train_list"),
                                      (test_list, TEST_LIST, "test", "test_list")):
        path = Path(given) if given else Path(root) / default
        if not path.is_file():
            raise BenchError(f"protocol official: {str(path)!r} not found (NIH's official {what} list; put it in "
                             f"dataset.root, name it with dataset.{key}, or use protocol.kind: kfold)")
        masks.append(ids.isin(read_list(path)).to_numpy())
    both = masks[0] & masks[1]
    if both.any():
        raise BenchError(f"protocol official: image {ids[both].iloc[0]!r} is on both the training and the test list "
                         f"({int(both.sum())} such images)")
    return masks[0], masks[1]


def read_boxes(path: Path, all_ids: set[str], rec: Records, *, labels_only: bool = False) -> pd.DataFrame:
    """Read ``BBox_List_2017.csv`` and scale its 1024-px boxes to the stored images' pixels.

    Boxes naming an image that is not in the label file, naming an unknown finding or lying
    outside the 1024-px frame are errors; boxes on images that are absent are dropped.
    """
    try:
        raw = pd.read_csv(path, header=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BenchError(f"{path}: cannot parse the box file ({str(exc).splitlines()[0]})") from None
    if raw.shape[1] < 6 or "Image Index" not in raw.columns or "Finding Label" not in raw.columns:
        raise BenchError(f"{path}: expected the header 'Image Index,Finding Label,Bbox [x,y,w,h]' "
                         f"(found: {', '.join(map(str, raw.columns[:6]))})")
    xywh = raw.iloc[:, 2:6].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(xywh).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BenchError(f"{path}:{i + 2}: box coordinates are not numbers ({raw.iloc[i, 2:6].tolist()})")
    img = raw["Image Index"].astype(str).str.strip().to_numpy()
    lab = raw["Finding Label"].astype(str).str.strip().map(lambda s: BOX_ALIASES.get(s, s)).to_numpy()
    for i, (name, label) in enumerate(zip(img, lab)):
        if name not in all_ids:
            raise BenchError(f"{path}:{i + 2}: box names image {name!r}, which is not in the label file")
        if label not in NIH_LABELS:
            raise BenchError(f"{path}:{i + 2}: box finding {label!r} is not an NIH finding"
                             f"{did_you_mean(label, NIH_LABELS)}")
    x, y, w, h = xywh.T
    outside = (x < -1) | (y < -1) | (w <= 0) | (h <= 0) | (x + w > NIH_SPACE + 1) | (y + h > NIH_SPACE + 1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise BenchError(f"{path}:{i + 2}: box {xywh[i].round(1).tolist()} of {img[i]!r} lies outside the "
                         f"1024x1024 image frame (x, y >= 0, w, h > 0, x + w and y + h <= 1024)")
    kept_ids = set(rec.image_ids)
    keep = np.array([n in kept_ids for n in img]) & np.isin(lab, list(rec.label_names))
    n_absent = int((~np.array([n in kept_ids for n in img])).sum())
    if n_absent:
        rec.dropped["boxes on absent images"] = n_absent
    out = pd.DataFrame({"image_id": img[keep], "label": lab[keep], "x": x[keep], "y": y[keep],
                        "w": w[keep], "h": h[keep]})
    # Scale from the 1024-px release space to the stored image's pixels.
    path_of = dict(zip(rec.image_ids, rec.paths))
    sizes = {}
    if not labels_only:
        from bench.data.images import image_size

        for name in pd.unique(out["image_id"]):
            try:
                sizes[name] = image_size(path_of[name])
            except OSError:
                sizes[name] = (np.nan, np.nan)
    wh = np.array([sizes.get(n, (NIH_SPACE, NIH_SPACE)) for n in out["image_id"]], dtype=np.float64).reshape(-1, 2)
    sx, sy = wh[:, 0] / NIH_SPACE, wh[:, 1] / NIH_SPACE
    out["x"] *= sx
    out["w"] *= sx
    out["y"] *= sy
    out["h"] *= sy
    out["img_w"], out["img_h"] = wh[:, 0], wh[:, 1]
    return out[list(BOX_COLUMNS)].reset_index(drop=True)


@section
class NIHSection(DatasetSection):
    """The ``dataset`` section of ``kind: nih``."""

    kind: Literal["nih"] = "nih"
    label_file: Annotated[str | None, optional(STR), PATH] = None  # default: Data_Entry_2017(_v2020).csv in root
    box_file: Annotated[str | None, optional(STR), PATH] = None    # default: BBox_List_2017.csv in root
    official_test: Annotated[Literal["ignore", "exclude"], CHOICE] = "ignore"  # exclude: drop test_list.txt's
    train_list: Annotated[str | None, optional(STR), PATH] = None  # default: train_val_list.txt in root
    test_list: Annotated[str | None, optional(STR), PATH] = None   # default: test_list.txt in root


class NIHReader(DatasetReader):
    """The ``nih`` kind: NIH ChestX-ray14 (:func:`read_nih`)."""

    config = NIHSection
    root_help = "the folder holding Data_Entry_2017.csv and images/"
    missing_root = "download NIH ChestX-ray14 there, or use kind: synthetic for the built-in data"
    official_split = "train_val_list.txt / test_list.txt"

    def check_root(self) -> None:
        if not self.root.exists():
            raise BenchError(f"dataset.root: {str(self.root)!r} does not exist ({self.missing_root})")

    def read(self, *, labels_only: bool = False) -> Records:
        ds = self.ds
        return read_nih(self.root, label_file=ds.label_file, box_file=ds.box_file, labels_only=labels_only,
                        official_test=ds.official_test, test_list=ds.test_list)

    def official_lists(self, rec: Records) -> tuple[np.ndarray, np.ndarray]:
        return official_lists(rec.image_ids, self.root, train_list=getattr(self.ds, "train_list", None),
                              test_list=getattr(self.ds, "test_list", None))
