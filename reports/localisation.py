"""Scoring class-activation maps against ground-truth boxes (numpy and scipy only).

A map is an (H, W) array; a box is ``(x, y, w, h)`` in the pixel space of that map, x along the
columns and y along the rows. The caller scales the boxes (:func:`scale_boxes`; NIH boxes are given
in the 1024-px space of the released images, :func:`nih_box_to_pixels`). Each (image, finding) pair
is scored against the boxes of that finding only.

Pixel convention: pixel column ``j`` covers ``[j, j + 1)``. A box covers the pixels its area touches,
columns ``floor(x) .. ceil(x + w) - 1`` and rows ``floor(y) .. ceil(y + h) - 1`` (so an integer box
covers exactly ``w`` columns), clipped to the map; a 1e-6 tolerance absorbs rounding from scaling.
IoU and IoBB compare boxes as continuous rectangles, as Wang et al. (ChestX-ray8, CVPR 2017) do;
``mask_iou`` compares pixel sets (binarised map against the rasterised boxes).

>>> cam = np.zeros((8, 8)); cam[2:4, 5:7] = 1.0
>>> s = score_map(cam, [(4, 1, 3, 3)], threshold=0.5)
>>> s["hit"], s["iobb"], round(s["iou"], 3)
(True, 1.0, 0.444)
"""

from __future__ import annotations

import warnings

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = ["IOBB_THRESHOLDS", "IOU_THRESHOLDS", "DEFAULT_GRID", "NIH_BOX_SPACE", "scale_boxes",
           "nih_box_to_pixels", "box_mask", "pointing_point", "pointing_game", "hit_coverage", "energy_pointing",
           "binarise", "predicted_box",
           "iou", "iobb", "score_map", "score_findings", "tune_threshold", "random_map", "centre_prior_map",
           "accuracy_at", "summarise", "paired_against", "CHANCE_METHODS", "CHANCE_KEYS"]

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_THRESHOLDS = (0.1, 0.3, 0.5)
DEFAULT_GRID = tuple(float(t) for t in np.round(np.linspace(0.1, 0.9, 17), 10))
NIH_BOX_SPACE = 1024  # NIH BBox_List_2017.csv is in the pixels of the released 1024 x 1024 images
_EPS = 1e-6
#: The chance maps (:func:`random_map`, :func:`centre_prior_map`) and the (backbone, strategy) their rows
#: carry in a run's summary: they are scored once per run, not once per model.
CHANCE_METHODS = ("random", "centre")
CHANCE_KEYS = ("(any)", "(chance)")
_OBJECTIVES = ("iou", "iobb", "mask_iou")


# ---- boxes ---------------------------------------------------------------------------------------
def _boxes(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=float)
    b = b.reshape(1, 4) if b.shape == (4,) else b
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (x, y, w, h) or a (K, 4) array, got shape {b.shape}")
    if not np.isfinite(b).all() or (b[:, 2:] < 0).any():
        raise ValueError(f"boxes must be finite with w, h >= 0, got {b.tolist()}")
    return b


