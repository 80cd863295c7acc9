"""Grad-CAM localisation inside a trial: maps for the held-out fold's boxed images, scored
against their boxes, with a binarisation threshold tuned on the validation part's boxed images
only, and a random map and a centre-prior map scored through the same procedure (their own
validation-tuned threshold included) as chance references.

Targets are explicit: each (image, finding) pair of the box file, never the model's argmax.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bench.trial_spec import TrialSpec

log = logging.getLogger(__name__)


def boxes_at(boxes: pd.DataFrame, size: int) -> pd.DataFrame:
    """Boxes scaled from the stored image's pixels to the (size x size) cache images."""
    b = boxes.copy()
    sx = size / b["img_w"].to_numpy(dtype=float)
    sy = size / b["img_h"].to_numpy(dtype=float)
    b["x"] *= sx
    b["w"] *= sx
    b["y"] *= sy
    b["h"] *= sy
    return b


def boxed_pairs(rec, rows: np.ndarray, boxes: pd.DataFrame, limit: int, rng: np.random.Generator):
    """(row, class, finding, boxes (k, 4)) for the boxed images among ``rows`` (at most ``limit`` images)."""
    pos = {str(i): r for r, i in zip(rows, rec.image_ids[rows])}
    b = boxes[boxes["image_id"].astype(str).isin(pos) & boxes["label"].isin(rec.label_names)]
    ids = np.array(sorted(pd.unique(b["image_id"].astype(str))))
    if limit and len(ids) > limit:
        ids = np.sort(rng.choice(ids, size=limit, replace=False))
    out = []
    for image_id in ids:
        bi = b[b["image_id"].astype(str) == image_id]
        for finding, g in bi.groupby("label", sort=True):
            out.append((pos[image_id], rec.label_names.index(finding), finding,
                        g[["x", "y", "w", "h"]].to_numpy(dtype=float)))
    return out


def refuse_held_out(rec, tuning_rows, test) -> None:
    """Leakage guard: the CAM binarisation threshold is tuned on validation images only; raise
    ``RuntimeError`` if any image it would be tuned on is in the held-out fold."""
    overlap = set(map(str, rec.image_ids[np.asarray(tuning_rows, dtype=np.int64)])) & set(
        map(str, rec.image_ids[np.asarray(test, dtype=np.int64)]))
    if overlap:
        raise RuntimeError(f"refusing to tune the CAM threshold: {len(overlap)} of its image(s) are in the held-out "
                           f"fold (e.g. {sorted(overlap)[0]!r})")


def localise_trial(spec: TrialSpec, data, *, model, images, val, test, dev, out: Path, prob: np.ndarray) -> list[dict]:
    """Score the CAMs of the held-out boxed images and the two chance maps through one procedure.

    Every map, model or chance (``random``: uniform noise; ``centre``: a centred Gaussian), is scored
    the same way: the pointing game with the grid's ``tolerance``, and the box metrics at a
    binarisation threshold tuned on the validation part's boxed images *for that kind of map* (the
    chance maps get their own validation maps and their own tuned threshold, as the CAMs do).
    """
    import torch

    import backbones
    from bench import engine, seeding
    from bench.cam import compute_cams
    from reports import localisation as L

    cfg = data.cfg.localisation  # a grid resolved before an option existed reads with its default
    tolerance = float(cfg.tolerance)
    rec, size = data.records, data.image_size
    boxes = boxes_at(rec.boxes, size)
    rng = seeding.numpy_rng(spec.seed, spec.fold, "localisation")
    test_pairs = boxed_pairs(rec, test, boxes, int(cfg.max_images), rng)
    if not test_pairs:
        return []
    val_pairs = boxed_pairs(rec, val, boxes, int(cfg.max_images), rng)
    warning = backbones.cam_target(model, spec.backbone, size).warning  # metrics.json's cam records it too
    if warning:
        log.warning("trial %s: %s", spec.id, warning)
    refuse_held_out(rec, [p[0] for p in val_pairs], test)
    row_pos = {r: i for i, r in enumerate(test)}
    val_boxes = [p[3] for p in val_pairs]

    def maps(pairs, method):
        rows = np.array(sorted({p[0] for p in pairs}))
        at = {r: i for i, r in enumerate(rows)}
        x = engine.to_input(torch.from_numpy(np.asarray(images[rows])), dev)
        return compute_cams(model, spec.backbone, x, [(at[p[0]], p[1]) for p in pairs], method=method,
                            batch_size=32, device=dev.device)

    def threshold(name: str, val_maps) -> float:
        if cfg.threshold != "tune":
            return float(cfg.threshold)
        if not val_pairs:
            log.warning("trial %s: no boxed validation image to tune the %s threshold on; using 0.5", spec.id, name)
            return 0.5
        return float(L.tune_threshold(list(val_maps()), val_boxes))

    def score(name: str, cams, thr: float) -> list[dict]:
        rows = []
        for (row, cls, finding, bx), cam in zip(test_pairs, cams):
            s = L.score_map(cam, bx, threshold=thr, tolerance=tolerance)
            rows.append({"image_id": str(rec.image_ids[row]), "finding": finding, "method": name, "threshold": thr,
                         "tolerance": tolerance, "prob": float(prob[row_pos[row], cls]), **_plain(s)})
        return rows

    results = []
    for method in list(cfg.methods):
        cams = maps(test_pairs, method)
        scored = score(method, cams, threshold(method, lambda: maps(val_pairs, method)))
        results += scored
        if method == cfg.methods[0]:
            _gallery(out, spec, rec, images, test_pairs, cams, scored, int(cfg.gallery))
    shape = (size, size)
    base_rng = seeding.numpy_rng(spec.seed, spec.fold, "random-map")
    val_random = [L.random_map(shape, base_rng) for _ in val_pairs]  # drawn first: the test maps never see them
    test_random = [L.random_map(shape, base_rng) for _ in test_pairs]
    centre = L.centre_prior_map(shape)
    results += score("random", test_random, threshold("random", lambda: val_random))
    results += score("centre", [centre] * len(test_pairs), threshold("centre", lambda: [centre] * len(val_pairs)))
    from bench.runfolder import TrialFolder, write_atomic

    df = pd.DataFrame(results)
    write_atomic(TrialFolder(out).localisation, lambda tmp: df.to_csv(tmp, index=False))
    return results


