"""Readers for CheXpert, ChestMNIST and generic CSVs, and label harmonisation, on tiny files in tmp_path."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.data.chestmnist import read_chestmnist
from bench.data.chexpert import CHEXPERT_FINDINGS, CHEXPERT_LABELS, read_chexpert
from bench.data.csvfile import read_csv_dataset
from bench.data.harmonise import CHEXPERT_TO_NIH, harmonise
from bench.data.images import load_gray
from bench.data.labels import NIH_LABELS, Records
from bench.errors import BenchError

nan = np.nan


def one_line_error(fn: Callable[[], object], *needles: str) -> str:
    """Call ``fn``; it must raise a one-line BenchError containing every needle."""
    with pytest.raises(BenchError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def save_image(path: Path, kind: str = "gray") -> Path:
    """A tiny image: 8-bit JPEG ("gray"), 16-bit PNG ("u16") or RGBA PNG ("rgba")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.arange(12 * 10).reshape(12, 10)
    if kind == "gray":
        Image.fromarray((ramp * 2).astype(np.uint8)).save(path, format="JPEG")
    elif kind == "u16":
        Image.fromarray((1000 + ramp * 30).astype(np.uint16)).save(path, format="PNG")
    elif kind == "rgba":
        rgba = np.zeros((12, 10, 4), dtype=np.uint8)
        rgba[..., 0] = rgba[..., 1] = rgba[..., 2] = ramp.astype(np.uint8)
        rgba[..., 3] = 255
        Image.fromarray(rgba, mode="RGBA").save(path, format="PNG")
    return path


# --------------------------------------------------------------------------------------------------
# CheXpert
# --------------------------------------------------------------------------------------------------

CX_META = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]


def cx_row(path: str, view: str, ap_pa: str, **obs: float) -> list[object]:
    values = {name: "" for name in CHEXPERT_LABELS}
    for key, value in obs.items():
        values[key.replace("_", " ")] = value
    return [path, "Female", 60, view, ap_pa] + [values[name] for name in CHEXPERT_LABELS]


@pytest.fixture
def chexpert(tmp_path: Path) -> Path:
    """CheXpert-v1.0-small with 5 train rows (one lateral, one all-blank, one missing image) and 1 valid row."""
    root = tmp_path / "CheXpert-v1.0-small"
    p = "CheXpert-v1.0-small/"
    rows = [
        cx_row(p + "train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP",
               Cardiomegaly=1.0, Edema=-1.0, Pleural_Effusion=0.0),
        cx_row(p + "train/patient00001/study1/view2_lateral.png", "Lateral", "", Cardiomegaly=1.0),
        cx_row(p + "train/patient00002/study1/view1_frontal.png", "Frontal", "PA", No_Finding=1.0),
        cx_row(p + "train/patient00003/study1/view1_frontal.jpg", "Frontal", "PA"),  # nothing mentioned
        cx_row(p + "train/patient00004/study1/view1_frontal.jpg", "Frontal", "AP",  # image missing
               Pneumonia=-1.0, Support_Devices=1.0),
    ]
    write_csv(root / "train.csv", CX_META + list(CHEXPERT_LABELS), rows)
    valid = cx_row(p + "valid/patient64541/study1/view1_frontal.jpg", "Frontal", "AP",
                   **{name.replace(" ", "_"): 0.0 for name in CHEXPERT_LABELS})
    valid[len(CX_META) + CHEXPERT_LABELS.index("Pleural Effusion")] = 1.0
    write_csv(root / "valid.csv", CX_META + list(CHEXPERT_LABELS), [valid])
    save_image(root / "train/patient00001/study1/view1_frontal.jpg", "gray")
    save_image(root / "train/patient00001/study1/view2_lateral.png", "rgba")
    save_image(root / "train/patient00002/study1/view1_frontal.png", "u16")
    save_image(root / "train/patient00003/study1/view1_frontal.jpg", "gray")
    save_image(root / "valid/patient64541/study1/view1_frontal.jpg", "gray")
    return root


def col(recs: Records, name: str) -> np.ndarray:
    return recs.labels[:, recs.label_names.index(name)]


