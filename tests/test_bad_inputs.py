"""Bad and hostile input, as a user meets it on the command line.

Every case runs ``bench`` (in process through :func:`bench.cli.main`, a few as real subprocesses
for their exit codes) and checks what the user sees: one ``error:`` line naming the file, line,
key or value and what would be valid; a non-zero exit (2 for bad input, 3 for errored trials, 1
for a full disk); no traceback unless ``--debug``; nothing written (the ``--out`` folder is not
created, an existing run folder's files are unchanged). Inputs that are not errors (a missing image,
a corrupt or empty PNG under ``on_bad_image: exclude``, a 16-bit PNG) are checked to be counted,
listed and trained on. The reader-level details live in ``test_config.py``, ``test_nih.py``,
``test_readers.py`` and ``test_cache.py``; this file is the one list of what a user sees.

Hostile input (security) is here too: a grid that would run code (``!!python/object``), a weights
file that would run code when unpickled, a label named ``<script>``, and a run that must not reach
the network.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import loopback_guard
import numpy as np
import pandas as pd
import pytest
from _tiny import tiny_spec, tiny_trial_data
from PIL import Image
from sklearn.metrics import roc_auc_score

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
EVIL = "<script>alert(1)</script>"
GRID = """\
name: bad
dataset: {kind: synthetic, root: ROOT, n: 60, size: 32, image_size: 16}
splits: {folds: 2, val_fraction: 0.25, seed: 0}
backbones: [test_resnet]
strategies: [bce, focal]
train: {epochs: 1, batch_size: 16, lr: 0.001}
seeds: [0]
localisation: {enabled: false}
report: {bootstrap: 0}
"""


# ---- helpers -----------------------------------------------------------------------------------------

def bench(capsys, *args) -> tuple[int, str, str]:
    """Run ``bench ARGS`` in this process; (exit code, stdout, stderr)."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, *parts: str) -> str:
    """The single ``error:`` line of ``err``; it holds every one of ``parts``; no traceback anywhere."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def refused(capsys, grid, out: Path, *parts: str) -> str:
    """``bench -q run --grid GRID --out OUT`` is refused: exit 2, ``OUT`` never created, and one error line
    holding every one of ``parts`` (see :func:`one_line_error`)."""
    rc, _, err = bench(capsys, "-q", "run", "--grid", grid, "--out", out)
    assert rc == 2 and not out.exists(), err
    return one_line_error(err, *parts)


def write_grid(folder: Path, text: str, name: str = "g.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def nih_grid(folder: Path, root: Path, dataset_extra: str = "", *, name: str = "g.yaml", splits: str = "folds: 2",
             extra: str = "") -> Path:
    return write_grid(folder, f"name: bad\ndataset: {{kind: nih, root: {root}, image_size: 16{dataset_extra}}}\n"
                              f"splits: {{{splits}}}\nbackbones: [test_resnet]\nstrategies: [bce]\n"
                              f"train: {{epochs: 1}}\nlocalisation: {{enabled: false}}\n{extra}", name)


def nih_folder(root: Path, *, n: int = 24, finding=None, patient=None, missing=(), extra_rows=(), boxes=None,
               drop_column: str | None = None) -> Path:
    """A tiny dataset in the NIH layout: ``n`` 16-px PNGs, two images per patient, Effusion on every third
    image and Mass on some others (override with ``finding(i)`` / ``patient(i)``)."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"{i:08d}_000.png"
        label = finding(i) if finding else ("Effusion" if i % 3 == 0 else "Mass" if i % 4 == 1 else "No Finding")
        rows.append([name, label, "0", patient(i) if patient else str(i // 2), "50", "M", "PA", "16", "16", "0.1",
                     "0.1"])
        if i not in missing:
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / "images" / name)
    header = NIH_HEADER.split(",")
    lines = [NIH_HEADER] + [",".join(r) for r in rows] + list(extra_rows)
    if drop_column:
        j = header.index(drop_column)
        lines = [",".join(c for k, c in enumerate(line.split(",")) if k != j) for line in lines]
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    if boxes is not None:
        (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                                 + "".join(b + "\n" for b in boxes))
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the grid: one line naming file:line and key, exit 2, nothing written ------------------------------

