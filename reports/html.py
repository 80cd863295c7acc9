"""``leaderboard.html``: one self-contained page (plotly.js inlined once, no network at all).

This module assembles the page; every string from a dataset or a grid is escaped on the way in by the
helpers of ``reports/html_common.py`` (see there). The page's sections live in ``reports/html_sections.py``
(tables, dataset, provenance), ``html_figures.py`` (heatmaps, spread, groups), ``html_stats.py``
(significance, CD diagram), ``html_calibration.py`` (reliability diagrams), ``html_localisation.py`` and
``html_training.py`` (per-epoch curves, stages, post-hoc steps);
the frame in ``html_page.py``; the stylesheet and script in ``html_assets.py``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports import html_calibration as C
from reports import html_figures as F
from reports import html_localisation as L
from reports import html_page as P
from reports import html_protocol as R
from reports import html_sections as S
from reports import html_stats as T
from reports import html_training as G
from reports.runfolder import write_atomic


def write_html(report, path: Path, *, loc_raw: pd.DataFrame | None = None) -> Path:
    """Write the page for a :class:`reports.leaderboard.Report` atomically; returns its path.

    >>> # write_html(build_report("runs/demo", html=False), Path("runs/demo/leaderboard.html"))
    """
    builders = [
        ("leaderboard", "Leaderboard", S.leaderboard_table),
        ("official", "Official split", R.official),
        ("external", "External test sets", R.external),
        ("heatmaps", "Backbone × strategy", F.metric_heatmap),
        ("per-label", "Per-label AUC", F.per_label),
        ("spread", "Folds and seeds", F.spread),
        ("significance", "Significance", T.significance),
        ("groups", "Head / medium / tail", F.groups),
        ("calibration", "Calibration", C.calibration),
        ("localisation", "Localisation", lambda r: L.localisation(r, loc_raw)),
        ("training", "Training", G.training),
        ("dataset", "Dataset and split", S.dataset_summary),
        ("trials", "Trials", S.trial_details),
        ("provenance", "Provenance", S.provenance),
    ]
    parts, nav = [], []
    for sec_id, title, build in builders:
        inner = build(report)
        if inner:
            parts.append(inner)
            nav.append((sec_id, title))
    page = P.page(report, "\n".join(parts), nav)
    path = Path(path)
    write_atomic(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path
