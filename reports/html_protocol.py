"""The protocols' sections of ``leaderboard.html`` (``reports/protocols.py`` computes them): ``official``, the
per-label AUC on the official test list beside the published figures and what differs from their setting;
``external``, a leaderboard per test set, the internal-vs-external drop with its paired interval, and the
localisation on test sets with boxes."""

from __future__ import annotations

from reports.html_common import esc, section, slug
from reports.html_tables import best_flags, int_cell, num_cell, table, text_cell, th

EXTERNAL_COLUMNS = [("macro_auc", "macro AUC"), ("micro_auc", "micro AUC"), ("macro_ap", "mAP"),
                    ("macro_f1", "macro F1"), ("macro_ece", "ECE ↓")]


def official(report) -> str:
    df = report.protocol.official
    if df is None or df.empty:
        return ""
    from reports.html_figures import REFERENCE_AUC

    refs = [r for r in REFERENCE_AUC if r in df.columns]
    models = list(dict.fromkeys(zip(df["backbone"].astype(str), df["strategy"].astype(str))))
    head = [th("label")] + [th(f"{b} / {s}", numeric=True, title="AUC on the official test list, mean ± sd over "
                                                                     "seeds") for b, s in models]
    head += [th(f"published: {r}", numeric=True) for r in refs]
    rows = []
    for name, g in df.groupby("label", sort=False):
        by = {(str(r["backbone"]), str(r["strategy"])): r for r in g.to_dict("records")}
        cells = [text_cell(name)] + [num_cell(by[m]["auc"], sd=by[m]["auc_std"]) if m in by else "<td></td>"
                                     for m in models]
        first = g.iloc[0]
        cells += [num_cell(first[r]) for r in refs]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f"<li>{esc(c)}</li>" for c in report.protocol.caveats)
    lead = ("Each label's ROC-AUC on the dataset's official test list (trained on its official training list, "
            "thresholds tuned on a patient-disjoint part of it), mean ± sd over seeds, beside the published "
            "per-label AUCs (REFERENCES.md). <b>The settings differ</b>, so the published columns orient, they "
            "are not a like-for-like comparison:")
    return section("official", "Official split vs published", f'<ul class="caveats">{notes}</ul>'
                   + table("official-table", head, rows), lead=lead)


def external(report) -> str:
    ext = report.protocol.external
    if not ext:
        return ""
    parts = [_drop(report)]
    for name, e in ext.items():
        parts.append(_board(name, e))
        if not e.localisation.empty:
            from reports.html_localisation import _table

            parts.append(f"<h4>Localisation on {esc(name)}</h4>" + _table(e.localisation, f"loc-{slug(name)}")
                         + '<p class="caption">CAM binarisation thresholds tuned on the training dataset\'s '
                           "validation images, never on the test set.</p>")
    lead = ("Every trained model (each backbone × strategy × fold × seed) scored on each external test set with the "
            "thresholds it tuned on its own validation part; labels are matched by name after the test set's "
            "aliases, and a training label the test set lacks is unknown there (NaN), left out of its metrics.")
    return section("external", "External test sets", "".join(parts), lead=lead)


def _drop(report) -> str:
    d = report.protocol.drop
    if d is None or d.empty:
        return ""
    head = [th("test set"), th("backbone"), th("strategy"), th("models", numeric=True),
            th("internal macro AUC", numeric=True), th("external macro AUC", numeric=True),
            th("drop", numeric=True, title="internal - external, 95% interval paired over the same models",
               sort="ascending"),
            th("per-model drop", numeric=True, title="mean ± sd of each model's own drop")]
    rows = []
    for r in d.to_dict("records"):
        rows.append("<tr>" + "".join([
            text_cell(r["test_set"]), text_cell(r["backbone"]), text_cell(r["strategy"]), int_cell(r["n_models"]),
            num_cell(r["internal"]), num_cell(r["external"]),
            num_cell(r["drop"], ci=(r["drop_ci_low"], r["drop_ci_high"])),
            num_cell(r["drop_per_model_mean"], sd=r["drop_per_model_std"])]) + "</tr>")
    return ("<h3>Internal vs external: the drop in macro AUC</h3>"
            '<p class="caption">Internal: the models\' own held-out test part; external: the test set. Both average '
            "the same models as the leaderboard does (mean over folds of seed means); the interval under the drop "
            "is the 95% percentile interval of the difference of their patient-bootstrap replicates, paired over "
            "those models. A positive drop is what the models lose on the other dataset.</p>"
            + table("external-drop", head, rows))


def _board(name: str, e) -> str:
    b = e.leaderboard
    if b.empty:
        return ""
    cols = [(c, n) for c, n in EXTERNAL_COLUMNS if c in b.columns]
    head = [th("backbone"), th("strategy"), th("models", numeric=True)]
    head += [th(n, numeric=True, sort="descending" if c == "macro_auc" else None) for c, n in cols]
    best = {c: best_flags(b[c].tolist(), higher=c != "macro_ece") for c, _ in cols}
    rows = []
    for i, r in enumerate(b.to_dict("records")):
        cells = [text_cell(r["backbone"]), text_cell(r["strategy"]), int_cell(r.get("n_trials"))]
        for c, _ in cols:
            ci = (r.get(f"{c}_ci_low"), r.get(f"{c}_ci_high")) if f"{c}_ci_low" in r else None
            cells.append(num_cell(r.get(c), sd=r.get(f"{c}_std"), ci=ci, best=best[c][i]))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    desc = e.describe or {}
    facts = [f"{desc['images']:,} images" if desc.get("images") else "",
             f"{desc['patients']:,} patients" if desc.get("patients") else "",
             f"kind {desc['kind']}" if desc.get("kind") else ""]
    missing = desc.get("missing_labels") or []
    if missing:
        facts.append("lacks " + ", ".join(missing) + " (NaN there)")
    return (f"<h3>Leaderboard on {esc(name)}</h3>"
            + (f'<p class="caption">{esc("; ".join(f for f in facts if f))}</p>' if any(facts) else "")
            + table(f"external-{slug(name)}", head, rows))
