"""Paper tables of a run: the leaderboard as LaTeX (booktabs) or Markdown, means with 95% intervals.

``bench report RUN_DIR --format latex|markdown`` writes ``leaderboard.tex`` / ``leaderboard.md`` beside the
CSVs and prints it. One row per backbone × strategy in the leaderboard's order; each cell is the
leaderboard value (mean over held-out folds of each fold's seed mean) with its 95% patient-bootstrap
interval; the best value of each column (highest, or lowest for ECE and Brier) is in bold **within each
backbone**, as papers compare strategies on one backbone. A dagger marks a strategy that
``significance.csv`` calls better than the baseline on that metric (both tests after Holm), a double
dagger one it calls worse; the footnote names the unit, the intervals and the tests.

LaTeX needs ``\\usepackage{booktabs}``; the table is a ``tabular`` only (no float), to paste into a
``table`` environment.

>>> import pandas as pd
>>> board = pd.DataFrame({"backbone": ["r", "r"], "strategy": ["bce", "focal"], "macro_auc": [0.8, 0.85],
...                       "macro_auc_ci_low": [0.75, 0.8], "macro_auc_ci_high": [0.85, 0.9], "n_folds": [3, 3]})
>>> print(markdown(board, columns=[("macro_auc", "macro AUC", True)]).splitlines()[2])
| r | bce | 0.800 [0.750, 0.850] |
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from reports.html_common import num
from reports.replicates import describe_intervals

__all__ = ["COLUMNS", "FORMATS", "latex", "markdown", "render"]

#: (leaderboard column, header, higher is better)
COLUMNS = [("macro_auc", "macro AUC", True), ("micro_auc", "micro AUC", True), ("macro_ap", "mAP", True),
           ("macro_f1", "macro F1", True), ("micro_f1", "micro F1", True), ("macro_ece", "ECE", False),
           ("macro_brier", "Brier", False)]
FORMATS = {"latex": "leaderboard.tex", "markdown": "leaderboard.md"}
BETTER, WORSE = "better", "worse"

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text) -> str:
    r"""Escape LaTeX's special characters.

    >>> _tex("ml_ros & 5%")
    'ml\\_ros \\& 5\\%'
    """
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], str(text))


def _md(text) -> str:
    return str(text).replace("|", r"\|")


def _cells(board: pd.DataFrame, columns, digits: int, marks: dict) -> list[list[tuple[str, bool, str]]]:
    """Per row and column: (value text, is best in its backbone, significance mark)."""
    rows = []
    best: dict = {}
    for col, _, higher in columns:
        if col not in board:
            continue
        for b, g in board.groupby("backbone", sort=False):
            vals = [v for v in (num(x) for x in g[col]) if v is not None]
            if vals:
                best[(b, col)] = max(vals) if higher else min(vals)
    for r in board.to_dict("records"):
        line = []
        for col, _, _ in columns:
            v = num(r.get(col))
            if v is None:
                line.append(("–", False, ""))
                continue
            lo, hi = num(r.get(f"{col}_ci_low")), num(r.get(f"{col}_ci_high"))
            text = f"{v:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None
                                        else "")
            top = best.get((r["backbone"], col))
            mark = marks.get((str(r["backbone"]), str(r["strategy"]), col), "")
            line.append((text, top is not None and abs(v - top) <= 1e-12, mark))
        rows.append(line)
    return rows


def _present(board: pd.DataFrame, columns) -> list:
    """The requested columns the leaderboard has, without those that hold no value at all (a run without
    thresholds has no F1; one from before calibration existed has no ECE)."""
    return [c for c in (columns or COLUMNS)
            if c[0] in board and pd.to_numeric(board[c[0]], errors="coerce").notna().any()]


def _marks(significance: pd.DataFrame | None) -> dict:
    if significance is None or significance.empty:
        return {}
    out = {}
    for r in significance.to_dict("records"):
        if r.get("verdict") in (BETTER, WORSE):
            out[(str(r["backbone"]), str(r["strategy"]), str(r["metric"]))] = r["verdict"]
    return out


def _footnote(board: pd.DataFrame, significance, baseline: str | None) -> str:
    folds = sorted({int(v) for v in board.get("n_folds", pd.Series(dtype=float)).dropna()})
    k = f"{folds[0]}" if len(folds) == 1 else ("-".join(map(str, (folds[0], folds[-1]))) if folds else "?")
    text = (f"Mean over {k} held-out folds of each fold's mean over seeds, with its 95% patient-bootstrap interval "
            f"(patients resampled within each held-out fold; {describe_intervals({c: n for c, n, _ in COLUMNS})}). "
            "Best value per backbone in bold (lowest for ECE and Brier).")
    if significance is not None and not significance.empty:
        base = baseline or str(significance["baseline"].iloc[0])
        text += (f" Against {base} on the same backbone: paired patient bootstrap and Nadeau and Bengio's corrected "
                 "resampled t-test over folds, Holm-adjusted within backbone and metric; DAGGER better, DDAGGER "
                 "worse by both tests at 0.05.")
    return text


def latex(board: pd.DataFrame, *, significance: pd.DataFrame | None = None, columns=None, digits: int = 3,
          baseline: str | None = None) -> str:
    """The leaderboard as a booktabs ``tabular`` with a footnote line under it."""
    columns = _present(board, columns)
    marks = _marks(significance)
    head = " & ".join(["Backbone", "Strategy"] + [_tex(h) for _, h, _ in columns]) + r" \\"
    lines = [r"\begin{tabular}{ll" + "c" * len(columns) + "}", r"\toprule", head, r"\midrule"]
    previous = None
    for r, cells in zip(board.to_dict("records"), _cells(board, columns, digits, marks)):
        if previous is not None and r["backbone"] != previous:
            lines.append(r"\midrule")
        previous = r["backbone"]
        out = [_tex(r["backbone"]), _tex(r["strategy"])]
        for text, best, mark in cells:
            t = _tex(text)
            t = rf"\textbf{{{t}}}" if best else t
            out.append(t + {BETTER: r"$^{\dagger}$", WORSE: r"$^{\ddagger}$"}.get(mark, ""))
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    note = _tex(_footnote(board, significance, baseline)).replace("DDAGGER", r"$^{\ddagger}$").replace(
        "DAGGER", r"$^{\dagger}$")
    lines.append(r"\par\smallskip\footnotesize " + note)
    return "\n".join(lines) + "\n"


def markdown(board: pd.DataFrame, *, significance: pd.DataFrame | None = None, columns=None, digits: int = 3,
             baseline: str | None = None) -> str:
    """The leaderboard as a GitHub-flavoured Markdown table with its footnote under it."""
    columns = _present(board, columns)
    marks = _marks(significance)
    lines = ["| " + " | ".join(["backbone", "strategy"] + [h for _, h, _ in columns]) + " |",
             "|" + "---|" * 2 + "---:|" * len(columns)]
    for r, cells in zip(board.to_dict("records"), _cells(board, columns, digits, marks)):
        out = [_md(r["backbone"]), _md(r["strategy"])]
        for text, best, mark in cells:
            t = f"**{text}**" if best else text
            out.append(t + {BETTER: " †", WORSE: " ‡"}.get(mark, ""))
        lines.append("| " + " | ".join(out) + " |")
    if significance is not None or "n_folds" in board:
        note = _footnote(board, significance, baseline).replace("DDAGGER", "‡").replace("DAGGER", "†")
        lines += ["", note]
    return "\n".join(lines) + "\n"


def render(board: pd.DataFrame, fmt: str, *, significance: pd.DataFrame | None = None,
           baseline: str | None = None, columns: Sequence | None = None) -> str:
    """:func:`latex` or :func:`markdown` by name; a ValueError names the valid formats."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    fn = latex if fmt == "latex" else markdown
    return fn(board, significance=significance, columns=columns, baseline=baseline)
