"""The sections of ``leaderboard.html``; each returns an HTML fragment (strings escaped)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd

from reports.html import PLOT_CONFIG, esc, figure, fmt, json_script

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2a3a;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:#c8d2de;font-size:13px}main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;margin:18px 0;padding:14px 18px}
h2{font-size:17px;margin:4px 0 10px}h3{font-size:14px;margin:12px 0 6px}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{padding:4px 7px;border-bottom:1px solid #edf0f3;text-align:right;white-space:nowrap}
th{background:#f0f3f6;position:sticky;top:0;cursor:pointer;user-select:none}th.text,td.text{text-align:left}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
tr:hover td{background:#f7fafc}.ci{color:#6b7785;font-size:11px}.best{font-weight:600;color:#0b6b3a}
.note{color:#5b6674;font-size:12.5px;margin:6px 0}.scroll{max-height:520px;overflow:auto}
input.filter{padding:5px 8px;border:1px solid #c9d1da;border-radius:5px;width:280px;margin-bottom:8px}
.fig{width:100%;min-height:360px}.gallery{display:flex;flex-wrap:wrap;gap:12px}
.gallery figure{margin:0;width:200px;font-size:11.5px;color:#3b4552}.gallery img{width:192px;image-rendering:auto;border:1px solid #ccd}
.sig{color:#0b6b3a;font-weight:600}.nsig{color:#8a94a0}details summary{cursor:pointer;font-weight:600;margin:4px 0}
code{background:#f0f3f6;padding:1px 4px;border-radius:3px}
"""

SCRIPT = """
(function(){
  function num(t){var v=parseFloat(t);return isNaN(v)?null:v;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var ths=table.querySelectorAll('thead th');
    ths.forEach(function(th,idx){th.addEventListener('click',function(){
      var tbody=table.tBodies[0];var rows=Array.prototype.slice.call(tbody.rows);
      var asc=!th.classList.contains('sorted-asc');
      ths.forEach(function(o){o.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      rows.sort(function(a,b){
        var x=a.cells[idx].getAttribute('data-v'),y=b.cells[idx].getAttribute('data-v');
        var nx=num(x),ny=num(y);
        if(nx!==null&&ny!==null){return asc?nx-ny:ny-nx;}
        if(nx===null&&ny!==null)return 1; if(ny===null&&nx!==null)return -1;
        return asc?String(x).localeCompare(String(y)):String(y).localeCompare(String(x));
      });
      rows.forEach(function(r){tbody.appendChild(r);});
    });});
  });
  document.querySelectorAll('input.filter').forEach(function(inp){
    inp.addEventListener('input',function(){
      var q=inp.value.toLowerCase();var t=document.getElementById(inp.getAttribute('data-table'));
      Array.prototype.forEach.call(t.tBodies[0].rows,function(r){
        r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});
    });
  });
  var config=JSON.parse(document.getElementById('plot-config').textContent);
  document.querySelectorAll('div.fig').forEach(function(div){
    var spec=JSON.parse(document.getElementById(div.id+'-data').textContent);
    Plotly.newPlot(div,spec.data,spec.layout,config);
  });
})();
"""


def page(report, body: str) -> str:
    from plotly.offline import get_plotlyjs

    title = f"Leaderboard: {report.grid.get('name', report.run_dir.name)}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{esc(title)}</title>"
            # No external resource may be fetched: a CSP that forbids any network access.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline' "
            "'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:\">"
            f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>"
            f"{body}{json_script(PLOT_CONFIG, 'plot-config')}<script>{SCRIPT}</script></body></html>")


def header(report) -> str:
    g, r = report.grid, report.run
    ds = g.get("dataset", {})
    versions = r.get("versions", {})
    commit = (r.get("git") or {}).get("commit") or "unknown"
    return (f"<header><h1>{esc(g.get('name', 'run'))}: class-imbalance leaderboard</h1>"
            f"<p>dataset <b>{esc(ds.get('kind'))}</b> at {esc(ds.get('root'))}, {esc(ds.get('image_size'))} px; "
            f"{len(report.trials)} trials; {esc(g.get('splits', {}).get('folds'))} folds x seeds "
            f"{esc(', '.join(map(str, g.get('seeds', []))))}; {esc(g.get('train', {}).get('epochs'))} epochs each</p>"
            f"<p>split hash {esc(str(r.get('split_hash', ''))[:12])}, commit {esc(commit[:10])}, torch "
            f"{esc(versions.get('torch'))}, ray {esc(versions.get('ray'))}, timm {esc(versions.get('timm'))}</p></header><main>")


