"""The page's "Training" section: per-epoch curves equal to the trials' histories, stage boundaries, the stage
table, the post-hoc step's fitted tau, disagreeing trials said so, and runs written before any of it still render.

Run folders as ``tests/test_html.py`` writes them (``make_fake_run(history=True)``: every trial records its
epochs, the strategies of ``STAGED`` their stages, ``tau_norm`` its tau); expected values are recomputed here
from the trials' ``metrics.json`` files.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from test_html import EPOCHS, STAGED, make_fake_run, parse

STRATEGIES = ("bce", "crt", "ldam_drw", "tau_norm")
BACKBONES = ("resnet18", "densenet121")


def _build(root: Path, **kw) -> str:
    from reports.leaderboard import build_report

    opts = dict(kind="synthetic", backbones=BACKBONES, strategies=STRATEGIES, folds=3, seeds=(0, 1), n=120,
                n_boot=0, localisation=False, history=True)
    make_fake_run(root, **{**opts, **kw})
    return _rebuild(root)


def _rebuild(root: Path) -> str:
    from reports.leaderboard import build_report

    build_report(root, n_boot=0)
    return (root / "leaderboard.html").read_text(encoding="utf-8")


def _docs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "trials").glob("*/metrics.json"))]


def _figure(page: str, fig_id: str) -> dict:
    return next(json.loads(s) for a, s in parse(page).scripts if a.get("id") == fig_id + "-data")


def _rows(page: str, table_id: str) -> list[list[str]]:
    """Each body row's cells (their sort keys, unescaped)."""
    body = page.split(f'<table id="{table_id}"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[html.unescape(v) for v in re.findall(r'data-v="([^"]*)"', r)] for r in re.findall(r"<tr>(.*?)</tr>", body)]


def _panel(trace_or_shape: dict, key: str = "xaxis") -> int:
    """0-based subplot of a trace (``xaxis``: 'x', 'x2', ...) or of a shape / annotation (``xref``)."""
    ref = trace_or_shape[key].split()[0]
    return int(ref[1:] or 1) - 1


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("training") / "staged"
    return root, _build(root)


def test_section_in_the_page_and_its_navigation(staged):
    _, page = staged
    tags = parse(page)
    ids = {a.get("id") for _, a in tags.tags}
    assert {"training", "fig-train-auc", "fig-train-loss", "stages", "posthoc"} <= ids
    assert "#training" in [a.get("href") for t, a in tags.tags if t == "a"]


@pytest.mark.parametrize("metric, fig_id", [("val_macro_auc", "fig-train-auc"), ("train_loss", "fig-train-loss")])
def test_curves_are_the_histories_fold_means_with_min_max_bands(staged, metric, fig_id):
    root, page = staged
    values: dict = {}
    for d in _docs(root):
        for h in d["history"]:
            per_fold = values.setdefault((d["backbone"], d["strategy"], h["epoch"]), {})
            per_fold.setdefault(d["fold"], []).append(h[metric])
    fig = _figure(page, fig_id)
    titles = [a["text"] for a in fig["layout"]["annotations"][:len(STRATEGIES)]]
    assert titles[:3] == list(STRATEGIES[:3]) and titles[3].startswith("tau_norm <i>(+ tau_norm)")
    lines = [t for t in fig["data"] if t.get("mode") == "lines+markers"]
    bands = [t for t in fig["data"] if t.get("fill") == "toself"]
    assert len(lines) == len(bands) == len(STRATEGIES) * len(BACKBONES)
    for line, band in zip(lines, bands):
        strategy, backbone = STRATEGIES[_panel(line)], line["name"]
        assert band["legendgroup"] == backbone and _panel(band) == _panel(line)
        assert line["x"] == list(range(1, EPOCHS + 1))
        want = [values[(backbone, strategy, e)] for e in line["x"]]
        assert line["y"] == pytest.approx([np.mean([np.mean(v) for v in w.values()]) for w in want], abs=1e-12)
        lo = [min(min(v) for v in w.values()) for w in want]
        hi = [max(max(v) for v in w.values()) for w in want]
        assert band["y"] == pytest.approx(hi + lo[::-1], abs=1e-12)
        assert [c[2] for c in line["customdata"]] == [6] * EPOCHS  # 3 folds x 2 seeds
    matched = [v.get("matches") for k, v in fig["layout"].items() if k.startswith("yaxis") and k != "yaxis"]
    assert matched == (["y"] * (len(STRATEGIES) - 1) if metric == "val_macro_auc" else [None] * (len(STRATEGIES) - 1))