def _map(cam) -> np.ndarray:
    c = np.asarray(cam, dtype=float)
    if c.ndim != 2 or c.size == 0:
        raise ValueError(f"a map must be a non-empty (H, W) array, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("the map has NaN or infinite values")
    return c


def scale_boxes(boxes_xywh, from_size: tuple[float, float], to_size: tuple[float, float]) -> np.ndarray:
    """Boxes from an image of ``from_size`` = (W0, H0) pixels to one of ``to_size`` = (W, H).

    >>> scale_boxes([512, 256, 128, 64], from_size=(1024, 1024), to_size=(512, 512)).tolist()
    [256.0, 128.0, 64.0, 32.0]
    """
    b = np.asarray(boxes_xywh, dtype=float)
    (w0, h0), (w1, h1) = from_size, to_size
    if min(w0, h0, w1, h1) <= 0:
        raise ValueError(f"sizes must be positive, got from_size={from_size}, to_size={to_size}")
    factor = np.array([w1, h1, w1, h1], dtype=float)
    return b * factor / np.array([w0, h0, w0, h0], dtype=float)  # multiply first: exact for integers


def nih_box_to_pixels(box, image_width: float) -> np.ndarray:
    """An NIH box (1024-px space) in the pixels of the square image resized to ``image_width``.

    >>> nih_box_to_pixels([512, 256, 128, 64], 64).tolist()
    [32.0, 16.0, 8.0, 4.0]
    """
    return scale_boxes(box, (NIH_BOX_SPACE, NIH_BOX_SPACE), (image_width, image_width))


def _span(start: float, length: float, size: int) -> tuple[int, int]:
    """Half-open index range of the pixels the interval [start, start + length] covers."""
    lo = max(int(np.floor(start + _EPS)), 0)
    hi = min(int(np.ceil(start + length - _EPS)), size)
    return lo, max(hi, lo)


def box_mask(boxes, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the union of the boxes, under the module's pixel convention.

    >>> box_mask([(1.5, 0, 1, 2)], (3, 4)).astype(int).tolist()
    [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    mask = np.zeros(shape, dtype=bool)
    for x, y, w, h in _boxes(boxes):
        c0, c1 = _span(x, w, shape[1])
        r0, r1 = _span(y, h, shape[0])
        mask[r0:r1, c0:c1] = True
    return mask


# ---- map against boxes ---------------------------------------------------------------------------
def _tolerance(tolerance: float) -> float:
    t = float(tolerance)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"tolerance must be a finite number of pixels >= 0, got {tolerance!r}")
    return t


def pointing_point(cam) -> tuple[int, int] | None:
    """The one (row, col) pixel a map points at in the pointing game; ``None`` for a flat map.

    The point is the map's maximum. When several pixels tie at the maximum (the flat plateaus of a
    map upsampled from a low-resolution feature map), the point is the pixel that contains the
    centroid of the tied pixels (centroid ``(mean row, mean col)`` of their indices; under the module's
    pixel convention that is pixel ``floor(mean + 0.5)``, so an even-sided plateau resolves to the
    pixel just below and right of its centre). If that pixel is not itself at the maximum (a
    non-convex or split plateau), the tied pixel nearest the centroid is taken, ties in raster order.
    The rule never looks at the boxes, so a map that is independent of the image scores at chance.

    >>> cam = np.zeros((6, 6)); cam[1:3, 1:3] = 1.0   # a 2 x 2 plateau
    >>> pointing_point(cam)
    (2, 2)
    >>> cam = np.zeros((5, 5)); cam[0, 0] = cam[0, 4] = 1.0  # the centroid (0, 2) is not on the plateau
    >>> pointing_point(cam)
    (0, 0)
    """
    c = _map(cam)
    top = c.max()
    if top == c.min():
        return None
    rows, cols = np.nonzero(c == top)  # raster order
    if len(rows) == 1:
        return int(rows[0]), int(cols[0])
    cy, cx = rows.mean(), cols.mean()
    r, q = int(np.floor(cy + 0.5)), int(np.floor(cx + 0.5))
    if c[r, q] == top:
        return r, q
    d = (rows - cy) ** 2 + (cols - cx) ** 2
    k = int(np.flatnonzero(d <= d.min() + 1e-9)[0])
    return int(rows[k]), int(cols[k])


def _point_hits(point: tuple[int, int], b: np.ndarray, shape: tuple[int, int], tolerance: float) -> bool:
    """Whether ``point`` is within ``tolerance`` px (centre to centre) of a pixel some box covers."""
    r, q = point
    for x, y, w, h in b:
        c0, c1 = _span(x, w, shape[1])
        r0, r1 = _span(y, h, shape[0])
        if c1 <= c0 or r1 <= r0:
            continue
        dr, dc = max(r0 - r, 0, r - (r1 - 1)), max(c0 - q, 0, q - (c1 - 1))
        if dr * dr + dc * dc <= tolerance * tolerance:
            return True
    return False


def pointing_game(cam, boxes, *, tolerance: float = 0.0) -> bool:
    """True when the map's one point (:func:`pointing_point`) falls inside a box of the finding, or
    within ``tolerance`` pixels of one (Zhang et al.'s pointing game, IJCV 2018, allows 15 px at
    their image size; distances are Euclidean between pixel centres). A flat map (all values
    equal) points nowhere and is always a miss.

    One point per map, ties broken by the plateau's centroid: counting a hit when *any* tied pixel
    is in a box would let an upsampled low-resolution map (flat plateaus of many pixels) hit far
    more often than chance.

    >>> cam = np.zeros((4, 4)); cam[1, 2] = 1.0
    >>> pointing_game(cam, [(2, 1, 1, 1)]), pointing_game(cam, [(0, 0, 2, 2)])
    (True, False)
    >>> pointing_game(cam, [(0, 0, 2, 2)], tolerance=1)   # column 2 is 1 px right of column 1
    True
    """
    c, b = _map(cam), _boxes(boxes)
    tol = _tolerance(tolerance)
    point = pointing_point(c)
    return point is not None and _point_hits(point, b, c.shape, tol)


def hit_coverage(boxes_list: Sequence[object], shape: tuple[int, int], *, tolerance: float = 0.0) -> np.ndarray:
    """(H, W) share of the box sets in ``boxes_list`` under which a map pointing at each pixel scores a
    hit (inside a box, or within ``tolerance`` px of one).

    It gives the exact chance level of the pointing game: a map drawn independently of the image,
    paired with a box set drawn uniformly from ``boxes_list``, hits with probability
    ``hit_coverage(...)[pointing_point(map)]``; a map whose point is uniform over the pixels hits
    with probability ``hit_coverage(...).mean()``, the boxes' mean (pixel) area share.

    >>> hit_coverage([[(0, 0, 2, 1)], [(1, 0, 1, 1)]], (1, 3)).tolist()
    [[0.5, 1.0, 0.0]]
    """
    tol = _tolerance(tolerance)
    if len(boxes_list) == 0:
        raise ValueError("boxes_list is empty")
    total = np.zeros(shape, dtype=float)
    for boxes in boxes_list:
        inside = box_mask(boxes, shape)
        if tol > 0 and inside.any():
            inside = ndimage.distance_transform_edt(~inside) <= tol
        total += inside
    return total / len(boxes_list)


def energy_pointing(cam, boxes) -> float:
    """Share of the map's non-negative mass inside the union of the boxes (negative values count as 0).

    A map without positive mass (all zero) is treated as flat: the share is the boxes' area share.

    >>> energy_pointing(np.array([[3.0, 1.0], [0.0, 0.0]]), [(0, 0, 1, 1)])
    0.75
    """
    c = np.clip(_map(cam), 0.0, None)
    inside = box_mask(boxes, c.shape)
    total = c.sum()
    if total <= 0:
        return float(inside.mean())
    return float(c[inside].sum() / total)


def binarise(cam, threshold: float) -> np.ndarray:
    """Pixels with value >= ``threshold`` x the map's maximum; all False when the maximum is <= 0.

    >>> binarise(np.array([[0.2, 0.6], [1.0, 0.0]]), 0.5).tolist()
    [[False, True], [True, False]]
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1] (relative to the map's maximum), got {threshold}")
    c = _map(cam)
    top = c.max()
    if top <= 0:
        return np.zeros(c.shape, dtype=bool)
    return c >= float(threshold) * top


_EIGHT = np.ones((3, 3), dtype=int)


def predicted_box(mask) -> tuple[int, int, int, int] | None:
    """Bounding box (x, y, w, h) of the largest 8-connected component of ``mask``, as Wang et al.
    (2017) box their heatmap blobs; ``None`` for an empty mask. Equal sizes: the first component in
    row-major order.

    >>> m = np.zeros((5, 6), dtype=bool); m[0, 0] = True; m[2:4, 2:5] = True
    >>> predicted_box(m)
    (2, 2, 3, 2)
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    labels, n = ndimage.label(m, structure=_EIGHT)
    if n == 0:
        return None
    biggest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    rows, cols = ndimage.find_objects(labels)[biggest - 1]
    return cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    dx = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    dy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(max(dx, 0.0) * max(dy, 0.0))


def iou(a_xywh, b_xywh) -> float:
    """Intersection over union of two (x, y, w, h) rectangles; 0 when both are empty.

    >>> iou((0, 0, 2, 2), (1, 0, 2, 2))
    0.3333333333333333
    """
    a, b = _boxes(a_xywh)[0], _boxes(b_xywh)[0]
    inter = _intersection(a, b)
    union = float(a[2] * a[3] + b[2] * b[3]) - inter
    return inter / union if union > 0 else 0.0


def iobb(pred, gt) -> float:
    """Intersection over the area of the PREDICTED box (Wang et al. 2017); 0 for an empty prediction.

    >>> iobb((0, 0, 2, 2), (1, 0, 4, 4))
    0.5
    """
    p, g = _boxes(pred)[0], _boxes(gt)[0]
    area = float(p[2] * p[3])
    return _intersection(p, g) / area if area > 0 else 0.0


def score_map(cam, boxes, *, threshold: float, tolerance: float = 0.0) -> dict:
    """All scores of one (image, finding) map against that finding's boxes.

    ``hit`` (pointing game, :func:`pointing_game` with ``tolerance`` px), ``energy`` (energy share),
    ``iou`` and ``iobb`` of the predicted box (largest blob of the map binarised at ``threshold``; best
    over the boxes; 0 without a blob) and ``mask_iou`` (binarised map against the union of the boxes;
    NaN if both are empty).

    >>> cam = np.zeros((6, 6)); cam[1:3, 1:3] = 1.0
    >>> s = score_map(cam, [(0, 0, 2, 2), (1, 1, 2, 2)], threshold=0.5)
    >>> s["hit"], s["iou"], round(s["mask_iou"], 3)
    (True, 1.0, 0.571)
    """
    c, b = _map(cam), _boxes(boxes)
    if len(b) == 0:
        raise ValueError("a finding needs at least one box to be scored")
    return {"hit": pointing_game(c, b, tolerance=tolerance), "energy": energy_pointing(c, b),
            **_box_scores(c, b, box_mask(b, c.shape), threshold)}


def _box_scores(c: np.ndarray, b: np.ndarray, gt: np.ndarray, threshold: float) -> dict:
    """iou, iobb and mask_iou of the map binarised at ``threshold`` (``gt`` = rasterised boxes)."""
    mask = binarise(c, threshold)
    pred = predicted_box(mask)
    union = np.logical_or(mask, gt).sum()
    return {
        "iou": max(iou(pred, g) for g in b) if pred is not None else 0.0,
        "iobb": max(iobb(pred, g) for g in b) if pred is not None else 0.0,
        "mask_iou": float(np.logical_and(mask, gt).sum() / union) if union else float("nan"),
    }


def score_findings(cams: Mapping[str, np.ndarray], boxes: Mapping[str, object], *,
                   threshold: float, tolerance: float = 0.0) -> dict[str, dict]:
    """Score one image's maps, each finding's map against that finding's boxes only.

    >>> cams = {"Mass": np.diag([1.0, 0, 0, 0]), "Nodule": np.diag([0, 0, 0, 1.0])}
    >>> out = score_findings(cams, {"Mass": [(0, 0, 1, 1)], "Nodule": [(0, 0, 1, 1)]}, threshold=0.5)
    >>> out["Mass"]["hit"], out["Nodule"]["hit"]
    (True, False)
    """
    missing = sorted(set(cams) - set(boxes))
    if missing:
        raise KeyError(f"no boxes for finding(s) {missing}")
    return {f: score_map(cam, boxes[f], threshold=threshold, tolerance=tolerance) for f, cam in cams.items()}


def tune_threshold(cams: Sequence[np.ndarray], boxes_list: Sequence[object], *,
                   grid: Sequence[float] = DEFAULT_GRID, objective: str = "iou") -> float:
    """The binarisation threshold in ``grid`` with the best mean ``objective`` (first on ties).

    Fit it on VALIDATION images only (the caller guarantees it); tuning on the images being scored
    inflates every box metric. ``objective`` is ``"iou"``, ``"iobb"`` or ``"mask_iou"``; note that
    IoBB rewards small boxes, so tuning on it drives the threshold up.

    >>> cam = np.zeros((10, 10)); cam[2:6, 2:6] = 0.5; cam[3:5, 3:5] = 1.0
    >>> tune_threshold([cam], [[(2, 2, 4, 4)]], grid=(0.3, 0.7))
    0.3
    """
    if objective not in _OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} (choose from: {', '.join(_OBJECTIVES)})")
    if len(cams) != len(boxes_list) or len(cams) == 0:
        raise ValueError(f"need as many maps as box lists, at least one; got {len(cams)} and {len(boxes_list)}")
    grid = [float(t) for t in grid]
    if not grid:
        raise ValueError("grid is empty")
    prepared = []
    for cam, boxes in zip(cams, boxes_list):
        c, b = _map(cam), _boxes(boxes)
        if len(b) == 0:
            raise ValueError("every validation map needs at least one box")
        prepared.append((c, b, box_mask(b, c.shape)))
    scores = np.array([[_box_scores(c, b, gt, t)[objective] for c, b, gt in prepared] for t in grid])
    with np.errstate(invalid="ignore"):
        means = np.array([np.nanmean(s) if np.isfinite(s).any() else -np.inf for s in scores])
    return grid[int(np.argmax(means))]


# ---- chance references ---------------------------------------------------------------------------
def random_map(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Uniform noise in [0, 1): a chance reference scored like a real map.

    >>> random_map((2, 3), np.random.default_rng(0)).shape
    (2, 3)
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng.random(shape, dtype=np.float32)


def centre_prior_map(shape: tuple[int, int], *, sigma: float = 0.25) -> np.ndarray:
    """A Gaussian bump at the image centre (sd = ``sigma`` x the side), maximum 1: the "findings are
    central" reference.

    >>> m = centre_prior_map((5, 5)); float(m[2, 2]), bool(m[0, 0] < m[1, 1] < m[2, 2])
    (1.0, True)
    """
    h, w = shape
    y = (np.arange(h) - (h - 1) / 2) / (sigma * h)
    x = (np.arange(w) - (w - 1) / 2) / (sigma * w)
    bump = np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))
    return (bump / bump.max()).astype(np.float32)  # even sides: the four central pixels tie at 1


