"""``leaderboard.html``: one self-contained page (plotly.js inlined once, no network at all).

Every string that comes from a dataset or a grid is HTML-escaped; figure data travels as JSON
inside ``<script type="application/json">`` blocks with ``<``, ``>`` and ``&`` escaped, so a
label named ``</script><script>alert(1)</script>`` stays text.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

PLOT_CONFIG = {"displaylogo": False, "showSendToCloud": False, "responsive": True}


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def json_script(obj, element_id: str) -> str:
    """Embed JSON safely inside a script element."""
    text = json.dumps(obj, default=_default, allow_nan=False)
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def _default(o):
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _clean(obj):
    """Replace NaN / inf with None recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    return obj


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}"
    return esc(v)


def figure(fig_id: str, fig) -> str:
    """A plotly figure as a div plus its JSON; rendered by the page's one script."""
    spec = json.loads(fig.to_json())
    return f'<div class="fig" id="{esc(fig_id)}"></div>' + json_script(_clean(spec), fig_id + "-data")


def write_html(report, path: Path, *, loc_raw: pd.DataFrame | None = None) -> Path:
    """Write the page for a :class:`reports.leaderboard.Report` atomically; returns its path."""
    from reports import html_sections as S

    body = [S.header(report)]
    body.append(S.leaderboard_table(report))
    body.append(S.heatmaps(report))
    body.append(S.per_label(report))
    body.append(S.spread(report))
    body.append(S.significance(report))
    body.append(S.groups(report))
    body.append(S.localisation(report, loc_raw))
    body.append(S.dataset_summary(report))
    body.append(S.trial_details(report))
    page = S.page(report, "\n".join(b for b in body if b))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