def test_stage_boundaries_shaded_and_named_on_staged_panels_only(staged):
    _, page = staged
    for fig_id in ("fig-train-auc", "fig-train-loss"):
        layout = _figure(page, fig_id)["layout"]
        rects = [s for s in layout["shapes"] if s["type"] == "rect"]
        panels = {}
        for r in rects:
            panels.setdefault(STRATEGIES[_panel(r, "xref")], []).append((r["x0"], r["x1"]))
        assert panels == {"crt": [(0.5, 3.5), (3.5, 4.5)], "ldam_drw": [(0.5, 3.5), (3.5, 4.5)]}  # not tau_norm's one
        lines = [s for s in layout["shapes"] if s["type"] == "line"]
        assert sorted((STRATEGIES[_panel(s, "xref")], s["x0"]) for s in lines) == [("crt", 3.5), ("ldam_drw", 3.5)]
        assert all(s["line"]["dash"] == "dash" for s in lines)
        names = sorted((STRATEGIES[_panel(a, "xref")], a["text"]) for a in layout["annotations"] if "xref" in a
                       and a["xref"] != "paper")
        assert names == [("crt", "classifier · re-init"), ("crt", "features"), ("ldam_drw", "drw"),
                         ("ldam_drw", "ldam")]


def test_stage_table_lists_every_stage_with_its_epochs(staged):
    _, page = staged
    rows = _rows(page, "stages")
    assert rows == [
        ["crt", "1", "features", "1–3 (3 epochs)", "bce", "none", "all parameters", "no", "yes", "12"],
        ["crt", "2", "classifier", "4 (1 epoch)", "bce", "class_aware", "classifier only (the rest frozen)", "yes",
         "yes", "12"],
        ["ldam_drw", "1", "ldam", "1–3 (3 epochs)", "ldam (max_m 0.5, s 30, beta 0)", "none", "all parameters", "no",
         "yes", "12"],
        ["ldam_drw", "2", "drw", "4 (1 epoch)", "ldam (max_m 0.5, s 30, beta 0.9999)", "none", "all parameters", "no",
         "no", "12"],
        ["tau_norm", "1", "train", "1–4 (4 epochs)", "bce", "none", "all parameters", "no", "yes", "12"]]
    assert [len(v) for v in STAGED.values()][:3] == [2, 2, 1]
    table = page.split('<table id="stages"', 1)[1].split("</table>", 1)[0]
    assert "<b>ldam (max_m 0.5, s 30, beta 0.9999)</b>" in table and "<b>class_aware</b>" in table  # what changes
    assert "Every other strategy (bce) trains one loss and sampler for all epochs." in page
    assert "Warning" not in page.split('id="training"', 1)[1].split("</section>", 1)[0]


def test_posthoc_table_gives_the_tau_each_trial_chose(staged):
    root, page = staged
    rows = _rows(page, "posthoc")
    assert [r[:5] for r in rows] == [[b, "tau_norm", "tau_norm", "taus: 0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2; "
                                      "criterion: f1_fixed", "tau"] for b in BACKBONES]
    for row in rows:
        docs = sorted((d for d in _docs(root) if d["strategy"] == "tau_norm" and d["backbone"] == row[0]),
                      key=lambda d: (d["seed"], d["fold"]))
        taus = [d["posthoc"]["tau"] for d in docs]
        assert float(row[5]) == pytest.approx(np.mean(taus), abs=1e-12) and row[8] == str(len(docs)) == "6"
        assert row[6] == f"{min(taus):g} – {max(taus):g}"
        assert row[7] == ", ".join(f"f{d['fold']} s{d['seed']}: {d['posthoc']['tau']:g}" for d in docs)
    assert "Per-trial lists (scores) are in each trial" in page


