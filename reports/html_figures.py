"""Plotly figures of ``leaderboard.html``: backbone × strategy heatmaps, per-label AUC, spread, groups.

Colour scales do not exaggerate: AUC is drawn on a diverging scale centred on chance (0.5) and
symmetric around it, F1 and AP on a sequential scale from 0; bars start at 0.
"""

from __future__ import annotations

import numpy as np

from reports.html_common import esc, figure, num, ptext, section
from reports.html_page import names

#: Published per-class ROC-AUC on NIH ChestX-ray14 (REFERENCES.md): shown only for NIH runs.
REFERENCE_AUC = {
    "Wang et al. 2017 (official split)": {
        "Atelectasis": 0.700, "Cardiomegaly": 0.810, "Effusion": 0.759, "Infiltration": 0.661, "Mass": 0.693,
        "Nodule": 0.669, "Pneumonia": 0.658, "Pneumothorax": 0.799, "Consolidation": 0.703, "Edema": 0.805,
        "Emphysema": 0.833, "Fibrosis": 0.786, "Pleural_Thickening": 0.684, "Hernia": 0.872},
    "CheXNet, Rajpurkar et al. 2017 (random split)": {
        "Atelectasis": 0.809, "Cardiomegaly": 0.925, "Effusion": 0.864, "Infiltration": 0.735, "Mass": 0.868,
        "Nodule": 0.780, "Pneumonia": 0.768, "Pneumothorax": 0.889, "Consolidation": 0.790, "Edema": 0.888,
        "Emphysema": 0.937, "Fibrosis": 0.805, "Pleural_Thickening": 0.806, "Hernia": 0.916},
}
MIN_AUC_SPAN = 0.2
#: One colour per backbone, in the order backbones first appear among the trials (the spread and training figures).
PALETTE = ["#1b5e9e", "#d9822b", "#2e8b57", "#a23b72", "#6c757d", "#8c564b", "#17becf", "#bcbd22"]
HEAT_METRICS = [("macro_auc", "macro AUC"), ("micro_auc", "micro AUC"), ("macro_f1", "macro F1 (tuned thresholds)"),
                ("macro_ap", "mAP")]


def is_nih(report) -> bool:
    kind = (report.grid.get("dataset") or {}).get("kind") or report.dataset.get("kind")
    return str(kind).lower() == "nih"


def colour(metric: str, values) -> dict:
    """Heatmap colour settings that do not exaggerate.

    AUC: a diverging scale anchored at chance (0.5 is white, blue above, red below) whose colour
    intensity is proportional to the distance from 0.5 on both sides (full colour at the largest
    distance, but never closer to chance than :data:`MIN_AUC_SPAN`); the range always includes 0.5.
    Anything else (F1, AP, rates): a sequential scale from 0.
    """
    from plotly.colors import diverging, sample_colorscale

    finite = [v for v in (num(x) for x in np.ravel(np.asarray(values, dtype=object))) if v is not None]
    if "auc" not in metric:
        return dict(colorscale="Blues", zmin=0.0, zmax=max(finite + [0.05]), colorbar=dict(thickness=12))
    lo, hi = min(finite + [0.5]), max(finite + [0.55])
    r = max(hi - 0.5, 0.5 - lo, MIN_AUC_SPAN)   # results within a few points of chance stay pale
    stops = np.linspace(0, 1, 21)
    # position in RdBu (0 red, 0.5 white, 1 blue) of each stop's AUC value
    pos = [0.5 + (lo + f * (hi - lo) - 0.5) / (2 * r) for f in stops]
    scale = [[float(f), c] for f, c in zip(stops, sample_colorscale(diverging.RdBu, pos))]
    return dict(colorscale=scale, zmin=lo, zmax=hi,
                colorbar=dict(title=dict(text="AUC<br>(0.5 = chance)"), thickness=12))


def dropdown(labels: list[str], visibles: list[list[bool]], relayouts: list[dict]) -> list[dict]:
    buttons = [dict(label=lab, method="update", args=[{"visible": vis}, rel])
               for lab, vis, rel in zip(labels, visibles, relayouts)]
    return [dict(type="dropdown", buttons=buttons, active=0, showactive=True, x=0, xanchor="left", y=1.02,
                 yanchor="bottom", bgcolor="#fff", bordercolor="#c9d1da")]