# ---- summaries -----------------------------------------------------------------------------------
def accuracy_at(values, thresholds: Sequence[float]) -> dict[float, float]:
    """Fraction of (image, finding) pairs whose value is STRICTLY greater than each threshold
    ("IoBB > T", Wang et al. 2017). NaN values are left out; NaN when none is left.

    >>> accuracy_at([0.1, 0.5, 0.9], (0.1, 0.5))
    {0.1: 0.6666666666666666, 0.5: 0.3333333333333333}
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    return {float(t): float(np.mean(v > t)) if len(v) else float("nan") for t in thresholds}


def _per_pair_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for name in ("hit", "energy", "iou", "iobb", "mask_iou"):
        if name in rows:
            out[name] = rows[name].astype(float)
    if "iobb" in rows:
        for t in IOBB_THRESHOLDS:
            out[f"acc_iobb_{t:g}"] = (rows["iobb"] > t).astype(float).where(rows["iobb"].notna())
    if "iou" in rows:
        for t in IOU_THRESHOLDS:
            out[f"acc_iou_{t:g}"] = (rows["iou"] > t).astype(float).where(rows["iou"].notna())
    if not out:
        raise ValueError(f"rows have none of the score columns hit, energy, iou, iobb, mask_iou: {list(rows)}")
    return pd.DataFrame(out, index=rows.index)


def _image_weights(n_img: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_img) bootstrap counts: each replicate draws n_img images with replacement (one
    ``integers`` draw and a bincount per replicate block: far cheaper than ``multinomial`` at this size)."""
    out = np.empty((n_boot, n_img))
    for start in range(0, n_boot, 256):
        b = min(256, n_boot - start)
        draws = rng.integers(0, n_img, size=(b, n_img)) + (np.arange(b) * n_img)[:, None]
        out[start:start + b] = np.bincount(draws.ravel(), minlength=b * n_img).reshape(b, n_img)
    return out


