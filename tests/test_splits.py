"""Tests for bench/data/splits.py: grouped multi-label stratified K-fold, carve-outs, the manifest."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from bench.data import splits as S
from bench.data.labels import NIH_LABELS, Records
from bench.data.splits import (
    SplitManifest,
    assert_patient_disjoint,
    assign_groups,
    carve_validation,
    make_split,
    split_quality,
    stratified_group_kfold,
)
from bench.errors import BenchError

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

def synth(n_patients: int, seed: int, prevalence=(0.2, 0.12, 0.08, 0.05, 0.03, 0.02, 0.01, 0.005),
          nan_rate: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N, L) with NaNs and string patient ids: geometric group sizes (up to 120 images),
    labels correlated within a patient (gamma-distributed patient risk)."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.geometric(0.3, n_patients), 120)
    g = np.repeat(np.arange(n_patients), sizes)
    risk = rng.gamma(0.5, 2.0, (n_patients, len(prevalence)))
    y = (rng.random((len(g), len(prevalence))) < np.clip(np.asarray(prevalence) * risk[g], 0, 1))
    y = y.astype(np.float32)
    y[rng.random(y.shape) < nan_rate] = np.nan
    return y, np.array([f"p{i:05d}" for i in g], dtype=object)


def records_from(y: np.ndarray, groups: np.ndarray | None) -> Records:
    names = tuple(f"L{j}" for j in range(y.shape[1]))
    ids = [f"img{i:06d}.png" for i in range(len(y))]
    return Records(labels=y, label_names=names, image_ids=ids, paths=ids, patients=groups)


def reference_objective(counts: np.ndarray, assignments: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """The documented objective, written independently and vectorised over many assignments (M, G):
    sum over parts f and columns c of fraction_f * w_c * ((total_fc - ideal_fc) / ideal_fc) ** 2,
    w_c = 1 for labels, SIZE_WEIGHT for the last (size) column, 0 for a column without counts."""
    totals = counts.sum(axis=0)
    w = np.where(totals > 0, 1.0, 0.0)
    w[-1] *= S.SIZE_WEIGHT
    out = np.zeros(len(assignments))
    for f, frac in enumerate(fractions):
        part = (assignments == f).astype(np.float64) @ counts             # (M, C)
        ideal = frac * np.where(totals > 0, totals, 1.0)
        out += frac * (w * ((part - ideal) / ideal) ** 2).sum(axis=1)
    return out


def integer_floor_ceil(per_fold: np.ndarray) -> bool:
    """Every fold's count is floor or ceil of the ideal (the best any integer split can do)."""
    ideal = per_fold.sum(axis=0) / per_fold.shape[0]
    return bool((np.abs(per_fold - ideal) < 1.0 - 1e-9).all())


# --------------------------------------------------------------------------------------------------
# The optimiser against brute force
# --------------------------------------------------------------------------------------------------