def axis_order(report, col: str, key: str) -> list[str]:
    """The backbones (or strategies) of the leaderboard in the grid's order, any others after them."""
    seen = list(dict.fromkeys(report.leaderboard[col].astype(str)))
    grid = [n for n in names(report.grid.get(key)) if n in seen]
    return grid + [n for n in seen if n not in grid]


def metric_heatmap(report) -> str:
    import plotly.graph_objects as go

    b = report.leaderboard
    metrics = [(m, t) for m, t in HEAT_METRICS if m in b.columns]
    if b.empty or not metrics:
        return ""
    rows, cols = axis_order(report, "backbone", "backbones"), axis_order(report, "strategy", "strategies")
    fig = go.Figure()
    for k, (m, title) in enumerate(metrics):
        idx = {(str(r["backbone"]), str(r["strategy"])): r for r in b.to_dict("records")}
        z = [[num(idx.get((y, x), {}).get(m)) for x in cols] for y in rows]
        finite = [v for line in z for v in line if v is not None]
        top = max(finite) if finite else None
        text = [["" if v is None else (f"<b>{v:.3f}</b>" if v == top else f"{v:.3f}") for v in line] for line in z]
        custom = [[[num(idx.get((y, x), {}).get(f"{m}_{s}")) for s in ("std", "ci_low", "ci_high")]
                   + [num(idx.get((y, x), {}).get("n_trials"))] for x in cols] for y in rows]
        fig.add_trace(go.Heatmap(
            z=z, x=[ptext(c) for c in cols], y=[ptext(r) for r in rows], text=text, texttemplate="%{text}",
            customdata=custom, visible=k == 0, name=title, xgap=2, ygap=2, **colour(m, z),
            hovertemplate=("%{y} / %{x}<br>" + title + ": %{z:.3f} ± %{customdata[0]:.3f}"
                           "<br>95% CI %{customdata[1]:.3f} – %{customdata[2]:.3f}<br>%{customdata[3]} trials"
                           "<extra></extra>")))
    vis = [[i == k for i in range(len(metrics))] for k in range(len(metrics))]
    titles = [{"title.text": f"{t} by backbone × strategy (bold: best)"} for _, t in metrics]
    fig.update_layout(title=dict(text=titles[0]["title.text"], x=0.5), height=200 + 46 * len(rows),
                      updatemenus=dropdown([t for _, t in metrics], vis, titles),
                      xaxis=dict(type="category", title="strategy"), yaxis=dict(type="category", autorange="reversed"),
                      margin=dict(l=150, r=30, t=80, b=90))
    lead = ("Means over folds × seeds; pick the metric in the menu. AUC colours are anchored at chance (0.5 is "
            "white; blue above, red below, equally intense for equal distances); F1 and mAP colours start at 0. "
            "Hover for sd, CI and trial count.")
    return section("heatmaps", "Backbone × strategy", figure("fig-heat", fig), lead=lead)