@pytest.mark.parametrize("change, parts", [
    (("name: bad", "name: [bad"), ["g.yaml:", "YAML syntax error"]),
    (("train: {", "trian: {"), ["g.yaml:6: unknown key 'trian'; did you mean 'train'", "(valid: backbones, dataset"]),
    (("{epochs: 1,", "{epoch: 1,"), ["g.yaml:6: unknown key 'train.epoch'; did you mean 'epochs'?",
                                    "valid under train:"]),
    (("[test_resnet]", "[resnet181]"), ["g.yaml:4: backbones[0]: unknown backbone 'resnet181'; did you mean "
                                        "'resnet18'"]),
    (("[bce, focal]", "[bce, focl]"), ["g.yaml:5: strategies[1]: unknown strategy 'focl'; did you mean 'focal'"]),
    (("epochs: 1,", "epochs: -1,"), ["g.yaml:6: train.epochs: -1 is not valid; expected an integer >= 1"]),
    (("epochs: 1,", "epochs: three,"), ["g.yaml:6: train.epochs: 'three' is not valid; expected an integer"]),
    (("folds: 2,", "folds: 1,"), ["g.yaml:3: splits.folds: 1 is not valid; expected an integer >= 2"]),
    (("lr: 0.001", "lr: 0"), ["g.yaml:6: train.lr: 0", "is not valid; expected a number > 0"]),
    (("lr: 0.001", "lr: -1e-3"), ["g.yaml:6: train.lr: -0.001 is not valid; expected a number > 0"]),
    (("kind: synthetic, root: ROOT, n: 60, size: 32,", "kind: chexpert, root: ROOT, uncertainty: maybe,"),
     ["g.yaml:2: dataset.uncertainty: 'maybe' is not valid; expected one of 'ignore', 'ones', 'zeros'"]),
], ids=["yaml-syntax", "unknown-key", "unknown-nested-key", "unknown-backbone", "unknown-strategy",
        "negative-epochs", "epochs-not-a-number", "one-fold", "zero-lr", "negative-lr", "chexpert-uncertainty"])
def test_bad_grid_is_one_line_naming_file_line_and_key(tmp_path, capsys, change, parts):
    assert change[0] in GRID
    grid = write_grid(tmp_path, GRID.replace(*change).replace("ROOT", str(tmp_path / "data")))
    out = tmp_path / "run"
    rc, _, err = bench(capsys, "run", "--grid", grid, "--out", out)
    assert rc == 2
    one_line_error(err, str(grid), *parts)
    assert not out.exists() and not (tmp_path / "data").exists()


def test_grid_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    grid = write_grid(tmp_path, GRID.replace("ROOT", str(tmp_path / "data"))
                      + f"extra: !!python/object/apply:os.system ['touch {marker}']\n")
    rc, _, err = bench(capsys, "run", "--grid", grid, "--out", tmp_path / "run")
    assert rc == 2
    one_line_error(err, f"{grid}:10: YAML syntax error", "could not determine a constructor", "python/object")
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    from bench.errors import BenchError

    # `--debug` sets BENCH_DEBUG for the process (Ray workers and Ray Client then show their logs): undone
    # after the test, or every later cluster in this session would inherit it.
    monkeypatch.setenv("BENCH_DEBUG", "1")
    grid = write_grid(tmp_path, GRID.replace("ROOT", str(tmp_path)).replace("epochs: 1,", "epochs: -1,"))
    with pytest.raises(BenchError, match="train.epochs: -1 is not valid"):
        main(["--debug", "run", "--grid", str(grid), "--out", str(tmp_path / "run")])


