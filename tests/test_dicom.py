"""DICOM images: written here with pydicom from PNGs (synthetic ones always, the real NIH subset's when present),
each must decode to the same 8-bit image as its PNG; a CSV of DICOM files caches exactly as the CSV of its PNGs;
unreadable or non-image files are listed and excluded like a bad PNG; compressed pixel data decodes or says which
extra to install."""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    BasicTextSRStorage, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, JPEG2000Lossless,
    JPEGExtended12Bit, JPEGLosslessSV1, RLELossless,
)

from bench.data import dicom
from bench.data.cache import build_cache, exclude_bad
from bench.data.csvfile import read_csv_dataset
from bench.data.images import ImageReadError, image_size, load_gray
from bench.errors import BenchError


def write_dicom(path: Path, stored: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 8, *,
                preamble: bool = True, sop_class=DigitalXRayImageStorageForPresentation, **elements) -> Path:
    """A DICOM file holding ``stored`` (uncompressed, explicit VR little endian) and the given elements."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality = "DX"
    ds.PatientID = "p1"
    ds.set_pixel_data(stored, photometric, bits)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=preamble)
    return path


def voi_lut(descriptor: list[int], data: list[int]) -> list[Dataset]:
    item = Dataset()
    item.LUTDescriptor = descriptor
    item.add_new(0x00283006, "US", data)  # LUT Data: US or OW; pydicom needs the VR said
    return [item]


# Each variant stores an 8-bit gray image g (as uint8) in a way that must display as g again.
def _mono2_8(g):
    return g, "MONOCHROME2", 8, {}


def _mono1_8(g):  # stored inverted: 0 = white
    return 255 - g, "MONOCHROME1", 8, {}


def _rescale_12(g):  # 12 bits with a CT-like rescale: the whole stored range 0..4095 is shown
    return np.round(g.astype(np.int64) * 4095 / 255).astype(np.uint16), "MONOCHROME2", 12, {
        "RescaleSlope": 0.5, "RescaleIntercept": -1024}


def _mono1_rescale_12(g):
    return np.round((255 - g.astype(np.int64)) * 4095 / 255).astype(np.uint16), "MONOCHROME1", 12, {
        "RescaleSlope": 2, "RescaleIntercept": 7}


def _window_16(g):  # 16 bits using 1000..52000 only: the window (not the stored range) makes it g again
    return (1000 + g.astype(np.int64) * 200).astype(np.uint16), "MONOCHROME2", 16, {
        "WindowCenter": 26500.5, "WindowWidth": 51001}


def _signed_16(g):
    return (g.astype(np.int64) * 256 - 32768).astype(np.int16), "MONOCHROME2", 16, {}


def _voi_lut_12(g):  # a 4096-entry 8-bit VOI LUT that undoes a reversed 12-bit storage
    lut = [min(255, (4095 - i) // 16) for i in range(4096)]
    return (4095 - g.astype(np.int64) * 16).astype(np.uint16), "MONOCHROME2", 12, {
        "VOILUTSequence": voi_lut([4096, 0, 8], lut), "WindowCenter": 5, "WindowWidth": 3}  # the LUT wins


def _voi_lut_overstated_16(g):  # a LUT that declares 16 bits per entry but holds 12-bit values (some CR exports)
    lut = [i * 16 for i in range(256)]
    return g, "MONOCHROME2", 8, {"VOILUTSequence": voi_lut([256, 0, 16], lut)}


VARIANTS = {f.__name__[1:]: f for f in (_mono2_8, _mono1_8, _rescale_12, _mono1_rescale_12, _window_16, _signed_16,
                                        _voi_lut_12, _voi_lut_overstated_16)}
EXACT = {"mono2_8", "mono1_8", "rescale_12", "voi_lut_12"}  # no rounding on the way: byte-identical


def synthetic_pngs(folder: Path) -> list[Path]:
    """Three PNGs without the shared data: 8-bit gray (not square), RGB and RGBA, spanning 0..255 or not."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:37, 0:53]
    gray = np.clip(40 + 3 * yy + 2 * xx + rng.normal(0, 9, yy.shape), 0, 255).astype(np.uint8)
    rgb = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((24, 24), 200, np.uint8)])
    out = []
    for name, arr in (("gray.png", gray), ("rgb.png", rgb), ("rgba.png", rgba)):
        Image.fromarray(arr).save(folder / name)
        out.append(folder / name)
    return out


