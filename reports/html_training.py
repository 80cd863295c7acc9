"""The "Training" section of ``leaderboard.html``: per-epoch curves, each staged strategy's stages, post-hoc steps.

Built from the trials' ``metrics.json`` (``history``, ``stages``, ``posthoc``; :mod:`reports.training`). One
panel per strategy, one line per backbone: the mean over folds of each fold's seed mean, with a band from the
lowest to the highest trial. Validation AUC panels share one axis; training-loss panels each have their own,
since losses of different strategies (and of a strategy's stages) are on different scales. A staged strategy's
panel shades its stages and names them. Trials written before these keys existed get no curves (a note says
how many), and a run with none of them gets no section.
"""

from __future__ import annotations

import math

from reports import training as TR
from reports.html_common import esc, figure, ptext, section
from reports.html_figures import PALETTE, axis_order
from reports.html_tables import int_cell, num_cell, table, text_cell, th

COLUMNS = 4
PANEL_HEIGHT = 210
TRAINS = {"all": "all parameters", "classifier": "classifier only (the rest frozen)"}


def training(report) -> str:
    docs = report.docs
    history = TR.history_frame(docs)
    variants, posthoc, warned = TR.stage_variants(docs), TR.posthoc_summary(docs), TR.step_warnings(docs)
    drawn = {m: TR.curves(history, m) for m in TR.CURVE_METRICS}
    if all(c.empty for c in drawn.values()) and not variants and not posthoc and not warned:
        return ""
    strategies = axis_order(report, "strategy", "strategies")  # every trial's, in the grid's order
    backbones = list(dict.fromkeys(report.trials["backbone"].astype(str)))  # the spread figure's colours
    rank = {k: i for i, k in enumerate(axis_order(report, "backbone", "backbones") + strategies)}
    posthoc.sort(key=lambda p: (rank.get(p["backbone"], len(rank)), rank.get(p["strategy"], len(rank))))
    spans = {s: v[0].stages for s, v in variants.items() if len(v) == 1}
    steps = {p["strategy"]: " + ".join(TR.spell(x) for x in p["settings"].get("name", [])) for p in posthoc}
    parts = [f'<p class="note too-few-steps"><strong>Warning</strong>: {w}</p>' for w in _step_notes(warned)]
    for metric, fig_id, title, shared in (
            ("val_macro_auc", "fig-train-auc", "validation macro AUC after each epoch", True),
            ("train_loss", "fig-train-loss", "training loss per epoch (each panel on its own scale)", False)):
        c = drawn[metric]
        shown = [s for s in strategies if s in set(c["strategy"])]
        if shown:
            parts.append(figure(fig_id, curve_figure(c, shown, backbones, spans, steps, title=title, shared=shared,
                                                     loss=metric == "train_loss")))
    with_curves = set(history.loc[history[list(TR.CURVE_METRICS)].notna().any(axis=1), "id"])
    without = [d["id"] for d in docs if d["id"] not in with_curves]
    notes = []
    if without and len(without) < len(docs):
        notes.append(f"{len(without)} of {len(docs)} trials record no per-epoch validation AUC or training loss "
                     f"(written before they were recorded, e.g. {esc(without[0])}): the curves leave them out.")
    elif without:
        notes.append("The trials record no per-epoch validation AUC or training loss (written before they were "
                     "recorded): no curves.")
    inner = "".join(parts) + "".join(f'<p class="note">{n}</p>' for n in notes)
    inner += stage_table(variants, strategies) + posthoc_table(posthoc)
    lead = ("How training went and what each staged strategy did. Curves: the mean over held-out folds of each "
            "fold's mean over seeds, with a band from the lowest to the highest trial; the validation AUC is "
            "measured on each trial's validation part after every epoch (after the post-hoc step at the last "
            "epoch). The training loss is each strategy's own loss, so its panels are not on one scale, and it "
            "jumps where a stage changes the loss. Shaded spans and dashed lines mark a staged strategy's stages.")
    return section("training", "Training", inner, lead=lead)