def per_label(report) -> str:
    import plotly.graph_objects as go

    b, labels = report.leaderboard, report.label_names
    cols = [n for n in labels if f"auc_{n}" in b.columns]
    if b.empty or not cols:
        return ""
    ylab = [f"{r['backbone']} / {r['strategy']}" for r in b.to_dict("records")]
    z = [[num(r.get(f"auc_{n}")) for n in cols] for r in b.to_dict("records")]
    pl = report.per_label
    sd = {}
    if not pl.empty and "auc_std" in pl.columns:
        sd = {(str(r["backbone"]), str(r["strategy"]), str(r["label"])):
              (num(r["auc_std"]), num(r.get("n_trials_defined"))) for r in pl.to_dict("records")}
    custom = [[list(sd.get((str(r["backbone"]), str(r["strategy"]), n), (None, None))) for n in cols]
              for r in b.to_dict("records")]
    refs = list(REFERENCE_AUC.items()) if is_nih(report) else []
    for name, ref in refs:
        ylab.append(f"<i>published: {name}</i>")
        z.append([ref.get(n) for n in cols])
        custom.append([[None, None] for _ in cols])
    ylab = [y if y.startswith("<i>published") else ptext(y) for y in ylab]
    fig = go.Figure(go.Heatmap(
        z=z, x=[ptext(n) for n in cols], y=ylab, customdata=custom, xgap=1, ygap=1, **colour("auc", z),
        text=[["" if v is None else f"{v:.2f}" for v in line] for line in z], texttemplate="%{text}",
        textfont=dict(size=10), hovertemplate="%{y}<br>%{x}: AUC %{z:.3f} ± %{customdata[0]:.3f} "
                                              "(%{customdata[1]} trials with positives)<extra></extra>"))
    shapes = []
    if refs:
        y0 = len(b) - 0.5
        shapes = [dict(type="line", xref="paper", x0=0, x1=1, y0=y0, y1=y0, line=dict(color="#1f2933", width=2))]
    fig.update_layout(title=dict(text="ROC-AUC per label (mean over folds × seeds)", x=0.5),
                      height=190 + 24 * len(ylab), shapes=shapes,
                      xaxis=dict(type="category", tickangle=-40), yaxis=dict(type="category", autorange="reversed"),
                      margin=dict(l=300 if refs else 200, r=30, t=50, b=130))
    lead = "Rows: backbone / strategy, best macro AUC at the top; colours anchored at chance (0.5 is white)."
    if refs:
        lead += (' <span class="ref">The two rows below the line are <b>published reference figures from a different '
                 "setting</b> (Wang et al. 2017; CheXNet, Rajpurkar et al. 2017: ImageNet-pretrained CNNs at 224 px "
                 "or more on all 112,120 NIH images with a GPU). They orient, they are not a like-for-like "
                 "comparison.</span>")
    return section("per-label", "Per-label AUC", figure("fig-per-label", fig), lead=lead)


def spread(report) -> str:
    import plotly.graph_objects as go

    t = report.trials
    metrics = [(m, n) for m, n in (("macro_auc", "macro AUC"), ("macro_f1", "macro F1"), ("macro_ap", "mAP"),
                                   ("micro_auc", "micro AUC")) if m in t.columns]
    if t.empty or not metrics:
        return ""
    strategies = axis_order(report, "strategy", "strategies")
    backbones = list(dict.fromkeys(t["backbone"].astype(str)))
    fig, owner = go.Figure(), []
    for k, (m, _) in enumerate(metrics):
        for j, bb in enumerate(backbones):
            g = t[t["backbone"].astype(str) == bb]
            g = g.assign(_o=g["strategy"].astype(str).map({s: i for i, s in enumerate(strategies)})).sort_values("_o")
            fig.add_trace(go.Box(
                x=[ptext(s) for s in g["strategy"]], y=[num(v) for v in g[m]], name=ptext(bb), visible=k == 0,
                boxpoints="all", jitter=0.35, pointpos=0, marker=dict(size=6, color=PALETTE[j % len(PALETTE)]),
                line=dict(width=1.2, color=PALETTE[j % len(PALETTE)]), fillcolor="rgba(0,0,0,0)",
                legendgroup=ptext(bb), customdata=[[ptext(i), f, s] for i, f, s in zip(g["id"], g["fold"], g["seed"])],
                hovertemplate="%{customdata[0]}<br>fold %{customdata[1]}, seed %{customdata[2]}: %{y:.3f}"
                              "<extra></extra>"))
            owner.append(k)
    vis = [[o == k for o in owner] for k in range(len(metrics))]
    rel = [{"yaxis.title.text": n} for _, n in metrics]
    fig.update_layout(boxmode="group", height=440, updatemenus=dropdown([n for _, n in metrics], vis, rel),
                      title=dict(text="every trial (folds × seeds) by strategy and backbone", x=0.5),
                      yaxis=dict(title=dict(text=metrics[0][1]), zeroline=False), xaxis=dict(type="category"),
                      legend=dict(title=dict(text="backbone")), margin=dict(l=60, r=20, t=80, b=50))
    lead = ("Each point is one trial (one held-out fold, one seed); boxes show the quartiles. A wide box means the "
            "ranking of strategies may change with the split.")
    return section("spread", "Spread over folds and seeds", figure("fig-spread", fig), lead=lead)


