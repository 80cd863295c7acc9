"""Table sections of ``leaderboard.html``: the leaderboard, the trials, the dataset, the provenance.

Each function takes a :class:`reports.leaderboard.Report` and returns an HTML fragment (every
string escaped), or '' when the run has nothing to show.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from reports import replicates as R
from reports import runfolder as RF
from reports.html_common import esc, fmt, num, section, slug
from reports.html_tables import (best_flags, controls, int_cell, kv_grid, num_cell, table, text_cell, th)

#: Leaderboard columns: (leaderboard.csv column, header, explanation).
BOARD_COLUMNS = [
    ("macro_auc", "macro AUC", "ROC-AUC per label, averaged over the labels defined in each fold"),
    ("micro_auc", "micro AUC", "ROC-AUC of all (image, label) pairs pooled"),
    ("macro_ap", "mAP", "average precision per label, averaged (the CXR-LT ranking metric)"),
    ("macro_f1", "macro F1", "F1 per label at thresholds tuned on each trial's validation part"),
    ("micro_f1", "micro F1", "F1 of all pairs pooled, tuned thresholds"),
    ("macro_f1_fixed", "macro F1 @0.5", "F1 per label at the fixed threshold 0.5"),
    ("macro_sensitivity", "sensitivity", "macro sensitivity at the tuned thresholds"),
    ("macro_specificity", "specificity", "macro specificity at the tuned thresholds"),
    ("macro_ece", "ECE ↓", "expected calibration error per label (15 equal-mass bins), averaged; lower is better"),
    ("macro_brier", "Brier ↓", "Brier score per label, averaged; lower is better"),
]
#: Columns where the lowest value is the best.
LOWER_IS_BETTER = {"macro_ece", "macro_brier"}


def trials_anchor(backbone, strategy) -> str:
    return "trials-" + slug(backbone, strategy)


def leaderboard_table(report) -> str:
    b = report.leaderboard
    if b.empty:
        return ""
    cols = [c for c in BOARD_COLUMNS if c[0] in b.columns]
    head = [th("#", numeric=True, title="rank by macro AUC"), th("backbone"), th("strategy"),
            th("trials", numeric=True, title="folds x seeds that finished; the link opens their details")]
    head += [th(name, numeric=True, title=expl, sort="descending" if c == "macro_auc" else None)
             for c, name, expl in cols]
    best = {c: best_flags(b[c].tolist(), higher=c not in LOWER_IS_BETTER) for c, _, _ in cols}
    rows = []
    for i, r in enumerate(b.to_dict("records")):
        n = int(num(r.get("n_trials")) or 0)
        cells = [int_cell(i + 1), text_cell(r["backbone"]), text_cell(r["strategy"]),
                 f'<td data-v="{n}"><a class="trials-link" href="#{trials_anchor(r["backbone"], r["strategy"])}" '
                 f'title="list the trials">{n} ↓</a></td>']
        for c, _, _ in cols:
            ci = (r.get(f"{c}_ci_low"), r.get(f"{c}_ci_high")) if f"{c}_ci_low" in r else None
            cells.append(num_cell(r.get(c), sd=r.get(f"{c}_std"), ci=ci, best=best[c][i]))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    selects = [(1, "backbones", list(dict.fromkeys(b["backbone"].astype(str)))),
               (2, "strategies", list(dict.fromkeys(b["strategy"].astype(str))))]
    lead = ("Mean over held-out folds of each fold's mean over seeds (seeds share a fold's test images) ± sample "
            "sd over the trials (folds × seeds) of each backbone × strategy; the small line under a value is its "
            "95% confidence interval (patients resampled within each held-out fold, the same draws for every "
            f"trial of a fold, averaged as above; {R.describe_intervals({c: n for c, n, _ in cols})}). "
            "F1 uses per-label thresholds tuned on each trial's validation part; “@0.5” is the fixed threshold. "
            "ECE and Brier (↓: lower is better) measure calibration, whether a probability can be read as one "
            "(see “Calibration”). The best value of each column is highlighted. Click a header to sort (again to "
            "reverse); type or pick to filter.")
    few = few_positives(report.docs)
    return section("leaderboard", "Leaderboard",
                   controls("board", placeholder="filter rows, e.g. resnet focal", selects=selects)
                   + table("board", head, rows) + (f'<p class="note few-positives">{few}</p>' if few else ""),
                   lead=lead)


#: Positives per label and held-out fold below which the leaderboard says its mAP and ECE intervals are too narrow
#: (the known-answer coverage simulation at the demo's size, 2-5 positives, README "How far the verdicts can be
#: trusted"; at NIH's full size, 40 or more, they cover).
FEW_POSITIVES = 10


def few_positives(docs: list[dict]) -> str:
    """A warning when some label has fewer than :data:`FEW_POSITIVES` positives in some held-out fold of the trials'
    ``metrics.json`` ``docs``, naming the fewest ('' otherwise, and for trials that record no positives)."""
    counts = [(int(r["positives"]), str(r["label"]), int(d["fold"])) for d in docs for r in d.get("per_label") or []
              if isinstance(r.get("positives"), (int, float))]
    low = sorted(c for c in counts if c[0] < FEW_POSITIVES)
    if not low:
        return ""
    n, label, fold = low[0]
    labels = sorted({c[1] for c in low})
    return (f"<strong>Few positives</strong>: {len(labels)} label{'s' if len(labels) != 1 else ''} "
            f"({esc(', '.join(labels))}) have fewer than {FEW_POSITIVES} positive images in a held-out fold (fewest: "
            f"{esc(label)}, {n} in fold {fold}). At such sizes the simulation with known answers found the mAP and ECE "
            "intervals missing the true value too often, because both estimates lean high: mAP too optimistic, ECE "
            "too pessimistic about calibration (README, “How far the verdicts can be trusted”). Macro AUC's "
            "interval covers there; a fold without positives leaves the label out of that fold's macro averages.")


def trial_details(report) -> str:
    t, b = report.trials, report.leaderboard
    if t.empty:
        return ""
    blocks = []
    keys = list(zip(b["backbone"], b["strategy"])) if not b.empty else []
    keys += [k for k in dict.fromkeys(zip(t["backbone"], t["strategy"])) if k not in keys]
    for backbone, strategy in keys:
        g = t[(t["backbone"] == backbone) & (t["strategy"] == strategy)].sort_values(["seed", "fold"])
        rows = []
        for r in g.to_dict("records"):
            href = f"{RF.TRIALS}/{quote(str(r['id']), safe='')}/{RF.METRICS_JSON}"
            rows.append("<tr>" + text_cell(r["id"]) + int_cell(r["fold"]) + int_cell(r["seed"])
                        + "".join(num_cell(r.get(m)) for m in ("macro_auc", "micro_auc", "macro_ap", "macro_f1",
                                                               "macro_f1_fixed"))
                        + num_cell(r.get("train_seconds"), digits=1)
                        + text_cell(r.get("excluded") or "", cls="text wrap")
                        + f'<td class="text"><a href="{esc(href)}">{RF.METRICS_JSON}</a></td></tr>')
        head = [th("trial"), th("fold", numeric=True), th("seed", numeric=True), th("macro AUC", numeric=True),
                th("micro AUC", numeric=True), th("mAP", numeric=True), th("macro F1", numeric=True),
                th("macro F1 @0.5", numeric=True), th("train s", numeric=True), th("labels left out"),
                '<th class="text" data-nosort>files</th>']
        anchor = trials_anchor(backbone, strategy)
        blocks.append(f'<details class="trials" id="{anchor}"><summary>{esc(backbone)} / {esc(strategy)} '
                      f"({len(g)} trial{'s' if len(g) != 1 else ''})</summary>"
                      + table(anchor + "-table", head, rows, short=True) + "</details>")
    lead = (f"One block per leaderboard row; each trial's outputs are in <code>{RF.TRIALS}/&lt;id&gt;/</code> "
            f"({RF.METRICS_JSON}, {RF.PREDICTIONS_NPZ}, {RF.CONFIG_JSON}, {RF.LOCALISATION_CSV}, {RF.GALLERY}/). "
            "Links are relative to this page, so they work when the run folder is copied whole.")
    return section("trials", "Trials", "".join(blocks), lead=lead)


def dataset_summary(report) -> str:
    from reports.html_figures import prevalence

    d, sp = report.dataset, report.split
    if not d:
        return ""
    labels = d.get("labels") or {}
    prev, irl, unk = d.get("prevalence") or {}, d.get("irlbl") or {}, d.get("unknown") or {}
    boxes = (d.get("boxes") or {}).get("per_label") or {}
    q = sp.get("quality") or {}
    fold_pos, dev = q.get("fold_positives") or {}, q.get("per_label_deviation") or {}
    dropped = d.get("dropped") or {}
    n_dropped = sum(v for v in dropped.values() if isinstance(v, (int, float))) if isinstance(dropped, dict) else 0
    cards = [("images", fmt(d.get("images"))), ("patients", fmt(d.get("patients"))),
             ("labels", fmt(len(labels) or len(report.label_names))), ("images dropped", fmt(n_dropped)),
             ("no finding", fmt(d.get("no_finding"))), ("MeanIR", fmt(d.get("mean_ir"), 2)),
             ("MaxIR", fmt(d.get("max_ir"), 2)), ("SCUMBLE", fmt(d.get("scumble"))),
             ("cardinality", fmt(d.get("cardinality"))), ("density", fmt(d.get("density")))]
    if isinstance(dropped, dict) and dropped:
        why = "; ".join(f"{esc(k)}: {esc(v)}" for k, v in dropped.items())
        cards_note = f'<p class="note">Dropped images by reason: {why}.</p>'
    else:
        cards_note = ""
    names = list(labels) or list(report.label_names)
    show_unknown = any(num(v) for v in unk.values())
    rows = []
    for n in names:
        fp = fold_pos.get(n)
        rows.append("<tr>" + text_cell(n) + int_cell(labels.get(n)) + num_cell(prev.get(n), digits=4)
                    + num_cell(irl.get(n) if isinstance(irl, dict) else None, digits=2)
                    + (int_cell(unk.get(n)) if show_unknown else "") + (int_cell(boxes.get(n)) if boxes else "")
                    + text_cell(" / ".join(map(str, fp)) if fp else "") + num_cell(dev.get(n), digits=2) + "</tr>")
    head = [th("label"), th("positives", numeric=True), th("prevalence", numeric=True),
            th("IRLbl", numeric=True, title="max_j n_j / n_l (Charte et al. 2015)")]
    head += [th("unknown", numeric=True, title="uncertain or missing (NaN) labels")] if show_unknown else []
    head += [th("boxes", numeric=True)] if boxes else []
    head += [th("positives per fold"),
             th("fold deviation", numeric=True, title="largest relative deviation of a fold from its ideal count")]
    pairs = d.get("pairs") or []
    pair_rows = ["<tr>" + text_cell(" + ".join(map(str, p.get("labels", [])))) + int_cell(p.get("count"))
                 + num_cell(p.get("expected"), digits=2) + num_cell(p.get("lift"), digits=2) + "</tr>"
                 for p in pairs[:15]]
    pair_html = ("<h3>Most frequent label pairs</h3>" + table(
        "pairs", [th("pair"), th("images", numeric=True), th("expected if independent", numeric=True),
                  th("lift", numeric=True)], pair_rows, short=True)) if pair_rows else ""
    sizes = q.get("fold_sizes")
    split = (f'<h3>Split</h3><p class="note">{esc(sp.get("n_folds", "?"))} patient-disjoint folds '
             f"(iterative stratification), fold sizes {esc(', '.join(map(str, sizes)) if sizes else '?')} "
             f"(spread {fmt(q.get('size_spread'), 2)}); largest per-label deviation from the ideal count "
             f"{fmt(q.get('max_label_deviation'), 2)}; patients shared between folds: "
             f"<b>{esc(q.get('shared_patients', '?'))}</b>; validation fraction {fmt(sp.get('val_fraction'), 2)}; "
             f"labels too sparse to stratify: {esc(', '.join(map(str, q.get('sparse_labels') or [])) or 'none')}; "
             f"split hash <code>{esc(str(sp.get('hash', ''))[:16])}</code>.</p>")
    lead = ("Counts over the images the run used. IRLbl, MeanIR, MaxIR and SCUMBLE follow Charte et al. (2015); "
            "high SCUMBLE means rare and frequent labels co-occur, which makes resampling hard.")
    inner = (kv_grid(cards) + cards_note + '<div class="grid32"><div>' + table("labels", head, rows)
             + "</div><div>" + prevalence(report) + "</div></div>" + pair_html + split)
    return section("dataset", "Dataset, split and imbalance", inner, lead=lead)


def provenance(report) -> str:
    r = report.run
    git = r.get("git") or {}
    facts = [("command", r.get("command")), ("commit", git.get("commit")),
             ("uncommitted changes", git.get("dirty")), ("split hash", r.get("split_hash") or report.split.get("hash")),
             ("image cache key", r.get("cache_key")), ("host", r.get("host")), ("storage", r.get("storage")),
             ("started", r.get("started")), ("finished", r.get("finished")), ("seconds", r.get("seconds")),
             ("status", r.get("status")), ("trials", r.get("trials")),
             ("grid digest", report.grid.get("digest")), ("grid file", report.grid.get("source"))]
    rows = [f"<tr><th class=\"text\">{esc(k)}</th><td class=\"text wrap\"><code>{esc(v)}</code></td></tr>"
            for k, v in facts if v not in (None, "")]
    errors = r.get("errors") or {}
    if errors:
        rows.append('<tr><th class="text">errors</th><td class="text wrap">'
                    + "<br>".join(f"{esc(k)}: {esc(v)}" for k, v in errors.items()) + "</td></tr>")
    versions = r.get("versions") or {}
    vrows = "".join(f'<tr><td class="text">{esc(k)}</td><td class="text">{esc(v)}</td></tr>'
                    for k, v in versions.items())
    grid_json = esc(json.dumps(report.grid, indent=1, default=str))
    inner = ('<div class="grid2"><div><table class="kvtable"><tbody>' + "".join(rows) + "</tbody></table></div>"
             '<div><table><thead><tr><th class="text">package</th><th class="text">version</th></tr></thead>'
             f"<tbody>{vrows}</tbody></table></div></div>"
             f"<details><summary>resolved grid ({RF.GRID_JSON})</summary><pre>{grid_json}</pre></details>")
    return section("provenance", "Provenance", inner,
                   lead="Enough to rerun this exact run: the command, the code's commit, the split's hash and "
                        f"the library versions (from {RF.RUN_JSON}), and the fully resolved grid.")