def _bootstrap(values: pd.DataFrame, codes: np.ndarray, weights: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means, 95% percentile CI bounds and counts of each column; ``codes`` give each row's image (an index
    into the columns of ``weights``, the (n_boot, n_images) resampling counts), so an image's pairs move
    together."""
    v = values.to_numpy(dtype=float)
    ok = ~np.isnan(v)
    n_img = weights.shape[1]
    sums = np.zeros((n_img, v.shape[1]))
    counts = np.zeros((n_img, v.shape[1]))
    np.add.at(sums, codes, np.where(ok, v, 0.0))
    np.add.at(counts, codes, ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.sum(0) / counts.sum(0)
        if weights.shape[0] == 0:
            return mean, np.full(v.shape[1], np.nan), np.full(v.shape[1], np.nan), counts.sum(0)
        b = (weights @ sums) / (weights @ counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column undefined in every replicate stays NaN
        lo, hi = np.nanpercentile(b, [2.5, 97.5], axis=0)
    return mean, lo, hi, counts.sum(0)


def summarise(rows: pd.DataFrame, by: Sequence[str] = ("finding",), *, n_boot: int = 1000,
              rng: np.random.Generator, image_col: str = "image_id") -> pd.DataFrame:
    """Per group of ``by`` and overall (``'all'`` in every ``by`` column): hit rate (``hit``),
    ``energy``, mean ``iou``, ``iobb`` and ``mask_iou``, and ``acc_iobb_T`` / ``acc_iou_T`` for
    each of :data:`IOBB_THRESHOLDS` / :data:`IOU_THRESHOLDS`, with 95% percentile-bootstrap CIs
    that resample images (all pairs of an image together, ``image_col``).

    ``rows`` has one row per (image, finding) pair, as written by the trials. Long format: the
    ``by`` columns, ``metric``, ``value``, ``ci_low``, ``ci_high``, ``n`` (pairs with a value) and
    ``n_images``.

    >>> rows = pd.DataFrame({"image_id": ["a", "a", "b"], "finding": ["Mass", "Nodule", "Mass"],
    ...                      "hit": [1.0, 0.0, 1.0], "iobb": [0.6, 0.0, 0.2]})
    >>> s = summarise(rows, n_boot=100, rng=np.random.default_rng(0))
    >>> s[(s.finding == "all") & (s.metric == "hit")][["value", "n", "n_images"]].values.tolist()
    [[0.6666666666666666, 3.0, 2.0]]
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    by = list(by)
    missing = [c for c in [*by, image_col] if c not in rows]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}; they have {list(rows)}")
    metrics = _per_pair_metrics(rows)
    if rows[image_col].isna().any():
        raise ValueError(f"the {image_col} column has missing ids")
    # One resampling of all the images serves every group (a group's images keep their draw counts).
    codes = pd.Series(pd.factorize(rows[image_col])[0], index=rows.index)
    weights = _image_weights(int(codes.max()) + 1 if len(codes) else 0, n_boot, rng)
    groups = [(tuple(k if isinstance(k, tuple) else (k,)), idx) for k, idx in rows.groupby(by, sort=True).groups.items()]
    groups.append((("all",) * len(by), rows.index))
    out = []
    for key, idx in groups:
        mean, lo, hi, n = _bootstrap(metrics.loc[idx], codes.loc[idx].to_numpy(), weights)
        n_images = rows.loc[idx, image_col].nunique()
        for j, name in enumerate(metrics.columns):
            out.append({**dict(zip(by, key)), "metric": name, "value": mean[j], "ci_low": lo[j],
                        "ci_high": hi[j], "n": n[j], "n_images": n_images})
    return pd.DataFrame(out, columns=[*by, "metric", "value", "ci_low", "ci_high", "n", "n_images"])