def _small_cases(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for case in range(n):
        k = int(rng.integers(2, 5))
        g = int(rng.integers(3, 11))
        while k ** g > 8000:
            g -= 1
        n_labels = int(rng.integers(1, 4))
        sizes = rng.integers(1, 5, g)
        pos = rng.binomial(sizes[:, None], rng.uniform(0.1, 0.6, n_labels))
        counts = np.column_stack([pos, sizes]).astype(np.float64)
        if k == 2 and case % 3 == 0:
            v = float(rng.choice([0.2, 0.3]))
            fractions = np.array([1 - v, v])
        else:
            fractions = np.full(k, 1.0 / k)
        yield case, counts, fractions


@pytest.mark.parametrize("case,counts,fractions", list(_small_cases(60, seed=7)),
                         ids=lambda v: None if isinstance(v, np.ndarray) else str(v))
def test_assign_groups_matches_brute_force_optimum(case, counts, fractions):
    # Every assignment of G groups to K parts is enumerated; the heuristic must reach the optimum
    # (tolerance 1e-9 relative). Offline, 1,500 such random cases were all optimal.
    k, g = len(fractions), len(counts)
    every = np.array(list(itertools.product(range(k), repeat=g)))
    best = reference_objective(counts, every, fractions).min()
    ours = assign_groups(counts, fractions, seed=case)
    j = reference_objective(counts, ours[None, :], fractions)[0]
    assert j <= best * (1 + 1e-9) + 1e-12, f"J={j} vs brute-force optimum {best}"
    assert np.isclose(j, S.objective(counts, ours, fractions))


def test_assign_groups_perfect_when_perfect_exists():
    # Pairs of identical groups: a perfect 2-fold split exists; brute force agrees it is J = 0.
    rng = np.random.default_rng(3)
    half = np.column_stack([rng.integers(0, 3, (5, 3)), rng.integers(1, 6, 5)]).astype(float)
    counts = np.vstack([half, half])
    assign = assign_groups(counts, [0.5, 0.5], seed=0)
    assert S.objective(counts, assign, [0.5, 0.5]) == pytest.approx(0.0, abs=1e-15)


def test_local_search_ends_in_a_local_optimum():
    y, groups = synth(800, seed=11)
    gidx, uniques = S._group_index(groups, len(y))
    counts = S._group_counts(y, gidx, len(uniques))
    fractions = np.full(4, 0.25)
    assign = assign_groups(counts, fractions, seed=0)
    base = S.objective(counts, assign, fractions)
    for g in range(0, len(counts), 7):
        for b in range(4):
            if b != assign[g]:
                moved = assign.copy()
                moved[g] = b
                assert S.objective(counts, moved, fractions) >= base - 1e-12


# --------------------------------------------------------------------------------------------------
# Guarantees on synthetic grouped data
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_patients,seed", [(1500, 0), (6000, 1), (6000, 2)])
def test_guarantees_on_synthetic_groups(n_patients, seed):
    y, groups = synth(n_patients, seed=100 + seed)
    folds = stratified_group_kfold(y, groups, 5, seed=seed)
    q = split_quality(y, groups, folds, 5)
    assert q["shared_patients"] == 0
    assert q["size_spread"] <= 0.01
    per_fold = np.array(list(q["fold_positives"].values())).T            # (K, L)
    ideal = per_fold.sum(axis=0) / 5
    dev = np.abs(per_fold - ideal).max(axis=0) / ideal
    assert (dev[ideal >= 50] <= 0.02).all(), dict(zip(ideal, dev))
    # Stronger: every label is as balanced as integers allow (floor/ceil of the ideal), sizes too.
    assert integer_floor_ceil(per_fold)
    assert integer_floor_ceil(np.array(q["fold_sizes"])[:, None])
    # Patient-disjointness checked independently of split_quality.
    per_patient = pd.Series(folds).groupby(groups).nunique()
    assert (per_patient == 1).all()


def test_split_quality_reports_the_definitions():
    y = np.array([[1, 0], [1, np.nan], [1, 0], [0, 1], [np.nan, 0], [1, 0]], dtype=np.float32)
    groups = np.array(["a", "a", "b", "c", "c", "d"], dtype=object)
    folds = np.array([0, 0, 1, 1, 1, 0])
    q = split_quality(y, groups, folds, 2, label_names=["x", "z"])
    assert q["fold_sizes"] == [3, 3] and q["size_spread"] == 0.0
    assert q["fold_positives"] == {"x": [3, 1], "z": [0, 1]}
    assert q["per_label_deviation"]["x"] == pytest.approx(0.5)           # |3 - 2| / 2
    assert q["sparse_labels"] == ["z"]                                   # 1 positive < 2 folds
    assert q["max_label_deviation"] == pytest.approx(0.5)
    assert q["shared_patients"] == 0
    q = split_quality(y, groups, np.array([0, 1, 1, 1, 1, 0]), 2)
    assert q["shared_patients"] == 1


# --------------------------------------------------------------------------------------------------
# Determinism, seeds, NaN
# --------------------------------------------------------------------------------------------------

def test_deterministic_per_seed_and_different_across_seeds():
    y, groups = synth(3000, seed=5)
    a = stratified_group_kfold(y, groups, 5, seed=0)
    b = stratified_group_kfold(y.copy(), groups.copy(), 5, seed=0)
    c = stratified_group_kfold(y, groups, 5, seed=1)
    np.testing.assert_array_equal(a, b)
    # A genuinely different partition, not a relabelling of folds: after the best matching of fold
    # ids, most rows still move (a random split would move 80%).
    table = np.zeros((5, 5))
    np.add.at(table, (a, c), 1)
    i, j = linear_sum_assignment(-table)
    assert 1 - table[i, j].sum() / len(a) > 0.5


def test_nan_never_counts_as_positive():
    y, groups = synth(2000, seed=9, nan_rate=0.2)
    as_zero = np.nan_to_num(y, nan=0.0)
    folds = stratified_group_kfold(y, groups, 5, seed=3)
    np.testing.assert_array_equal(folds, stratified_group_kfold(as_zero, groups, 5, seed=3))
    q = split_quality(y, groups, folds, 5)
    counted = np.array(list(q["fold_positives"].values())).sum(axis=1)
    np.testing.assert_array_equal(counted, np.nansum(y == 1, axis=0))
    # Treating NaN as positive would change the counts: the balance is of known positives only.
    assert not np.array_equal(counted, np.nansum(np.nan_to_num(y, nan=1.0), axis=0))


def test_patient_ids_of_any_type():
    y, groups = synth(600, seed=4)
    as_int = pd.factorize(groups)[0] * 7 + 1000
    np.testing.assert_array_equal(stratified_group_kfold(y, groups, 3, seed=0),
                                  stratified_group_kfold(y, as_int, 3, seed=0))


# --------------------------------------------------------------------------------------------------
# Fallback without patient ids
# --------------------------------------------------------------------------------------------------

def test_fallback_without_groups_is_iterstrat_on_images():
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    y, _ = synth(150, seed=2, prevalence=(0.3, 0.2, 0.1, 0.05))
    folds = stratified_group_kfold(y, None, 4, seed=8)
    expected = np.empty(len(y), dtype=np.int64)
    mskf = MultilabelStratifiedKFold(n_splits=4, shuffle=True, random_state=S._int_seed(8))
    for f, (_, test) in enumerate(mskf.split(np.zeros(len(y)), np.nan_to_num(y, nan=0).astype(int))):
        expected[test] = f
    np.testing.assert_array_equal(folds, expected)
    np.testing.assert_array_equal(folds, stratified_group_kfold(y, None, 4, seed=8))
    q = split_quality(y, None, folds, 4)
    assert q["shared_patients"] == 0 and q["size_spread"] <= 0.01


def test_carve_validation_without_groups():
    y, _ = synth(500, seed=3)
    rows = np.arange(0, len(y), 2)
    train, val = carve_validation(y, None, rows, 0.2, seed=1)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), rows)
    assert abs(len(val) / len(rows) - 0.2) < 0.01


