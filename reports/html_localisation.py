"""The localisation section of ``leaderboard.html``: a leaderboard of saliency maps against the boxes
(with the ``random`` and ``centre`` chance baselines), a per-finding heatmap and a gallery of
overlays embedded as base64 PNGs (so the page stays one file).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from reports.html_common import esc, figure, fmt_p, num, ptext, section
from reports.html_figures import is_nih
from reports.html_tables import best_flags, controls, int_cell, num_cell, table, text_cell, th
from reports.runfolder import RunFolder, TrialFolder

log = logging.getLogger(__name__)
CHANCE = ("random", "centre")
LOC_METRICS = [("hit", "hit rate", "pointing game: the map's one point (its maximum; ties: the plateau's centroid) "
                                   "inside a box of the finding"),
               ("energy", "energy", "share of the map's mass inside the boxes"),
               ("iou", "IoU", "mean IoU of the binarised map's box with the boxes"),
               ("iobb", "IoBB", "mean intersection over the predicted box's area"),
               ("acc_iobb_0.1", "acc IoBB>0.1", "share of pairs with IoBB above 0.1 (Wang et al. 2017, Table 4)"),
               ("acc_iobb_0.25", "acc IoBB>0.25", "share of pairs with IoBB above 0.25"),
               ("acc_iobb_0.5", "acc IoBB>0.5", "share of pairs with IoBB above 0.5")]
#: Wang et al. 2017 (ChestX-ray8, Table 4): accuracy at T(IoBB) of their heatmap boxes on the NIH boxes
#: (../shared/REFERENCES.md); shown beside NIH runs only, as a published reference row.
REFERENCE_IOBB = {
    "acc_iobb_0.1": {"Atelectasis": 0.728, "Cardiomegaly": 0.993, "Effusion": 0.712, "Infiltration": 0.789,
                     "Mass": 0.435, "Nodule": 0.165, "Pneumonia": 0.750, "Pneumothorax": 0.459},
    "acc_iobb_0.25": {"Atelectasis": 0.550, "Cardiomegaly": 0.979, "Effusion": 0.542, "Infiltration": 0.577,
                      "Mass": 0.282, "Nodule": 0.051, "Pneumonia": 0.558, "Pneumothorax": 0.347},
    "acc_iobb_0.5": {"Atelectasis": 0.283, "Cardiomegaly": 0.877, "Effusion": 0.333, "Infiltration": 0.423,
                     "Mass": 0.141, "Nodule": 0.013, "Pneumonia": 0.383, "Pneumothorax": 0.184},
}
REFERENCE_ROW = "<i>published: Wang et al. 2017, Table 4</i>"
GALLERY_MAX, IMAGE_BYTES, GALLERY_BYTES = 32, 120_000, 3_000_000


def localisation(report, raw: pd.DataFrame | None = None) -> str:
    """The section from ``report.localisation`` (long format); ``raw`` (per-pair rows) is accepted but unused."""
    loc = report.localisation
    if loc is None or loc.empty:
        return ""
    parts = [_table(loc), _paired(getattr(report, "localisation_significance", None)),
             _heatmap(loc, report.label_names, nih=is_nih(report)),
             _gallery(report)]
    tol = float((getattr(report, "grid", None) or {}).get("localisation", {}).get("tolerance", 0.0))
    lead = ("Saliency maps of the held-out images against the ground-truth boxes. Rows in grey italics are chance "
            "baselines (<code>random</code>: a random map; <code>centre</code>: a centred blob) that go through "
            "exactly the maps' procedure, their own validation-tuned binarisation threshold included, on the same "
            "(image, finding) pairs; they do not depend on the model, so they appear once. A map is only useful "
            "where it beats them. The pointing game takes one point per map: its maximum, and when several pixels "
            "tie (the flat plateaus of an upsampled map), the pixel at the plateau's centroid; a hit is a point "
            + ("inside a box of the finding" if tol == 0 else f"within {tol:g} px of a box of the finding")
            + ". Values are means with 95% bootstrap intervals over images." + _layers(report))
    return section("localisation", "Localisation against boxes", "".join(parts), lead=lead)


def _layers(report) -> str:
    """Which module each backbone's CAMs read, when it is not the registry's last stage (small images)."""
    t = getattr(report, "trials", None)
    if t is None or "cam_layer" not in t or t["cam_layer"].isna().all():
        return ""
    out = ""
    moved = t[t["cam_layer"] != t["cam_declared_layer"]].dropna(subset=["cam_layer"])
    if not moved.empty:
        size = ((getattr(report, "grid", None) or {}).get("dataset") or {}).get("image_size")
        pairs = "; ".join(f"{esc(b)}: <code>{esc(layer)}</code> instead of <code>{esc(decl)}</code>" for b, layer, decl
                          in moved[["backbone", "cam_layer", "cam_declared_layer"]].drop_duplicates().itertuples(
                              index=False))
        out += (f" At {esc(size)} px the last stage's feature map has fewer than 6 × 6 cells (an upsampled 2 × 2 "
                f"map points at a corner whatever the image shows), so the CAMs read a shallower stage: {pairs}.")
    if "cam_warning" in t:  # e.g. a ViT whose patch grid is below the minimum at this image size
        warned = t.dropna(subset=["cam_warning"])[["backbone", "cam_warning"]].drop_duplicates()
        out += "".join(f" <strong>Warning</strong> ({esc(b)}): {esc(w)}." for b, w in warned.itertuples(index=False))
    return out


def _table(loc: pd.DataFrame, table_id: str = "loc") -> str:
    allrows = loc[loc["finding"].astype(str) == "all"]
    if allrows.empty:
        return ""
    metrics = [m for m in LOC_METRICS if m[0] in set(allrows["metric"])]
    keys = ["backbone", "strategy", "method"]
    recs = {}
    for r in allrows.to_dict("records"):
        recs.setdefault(tuple(str(r[k]) for k in keys), {})[r["metric"]] = r
    order = sorted(recs, key=lambda k: (k[2] in CHANCE, -(num(recs[k].get("hit", {}).get("value")) or -1)))
    model_rows = [k for k in order if k[2] not in CHANCE]
    best = {m: best_flags([recs[k].get(m, {}).get("value") if k in model_rows else None for k in order])
            for m, _, _ in metrics}
    rows = []
    for i, key in enumerate(order):
        cells = "".join(text_cell(v) for v in key)
        n = None
        for m, _, _ in metrics:
            r = recs[key].get(m, {})
            n = n if n is not None else r.get("n_images", r.get("n"))
            cells += num_cell(r.get("value"), ci=(r.get("ci_low"), r.get("ci_high")), best=best[m][i])
        cls = ' class="chance"' if key[2] in CHANCE else ""
        rows.append(f"<tr{cls}>{cells}{int_cell(n)}</tr>")
    head = [th("backbone"), th("strategy"), th("map")]
    head += [th(name, numeric=True, title=expl) for _, name, expl in metrics]
    head.append(th("images", numeric=True))
    selects = [(2, "maps", list(dict.fromkeys(k[2] for k in order)))]
    return ("<h3>Localisation leaderboard (all findings)</h3>"
            + controls(table_id, placeholder="filter rows", selects=selects) + table(table_id, head, rows)
            + '<p class="caption">Best model value per column highlighted (chance rows excluded).</p>')


def _paired(sig: pd.DataFrame | None) -> str:
    """Each strategy's maps against the baseline strategy's, paired on the same held-out images."""
    if sig is None or sig.empty:
        return ""
    names = {m: n for m, n, _ in LOC_METRICS}
    rows = []
    for r in sig.to_dict("records"):
        ph, diff = num(r.get("p_holm")), num(r.get("mean_diff"))
        sig_ = ph is not None and ph < 0.05 and diff is not None and diff != 0
        verdict, cls = (("better", "sig-better") if diff > 0 else ("worse", "sig-worse")) if sig_ else ("no evidence", "ns")
        rows.append("<tr>" + text_cell(r["backbone"]) + text_cell(r["method"]) + text_cell(r["strategy"])
                    + text_cell(names.get(str(r["metric"]), str(r["metric"])))
                    + int_cell(r.get("n_images")) + num_cell(r.get("value")) + num_cell(r.get("baseline_value"))
                    + num_cell(diff, shown="–" if diff is None else f"{diff:+.3f}",
                               ci=(r.get("ci_low"), r.get("ci_high")), cls=cls if sig_ else "")
                    + num_cell(r.get("p"), shown=fmt_p(r.get("p"))) + num_cell(ph, shown=fmt_p(ph))
                    + text_cell(verdict, html=f'<span class="{cls}">{esc(verdict)}</span>') + "</tr>")
    baseline = str(sig["baseline"].iloc[0])
    head = [th("backbone"), th("map"), th("strategy"), th("metric"),
            th("images", numeric=True, title="held-out images scored by both (each averaged over its seeds)"),
            th("strategy", numeric=True), th(baseline, numeric=True),
            th("diff [95% CI]", numeric=True, title="strategy minus baseline, paired on the same images"),
            th("p", numeric=True), th("p (Holm)", numeric=True, title="Holm-adjusted within backbone, map and metric"),
            th("verdict")]
    selects = [(0, "backbones", list(dict.fromkeys(sig["backbone"].astype(str)))),
               (3, "metrics", list(dict.fromkeys(names.get(str(m), str(m)) for m in sig["metric"])))]
    return (f"<h3>Does a strategy move the maps? Each against <code>{esc(baseline)}</code></h3>"
            '<p class="note">The trials of a backbone share their held-out folds, so each strategy\'s maps and the '
            "baseline's are scored on the same images. Unit: the image of a held-out fold, its value averaged over "
            "its findings and over the seeds (the seeds of a fold share its images, so they are not independent "
            "replicates). Test: a paired t-test of the per-image differences (strategy minus baseline), "
            "Holm-corrected within each backbone, map and metric. Assumption: the images are independent and the "
            "trained models are held fixed, so a difference says the maps differ on these images, not that it "
            "would survive retraining; “no evidence” is not “no difference”.</p>"
            + controls("locsig", placeholder="filter rows", selects=selects) + table("locsig", head, rows, short=True))


def _heatmap(loc: pd.DataFrame, label_names: list[str], *, nih: bool = False) -> str:
    """Per-finding heatmap, one metric at a time; on NIH data the published accuracies at T(IoBB) are a row."""
    import plotly.graph_objects as go

    from reports.html_figures import dropdown

    per = loc[loc["finding"].astype(str) != "all"]
    metrics = [(m, n) for m, n, _ in LOC_METRICS if m in set(per["metric"])]
    if per.empty or not metrics:
        return ""
    present = set(per["finding"].astype(str))
    findings = [n for n in label_names if n in present] + sorted(present - set(label_names))
    per = per.assign(model=per["backbone"].astype(str) + " / " + per["strategy"].astype(str) + " / "
                     + per["method"].astype(str))
    fig = go.Figure()
    for k, (m, name) in enumerate(metrics):
        sub = per[per["metric"] == m]
        models = sub[~sub["method"].isin(CHANCE)].pivot_table(index="model", columns="finding", values="value",
                                                              sort=False)
        chance = sub[sub["method"].isin(CHANCE)].pivot_table(index="method", columns="finding", values="value")
        chance.index = [f"<i>chance: {ptext(i)}</i>" for i in chance.index]
        models.index = [ptext(i) for i in models.index]
        parts = [models, chance]
        if nih:
            parts.append(pd.DataFrame([REFERENCE_IOBB.get(m, {})], index=[REFERENCE_ROW]))
        w = pd.concat(parts).reindex(columns=findings)
        fig.add_trace(go.Heatmap(
            z=[[num(v) for v in row] for row in w.to_numpy()], x=[ptext(f) for f in findings], y=list(w.index),
            colorscale="Blues", zmin=0, zmax=1, visible=k == 0, xgap=1, ygap=1, colorbar=dict(thickness=12),
            hovertemplate="%{y}<br>%{x}: " + name + " %{z:.3f}<extra></extra>"))
    vis = [[i == k for i in range(len(metrics))] for k in range(len(metrics))]
    rel = [{"title.text": f"{n} per finding"} for _, n in metrics]
    rows = len(fig.data[0].y)
    fig.update_layout(title=dict(text=rel[0]["title.text"], x=0.5), height=200 + 22 * rows,
                      updatemenus=dropdown([n for _, n in metrics], vis, rel),
                      xaxis=dict(type="category", tickangle=-40), yaxis=dict(type="category", autorange="reversed"),
                      margin=dict(l=300, r=30, t=80, b=130))
    return "<h3>Per finding</h3>" + figure("fig-loc", fig, caption="Scale 0 to 1 for every metric; the last rows "
                                                                 "are the chance baselines (once per run)"
                                                                 + ("; on NIH data, the published accuracies of "
                                                                    "Wang et al. 2017 (ImageNet-pretrained, all "
                                                                    "112,120 images, full resolution) are the "
                                                                    "last row for the IoBB accuracies." if nih
                                                                    else "."))


def _png_data(path: Path) -> str | None:
    data = path.read_bytes()
    if len(data) > IMAGE_BYTES:
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                im.thumbnail((320, 320))
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="PNG", optimize=True)
                data = buf.getvalue()
        except (ImportError, OSError) as exc:
            log.warning("gallery image %s skipped: %s", path, exc)
            return None
    return base64.b64encode(data).decode("ascii") if len(data) <= IMAGE_BYTES else None


def _tuned_thresholds(trial_dir: Path) -> dict[str, float]:
    """The trial's validation-tuned decision threshold per label (its metrics.json); empty if unreadable."""
    try:
        doc = json.loads(TrialFolder(trial_dir).metrics.read_text())
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s: %s", TrialFolder(trial_dir).metrics, exc)
        return {}
    return {str(k): float(v) for k, v in (doc.get("thresholds") or {}).items() if num(v) is not None}