def _step_notes(warned: list[dict]) -> list[str]:
    """One sentence per backbone x strategy x stage whose loss trained for fewer optimiser steps than it needs, or
    for a number its trials could not count."""
    out = []
    for w in warned:
        stage = f", stage {esc(w['stage'])}," if w["stage"] != "train" else ""
        if w["steps"] is None:
            out.append(f"{esc(w['backbone'])} / {esc(w['strategy'])}{stage} trained the {esc(w['loss'])} loss for an "
                       f"unknown number of optimiser steps in {w['warned']} of its {w['trials']} trials (resumed from "
                       f"checkpoints that did not count them); it needs {w['min_steps']:,} to learn (README, "
                       "Strategies).")
            continue
        lo, hi = w["steps"]
        steps = f"{lo}" if lo == hi else f"{lo}–{hi}"
        out.append(f"{esc(w['backbone'])} / {esc(w['strategy'])}{stage} trained the {esc(w['loss'])} loss for {steps} "
                   f"optimiser steps in {w['warned']} of its {w['trials']} trials, fewer than the {w['min_steps']:,} "
                   "it needs to learn (README, Strategies): its results are an under-trained model's, not the "
                   "method's. More epochs or images give it more steps.")
    return out


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def curve_figure(c, strategies: list[str], backbones: list[str], spans: dict, steps: dict, *, title: str,
                 shared: bool, loss: bool):
    """One panel per strategy, a line and a min-max band per backbone; stages shaded and named."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = min(COLUMNS, len(strategies))
    rows = math.ceil(len(strategies) / cols)
    names = [ptext(s) + (f" <i>(+ {ptext(steps[s])})</i>" if steps.get(s) else "") for s in strategies]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.06,
                        vertical_spacing=min(0.5 / rows, 0.18))
    last_epoch = int(c["epoch"].max())
    fmt_y = ".4g" if loss else ".3f"
    legend, traces = set(), []  # (trace, row, col): added at once, much faster than one by one
    for k, strategy in enumerate(strategies):
        row, col = k // cols + 1, k % cols + 1
        for j, backbone in enumerate(backbones):
            g = c[(c["strategy"] == strategy) & (c["backbone"] == backbone)]
            if g.empty:
                continue
            colour = PALETTE[j % len(PALETTE)]
            x = g["epoch"].tolist()
            if (g["n"] > 1).any():
                traces.append((go.Scatter(x=x + x[::-1], y=g["max"].tolist() + g["min"].tolist()[::-1], fill="toself",
                                          mode="lines", fillcolor=_rgba(colour, 0.15), line=dict(width=0),
                                          hoverinfo="skip", showlegend=False, legendgroup=ptext(backbone)), row, col))
            traces.append((go.Scatter(
                x=x, y=g["mean"].tolist(), mode="lines+markers", name=ptext(backbone), legendgroup=ptext(backbone),
                showlegend=backbone not in legend, line=dict(color=colour, width=1.8), marker=dict(size=5),
                customdata=[[lo, hi, int(n)] for lo, hi, n in zip(g["min"], g["max"], g["n"])],
                hovertemplate=(f"{ptext(backbone)} / {ptext(strategy)}<br>epoch %{{x}}: %{{y:{fmt_y}}}<br>min "
                               f"%{{customdata[0]:{fmt_y}}}, max %{{customdata[1]:{fmt_y}}} "
                               "(%{customdata[2]} trials)<extra></extra>")), row, col))
            legend.add(backbone)
    fig.add_traces([t for t, _, _ in traces], rows=[r for _, r, _ in traces], cols=[c for _, _, c in traces])
    for k, strategy in enumerate(strategies):  # after the traces: plotly leaves shapes out of empty subplots
        row, col = k // cols + 1, k % cols + 1
        stages = spans.get(strategy) or []
        for i, st in enumerate(stages if len(stages) > 1 else []):
            first, last = (st.get("epochs") or [None, None])[:2]
            if first is None:
                continue
            label = ptext(st.get("name", f"stage {i + 1}")) + (" · re-init" if st.get("reinit") else "")
            fig.add_vrect(x0=first - 0.5, x1=last + 0.5, row=row, col=col, line_width=0, layer="below",
                          fillcolor="#dfe6ee" if i % 2 else "#f3f6f9", opacity=1, annotation_text=label,
                          annotation_position="top left", annotation_font=dict(size=10, color="#5f6b7a"))
            if i:
                fig.add_vline(x=first - 0.5, row=row, col=col, line=dict(color="#7b8794", dash="dash", width=1))
    fig.update_xaxes(range=[0.5, last_epoch + 0.5], dtick=1 if last_epoch <= 15 else None, zeroline=False)
    for col in range(1, cols + 1):
        fig.update_xaxes(title=dict(text="epoch", standoff=4), row=rows, col=col)
    if shared:
        fig.update_yaxes(matches="y")
    height = 120 + PANEL_HEIGHT * rows
    fig.update_layout(title=dict(text=title, x=0.5, y=1 - 16 / height, yref="container", yanchor="middle"),
                      height=height, hovermode="closest", margin=dict(l=50, r=20, t=100, b=50),
                      legend=dict(orientation="h", x=0.5, xanchor="center", y=1 - 34 / height, yanchor="top",
                                  yref="container", title=dict(text="backbone")))
    return fig


def stage_table(variants: dict, strategies: list[str]) -> str:
    """One row per stage of each staged strategy; a warning and every variant where its trials disagree."""
    if not variants:
        return ""
    order = [s for s in strategies if s in variants] + [s for s in variants if s not in strategies]
    mixup = any("mixup" in st for v in variants.values() for x in v for st in (x.stages or []))
    head = [th("strategy"), th("stage", numeric=True), th("name"), th("epochs", title="first–last, 1-based"),
            th("loss"), th("sampler")] + ([th("mix-up")] if mixup else []) + [
        th("trains"), th("re-init", title="the classifier re-initialised when the stage starts"),
        th("restart", title="a fresh optimiser and learning-rate schedule when the stage starts (the first "
                            "stage always starts one)"), th("trials", numeric=True)]
    rows, warnings = [], []
    for s in order:
        vs = variants[s]
        if len(vs) > 1:
            warnings.append(f"<strong>Warning</strong>: the trials of {esc(s)} record {len(vs)} different stage lists "
                            "(they should all train the same stages); every list is shown with its trials: "
                            + "; ".join(f"{len(v.trials)} trial{'s' if len(v.trials) != 1 else ''} "
                                        f"(e.g. {esc(v.trials[0])})" for v in vs) + ".")
        for v in vs:
            trials = text_cell(len(v.trials), html=f'<span title="{esc(", ".join(v.trials))}">{len(v.trials)}</span>')
            if v.stages is None:
                rows.append("<tr>" + text_cell(s) + f'<td class="text" colspan="{len(head) - 2}">no stages recorded '
                            "(written before stages were recorded)</td>" + trials + "</tr>")
                continue
            prev = {}
            for i, st in enumerate(v.stages):
                first, last = (st.get("epochs") or [None, None])[:2]
                cells = {"loss": TR.spell(st.get("loss")), "sampler": TR.spell(st.get("sampler")),
                         "mixup": TR.spell(st.get("mixup")) or "none", "train": TRAINS.get(st.get("train"),
                                                                                             TR.spell(st.get("train")))}
                shown = {k: f"<b>{esc(t)}</b>" if i and prev.get(k) != t else esc(t) for k, t in cells.items()}
                span = ("–" if first is None else f"{first} (1 epoch)" if first == last else
                        f"{first}–{last} ({last - first + 1} epochs)")
                rows.append("<tr>" + text_cell(s) + int_cell(i + 1) + text_cell(st.get("name")) + text_cell(span)
                            + "".join(text_cell(cells[k], html=shown[k], cls="text wrap") for k in
                                      ("loss", "sampler", *(("mixup",) if mixup else ())))
                            + text_cell(cells["train"], html=shown["train"])
                            + _flag(st.get("reinit"), strong=True) + _flag(st.get("restart")) + trials + "</tr>")
                prev = cells
    singles = [s for s in strategies if s not in variants]
    note = (f'<p class="note">Every other strategy ({esc(", ".join(singles))}) trains one loss and sampler for all '
            "epochs.</p>") if singles else ""
    return ("<h3>Stages</h3>" + "".join(f'<p class="note">{w}</p>' for w in warnings)
            + table("stages", head, rows, sortable=False)
            + '<p class="caption">From each trial\'s <code>metrics.json</code> (<code>stages</code>); bold: what '
              "changes from the stage before.</p>" + note)


def _flag(v, *, strong: bool = False) -> str:
    if v is None:
        return text_cell("")
    return text_cell("yes" if v else "no", html="<b>yes</b>" if v and strong else None)


def posthoc_table(summary: list[dict]) -> str:
    """One row per backbone x strategy x fitted value of a post-hoc step: its settings, mean, range, per trial."""
    if not summary:
        return ""
    rows, warnings = [], []
    for p in summary:
        settings = "; ".join(f"{k}: {' | '.join(TR.spell(x) for x in vals)}" for k, vals in p["settings"].items()
                             if k != "name")
        split = [k for k, vals in p["settings"].items() if len(vals) > 1]
        if split or p["missing"]:
            warnings.append(f"<strong>Warning</strong>: {esc(p['backbone'])} / {esc(p['strategy'])}: "
                            + (f"the trials differ in {esc(', '.join(split))} (shown as a | b)" if split else "")
                            + ("; " if split and p["missing"] else "")
                            + (f"{len(p['missing'])} trial(s) record no post-hoc step (e.g. {esc(p['missing'][0])})"
                               if p["missing"] else "") + ".")
        name = " | ".join(TR.spell(x) for x in p["settings"].get("name", []))
        for key, f in (p["fitted"] or {"–": None}).items():
            per = "" if f is None else ", ".join(f"f{fo} s{se}: {v:g}" for fo, se, v in f["values"])
            rows.append("<tr>" + text_cell(p["backbone"]) + text_cell(p["strategy"]) + text_cell(name)
                        + text_cell(settings, cls="text wrap") + text_cell(key)
                        + num_cell(None if f is None else f["mean"])
                        + text_cell("" if f is None else f"{f['min']:g} – {f['max']:g}")
                        + text_cell(per, cls="text wrap") + int_cell(p["trials"]) + "</tr>")
    head = [th("backbone"), th("strategy"), th("step"), th("settings"), th("fitted"),
            th("mean", title="mean over the trials (folds × seeds)"), th("range", title="lowest – highest trial"),
            th("per trial", title="fold f, seed s: the value fitted on that trial's validation part"),
            th("trials", numeric=True)]
    varying = sorted({k for p in summary for k in p["varying"]})
    note = (f" Per-trial lists ({esc(', '.join(varying))}) are in each trial's <code>metrics.json</code>."
            if varying else "")
    return ("<h3>Post-hoc steps</h3>" + "".join(f'<p class="note">{w}</p>' for w in warnings)
            + table("posthoc", head, rows, short=True, sortable=False)
            + '<p class="caption">Fitted on each trial\'s validation part after its last epoch, before the decision '
              f"rule (<code>metrics.json</code>: <code>posthoc</code>).{note}</p>")