def _plain(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, (np.floating, float, np.bool_, bool, int, np.integer)) else v)
            for k, v in d.items()}


# ---- overlays ------------------------------------------------------------------------------------
_ANCHORS = np.array([[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0.5, 0, 0]])


def colormap(x: np.ndarray) -> np.ndarray:
    """A jet-like colour map: (H, W) in [0, 1] -> (H, W, 3) uint8."""
    t = np.clip(x, 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(t.astype(int), len(_ANCHORS) - 2)
    f = (t - i)[..., None]
    rgb = _ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f
    return (rgb * 255).astype(np.uint8)


def overlay_png(image: np.ndarray, cam: np.ndarray, boxes: np.ndarray, path: Path, *, scale: int = 3) -> None:
    """Write the map over the X-ray with the boxes drawn and a colour bar, as a small PNG.

    Colours show each pixel's value relative to the map's maximum (0 dark blue to 1 dark red, the
    bar on the right); a map without positive values is all dark blue.
    """
    from PIL import Image, ImageDraw

    c = np.asarray(cam, dtype=np.float32)
    top = float(c.max())
    rel = np.clip(c / top, 0.0, 1.0) if top > 0 else np.zeros_like(c)
    gray = np.repeat(image[..., None].astype(np.float32), 3, axis=2)
    mix = (0.55 * gray + 0.45 * colormap(rel).astype(np.float32)).clip(0, 255).astype(np.uint8)
    w, h = image.shape[1] * scale, image.shape[0] * scale
    im = Image.fromarray(mix).resize((w, h), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    for x, y, bw, bh in boxes:
        draw.rectangle([x * scale, y * scale, (x + bw) * scale - 1, (y + bh) * scale - 1], outline=(0, 255, 0), width=2)
    bar_w, pad, label_w = 8, 4, 24
    canvas = Image.new("RGB", (w + pad + bar_w + label_w, h), (255, 255, 255))
    canvas.paste(im, (0, 0))
    ramp = colormap(np.linspace(1.0, 0.0, h)[:, None].repeat(bar_w, axis=1))  # top = 1 (the map's maximum)
    canvas.paste(Image.fromarray(ramp), (w + pad, 0))
    text = ImageDraw.Draw(canvas)
    text.text((w + pad + bar_w + 2, 0), "max", fill=(0, 0, 0))
    text.text((w + pad + bar_w + 2, h - 11), "0", fill=(0, 0, 0))
    canvas.save(path, optimize=True)


def gallery_picks(scored: list[dict], cams, n: int) -> list[tuple[int, str]]:
    """Indices of up to ``n`` hits and ``n`` misses among the maps with visible energy (maximum above
    minimum), most confident first (highest probability), alternating hit and miss; with their rank.

    A flat map (nothing to see) is never picked; the page keeps only the picks whose probability
    reaches the label's tuned threshold.

    >>> cams = [np.eye(2), np.zeros((2, 2)), np.eye(2), np.eye(2)]
    >>> scored = [{"prob": 0.4, "hit": 1.0}, {"prob": 0.99, "hit": 1.0}, {"prob": 0.9, "hit": 0.0},
    ...           {"prob": 0.7, "hit": 1.0}]
    >>> gallery_picks(scored, cams, 1)
    [(3, 'confident hit'), (2, 'confident miss')]
    """
    visible = [k for k, cam in enumerate(cams) if float(np.max(cam)) > float(np.min(cam))]
    order = sorted(visible, key=lambda k: (-scored[k]["prob"], k))
    hits = [k for k in order if scored[k]["hit"]][:n]
    misses = [k for k in order if not scored[k]["hit"]][:n]
    picks = []
    for i in range(max(len(hits), len(misses))):
        picks += [(k, "confident hit") for k in hits[i:i + 1]] + [(k, "confident miss") for k in misses[i:i + 1]]
    return picks


def _gallery(out: Path, spec, rec, images, pairs, cams, scored: list[dict], n: int) -> None:
    if n <= 0:
        return
    from bench.runfolder import TrialFolder

    files = TrialFolder(out)
    folder = files.gallery
    folder.mkdir(exist_ok=True)
    meta = []
    for k, rank in gallery_picks(scored, cams, n):
        row, cls, finding, bx = pairs[k]
        name = f"{k:03d}.png"
        overlay_png(np.asarray(images[row]), cams[k], bx, folder / name)
        meta.append({"file": name, "image_id": str(rec.image_ids[row]), "finding": finding,
                     "method": scored[k]["method"], "prob": float(scored[k]["prob"]), "label": 1,
                     "hit": bool(scored[k]["hit"]),
                     "energy": float(scored[k]["energy"]), "map_range": float(np.max(cams[k]) - np.min(cams[k])),
                     "rank": rank})
    files.gallery_json.write_text(json.dumps(meta, indent=1))