def test_real_exit_codes_and_stderr(tmp_path):
    """As a shell sees it: exit 2 and one stderr line; with --debug the traceback (exit 1, Python's own).
    (A grid error found before torch and timm are imported: each process starts in about a second. The
    messages of every grid error are checked in process above.)"""
    grid = write_grid(tmp_path, GRID.replace("ROOT", str(tmp_path)).replace("train: {", "trian: {"))
    cmd = [sys.executable, "-m", "bench", "run", "--grid", str(grid), "--out", str(tmp_path / "run")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    one_line_error(r.stderr, "g.yaml:6: unknown key 'trian'; did you mean 'train'", "(valid: backbones, dataset")
    r = subprocess.run([sys.executable, "-m", "bench", "--debug", *cmd[3:]], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr
    assert "bench.errors.BenchError" in r.stderr and "unknown key 'trian'" in r.stderr
    assert not (tmp_path / "run").exists()


def test_grid_file_not_found(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = bench(capsys, "run", "--grid", "grids/nope.yml")
    assert rc == 2
    one_line_error(err, "grids/nope.yml: grid file not found")
    assert list(tmp_path.iterdir()) == []


# ---- the data: one line naming the file (and line) or the grid key, exit 2, nothing written -------------

def test_label_the_data_lacks(tmp_path, capsys):
    grid = nih_grid(tmp_path, nih_folder(tmp_path / "d"), ", labels: [Efusion, Mass]")
    refused(capsys, grid, tmp_path / "run",
            "dataset.labels: 'Efusion' is not a label of this dataset; did you mean 'Effusion'?",
            "(labels: Atelectasis, Cardiomegaly, Effusion,")


def test_label_too_rare_to_spread_over_the_folds(tmp_path, capsys):
    root = nih_folder(tmp_path / "d", finding=lambda i: "Hernia" if i == 0 else "Effusion" if i % 3 == 0 else "")
    grid = nih_grid(tmp_path, root, ", labels: [Effusion, Hernia]", splits="folds: 3")
    refused(capsys, grid, tmp_path / "run",
            "label 'Hernia' has 1 positive image(s), too few to spread over 3 folds; drop it "
            "(dataset.labels or dataset.min_positives) or use fewer folds")
    # The remedy it names works as far as the split (min_positives drops Hernia; the split is made).
    rc, out, err = bench(capsys, "data", "split", "--grid",
                         nih_grid(tmp_path, root, ", labels: [Effusion, Hernia], min_positives: 3",
                                  name="fixed.yaml", splits="folds: 3"))
    assert rc == 0 and "3 folds over 24 images / 12 patients" in out, err


def test_missing_dataset_root(tmp_path, capsys):
    grid = nih_grid(tmp_path, tmp_path / "nowhere")
    refused(capsys, grid, tmp_path / "run",
            f"dataset.root: '{tmp_path / 'nowhere'}' does not exist", "use kind: synthetic")


# A damaged NIH folder: (nih_folder's arguments, the file named, what follows its name in the error line, and
# any further parts the line holds)
BROKEN_NIH = {
    "a column missing": ({"drop_column": "Patient ID"}, "Data_Entry_2017.csv",
                         ": column 'Patient ID' is missing", "(found: Image Index,"),
    "a duplicate image row": ({"extra_rows": ["00000003_000.png,Mass,1,1,50,M,PA,16,16,0.1,0.1"]},
                              "Data_Entry_2017.csv",
                              ":26: duplicate image row '00000003_000.png' (each image must appear once)"),
    "a patient id missing": ({"patient": lambda i: "" if i == 5 else str(i // 2)}, "Data_Entry_2017.csv",
                             ":7: patient id is missing for image '00000005_000.png'"),
    "a box naming an unknown image": ({"boxes": ["00000000_000.png,Effusion,10,10,100,100",
                                                 "99999999_000.png,Effusion,1,1,10,10"]}, "BBox_List_2017.csv",
                                      ":3: box names image '99999999_000.png', which is not in the label file"),
    "a box outside the image": ({"boxes": ["00000000_000.png,Effusion,1000,10,100,100"]}, "BBox_List_2017.csv",
                                ":2: box [1000.0, 10.0, 100.0, 100.0] of '00000000_000.png' lies outside the "
                                "1024x1024 image frame (x, y >= 0, w, h > 0, x + w and y + h <= 1024)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_NIH))
def test_damaged_nih_files_are_named_with_the_line(tmp_path, capsys, case):
    damage, name, message, *more = BROKEN_NIH[case]
    root = nih_folder(tmp_path / "d", **damage)
    refused(capsys, nih_grid(tmp_path, root), tmp_path / "run", f"{root / name}{message}", *more)


def test_missing_images_are_dropped_and_counted(tmp_path, capsys):
    root = nih_folder(tmp_path / "d", missing=(1, 2, 7))
    rc, out, err = bench(capsys, "data", "describe", "--grid", nih_grid(tmp_path, root))
    assert rc == 0, err
    assert out.startswith("nih: 21 images, 12 patients\ndropped: image file missing 3\n")


def test_nothing_left_after_filtering(tmp_path, capsys):
    root = nih_folder(tmp_path / "d")
    (root / "test_list.txt").write_text("\n".join(f"{i:08d}_000.png" for i in range(24)) + "\n")
    grid = nih_grid(tmp_path, root, ", labels: [Effusion], official_test: exclude")
    refused(capsys, grid, tmp_path / "run",
            f"dataset '{root}': no images left after filtering (24 in the official test list)")


def test_csv_whose_images_are_all_missing(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("path,Effusion\n" + "".join(f"img{i}.png,{i % 2}\n" for i in range(6)))
    grid = write_grid(tmp_path, GRID.replace("kind: synthetic, root: ROOT, n: 60, size: 32,",
                                             f"kind: csv, csv: {tmp_path / 'labels.csv'}, labels: [Effusion],"))
    refused(capsys, grid, tmp_path / "run",
            f"{tmp_path / 'labels.csv'} (image root {tmp_path}): none of the 6 images exists (first: "
            f"{tmp_path / 'img0.png'}); point the image root at the folder holding them")


def test_dataset_root_not_given(tmp_path, capsys):
    grid = write_grid(tmp_path, GRID.replace("kind: synthetic, root: ROOT, n: 60, size: 32,", "kind: nih,"))
    refused(capsys, grid, tmp_path / "run",
            f"{grid}:2: dataset.root is required for kind 'nih' (the folder holding Data_Entry_2017.csv "
            "and images/)")


def test_unreadable_images_with_on_bad_image_fail_are_listed(tmp_path, capsys):
    root = nih_folder(tmp_path / "d", missing=(1,))
    (root / "images" / "00000003_000.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png at all")
    (root / "images" / "00000004_000.png").write_bytes(b"")
    grid = nih_grid(tmp_path, root, ", labels: [Effusion, Mass], on_bad_image: fail")
    rc, out, err = bench(capsys, "run", "--grid", grid, "--out", tmp_path / "run")
    assert rc == 2 and not (tmp_path / "run").exists()
    assert "dataset: 23 images, 12 patients, 2 labels, 0 boxes (dropped: 1 image file missing)" in out
    one_line_error(err, "error: 2 unreadable image(s): ",
                   f"{root / 'images' / '00000003_000.png'}: cannot decode image (cannot identify image file",
                   f"{root / 'images' / '00000004_000.png'}: zero-byte file",
                   "(set dataset.on_bad_image: exclude to leave them out)")


def test_an_unreadable_image_replaced_is_read_again(tmp_path, capsys):
    root = nih_folder(tmp_path / "d", finding=lambda i: "Hernia" if i == 9 else "Effusion" if i % 3 == 0 else "")
    good = (root / "images" / "00000003_000.png").read_bytes()
    (root / "images" / "00000003_000.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png at all")
    grid = nih_grid(tmp_path, root, ", labels: [Effusion, Hernia], on_bad_image: fail")
    rc, _, err = bench(capsys, "-q", "run", "--grid", grid, "--out", tmp_path / "run")
    assert rc == 2
    one_line_error(err, "error: 1 unreadable image(s): ", "00000003_000.png: cannot decode image")
    (root / "images" / "00000003_000.png").write_bytes(good)  # fixed: the cached verdict must not stick
    refused(capsys, grid, tmp_path / "run",
            "label 'Hernia' has 1 positive image(s), too few to spread over 2 folds")


def test_chexpert_reader_names_the_valid_uncertainty_policies(tmp_path):
    from bench.data.chexpert import read_chexpert
    from bench.errors import BenchError

    with pytest.raises(BenchError) as info:
        read_chexpert(tmp_path, uncertainty="one")
    assert str(info.value) == "uncertainty='one' is not valid; did you mean 'ones'?; use one of 'ignore', 'ones', 'zeros'"


def test_out_folder_that_is_not_a_run_folder(tmp_path, capsys, synth_root):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    grid = write_grid(tmp_path, GRID.replace("ROOT", str(synth_root)))
    rc, _, err = bench(capsys, "-q", "run", "--grid", grid, "--out", out)
    assert rc == 2
    one_line_error(err, f"--out '{out}' is not empty and is not a run folder; choose another --out")
    assert snapshot(out) == {"notes.txt": b"keep me"}


def test_ray_client_without_storage(tmp_path, capsys, synth_root):
    """Under Ray Client Tune's loop runs on the head node, which cannot write into this machine's folder."""
    grid, out = write_grid(tmp_path, GRID.replace("ROOT", str(synth_root))), tmp_path / "run"
    rc, _, err = bench(capsys, "-q", "run", "--grid", grid, "--out", out, "--address", "ray://127.0.0.1:10001")
    assert rc == 2 and not out.exists(), err
    one_line_error(err, "--address ray://127.0.0.1:10001: add --storage s3://BUCKET/PREFIX")


def test_split_file_with_a_patient_in_two_folds(tmp_path, capsys, synth_root):
    """A hand-edited manifest whose hash was recomputed to match: refused by the driver, nothing written."""
    from bench.data.nih import read_nih
    from bench.data.splits import make_split
    from test_reproducibility import leak_one_patient

    rec = read_nih(synth_root)
    manifest = make_split(rec, n_folds=2, val_fraction=0.25, seed=0, min_positives_per_fold=0)
    leaky = leak_one_patient(manifest, rec)
    leaky.to_json(tmp_path / "split.json")
    grid = write_grid(tmp_path, GRID.replace("ROOT", str(synth_root)).replace("n: 60, size: 32, image_size: 16",
                                                                              "n: 200, size: 64, image_size: 32")
                      .replace("seed: 0}", f"seed: 0, file: {tmp_path / 'split.json'}}}"))
    refused(capsys, grid, tmp_path / "run",
            f"splits.file '{tmp_path / 'split.json'}': patient leakage in fold 0 (training and held-out "
            "rows): 1 patient(s) have images on both sides", "make the split again")



# ---- a preset tuned by bench tune that could leak a held-out image: refused, nothing written ------------

def _tuned_preset(name: str, manifest, folds=(0, 1)) -> dict:
    """A preset as ``bench tune`` writes it, tuned (per fold) on ``manifest``'s split."""
    from bench.tuned_presets import tuning_record

    return {"name": name, "description": "focal loss, tuned per fold", "loss": {"name": "focal", "gamma": 2.0},
            "sampler": {"name": "none"}, "threshold": {"name": "f1"},
            "folds": {f: {"loss.gamma": 2.5 + f} for f in folds},
            "tuned": {"from": "focal", "backbone": "test_resnet", "trials": 2, **tuning_record(manifest)}}


def _tuned_on_another_split(name, path, rec, run):
    from bench.data.splits import make_split

    other = make_split(rec, n_folds=2, val_fraction=0.25, seed=1)
    seen = set(np.asarray(other.image_ids)[np.asarray(other.folds) != 0].tolist())
    overlap = len(seen & set(np.asarray(run.image_ids)[np.asarray(run.folds) == 0].tolist()))
    assert overlap > 0
    return _tuned_preset(name, other), name, [
        f"{path}: preset '{name}' was tuned on {overlap} image(s) of this run's held-out fold 0 (tuning split "
        f"{other.hash[:12]}, this run's split {run.hash[:12]}); tune it again on this grid's split (bench tune --grid"]


def _old_style(name, path, rec, run):
    doc = {"name": name, "description": "focal, tuned on fold 0", "loss": {"name": "focal", "gamma": 3.1},
           "sampler": {"name": "none"}, "threshold": {"name": "f1"},
           "tuned": {"from": "focal", "fold": 0, "params": {"loss.gamma": 3.1}, "val_macro_auc": 0.8}}
    return doc, name, [f"{path}: preset '{name}' does not record per fold which images it was tuned on",
                       "--strategy focal)"]


def _edited_record(name, path, rec, run):
    doc = _tuned_preset(name, run)
    doc["tuned"]["images"]["sha256"] = "0" * 64
    return doc, name, [f"{path}: tuned.images is damaged or was edited (its sha256 does not match its content)"]


def _missing_fold(name, path, rec, run):
    return _tuned_preset(name, run, folds=(0,)), name, [
        f"{path}: preset '{name}' holds tuned parameters for folds [0], this run also holds out fold 1"]


def _as_composition_base(name, path, rec, run):
    return _tuned_preset(name, run), f"{{name: mine, preset: {name}, loss: {{name: focal, gamma: 3}}}}", [
        f"g.yaml:5: strategies[1]: preset '{name}' ({path}) was tuned by bench tune", "name it on its own"]


TUNED_PRESETS = {"tuned-on-another-split": _tuned_on_another_split, "old-style-without-record": _old_style,
                 "edited-record": _edited_record, "fold-missing": _missing_fold,
                 "composition-base": _as_composition_base}


@pytest.mark.parametrize("case", sorted(TUNED_PRESETS))
def test_tuned_preset_that_could_leak_a_held_out_image(tmp_path, capsys, monkeypatch, synth_root, case):
    """``bench run`` checks every tuned preset against its own split, image id by image id, before it writes
    anything. (The accepted case, a preset tuned on the run's split, is in test_tune.py.)"""
    import yaml

    from bench.config import load_grid, resolve_paths
    from bench.run import prepare_data

    monkeypatch.chdir(tmp_path)
    text = GRID.replace("ROOT", str(synth_root)).replace("n: 60, size: 32, image_size: 16",
                                                         "n: 200, size: 64, image_size: 32")
    rec, _, run = prepare_data(resolve_paths(load_grid(write_grid(tmp_path, text, "plain.yaml"))), say=lambda s: None)
    name = "focal_" + case.replace("-", "_")  # one name per case: the registry outlives a test
    path = tmp_path / "presets" / f"{name}.yaml"
    doc, strategy, parts = TUNED_PRESETS[case](name, path, rec, run)
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    grid = write_grid(tmp_path, text.replace("[bce, focal]", f"[bce, {strategy}]"))
    refused(capsys, grid, tmp_path / "run", *parts)


# ---- a run over hostile and damaged data: it trains, counts, warns, escapes, stays off the network ------

def _hostile_dataset(folder: Path, synth_root: Path) -> Path:
    """A CSV dataset over the synthetic images: one label named <script>, every other image a 16-bit PNG,
    3 rows whose image is missing, one corrupt PNG and one zero-byte PNG."""
    entries = pd.read_csv(synth_root / "Data_Entry_2017.csv", dtype={"Patient ID": str})
    (folder / "img16").mkdir()
    rows = []
    for i, r in entries.iterrows():
        path = synth_root / "images" / r["Image Index"]
        if i % 2:
            wide = np.asarray(Image.open(path)).astype(np.uint16) * 257
            path = folder / "img16" / r["Image Index"]
            Image.fromarray(wide).save(path)
        found = r["Finding Labels"].split("|")
        rows.append({"path": str(path), EVIL: int("Effusion" in found), "Infiltration": int("Infiltration" in found),
                     "patient": r["Patient ID"]})
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (folder / "empty.png").write_bytes(b"")
    for k, name in enumerate(["gone1.png", "gone2.png", "gone3.png", "corrupt.png", "empty.png"]):
        rows.append({"path": str(folder / name), EVIL: k % 2, "Infiltration": 0, "patient": f"x{k}"})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def hostile_run(ray_session, synth_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    csv = _hostile_dataset(folder, synth_root)
    grid = write_grid(folder, f"""\
name: hostile
dataset: {{kind: csv, root: {folder}, csv: {csv}, image_column: path, patient_column: patient,
          labels: ['{EVIL}', Infiltration], image_size: 32}}
splits: {{folds: 2, val_fraction: 0.25, seed: 0}}
backbones: [test_resnet]
strategies: [bce]
train: {{epochs: 1, batch_size: 32, lr: 0.003}}
seeds: [0]
localisation: {{enabled: false}}
report: {{bootstrap: 20}}
""")
    out, err, logs = io.StringIO(), io.StringIO(), _Records()
    logging.getLogger().addHandler(logs)
    # The suite's network guard (tests/_netguard, installed here and in every Ray worker by conftest) refuses and
    # logs any attempt beyond loopback; test_netguard.py tests the guard itself.
    assert loopback_guard.status()["installed"]
    log = Path(os.environ[loopback_guard.LOG_ENV])
    start = log.stat().st_size
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["run", "--grid", str(grid), "--out", str(folder / "run")])
    finally:
        logging.getLogger().removeHandler(logs)
    with log.open() as f:
        f.seek(start)
        attempts = loopback_guard.unknown_attempts(f.read().splitlines())
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "logs": logs.messages, "run": folder / "run",
            "grid": grid, "folder": folder, "network": attempts}


@pytest.mark.slow
def test_hostile_run_trains_on_16_bit_pngs(hostile_run):
    assert hostile_run["rc"] == 0, hostile_run["out"][-3000:] + hostile_run["err"][-3000:]
    run = hostile_run["run"]
    held_out = []
    for fold in (0, 1):
        trial = run / "trials" / f"test_resnet-bce-f{fold}-s0"
        summary = json.loads((trial / "metrics.json").read_text())["summary"]
        with np.load(trial / "predictions.npz") as z:
            held_out += list(z["image_ids"])
            assert np.isfinite(z["probs"]).all()
            # The reported macro AUC is the mean of sklearn's per-label AUCs over the held-out predictions.
            aucs = [roc_auc_score(z["labels"][known, j], z["probs"][known, j])
                    for j in range(z["labels"].shape[1])
                    for known in [~np.isnan(z["labels"][:, j])] if len(set(z["labels"][known, j])) == 2]
        assert len(aucs) == 2 and summary["macro_auc"] == pytest.approx(np.mean(aucs), abs=1e-9)
    assert len(held_out) == 200 and sum("/img16/" in i for i in held_out) == 100


@pytest.mark.slow
def test_hostile_run_counts_missing_and_lists_unreadable_images(hostile_run):
    assert "dataset: 202 images, 59 patients, 2 labels, 0 boxes (dropped: 3 image file missing)" in hostile_run["out"]
    warning = [m for m in hostile_run["logs"] if m.startswith("excluding")]
    assert len(warning) == 1, hostile_run["logs"]
    folder = hostile_run["folder"]
    assert warning[0].startswith("excluding 2 unreadable image(s): ")
    assert f"{folder / 'corrupt.png'}: cannot decode image" in warning[0]
    assert f"{folder / 'empty.png'}: zero-byte file" in warning[0]
    described = json.loads((hostile_run["run"] / "dataset.json").read_text())
    assert described["images"] == 200
    assert described["dropped"] == {"image file missing": 3, "unreadable image": 2}


@pytest.mark.slow
def test_hostile_label_is_escaped_in_the_page(hostile_run):
    page = (hostile_run["run"] / "leaderboard.html").read_text()
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"auc_{EVIL}" in pd.read_csv(hostile_run["run"] / "leaderboard.csv").columns


@pytest.mark.slow
def test_run_reaches_no_address_beyond_loopback(hostile_run):
    """Nothing but the (local) Ray cluster: no usage statistics, no weight or data downloads."""
    assert hostile_run["rc"] == 0
    assert hostile_run["network"] == []
    from bench.tuner import ray_env

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
        ray_env()
        assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


@pytest.mark.slow
def test_run_folder_of_another_grid_is_refused_and_left_alone(hostile_run, capsys):
    run, grid = hostile_run["run"], hostile_run["grid"]
    before = snapshot(run)
    other = write_grid(hostile_run["folder"], grid.read_text().replace("epochs: 1,", "epochs: 2,"), "other.yaml")
    rc, _, err = bench(capsys, "-q", "run", "--grid", other, "--out", run)
    assert rc == 2
    one_line_error(err, f"run folder '{run}' was made by a different grid ({grid}, digest ",
                   "use another --out or the same grid")
    assert snapshot(run) == before
    # Only the scheduling changed (resources are not part of the grid's digest): the run resumes, trains nothing.
    same = write_grid(hostile_run["folder"], grid.read_text() + "resources: {cpu: 1, max_concurrent: 1}\n",
                      "same.yaml")
    trials = {k: v for k, v in before.items() if k.startswith("trials/")}
    rc, out, err = bench(capsys, "run", "--grid", same, "--out", run)
    assert rc == 0, err
    assert "2 trials (1 backbones x 1 strategies x 2 folds x 1 seeds); 2 already done" in out
    assert {k: v for k, v in snapshot(run).items() if k.startswith("trials/")} == trials


# ---- a full disk: no result file half-written, one line, exit 1 ----------------------------------------

def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["leaderboard.csv", "leaderboard.html"])
def test_full_disk_while_writing_the_reports(hostile_run, capsys, monkeypatch, victim):
    run = hostile_run["run"]
    before = (run / victim).read_bytes()
    real_to_csv, real_write_text = pd.DataFrame.to_csv, Path.write_text

    def to_csv(self, path_or_buf=None, *args, **kwargs):
        if str(path_or_buf).endswith(f"{victim}.tmp"):
            text = real_to_csv(self, None, *args, **kwargs)
            real_write_text(Path(path_or_buf), text[: len(text) // 2])  # half of it fits
            raise _enospc()
        return real_to_csv(self, path_or_buf, *args, **kwargs)

    def write_text(self, data, *args, **kwargs):
        if self.name == f"{victim}.tmp":
            real_write_text(self, data[: len(data) // 2], *args, **kwargs)
            raise _enospc()
        return real_write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    monkeypatch.setattr(Path, "write_text", write_text)
    rc, _, err = bench(capsys, "report", run)
    assert rc == 1
    one_line_error(err, f"error: no space left on the device while writing {run / victim}; nothing was left "
                        "half-written.", "re-run the same command")
    assert (run / victim).read_bytes() == before
    assert not list(run.rglob("*.tmp"))


@pytest.mark.slow
def test_full_disk_while_a_resumed_run_writes_run_json(hostile_run, capsys, monkeypatch):
    run = hostile_run["run"]
    before = (run / "run.json").read_bytes()
    real = Path.write_text

    def write_text(self, data, *args, **kwargs):
        if self.name == "run.json.tmp":
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise _enospc()
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    rc, _, err = bench(capsys, "-q", "run", "--grid", hostile_run["grid"], "--out", run)
    assert rc == 1
    one_line_error(err, f"no space left on the device while writing {run / 'run.json'}")
    assert (run / "run.json").read_bytes() == before
    assert not list(run.rglob("*.tmp"))
    for name in ("grid.json", "split.json", "dataset.json", "run.json"):
        json.loads((run / name).read_text())


def test_full_disk_on_the_first_write_leaves_a_folder_the_next_run_accepts(tmp_path, capsys, monkeypatch,
                                                                          synth_root):
    from bench.config import load_grid, resolve_paths
    from bench.run import check_run_dir

    grid = write_grid(tmp_path, GRID.replace("ROOT", str(synth_root)).replace("n: 60, size: 32, image_size: 16",
                                                                              "n: 200, size: 64, image_size: 32"))
    real = Path.write_text

    def write_text(self, data, *args, **kwargs):
        if self.name == "grid.json.tmp":
            real(self, data[:10], *args, **kwargs)
            raise _enospc()
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    out = tmp_path / "run"
    rc, _, err = bench(capsys, "-q", "run", "--grid", grid, "--out", out)
    assert rc == 1
    one_line_error(err, f"no space left on the device while writing {out / 'grid.json'}")
    assert list(out.iterdir()) == []
    assert check_run_dir(out, resolve_paths(load_grid(grid))) is False  # a fresh start, not "not a run folder"


# ---- trials: out of memory, a full disk, hostile weights --------------------------------------------

@pytest.fixture(scope="module")
def trial_data(synth_root):
    return tiny_trial_data(synth_root, {"enabled": False})


trial_spec = tiny_spec


CPU_ALLOC = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
             "allocate 107374182400 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("error, message", [
    (lambda torch: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total)"),
     "trial test_resnet-bce-f0-s0 ran out of GPU memory with test_resnet at batch size 32: lower train.batch_size "
     "or give it a whole GPU (resources.gpu)"),
    (lambda torch: RuntimeError(CPU_ALLOC),
     "trial test_resnet-bce-f0-s0 ran out of host memory (can't allocate memory: you tried to allocate 107374182400 "
     "bytes. Error code 12 (Cannot allocate memory)); lower train.batch_size or run fewer trials at once "
     "(resources.max_concurrent)"),
    (lambda torch: MemoryError("Unable to allocate 100. GiB for an array with shape (32, 1, 32, 32)"),
     "trial test_resnet-bce-f0-s0 ran out of host memory (Unable to allocate 100. GiB"),
], ids=["cuda", "torch-host", "numpy-host"])
def test_out_of_memory_in_a_trial_is_reported_as_such(trial_data, monkeypatch, error, message):
    import torch

    from bench import engine
    from bench.trial import OutOfMemory, run_trial

    def train_epoch(*args, **kwargs):
        raise error(torch)

    monkeypatch.setattr(engine, "train_epoch", train_epoch)
    with pytest.raises(OutOfMemory) as info:
        run_trial(trial_spec(), trial_data, report=lambda metrics, folder: None)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_full_disk_inside_a_trial_leaves_no_outputs(trial_data, monkeypatch):
    from bench.trial import run_trial

    real = Path.write_text
    reported = []

    def write_text(self, data, *args, **kwargs):
        if self.name == "metrics.json.tmp":
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise _enospc()
        return real(self, data, *args, **kwargs)

    def report(metrics, folder):
        reported.append(sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")))

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OSError) as info:
        run_trial(trial_spec(), trial_data, report=report)
    assert info.value.errno == errno.ENOSPC
    assert reported == []  # the last epoch's checkpoint (holding the outputs) is never handed to Tune


def _oom_on_fold_1(config, data=None, finished=None):
    """Bench's trainable, whose training runs out of (GPU) memory on fold 1: shipped by value into the Ray
    worker, it patches the worker's own engine for the duration of that trial only."""
    import torch

    from bench import engine, tuner

    if config["trial"]["fold"] != 1:
        return tuner._trainable(config, data=data, finished=finished)
    original = engine.train_epoch

    def train_epoch(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total)")

    engine.train_epoch = train_epoch
    try:
        return tuner._trainable(config, data=data, finished=finished)
    finally:
        engine.train_epoch = original


@pytest.mark.slow
def test_out_of_memory_trial_is_named_by_bench_run(ray_session, synth_root, tmp_path, capsys, monkeypatch):
    import ray.cloudpickle

    from bench import tuner

    this = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(this)
    try:
        monkeypatch.setattr(tuner, "_trainable", _oom_on_fold_1)
        grid = write_grid(tmp_path, GRID.replace("ROOT", str(synth_root))
                          .replace("n: 60, size: 32, image_size: 16", "n: 200, size: 64, image_size: 32")
                          .replace("[bce, focal]", "[bce]") + "resources: {cpu: 1, max_failures: 0}\n")
        rc, out, err = bench(capsys, "run", "--grid", grid, "--out", tmp_path / "run")
    finally:
        ray.cloudpickle.unregister_pickle_by_value(this)
    assert rc == 3, out[-3000:] + err[-3000:]
    line = [x for x in out.splitlines() if x.startswith("  errored: ")]
    assert line == [line[0]] and line[0].startswith("  errored: test_resnet-bce-f1-s0: ")
    assert ("trial test_resnet-bce-f1-s0 ran out of GPU memory with test_resnet at batch size 16: lower "
            "train.batch_size or give it a whole GPU (resources.gpu)") in line[0]
    one_line_error(err, "error: 1 of 2 trials errored; the leaderboard is incomplete. Re-run the same command to "
                        "retry them.")
    run = tmp_path / "run"
    assert (run / "trials" / "test_resnet-bce-f0-s0" / "metrics.json").is_file()
    assert "ran out of GPU memory" in json.loads((run / "errors.json").read_text())["test_resnet-bce-f1-s0"]
    assert json.loads((run / "run.json").read_text())["status"] == "incomplete"


def _bomb(path: Path, marker: Path) -> Path:
    """A checkpoint whose unpickling runs ``touch marker``."""
    import torch

    class Bomb:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"conv1.weight": Bomb()}, path)
    return path


def test_weights_file_that_would_run_code_is_refused(tmp_path, trial_data):
    import pickle

    import torch

    from backbones import create_model
    from bench.trial import STATE_FILE, run_trial

    marker = tmp_path / "pwned"
    bomb = _bomb(tmp_path / "weights.pth", marker)
    with pytest.raises(RuntimeError, match="weights_only=True blocked loading this checkpoint .* posix.system"):
        create_model("test_resnet", 2, pretrained=str(bomb))  # what train.pretrained: weights.pth does (timm)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    _bomb(ckpt / STATE_FILE, marker)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        run_trial(trial_spec(), trial_data, report=lambda m, f: None, checkpoint_dir=str(ckpt))  # a resumed trial
    assert not marker.exists()
    torch.load(bomb, weights_only=False)  # the control: unpickled unsafely, it does run code
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads_through_train_pretrained(tmp_path, suffix):
    import timm
    import torch

    from backbones import create_model
    from bench.config import parse_grid

    source = timm.create_model("test_resnet", pretrained=False)  # RGB, 1000 classes: like hub weights
    state = source.state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        safetensors = pytest.importorskip("safetensors.torch")
        safetensors.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    cfg = parse_grid({"backbones": ["test_resnet"], "train": {"pretrained": str(path)}})
    model = create_model("test_resnet", 3, pretrained=cfg.train.pretrained)
    loaded = model.state_dict()
    # timm adapts the RGB stem to one channel (summed) and replaces the 1000-class head; the rest is the file's.
    torch.testing.assert_close(loaded["conv1.0.weight"], state["conv1.0.weight"].sum(dim=1, keepdim=True))
    assert loaded["fc.weight"].shape == (3, state["fc.weight"].shape[1])
    same = [k for k in state if not k.startswith(("conv1.0.", "fc."))]
    assert len(same) > 20
    for key in same:
        torch.testing.assert_close(loaded[key], state[key], msg=key)


def test_code_loads_yaml_and_checkpoints_safely():
    """No unsafe YAML loader, no pickle, every torch.load with weights_only=True, no np.load(allow_pickle=True)."""
    problems = []
    for package in ("bench", "reports", "strategies", "backbones"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                name = ast.unparse(node.func)
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                where = f"{path.relative_to(REPO)}:{node.lineno}: {name}"
                if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all") or \
                        kw.get("Loader", "yaml.SafeLoader") != "yaml.SafeLoader":
                    problems.append(where)
                if name.startswith(("pickle.", "cloudpickle.", "dill.")) and "load" in name:
                    problems.append(where)
                if name == "torch.load" and kw.get("weights_only") != "True":
                    problems.append(where)
                if name.endswith("np.load") and kw.get("allow_pickle", "False") != "False":
                    problems.append(where)
    assert problems == []