def test_chexpert_defaults_frontal_train_ignore(chexpert: Path) -> None:
    recs = read_chexpert(chexpert)
    assert recs.label_names == CHEXPERT_FINDINGS and "No Finding" not in recs.label_names
    assert recs.kind == "chexpert" and recs.root == str(chexpert.resolve())
    assert len(recs) == 3
    assert recs.dropped == {"lateral view": 1, "image file missing": 1}
    assert list(recs.patients) == ["patient00001", "patient00002", "patient00003"]
    assert list(recs.views) == ["AP", "PA", "PA"]
    assert recs.image_ids[0] == "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    # Row 1: positive, uncertain (NaN under "ignore"), explicit 0, and blanks read as 0.
    assert col(recs, "Cardiomegaly")[0] == 1 and np.isnan(col(recs, "Edema")[0])
    assert col(recs, "Pleural Effusion")[0] == 0 and col(recs, "Fracture")[0] == 0
    # Row 2: "No Finding" = 1, every finding blank -> 0.
    assert np.array_equal(recs.labels[1], np.zeros(13))
    # Row 3 mentions nothing at all: blank -> 0 is doubtful there, so the row stays NaN.
    assert np.isnan(recs.labels[2]).all()
    assert recs.labels.dtype == np.float32


def test_chexpert_paths_decode_incl_16bit(chexpert: Path) -> None:
    recs = read_chexpert(chexpert)
    for path in recs.paths:
        assert Path(path).is_absolute() and Path(path).is_file()
        img = load_gray(path)
        assert img.dtype == np.uint8 and img.shape == (12, 10)
    u16 = load_gray(recs.paths[1])  # 16-bit PNG, scaled from its own range
    assert u16.min() == 0 and u16.max() == 255


@pytest.mark.parametrize("policy, edema, pneumonia", [("ignore", nan, nan), ("ones", 1.0, 1.0), ("zeros", 0.0, 0.0)])
def test_chexpert_uncertainty_policies(chexpert: Path, policy: str, edema: float, pneumonia: float) -> None:
    recs = read_chexpert(chexpert, uncertainty=policy, views="all", labels_only=True)
    assert len(recs) == 5 and recs.dropped == {}
    np.testing.assert_array_equal(col(recs, "Edema")[[0, 4]], [edema, 0.0])
    np.testing.assert_array_equal(col(recs, "Pneumonia")[[0, 4]], [0.0, pneumonia])
    assert col(recs, "Support Devices")[4] == 1


def test_chexpert_blank_nan_policy(chexpert: Path) -> None:
    recs = read_chexpert(chexpert, blank="nan")
    assert col(recs, "Pleural Effusion")[0] == 0 and np.isnan(col(recs, "Fracture")[0])
    assert np.isnan(recs.labels[1]).all()


def test_chexpert_views_filter_lateral(chexpert: Path) -> None:
    recs = read_chexpert(chexpert, views="lateral")
    assert len(recs) == 1 and recs.dropped == {"frontal view": 4}
    assert list(recs.views) == ["LATERAL"] and col(recs, "Cardiomegaly")[0] == 1
    assert load_gray(recs.paths[0]).shape == (12, 10)  # RGBA PNG


def test_chexpert_split_both_and_parent_root(chexpert: Path) -> None:
    recs = read_chexpert(chexpert.parent, split="both")  # root = folder holding the dataset folder
    assert len(recs) == 4
    assert recs.patients[-1] == "patient64541" and recs.views[-1] == "AP"
    assert col(recs, "Pleural Effusion")[-1] == 1 and np.nansum(recs.labels[-1]) == 1
    valid = read_chexpert(chexpert, split="valid")
    assert len(valid) == 1 and valid.dropped == {}


def test_chexpert_renamed_root_folder(chexpert: Path) -> None:
    renamed = chexpert.parent / "chexpert"
    shutil.move(str(chexpert), str(renamed))
    recs = read_chexpert(renamed)
    assert len(recs) == 3 and all(Path(p).is_file() for p in recs.paths)
    assert recs.paths[0].startswith(str(renamed.resolve()))


