"""The calibration section of ``leaderboard.html``: reliability diagrams per backbone × strategy, label selectable.

A reliability diagram plots, per bin of predicted probability, the mean prediction against the observed share
of positives; a calibrated model lies on the diagonal. The bins are ``reports.calibration.CURVE_EDGES``'s
equal-width bins, summed over each row's trials (``reliability.csv``); the leaderboard's ECE uses equal-mass
bins per label and trial (``reports.calibration``), so the two answer slightly different questions and the
lead says so.
"""

from __future__ import annotations

import numpy as np

from reports.html_common import esc, figure, num, ptext, section
from reports.html_figures import dropdown

ALL = "all labels (pooled)"
PALETTE = ["#1b5e9e", "#d9822b", "#2e8b57", "#a23b72", "#6c757d", "#8c564b", "#17becf", "#bcbd22", "#e377c2",
           "#7f7f7f"]


def _curves(rel, label: str | None):
    """(mean_p, frac_pos, n) per bin for one label, or pooled over every label when ``label`` is None."""
    sub = rel if label is None else rel[rel["label"] == label]
    n = sub.groupby("bin")["n"].sum()
    sp = (sub["mean_p"].fillna(0) * sub["n"]).groupby(sub["bin"]).sum()
    sy = (sub["frac_pos"].fillna(0) * sub["n"]).groupby(sub["bin"]).sum()
    keep = n > 0
    return (sp[keep] / n[keep]).tolist(), (sy[keep] / n[keep]).tolist(), n[keep].astype(int).tolist()


def calibration(report) -> str:
    import plotly.graph_objects as go

    rel = getattr(report, "reliability", None)
    if rel is None or rel.empty:
        return ""
    order = [(str(r["backbone"]), str(r["strategy"])) for r in report.leaderboard.to_dict("records")]
    present = set(zip(rel["backbone"].astype(str), rel["strategy"].astype(str)))
    order = [k for k in order if k in present] + sorted(present - set(order))
    labels = [n for n in report.label_names if n in set(rel["label"])]
    options = [(ALL, None)] + [(n, n) for n in labels]
    fig, owner = go.Figure(), []
    for k, (_, label) in enumerate(options):
        for j, (b, s) in enumerate(order):
            g = rel[(rel["backbone"].astype(str) == b) & (rel["strategy"].astype(str) == s)]
            x, y, n = _curves(g, label)
            size = (6 + 14 * np.sqrt(np.asarray(n, dtype=float) / max(max(n, default=1), 1))).tolist()
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers", name=ptext(f"{b} / {s}"), legendgroup=ptext(f"{b} / {s}"),
                visible=k == 0, showlegend=True, customdata=n, line=dict(width=1.5, color=PALETTE[j % len(PALETTE)]),
                marker=dict(size=size, color=PALETTE[j % len(PALETTE)]),
                hovertemplate=ptext(f"{b} / {s}") + "<br>mean predicted %{x:.3f}<br>observed positives %{y:.3f}"
                              "<br>%{customdata} (image, label) pairs<extra></extra>"))
            owner.append(k)
    diagonal = [dict(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(dash="dash", color="#a8322d"))]
    vis = [[o == k for o in owner] for k in range(len(options))]
    titles = [{"title.text": f"reliability: {name}"} for name, _ in options]
    fig.update_layout(title=dict(text=titles[0]["title.text"], x=0.5), height=520, shapes=diagonal,
                      updatemenus=dropdown([ptext(name) for name, _ in options], vis, titles),
                      xaxis=dict(title=dict(text="mean predicted probability"), range=[0, 1]),
                      yaxis=dict(title=dict(text="observed share of positives"), range=[0, 1]),
                      legend=dict(title=dict(text="backbone / strategy")), margin=dict(l=70, r=20, t=80, b=60))
    edges = sorted(set(rel["lo"]).union(rel["hi"]))
    rows = report.leaderboard
    worst = ""
    if "macro_ece" in rows and rows["macro_ece"].notna().any():
        r = rows.loc[rows["macro_ece"].idxmax()]
        best = rows.loc[rows["macro_ece"].idxmin()]
        worst = (f" Here the best calibrated row is {esc(best['backbone'])} / {esc(best['strategy'])} "
                 f"(macro ECE {num(best['macro_ece']):.3f}), the worst {esc(r['backbone'])} / "
                 f"{esc(r['strategy'])} ({num(r['macro_ece']):.3f}).")
    lead = ("Can a predicted probability be read as one? Each point is a bin of predictions "
            f"({len(edges) - 1} equal-width bins of [0, 1]): its mean predicted probability against the share of "
            "positives observed in it, over every held-out fold and seed of the row; marker size grows with the "
            "bin's count, and the dashed diagonal is perfect calibration. Pick a label in the menu; click a legend "
            "entry to hide a row. Re-weighting, focal losses and resampling often move the curve off the diagonal "
            "while AUC is unchanged: recalibrate (e.g. temperature or isotonic on validation data) before showing "
            "such probabilities to a clinician. The leaderboard's ECE uses 15 equal-mass bins per label and trial "
            "(populated bins even for rare labels) and the Brier score needs no bins; both are lower-is-better."
            + worst)
    return section("calibration", "Calibration", figure("fig-calibration", fig), lead=lead)