# --------------------------------------------------------------------------------------------------
# Validation carve-outs
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.5])
def test_carve_validation_fractions_and_disjointness(val_fraction):
    y, groups = synth(6000, seed=21)
    folds = stratified_group_kfold(y, groups, 5, seed=0)
    rows = np.flatnonzero(folds != 2)
    train, val = carve_validation(y, groups, rows, val_fraction, seed=4)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), rows)
    assert not set(groups[train]) & set(groups[val])
    assert abs(len(val) / len(rows) - val_fraction) <= 0.005
    pos_rows = np.nansum(y[rows] == 1, axis=0)
    pos_val = np.nansum(y[val] == 1, axis=0)
    ideal = val_fraction * pos_rows
    assert (np.abs(pos_val - ideal) < 1.0).all(), (pos_val, ideal)     # floor/ceil of the ideal
    q = S.validation_quality(y, train, val, val_fraction)
    assert q["val_images"] == len(val)
    assert q["max_label_deviation"] <= max(1.0 / ideal[ideal >= 1].min(), 0.02)


def test_carve_validation_brute_force_small():
    # 9 patients, 2 parts at 70/30: brute force over 2^9 assignments of the documented objective.
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, 9)
    groups = np.repeat(np.arange(9), sizes)
    y = (rng.random((len(groups), 2)) < 0.4).astype(np.float32)
    rows = np.arange(len(y))
    train, val = carve_validation(y, groups, rows, 0.3, seed=0)
    gidx, uniques = S._group_index(groups, len(y))
    counts = S._group_counts(y, gidx, len(uniques))
    ours = np.zeros(len(uniques), dtype=np.int64)
    ours[np.unique(gidx[val])] = 1
    every = np.array(list(itertools.product(range(2), repeat=len(uniques))))
    fr = np.array([0.7, 0.3])
    best = reference_objective(counts, every, fr).min()
    assert reference_objective(counts, ours[None], fr)[0] <= best + 1e-12


# --------------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def split_records() -> Records:
    y, groups = synth(1200, seed=31)
    return records_from(y, groups)


@pytest.fixture(scope="module")
def manifest(split_records) -> SplitManifest:
    return make_split(split_records, n_folds=4, val_fraction=0.15, seed=3)