def test_chexpert_no_finding_and_aliases(chexpert: Path) -> None:
    recs = read_chexpert(chexpert, labels=["No Finding", "Cardiomegaly"])
    assert recs.label_names == ("No Finding", "Cardiomegaly")
    np.testing.assert_array_equal(recs.labels[:2], [[0, 1], [1, 0]])
    aliased = read_chexpert(chexpert, aliases={"Pleural Effusion": "Effusion"})
    assert "Effusion" in aliased.label_names and "Pleural Effusion" not in aliased.label_names
    assert len(aliased.label_names) == 13


def test_chexpert_errors(chexpert: Path) -> None:
    one_line_error(lambda: read_chexpert(chexpert, uncertainty="one"),
                   "uncertainty='one'", "'ignore', 'ones', 'zeros'", "did you mean 'ones'")
    one_line_error(lambda: read_chexpert(chexpert, views="pa"), "views='pa'", "'frontal', 'lateral', 'all'")
    one_line_error(lambda: read_chexpert(chexpert, split="test"), "split='test'", "'train', 'valid', 'both'")
    one_line_error(lambda: read_chexpert(chexpert, labels=["Cardiomegally"]),
                   "train.csv", "'Cardiomegally'", "did you mean 'Cardiomegaly'")
    one_line_error(lambda: read_chexpert(chexpert, aliases={"Effusion": "X"}, labels=["X"]),
                   "'Effusion'", "not a CheXpert column", "'Pleural Effusion'")
    one_line_error(lambda: read_chexpert(chexpert / "nowhere"), "nowhere", "not found")
    (chexpert / "valid.csv").unlink()
    one_line_error(lambda: read_chexpert(chexpert, split="both"), "valid.csv", "file not found")


def test_chexpert_bad_value_names_line_and_column(chexpert: Path) -> None:
    table = pd.read_csv(chexpert / "train.csv", dtype=str, keep_default_na=False)
    table.loc[2, "Edema"] = "2.0"
    table.to_csv(chexpert / "train.csv", index=False)
    one_line_error(lambda: read_chexpert(chexpert), "train.csv line 4", "'Edema'", "'2.0'", "'-1'")


def test_chexpert_all_images_missing_points_at_labels_only(chexpert: Path) -> None:
    shutil.rmtree(chexpert / "train")
    one_line_error(lambda: read_chexpert(chexpert), "none of the 4 images exists", "labels_only=True")
    assert len(read_chexpert(chexpert, labels_only=True)) == 4
    from bench.config import parse_grid
    from bench.data.load import load_records

    grid = parse_grid({"dataset": {"kind": "chexpert", "root": str(chexpert)}})  # through a grid: grid keys only
    message = one_line_error(lambda: load_records(grid.dataset), "none of the 4 images exists", "dataset.root")
    assert "labels_only" not in message


# --------------------------------------------------------------------------------------------------
# ChestMNIST
# --------------------------------------------------------------------------------------------------

def write_chestmnist(
    folder: Path, size: int = 28, *, splits: tuple[str, ...] = ("train", "val", "test"), name: str | None = None
) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {}
    counts = {"train": 3, "val": 2, "test": 2}
    for s in splits:
        arrays[f"{s}_images"] = rng.integers(0, 256, size=(counts[s], size, size), dtype=np.uint8)
        arrays[f"{s}_labels"] = rng.integers(0, 2, size=(counts[s], 14)).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / (name or ("chestmnist.npz" if size == 28 else f"chestmnist_{size}.npz"))
    np.savez_compressed(file, **arrays)
    return file, arrays


def test_chestmnist_all_splits(tmp_path: Path) -> None:
    file, arrays = write_chestmnist(tmp_path)
    recs = read_chestmnist(file)
    assert len(recs) == 7 and recs.label_names == NIH_LABELS and recs.kind == "chestmnist"
    assert recs.patients is None and recs.n_patients is None
    expected = np.concatenate([arrays[f"{s}_labels"] for s in ("train", "val", "test")]).astype(np.float32)
    np.testing.assert_array_equal(recs.labels, expected)
    assert list(recs.official_test) == [False] * 5 + [True] * 2
    assert recs.image_ids[3] == "chestmnist/val/0"
    assert recs.paths[3] == f"npz://{file.resolve()}#val_images/0"
    for s, j in [("train", 0), ("train", 2), ("val", 1), ("test", 1)]:
        k = {"train": 0, "val": 3, "test": 5}[s] + j
        np.testing.assert_array_equal(load_gray(recs.paths[k]), arrays[f"{s}_images"][j])


