"""The grid's ``protocol`` section: kfold (the default), official (the dataset's own lists) and external (test sets
from other datasets, labels harmonised through aliases, absent labels NaN); their reports.

The end-to-end tests are few and small (test_resnet, 1 epoch, 32 px): one official run on the synthetic data, one
external run from synthetic site a to site b and to a generic CSV with other label names, one official run on
the real NIH subset with list files the test writes (the subset ships without NIH's lists).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from bench.config import GridConfig, parse_grid, resolve_paths
from bench.data.catalogue import open_reader
from bench.errors import BenchError

TINY = {"backbones": ["test_resnet"], "strategies": ["bce"], "train": {"epochs": 1, "batch_size": 32, "lr": 0.003},
        "report": {"bootstrap": 30}}


def _lists(root: Path) -> tuple[set[str], set[str]]:
    read = lambda name: {x.strip() for x in (root / name).read_text().splitlines() if x.strip()}  # noqa: E731
    return read("train_val_list.txt"), read("test_list.txt")


# ---- the section --------------------------------------------------------------------------------------------

def test_protocol_defaults_to_kfold_and_round_trips_through_the_resolved_grid(tmp_path):
    plain = parse_grid({})
    assert plain.protocol.kind == "kfold" and plain.protocol.split == "kfold"
    assert parse_grid({"protocol": {"kind": "kfold"}}).digest() == plain.digest()  # the default adds nothing
    cfg = resolve_paths(parse_grid({"protocol": {"kind": "external", "train": "official", "test_sets": {
        "site-b": {"kind": "synthetic", "root": "data/b", "site": "b"},
        "csv-set": {"kind": "csv", "csv": str(tmp_path / "t.csv"), "labels": ["Effusion"],
                    "aliases": {"Pleural Effusion": "Effusion"}}}}}))
    assert cfg.protocol.split == "official" and cfg.digest() != plain.digest()
    assert Path(cfg.protocol.test_sets["site-b"].root).is_absolute()  # test sets' paths are resolved too
    back = GridConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.digest() == cfg.digest()
    assert type(back.protocol.test_sets["csv-set"]).__name__ == "CSVSection"


@pytest.mark.parametrize("grid, message", [
    ({"protocol": {"kind": "offical"}}, "protocol.kind: 'offical' is not valid; expected one of 'kfold', 'official'"),
    ({"protocol": {"test_sets": {"b": {}}}}, "protocol.test_sets applies to protocol.kind external only"),
    ({"protocol": {"kind": "external"}}, "protocol.test_sets: {} is not valid; expected at least one test dataset"),
    ({"protocol": {"kind": "external", "test_sets": {"b": {"kind": "synthetic", "sitee": "b"}}}},
     "unknown key 'protocol.test_sets.b.sitee'; did you mean 'site'"),
    ({"protocol": {"kind": "external", "test_sets": {"b": {"kind": "nih"}}}},
     "protocol.test_sets.b.root is required for kind 'nih'"),
    ({"protocol": {"kind": "external", "test_sets": {"a/b": {}}}}, "protocol.test_sets.a/b: the name 'a/b' is not"),
    ({"protocol": {"kind": "external", "test_sets": {"b": {"image_size": 32}}}},
     "protocol.test_sets.b.image_size: 32 is not valid; expected 64 (dataset.image_size)"),
    ({"protocol": {"kind": "official"}, "dataset": {"kind": "csv", "csv": "x.csv", "labels": ["a"]}},
     "protocol.kind: 'official' is not valid; expected 'kfold' for dataset.kind 'csv'"),
    ({"protocol": {"kind": "official"}, "dataset": {"kind": "nih", "root": ".", "official_test": "exclude"}},
     "dataset.official_test: 'exclude' is not valid; expected 'ignore' with the official protocol"),
    ({"protocol": {"kind": "official"}, "dataset": {"kind": "chexpert", "root": "."}},
     "dataset.split: 'train' is not valid; expected 'both' with the official protocol"),
    ({"protocol": {"kind": "official"}, "splits": {"file": "split.json"}},
     "splits.file: 'split.json' is not valid; expected no split file with the official protocol"),
])
def test_bad_protocols_fail_in_one_line(grid, message):
    with pytest.raises(BenchError) as err:
        parse_grid(grid, source="g.yaml")
    text = str(err.value)
    assert text.startswith("g.yaml") and message in text and "\n" not in text


# ---- the official split -------------------------------------------------------------------------------------

def test_official_split_trains_on_the_training_list_and_tests_on_the_test_list(synth_root):
    from bench.data.official import official_split

    reader = open_reader(parse_grid({"dataset": {"root": str(synth_root), "n": 200, "size": 64}}).dataset)
    rec = reader.load()
    train_list, test_list = _lists(synth_root)
    kept, m = official_split(rec, *reader.official_lists(rec), val_fraction=0.25, seed=0)
    train, val, test = m.rows(0)
    ids = kept.image_ids.astype(str)
    assert set(ids[test]) == test_list & set(ids) and set(ids[train]) | set(ids[val]) == train_list & set(ids)
    assert not set(kept.patients[val]) & set(kept.patients[train])  # the carve-out is patient-disjoint
    assert 0.15 < len(val) / (len(train) + len(val)) < 0.35
    assert m.protocol == "official" and m.hash == m.content_hash() and m.n_folds == 1


def test_nih_list_files_can_live_outside_the_dataset_and_a_missing_one_is_named(synth_root, tmp_path):
    ids = pd.read_csv(synth_root / "Data_Entry_2017.csv")["Image Index"].tolist()
    (tmp_path / "train.txt").write_text("\n".join(ids[:150]))
    (tmp_path / "test.txt").write_text("\n".join(ids[150:180]))  # the last 20 images are on neither list
    ds = parse_grid({"dataset": {"kind": "nih", "root": str(synth_root), "train_list": str(tmp_path / "train.txt"),
                                 "test_list": str(tmp_path / "test.txt")}}).dataset
    reader = open_reader(ds)
    rec = reader.load()
    train, test = reader.official_lists(rec)
    assert list(rec.image_ids[train]) == ids[:150] and list(rec.image_ids[test]) == ids[150:180]
    missing = open_reader(parse_grid({"dataset": {"kind": "nih", "root": str(synth_root),
                                                  "test_list": str(tmp_path / "nope.txt")}}).dataset)
    with pytest.raises(BenchError, match=r"protocol official: '.*nope\.txt' not found \(NIH's official test list"):
        missing.official_lists(rec)


def test_chexpert_official_lists_come_from_each_images_folder():
    from bench.data.chexpert import _split_of

    assert [_split_of(p) for p in ("CheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg",
                                   "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg")] == ["train",
                                                                                                          "valid"]


# ---- harmonised test sets -----------------------------------------------------------------------------------

def _csv_test_set(root: Path, out: Path) -> Path:
    """A generic CSV over the synthetic images of ``root``, with its own names for two NIH labels, a label the
    models do not know, and one unknown (blank) cell."""
    nih = pd.read_csv(root / "Data_Entry_2017.csv")
    has = lambda name: nih["Finding Labels"].str.split("|").map(lambda s: name in s).astype(float)  # noqa: E731
    table = pd.DataFrame({"path": "images/" + nih["Image Index"], "patient": nih["Patient ID"],
                          "Pleural Effusion": has("Effusion"), "Heart enlarged": has("Cardiomegaly"),
                          "Fracture": 0.0})
    table.loc[0, "Pleural Effusion"] = np.nan
    table.to_csv(out, index=False)
    return out


def _csv_section(root: Path, csv: Path) -> dict:
    return {"kind": "csv", "csv": str(csv), "image_root": str(root), "image_column": "path",
            "patient_column": "patient", "label_columns": ["Pleural Effusion", "Heart enlarged", "Fracture"],
            "aliases": {"Pleural Effusion": "Effusion", "Heart enlarged": "Cardiomegaly"}}


def test_a_csv_test_set_with_other_names_aligns_through_aliases_and_lacks_the_rest_as_nan(synth_root, tmp_path):
    from bench.data.harmonise import align_to
    from bench.data.nih import read_nih
    from reports.metrics import REASON_ALL_UNKNOWN, summary_metrics

    nih = read_nih(synth_root)
    ds = parse_grid({"protocol": {"kind": "external", "test_sets": {
        "csv": _csv_section(synth_root, _csv_test_set(synth_root, tmp_path / "t.csv"))}}}).protocol.test_sets["csv"]
    rec, missing, extra = align_to(open_reader(ds).load(), nih.label_names)
    assert rec.label_names == nih.label_names and extra == ["Fracture"]
    assert set(missing) == set(nih.label_names) - {"Effusion", "Cardiomegaly"}
    eff, card = nih.label_names.index("Effusion"), nih.label_names.index("Cardiomegaly")
    assert np.isnan(rec.labels[0, eff]) and np.array_equal(rec.labels[1:, eff], nih.labels[1:, eff])
    assert np.array_equal(rec.labels[:, card], nih.labels[:, card])
    lacking = [nih.label_names.index(n) for n in missing]
    assert np.isnan(rec.labels[:, lacking]).all()  # never 0
    # The metrics' NaN contract: a label with no known entry is left out of the macro averages, said why.
    p = np.random.default_rng(0).random(rec.labels.shape)
    s = summary_metrics(rec.labels, p, label_names=list(rec.label_names))
    assert s["n_labels_macro"] == 2 and all(s["excluded"][n] == REASON_ALL_UNKNOWN for n in missing)
    by_hand = np.mean([roc_auc_score(rec.labels[1:, eff], p[1:, eff]), roc_auc_score(rec.labels[:, card], p[:, card])])
    assert s["macro_auc"] == pytest.approx(by_hand)


# ---- end to end -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site_b(tmp_path_factory) -> Path:
    from bench.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("site-b") / "data"
    write_synthetic(root, n=200, size=64, seed=0, site="b")
    return root


def _check_official_trials(out: Path, rec_ids: set[str], train_list: set[str], test_list: set[str], n: int) -> None:
    trials = sorted((out / "trials").glob("*/metrics.json"))
    assert len(trials) == n
    for f in trials:
        with np.load(f.parent / "predictions.npz") as z:
            scored, val = set(z["image_ids"].astype(str)), set(z["val_image_ids"].astype(str))
        assert scored == test_list & rec_ids          # scored on the test list only, all of it
        assert val <= train_list                      # thresholds tuned on the training list only
        sizes = json.loads(f.read_text())["sizes"]
        assert sizes["train"] + sizes["val"] == len(train_list & rec_ids) and sizes["test"] == len(scored)


@pytest.mark.slow
def test_official_protocol_end_to_end_on_the_synthetic_lists(ray_session, synth_root, tmp_path):
    from bench.run import run_grid
    from reports.leaderboard import build_report

    cfg = parse_grid({**TINY, "dataset": {"root": str(synth_root), "n": 200, "size": 64, "image_size": 32},
                      "protocol": {"kind": "official"}, "seeds": [0, 1], "splits": {"val_fraction": 0.25},
                      "localisation": {"enabled": False}})
    out = tmp_path / "run"
    outcome = run_grid(None, out=out, cfg=cfg)
    assert not outcome.errors and sorted(outcome.completed) == ["test_resnet-bce-f0-s0", "test_resnet-bce-f0-s1"]
    rec_ids = set(pd.read_csv(synth_root / "Data_Entry_2017.csv")["Image Index"])
    _check_official_trials(out, rec_ids, *_lists(synth_root), n=2)
    report = build_report(out)
    table = pd.read_csv(out / "official_per_label.csv")
    assert len(table) == 14 and (table["n_seeds"] <= 2).all()
    assert table["Wang et al. 2017 (official split)"].iloc[0] == pytest.approx(0.700)
    # each label's AUC is the mean over the seeds' trials
    auc = [json.loads((out / "trials" / f"test_resnet-bce-f0-s{s}" / "metrics.json").read_text())["per_label"][0]["auc"]
           for s in (0, 1)]
    assert table["auc"].iloc[0] == pytest.approx(np.nanmean([np.nan if a is None else a for a in auc]))
    page = (out / "leaderboard.html").read_text()
    assert "Official split vs published" in page and "image size: 32 px here" in page
    assert report.protocol.kind == "official"


@pytest.mark.slow
def test_external_protocol_from_site_a_to_site_b_and_a_csv_shows_the_drop(ray_session, synth_root, site_b, tmp_path):
    from bench.run import run_grid
    from reports.leaderboard import build_report

    csv = _csv_test_set(site_b, tmp_path / "site-b.csv")
    cfg = parse_grid({**TINY, "dataset": {"root": str(synth_root), "n": 200, "size": 64, "image_size": 32},
                      "splits": {"folds": 2, "val_fraction": 0.25}, "localisation": {"max_images": 8, "gallery": 1},
                      "protocol": {"kind": "external", "test_sets": {
                          "site-b": {"kind": "synthetic", "root": str(site_b), "n": 200, "size": 64, "site": "b"},
                          "site-b-csv": _csv_section(site_b, csv)}}})
    out = tmp_path / "run"
    outcome = run_grid(None, out=out, cfg=cfg)
    assert not outcome.errors and len(outcome.completed) == 2
    trial = out / "trials" / "test_resnet-bce-f0-s0"
    ext = json.loads((trial / "metrics.json").read_text())["external"]
    assert set(ext) == {"site-b", "site-b-csv"} and ext["site-b-csv"]["n_labels_macro"] == 2
    with np.load(trial / "external" / "site-b-csv" / "predictions.npz") as z:
        y, names, thr = z["labels"], list(z["label_names"]), z["thresholds"]
    with np.load(trial / "predictions.npz") as z:
        assert np.array_equal(thr, z["thresholds"])  # the model's own thresholds, tuned on its validation part
    lacking = [j for j, n in enumerate(names) if n not in ("Effusion", "Cardiomegaly")]
    assert np.isnan(y[:, lacking]).all()
    per_label = {r["label"]: r for r in json.loads((trial / "external" / "site-b-csv" / "metrics.json")
                                                   .read_text())["per_label"]}
    assert per_label["Mass"]["auc"] is None and per_label["Effusion"]["auc"] is not None
    assert (trial / "external" / "site-b" / "localisation.csv").is_file()      # site b has boxes
    from reports import replicates

    # one resampling of the external set for every fold's models (drop_table's coverage needs it), made on the worker
    assert all(replicates.load(out / "trials" / f"test_resnet-bce-f{f}-s0" / "external" / "site-b" / replicates.FILE)
               ["shared"] for f in (0, 1))
    assert not (trial / "external" / "site-b-csv" / "localisation.csv").exists()  # the CSV has none

    report = build_report(out)
    drop = report.protocol.drop.set_index("test_set")
    written = pd.read_csv(out / "external_drop.csv").set_index("test_set")
    assert np.allclose(written["drop"], drop["drop"], rtol=1e-5)
    assert set(drop.index) == {"site-b", "site-b-csv"} and (drop["n_models"] == 2).all()
    for name in drop.index:  # internal minus external, each the leaderboard's own average of the same models
        inside = report.leaderboard["macro_auc"].iloc[0]
        outside = report.protocol.external[name].leaderboard["macro_auc"].iloc[0]
        assert drop.loc[name, "drop"] == pytest.approx(inside - outside)
        assert drop.loc[name, "drop_ci_low"] <= drop.loc[name, "drop"] <= drop.loc[name, "drop_ci_high"]
    page = (out / "leaderboard.html").read_text()
    assert "Internal vs external: the drop in macro AUC" in page and "Leaderboard on site-b-csv" in page
    assert "Localisation on site-b" in page and "Localisation on site-b-csv" not in page
    assert f"{drop.loc['site-b', 'drop']:.3f}" in page


@pytest.mark.slow
def test_official_protocol_on_the_real_nih_subset_with_written_lists(ray_session, nih_root, tmp_path):
    from bench.run import run_grid

    table = pd.read_csv(nih_root / "Data_Entry_2017_v2020.csv", dtype={"Patient ID": str})
    present = {p.name for p in (nih_root / "images").glob("*.png")}
    table = table[table["Image Index"].isin(present)]
    patients = sorted(table["Patient ID"].unique())
    test_patients = set(patients[::5])  # a fifth of the patients, as NIH's own list holds about a fifth
    is_test = table["Patient ID"].isin(test_patients)
    (tmp_path / "train_val_list.txt").write_text("\n".join(table.loc[~is_test, "Image Index"]) + "\n")
    (tmp_path / "test_list.txt").write_text("\n".join(table.loc[is_test, "Image Index"]) + "\n")
    cfg = parse_grid({**TINY, "dataset": {"kind": "nih", "root": str(nih_root), "image_size": 32,
                                          "train_list": str(tmp_path / "train_val_list.txt"),
                                          "test_list": str(tmp_path / "test_list.txt")},
                      "protocol": {"kind": "official"}, "localisation": {"enabled": False}})
    out = tmp_path / "run"
    outcome = run_grid(None, out=out, cfg=cfg)
    assert not outcome.errors and outcome.completed == ["test_resnet-bce-f0-s0"]
    _check_official_trials(out, set(table["Image Index"]), *_lists(tmp_path), n=1)
