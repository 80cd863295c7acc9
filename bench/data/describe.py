"""What a dataset looks like before anything is trained on it: counts, imbalance, co-occurrence.

:func:`describe` returns a JSON-ready dict (plain ints, floats, strings, lists; ``None`` where a
number is undefined, never NaN or infinity); :func:`format_description` renders it for a terminal.

Definitions (labels are 1 / 0 / NaN; NaN is never counted as a positive nor as a negative):

* ``prevalence[l]`` = positives / known values of l (``None`` when nothing is known).
* ``irlbl``, ``mean_ir``, ``max_ir``, ``cardinality``, ``density``: Charte et al.'s measures from
  :func:`bench.data.labels.imbalance_summary` (labels without positives have no IRLbl and are left
  out of MeanIR / MaxIR).
* ``scumble``: :func:`bench.data.labels.scumble`, averaged over ALL images, an image without a positive label counting 0
  (Charte et al. 2014 and the ``mldr`` reference implementation).
* ``no_finding``: images without any positive label (an all-NaN row counts here too; ``all_unknown``
  counts those rows on their own).
* ``pairs``: the most frequent label pairs, each with ``count`` (images positive for both),
  ``expected`` under independence and ``lift`` = count / expected. Both are computed over the images
  where both labels are known: expected = n_a * n_b / m, with n_a, n_b the positives of each label
  among those m images.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.data.labels import Records, imbalance_summary, irlbl, positives, scumble
from bench.errors import BenchError


def _num(x: float) -> float | None:
    """A float for JSON: ``None`` for NaN and infinities."""
    x = float(x)
    return x if math.isfinite(x) else None


def _pairs(y: np.ndarray, names: tuple[str, ...], top: int | None) -> list[dict[str, Any]]:
    known = ~np.isnan(y)
    pos = (y == 1).astype(np.int64)
    kn = known.astype(np.int64)
    both = pos.T @ pos  # images positive for a and b
    m = kn.T @ kn  # images where a and b are both known
    pos_a = pos.T @ kn  # positives of a among images where b is known
    out = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            if both[a, b] == 0:
                continue
            expected = pos_a[a, b] * pos_a[b, a] / m[a, b]
            out.append({
                "labels": [names[a], names[b]],
                "count": int(both[a, b]),
                "expected": float(expected),
                "lift": float(both[a, b] / expected),
            })
    out.sort(key=lambda p: -p["count"])  # stable: ties keep label order
    return out if top is None else out[:top]


def describe(records: Records, *, top_pairs: int | None = 10) -> dict[str, Any]:
    """Summarise a :class:`Records`: sizes, per-label counts, imbalance measures, views, boxes, pairs.

    Args:
        records: what a reader returned.
        top_pairs: how many co-occurring pairs to list (``None``: every pair seen at least once).

    >>> r = Records(labels=np.array([[1, 1], [1, 0], [0, np.nan]]), label_names=("A", "B"),
    ...             image_ids=["x", "y", "z"], paths=["/x", "/y", "/z"])
    >>> d = describe(r)
    >>> d["labels"], d["prevalence"], d["unknown"], d["irlbl"]
    ({'A': 2, 'B': 1}, {'A': 0.6666666666666666, 'B': 0.5}, {'A': 0, 'B': 1}, {'A': 1.0, 'B': 2.0})
    >>> d["pairs"]
    [{'labels': ['A', 'B'], 'count': 1, 'expected': 1.0, 'lift': 1.0}]
    """
    if top_pairs is not None and (isinstance(top_pairs, bool) or not isinstance(top_pairs, int) or top_pairs < 0):
        raise BenchError(f"top_pairs={top_pairs!r} is not valid; use a whole number >= 0 or None")
    y = np.asarray(records.labels, dtype=np.float64)
    names = tuple(records.label_names)
    n_pos = positives(y)
    n_known = (~np.isnan(y)).sum(axis=0)
    n_unknown = np.isnan(y).sum(axis=0)
    summary = imbalance_summary(y)
    any_pos = (y == 1).any(axis=1)

    views = pd.Series(records.views, dtype=object).fillna("").replace("", "unknown")
    boxes = records.boxes
    per_label_boxes = boxes["label"].value_counts() if len(boxes) else pd.Series(dtype=int)
    return {
        "kind": records.kind,
        "root": records.root,
        "images": int(len(records)),
        "patients": records.n_patients,
        "dropped": {str(k): int(v) for k, v in records.dropped.items()},
        "label_names": list(names),
        "labels": {name: int(n_pos[j]) for j, name in enumerate(names)},
        "prevalence": {name: (float(n_pos[j] / n_known[j]) if n_known[j] else None) for j, name in enumerate(names)},
        "unknown": {name: int(n_unknown[j]) for j, name in enumerate(names)},
        "irlbl": {name: _num(v) for name, v in zip(names, summary["irlbl"])},
        "mean_ir": _num(summary["mean_ir"]),
        "max_ir": _num(summary["max_ir"]),
        "scumble": _num(scumble(y)),
        "cardinality": _num(summary["cardinality"]),
        "density": _num(summary["density"]),
        "labels_without_positives": int(summary["labels_without_positives"]),
        "no_finding": int((~any_pos).sum()),
        "all_unknown": int(np.isnan(y).all(axis=1).sum()) if y.shape[1] else 0,
        "views": {str(k): int(v) for k, v in views.value_counts(sort=True).items()},
        "boxes": {
            "count": int(len(boxes)),
            "images": int(boxes["image_id"].nunique()) if len(boxes) else 0,
            "per_label": {str(k): int(v) for k, v in per_label_boxes.items()},
        },
        "pairs": _pairs(y, names, top_pairs),
    }


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_description(desc: dict[str, Any]) -> str:
    """Render :func:`describe`'s dict as a multi-line text table.

    >>> r = Records(labels=np.array([[1, 1], [1, 0]]), label_names=("A", "B"), image_ids=["x", "y"], paths=["/x", "/y"])
    >>> print(format_description(describe(r)).splitlines()[0])
    2 images, patients unknown
    """
    lines = []
    head = f"{desc['images']} images, " + (
        "patients unknown" if desc["patients"] is None else f"{desc['patients']} patients"
    )
    if desc.get("kind"):
        head = f"{desc['kind']}: {head}"
    lines.append(head)
    if desc["dropped"]:
        lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in desc["dropped"].items()))
    lines.append(
        f"MeanIR {_fmt(desc['mean_ir'], 2)}  MaxIR {_fmt(desc['max_ir'], 2)}  SCUMBLE {_fmt(desc['scumble'])}  "
        f"cardinality {_fmt(desc['cardinality'])}  density {_fmt(desc['density'])}  "
        f"no positive label {desc['no_finding']}"
    )
    names = desc["label_names"]
    box_counts = desc["boxes"]["per_label"]
    width = max([len("label")] + [len(n) for n in names])
    lines.append("")
    lines.append(
        f"{'label':<{width}}  {'positives':>9}  {'prevalence':>10}  {'unknown':>8}  {'IRLbl':>8}  {'boxes':>6}"
    )
    for name in names:
        lines.append(
            f"{name:<{width}}  {desc['labels'][name]:>9}  {_fmt(desc['prevalence'][name], 4):>10}  "
            f"{desc['unknown'][name]:>8}  {_fmt(desc['irlbl'][name], 2):>8}  {box_counts.get(name, 0):>6}"
        )
    if desc["views"]:
        lines.append("")
        lines.append("views: " + ", ".join(f"{k} {v}" for k, v in desc["views"].items()))
    if desc["pairs"]:
        pair_width = max(len(" + ".join(p["labels"])) for p in desc["pairs"])
        lines.append("")
        lines.append(f"{'pair':<{pair_width}}  {'count':>7}  {'expected':>9}  {'lift':>6}")
        for p in desc["pairs"]:
            lines.append(
                f"{' + '.join(p['labels']):<{pair_width}}  {p['count']:>7}  "
                f"{p['expected']:>9.2f}  {p['lift']:>6.2f}"
            )
    return "\n".join(lines)