def test_chestmnist_split_labels_and_folder(tmp_path: Path) -> None:
    file, arrays = write_chestmnist(tmp_path)
    val = read_chestmnist(tmp_path, split="val", labels=["Hernia", "Atelectasis"])
    assert len(val) == 2 and val.label_names == ("Hernia", "Atelectasis")
    np.testing.assert_array_equal(val.labels, arrays["val_labels"][:, [13, 0]])
    assert read_chestmnist(tmp_path, size=28, split="test").official_test.all()


def test_chestmnist_errors(tmp_path: Path) -> None:
    file, _ = write_chestmnist(tmp_path)
    one_line_error(lambda: read_chestmnist(file, split="valid"), "split='valid'", "did you mean 'val'", "'test'")
    one_line_error(lambda: read_chestmnist(file, labels=["Efusion"]), "'Efusion'", "did you mean 'Effusion'")
    one_line_error(lambda: read_chestmnist(file, size=64), "chestmnist.npz", "28 px", "size=64")
    one_line_error(lambda: read_chestmnist(tmp_path, size=64), "chestmnist_64.npz", "file not found")
    one_line_error(lambda: read_chestmnist(tmp_path, size=32), "size=32", "28, 64, 128, 224")
    write_chestmnist(tmp_path, size=64, splits=("train", "val"))
    one_line_error(lambda: read_chestmnist(tmp_path), "several ChestMNIST files", "chestmnist_64.npz", "size=")
    one_line_error(lambda: read_chestmnist(tmp_path, size=64), "chestmnist_64.npz", "'test_images'")
    assert len(read_chestmnist(tmp_path, size=64, split="train")) == 3


def test_chestmnist_bad_labels(tmp_path: Path) -> None:
    file, arrays = write_chestmnist(tmp_path)
    arrays["train_labels"][0, 0] = 2
    np.savez(file, **arrays)
    one_line_error(lambda: read_chestmnist(file), "'train_labels'", "value 2", "0, 1")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    one_line_error(lambda: read_chestmnist(tmp_path / "broken.npz"), "broken.npz", "not a readable .npz")


# --------------------------------------------------------------------------------------------------
# Generic CSV
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "img"
    for name, kind in [("a.png", "u16"), ("b.jpg", "gray"), ("c.png", "rgba"), ("d.jpg", "gray")]:
        save_image(folder / name, kind)
    return folder


def test_csv_label_string_layout(tmp_path: Path, images: Path) -> None:
    csv_path = write_csv(tmp_path / "meta" / "list.csv", ["image", "findings", "patient", "view"], [
        ["a.png", "Effusion|Mass", "p1", "PA"],
        ["b.jpg", "No Finding", "p1", "AP"],
        ["c.png", "", "p2", ""],  # nothing known
        ["d.jpg", "Pleural Effusion| Nodule", "p3", "PA"],  # alias, stray space
        ["e.png", "Mass", "p4", "PA"],  # image missing
    ])
    recs = read_csv_dataset(csv_path, image_root=images, image_column="image", labels=["Effusion", "Mass", "Nodule"],
                            label_column="findings", patient_column="patient", view_column="view",
                            aliases={"Pleural Effusion": "Effusion"})
    assert recs.label_names == ("Effusion", "Mass", "Nodule") and recs.kind == "csv"
    np.testing.assert_array_equal(recs.labels, [[1, 1, 0], [0, 0, 0], [nan, nan, nan], [1, 0, 1]])
    assert recs.dropped == {"image file missing": 1}
    assert list(recs.image_ids) == ["a.png", "b.jpg", "c.png", "d.jpg"]
    assert list(recs.patients) == ["p1", "p1", "p2", "p3"] and list(recs.views) == ["PA", "AP", "", "PA"]
    for path in recs.paths:
        assert load_gray(path).dtype == np.uint8
    kept = read_csv_dataset(csv_path, image_root=images, image_column="image", labels=["Effusion", "Mass", "Nodule"],
                            label_column="findings", aliases={"Pleural Effusion": "Effusion"}, labels_only=True)
    assert len(kept) == 5 and kept.dropped == {} and kept.patients is None


