"""The significance section of ``leaderboard.html``: paired tests against the baseline and a
critical-difference diagram (Friedman + Nemenyi, Demšar 2006) drawn as inline SVG.

>>> svg = cd_svg({"bce": 2.5, "focal": 1.5, "asl": 2.0}, cd=1.2, cliques=[["focal", "asl", "bce"]])
>>> svg.count("<text") >= 6 and 'class="cd-bar"' in svg and 'class="clique"' in svg
True
"""

from __future__ import annotations

import math

from reports import compare
from reports.html_common import esc, fmt, fmt_p, num, section
from reports.html_tables import controls, int_cell, num_cell, table, text_cell, th

METRIC_NAMES = {"macro_auc": "macro AUC", "micro_auc": "micro AUC", "macro_f1": "macro F1", "macro_ap": "mAP"}


def significance(report) -> str:
    s, f = report.significance, report.friedman or {}
    parts = []
    baseline = (report.grid.get("report") or {}).get("baseline", "bce")
    if s is not None and not s.empty:
        baseline = s["baseline"].iloc[0]
        rows = []
        for r in s.to_dict("records"):
            diff, verdict = num(r.get("mean_diff")), str(r.get("verdict") or "no evidence")
            cls = {"better": "sig-better", "worse": "sig-worse"}.get(verdict, "ns")
            metric = METRIC_NAMES.get(str(r["metric"]), str(r["metric"]))
            ci = (r.get("ci_low"), r.get("ci_high"))
            rows.append("<tr>" + text_cell(r["backbone"]) + text_cell(r["strategy"]) + text_cell(metric)
                        + int_cell(r.get("n_folds"))
                        + num_cell(diff, shown="–" if diff is None else f"{diff:+.3f}", ci=ci,
                                   cls=cls if verdict != "no evidence" else "")
                        + num_cell(r.get("p_boot_holm"), shown=fmt_p(r.get("p_boot_holm")))
                        + num_cell(r.get("p_t_holm"), shown=fmt_p(r.get("p_t_holm")))
                        + text_cell(verdict, html=f'<span class="{cls}">{esc(verdict)}</span>') + "</tr>")
        head = [th("backbone"), th("strategy"), th("metric"),
                th("folds", numeric=True, title="held-out folds both ran; seeds averaged within each"),
                th("difference", numeric=True, title="strategy minus baseline on the leaderboard value, 95% "
                                                     "interval of the paired patient bootstrap"),
                th("p bootstrap (Holm)", numeric=True, title="paired patient bootstrap, Holm within backbone x metric"),
                th("p corrected t (Holm)", numeric=True, title="Nadeau-Bengio corrected resampled t-test over folds, "
                                                               "Holm within backbone x metric"),
                th("verdict")]
        selects = [(0, "backbones", list(dict.fromkeys(s["backbone"].astype(str)))),
                   (2, "metrics", list(dict.fromkeys(METRIC_NAMES.get(str(m), str(m)) for m in s["metric"])))]
        folds = int(s["n_folds"].max()) if s["n_folds"].notna().any() else 0
        few = (f" With {folds} fold(s) the corrected t-test has {max(folds - 1, 0)} degree(s) of freedom and "
               "little power: “no evidence” is not “no difference”." if folds < 10 else "")
        parts.append(f"<h3>Each strategy against <code>{esc(baseline)}</code></h3>"
                     f'<p class="note"><b>Unit:</b> {esc(compare.UNIT)}.</p>'
                     f'<p class="note"><b>Tests:</b> {esc(compare.TEST_BOOT)}; and {esc(compare.TEST_T)}.</p>'
                     f'<p class="note"><b>Assumptions:</b> {esc(compare.ASSUMPTIONS)}. “better” / “worse”: both '
                     f"Holm-adjusted p &lt; 0.05 with the same sign.{esc(few)}</p>"
                     + controls("sig", placeholder="filter, e.g. focal auc", selects=selects)
                     + table("sig", head, rows, short=True))
    parts.append(cd_diagrams(f))
    return section("significance", "Is the difference real?", "".join(parts),
                   lead="Differences between strategies are often within the noise of a few folds; these tests say "
                        "which are not.")


def cd_diagrams(f: dict) -> str:
    """One critical-difference diagram per backbone (blocks: folds, seeds averaged)."""
    by = f.get("by_backbone") or {}
    if not by:
        reason = f.get("reason") or "no backbone with two strategies on common folds"
        return f'<h3>Critical-difference diagram</h3><p class="note">Friedman test not run: {esc(reason)}.</p>'
    return "".join(cd_diagram(res, backbone=b, metric=f.get("metric", "macro_auc")) for b, res in by.items())


