"""The frame of ``leaderboard.html``: head (CSP, styles, plotly.js once), header, navigation, footer."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from reports.html_common import esc, fmt, json_script, plot_template
from reports.html_assets import CSS, SCRIPT

log = logging.getLogger(__name__)
#: plotly.js's official "cartesian" partial bundle (npm ``plotly.js-cartesian-dist-min``, MIT licence in
#: ``plotly-cartesian.LICENSE`` beside it): every trace type the page draws, at a third of the full bundle's
#: size, which is most of what a browser parses before the page is shown.
BUNDLE = Path(__file__).with_name("assets") / "plotly-cartesian.min.js"
BUNDLE_TRACES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour",
                           "image", "pie", "scatter", "scatterternary", "violin"})

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


def bundle_version(text: str) -> str | None:
    """The version in a plotly.js bundle's header comment.

    >>> bundle_version("/**\\n* plotly.js (cartesian - minified) v4.1.1\\n* Copyright 2012-2026, Plotly, Inc.")
    '4.1.1'
    """
    m = re.search(r"\* plotly\.js(?: \([^)]*\))? v(\d[\w.\-]*)", text[:400])
    return m.group(1) if m else None


def plotly_js(traces: set[str]) -> tuple[str, str]:
    """(the plotly.js source the page inlines, what it is). The cartesian bundle when it is the plotly.js version
    the installed plotly.py writes figures for and holds every trace type in ``traces``; plotly.py's own full
    bundle otherwise, with a warning (a page 3 MB larger and slower to open, drawn the same)."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    text = BUNDLE.read_text(encoding="utf-8")
    version, wanted, missing = bundle_version(text), get_plotlyjs_version(), sorted(set(traces) - BUNDLE_TRACES)
    if version == wanted and not missing:
        return text, f"plotly.js {version} (cartesian bundle)"
    why = (f"trace types {missing} are not in the cartesian bundle" if missing else
           f"plotly.py writes figures for plotly.js {wanted}, the shipped cartesian bundle is {version}")
    log.warning("leaderboard.html inlines plotly.py's full plotly.js bundle: %s", why)
    return get_plotlyjs(), f"plotly.js {wanted} (full bundle)"


def page(report, body: str, nav: list[tuple[str, str]]) -> str:
    """The whole document around ``body`` (already escaped HTML)."""
    return document(f"Leaderboard: {report.grid.get('name') or report.run_dir.name}", header(report), body, nav,
                    f"Built from the files of {esc(report.run_dir.name)} by <code>bench report</code>")


def document(title: str, top: str, body: str, nav: list[tuple[str, str]], built: str) -> str:
    """A self-contained page: ``top`` (header HTML), the navigation, ``body`` and a footer starting with ``built``
    (HTML); plotly.js inlined once, the page's stylesheet and script, no network."""
    traces = {t for found in re.findall(r'data-traces="([^"]*)"', body) for t in found.split(",") if t}
    js, which = plotly_js(traces)
    links = "".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="referrer" content="no-referrer">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style>\n<script>{js}</script>\n</head><body>"
            f"{top}<nav class=\"toc\">{links}</nav><main>{body}</main>"
            f"<footer>{built} with {esc(which)}; this page works offline and loads nothing from the network.</footer>"
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