def test_csv_label_string_unknown_labels(tmp_path: Path, images: Path) -> None:
    csv_path = write_csv(images / "list.csv", ["path", "labels"], [
        ["a.png", "Effusion|Hernia"], ["b.jpg", "Efusion"], ["c.png", "Hernia"],
    ])
    kw = dict(labels=["Effusion", "Mass"], label_column="labels")
    one_line_error(lambda: read_csv_dataset(csv_path, **kw),
                   "list.csv", "'labels'", "'Hernia' (line 2)", "'Efusion' (line 3; did you mean 'Effusion'?)",
                   "ignore_unknown=True")
    recs = read_csv_dataset(csv_path, ignore_unknown=True, **kw)
    np.testing.assert_array_equal(recs.labels, [[1, 0], [0, 0], [0, 0]])
    recs = read_csv_dataset(csv_path, aliases={"Hernia": None, "Efusion": "Effusion"}, **kw)
    np.testing.assert_array_equal(recs.labels, [[1, 0], [1, 0], [0, 0]])
    one_line_error(lambda: read_csv_dataset(csv_path, aliases={"Hernia": "Herniation"}, **kw),
                   "aliases", "'Herniation'", "not a declared label")


def test_csv_per_label_columns_with_aliases(tmp_path: Path, images: Path) -> None:
    csv_path = write_csv(images / "wide.csv", ["path", "Eff", "Mass", "Nodule", "Age", "pid"], [
        ["a.png", 1, 0, "", 50, "p1"],
        ["b.jpg", 0, "1.0", 0, 40, "p2"],
        ["c.png", "", "", "", 30, "p3"],
    ])
    recs = read_csv_dataset(csv_path, labels=["Effusion", "Mass", "Nodule"], aliases={"Eff": "Effusion"},
                            patient_column="pid")
    np.testing.assert_array_equal(recs.labels, [[1, 0, nan], [0, 1, 0], [nan, nan, nan]])
    assert recs.root == str(images) and list(recs.patients) == ["p1", "p2", "p3"]
    only = read_csv_dataset(csv_path, labels=["Mass"], label_columns=["Mass"])
    np.testing.assert_array_equal(only.labels[:, 0], [0, 1, nan])
    one_line_error(lambda: read_csv_dataset(csv_path, labels=["Effusion", "Mass", "Nodules"],
                                            aliases={"Eff": "Effusion"}),
                   "wide.csv", "'Nodules'", "did you mean 'Nodule'", "'Age'")
    one_line_error(lambda: read_csv_dataset(csv_path, labels=["Mass"], label_columns=["Age"]),
                   "label column 'Age'", "not a declared label")
    one_line_error(lambda: read_csv_dataset(csv_path, labels=["Mass"], label_column="x", label_columns=["Mass"]),
                   "not both")
    one_line_error(lambda: read_csv_dataset(csv_path, labels=["Mass"], aliases={"Eff": "Mass"}),
                   "'Eff'", "'Mass'", "both give label 'Mass'")