def cd_diagram(f: dict, *, backbone: str = "", metric: str = "macro_auc") -> str:
    title = f"<h3>Critical-difference diagram{': ' + esc(backbone) if backbone else ''}</h3>"
    ranks = {str(k): num(v) for k, v in (f.get("average_ranks") or {}).items()}
    ranks = {k: v for k, v in ranks.items() if v is not None}
    if len(ranks) < 2:
        reason = f.get("reason") or "fewer than two strategies with complete blocks"
        return f'{title}<p class="note">Friedman test not run: {esc(reason)}.</p>'
    cd, p = num(f.get("cd")), num(f.get("p"))
    cf = f.get("corrected_f") or {}
    p_f = num(cf.get("p"))
    blocks = f.get("n_blocks", f.get("blocks"))
    name = METRIC_NAMES.get(str(metric), str(metric))
    df = cf.get("df") or ("", "")
    omnibus = (f"Do the strategies differ at all? Repeated-measures F over the folds with Nadeau and Bengio's "
               f"allowance for overlapping training sets (mean square x {fmt(num(cf.get('inflation')), 2)}): "
               f"F({esc(df[0])}, {esc(df[1])}) = {fmt(num(cf.get('F')), 2)}, p = {fmt_p(p_f)}")
    if not f.get("enough_blocks", True):
        verdict = (f"with {esc(blocks)} independent blocks there are too few to conclude (at least "
                   f"{compare.MIN_BLOCKS} are needed)")
    elif p_f is not None and p_f < 0.05:
        verdict = "the strategies do not all perform equally (p &lt; 0.05); which ones differ is the paired tests' call"
    else:
        verdict = "no evidence that any strategy differs from the others"
    note = (f'<p class="note">{omnibus}: {verdict}. The diagram shows the average rank of each strategy on '
            f"{esc(name)} over {esc(blocks)} held-out folds (seeds averaged within each; rank 1 = best), with "
            f"Nemenyi's critical difference CD = {fmt(cd, 2)} (black bar; red bars join strategies whose average "
            f"ranks differ by less than CD) and Friedman's rank test, permutation p = {fmt_p(p)}. Read it as "
            "descriptive: the rank tests assume independent folds, and folds share training data, so a ranking "
            "shared by every fold may be this dataset's (the README's simulation measures how often they "
            "reject a true null); the F test above and the corrected t-tests allow for that.</p>")
    return title + note + cd_svg(ranks, cd=cd, cliques=f.get("cliques") or [])


def cd_svg(ranks: dict[str, float], *, cd: float | None, cliques: list[list[str]], width: int = 880) -> str:
    """A Demšar-style critical-difference diagram: rank axis, one elbow line per method, CD bar, cliques."""
    items = sorted(ranks.items(), key=lambda kv: (kv[1], kv[0]))
    k = len(items)
    lo, hi = 1.0, float(max(k, 2, math.ceil(max(ranks.values()))))
    margin = 240
    left, right = margin, width - margin

    def x(r: float) -> float:
        return left + (min(max(r, lo), hi) - lo) / (hi - lo) * (right - left)

    out = []
    cd_y, axis_y = 26, 66
    if cd:
        end = min(1 + cd, hi)
        out.append(f'<g class="cd-bar"><line x1="{x(1):.1f}" y1="{cd_y}" x2="{x(end):.1f}" y2="{cd_y}" '
                   f'stroke="#111" stroke-width="2.5"/>'
                   f'<line x1="{x(1):.1f}" y1="{cd_y - 5}" x2="{x(1):.1f}" y2="{cd_y + 5}" stroke="#111"/>'
                   f'<line x1="{x(end):.1f}" y1="{cd_y - 5}" x2="{x(end):.1f}" y2="{cd_y + 5}" stroke="#111"/>'
                   f'<text x="{(x(1) + x(end)) / 2:.1f}" y="{cd_y - 9}" text-anchor="middle">CD = {cd:.2f}'
                   f"{' (wider than the axis)' if 1 + cd > hi else ''}</text></g>")
    out.append(f'<line x1="{x(lo):.1f}" y1="{axis_y}" x2="{x(hi):.1f}" y2="{axis_y}" stroke="#333" '
               'stroke-width="1.5"/>')
    for i in range(int(lo), int(hi) + 1):
        out.append(f'<line x1="{x(i):.1f}" y1="{axis_y - 7}" x2="{x(i):.1f}" y2="{axis_y}" stroke="#333"/>'
                   f'<text x="{x(i):.1f}" y="{axis_y - 11}" text-anchor="middle">{i}</text>')
        if i < hi:
            out.append(f'<line x1="{x(i + 0.5):.1f}" y1="{axis_y - 4}" x2="{x(i + 0.5):.1f}" y2="{axis_y}" '
                       'stroke="#333"/>')
    out.append(f'<text x="{left - 12}" y="{axis_y + 4}" text-anchor="end" fill="#5f6b7a">average rank</text>')
    real = [sorted((ranks[m] for m in c if m in ranks)) for c in cliques]
    real = sorted((c for c in real if len(c) > 1), key=lambda c: (c[0], c[-1]))
    for j, c in enumerate(real):
        y = axis_y + 14 + 9 * j
        out.append(f'<line class="clique" x1="{x(c[0]) - 4:.1f}" y1="{y}" x2="{x(c[-1]) + 4:.1f}" y2="{y}" '
                   'stroke="#c0392b" stroke-width="4" stroke-linecap="round"/>')
    base = axis_y + 14 + 9 * len(real) + 16
    half = math.ceil(k / 2)
    sides = [(items[:half], left - 14, "end"), (list(reversed(items[half:])), right + 14, "start")]
    for side, tx, anchor in sides:
        for i, (name, r) in enumerate(side):
            y = base + 22 * i
            label = name if len(name) <= 28 else name[:27] + "…"
            out.append(f'<g class="method"><title>{esc(name)}: average rank {r:.3f}</title>'
                       f'<path d="M{x(r):.1f},{axis_y} V{y} H{tx + (6 if anchor == "end" else -6)}" fill="none" '
                       f'stroke="#3b4552" stroke-width="1.2"/>'
                       f'<circle cx="{x(r):.1f}" cy="{axis_y}" r="3" fill="#1b5e9e"/>'
                       f'<text x="{tx}" y="{y + 4}" text-anchor="{anchor}">{esc(label)} '
                       f'<tspan fill="#5f6b7a">{r:.2f}</tspan></text></g>')
    height = base + 22 * max(half, k - half) + 6
    return (f'<svg class="cd" viewBox="0 0 {width} {height}" role="img" aria-label="critical-difference diagram">'
            + "".join(out) + "</svg>")
