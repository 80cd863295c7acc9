"""The building blocks every part of ``leaderboard.html`` shares: escaping, number formats, figures, sections.

Every string that comes from a dataset or a grid is escaped before it reaches the page:

- in HTML text and attributes with :func:`esc`;
- in plotly labels with :func:`ptext` (plotly.js renders a small HTML subset and decodes
  entities, so ``&lt;script&gt;`` is shown as ``<script>`` but never parsed as a tag);
- figure data travels as JSON inside ``<script type="application/json">`` blocks with ``<``,
  ``>`` and ``&`` escaped (:func:`json_script`), so ``</script><script>alert(1)</script>`` stays text.

The page is assembled by :func:`reports.html.write_html`; its section modules import these helpers from
here and never the assembler, so no module of the page imports one that imports it back.

>>> esc('<b a="1">&')
'&lt;b a=&quot;1&quot;&gt;&amp;'
>>> fmt(float("nan")), fmt(0.12345), fmt_p(0.00001)
('–', '0.123', '&lt;0.001')
"""

from __future__ import annotations

import hashlib
import html
import json
import math

import numpy as np
import pandas as pd

#: Every figure gets this config: no plotly logo, no "send to cloud" / Chart Studio links.
PLOT_CONFIG = {"displaylogo": False, "showSendToCloud": False, "showEditInChartStudio": False, "showLink": False,
               "responsive": True, "toImageButtonOptions": {"format": "svg"}}
PAGE_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


def esc(value) -> str:
    """HTML-escape any value for text or a quoted attribute (None becomes '')."""
    return html.escape("" if value is None else str(value), quote=True)


def ptext(value) -> str:
    """Escape a string for a plotly label, tick or hover text (plotly decodes ``&lt; &gt; &amp;``)."""
    return html.escape("" if value is None else str(value), quote=False)


def is_missing(v) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return not math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def num(v) -> float | None:
    """A finite float, or None for missing / NaN / inf / non-numeric."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt(v, digits: int = 3) -> str:
    """A number with ``digits`` decimals, '–' when missing; other values escaped."""
    if is_missing(v):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return esc(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}f}"
    return esc(v)


def fmt_p(p) -> str:
    """A p-value: three decimals, or '<0.001'."""
    if is_missing(p):
        return "–"
    return "&lt;0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def slug(*parts) -> str:
    """A short stable HTML id for any strings (hostile ones included)."""
    return "x" + hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:10]


def clean(obj):
    """Replace NaN / inf with None and numpy scalars with Python ones, recursively (JSON has no NaN);
    dicts and pandas Series become dicts with string keys."""
    if isinstance(obj, (dict, pd.Series)):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def json_script(obj, element_id: str) -> str:
    """Embed JSON safely inside a ``<script type="application/json">`` element."""
    text = json.dumps(clean(obj), default=str, allow_nan=False, separators=(",", ":"))
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def figure(fig_id: str, fig, *, caption: str = "") -> str:
    """A plotly figure as an empty div plus its JSON (data, layout, config); the page's script draws it.

    The shared template is sent once (``plot-template``), so each figure's layout drops its copy.
    """
    spec = json.loads(fig.to_json())
    layout = spec.get("layout", {})
    layout.pop("template", None)
    layout.setdefault("font", {"family": PAGE_FONT, "size": 12})
    out = {"data": spec.get("data", []), "layout": layout, "config": dict(PLOT_CONFIG)}
    cap = f'<p class="caption">{caption}</p>' if caption else ""
    traces = ",".join(sorted({str(t.get("type", "scatter")) for t in out["data"]}))
    return (f'<div class="fig" id="{esc(fig_id)}" data-figure="1" data-traces="{esc(traces)}"></div>{cap}'
            + json_script(out, fig_id + "-data"))


def plot_template() -> dict:
    """The one plotly template every figure uses (``plotly_white``, the page's font)."""
    import plotly.io as pio

    tpl = json.loads(json.dumps(pio.templates["plotly_white"].to_plotly_json(), default=_np_default))
    tpl.setdefault("layout", {})["font"] = {"family": PAGE_FONT, "size": 12, "color": "#1f2933"}
    return tpl


def _np_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


def section(sec_id: str, title: str, inner: str, *, lead: str = "") -> str:
    """A page section with an id (for the navigation bar) and a heading."""
    note = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{esc(sec_id)}"><h2>{esc(title)}</h2>{note}{inner}</section>'