def test_manifest_rows_partition_and_are_patient_disjoint(split_records, manifest):
    n = len(split_records)
    tests = []
    for f in range(4):
        train, val, test = manifest.rows(f)
        assert len(train) + len(val) + len(test) == n
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val, test])), np.arange(n))
        for a, b, what in [(train, val, "train/val"), (train, test, "train/test"), (val, test, "val/test")]:
            assert_patient_disjoint(split_records.patients, a, b, what=what)
        assert abs(len(val) / (len(train) + len(val)) - 0.15) < 0.01
        tests.append(test)
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(n))
    q = manifest.quality
    assert q["shared_patients"] == 0 and set(q["validation"]) == {"0", "1", "2", "3"}
    with pytest.raises(BenchError, match=r"fold must be an integer in \[0, 4\), got 4"):
        manifest.rows(4)


def test_manifest_round_trip_hash_and_tamper(tmp_path, split_records, manifest):
    path = tmp_path / "sub" / "split.json"
    manifest.to_json(path)
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]          # no temp file left
    clean = path.read_text()
    back = SplitManifest.from_json(path)
    assert back == manifest
    back.verify(split_records)
    # Hash: a function of the content only, stable across runs, sensitive to seed.
    again = make_split(split_records, n_folds=4, val_fraction=0.15, seed=3)
    assert again.hash == manifest.hash and len(manifest.hash) == 64
    assert make_split(split_records, n_folds=4, val_fraction=0.15, seed=4).hash != manifest.hash
    # Tampering with a fold assignment in the file is detected.
    data = json.loads(clean)
    data["folds"][0] = (data["folds"][0] + 1) % 4
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match="does not match its content"):
        SplitManifest.from_json(path).verify(split_records)
    # ... as is a moved validation row.
    data = json.loads(clean)
    data["val"]["0"] = data["val"]["0"][1:]
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match="does not match its content"):
        SplitManifest.from_json(path).verify(split_records)


def test_manifest_rejects_other_records(split_records, manifest, tmp_path):
    other = split_records.subset(np.arange(len(split_records) - 1))
    with pytest.raises(BenchError, match="made for records"):
        manifest.verify(other)
    relabelled = records_from(np.nan_to_num(split_records.labels, nan=0.0), split_records.patients)
    with pytest.raises(BenchError, match="made for records"):
        manifest.verify(relabelled)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BenchError, match="not a valid manifest"):
        SplitManifest.from_json(tmp_path / "bad.json")
    with pytest.raises(BenchError, match="does not exist"):
        SplitManifest.from_json(tmp_path / "missing.json")


def test_make_split_without_patients():
    y, _ = synth(300, seed=12, prevalence=(0.2, 0.1, 0.05))
    m = make_split(records_from(y, None), n_folds=3, val_fraction=0.2, seed=0)
    train, val, test = m.rows(1)
    assert len(train) + len(val) + len(test) == len(y)
    assert m.quality["shared_patients"] == 0


# --------------------------------------------------------------------------------------------------
# Errors and the leakage guard
# --------------------------------------------------------------------------------------------------

def test_input_errors_name_the_value():
    y, groups = synth(200, seed=1)
    with pytest.raises(BenchError, match=r"n_folds must be an integer >= 2, got 1"):
        stratified_group_kfold(y, groups, 1, seed=0)
    rec = records_from(y, groups)
    for bad in (0.0, 0.6, -0.1):
        with pytest.raises(BenchError, match=rf"val_fraction must be in \(0, 0.5\], got {bad}"):
            make_split(rec, n_folds=3, val_fraction=bad, seed=0)
    with pytest.raises(BenchError, match="3 patients are fewer than n_folds=5"):
        stratified_group_kfold(y[:3], np.array(["a", "b", "c"]), 5, seed=0, min_positives_per_fold=0)
    with pytest.raises(BenchError, match="2 images are fewer than n_folds=3"):
        stratified_group_kfold(y[:2], None, 3, seed=0, min_positives_per_fold=0)
    with pytest.raises(BenchError, match="row\\(s\\) have no patient id"):
        stratified_group_kfold(y, np.where(np.arange(len(y)) == 5, None, groups), 3, seed=0)
    with pytest.raises(BenchError, match="rows contain duplicates"):
        carve_validation(y, groups, np.array([0, 0, 1]), 0.2, seed=0)


