"""``leaderboard.html`` without a browser: one plotly.js, safe figure configs, escaping, no network, sections.

The run folders are written directly in the format ``bench/trial.py`` writes them (metrics.json,
predictions.npz, localisation.csv, gallery/), so no training is needed; ``build_report`` then
aggregates them exactly as ``bench report`` does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

NIH_LABELS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
              "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
EVIL_LABEL = "<script>alert(1)</script>"
EVIL_STRATEGY = "q\"uo'te & <b>amp</b>"
EVIL_BACKBONE = "<img src=x onerror=alert(2)>"
EVIL_NAME = "</title><script>alert(3)</script>"
EVIL_STAGE = "<svg onload=alert(4)>"
#: Trials of a run made with ``history=True``: epochs, and the stages (name, epochs, loss, sampler, train, reinit)
#: their strategies record, as ``bench/trial.py`` writes them; ``tau_norm`` also records a post-hoc tau.
EPOCHS = 4
STAGED = {"crt": [("features", 1, 3, "bce", "none", "all", False), ("classifier", 4, 4, "bce", "class_aware",
                                                                    "classifier", True)],
          "ldam_drw": [("ldam", 1, 3, {"name": "ldam", "max_m": 0.5, "s": 30.0, "beta": 0.0}, "none", "all", False),
                       ("drw", 4, 4, {"name": "ldam", "max_m": 0.5, "s": 30.0, "beta": 0.9999}, "none", "all", False)],
          "tau_norm": [("train", 1, 4, "bce", "none", "all", False)],
          EVIL_STRATEGY: [(EVIL_STAGE, 1, 2, "bce", "none", "all", False), ("second", 3, 4, "focal", "none", "all",
                                                                            True)]}
TAUS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
SECTIONS = ["leaderboard", "heatmaps", "per-label", "spread", "significance", "groups", "calibration", "localisation",
            "dataset", "trials", "provenance"]


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_.+" else "_" for c in str(text))


def _png(path: Path, rng: np.random.Generator, size: int = 64) -> None:
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:size, 0:size]
    base = 90 + 60 * np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size * 6))
    cx, cy = rng.integers(10, size - 10, 2)
    heat = 120 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (size * 3))
    rgb = np.stack([np.clip(base + heat, 0, 255), base, np.clip(base + 40 - heat / 2, 0, 255)], -1).astype(np.uint8)
    im = Image.fromarray(rgb)
    x0, y0 = rng.integers(4, size // 2, 2)
    ImageDraw.Draw(im).rectangle([int(x0), int(y0), int(x0) + size // 3, int(y0) + size // 3], outline=(0, 220, 0))
    im.save(path)


def _f1(y, d):
    tp, fp, fn = (y * d).sum(), ((1 - y) * d).sum(), (y * (1 - d)).sum()
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def _metrics(y: np.ndarray, p: np.ndarray, thr: np.ndarray, labels: list[str]) -> tuple[dict, list[dict]]:
    """metrics.json's summary and per_label, fast (numpy only; sklearn per label is too slow for 100 trials)."""
    from scipy.stats import rankdata

    def auc(yy, pp):
        pos = yy.sum()
        if pos == 0 or pos == len(yy):
            return None
        return float((rankdata(pp)[yy == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(yy) - pos)))

    per = []
    for j, lab in enumerate(labels):
        yy, pp = y[:, j], p[:, j]
        d = (pp >= thr[j]).astype(float)
        a = auc(yy, pp)
        order = np.argsort(-pp)
        hits = yy[order]
        ap = float((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits == 1].mean()) if hits.sum() else None
        per.append({"label": lab, "n": len(yy), "positives": int(yy.sum()), "auc": a, "ap": ap,
                    "f1_fixed": _f1(yy, (pp >= 0.5).astype(float)), "f1": _f1(yy, d),
                    "sensitivity": float(d[yy == 1].mean()) if yy.sum() else None,
                    "specificity": float(1 - d[yy == 0].mean()), "threshold": float(thr[j]), "defined": a is not None,
                    "excluded_reason": "" if a is not None else "no positives in this fold"})

    def mean(key):
        vals = [r[key] for r in per if r[key] is not None and r["defined"]]
        return float(np.mean(vals)) if vals else None

    dec = (p >= thr[None, :]).astype(float)
    summary = {"macro_auc": mean("auc"), "micro_auc": auc(y.ravel(), p.ravel()), "macro_ap": mean("ap"),
               "macro_f1": mean("f1"), "micro_f1": _f1(y.ravel(), dec.ravel()), "macro_f1_fixed": mean("f1_fixed"),
               "micro_f1_fixed": _f1(y.ravel(), (p.ravel() >= 0.5).astype(float)),
               "macro_sensitivity": mean("sensitivity"), "macro_specificity": mean("specificity"),
               "n_labels_macro": sum(r["defined"] for r in per),
               "excluded": {r["label"]: r["excluded_reason"] for r in per if not r["defined"]}}
    return summary, per