def nih_pngs(root: Path, per_mode: int = 2) -> list[Path]:
    """The first ``per_mode`` images of each mode (L 512 px, RGB and RGBA 64 px) of the real subset."""
    chosen: dict[str, list[Path]] = {}
    for p in sorted((root / "images").glob("*.png")):
        with Image.open(p) as im:
            mode = im.mode
        if len(chosen.setdefault(mode, [])) < per_mode:
            chosen[mode].append(p)
        if len(chosen) == 3 and all(len(v) == per_mode for v in chosen.values()):
            break
    return [p for v in chosen.values() for p in v]


@pytest.fixture(params=["synthetic", pytest.param("nih", marks=pytest.mark.realdata)])
def pngs(request, tmp_path) -> list[Path]:
    if request.param == "synthetic":
        (tmp_path / "png").mkdir()
        return synthetic_pngs(tmp_path / "png")
    return nih_pngs(request.getfixturevalue("nih_root"))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_decodes_to_the_image_of_its_png(pngs, tmp_path, variant):
    for i, png in enumerate(pngs):
        g = load_gray(str(png))
        stored, photometric, bits, elements = VARIANTS[variant](g)
        dcm = write_dicom(tmp_path / f"{i}.dcm", stored, photometric, bits, **elements)
        decoded = load_gray(str(dcm))
        assert decoded.dtype == np.uint8 and decoded.shape == g.shape
        diff = int(np.abs(decoded.astype(int) - g.astype(int)).max())
        assert diff <= (0 if variant in EXACT else 1), (png.name, variant, diff)


def test_without_the_window_the_stored_range_is_shown_and_monochrome1_is_inverted(tmp_path):
    g = np.array([[0, 255]], dtype=np.uint8)
    stored, _, _, _ = _window_16(g)  # 1000 and 52000 of 0..65535, no window
    no_window = load_gray(str(write_dicom(tmp_path / "a.dcm", stored, "MONOCHROME2", 16)))
    assert no_window.tolist() == [[4, 202]]  # round(1000 / 65535 * 255), round(52000 / 65535 * 255)
    mono1 = load_gray(str(write_dicom(tmp_path / "b.dcm", stored, "MONOCHROME1", 16)))
    assert mono1.tolist() == [[251, 53]]  # the same display, inverted: bones stay bright


def test_a_csv_of_dicom_files_caches_exactly_as_the_csv_of_their_pngs(pngs, tmp_path):
    """MONOCHROME1 and MONOCHROME2 files, one label-string column: same labels, same cache rows."""
    rows_png, rows_dcm = ["path,findings,patient"], ["path,findings,patient"]
    findings = ["Effusion|Mass", "No Finding", "Mass", "Effusion"]
    (tmp_path / "dcm").mkdir()
    for i, png in enumerate(pngs):
        g = load_gray(str(png))
        variant = _mono1_8 if i % 2 else _mono2_8
        stored, photometric, bits, _ = variant(g)
        # no suffix on every third file: found by its DICM preamble
        name = f"dcm/{png.stem}" + ("" if i % 3 == 2 else ".dcm")
        write_dicom(tmp_path / name, stored, photometric, bits)
        label = findings[i % len(findings)]
        rows_png.append(f"{png},{label},p{i // 2}")
        rows_dcm.append(f"{name},{label},p{i // 2}")
    (tmp_path / "png.csv").write_text("\n".join(rows_png) + "\n")
    (tmp_path / "dcm.csv").write_text("\n".join(rows_dcm) + "\n")
    kw = dict(label_column="findings", patient_column="patient", labels=["Effusion", "Mass"])
    rec_png = read_csv_dataset(tmp_path / "png.csv", **kw)
    rec_dcm = read_csv_dataset(tmp_path / "dcm.csv", **kw)
    np.testing.assert_array_equal(rec_png.labels, rec_dcm.labels)
    for size in (32, 64):
        png_cache = build_cache(rec_png, size, tmp_path / "cache", workers=1)
        dcm_cache = build_cache(rec_dcm, size, tmp_path / "cache", workers=1)
        assert png_cache.key != dcm_cache.key and not png_cache.bad and not dcm_cache.bad
        assert np.array_equal(png_cache.open(), dcm_cache.open())


def test_image_size_and_preamble_detection(tmp_path):
    g = np.zeros((30, 20), np.uint8)
    named = write_dicom(tmp_path / "x.DCM", g)
    bare = write_dicom(tmp_path / "IM0001", g)
    no_preamble = write_dicom(tmp_path / "old.dcm", g, preamble=False)
    assert dicom.is_dicom_name(named) and not dicom.is_dicom_name(bare)
    assert dicom.has_preamble(bare) and not dicom.has_preamble(no_preamble)
    for path in (named, bare, no_preamble):
        assert image_size(str(path)) == (20, 30)
        assert load_gray(str(path)).shape == (30, 20)