def _cell(v, *, text: bool = False, ci: tuple | None = None, best: bool = False) -> str:
    if text:
        return f'<td class="text" data-v="{esc(v)}">{esc(v)}</td>'
    val = None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)
    inner = fmt(val)
    if ci and all(c is not None and np.isfinite(c) for c in ci):
        inner += f' <span class="ci">[{ci[0]:.3f}, {ci[1]:.3f}]</span>'
    cls = ' class="best"' if best else ""
    return f'<td{cls} data-v="{"" if val is None else val}">{inner}</td>'


def leaderboard_table(report) -> str:
    b = report.leaderboard
    cols = [("macro_auc", "macro AUC"), ("micro_auc", "micro AUC"), ("macro_ap", "mAP"), ("macro_f1", "macro F1"),
            ("micro_f1", "micro F1"), ("macro_f1_fixed", "macro F1 @0.5"), ("micro_f1_fixed", "micro F1 @0.5")]
    head = ('<tr><th class="text">backbone</th><th class="text">strategy</th><th>trials</th>'
            + "".join(f"<th>{esc(n)}</th><th>± sd</th>" for _, n in cols) + '<th class="text">details</th></tr>')
    best = {c: b[c].max() for c, _ in cols if c in b}
    rows = []
    for _, r in b.iterrows():
        cells = [_cell(r["backbone"], text=True), _cell(r["strategy"], text=True),
                 f'<td data-v="{int(r["n_trials"])}">{int(r["n_trials"])}</td>']
        for c, _ in cols:
            ci = (r.get(f"{c}_ci_low"), r.get(f"{c}_ci_high")) if f"{c}_ci_low" in b else None
            cells.append(_cell(r.get(c), ci=ci, best=r.get(c) == best.get(c)))
            cells.append(_cell(r.get(f"{c}_std")))
        anchor = f"trials-{r['backbone']}-{r['strategy']}"
        cells.append(f'<td class="text" data-v=""><a href="#{esc(anchor)}">trials</a></td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<section id="leaderboard"><h2>Leaderboard</h2>'
            '<p class="note">Mean over folds x seeds (± sample sd). Brackets: 95% patient-bootstrap CI of the pooled '
            'out-of-fold predictions. F1 uses per-label thresholds tuned on each trial\'s validation part; '
            '"@0.5" is the fixed threshold. Click a header to sort; type to filter.</p>'
            '<input class="filter" data-table="board" placeholder="filter rows (e.g. resnet, focal)">'
            f'<div class="scroll"><table id="board" class="sortable"><thead>{head}</thead><tbody>{"".join(rows)}'
            "</tbody></table></div></section>")