def make_fake_run(root: Path, *, kind: str = "nih", hostile: bool = False, name: str = "page-test",
                  backbones=("resnet18", "densenet121"), strategies=("bce", "focal", "asl", "ml_ros"),
                  folds: int = 3, seeds=(0,), n: int = 240, n_boot: int = 40, seed: int = 0,
                  localisation: bool = True, history: bool = False) -> Path:
    """A run folder with made-up but internally consistent trial outputs (see module docstring). ``history``:
    every trial records :data:`EPOCHS` epochs of training loss and validation AUC, and the strategies of
    :data:`STAGED` their stages (and tau_norm its tau); otherwise one epoch's timings, as older trials did."""
    rng = np.random.default_rng(seed)
    labels = list(NIH_LABELS)
    backbones, strategies = list(backbones), list(strategies)
    if hostile:
        labels[3] = EVIL_LABEL
        strategies = strategies + [EVIL_STRATEGY]
        backbones = backbones + [EVIL_BACKBONE]
        name = EVIL_NAME
    L = len(labels)
    prev = np.clip(rng.lognormal(np.log(0.05), 0.8, L), 0.01, 0.25)
    y = (rng.random((n, L)) < prev).astype(np.float32)
    patients = np.array([f"p{i // 3:04d}" for i in range(n)])
    image_ids = np.array([f"{i // 3:08d}_{i % 3:03d}.png" for i in range(n)])
    fold_of = (np.arange(n) // 3) % folds
    root.mkdir(parents=True, exist_ok=True)
    counts = y.sum(0)
    irl = counts.max() / np.maximum(counts, 1)
    grid = {"name": name, "dataset": {"kind": kind, "root": str(root / "data"), "image_size": 64},
            "splits": {"folds": folds, "val_fraction": 0.2, "seed": 0}, "backbones": backbones,
            "strategies": strategies, "seeds": list(seeds),
            "train": {"epochs": EPOCHS if history else 2, "batch_size": 32},
            "report": {"baseline": "bce", "head": 0.05, "tail": 0.02, "bootstrap": n_boot}, "digest": "0123abcd"}
    dataset = {"kind": kind, "images": n, "patients": len(set(patients)), "dropped": {"unreadable": 2},
               "label_names": labels, "labels": dict(zip(labels, counts.astype(int).tolist())),
               "prevalence": dict(zip(labels, (counts / n).tolist())), "unknown": {lab: 0 for lab in labels},
               "irlbl": dict(zip(labels, irl.tolist())), "mean_ir": float(irl.mean()), "max_ir": float(irl.max()),
               "scumble": 0.08, "cardinality": float(y.sum(1).mean()), "density": float(y.sum(1).mean() / L),
               "no_finding": int((y.sum(1) == 0).sum()), "boxes": {"per_label": {labels[0]: 12, labels[3]: 7}},
               "pairs": [{"labels": [labels[0], labels[3]], "count": 9, "expected": 2.1, "lift": 4.3}]}
    split = {"n_folds": folds, "val_fraction": 0.2, "hash": "f" * 64,
             "quality": {"fold_sizes": np.bincount(fold_of).tolist(), "size_spread": 0.01, "max_label_deviation": 0.4,
                         "per_label_deviation": {lab: 0.1 for lab in labels}, "sparse_labels": [], "shared_patients": 0,
                         "fold_positives": {lab: [int(y[fold_of == f, j].sum()) for f in range(folds)]
                                            for j, lab in enumerate(labels)}}}
    run = {"versions": {"python": "3.11", "torch": "2.4.0", "ray": "2.60.0", "plotly": "7.1.0"},
           "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False}, "split_hash": "f" * 64,
           "command": f"bench run --grid grids/{_safe(name)}.yaml --out runs/x", "host": "test", "status": "complete",
           "started": "2026-01-01T10:00:00", "finished": "2026-01-01T10:20:00", "seconds": 1200.0, "errors": {},
           "trials": len(backbones) * len(strategies) * folds * len(seeds)}
    for fname, doc in (("grid.json", grid), ("dataset.json", dataset), ("split.json", split), ("run.json", run)):
        (root / fname).write_text(json.dumps(doc, indent=1))
    skill_b = {b: 0.45 + 0.15 * i for i, b in enumerate(backbones)}
    skill_s = {s: 0.06 * ((i * 7) % 5) for i, s in enumerate(strategies)}
    for b in backbones:
        for s in strategies:
            for sd in seeds:
                for f in range(folds):
                    test = np.flatnonzero(fold_of == f)
                    yt = y[test]
                    skill = skill_b[b] + skill_s[s] + rng.normal(0, 0.15) + rng.normal(0, 0.5, L)
                    logit = skill * (2 * yt - 1) + rng.normal(0, 1.5, yt.shape) - 1.5
                    p = (1 / (1 + np.exp(-logit))).astype(np.float32)
                    thr = np.clip(rng.normal(0.3, 0.05, L), 0.05, 0.95)
                    tid = f"{_safe(b)}-{_safe(s)}-f{f}-s{sd}"
                    out = root / "trials" / tid
                    out.mkdir(parents=True)
                    summary, per = _metrics(yt, p, thr, labels)
                    if s == EVIL_STRATEGY:          # a metric that is missing for a whole row: sorts last
                        summary["macro_ap"] = None
                    doc = {"id": tid, "backbone": b, "strategy": s, "fold": f, "seed": sd, "summary": summary,
                           "per_label": per,
                           "train_prevalence": dict(zip(labels, (counts / n).tolist())),
                           "thresholds": dict(zip(labels, thr.tolist())), "sizes": {"test": len(test), "train": int(0.8 * (n - len(test))),
                                                                            "val": n - len(test) - int(0.8 * (n - len(test)))},
                           "history": [{"epoch": 1, "train_seconds": 1.5, "train_images_per_s": 100.0}],
                           "timing": {"eval_seconds": 0.1}}
                    if history:
                        doc.update(_training(s, np.random.default_rng([seed, f, sd, backbones.index(b),
                                                                             strategies.index(s)])))
                    (out / "metrics.json").write_text(json.dumps(doc, default=lambda o: None))
                    np.savez_compressed(out / "predictions.npz", image_ids=image_ids[test], patients=patients[test],
                                        labels=yt, probs=p, thresholds=thr, label_names=np.asarray(labels))
                    if not localisation:
                        continue
                    rows = []
                    pos = [(i, j) for i, j in zip(*np.nonzero(yt))][:24]
                    for k, (method, q) in enumerate((("gradcam", 0.35 + 0.1 * skill_s[s]), ("random", 0.1),
                                                     ("centre", 0.25))):
                        r = rng if k == 0 else np.random.default_rng([f, sd, k])  # chance maps: model-free
                        for i, j in pos:
                            rows.append({"image_id": image_ids[test][i], "finding": labels[j], "method": method,
                                         "threshold": 0.1, "prob": float(p[i, j]), "hit": float(r.random() < q),
                                         "energy": float(r.beta(2, 5)), "iou": float(r.beta(1, 6)),
                                         "iobb": float(r.beta(1.5, 4)), "mask_iou": np.nan})
                    pd.DataFrame(rows).to_csv(out / "localisation.csv", index=False)
                    gal = out / "gallery"
                    gal.mkdir()
                    meta = []
                    for k, (i, j) in enumerate(pos[:2]):
                        _png(gal / f"{k:03d}.png", rng)
                        meta.append({"file": f"{k:03d}.png", "image_id": str(image_ids[test][i]),
                                     "finding": labels[j], "prob": float(p[i, j]), "label": 1, "hit": k == 0,
                                     "energy": 0.4 - 0.3 * k, "map_range": 1.0,
                                     "rank": "confident hit" if k == 0 else "confident miss"})
                    (gal / "gallery.json").write_text(json.dumps(meta))
    return root


def _training(strategy: str, rng: np.random.Generator) -> dict:
    """A trial's ``history``, and for a strategy of :data:`STAGED` its ``stages`` (and ``posthoc``)."""
    stages = STAGED.get(strategy)
    doc = {"history": [{"epoch": e, "train_loss": float(rng.uniform(0.2, 0.8)), "train_images": 100,
                        "train_seconds": 1.5, "train_images_per_s": 100.0,
                        "val_macro_auc": float(rng.uniform(0.55, 0.8))} for e in range(1, EPOCHS + 1)]}
    if stages is None:
        return doc
    doc["stages"] = [{"name": name, "loss": loss if isinstance(loss, dict) else {"name": loss},
                      "sampler": {"name": sampler}, "train": train, "reinit": reinit,
                      "restart": k == 0 or reinit or train == "classifier", "epochs": [first, last]}
                     for k, (name, first, last, loss, sampler, train, reinit) in enumerate(stages)]
    for h in doc["history"]:
        h["stage"] = next(st[0] for st in stages if st[1] <= h["epoch"] <= st[2])
    if strategy == "tau_norm":
        doc["posthoc"] = {"name": "tau_norm", "taus": TAUS, "criterion": "f1_fixed", "tau": float(rng.choice(TAUS)),
                          "scores": rng.uniform(0, 0.3, len(TAUS)).tolist()}
    return doc


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self._in_script, self.text = [], [], None, []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = [dict(attrs), ""]

    def handle_endtag(self, tag):
        if tag == "script" and self._in_script is not None:
            self.scripts.append(tuple(self._in_script))
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            self._in_script[1] += data
        else:
            self.text.append(data)


def parse(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    return p


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    from reports.leaderboard import build_report

    root = make_fake_run(tmp_path_factory.mktemp("html") / "hostile", kind="synthetic", hostile=True, history=True)
    report = build_report(root)
    return root, report, (root / "leaderboard.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def nih_run(tmp_path_factory):
    from reports.leaderboard import build_report

    root = make_fake_run(tmp_path_factory.mktemp("html") / "nih", kind="nih", seeds=(0, 1), n_boot=20)
    report = build_report(root)
    return root, report, (root / "leaderboard.html").read_text(encoding="utf-8")


def test_plotly_js_inlined_once_as_the_cartesian_bundle(hostile_run):
    from plotly.offline import get_plotlyjs_version

    from reports.html_page import BUNDLE, bundle_version

    _, _, page = hostile_run
    tags = parse(page)
    big = [s for a, s in tags.scripts if len(s) > 1_000_000]
    assert len(big) == 1 and big[0] == BUNDLE.read_text(encoding="utf-8")
    assert bundle_version(big[0]) == get_plotlyjs_version()  # the version plotly.py writes its figures for
    assert page.count("* plotly.js (cartesian - minified) v") == 1
    assert f"with plotly.js {get_plotlyjs_version()} (cartesian bundle)" in page
    assert len(page) < 3_500_000  # the full bundle alone is 4.8 MB


def test_the_full_plotly_bundle_when_the_cartesian_one_cannot_draw_the_page(monkeypatch, caplog):
    import plotly.offline

    from reports.html_page import BUNDLE_TRACES, plotly_js

    assert {"heatmap", "box", "bar", "scatter"} <= BUNDLE_TRACES
    with caplog.at_level("INFO", logger="reports.html_page"):
        js, which = plotly_js({"heatmap", "scattergl"})
    assert js == plotly.offline.get_plotlyjs() and which.endswith("(full bundle)")
    assert "trace types ['scattergl'] are not in the cartesian bundle" in caplog.text
    monkeypatch.setattr(plotly.offline, "get_plotlyjs_version", lambda: "9.0.0")
    caplog.clear()
    with caplog.at_level("INFO", logger="reports.html_page"):
        js, which = plotly_js({"heatmap"})
    assert which == "plotly.js 9.0.0 (full bundle)"
    assert "plotly.py writes figures for plotly.js 9.0.0, the shipped cartesian bundle is " in caplog.text


def test_every_figure_names_its_trace_types(hostile_run):
    _, _, page = hostile_run
    tags = parse(page)
    data = {a.get("id"): json.loads(s) for a, s in tags.scripts if a.get("type") == "application/json"}
    divs = [a for t, a in tags.tags if t == "div" and "data-figure" in a]
    assert divs
    for a in divs:
        types = sorted({t.get("type", "scatter") for t in data[a["id"] + "-data"]["data"]})
        assert a["data-traces"].split(",") == types, a["id"]


def test_every_figure_has_safe_config(hostile_run):
    _, _, page = hostile_run
    tags = parse(page)
    divs = [a["id"] for t, a in tags.tags if t == "div" and "data-figure" in a]
    data = {a.get("id"): s for a, s in tags.scripts if a.get("type") == "application/json"}
    assert len(divs) >= 6
    for fig_id in divs:
        spec = json.loads(data[fig_id + "-data"])
        assert spec["config"]["displaylogo"] is False and spec["config"]["showSendToCloud"] is False, fig_id
        assert spec["data"], fig_id
        assert "template" not in spec["layout"], "the template travels once, not per figure"
    assert "plot-template" in data


def test_hostile_strings_are_escaped(hostile_run):
    _, report, page = hostile_run
    for raw in (EVIL_LABEL, EVIL_STRATEGY, EVIL_BACKBONE, EVIL_NAME, EVIL_STAGE, "<b>amp</b>", "<img src=x"):
        assert raw not in page, raw
    tags = parse(page)
    executable = [a for a, _ in tags.scripts if a.get("type") != "application/json"]
    assert len(executable) == 2, "only plotly.js and the page's own script may run"
    for tag, attrs in tags.tags:
        assert not [k for k in attrs if k.startswith("on")], (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
    text = "".join(tags.text)
    # Shown as text (HTML) and as escaped plotly labels (JSON), never as markup.
    for raw in (EVIL_LABEL, EVIL_STRATEGY, EVIL_BACKBONE, EVIL_STAGE):  # EVIL_STAGE: the stage table's
        assert raw in text, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    data = [s for a, s in tags.scripts if a.get("type") == "application/json"]
    assert all("</" not in s and "<" not in s for s in data)
    assert any(json.dumps("&lt;script&gt;alert(1)&lt;/script&gt;")[1:-1].replace("&", "\\u0026") in s for s in data)
    assert EVIL_STRATEGY in set(report.leaderboard["strategy"])


def test_no_external_urls(hostile_run):
    _, _, page = hostile_run
    tags = parse(page)
    outside = page
    for _, body in tags.scripts:
        if len(body) > 1_000_000:           # plotly.js's own source mentions URLs it never loads here
            outside = outside.replace(body, "")
    assert not re.search(r"https?://", outside), re.findall(r".{40}https?://.{40}", outside)[:3]
    assert "//cdn" not in outside
    for tag, attrs in tags.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base")
        for k in ("src", "href"):
            v = attrs.get(k)
            if v is not None:
                assert v.startswith(("#", "data:image/png;base64,", "trials/")), (tag, k, v[:80])
    csp = [a for t, a in tags.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"] and "connect-src 'none'" in csp[0]["content"]


def test_all_sections_present(nih_run):
    _, _, page = nih_run
    tags = parse(page)
    ids = {a.get("id") for _, a in tags.tags}
    nav = [a["href"] for t, a in tags.tags if t == "a" and a.get("href", "#")[1:] in SECTIONS]
    for sec in SECTIONS:
        assert sec in ids, sec
        assert "#" + sec in nav, sec
    for fig in ("fig-heat", "fig-per-label", "fig-spread", "fig-groups", "fig-calibration", "fig-loc",
                "fig-prevalence"):
        assert fig in ids, fig
    assert 'class="cd"' in page and 'class="cd-bar"' in page and 'class="clique"' in page
    assert "Friedman" in page and "Nemenyi" in page


def test_leaderboard_rows_ci_and_trial_links(nih_run):
    root, report, page = nih_run
    b = report.leaderboard
    table = page.split('<table id="board"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    assert body.count("<tr>") == len(b)
    assert 'aria-sort="descending"' in table and table.count('class="ci"') >= len(b)
    assert table.count('class="best"') >= 6
    assert "± " in table
    hrefs = re.findall(r'href="#(trials-x[0-9a-f]+)"', table)
    assert len(hrefs) == len(b)
    tags = parse(page)
    ids = {a.get("id") for _, a in tags.tags}
    assert set(hrefs) <= ids
    links = [a["href"] for t, a in tags.tags if t == "a" and a.get("href", "").startswith("trials/")]
    assert len(set(links)) == len(report.trials)
    for link in links:
        assert (root / link).is_file(), link
    for col in ("macro_auc_ci_low", "macro_auc_ci_high"):
        assert b[col].notna().all()
    assert f"{b['macro_auc'].iloc[0]:.3f}" in table


def test_nih_reference_rows_only_for_nih(nih_run, hostile_run):
    _, _, nih = nih_run
    _, _, synthetic = hostile_run
    assert "published: Wang et al. 2017" in nih and "CheXNet" in nih
    assert "published reference figures from a different" in nih
    assert "published: " not in synthetic and "CheXNet" not in synthetic
    # the localisation heatmap's published row (Wang et al. 2017, Table 4), one per metric trace, NIH only
    assert nih.count("published: Wang et al. 2017, Table 4") >= 3 and "0.993" in nih


def test_dataset_split_localisation_and_provenance(nih_run):
    _, report, page = nih_run
    for text in ("MeanIR", "SCUMBLE", "cardinality", "patient-disjoint", "Most frequent label pairs",
                 "0123456789", "bench run --grid", "f" * 16, "Localisation leaderboard", "chance"):
        assert text in page, text
    overlays = page.count("<figure><img ")  # the gallery: one confident hit and one miss per model at most
    assert overlays >= 3 and page.count("data:image/png;base64,") == overlays
    assert "<figcaption>" in page and "miss" in page and "hit" in page
    n_rows = len(report.localisation[report.localisation["finding"] == "all"][["backbone", "strategy", "method"]]
                 .drop_duplicates())
    loc = page.split('<table id="loc"', 1)[1].split("</table>", 1)[0]
    assert loc.count("<tr") - 1 == n_rows
    assert loc.count('class="chance"') == 2  # once per run, not once per model
    # paired tests of the maps against bce: every (backbone, other strategy, metric) once, as in the CSV
    sig = pd.read_csv(report.run_dir / "localisation_significance.csv")
    assert set(sig["strategy"]) == {"focal", "asl", "ml_ros"} and set(sig["metric"]) == {"hit", "energy"}
    assert len(sig) == 2 * 3 * 2 and (sig["n_images"] > 0).all() and sig["p_holm"].between(0, 1).all()
    table_html = page.split('<table id="locsig"', 1)[1].split("</table>", 1)[0]
    assert table_html.count("<tr") - 1 == len(sig)


def test_cd_diagram_names_every_strategy(nih_run):
    _, report, page = nih_run
    svg = page.split('<svg class="cd"', 1)[1].split("</svg>", 1)[0]
    for s in report.trials["strategy"].unique():
        assert f">{s} <tspan" in svg, s
    assert "CD = " in svg


def test_reports_import_neither_bench_nor_ray(nih_run):
    root, _, _ = nih_run
    code = ("import sys; from reports.leaderboard import build_report; build_report(sys.argv[1], n_boot=5); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('bench', 'ray')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(root)], check=True, timeout=300)


def test_minimal_run_degrades_gracefully(tmp_path):
    """One strategy, no bootstrap, no localisation, no dataset/split/run files: the page still builds."""
    from reports.leaderboard import build_report

    root = make_fake_run(tmp_path / "min", kind="synthetic", backbones=("resnet18",), strategies=("bce",), folds=2,
                         n=60, localisation=False)
    for name in ("dataset.json", "split.json", "run.json"):
        (root / name).unlink()
    build_report(root, n_boot=0)
    page = (root / "leaderboard.html").read_text(encoding="utf-8")
    ids = {a.get("id") for _, a in parse(page).tags}
    assert {"leaderboard", "heatmaps", "per-label", "spread", "trials", "provenance"} <= ids
    assert "localisation" not in ids and "dataset" not in ids
    assert "training" not in ids  # trials without per-epoch curves, stages or post-hoc steps: no section
    assert "Friedman test not run" in page
    assert 'class="ci"' not in page.split('<table id="board"', 1)[1].split("</table>", 1)[0]


def test_localisation_note_names_moved_layers_and_cam_warnings():
    """A shallower CAM layer and a backbone's CAM warning (metrics.json ``cam``) both reach the page."""
    from types import SimpleNamespace

    from reports.html_localisation import _layers

    t = pd.DataFrame({"backbone": ["test_vit", "resnet18", "resnet18"],
                      "cam_layer": ["blocks.5.norm1", "layer2", "layer2"],
                      "cam_declared_layer": ["blocks.5.norm1", "layer4", "layer4"],
                      "cam_warning": ["grid 3 x 3 <6", None, None]})
    out = _layers(SimpleNamespace(trials=t, grid={"dataset": {"image_size": 48}}))
    assert "<code>layer2</code> instead of <code>layer4</code>" in out and out.count("layer2") == 1
    assert out.count("<strong>Warning</strong> (test_vit): grid 3 x 3 &lt;6.") == 1
    assert "Warning" not in _layers(SimpleNamespace(trials=t.assign(cam_warning=None), grid={}))


def test_leaderboard_names_each_metrics_interval_and_warns_of_few_positives(nih_run, tmp_path):
    import html as htmllib
    import json
    import shutil

    from reports.html_sections import FEW_POSITIVES
    from reports.leaderboard import build_report
    from reports.replicates import INTERVAL

    root, report, page = nih_run
    lead = htmllib.unescape(page.split('<section id="leaderboard"', 1)[1].split("<table", 1)[0])
    assert INTERVAL["macro_auc"] == "jackknife" and INTERVAL["macro_ap"] == "basic"
    assert ("a t interval with the delete-a-group jackknife's standard error for macro AUC, basic bootstrap for "
            "mAP and ECE, percentile bootstrap otherwise") in lead
    # the fewest positives of any label in any held-out fold, recomputed from the trials' metrics.json
    docs = [json.loads(f.read_text()) for f in sorted((root / "trials").glob("*/metrics.json"))]
    counts = sorted((r["positives"], r["label"], d["fold"]) for d in docs for r in d["per_label"])
    assert counts[0][0] < FEW_POSITIVES  # the fake run is small
    labels = sorted({lab for n, lab, _ in counts if n < FEW_POSITIVES})
    note = htmllib.unescape(re.search(r'<p class="note few-positives">(.*?)</p>', page).group(1))
    assert (f"{len(labels)} label{'s' if len(labels) != 1 else ''} ({', '.join(labels)}) have fewer than "
            f"{FEW_POSITIVES} positive images in a held-out fold (fewest: {counts[0][1]}, {counts[0][0]} in fold "
            f"{counts[0][2]})") in note
    # enough positives everywhere: no warning
    big = tmp_path / "big"
    shutil.copytree(root, big)
    for f in (big / "trials").glob("*/metrics.json"):
        d = json.loads(f.read_text())
        for r in d["per_label"]:
            r["positives"] = FEW_POSITIVES
        f.write_text(json.dumps(d))
    build_report(big, n_boot=0)
    assert "few-positives" not in (big / "leaderboard.html").read_text(encoding="utf-8")