def test_a_colour_dicom_becomes_gray_like_a_colour_png(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (16, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    dcm = write_dicom(tmp_path / "c.dcm", rgb, "RGB", 8)
    assert np.array_equal(load_gray(str(dcm)), load_gray(str(tmp_path / "c.png")))


def bad_dicoms(folder: Path) -> dict[str, str]:
    """File name -> the reason the cache must give for it."""
    g = np.full((20, 20), 100, np.uint8)
    good = write_dicom(folder / "good.dcm", g).read_bytes()
    (folder / "truncated.dcm").write_bytes(good[: len(good) - 150])
    (folder / "garbage.dcm").write_bytes(b"this is not a DICOM file at all\n" * 8)
    (folder / "empty.dcm").write_bytes(b"")
    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report.SOPClassUID = BasicTextSRStorage
    report.SOPInstanceUID = pydicom.uid.generate_uid()
    report.file_meta.MediaStorageSOPClassUID = report.SOPClassUID
    report.file_meta.MediaStorageSOPInstanceUID = report.SOPInstanceUID
    report.save_as(folder / "report.dcm", enforce_file_format=True)
    write_dicom(folder / "frames.dcm", np.zeros((3, 8, 8), np.uint8), NumberOfFrames=3)
    write_dicom(folder / "palette.dcm", g, "MONOCHROME2", 8, PhotometricInterpretation="PALETTE COLOR")
    return {"truncated.dcm": "cannot decode DICOM pixel data",
            "garbage.dcm": "not a DICOM file (no 'DICM' marker and no Pixel Data)",
            "empty.dcm": "zero-byte file", "report.dcm": "not an image (no Pixel Data; SOP Class 'Basic Text SR",
            "frames.dcm": "multi-frame DICOM (3 frames); one radiograph per file is expected",
            "palette.dcm": "photometric interpretation 'PALETTE COLOR' is not supported"}


def test_unreadable_and_non_image_dicoms_are_listed_and_excluded(tmp_path, caplog):
    reasons = bad_dicoms(tmp_path)
    names = ["good.dcm", *reasons]
    csv = ["path,findings,patient"] + [f"{n},{'Mass' if i % 2 else 'No Finding'},p{i}" for i, n in enumerate(names)]
    (tmp_path / "l.csv").write_text("\n".join(csv) + "\n")
    rec = read_csv_dataset(tmp_path / "l.csv", labels=["Mass"], label_column="findings", patient_column="patient")
    for name, reason in reasons.items():
        with pytest.raises(ImageReadError, match="^" + re.escape(f"{tmp_path / name}: {reason}")):
            load_gray(str(tmp_path / name))
    cache = build_cache(rec, 16, tmp_path / "cache", workers=1)
    assert sorted(cache.bad) == sorted(reasons)
    for name, reason in reasons.items():
        assert cache.bad[name].startswith(f"{tmp_path / name}: {reason}"), cache.bad[name]
    with caplog.at_level(logging.WARNING, logger="bench.data.cache"):
        kept = exclude_bad(rec, cache, policy="exclude")
    assert list(kept.image_ids) == ["good.dcm"] and kept.dropped["unreadable image"] == len(reasons)
    assert f"excluding {len(reasons)} unreadable image(s): {tmp_path / 'truncated.dcm'}: " in caplog.text
    with pytest.raises(BenchError, match=r"6 unreadable image\(s\): .*dataset.on_bad_image: exclude"):
        exclude_bad(rec, cache, policy="fail")


def write_compressed(path: Path, transfer_syntax, frame: bytes, shape: tuple[int, int]) -> Path:
    """An 8-bit MONOCHROME2 file whose pixel data is ``frame``, encapsulated under ``transfer_syntax``."""
    write_dicom(path, np.zeros(shape, np.uint8))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


def test_compressed_pixel_data_without_its_decoder_is_one_line_naming_the_file_and_the_extra(tmp_path, monkeypatch):
    from pydicom import pixels

    path = write_compressed(tmp_path / "jpegls.dcm", JPEGLosslessSV1, b"\xff\xd8\xff\xd9", (8, 8))
    if pixels.get_decoder(JPEGLosslessSV1).is_available:  # pylibjpeg installed: make it look absent
        real = pixels.get_decoder
        monkeypatch.setattr(pixels, "get_decoder", lambda uid: type("Absent", (), {"is_available": False})()
                            if uid == JPEGLosslessSV1 else real(uid))
    with pytest.raises(dicom.MissingDecoderError) as info:
        load_gray(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: JPEG Lossless")
    assert "pip install -e '.[dicom-compressed]'" in message
    rows = ["path,findings,patient", f"{path.name},Mass,p1"]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    rec = read_csv_dataset(tmp_path / "l.csv", labels=["Mass"], label_column="findings", patient_column="patient")
    with pytest.raises(BenchError, match="dicom-compressed"):  # stops the cache build: every such file would fail
        build_cache(rec, 16, tmp_path / "cache", workers=1)
    assert not list((tmp_path / "cache").glob("*.npy*")) and not list((tmp_path / "cache").glob("*.json"))


def test_compressed_pixel_data_that_fails_to_decode_is_listed_naming_the_extra(tmp_path):
    """12-bit JPEG has a decoder (Pillow) that cannot read it: a bad image, whose reason names the extra."""
    path = write_compressed(tmp_path / "ext.dcm", JPEGExtended12Bit, b"\xff\xd8\xff\xd9", (8, 8))
    with pytest.raises(ImageReadError, match=f"^{re.escape(str(path))}: cannot decode DICOM pixel data") as info:
        load_gray(str(path))
    assert "\n" not in str(info.value)
    if importlib.util.find_spec("pylibjpeg") is None:
        assert str(info.value).endswith("; the 'dicom-compressed' extra may decode JPEG Extended (Process 2 and 4)")


def test_compressed_syntaxes_pydicom_or_pillow_decode_need_no_extra(tmp_path):
    g = load_gray(str(synthetic_pngs(tmp_path)[0]))
    ds = pydicom.dcmread(write_dicom(tmp_path / "rle.dcm", *_rescale_12(g)[:3], RescaleSlope=0.5,
                                     RescaleIntercept=-1024))
    ds.compress(RLELossless)  # pydicom's own RLE encoder and decoder
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    assert np.array_equal(load_gray(str(tmp_path / "rle.dcm")), g)
    import io

    j2k = io.BytesIO()
    Image.fromarray(g).save(j2k, format="JPEG2000", irreversible=False, no_jp2=True)  # lossless codestream
    path = write_compressed(tmp_path / "j2k.dcm", JPEG2000Lossless, j2k.getvalue(), g.shape)
    assert np.array_equal(load_gray(str(path)), g)  # through Pillow's OpenJPEG


def test_jpeg2000_through_pylibjpeg_when_the_extra_is_installed(tmp_path):
    pytest.importorskip("openjpeg", reason="the dicom-compressed extra (pylibjpeg-openjpeg) is not installed")
    g = load_gray(str(synthetic_pngs(tmp_path)[0]))
    ds = pydicom.dcmread(write_dicom(tmp_path / "j.dcm", *_mono1_8(g)[:3]))
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    ds.save_as(tmp_path / "j.dcm", enforce_file_format=True)
    assert np.array_equal(load_gray(str(tmp_path / "j.dcm")), g)


def readme_walk_through() -> tuple[str, str]:
    """The CSV and the grid of the README's "Your own data" section."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("### Your own data"):]
    section = section[:section.index("\n### ", 1)]
    return (re.search(r"```csv\n(.*?)```", section, re.S).group(1),
            re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


def test_the_readme_walk_through_reads_its_csv_of_dicom_files(tmp_path, capsys):
    from bench.cli import main

    csv_text, grid_text = readme_walk_through()
    g = load_gray(str(synthetic_pngs(tmp_path)[0]))
    for i, line in enumerate(csv_text.splitlines()[1:]):
        path = tmp_path / "hospital" / line.split(",")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        stored, photometric, bits, elements = (_mono1_rescale_12 if i % 2 else _window_16)(g)
        write_dicom(path, stored, photometric, bits, **elements)
    (tmp_path / "hospital" / "labels.csv").write_text(csv_text)
    grid = tmp_path / "hospital.yaml"
    grid.write_text(grid_text.replace("/data/hospital", str(tmp_path / "hospital")))
    assert main(["data", "describe", "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "csv: 4 images, 3 patients" in out, out
    for label, positives in (("Effusion", 1), ("Cardiomegaly", 1), ("Pneumothorax", 1)):
        assert re.search(rf"^{label}\s+{positives}\s+\S+\s+1\s", out, re.M), out  # IM0001's blank cell: 1 unknown
    rows = [line.split(",")[0] for line in csv_text.splitlines()[1:]]
    assert not dicom.is_dicom_name(rows[-1])  # found by its preamble
    for row in rows:
        assert np.abs(load_gray(str(tmp_path / "hospital" / row)).astype(int) - g).max() <= 1