def test_csv_errors(tmp_path: Path, images: Path) -> None:
    csv_path = write_csv(images / "list.csv", ["Path", "Mass", "pid"], [
        ["a.png", 1, "p1"], ["b.jpg", "yes", "p2"], ["c.png", 0, ""], ["b.jpg", 0, "p4"],
    ])
    one_line_error(lambda: read_csv_dataset(csv_path, labels=["Mass"]),
                   "list.csv", "image column 'path'", "did you mean 'Path'", "columns: 'Mass', 'Path', 'pid'")
    one_line_error(lambda: read_csv_dataset(csv_path, image_column="Path", labels=["Mass"]),
                   "list.csv line 3", "'Mass'", "'yes'", "'0', '1' or blank")
    fixed = write_csv(images / "fixed.csv", ["Path", "Mass", "pid"], [
        ["a.png", 1, "p1"], ["b.jpg", 0, "p2"], ["c.png", 0, ""], ["b.jpg", 0, "p4"],
    ])
    one_line_error(lambda: read_csv_dataset(fixed, image_column="Path", labels=["Mass"]),
                   "fixed.csv line 5", "duplicate image 'b.jpg'", "first on line 3")
    no_dup = write_csv(images / "nodup.csv", ["Path", "Mass", "pid"], [["a.png", 1, "p1"], ["c.png", 0, ""]])
    one_line_error(lambda: read_csv_dataset(no_dup, image_column="Path", labels=["Mass"], patient_column="pid"),
                   "nodup.csv line 3", "patient column 'pid' is empty")
    one_line_error(lambda: read_csv_dataset(no_dup, image_column="Path", labels=["Mass"], patient_column="patient"),
                   "no patient column 'patient'", "'pid'")
    assert read_csv_dataset(no_dup, image_column="Path", labels=["Mass"]).patients is None
    one_line_error(lambda: read_csv_dataset(no_dup, image_column="Path", labels=["Mass"], image_root=tmp_path / "x"),
                   "none of the 2 images exists", "labels_only=True")
    one_line_error(lambda: read_csv_dataset(tmp_path / "absent.csv", labels=["Mass"]), "absent.csv", "file not found")
    (tmp_path / "empty.csv").write_text("")
    one_line_error(lambda: read_csv_dataset(tmp_path / "empty.csv", labels=["Mass"]), "empty.csv", "empty file")
    one_line_error(lambda: read_csv_dataset(no_dup, labels=["Mass", "Mass"]), "'Mass'", "declared twice")


# --------------------------------------------------------------------------------------------------
# Harmonisation
# --------------------------------------------------------------------------------------------------

def test_harmonise_renames_merges_and_relabels_boxes() -> None:
    recs = Records(
        labels=np.array([[1, 0, nan], [0, nan, nan], [nan, nan, 0], [0, 0, 1]]),
        label_names=("Lung Lesion", "Mass", "Edema"),
        image_ids=["a", "b", "c", "d"], paths=["/a", "/b", "/c", "/d"],
        boxes=pd.DataFrame({"image_id": ["a", "d"], "label": ["Lung Lesion", "Edema"], "x": [1.0, 2.0],
                            "y": [1.0, 2.0], "w": [3.0, 3.0], "h": [3.0, 3.0], "img_w": [10, 10], "img_h": [10, 10]}),
    )
    out = harmonise(recs, {"Lung Lesion": "Mass"})
    assert out.label_names == ("Mass", "Edema")
    np.testing.assert_array_equal(out.labels, [[1, nan], [0, nan], [nan, 0], [0, 1]])
    assert list(out.boxes["label"]) == ["Mass", "Edema"]
    dropped = harmonise(recs, {"Lung Lesion": "Mass"}, keep_unmapped=False)
    assert dropped.label_names == ("Mass",) and list(dropped.boxes["label"]) == ["Mass"]
    one_line_error(lambda: harmonise(recs, {"Lung Lesions": "Mass"}), "'Lung Lesions'", "did you mean 'Lung Lesion'")
    one_line_error(lambda: harmonise(recs, {"Edema": ""}), "'Edema'", "non-empty")
    assert harmonise(recs, {"Lung Lesions": "Mass", "Edema": "Oedema"}, strict=False).label_names == (
        "Lung Lesion", "Mass", "Oedema")


def test_harmonise_chexpert_to_nih(chexpert: Path) -> None:
    recs = harmonise(read_chexpert(chexpert), CHEXPERT_TO_NIH, keep_unmapped=False)
    assert set(recs.label_names) <= set(NIH_LABELS) and len(recs.label_names) == 7
    assert recs.labels[0, recs.label_names.index("Effusion")] == 0
    assert recs.labels[0, recs.label_names.index("Cardiomegaly")] == 1


def test_csv_header_with_byte_order_mark(tmp_path: Path, images: Path) -> None:
    csv_path = images / "bom.csv"
    csv_path.write_text("\ufeffpath,Mass\na.png,1\nb.jpg,\n", encoding="utf-8")
    recs = read_csv_dataset(csv_path, labels=["Mass"])
    np.testing.assert_array_equal(recs.labels[:, 0], [1, nan])
