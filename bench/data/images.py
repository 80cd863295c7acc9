"""Decode any chest X-ray image into 8-bit grayscale.

PNG / JPEG in modes L, LA, P, RGB, RGBA, I;16 and I are read with Pillow; 16-bit and 32-bit
images are scaled linearly from their own minimum-maximum range to 0..255 (X-ray exports use
8, 10, 12 or 16 significant bits, so a fixed divisor would leave many images black).
Arrays stored in ``.npz`` files (MedMNIST) are addressed as ``npz:///abs/file.npz#train_images/12``.
DICOM files (named ``.dcm`` / ``.dicom`` / ``.dic``, or any file with the ``DICM`` preamble) are decoded by
:mod:`bench.data.dicom` (rescale, VOI LUT or window, MONOCHROME1 inverted).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from bench.data import dicom

NPZ_SCHEME = "npz://"


class ImageReadError(Exception):
    """An image that exists but cannot be decoded (corrupt, zero bytes, unsupported)."""


def npz_path(file: str | Path, key: str, index: int) -> str:
    """Address of one image inside a ``.npz`` array: ``npz:///abs/file.npz#key/index``."""
    return f"{NPZ_SCHEME}{Path(file).resolve()}#{key}/{int(index)}"


@functools.lru_cache(maxsize=4)
def _npz_array(file: str, key: str) -> np.ndarray:
    with np.load(file, allow_pickle=False) as z:
        return z[key]


def to_gray_u8(arr: np.ndarray) -> np.ndarray:
    """Any 2-D or (H, W, C) array -> (H, W) uint8; wide types scaled from their own range."""
    a = np.asarray(arr)
    if a.ndim == 3:
        if a.shape[2] in (2, 4):  # drop alpha
            a = a[..., : a.shape[2] - 1]
        a = a.mean(axis=2) if a.shape[2] == 3 else a[..., 0]
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if hi <= 255 and lo >= 0 and np.issubdtype(np.asarray(arr).dtype, np.integer) and hi > 1:
        return a.astype(np.uint8)
    if hi - lo <= 0:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.clip(np.round((a - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def load_gray(path: str) -> np.ndarray:
    """Read one image as (H, W) uint8 grayscale.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file exists but is empty, truncated or not an image.
        bench.data.dicom.MissingDecoderError: a compressed DICOM file whose decoder is not installed.
    """
    if str(path).startswith(NPZ_SCHEME):
        file, _, ref = str(path)[len(NPZ_SCHEME):].partition("#")
        key, _, index = ref.rpartition("/")
        return to_gray_u8(_npz_array(file, key)[int(index)])
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if p.stat().st_size == 0:
        raise ImageReadError(f"{path}: zero-byte file")
    if dicom.is_dicom_name(p):
        return _load_dicom(path)
    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            if mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im)
            elif mode in ("RGB", "RGBA", "LA"):
                arr = np.asarray(im)
            else:  # P, CMYK, 1, ...
                arr = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError as exc:
        if dicom.has_preamble(p):  # a DICOM file named without its suffix
            return _load_dicom(path)
        raise ImageReadError(f"{path}: cannot decode image ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({exc})") from None
    return to_gray_u8(arr)


def _load_dicom(path: str) -> np.ndarray:
    try:
        return to_gray_u8(dicom.read_dicom(path))
    except dicom.DicomReadError as exc:
        raise ImageReadError(f"{path}: {exc}") from None


def image_size(path: str) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    if str(path).startswith(NPZ_SCHEME):
        h, w = load_gray(path).shape
        return w, h
    if dicom.is_dicom_name(path) or dicom.has_preamble(path):
        try:
            return dicom.dicom_size(path)
        except dicom.DicomReadError as exc:
            raise ImageReadError(f"{path}: {exc}") from None
    from PIL import Image

    with Image.open(path) as im:
        return im.size
