"""The synthetic generator's second site (a known domain shift) and its official split (NIH's list files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from bench.data import synthetic as syn
from bench.data.labels import NIH_LABELS
from bench.data.nih import read_nih
from bench.data.synthetic_sites import PREVALENCE_A, PREVALENCE_B, SITES, TEST_LIST, TRAIN_VAL_LIST
from bench.errors import BenchError

N, SIZE, SEED = 150, 64, 3


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sites")
    for site in "ab":
        syn.write_synthetic(out / site, n=N, size=SIZE, seed=SEED, site=site)
    return {site: out / site for site in "ab"}


def _images(root: Path) -> np.ndarray:
    names = pd.read_csv(root / syn.LABEL_FILE)["Image Index"]
    return np.stack([np.asarray(Image.open(root / "images" / name), dtype=float) for name in names])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_site_a_is_the_default_and_writes_what_version_1_wrote(tmp_path):
    """Site a's images, labels and boxes are byte for byte the generator's before sites existed."""
    a = syn.write_synthetic(tmp_path / "a", n=50, size=32, seed=11, site="a")
    default = syn.write_synthetic(tmp_path / "d", n=50, size=32, seed=11)
    assert a == default and a["params"] == {"n": 50, "size": 32, "seed": 11, "site": "a"}
    assert _sha(tmp_path / "a" / syn.LABEL_FILE) == "29782ec66d5b4122"
    assert _sha(tmp_path / "a" / syn.BOX_FILE) == "ebb23f63f1f8449a"
    assert _sha(tmp_path / "a" / "images" / "00000001_000.png") == "2ffac86cebf71945"


def test_site_b_differs_in_the_documented_statistics(sites):
    """bench/data/synthetic_sites.py's measured figures: contrast, noise, field of view, AP films."""
    img = {s: _images(root) for s, root in sites.items()}
    lo = {s: np.percentile(x, 1, axis=(1, 2)) for s, x in img.items()}
    hi = {s: np.percentile(x, 99, axis=(1, 2)) for s, x in img.items()}
    contrast = {s: np.median(hi[s] - lo[s]) for s in img}
    assert 0.7 < contrast["b"] / contrast["a"] < 0.9, contrast  # documented: 0.81x
    noise = {s: np.median([np.median(np.abs(ndimage.laplace(im))) for im in x]) for s, x in img.items()}
    assert 1.8 < noise["b"] / noise["a"] < 3.0, noise  # documented: 2.3x
    background = {}
    for s, x in img.items():
        smooth = np.stack([ndimage.uniform_filter(im, 3) for im in x])
        background[s] = np.median(((smooth - lo[s][:, None, None]) < 0.15 * (hi[s] - lo[s])[:, None, None])
                                  .mean(axis=(1, 2)))
    assert background["b"] > 1.4 * background["a"], background  # documented: 18% against 10%
    boxes = {s: pd.read_csv(root / syn.BOX_FILE) for s, root in sites.items()}
    width = {s: b.groupby("Finding Label")[b.columns[4]].mean() for s, b in boxes.items()}
    ratio = (width["b"] / width["a"]).dropna()
    assert len(ratio) >= 10 and 0.75 < ratio.median() < 0.92, ratio  # documented: 0.84x
    ap = {s: (pd.read_csv(root / syn.LABEL_FILE)["View Position"] == "AP").mean() for s, root in sites.items()}
    assert ap["b"] > ap["a"] + 0.15, ap


@pytest.mark.parametrize("seed", [0, 1])
def test_prevalences_follow_the_configured_ones(seed):
    freq = {}
    for name, site in SITES.items():
        images = syn._cohort(20000, seed, site)
        y = np.array([[label in im.labels for label in NIH_LABELS] for im in images])
        patients = len({im.patient for im in images})
        freq[name] = y.mean(axis=0)
        for j, label in enumerate(NIH_LABELS):
            p = site.prevalence[label]
            # follow-ups share findings, so the spread is that of a sample of patients, not of images
            assert abs(freq[name][j] - p) <= max(0.25 * p, 4 * np.sqrt(p * (1 - p) / patients)), (name, label)
    for j, label in enumerate(NIH_LABELS):  # where the sites differ 1.5-fold or more, the data do too
        configured = PREVALENCE_B[label] / PREVALENCE_A[label]
        if configured >= 1.5 or configured <= 1 / 1.5:
            observed = freq["b"][j] / freq["a"][j]
            assert abs(np.log(observed / configured)) < np.log(1.35), (label, observed, configured)


def test_sites_are_deterministic_and_other_hospitals(tmp_path, sites):
    again = syn.write_synthetic(tmp_path / "b", n=N, size=SIZE, seed=SEED, site="b")
    assert again == json.loads((sites["b"] / syn.META_FILE).read_text())
    for name in (syn.LABEL_FILE, syn.BOX_FILE, TRAIN_VAL_LIST, TEST_LIST, "images/00000001_000.png"):
        assert (tmp_path / "b" / name).read_bytes() == (sites["b"] / name).read_bytes(), name
    a, b = (pd.read_csv(sites[s] / syn.LABEL_FILE) for s in "ab")
    assert list(a["Finding Labels"]) != list(b["Finding Labels"])  # other patients, not a repainted site a