def confident_examples(meta: list[dict], thresholds: dict[str, float]) -> list[dict]:
    """The gallery entries a reader can learn from: a visible map (``map_range`` > 0) of a positive that
    the model predicts confidently (probability at or above the label's tuned threshold), in the trial's
    order (its most confident hit, its most confident miss, the next of each, ...); entries without the
    threshold or the map's range are left out.

    >>> meta = [{"finding": "Mass", "prob": 0.9, "map_range": 1.0}, {"finding": "Mass", "prob": 0.2, "map_range": 1.0},
    ...         {"finding": "Mass", "prob": 0.95, "map_range": 0.0}, {"finding": "Edema", "prob": 0.99, "map_range": 1}]
    >>> [m["prob"] for m in confident_examples(meta, {"Mass": 0.3})]
    [0.9]
    """
    keep = []
    for m in meta:
        t, p, r = thresholds.get(str(m.get("finding"))), num(m.get("prob")), num(m.get("map_range"))
        if t is not None and p is not None and r is not None and r > 0 and p >= t:
            keep.append({**m, "threshold": t})
    return keep


def _gallery(report) -> str:
    t = report.trials
    trial_info = {str(r["id"]): r for r in t.to_dict("records")} if not t.empty else {}
    by_model: dict[tuple, list] = {}
    for meta_path in RunFolder(report.run_dir).gallery_files():
        trial = trial_info.get(meta_path.parent.parent.name)
        if trial is None:
            continue
        key = (str(trial["backbone"]), str(trial["strategy"]))
        by_model.setdefault(key, []).append((trial, meta_path))
    figs, total = [], 0
    for key in sorted(by_model):
        trial, meta_path = sorted(by_model[key], key=lambda e: (e[0]["seed"], e[0]["fold"]))[0]
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("unreadable %s: %s", meta_path, exc)
            continue
        shown: set[bool] = set()  # at most one confident hit and one confident miss per model
        for m in confident_examples(meta, _tuned_thresholds(meta_path.parent.parent)):
            png, hit = meta_path.parent / str(m.get("file", "")), bool(m.get("hit"))
            if (hit in shown or png.parent != meta_path.parent or not png.is_file()
                    or total > GALLERY_BYTES or len(figs) >= GALLERY_MAX):
                continue
            data = _png_data(png)
            if data is None:
                continue
            total += len(data)
            shown.add(hit)
            href = "trials/" + quote(str(trial["id"]), safe="") + "/metrics.json"
            energy = num(m.get("energy"))
            method = f' · {esc(m["method"])}' if m.get("method") else ""
            figs.append(
                f'<figure><img alt="{esc(m.get("finding"))} overlay of {esc(m.get("image_id"))}" '
                f'src="data:image/png;base64,{data}"><figcaption><b>{esc(key[0])} / {esc(key[1])}</b>{method}<br>'
                f'{esc(m.get("finding"))} in {esc(m.get("image_id"))}<br>'
                f'p = {m["prob"]:.2f} (threshold {m["threshold"]:.2f}) · <span class="{"hit" if hit else "miss"}">'
                f'{"hit" if hit else "miss"}</span> · energy {"–" if energy is None else f"{energy:.2f}"}<br>'
                f'<a href="{esc(href)}">{esc(trial["id"])}</a></figcaption></figure>')
    if not figs:
        return ""
    return ("<h3>Overlays</h3><p class=\"note\">Confidently predicted held-out positives of one trial per model "
            "(fold 0 of the first seed where present): its most confident hit and its most confident miss, taken "
            "among the positives whose probability p reaches the label's validation-tuned threshold and whose map "
            "has something to see (a flat map is never shown). Saliency map over the image, ground-truth box in "
            "green; colour is the map's value relative to its maximum, from 0 (dark blue) to the maximum (dark "
            "red), as the bar beside each overlay shows. Models without such an example are not shown.</p>"
            f'<div class="gallery">{"".join(figs)}</div>')
