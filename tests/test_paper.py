"""reports.paper: LaTeX (booktabs) and Markdown leaderboard tables for papers."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from reports import paper


def _board():
    rows = []
    for b in ("resnet18", "dense_net#2"):
        for s, auc, ece in (("bce", 0.80, 0.05), ("focal_loss", 0.83, 0.09), ("a|b & c%", 0.78, 0.03)):
            rows.append({"backbone": b, "strategy": s, "n_folds": 5, "macro_auc": auc + (b == "resnet18") * 0.01,
                         "macro_auc_ci_low": auc - 0.02, "macro_auc_ci_high": auc + 0.03, "macro_ece": ece,
                         "macro_ece_ci_low": ece - 0.01, "macro_ece_ci_high": ece + 0.01, "macro_ap": np.nan})
    return pd.DataFrame(rows)


def _significance():
    return pd.DataFrame([{"backbone": "resnet18", "strategy": "focal_loss", "baseline": "bce", "metric": "macro_auc",
                          "verdict": "better"},
                         {"backbone": "resnet18", "strategy": "a|b & c%", "baseline": "bce", "metric": "macro_auc",
                          "verdict": "no evidence"},
                         {"backbone": "dense_net#2", "strategy": "a|b & c%", "baseline": "bce", "metric": "macro_auc",
                          "verdict": "worse"}])


def _balanced(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        if ch in "{}" and i and text[i - 1] == "\\":
            continue  # an escaped brace
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_booktabs_rows_bold_marks_and_escaping():
    tex = paper.latex(_board(), significance=_significance())
    lines = tex.splitlines()
    assert lines[0] == r"\begin{tabular}{llcc}" and lines[1] == r"\toprule" and r"\bottomrule" in lines
    assert _balanced(tex)
    body = lines[lines.index(r"\midrule") + 1: lines.index(r"\bottomrule")]
    rows = [ln for ln in body if ln.endswith(r"\\")]
    assert len(rows) == 6 and body.count(r"\midrule") == 1  # one rule between the two backbones
    assert all(ln.count(" & ") == 3 for ln in rows)  # backbone, strategy, AUC, ECE (mAP, all NaN, is left out)
    assert r"a|b \& c\%" in tex and r"dense\_net\#2" in tex and r"focal\_loss" in tex
    focal = next(ln for ln in rows if ln.startswith(r"resnet18 & focal\_loss"))
    assert r"\textbf{0.840 [0.810, 0.860]}$^{\dagger}$" in focal  # best AUC on its backbone, better than bce
    worst = next(ln for ln in rows if ln.startswith(r"dense\_net\#2 & a|b"))
    assert r"$^{\ddagger}$" in worst and r"\textbf{0.030 [0.020, 0.040]}" in worst  # lowest ECE is the best
    assert "Nadeau and Bengio" in tex and "Holm" in tex


def test_markdown_is_a_table_with_bold_best_per_backbone():
    md = paper.markdown(_board(), significance=_significance())
    lines = md.splitlines()
    table = lines[: lines.index("")]
    cells = [re.split(r"(?<!\\)\|", ln)[1:-1] for ln in table]
    assert all(len(c) == len(cells[0]) for c in cells) and len(table) == 2 + 6
    assert re.fullmatch(r"\|(---\|){2}(---:\|)+", table[1])
    assert r"a\|b & c%" in md  # a pipe in a name is escaped, not a column break
    assert "**0.840 [0.810, 0.860]** †" in md and "‡" in md
    assert lines[-1].startswith("Mean over 5 held-out folds")


def test_missing_values_and_unknown_format():
    board = _board()
    board.loc[0, "macro_auc"] = np.nan
    assert "| resnet18 | bce | – |" in paper.markdown(board)
    with pytest.raises(ValueError, match="expected one of latex, markdown"):
        paper.render(board, "html")
