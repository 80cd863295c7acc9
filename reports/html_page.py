"""The frame of ``leaderboard.html``: head (CSP, styles, plotly.js once), header, navigation, footer."""

from __future__ import annotations

from reports.html_common import esc, fmt, json_script, plot_template
from reports.html_assets import CSS, SCRIPT

#: No external resource may be fetched: nothing but inline scripts and styles and data: images.
#: plotly.js needs inline styles; the SVG traces used here need no 'unsafe-eval' (WebGL traces would).
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")


def names(items) -> list[str]:
    """Names from a grid list whose entries are strings or mappings with a ``name``."""
    out = []
    for it in items or []:
        out.append(str(it.get("name", it)) if isinstance(it, dict) else str(it))
    return out


def page(report, body: str, nav: list[tuple[str, str]]) -> str:
    """The whole document around ``body`` (already escaped HTML)."""
    from plotly.offline import get_plotlyjs

    title = f"Leaderboard: {report.grid.get('name') or report.run_dir.name}"
    links = "".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="referrer" content="no-referrer">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style>\n<script>{get_plotlyjs()}</script>\n</head><body>"
            f"{header(report)}<nav class=\"toc\">{links}</nav><main>{body}</main>"
            f"<footer>Built from the files of {esc(report.run_dir.name)} by <code>bench report</code>; "
            "this page works offline and loads nothing from the network.</footer>"
            f"{json_script(plot_template(), 'plot-template')}<script>{SCRIPT}</script></body></html>")


def header(report) -> str:
    g, r, d = report.grid, report.run, report.dataset
    ds = g.get("dataset", {}) or {}
    commit = (r.get("git") or {}).get("commit") or "unknown"
    dirty = " (uncommitted changes)" if (r.get("git") or {}).get("dirty") else ""
    t = report.trials
    backbones, strategies = t["backbone"].nunique(), t["strategy"].nunique()
    folds = (g.get("splits") or {}).get("folds", t["fold"].nunique())
    seeds = g.get("seeds") or sorted(t["seed"].unique().tolist())
    chips = [("dataset", ds.get("kind") or d.get("kind")), ("images", d.get("images")),
             ("labels", len(report.label_names)), ("trials", len(t)),
             ("grid", f"{backbones} backbones × {strategies} strategies × {folds} folds × {len(seeds)} seeds"),
             ("image size", f"{ds.get('image_size', d.get('image_size', '?'))} px"),
             ("epochs", (g.get("train") or {}).get("epochs"))]
    b = report.leaderboard
    if not b.empty and b["macro_auc"].notna().any():
        top = b.loc[b["macro_auc"].idxmax()]
        chips.append(("best macro AUC", f"{top['backbone']} / {top['strategy']}: {fmt(top['macro_auc'])}"))
    chip_html = "".join(f'<span class="chip">{esc(k)} <b>{esc(v)}</b></span>' for k, v in chips if v is not None)
    when = r.get("finished") or r.get("started") or ""
    return (f'<header class="top"><h1>{esc(g.get("name") or report.run_dir.name)}: class-imbalance leaderboard</h1>'
            f"<p>Multi-label chest X-ray classification; every number below is computed from the run folder's files. "
            f"Run {esc(r.get('status', ''))} {esc(when)}; commit <code>{esc(commit[:10])}</code>{esc(dirty)}; "
            f"split <code>{esc(str(r.get('split_hash') or report.split.get('hash') or '')[:12])}</code>.</p>"
            f'<div class="chips">{chip_html}</div></header>')