def test_sparse_label_error_and_flag():
    y = np.zeros((60, 2), dtype=np.float32)
    y[::2, 0] = 1
    y[[1, 3, 5], 1] = 1
    groups = np.arange(60) // 2
    names = ("Effusion", "Hernia")
    msg = ("label 'Hernia' has 3 positives, too few to spread over 5 folds; "
           "drop it with dataset.labels or use fewer folds")
    with pytest.raises(BenchError, match=msg):
        stratified_group_kfold(y, groups, 5, seed=0, label_names=names)
    with pytest.raises(BenchError, match=msg):
        make_split(Records(y, names, [str(i) for i in range(60)], [""] * 60, patients=groups),
                   n_folds=5, val_fraction=0.2, seed=0)
    # min_positives_per_fold=0: sparse labels (even without positives) are allowed and reported.
    y[:, 1] = 0
    folds = stratified_group_kfold(y, groups, 5, seed=0, min_positives_per_fold=0)
    q = split_quality(y, groups, folds, 5, label_names=names)
    assert np.isnan(q["per_label_deviation"]["Hernia"]) and q["sparse_labels"] == ["Hernia"]
    assert q["max_label_deviation"] == q["per_label_deviation"]["Effusion"]
    # A stricter flag asks for more positives per fold.
    with pytest.raises(BenchError, match="label 'Effusion' has 30 positives"):
        stratified_group_kfold(y, groups, 5, seed=0, min_positives_per_fold=7, label_names=names)


def test_assert_patient_disjoint():
    patients = np.array(["p1", "p1", "p2", "p3"], dtype=object)
    assert_patient_disjoint(patients, [0, 1], [2, 3], what="train/test")
    assert_patient_disjoint(None, [0, 1], [1, 2], what="train/test")
    with pytest.raises(RuntimeError, match=r"patient leakage in train/test: 1 patient\(s\).*'p1'"):
        assert_patient_disjoint(patients, [0, 2], [1, 3], what="train/test")


# --------------------------------------------------------------------------------------------------
# The full NIH label file
# --------------------------------------------------------------------------------------------------

def read_nih(csv: Path) -> Records:
    df = pd.read_csv(csv, usecols=["Image Index", "Finding Labels", "Patient ID"])
    dummies = df["Finding Labels"].str.get_dummies(sep="|")               # "No Finding" is dropped below
    labels = dummies.reindex(columns=list(NIH_LABELS), fill_value=0).to_numpy(np.float32)
    ids = df["Image Index"].to_numpy()
    return Records(labels=labels, label_names=NIH_LABELS, image_ids=ids, paths=ids,
                   patients=df["Patient ID"].to_numpy())


@pytest.mark.realdata
def test_full_nih_label_file(nih_root, record_property):
    """Quality on the full label file; its timing is `bench perf`'s to measure (BENCHMARKS.md), not a test's."""
    records = read_nih(nih_root / "Data_Entry_2017_v2020.csv")
    assert len(records) == 112_120 and records.n_patients == 30_805
    folds = stratified_group_kfold(records.labels, records.patients, 5, seed=0)
    manifest = make_split(records, n_folds=5, val_fraction=0.1, seed=0)
    q = manifest.quality
    np.testing.assert_array_equal(np.asarray(manifest.folds), folds)
    assert q["shared_patients"] == 0
    assert q["max_label_deviation"] <= 0.02
    assert q["size_spread"] <= 0.01
    for f in range(5):
        train, val, test = manifest.rows(f)
        assert_patient_disjoint(records.patients, train, test, what="train/test")
        assert_patient_disjoint(records.patients, val, test, what="val/test")
        assert_patient_disjoint(records.patients, train, val, what="train/val")
    # Baseline for the record: random patient assignment (iterstrat: benchmarks/split_quality.py).
    gidx, uniques = pd.factorize(records.patients)
    rand = np.random.default_rng(0).permutation(np.arange(len(uniques)) % 5)[gidx]
    qr = split_quality(records.labels, records.patients, rand, 5, label_names=NIH_LABELS)
    assert qr["max_label_deviation"] > q["max_label_deviation"]
    figures = {
        "max_label_deviation": q["max_label_deviation"], "size_spread": q["size_spread"],
        "max_val_label_deviation": q["max_val_label_deviation"],
        "random_patients_max_label_deviation": qr["max_label_deviation"],
        "per_label_deviation": q["per_label_deviation"],
    }
    for k, v in figures.items():
        record_property(k, v)
    print("\nNIH split figures:", json.dumps(figures, indent=1))


def test_make_split_warns_when_targets_are_out_of_reach(caplog):
    # One patient holds half of the images: no patient-disjoint split can balance 3 folds.
    y = np.zeros((40, 1), dtype=np.float32)
    y[::2, 0] = 1
    groups = np.where(np.arange(40) < 20, 0, np.arange(40))
    with caplog.at_level("WARNING", logger="bench.data.splits"):
        m = make_split(records_from(y, groups), n_folds=3, val_fraction=0.2, seed=0)
    assert m.quality["size_spread"] > 0.01
    assert "misses the balance targets" in caplog.text
