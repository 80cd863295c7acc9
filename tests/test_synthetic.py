"""The built-in synthetic dataset: NIH layout, labels, boxes, lesions, determinism, atomic writes, reuse."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.data import synthetic as syn
from bench.data.labels import NIH_LABELS
from bench.errors import BenchError

N, SIZE, SEED = 120, 64, 3


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    syn.write_synthetic(out, n=N, size=SIZE, seed=SEED)
    return out


@pytest.fixture(scope="module")
def entries(root) -> pd.DataFrame:
    return pd.read_csv(root / syn.LABEL_FILE)


@pytest.fixture(scope="module")
def boxes(root) -> pd.DataFrame:
    return pd.read_csv(root / syn.BOX_FILE)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# Layout: the NIH label file, file names, patients
# --------------------------------------------------------------------------------------------------

def test_label_file_has_the_exact_nih_header_and_parses(root, entries):
    first = (root / syn.LABEL_FILE).read_text().splitlines()[0]
    assert first == ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
                     "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    assert list(entries.columns) == ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
                                     "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
                                     "OriginalImagePixelSpacing[x", "y]"]
    assert len(entries) == N
    for col in ("Follow-up #", "Patient ID", "Patient Age", "OriginalImage[Width", "Height]"):
        assert pd.api.types.is_integer_dtype(entries[col]), col
    assert set(entries["Patient Gender"]) <= {"M", "F"}
    assert set(entries["View Position"]) == {"PA", "AP"}
    assert entries["Patient Age"].between(1, 95).all()


@pytest.mark.realdata
def test_label_file_header_is_the_real_nih_header(root, nih_root):
    with (nih_root / "Data_Entry_2017_v2020.csv").open() as f:
        assert (root / syn.LABEL_FILE).read_text().splitlines()[0] == f.readline().rstrip("\n")


def test_file_names_patients_and_follow_ups_agree(root, entries):
    names = entries["Image Index"]
    assert names.is_unique
    assert names.str.fullmatch(r"\d{8}_\d{3}\.png").all()
    assert (names.str[:8].astype(int) == entries["Patient ID"]).all()
    assert (names.str[9:12].astype(int) == entries["Follow-up #"]).all()
    for _, group in entries.groupby("Patient ID"):
        assert sorted(group["Follow-up #"]) == list(range(len(group)))
    on_disk = sorted(p.name for p in (root / "images").iterdir())
    assert on_disk == sorted(names)
    with Image.open(root / "images" / names.iloc[0]) as im:
        assert (im.mode, im.size, im.format) == ("L", (SIZE, SIZE), "PNG")
    per_patient = entries.groupby("Patient ID").size()
    assert per_patient.max() >= 3 and (per_patient == 1).any()
    assert 1.8 <= per_patient.mean() <= 6


def test_summary_file_matches_the_content(root, entries, boxes):
    meta = json.loads((root / syn.META_FILE).read_text())
    assert meta["params"] == {"n": N, "size": SIZE, "seed": SEED, "site": "a"}
    assert meta["version"] == syn.GENERATOR_VERSION
    assert meta["images"] == N and meta["patients"] == entries["Patient ID"].nunique()
    assert meta["boxes"] == len(boxes)
    assert meta["no_finding"] == int((entries["Finding Labels"] == "No Finding").sum())
    for label in NIH_LABELS:
        assert meta["positives"][label] == int(entries["Finding Labels"].str.split("|").map(
            lambda s, lab=label: lab in s).sum())


def test_the_nih_reader_reads_it(root, boxes):
    from bench.data.nih import read_nih

    rec = read_nih(root)
    assert len(rec) == N and rec.label_names == NIH_LABELS and not rec.dropped
    assert len(rec.boxes) == len(boxes)
    assert set(rec.boxes["label"]) <= set(NIH_LABELS)
    assert (rec.boxes["x"] + rec.boxes["w"] <= SIZE + 1e-6).all() and (rec.boxes["img_w"] == SIZE).all()


# --------------------------------------------------------------------------------------------------
# Labels: long tail, No Finding, co-occurrence, patient correlation
# --------------------------------------------------------------------------------------------------

def _matrix(images: list) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([[name in im.labels for name in NIH_LABELS] for im in images])
    return y, np.array([im.patient for im in images])


def test_small_file_labels_are_valid_and_every_label_is_present(entries):
    split = entries["Finding Labels"].str.split("|")
    assert set(split.explode()) <= set(NIH_LABELS) | {"No Finding"}
    assert (entries["Finding Labels"] == "No Finding").any()
    assert split.map(lambda s: "No Finding" not in s or len(s) == 1).all()
    assert (split.map(len) > 1).any()  # co-occurrence
    for label in NIH_LABELS:
        assert split.map(lambda s, lab=label: lab in s).sum() >= syn.min_positives(N), label


@pytest.mark.parametrize("seed", [0, 1])
def test_every_label_has_enough_positives_on_enough_patients(seed):
    y, patients = _matrix(syn._cohort(1500, seed))
    for j, name in enumerate(NIH_LABELS):
        assert y[:, j].sum() >= 6, name  # enough for a 3-fold split
        assert len(set(patients[y[:, j]])) >= 3, name


@pytest.mark.parametrize("seed", [0, 1])
def test_labels_follow_a_long_tail_with_nih_like_co_occurrence(seed):
    y, _ = _matrix(syn._cohort(6000, seed))
    freq = y.mean(axis=0)
    head = [NIH_LABELS.index(name) for name in ("Infiltration", "Effusion", "Atelectasis")]
    assert freq[head[0]] > 0.12 and freq[NIH_LABELS.index("Hernia")] < 0.012
    assert freq[head].min() > np.delete(freq, head).max()  # the three head labels lead
    for j, name in enumerate(NIH_LABELS):
        assert 0.5 * syn.PREVALENCE[name] <= freq[j] <= 2 * syn.PREVALENCE[name], name
    assert 0.4 <= (~y.any(axis=1)).mean() <= 0.65  # roughly half "No Finding"

    def lift(a: str, b: str) -> float:
        i, j = NIH_LABELS.index(a), NIH_LABELS.index(b)
        return (y[:, i] & y[:, j]).mean() / (freq[i] * freq[j])

    assert lift("Effusion", "Atelectasis") > 1.4
    assert lift("Effusion", "Infiltration") > 1.2
    assert lift("Pneumonia", "Edema") > 2.5
    assert lift("Pneumothorax", "Emphysema") > 2.5


def test_follow_ups_of_a_patient_share_findings():
    y, patients = _matrix(syn._cohort(1500, 0))
    same, base = [], []
    for j in range(len(NIH_LABELS)):
        for p in np.unique(patients):
            rows = y[patients == p, j]
            if len(rows) > 1 and rows.any():
                # P(positive | another follow-up of the patient is positive), pooled over labels
                same.append((rows.sum() - 1) / (len(rows) - 1) if rows.sum() else 0.0)
        base.append(y[:, j].mean())
    assert np.mean(same) > 3 * np.mean(base)


# --------------------------------------------------------------------------------------------------
# Boxes and lesions
# --------------------------------------------------------------------------------------------------

def test_box_file_format(root, entries, boxes):
    first = (root / syn.BOX_FILE).read_text().splitlines()[0]
    assert first == "Image Index,Finding Label,Bbox [x,y,w,h],,,"
    # as in the real file, the header has 9 fields (the brackets hold commas), the rows 6
    assert list(boxes.columns[:6]) == ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"]
    assert boxes.shape[1] == 9 and boxes.iloc[:, 6:].isna().all().all()
    assert "Infiltrate" in set(boxes["Finding Label"]) and "Infiltration" not in set(boxes["Finding Label"])
    assert set(boxes["Finding Label"]) <= (set(NIH_LABELS) - {"Infiltration"}) | {"Infiltrate"}
    x, y, w, h = boxes.iloc[:, 2:6].to_numpy(float).T
    assert (w > 0).all() and (h > 0).all()
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 1024).all() and (y + h <= 1024).all()
    assert np.allclose(np.concatenate([x, y, w, h]) % (1024 / SIZE), 0)  # whole pixels of the 64-px image


def test_every_finding_has_exactly_one_box(entries, boxes):
    boxed = boxes.assign(label=boxes["Finding Label"].replace("Infiltrate", "Infiltration"))
    boxed = boxed.groupby("Image Index")["label"].apply(sorted).to_dict()
    for name, findings in zip(entries["Image Index"], entries["Finding Labels"]):
        expected = [] if findings == "No Finding" else sorted(findings.split("|"))
        assert boxed.get(name, []) == expected, name


def test_the_written_png_is_the_rendered_image(root):
    images = syn._cohort(N, SEED)
    for i in (0, 7, N - 1):
        pixels, _ = syn._render(images[i], SIZE, SEED, i)
        assert np.array_equal(np.asarray(Image.open(root / "images" / images[i].name)), pixels)


def test_every_finding_has_its_own_lesion_model():
    assert set(syn._LESIONS) == set(NIH_LABELS)
    assert len(set(syn._LESIONS.values())) == len(NIH_LABELS)


@pytest.mark.parametrize("label", NIH_LABELS)
def test_each_lesion_is_visible_inside_its_box_and_nowhere_else(label):
    images = syn._cohort(400, SEED)
    # an image where this finding is alone, else the first one that has it
    i = next((i for i, im in enumerate(images) if im.labels == (label,)),
             next(i for i, im in enumerate(images) if label in im.labels))
    size = 96
    with_lesion, planted = syn._render(images[i], size, SEED, i)
    without, none = syn._render(images[i], size, SEED, i, lesions=False)
    assert none == [] and sorted(b[0] for b in planted) == sorted(images[i].labels)
    diff = np.abs(with_lesion.astype(int) - without.astype(int))
    inside = np.zeros(diff.shape, dtype=bool)
    for _, (x0, y0, x1, y1) in planted:
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        inside[y0:y1, x0:x1] = True
    assert diff[~inside].max(initial=0) == 0  # nothing changes outside the boxes
    x0, y0, x1, y1 = dict(planted)[label]
    region = diff[y0:y1, x0:x1]
    assert region.max() >= 20, f"{label}: strongest change {region.max()} gray levels"
    assert region.mean() >= 3, f"{label}: mean change {region.mean():.1f} gray levels"


def test_lesion_boxes_are_brighter_or_darker_than_the_same_region_of_normal_images(root, entries, boxes):
    """Without the generator's help: box contents differ from that region in No Finding images."""
    stack = {name: np.asarray(Image.open(root / "images" / name), dtype=float) for name in entries["Image Index"]}
    normal = np.stack([stack[n] for n in entries.loc[entries["Finding Labels"] == "No Finding", "Image Index"]])
    scale = SIZE / 1024
    shifts = []
    for row in boxes.itertuples(index=False):
        x0, y0 = int(row[2] * scale), int(row[3] * scale)
        x1, y1 = x0 + int(row[4] * scale), y0 + int(row[5] * scale)
        shifts.append(abs(stack[row[0]][y0:y1, x0:x1].mean() - normal[:, y0:y1, x0:x1].mean()))
    # the typical box differs from the normal-image mean there by more than the normal images' spread
    spread = np.median([normal[:, y:y + 8, x:x + 8].mean(axis=(1, 2)).std() for y in range(8, 56, 8)
                        for x in range(8, 56, 8)])
    assert np.median(shifts) > spread


