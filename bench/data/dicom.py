"""Decode a DICOM radiograph into what a viewer shows, as 8-bit grayscale (through ``pydicom``).

The steps are the standard's display pipeline, each done by pydicom where it has the function:

1. the stored pixel values (``Dataset.pixel_array``);
2. the Modality LUT: Rescale Slope / Intercept or a Modality LUT Sequence (``apply_modality_lut``);
3. the VOI LUT Sequence, else the first Window Center / Width (``apply_voi_lut``; LINEAR, LINEAR_EXACT or
   SIGMOID as the file's VOI LUT Function says);
4. the result's range mapped linearly to 0..255. That range is the VOI LUT's output range (0 .. 2**bits - 1
   of its LUT Descriptor, or of the bits its entries use where a 10- to 16-bit descriptor overstates them),
   else the stored range (0 .. 2**Bits Stored - 1, or its signed counterpart) passed
   through the Modality LUT, which is also the range a window maps into. With no window the whole stored range
   is shown, as a viewer without a preset would: it is the header's statement of the depth, 8, 12 or 16 bits;
5. MONOCHROME1 (0 = white) inverted, so that every image of the cache has bright bones.

Decisions: a multi-frame file (Number of Frames > 1) is refused, because which frame is *the* radiograph
cannot be known (a tomosynthesis stack, a cine); a colour file (RGB, YBR_*) is returned as RGB and becomes gray
as a colour PNG does (the mean of its channels); other photometric interpretations (PALETTE COLOR, ...) and
files without pixel data (a structured report, a presentation state) are refused. A refused or unreadable
file raises :class:`DicomReadError`, which the image cache lists and excludes like a corrupt PNG. Compressed
transfer syntaxes that pydicom cannot decode by itself or through Pillow (JPEG Lossless, JPEG-LS, HTJ2K)
need the ``dicom-compressed`` extra (pylibjpeg and its plugins); without it :class:`MissingDecoderError`
stops the build with one line naming the file and the extra, since every such file would fail alike.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import BenchError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: File name endings read as DICOM without looking inside (any other file is DICOM if it has the preamble).
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
#: The optional dependencies that decode every compressed transfer syntax (pyproject.toml's extra).
EXTRA = "dicom-compressed"
INSTALL_HINT = (f"install the {EXTRA!r} extra: pip install -e '.[{EXTRA}]' in the repository, or "
                "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg")
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT")


class DicomReadError(ValueError):
    """A DICOM file that is unreadable, or not a single-frame image this harness can show."""


class MissingDecoderError(BenchError):
    """Compressed pixel data whose decoder (the ``dicom-compressed`` extra) is not installed."""


def is_dicom_name(path: str | Path) -> bool:
    """True for a file named like a DICOM file (``.dcm``, ``.dicom``, ``.dic``, any case).

    >>> is_dicom_name("scans/IM0001.DCM"), is_dicom_name("a.png")
    (True, False)
    """
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def has_preamble(path: str | Path) -> bool:
    """True when the file holds the DICOM Part 10 marker ``DICM`` after its 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _pydicom():
    try:
        import pydicom
    except ImportError:  # a dependency of the project; only an environment installed before it was added lacks it
        raise BenchError("reading DICOM images needs pydicom: pip install pydicom (or pip install -e . again)") \
            from None
    return pydicom


def _read_errors() -> tuple[type[BaseException], ...]:
    """What pydicom raises on a truncated, corrupt or malformed file (it has no single base exception)."""
    from pydicom.errors import InvalidDicomError

    return (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError,
            NotImplementedError, RuntimeError, OverflowError, struct.error)


