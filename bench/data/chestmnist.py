"""MedMNIST ChestMNIST ``.npz`` files -> :class:`Records`.

ChestMNIST (Yang et al., Scientific Data 2023) is NIH ChestX-ray14 resized to 28, 64, 128 or 224 px:
``chestmnist.npz`` (28 px) or ``chestmnist_{64,128,224}.npz``, with the arrays ``{train,val,test}_images``
(uint8, (N, S, S)) and ``{train,val,test}_labels`` ((N, 14) of 0 / 1, in the NIH order of
:data:`bench.data.labels.NIH_LABELS`). The files are read where the user already has them; nothing
is downloaded.

ChestMNIST ships no patient ids and no view positions: ``patients`` is None (so splits fall back to
image-level stratification, and images of one patient may land on both sides of a split) and
``views`` are all "". The official test split is kept in ``official_test``. Images are addressed as
``npz:///abs/chestmnist_64.npz#train_images/12`` and decoded by :func:`bench.data.images.load_gray`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from bench.data.images import npz_path
from bench.data.labels import NIH_LABELS, Records
from bench.data.reader import DatasetReader
from bench.data.section import DatasetSection
from bench.data.tables import check_label_list
from bench.errors import BenchError, choices_text, did_you_mean
from bench.fields import CHOICE, PATH, STR, Annotated, optional, section

CHESTMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
CHESTMNIST_SPLITS: tuple[str, ...] = ("train", "val", "test")


def chestmnist_filename(size: int) -> str:
    """The MedMNIST file name for one image size.

    >>> chestmnist_filename(28), chestmnist_filename(64)
    ('chestmnist.npz', 'chestmnist_64.npz')
    """
    if size not in CHESTMNIST_SIZES:
        raise BenchError(f"size={size!r} is not a ChestMNIST size; use one of {', '.join(map(str, CHESTMNIST_SIZES))}")
    return "chestmnist.npz" if size == 28 else f"chestmnist_{size}.npz"


def find_chestmnist(path_or_root: str | os.PathLike, size: int | None = None) -> Path:
    """The ``.npz`` file: ``path_or_root`` itself, or the file for ``size`` inside that folder.

    >>> find_chestmnist("/data/medmnist", size=64)  # doctest: +SKIP
    PosixPath('/data/medmnist/chestmnist_64.npz')
    """
    path = Path(path_or_root).expanduser()
    if size is not None:
        chestmnist_filename(size)  # validates size
    if path.is_file():
        return path.resolve()
    if not path.is_dir():
        raise BenchError(f"{path}: no such ChestMNIST file or folder")
    if size is not None:
        file = path / chestmnist_filename(size)
        if not file.is_file():
            raise BenchError(f"{file}: file not found (size={size} reads {file.name})")
        return file.resolve()
    found = [path / chestmnist_filename(s) for s in CHESTMNIST_SIZES if (path / chestmnist_filename(s)).is_file()]
    if len(found) == 1:
        return found[0].resolve()
    if not found:
        raise BenchError(
            f"{path}: no ChestMNIST file here (expected one of "
            f"{', '.join(chestmnist_filename(s) for s in CHESTMNIST_SIZES)})"
        )
    raise BenchError(
        f"{path}: several ChestMNIST files ({', '.join(f.name for f in found)}); "
        f"pass size= one of {', '.join(str(s) for s in CHESTMNIST_SIZES if (path / chestmnist_filename(s)).is_file())}"
    )


def _npy_shape(file: Path, zf: zipfile.ZipFile, key: str) -> tuple[int, ...]:
    """Shape of one array in a ``.npz`` from its header, without reading the pixels."""
    with zf.open(f"{key}.npy") as fp:
        try:
            version = np.lib.format.read_magic(fp)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = reader(fp)
        except ValueError as exc:
            raise BenchError(f"{file}: array {key!r} has a corrupt header ({exc})") from None
    return tuple(shape)


def read_chestmnist(
    path_or_root: str | os.PathLike,
    *,
    size: int | None = None,
    split: str = "all",
    labels: Sequence[str] | None = None,
) -> Records:
    """Read a ChestMNIST ``.npz`` (one split or all three) into :class:`Records`.

    Args:
        path_or_root: the ``.npz`` file, or a folder holding ``chestmnist[_SIZE].npz``.
        size: 28, 64, 128 or 224; picks the file in a folder, and is checked against a given file.
        split: ``"all"`` (train, val and test, in that order), ``"train"``, ``"val"`` or ``"test"``.
        labels: NIH label names to keep, in that order (default: all 14).

    >>> recs = read_chestmnist("/data/medmnist", size=64, split="train")  # doctest: +SKIP
    >>> recs.paths[0]  # doctest: +SKIP
    'npz:///data/medmnist/chestmnist_64.npz#train_images/0'
    """
    valid_splits = ("all",) + CHESTMNIST_SPLITS
    if split not in valid_splits:
        raise BenchError(
            f"split={split!r} is not valid{did_you_mean(str(split), valid_splits)}; "
            f"use one of {', '.join(repr(s) for s in valid_splits)}"
        )
    names = list(NIH_LABELS) if labels is None else check_label_list(labels)
    for name in names:
        if name not in NIH_LABELS:
            raise BenchError(
                f"labels: {name!r} is not a ChestMNIST (NIH) label{did_you_mean(name, NIH_LABELS)} "
                f"(valid: {choices_text(NIH_LABELS, limit=14)})"
            )
    file = find_chestmnist(path_or_root, size)
    splits = CHESTMNIST_SPLITS if split == "all" else (split,)

    try:
        with zipfile.ZipFile(file) as zf:
            keys = sorted(n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy"))
            for s in splits:
                for key in (f"{s}_images", f"{s}_labels"):
                    if key not in keys:
                        raise BenchError(
                            f"{file}: no array {key!r}{did_you_mean(key, keys)} (arrays: {choices_text(keys)})"
                        )
            shapes = {s: _npy_shape(file, zf, f"{s}_images") for s in splits}
        with np.load(file, allow_pickle=False) as z:
            ys = {s: np.asarray(z[f"{s}_labels"]) for s in splits}
    except (zipfile.BadZipFile, OSError) as exc:
        raise BenchError(f"{file}: not a readable .npz file ({exc})") from None

    ids, paths, blocks, test = [], [], [], []
    for s in splits:
        shape, y = shapes[s], ys[s]
        if len(shape) not in (3, 4) or shape[1] != shape[2]:
            raise BenchError(f"{file}: array '{s}_images' has shape {shape}; expected (N, S, S) square images")
        if size is not None and shape[1] != size:
            raise BenchError(
                f"{file}: images are {shape[1]} px but size={size}; pass size={shape[1]} or the right file"
            )
        if y.ndim != 2 or y.shape != (shape[0], len(NIH_LABELS)):
            raise BenchError(
                f"{file}: array '{s}_labels' has shape {y.shape}; expected ({shape[0]}, {len(NIH_LABELS)}) "
                "to match the images and the 14 NIH labels"
            )
        bad = ~np.isin(y, (0, 1))
        if bad.any():
            raise BenchError(f"{file}: array '{s}_labels' has value {y[bad][0].item()!r}; valid values are 0, 1")
        n = shape[0]
        blocks.append(y.astype(np.float32))
        ids.extend(f"{file.stem}/{s}/{i}" for i in range(n))
        base = npz_path(file, f"{s}_images", 0)[:-1]  # "npz:///abs/file.npz#train_images/"
        paths.extend(f"{base}{i}" for i in range(n))
        test.append(np.full(n, s == "test"))

    y = np.concatenate(blocks) if blocks else np.zeros((0, len(NIH_LABELS)), np.float32)
    order = [NIH_LABELS.index(name) for name in names]
    return Records(
        labels=y[:, order],
        label_names=tuple(names),
        image_ids=np.array(ids, dtype=object),
        paths=np.array(paths, dtype=object),
        patients=None,
        kind="chestmnist",
        root=str(file),
        official_test=np.concatenate(test),
    )


@section
class ChestMNISTSection(DatasetSection):
    """The ``dataset`` section of ``kind: chestmnist``."""

    kind: Literal["chestmnist"] = "chestmnist"
    file: Annotated[str | None, optional(STR), PATH] = None  # a chestmnist*.npz (default: the one in root)
    split: Annotated[Literal["all", "train", "val", "test"], CHOICE] = "train"  # MedMNIST's split(s) to read


class ChestMNISTReader(DatasetReader):
    """The ``chestmnist`` kind: a MedMNIST ``chestmnist*.npz`` (:func:`read_chestmnist`)."""

    config = ChestMNISTSection
    root_help = "the folder holding chestmnist_64.npz, or give dataset.file"

    @classmethod
    def implied_root(cls, ds) -> str | None:
        return ds.root if ds.file else None

    @property
    def target(self) -> Path:
        return Path(self.ds.file) if self.ds.file else self.root

    def check_root(self) -> None:
        if not self.target.exists():
            raise BenchError(f"dataset.{'file' if self.ds.file else 'root'}: {str(self.target)!r} does not exist "
                             "(a MedMNIST chestmnist*.npz file or the folder holding it)")

    def read(self, *, labels_only: bool = False) -> Records:
        return read_chestmnist(self.target, split=self.ds.split)