def heatmaps(report) -> str:
    import plotly.graph_objects as go

    b = report.leaderboard
    parts = []
    for metric, name in (("macro_auc", "macro AUC"), ("macro_f1", "macro F1 (tuned)"), ("micro_auc", "micro AUC"),
                         ("macro_ap", "mAP")):
        wide = b.pivot_table(index="backbone", columns="strategy", values=metric)
        fig = go.Figure(go.Heatmap(z=wide.to_numpy(), x=[str(c) for c in wide.columns],
                                   y=[str(i) for i in wide.index], colorscale="Viridis",
                                   text=np.round(wide.to_numpy(), 3), texttemplate="%{text}",
                                   hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>"))
        fig.update_layout(title=f"{name} by backbone x strategy", height=140 + 50 * len(wide),
                          margin=dict(l=140, r=20, t=40, b=80))
        parts.append(figure(f"heat-{metric}", fig))
    return '<section id="heatmaps"><h2>Backbone x strategy</h2>' + "".join(parts) + "</section>"


def per_label(report) -> str:
    import plotly.graph_objects as go

    b = report.leaderboard
    cols = [f"auc_{n}" for n in report.label_names if f"auc_{n}" in b]
    if not cols:
        return ""
    z = b[cols].to_numpy(dtype=float)
    ylab = [f"{r.backbone} / {r.strategy}" for r in b.itertuples()]
    fig = go.Figure(go.Heatmap(z=z, x=[c[4:] for c in cols], y=ylab, colorscale="RdYlGn", zmin=0.5, zmax=1.0,
                               hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title="ROC-AUC per label (mean over folds x seeds)", height=160 + 22 * len(ylab),
                      margin=dict(l=220, r=20, t=40, b=120))
    return '<section id="per-label"><h2>Per-label AUC</h2>' + figure("heat-per-label", fig) + "</section>"


def spread(report) -> str:
    import plotly.graph_objects as go

    t = report.trials
    fig = go.Figure()
    for backbone, g in t.groupby("backbone", sort=False):
        fig.add_trace(go.Box(x=g["strategy"], y=g["macro_auc"], name=str(backbone), boxpoints="all", jitter=0.4,
                             text=g["id"], hovertemplate="%{text}: %{y:.3f}<extra></extra>"))
    fig.update_layout(boxmode="group", title="macro AUC of every trial (folds x seeds)", height=420,
                      yaxis_title="macro AUC", margin=dict(l=60, r=20, t=40, b=100))
    return '<section id="spread"><h2>Spread over folds and seeds</h2>' + figure("spread", fig) + "</section>"


def significance(report) -> str:
    s, f = report.significance, report.friedman
    parts = ['<section id="significance"><h2>Is the difference real?</h2>']
    if not s.empty:
        rows = []
        for _, r in s.iterrows():
            sig = r["p_holm"] < 0.05 if np.isfinite(r["p_holm"]) else False
            cls = "sig" if sig else "nsig"
            rows.append("<tr>" + _cell(r["backbone"], text=True) + _cell(r["strategy"], text=True)
                        + _cell(r["metric"], text=True) + f'<td data-v="{int(r["n_pairs"])}">{int(r["n_pairs"])}</td>'
                        + _cell(r["mean_diff"]) + _cell(r["p"]) + f'<td class="{cls}" data-v="{r["p_holm"]}">'
                        + fmt(r["p_holm"]) + "</td></tr>")
        parts.append(f'<p class="note">Each strategy against <code>{esc(s["baseline"].iloc[0])}</code> on the same '
                     "backbone: paired t-test over matched folds x seeds, Holm-corrected within each backbone and "
                     "metric. Green: adjusted p &lt; 0.05.</p>"
                     '<table class="sortable" id="sig"><thead><tr><th class="text">backbone</th><th class="text">'
                     'strategy</th><th class="text">metric</th><th>pairs</th><th>mean diff</th><th>p</th>'
                     f'<th>p (Holm)</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    parts.append(cd_diagram(f))
    parts.append("</section>")
    return "".join(parts)


def cd_diagram(f: dict) -> str:
    import plotly.graph_objects as go

    ranks = f.get("average_ranks") or f.get("ranks")
    if not ranks:
        return f'<p class="note">Friedman test not run: {esc(f.get("reason", "not enough data"))}.</p>'
    items = sorted(ranks.items(), key=lambda kv: kv[1])
    k = len(items)
    cd = f.get("cd") or f.get("critical_difference")
    fig = go.Figure()
    for i, (name, rank) in enumerate(items):
        y = 1 + i
        fig.add_trace(go.Scatter(x=[rank, rank], y=[0, y], mode="lines", line=dict(color="#445"), showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=[rank], y=[y], mode="markers+text", text=[f"{name} ({rank:.2f})"],
                                 textposition="middle right", marker=dict(size=8), showlegend=False,
                                 hovertemplate=f"{esc(name)}: average rank %{{x:.2f}}<extra></extra>"))
    for j, clique in enumerate(f.get("cliques") or []):
        xs = [ranks[m] for m in clique if m in ranks]
        if len(xs) > 1:
            fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[-0.4 - 0.3 * j] * 2, mode="lines",
                                     line=dict(width=5, color="#d9534f"), showlegend=False,
                                     hovertemplate="not significantly different<extra></extra>"))
    if cd:
        fig.add_trace(go.Scatter(x=[1, 1 + cd], y=[k + 1] * 2, mode="lines+text", text=["", f"CD = {cd:.2f}"],
                                 textposition="top center", line=dict(width=3, color="#222"), showlegend=False))
    fig.update_layout(title=f"Critical-difference diagram ({esc(f.get('metric', 'macro_auc'))}, rank 1 = best)",
                      xaxis=dict(range=[0.5, k + 0.8], title="average rank"), yaxis=dict(visible=False),
                      height=220 + 28 * k, margin=dict(l=30, r=30, t=50, b=40))
    p = f.get("p") if f.get("p") is not None else f.get("p_value")
    stat = f.get("statistic")
    note = (f'<p class="note">Friedman test over {esc(f.get("blocks"))} blocks (backbone x fold x seed): '
            f'statistic {fmt(stat)}, p = {fmt(p, 4)}. Nemenyi critical difference CD = {fmt(cd)}; red bars join '
            "strategies whose average ranks differ by less than CD.</p>")
    return note + figure("cd", fig)


def groups(report) -> str:
    import plotly.graph_objects as go

    g = report.groups
    if g.empty:
        return ""
    fig = go.Figure()
    for grp in ("head", "medium", "tail"):
        sub = g[g["group"] == grp]
        if sub.empty:
            continue
        fig.add_trace(go.Bar(name=f"{grp} ({int(sub['n_labels'].iloc[0])} labels)",
                             x=[f"{r.backbone} / {r.strategy}" for r in sub.itertuples()], y=sub["auc"],
                             hovertemplate="%{x}: %{y:.3f}<extra>" + grp + "</extra>"))
    fig.update_layout(barmode="group", title="macro AUC by label group (training prevalence)", height=420,
                      yaxis=dict(title="AUC", range=[0.4, 1]), margin=dict(l=60, r=20, t=40, b=140))
    rep = report.grid.get("report", {})
    lists = "".join(f"<li><b>{esc(grp)}</b>: {esc(sub['labels'].iloc[0])}</li>"
                    for grp, sub in g.groupby("group", sort=False))
    return (f'<section id="groups"><h2>Head / medium / tail</h2><p class="note">Head: training prevalence &ge; '
            f"{esc(rep.get('head', 0.05))}; tail: &lt; {esc(rep.get('tail', 0.01))}.</p><ul class='note'>{lists}</ul>"
            + figure("groups-bar", fig) + "</section>")


def localisation(report, raw: pd.DataFrame | None) -> str:
    import plotly.graph_objects as go

    loc = report.localisation
    if loc is None or loc.empty:
        return ""
    parts = ['<section id="localisation"><h2>Grad-CAM localisation against boxes</h2>'
             '<p class="note">Held-out images only. Hit = pointing game (map maximum inside a box of the finding); '
             "energy = share of the map inside the boxes; acc@T = share of IoBB above T (Wang et al. 2017). "
             "<code>random</code> and <code>centre</code> rows are chance references scored the same way.</p>"]
    allrows = loc[loc["finding"] == "all"]
    metrics = [m for m in ("hit", "energy", "iou", "iobb", "acc_iobb_0.1", "acc_iobb_0.25", "acc_iobb_0.5")
               if m in set(allrows["metric"])]
    wide = allrows.pivot_table(index=["backbone", "strategy", "method"], columns="metric", values="value")
    lo = allrows.pivot_table(index=["backbone", "strategy", "method"], columns="metric", values="ci_low")
    hi = allrows.pivot_table(index=["backbone", "strategy", "method"], columns="metric", values="ci_high")
    rows = []
    for key, r in wide.iterrows():
        cells = "".join(_cell(k, text=True) for k in key)
        for m in metrics:
            cells += _cell(r.get(m), ci=(lo.loc[key].get(m), hi.loc[key].get(m)))
        rows.append(f"<tr>{cells}</tr>")
    head = ('<tr><th class="text">backbone</th><th class="text">strategy</th><th class="text">map</th>'
            + "".join(f"<th>{esc(m)}</th>" for m in metrics) + "</tr>")
    parts.append(f'<table class="sortable" id="loc"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')
    per = loc[(loc["finding"] != "all") & (loc["metric"] == "hit") & ~loc["method"].isin(["random", "centre"])]
    if not per.empty:
        per = per.assign(model=per["backbone"] + " / " + per["strategy"] + " / " + per["method"])
        w = per.pivot_table(index="model", columns="finding", values="value")
        fig = go.Figure(go.Heatmap(z=w.to_numpy(), x=[str(c) for c in w.columns], y=[str(i) for i in w.index],
                                   colorscale="Blues", zmin=0, zmax=1,
                                   hovertemplate="%{y}<br>%{x}: hit rate %{z:.2f}<extra></extra>"))
        fig.update_layout(title="pointing-game hit rate per finding", height=160 + 24 * len(w),
                          margin=dict(l=260, r=20, t=40, b=110))
        parts.append(figure("loc-heat", fig))
    parts.append(_gallery(report))
    parts.append("</section>")
    return "".join(parts)


def _gallery(report) -> str:
    figs = []
    for trial_dir in sorted((report.run_dir / "trials").glob("*/gallery/gallery.json")):
        meta = json.loads(trial_dir.read_text())
        for m in meta[:4]:
            png = trial_dir.parent / m["file"]
            if not png.is_file() or png.stat().st_size > 200_000:
                continue
            data = base64.b64encode(png.read_bytes()).decode()
            figs.append(f'<figure><img alt="{esc(m["finding"])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{esc(trial_dir.parent.parent.name)}<br>{esc(m['image_id'])}: "
                        f"<b>{esc(m['finding'])}</b> (label 1), p = {m['prob']:.2f}, "
                        f"{'hit' if m['hit'] else 'miss'}, energy {m['energy']:.2f} [{esc(m['rank'])}]"
                        "</figcaption></figure>")
        if len(figs) >= 24:
            break
    if not figs:
        return ""
    return '<h3>Overlays (best and worst per trial; green boxes are ground truth)</h3><div class="gallery">' + \
        "".join(figs) + "</div>"


def dataset_summary(report) -> str:
    d = report.dataset
    if not d:
        return ""
    labels = d.get("labels", {})
    prev = d.get("prevalence", {})
    irl = d.get("irlbl", {})
    rows = "".join(f"<tr>{_cell(n, text=True)}<td data-v='{labels[n]}'>{labels[n]}</td>{_cell(prev.get(n))}"
                   f"{_cell(irl.get(n) if isinstance(irl, dict) else None)}</tr>" for n in labels)
    q = report.split.get("quality", {})
    dropped = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in (d.get("dropped") or {}).items()) or "none"
    return ('<section id="dataset"><h2>Dataset, split and imbalance</h2>'
            f'<p class="note">{esc(d.get("images"))} images, {esc(d.get("patients"))} patients; dropped: {dropped}. '
            f'MeanIR {fmt(d.get("mean_ir"), 2)}, MaxIR {fmt(d.get("max_ir"), 2)}, SCUMBLE {fmt(d.get("scumble"))}, '
            f'cardinality {fmt(d.get("cardinality"))}. Split: {esc(report.split.get("n_folds"))} patient-disjoint folds, '
            f'sizes {esc(q.get("fold_sizes"))}, largest label deviation from ideal '
            f'{fmt(q.get("max_label_deviation"))}, shared patients {esc(q.get("shared_patients"))}, hash '
            f'<code>{esc(str(report.split.get("hash", ""))[:16])}</code>.</p>'
            '<table class="sortable" id="labels"><thead><tr><th class="text">label</th><th>positives</th>'
            f"<th>prevalence</th><th>IRLbl</th></tr></thead><tbody>{rows}</tbody></table></section>")


def trial_details(report) -> str:
    t = report.trials
    parts = ['<section id="trials"><h2>Trials</h2><p class="note">Each trial\'s files are in '
             "<code>trials/&lt;id&gt;/</code> (metrics.json, predictions.npz, config.json).</p>"]
    for (b, s), g in t.groupby(["backbone", "strategy"], sort=False):
        rows = "".join(
            f"<tr>{_cell(r.id, text=True)}<td data-v='{r.fold}'>{r.fold}</td><td data-v='{r.seed}'>{r.seed}</td>"
            f"{_cell(r.macro_auc)}{_cell(r.micro_auc)}{_cell(r.macro_f1)}{_cell(r.macro_f1_fixed)}"
            f"{_cell(r.train_seconds, )}{_cell(r.excluded, text=True)}</tr>" for r in g.itertuples())
        parts.append(f'<details id="{esc(f"trials-{b}-{s}")}"><summary>{esc(b)} / {esc(s)} ({len(g)} trials)</summary>'
                     '<table class="sortable"><thead><tr><th class="text">trial</th><th>fold</th><th>seed</th>'
                     "<th>macro AUC</th><th>micro AUC</th><th>macro F1</th><th>macro F1 @0.5</th><th>train s</th>"
                     f'<th class="text">labels excluded</th></tr></thead><tbody>{rows}</tbody></table></details>')
    parts.append("</section></main>")
    return "".join(parts)