def groups(report) -> str:
    import plotly.graph_objects as go

    g = report.groups
    if g is None or g.empty:
        return ""
    metrics = [(m, n) for m, n in (("auc", "AUC"), ("ap", "AP"), ("f1", "F1 (tuned)")) if m in g.columns]
    present = [grp for grp in ("head", "medium", "tail") if grp in set(g["group"])]
    present = [grp for grp in present if (g.loc[g["group"] == grp, "n_labels"] > 0).any()]
    colours = {"head": "#1b5e9e", "medium": "#6fa8dc", "tail": "#d9822b"}
    fig, owner = go.Figure(), []
    for k, (m, name) in enumerate(metrics):
        for grp in present:
            sub = g[g["group"] == grp]
            nl = int(sub["n_labels"].iloc[0])
            fig.add_trace(go.Bar(
                name=f"{grp} ({nl} label{'s' if nl != 1 else ''})", legendgroup=grp, visible=k == 0,
                x=[ptext(f"{r['backbone']} / {r['strategy']}") for r in sub.to_dict("records")],
                y=[num(v) for v in sub[m]], marker_color=colours[grp],
                hovertemplate="%{x}<br>" + grp + f" {name}: " + "%{y:.3f}<extra></extra>"))
            owner.append(k)
    chance = [dict(type="line", xref="paper", x0=0, x1=1, y0=0.5, y1=0.5, line=dict(dash="dash", color="#a8322d"))]
    vis = [[o == k for o in owner] for k in range(len(metrics))]
    rel = [{"yaxis.title.text": f"mean {n}", "shapes": chance if m == "auc" else [],
            "yaxis.range": [0, 1] if m == "auc" else None, "yaxis.autorange": m != "auc"} for m, n in metrics]
    fig.update_layout(barmode="group", height=440, updatemenus=dropdown([n for _, n in metrics], vis, rel),
                      shapes=chance, title=dict(text="label groups by training prevalence", x=0.5),
                      yaxis=dict(title=dict(text=rel[0]["yaxis.title.text"]), range=[0, 1]),
                      xaxis=dict(type="category", tickangle=-30), margin=dict(l=70, r=20, t=80, b=130))
    rep = report.grid.get("report") or {}
    lists = "".join(f"<li><b>{esc(grp)}</b>: {_labels(sub['labels'].iloc[0])}</li>"
                    for grp, sub in g.groupby("group", sort=False))
    lead = (f"Head: training prevalence ≥ {esc(rep.get('head', 0.05))}; tail: below {esc(rep.get('tail', 0.01))}; "
            "medium: between. Imbalance strategies should help the tail without hurting the head. Bars start at 0; "
            "the dashed line is chance AUC.")
    return section("groups", "Head / medium / tail", f'<ul class="note">{lists}</ul>' + figure("fig-groups", fig),
                   lead=lead)


def _labels(v) -> str:
    return esc(v) if isinstance(v, str) and v else "none"


def prevalence(report) -> str:
    """Positives per label (sorted), for the dataset section."""
    import plotly.graph_objects as go

    d = report.dataset
    labels, prev, irl = d.get("labels") or {}, d.get("prevalence") or {}, d.get("irlbl") or {}
    if not labels:
        return ""
    order = sorted(labels, key=lambda n: -(num(labels[n]) or 0))
    fig = go.Figure(go.Bar(
        y=[ptext(n) for n in order], x=[num(labels[n]) for n in order], orientation="h", marker_color="#1b5e9e",
        customdata=[[num(prev.get(n)), num(irl.get(n)) if isinstance(irl, dict) else None] for n in order],
        hovertemplate="%{y}: %{x} positives<br>prevalence %{customdata[0]:.4f}, IRLbl %{customdata[1]:.2f}"
                      "<extra></extra>"))
    fig.update_layout(title=dict(text="positives per label", x=0.5), height=140 + 20 * len(order),
                      yaxis=dict(type="category", autorange="reversed"), xaxis=dict(title=dict(text="images")),
                      margin=dict(l=160, r=20, t=40, b=50))
    return figure("fig-prevalence", fig)
