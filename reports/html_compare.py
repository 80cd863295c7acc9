"""``comparison.html``: runs side by side (``bench compare``), built with the leaderboard page's frame and helpers.

Sections: the runs (dataset, image size, epochs, split hash, paired with the reference or not), the values side
by side with their intervals, a dot plot per metric, the differences from the reference run with their tests or
the statement that nothing pairs, per-label AUC and the localisation hit rates. Every string is escaped.
"""

from __future__ import annotations

from reports.html_common import esc, figure, num, ptext, section
from reports.html_figures import colour, dropdown
from reports.html_page import document
from reports.html_tables import controls, num_cell, table, text_cell, th

__all__ = ["page"]

PALETTE = ["#1b5e9e", "#d9822b", "#2e8b57", "#a23b72", "#6c757d", "#8c564b"]


def _runs(cmp) -> str:
    ref = cmp.runs[0]
    head = [th("run"), th("dataset"), th("images", numeric=True), th("image size", numeric=True),
            th("epochs", numeric=True), th("trials", numeric=True), th("split"), th("against the reference")]
    rows = []
    for i, run in enumerate(cmp.runs):
        d = run.describe
        rel = ("reference" if i == 0 else
               "paired: same split (same images in the same folds)" if run.split_hash and run.split_hash == ref.split_hash
               else "not paired: different images or folds")
        rows.append("<tr>" + "".join([text_cell(d["run"]), text_cell(d["dataset"]), num_cell(d["images"], digits=0),
                                      num_cell(d["image_size"], digits=0), num_cell(d["epochs"], digits=0),
                                      num_cell(d["trials"], digits=0), text_cell(d["split_hash"]), text_cell(rel)])
                    + "</tr>")
    lead = (f"The first run, {esc(ref.name)}, is the reference. Runs on the same split are compared image by image "
            "with the tests of the leaderboard page; runs on different images (another dataset, another split) get "
            "intervals but no test.")
    return section("runs", "Runs", table("cmp-runs", head, rows, sortable=False), lead=lead)


def _side_by_side(cmp) -> str:
    v = cmp.values
    if v.empty:
        return ""
    names = [r.name for r in cmp.runs]
    metrics = [(m, t) for m, t in cmp.metrics if m in set(v["metric"])]
    head = [th("backbone"), th("strategy")] + [th(f"{t}: {n}", numeric=True) for m, t in metrics for n in names]
    rows = []
    keyed = {(r["run"], r["backbone"], r["strategy"], r["metric"]): r for r in v.to_dict("records")}
    for b, s in v[["backbone", "strategy"]].drop_duplicates().itertuples(index=False):
        cells = [text_cell(b), text_cell(s)]
        for m, _ in metrics:
            for n in names:
                r = keyed.get((n, b, s, m), {})
                cells.append(num_cell(r.get("value"), ci=(r.get("ci_low"), r.get("ci_high"))))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    lead = ("Each run's leaderboard values (mean over held-out folds of each fold's seed mean) with their 95% "
            "patient-bootstrap intervals; a dash where a run lacks the row or the metric.")
    return section("values", "Side by side", controls("cmp-values") + table("cmp-values", head, rows), lead=lead)


def _dots(cmp) -> str:
    import plotly.graph_objects as go

    v = cmp.values
    if v.empty:
        return ""
    metrics = [(m, t) for m, t in cmp.metrics if m in set(v["metric"]) and v.loc[v.metric == m, "value"].notna().any()]
    rows = [f"{b} / {s}" for b, s in v[["backbone", "strategy"]].drop_duplicates().itertuples(index=False)]
    fig, owner = go.Figure(), []
    for k, (m, title) in enumerate(metrics):
        for j, run in enumerate(cmp.runs):
            g = v[(v.metric == m) & (v.run == run.name)]
            x = [num(x) for x in g["value"]]
            lo = [(num(a) if num(a) is not None and xx is not None else None) for a, xx in zip(g["ci_low"], x)]
            hi = [(num(a) if num(a) is not None and xx is not None else None) for a, xx in zip(g["ci_high"], x)]
            fig.add_trace(go.Scatter(
                x=x, y=[ptext(f"{b} / {s}") for b, s in zip(g["backbone"], g["strategy"])], mode="markers",
                name=ptext(run.name), legendgroup=ptext(run.name), visible=k == 0, showlegend=True,
                marker=dict(size=9, color=PALETTE[j % len(PALETTE)]),
                error_x=dict(type="data", symmetric=False,
                             array=[(h - xx) if h is not None and xx is not None else None for h, xx in zip(hi, x)],
                             arrayminus=[(xx - lo_) if lo_ is not None and xx is not None else None
                                         for lo_, xx in zip(lo, x)], thickness=1.2, width=3),
                hovertemplate="%{y}<br>" + ptext(run.name) + f" {title}: " + "%{x:.3f}<extra></extra>"))
            owner.append(k)
    vis = [[o == k for o in owner] for k in range(len(metrics))]
    titles = [{"title.text": f"{t} per run (bars: 95% intervals)", "xaxis.title.text": t} for _, t in metrics]
    fig.update_layout(title=dict(text=titles[0]["title.text"], x=0.5), height=170 + 34 * len(rows),
                      updatemenus=dropdown([t for _, t in metrics], vis, titles),
                      xaxis=dict(title=dict(text=metrics[0][1])),
                      yaxis=dict(type="category", autorange="reversed", categoryorder="array",
                                 categoryarray=[ptext(r) for r in rows]),
                      legend=dict(title=dict(text="run")), margin=dict(l=220, r=20, t=80, b=50))
    return section("dots", "Per metric", figure("fig-compare", fig),
                   lead="Pick the metric in the menu; overlapping intervals do not test anything: see the differences.")