def test_disagreeing_and_older_trials_are_said_so(tmp_path):
    root = tmp_path / "mixed"
    _build(root, backbones=("resnet18",), strategies=("bce", "crt", "tau_norm"), seeds=(0,))
    edits = {"resnet18-crt-f1-s0": lambda d: d["stages"][0].update(epochs=[1, 2]) or d["stages"][1].update(
                 epochs=[3, 4]),
             "resnet18-crt-f2-s0": lambda d: d.pop("stages"),
             "resnet18-tau_norm-f0-s0": lambda d: d.pop("posthoc"),
             "resnet18-bce-f0-s0": lambda d: d.update(history=[{"epoch": 1, "train_seconds": 1.5,
                                                                       "train_images_per_s": 100.0}])}
    for tid, edit in edits.items():
        f = root / "trials" / tid / "metrics.json"
        doc = json.loads(f.read_text())
        edit(doc)
        f.write_text(json.dumps(doc))
    page = _rebuild(root)
    section = page.split('<section id="training">', 1)[1].split("</section>", 1)[0]
    assert "the trials of crt record 3 different stage lists" in section
    epochs = [(r[0], r[3]) for r in _rows(page, "stages") if len(r) > 4]
    assert epochs == [("crt", "1–3 (3 epochs)"), ("crt", "4 (1 epoch)"), ("crt", "1–2 (2 epochs)"),
                      ("crt", "3–4 (2 epochs)"), ("tau_norm", "1–4 (4 epochs)")]
    assert "no stages recorded (written before stages were recorded)" in section
    assert "1 trial(s) record no post-hoc step (e.g. resnet18-tau_norm-f0-s0)" in section
    assert "1 of 9 trials record no per-epoch validation AUC or training loss" in section
    layout = _figure(page, "fig-train-auc")["layout"]
    assert not [s for s in layout.get("shapes", []) if s["type"] == "rect"]  # crt's trials disagree: no boundaries


def test_single_stage_runs_get_curves_only_and_old_runs_no_section(tmp_path):
    page = _build(tmp_path / "plain", strategies=("bce", "focal"))
    ids = {a.get("id") for _, a in parse(page).tags}
    assert {"training", "fig-train-auc", "fig-train-loss"} <= ids and not {"stages", "posthoc"} & ids
    old = _build(tmp_path / "old", strategies=("bce", "crt"), history=False)  # metrics.json as before: no keys
    ids = {a.get("id") for _, a in parse(old).tags}
    assert "training" not in ids and "fig-train-auc" not in ids and "leaderboard" in ids


def test_too_few_optimiser_steps_are_warned_per_backbone_strategy_and_stage(tmp_path, staged):
    root = tmp_path / "warned"
    _build(root, backbones=("resnet18",), strategies=("bce", "crt"), seeds=(0,))
    for f, steps in ((0, 58), (1, 62), (2, None)):  # crt's second stage: too few steps twice, once uncounted
        path = root / "trials" / f"resnet18-crt-f{f}-s0" / "metrics.json"
        doc = json.loads(path.read_text())
        kind = "too_few_steps" if steps is not None else "steps_unknown"
        doc["warnings"] = [{"kind": kind, "stage": "classifier", "loss": "aucm", "min_steps": 600, "message": "...",
                            **({"steps": steps} if steps is not None else {})}]
        path.write_text(json.dumps(doc))
    page = _rebuild(root)
    section = page.split('<section id="training">', 1)[1].split("</section>", 1)[0]
    notes = re.findall(r'<p class="note too-few-steps">(.*?)</p>', section)
    assert notes == ["<strong>Warning</strong>: resnet18 / crt, stage classifier, trained the aucm loss for 58–62 "
                     "optimiser steps in 2 of its 3 trials, fewer than the 600 it needs to learn (README, "
                     "Strategies): its results are an under-trained model's, not the method's. More epochs or images "
                     "give it more steps.",
                     "<strong>Warning</strong>: resnet18 / crt, stage classifier, trained the aucm loss for an unknown "
                     "number of optimiser steps in 1 of its 3 trials (resumed from checkpoints that did not count "
                     "them); it needs 600 to learn (README, Strategies)."]
    assert "too-few-steps" not in staged[1]  # trials without warnings: no note