PAIRED_METRICS = ("hit", "energy")
PAIRED_COLUMNS = ["backbone", "method", "strategy", "baseline", "metric", "n_trials", "n_images", "value",
                  "baseline_value", "mean_diff", "ci_low", "ci_high", "p", "p_holm"]


def paired_against(raw: pd.DataFrame, baseline: str = "bce", *, metrics: Sequence[str] = PAIRED_METRICS,
                   chance: Sequence[str] = CHANCE_METHODS) -> pd.DataFrame:
    """Paired tests of each strategy's localisation against ``baseline``'s, per backbone and map method.

    ``raw`` holds one row per scored (image, finding) pair with the columns ``backbone``, ``strategy``,
    ``method``, ``fold``, ``seed``, ``image_id``, ``finding`` and the metric columns (as the trials write
    them, with the trial's keys added). A strategy's trial and the baseline's trial of the same backbone,
    fold and seed score the same held-out images. Each side's metric is averaged over the image's
    findings, the (fold, seed, image) triples scored by both sides are kept, and each image's value is
    then averaged over its seeds: the seeds of a fold share its test images, so they are not
    independent replicates.

    - Unit: the image of a held-out fold (images are nested in folds), averaged over findings and seeds.
    - Test: a paired t-test (``scipy.stats.ttest_rel`` via :func:`reports.stats.paired_test`) of the
      per-image differences, with its 95% t interval (``ci_low`` / ``ci_high``); Holm's correction
      (``p_holm``) runs over the strategies within each backbone x method x metric.
    - Assumption: the images are independent draws and the trained models are held fixed, so the test
      asks whether these models' maps differ on these images, not whether the difference would survive
      retraining (the trial-level spread is in the localisation leaderboard's per-trial rows).

    ``n_trials`` counts the (fold, seed) trials paired, ``n_images`` the images. Chance maps
    (``chance``) are not compared.

    >>> rows = pd.DataFrame({"backbone": "r", "method": "gradcam", "fold": 0, "seed": 0, "finding": "Mass",
    ...                      "strategy": ["bce"] * 4 + ["focal"] * 4, "image_id": list("abcd") * 2,
    ...                      "hit": [0, 0, 1, 0, 1, 1, 1, 0.0], "energy": [.1, .2, .3, .1, .3, .4, .3, .2]})
    >>> two_seeds = pd.concat([rows, rows.assign(seed=1)])  # a second seed: the same images, not new units
    >>> r = paired_against(two_seeds).set_index("metric")
    >>> r.loc["hit", ["n_trials", "n_images", "value", "baseline_value", "mean_diff"]].tolist()
    [2.0, 4.0, 0.75, 0.25, 0.5]
    """
    from scipy import stats as sps

    from reports.stats import holm, paired_test

    need = ["backbone", "strategy", "method", "fold", "seed", "image_id"]
    missing = [c for c in need if c not in raw]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}; they have {list(raw)}")
    metrics = [m for m in metrics if m in raw]
    out = []
    if raw.empty or not metrics:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    maps = raw[~raw["method"].isin(list(chance))]
    scored = ["fold", "seed", "image_id"]  # one trial's score of one image (findings averaged)
    unit = ["fold", "image_id"]  # the replication unit: seeds averaged
    for (backbone, method), g in maps.groupby(["backbone", "method"], sort=False):
        per_trial = g.groupby(["strategy", *scored], sort=False)[metrics].mean()
        if baseline not in per_trial.index.get_level_values("strategy"):
            continue
        base_all = per_trial.xs(baseline, level="strategy")
        block = []
        for strategy in dict.fromkeys(g["strategy"]):
            if strategy == baseline:
                continue
            mine_all = per_trial.xs(strategy, level="strategy")
            common = mine_all.index.intersection(base_all.index)
            n_trials = len(common.droplevel("image_id").unique()) if len(common) else 0
            mine = mine_all.loc[common].groupby(level=unit, sort=True).mean()
            base = base_all.loc[common].groupby(level=unit, sort=True).mean()
            for m in metrics:
                a, b = mine[m].to_numpy(float), base.loc[mine.index, m].to_numpy(float)
                t = paired_test(a, b)
                lo = hi = float("nan")
                if t["n"] > 1 and np.isfinite(t["std_diff"]):
                    half = sps.t.ppf(0.975, t["n"] - 1) * t["std_diff"] / np.sqrt(t["n"])
                    lo, hi = t["mean_diff"] - half, t["mean_diff"] + half
                ok = ~(np.isnan(a) | np.isnan(b))
                block.append({"backbone": backbone, "method": method, "strategy": strategy, "baseline": baseline,
                              "metric": m, "n_trials": n_trials, "n_images": t["n"],
                              "value": float(a[ok].mean()) if ok.any() else float("nan"),
                              "baseline_value": float(b[ok].mean()) if ok.any() else float("nan"),
                              "mean_diff": t["mean_diff"], "ci_low": lo, "ci_high": hi, "p": t["p"]})
        if block:
            df = pd.DataFrame(block)
            for _, idx in df.groupby("metric").groups.items():
                df.loc[idx, "p_holm"] = holm(df.loc[idx, "p"].to_numpy())
            out.append(df)
    return pd.concat(out, ignore_index=True)[PAIRED_COLUMNS] if out else pd.DataFrame(columns=PAIRED_COLUMNS)