def _open(path: str | Path, *, pixels: bool) -> "Dataset":
    pydicom = _pydicom()
    if Path(path).stat().st_size == 0:
        raise DicomReadError("zero-byte file")
    try:
        # force: a file named .dcm without the preamble (older exports) is still read; a file that is not
        # DICOM at all then has no pixel data and is refused below.
        return pydicom.dcmread(path, force=True, stop_before_pixels=not pixels)
    except _read_errors() as exc:
        raise DicomReadError(f"cannot read DICOM ({type(exc).__name__}: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The message on one line: its first line, and the next when the first only announces it (pydicom's
    "... raised by all available plugins:" and each plugin's reason)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [""]
    text = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return text[:200]


def dicom_size(path: str | Path) -> tuple[int, int]:
    """(width, height) = (Columns, Rows) from the header, without reading the pixels."""
    ds = _open(path, pixels=False)
    if "Rows" not in ds or "Columns" not in ds:
        raise DicomReadError("not an image (no Rows / Columns)")
    return int(ds.Columns), int(ds.Rows)


def _check_image(ds: "Dataset", path: str | Path) -> str:
    """The photometric interpretation of a readable single-frame image; refuses anything else."""
    if "PixelData" not in ds:
        if not getattr(ds, "file_meta", None):
            raise DicomReadError("not a DICOM file (no 'DICM' marker and no Pixel Data)")
        kind = ds.get("SOPClassUID")
        what = f"; SOP Class {getattr(kind, 'name', kind)!r}" if kind else ""
        raise DicomReadError(f"not an image (no Pixel Data{what})")
    frames = ds.get("NumberOfFrames")
    try:
        frames = int(frames) if frames not in (None, "") else 1
    except (TypeError, ValueError):
        raise DicomReadError(f"Number of Frames {frames!r} is not a number") from None
    if frames > 1:
        raise DicomReadError(f"multi-frame DICOM ({frames} frames); one radiograph per file is expected")
    pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if pi not in MONOCHROME + COLOUR:
        raise DicomReadError(f"photometric interpretation {pi or 'missing'!r} is not supported "
                             f"(expected {', '.join(MONOCHROME + COLOUR)})")
    ts = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if ts is not None and ts.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise DicomReadError(f"transfer syntax {ts.name!r} ({ts}) cannot be decoded as an image") from None
        if not decoder.is_available:
            raise MissingDecoderError(f"{path}: {ts.name} pixel data cannot be decoded without pylibjpeg; "
                                      + INSTALL_HINT)
    return pi


def _stored_range(ds: "Dataset") -> tuple[float, float]:
    """The range the Modality LUT's output can take (also the range pydicom's windowing maps into)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    lo, hi = (0, 2 ** bits - 1) if int(ds.get("PixelRepresentation", 0)) == 0 else (-2 ** (bits - 1),
                                                                                       2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return float(lo), float(hi)


def _voi_lut(ds: "Dataset"):
    """The first VOI LUT Sequence item when it is complete (descriptor and data), else None."""
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        return seq[0]
    return None


def _lut_output_max(ds: "Dataset", item) -> float:
    """The top of a VOI LUT's output range: 2**bits - 1 for the LUT Descriptor's bits per entry, or for the
    bits its entries actually use when a descriptor of 10 to 16 bits overstates them (some CR exports declare
    16 bits for 12-bit data; Cornerstone, Horos and dicom-rs read such LUTs the same way)."""
    from pydicom.pixels import apply_voi

    n, first, bits = (int(v) for v in item.LUTDescriptor)
    if bits > 8:
        entries = apply_voi(np.arange(first, first + (n or 2 ** 16)), ds, index=0)
        bits = min(bits, max(1, int(entries.max()).bit_length()))
    return float(2 ** bits - 1)


def to_display_u8(stored: np.ndarray, ds: "Dataset") -> np.ndarray:
    """Stored monochrome pixel values -> the 8-bit image a viewer shows (module steps 2 to 5).

    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation = "MONOCHROME1", 12, 0
    >>> ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    >>> to_display_u8(np.array([[0, 4095]], dtype=np.uint16), ds).tolist()
    [[255, 0]]
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    item = _voi_lut(ds)
    if item is not None:
        lo, hi = 0.0, _lut_output_max(ds, item)
        if int(item.LUTDescriptor[2]) == 8:
            # pydicom 3.0's apply_voi indexes an 8-bit LUT with uint8 indices, so the entries past 255 of a
            # 12-bit input wrap around; the same entries read as 16-bit ones are looked up exactly.
            item.LUTDescriptor = [*item.LUTDescriptor[:2], 16]
    else:
        lo, hi = _stored_range(ds)  # where a window (or nothing) maps to, as in pydicom's apply_windowing
    if not hi > lo:
        raise DicomReadError(f"empty display range [{lo:g}, {hi:g}] (check Bits Stored and the LUTs)")
    values = apply_modality_lut(stored, ds)
    if item is not None and not np.issubdtype(values.dtype, np.integer):
        values = np.round(values).astype(np.int64)  # a LUT is indexed by integers (a rescale gives floats)
    values = apply_voi_lut(values, ds, index=0)
    out = np.clip(np.round((np.asarray(values, dtype=np.float64) - lo) * (255.0 / (hi - lo))), 0, 255)
    out = out.astype(np.uint8)
    if str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1":
        out = 255 - out
    return out


def read_dicom(path: str | Path) -> np.ndarray:
    """One DICOM image: (H, W) uint8 for a monochrome file (displayed, module steps 1 to 5), (H, W, 3) RGB
    for a colour one.

    Raises:
        FileNotFoundError: the file does not exist.
        DicomReadError: unreadable, not an image, multi-frame, or an unsupported photometric interpretation.
        MissingDecoderError: compressed pixel data whose decoder is not installed.
    """
    ds = _open(path, pixels=True)
    pi = _check_image(ds, path)
    try:
        stored = ds.pixel_array  # colour: YBR converted to RGB by pydicom
        if pi in COLOUR:
            return np.asarray(stored)
        if stored.ndim != 2:
            raise DicomReadError(f"expected one 2-D monochrome frame, found pixel data of shape {stored.shape}")
        return to_display_u8(stored, ds)
    except DicomReadError:
        raise
    except _read_errors() as exc:
        hint = ""
        ts = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        if ts is not None and ts.is_compressed and importlib.util.find_spec("pylibjpeg") is None:
            hint = f"; the {EXTRA!r} extra may decode {ts.name}"  # e.g. 12-bit JPEG, which Pillow cannot read
        raise DicomReadError(f"cannot decode DICOM pixel data ({type(exc).__name__}: {_first_line(exc)}){hint}") \
            from None