# --------------------------------------------------------------------------------------------------
# Determinism, atomic writes, reuse, validation
# --------------------------------------------------------------------------------------------------

def test_same_arguments_give_identical_bytes_and_another_seed_differs(tmp_path):
    a = syn.write_synthetic(tmp_path / "a", n=50, size=32, seed=11)
    b = syn.write_synthetic(tmp_path / "b", n=50, size=32, seed=11)
    syn.write_synthetic(tmp_path / "c", n=50, size=32, seed=12)
    assert a == b
    da, db, dc = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert da == db and len(da) == 50 + 5
    assert da[syn.LABEL_FILE] != dc[syn.LABEL_FILE]
    assert (tmp_path / "a" / syn.LABEL_FILE).read_bytes() != (tmp_path / "c" / syn.LABEL_FILE).read_bytes()
    shared = set(da) & set(dc) - {syn.LABEL_FILE, syn.BOX_FILE, syn.META_FILE, "train_val_list.txt", "test_list.txt"}
    assert shared and all(da[k] != dc[k] for k in shared)


def test_progress_is_reported_per_image(tmp_path):
    calls = []
    syn.write_synthetic(tmp_path / "p", n=50, size=32, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 50) for i in range(1, 51)]


def test_an_interrupted_write_leaves_nothing_behind(tmp_path):
    def stop(done: int, total: int) -> None:
        if done == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        syn.write_synthetic(tmp_path / "data", n=50, size=32, progress=stop)
    assert list(tmp_path.iterdir()) == []
    # and the same happens when reuse is asked for
    with pytest.raises(KeyboardInterrupt):
        syn.ensure_synthetic(tmp_path / "data", n=50, size=32, seed=0, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(BenchError, match="not empty"):
        syn.write_synthetic(tmp_path / "x", n=50, size=32)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_ensure_generates_then_reuses(tmp_path):
    root = tmp_path / "synth"
    calls = []
    first = syn.ensure_synthetic(root, n=50, size=32, seed=5, progress=lambda d, t: calls.append(d))
    assert len(calls) == 50 and first["images"] == 50
    before = _digest(root)
    again = syn.ensure_synthetic(root, n=50, size=32, seed=5, progress=lambda d, t: calls.append(d))
    assert again == first and len(calls) == 50 and _digest(root) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert syn.ensure_synthetic(empty, n=50, size=32, seed=5)["images"] == 50


@pytest.mark.parametrize("change, word", [({"n": 60}, "n=50"), ({"size": 48}, "size=32"), ({"seed": 6}, "seed=5")])
def test_ensure_refuses_a_different_dataset(tmp_path, change, word):
    root = tmp_path / "synth"
    syn.ensure_synthetic(root, n=50, size=32, seed=5)
    args = {"n": 50, "size": 32, "seed": 5, **change}
    with pytest.raises(BenchError) as err:
        syn.ensure_synthetic(root, **args)
    msg = str(err.value)
    assert "\n" not in msg and str(root) in msg and word in msg


def test_ensure_refuses_other_versions_foreign_and_incomplete_folders(tmp_path):
    root = tmp_path / "synth"
    syn.ensure_synthetic(root, n=50, size=32, seed=5)
    meta = json.loads((root / syn.META_FILE).read_text())
    (root / syn.META_FILE).write_text(json.dumps({**meta, "version": syn.GENERATOR_VERSION + 1}))
    with pytest.raises(BenchError, match="version"):
        syn.ensure_synthetic(root, n=50, size=32, seed=5)
    (root / syn.META_FILE).write_text(json.dumps(meta))
    next((root / "images").iterdir()).unlink()
    with pytest.raises(BenchError, match="incomplete"):
        syn.ensure_synthetic(root, n=50, size=32, seed=5)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(BenchError, match="not a synthetic dataset") as err:
        syn.ensure_synthetic(foreign, n=50, size=32, seed=5)
    assert str(foreign) in str(err.value)
    (foreign / syn.META_FILE).write_text("{not json")
    with pytest.raises(BenchError, match="synthetic"):
        syn.ensure_synthetic(foreign, n=50, size=32, seed=5)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BenchError, match="not a folder"):
        syn.ensure_synthetic(a_file, n=50, size=32, seed=5)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"n": 49}, r"n must be >= 50 .*got 49"),
    ({"n": 100.0}, r"n must be an integer, got 100\.0"),
    ({"n": True}, r"n must be an integer"),
    ({"size": 31}, r"size must be between 32 and 1024 .*got 31"),
    ({"size": 1025}, r"size must be between 32 and 1024 .*got 1025"),
    ({"size": "64"}, r"size must be an integer, got '64'"),
    ({"seed": -1}, r"seed must be >= 0, got -1"),
])
def test_arguments_are_validated_with_one_line_messages(tmp_path, kwargs, pattern):
    args = {"n": 50, "size": 32, "seed": 0, **kwargs}
    for fn in (syn.write_synthetic, syn.ensure_synthetic):
        with pytest.raises(BenchError, match=pattern) as err:
            fn(tmp_path / "x", **args)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()


def test_sizes_other_than_the_default_work(tmp_path):
    syn.write_synthetic(tmp_path / "big", n=50, size=160, seed=0)
    boxes = pd.read_csv(tmp_path / "big" / syn.BOX_FILE)
    assert (boxes.iloc[:, 2] + boxes.iloc[:, 4] <= 1024).all()
    with Image.open(next((tmp_path / "big" / "images").iterdir())) as im:
        assert im.size == (160, 160)
    assert re.fullmatch(r"\d+\.\d+", f"{boxes.iloc[0, 2]}")