@pytest.mark.parametrize("site", ["a", "b"])
def test_official_lists_are_patient_wise_like_nih(sites, site):
    root = sites[site]
    entries = pd.read_csv(root / syn.LABEL_FILE)
    lists = {}
    for name in (TRAIN_VAL_LIST, TEST_LIST):
        text = (root / name).read_text()
        assert text.endswith("\n") and text.splitlines() == sorted(text.splitlines())
        lists[name] = set(text.splitlines())
    assert not lists[TRAIN_VAL_LIST] & lists[TEST_LIST]
    assert lists[TRAIN_VAL_LIST] | lists[TEST_LIST] == set(entries["Image Index"])
    test = entries["Image Index"].isin(lists[TEST_LIST])
    assert not set(entries.loc[test, "Patient ID"]) & set(entries.loc[~test, "Patient ID"])
    assert 0.15 <= test.mean() <= 0.25, test.mean()
    meta = json.loads((root / syn.META_FILE).read_text())
    assert meta["official_test"] == int(test.sum())
    findings = entries["Finding Labels"].str.split("|")
    for label in NIH_LABELS:
        positive = findings.map(lambda f, lab=label: lab in f)
        if entries.loc[positive, "Patient ID"].nunique() >= 2:
            assert positive[test].any() and positive[~test].any(), label
    rec = read_nih(root, official_test="exclude")  # the NIH reader reads them as NIH's own
    assert set(rec.image_ids) == lists[TRAIN_VAL_LIST]


def test_ensure_refuses_another_site_and_adds_the_lists_to_a_version_1_folder(tmp_path):
    root = tmp_path / "s"
    first = syn.ensure_synthetic(root, n=50, size=32, seed=5)
    with pytest.raises(BenchError, match=r"site='a' \(wanted 'b'\)") as err:
        syn.ensure_synthetic(root, n=50, size=32, seed=5, site="b")
    assert "\n" not in str(err.value) and str(root) in str(err.value)
    lists = {name: (root / name).read_bytes() for name in (TRAIN_VAL_LIST, TEST_LIST)}
    meta = json.loads((root / syn.META_FILE).read_text())
    v1 = {k: v for k, v in meta.items() if k != "official_test"}  # what version 1 wrote
    v1.update(version=1, params={k: v for k, v in meta["params"].items() if k != "site"})
    (root / syn.META_FILE).write_text(json.dumps(v1, indent=2) + "\n")
    for name in lists:
        (root / name).unlink()
    assert syn.ensure_synthetic(root, n=50, size=32, seed=5) == first
    assert {name: (root / name).read_bytes() for name in lists} == lists


def test_an_unknown_site_is_a_one_line_error(tmp_path):
    for fn in (syn.write_synthetic, syn.ensure_synthetic):
        with pytest.raises(BenchError, match=r"site 'c' is not a site; expected one of 'a', 'b'") as err:
            fn(tmp_path / "x", n=50, size=32, site="c")
        assert "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()


def test_a_grid_and_the_cli_choose_the_site(tmp_path, capsys):
    from bench.cli import main

    grid = tmp_path / "g.yaml"
    grid.write_text(f"dataset: {{kind: synthetic, root: {tmp_path / 'b'}, n: 60, size: 32, seed: 2, site: b}}\n")
    assert main(["-q", "data", "describe", "--grid", str(grid), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 60
    assert json.loads((tmp_path / "b" / syn.META_FILE).read_text())["params"]["site"] == "b"
    assert main(["-q", "data", "synth", "--out", str(tmp_path / "cli"), "--n", "60", "--size", "32", "--seed", "2",
                 "--site", "b"]) == 0
    capsys.readouterr()
    assert (tmp_path / "cli" / syn.LABEL_FILE).read_bytes() == (tmp_path / "b" / syn.LABEL_FILE).read_bytes()
    grid.write_text(f"dataset: {{kind: synthetic, root: {tmp_path / 'c'}, site: c}}\n")
    assert main(["-q", "data", "describe", "--grid", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "dataset.site: 'c' is not valid" in err and "'a'" in err and "'b'" in err, err
    assert not (tmp_path / "c").exists()


def test_site_b_lesions_stay_inside_their_boxes_and_visible_through_its_noise():
    site, size = SITES["b"], 96
    images = syn._cohort(400, SEED, site)
    for label in NIH_LABELS:
        i = next((i for i, im in enumerate(images) if im.labels == (label,)),
                 next(i for i, im in enumerate(images) if label in im.labels))
        with_lesion, planted = syn._render(images[i], size, SEED, i, site=site)
        without, _ = syn._render(images[i], size, SEED, i, site=site, lesions=False)
        diff = np.abs(with_lesion.astype(int) - without.astype(int))
        inside = np.zeros(diff.shape, dtype=bool)
        for _, (x0, y0, x1, y1) in planted:
            inside[y0:y1, x0:x1] = True
        assert diff[~inside].max(initial=0) == 0, label
        x0, y0, x1, y1 = dict(planted)[label]
        assert diff[y0:y1, x0:x1].max() >= 40 and diff[y0:y1, x0:x1].mean() >= 5, label  # noise sd: about 8