def _tests(cmp) -> str:
    t = cmp.tests
    if t.empty:
        return section("differences", "Differences from the reference",
                       "<p class=\"note\">No row is in both the reference and another run, or the runs carry no "
                       "bootstrap replicates (report.bootstrap: 0).</p>")
    head = [th("run"), th("backbone"), th("strategy"), th("metric"), th("Δ (run − reference)", numeric=True),
            th("p bootstrap (Holm)", numeric=True), th("p corrected t (Holm)", numeric=True), th("verdict")]
    rows = []
    for r in t.to_dict("records"):
        cls = {"higher": "better", "lower": "worse"}.get(r["verdict"], "")
        rows.append("<tr>" + "".join([
            text_cell(r["run"]), text_cell(r["backbone"]), text_cell(r["strategy"]), text_cell(r["metric"]),
            num_cell(r["mean_diff"], ci=(r["ci_low"], r["ci_high"])), num_cell(r.get("p_boot_holm")),
            num_cell(r.get("p_t_holm")), text_cell(r["verdict"], cls=f"text {cls}".strip())]) + "</tr>")
    unpaired = sorted(set(t.loc[~t["paired"].astype(bool), "run"]))
    note = ""
    if unpaired:
        note = (f'<p class="note"><b>Not paired:</b> {esc(", ".join(unpaired))} scored other images than the reference '
                "(their split hashes differ), so a difference mixes the models with the data; its interval treats the "
                "two runs' test sets as independent samples and there is no test.</p>")
    lead = ("Run minus reference, per backbone × strategy both ran. On the same split: “higher” / “lower” only when "
            "the paired patient bootstrap and the corrected t-test over folds both give p < 0.05 after Holm's "
            "correction (within run × metric); with few folds expect “no evidence” unless the difference is large.")
    return section("differences", "Differences from the reference", note + table("cmp-tests", head, rows), lead=lead)


def _per_label(cmp) -> str:
    import plotly.graph_objects as go

    pl = cmp.per_label
    if pl is None or pl.empty:
        return ""
    labels = list(dict.fromkeys(pl["label"]))
    keys = list(dict.fromkeys(zip(pl["backbone"], pl["strategy"], pl["run"])))
    idx = {(r["backbone"], r["strategy"], r["run"], r["label"]): num(r["auc"]) for r in pl.to_dict("records")}
    z = [[idx.get((b, s, run, lab)) for lab in labels] for b, s, run in keys]
    fig = go.Figure(go.Heatmap(
        z=z, x=[ptext(lab) for lab in labels], y=[ptext(f"{b} / {s} · {run}") for b, s, run in keys], xgap=1, ygap=1,
        text=[["" if v is None else f"{v:.2f}" for v in line] for line in z], texttemplate="%{text}",
        textfont=dict(size=10), hovertemplate="%{y}<br>%{x}: AUC %{z:.3f}<extra></extra>", **colour("auc", z)))
    fig.update_layout(title=dict(text="ROC-AUC per label and run", x=0.5), height=180 + 22 * len(keys),
                      xaxis=dict(type="category", tickangle=-40), yaxis=dict(type="category", autorange="reversed"),
                      margin=dict(l=320, r=30, t=50, b=130))
    return section("per-label", "Per-label AUC", figure("fig-compare-labels", fig),
                   lead="Rows: backbone / strategy · run; colours anchored at chance (0.5 is white).")


def _localisation(cmp) -> str:
    loc = cmp.localisation
    if loc is None or loc.empty:
        return ""
    head = [th("run"), th("backbone"), th("strategy"), th("map"), th("pointing-game hit rate", numeric=True)]
    rows = ["<tr>" + "".join([text_cell(r["run"]), text_cell(r["backbone"]), text_cell(r["strategy"]),
                              text_cell(r["method"]), num_cell(r["value"], ci=(r["ci_low"], r["ci_high"]))]) + "</tr>"
            for r in loc.to_dict("records")]
    return section("localisation", "Localisation", table("cmp-loc", head, rows),
                   lead="Pointing-game hit rate over every boxed finding, with 95% image-bootstrap intervals; the "
                        "chance maps' rows are each run's own.")


def page(cmp) -> str:
    """The whole comparison page (one self-contained HTML document)."""
    names = " vs ".join(r.name for r in cmp.runs)
    parts, nav = [], []
    for sec_id, title, build in (("runs", "Runs", _runs), ("values", "Side by side", _side_by_side),
                                 ("dots", "Per metric", _dots), ("differences", "Differences", _tests),
                                 ("per-label", "Per-label AUC", _per_label), ("localisation", "Localisation",
                                                                              _localisation)):
        inner = build(cmp)
        if inner:
            parts.append(inner)
            nav.append((sec_id, title))
    n_paired = int(sum(1 for r in cmp.runs[1:] if r.split_hash and r.split_hash == cmp.runs[0].split_hash))
    top = (f'<header class="top"><h1>Comparison: {esc(names)}</h1><p>{len(cmp.runs)} runs, read from their '
           f"folders' files; {n_paired} of {len(cmp.runs) - 1} paired with the reference "
           f"{esc(cmp.runs[0].name)}.</p></header>")
    return document(f"Comparison: {names}", top, "\n".join(parts), nav,
                    "Built from the run folders' files by <code>bench compare</code>")


