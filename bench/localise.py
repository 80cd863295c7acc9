"""Grad-CAM localisation inside a trial: maps for the held-out fold's boxed images, scored
against their boxes, with a binarisation threshold tuned on the validation part's boxed images
only, and a random map and a centre-prior map scored the same way as chance references.

Targets are explicit: each (image, finding) pair of the box file, never the model's argmax.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)
BASELINES = ("random", "centre")


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


def localise_trial(spec: dict, data, *, model, images, val, test, dev, out: Path, prob: np.ndarray) -> list[dict]:
    import torch

    from bench import engine, seeding
    from bench.cam import compute_cams
    from reports import localisation as L

    cfg = data.grid["localisation"]
    rec, size = data.records, data.image_size
    boxes = boxes_at(rec.boxes, size)
    rng = seeding.numpy_rng(spec["seed"], spec["fold"], "localisation")
    test_pairs = boxed_pairs(rec, test, boxes, int(cfg["max_images"]), rng)
    if not test_pairs:
        return []
    val_pairs = boxed_pairs(rec, val, boxes, int(cfg["max_images"]), rng)
    refuse_held_out(rec, [p[0] for p in val_pairs], test)
    row_pos = {r: i for i, r in enumerate(test)}

    def maps(pairs, method):
        rows = np.array(sorted({p[0] for p in pairs}))
        at = {r: i for i, r in enumerate(rows)}
        x = engine.to_input(torch.from_numpy(np.asarray(images[rows])), dev)
        return compute_cams(model, spec["backbone"], x, [(at[p[0]], p[1]) for p in pairs], method=method,
                            batch_size=32, device=dev.device)

    results = []
    shape = (size, size)
    for method in list(cfg["methods"]):
        cams = maps(test_pairs, method)
        if cfg["threshold"] == "tune" and val_pairs:
            thr = float(L.tune_threshold(list(maps(val_pairs, method)), [p[3] for p in val_pairs]))
        else:
            thr = 0.5 if cfg["threshold"] == "tune" else float(cfg["threshold"])
        for (row, cls, finding, bx), cam in zip(test_pairs, cams):
            s = L.score_map(cam, bx, threshold=thr)
            results.append({"image_id": str(rec.image_ids[row]), "finding": finding, "method": method,
                            "threshold": thr, "prob": float(prob[row_pos[row], cls]), **_plain(s)})
        if method == cfg["methods"][0]:
            _gallery(out, spec, rec, images, test_pairs, cams, results, prob, row_pos, int(cfg["gallery"]))
    base_rng = seeding.numpy_rng(spec["seed"], spec["fold"], "random-map")
    centre = L.centre_prior_map(shape)
    for row, cls, finding, bx in test_pairs:
        for name, cam in (("random", L.random_map(shape, base_rng)), ("centre", centre)):
            s = L.score_map(cam, bx, threshold=0.5)
            results.append({"image_id": str(rec.image_ids[row]), "finding": finding, "method": name,
                            "threshold": 0.5, "prob": float(prob[row_pos[row], cls]), **_plain(s)})
    from reports.leaderboard import write_atomic

    df = pd.DataFrame(results)
    write_atomic(out / "localisation.csv", lambda tmp: df.to_csv(tmp, index=False))
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
    """Write the map over the X-ray with the boxes drawn, as a small PNG."""
    from PIL import Image, ImageDraw

    gray = np.repeat(image[..., None].astype(np.float32), 3, axis=2)
    heat = colormap(cam).astype(np.float32)
    mix = (0.55 * gray + 0.45 * heat).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(mix).resize((image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    for x, y, w, h in boxes:
        draw.rectangle([x * scale, y * scale, (x + w) * scale - 1, (y + h) * scale - 1], outline=(0, 255, 0), width=2)
    im.save(path, optimize=True)


def _gallery(out: Path, spec, rec, images, pairs, cams, results, prob, row_pos, n: int) -> None:
    if n <= 0:
        return
    scored = [r for r in results if r["method"] == results[-1]["method"]][-len(pairs):]
    energy = np.array([r["energy"] for r in scored])
    order = np.argsort(-energy, kind="stable")
    picks = list(dict.fromkeys(list(order[: (n + 1) // 2]) + list(order[::-1][: n // 2])))
    folder = out / "gallery"
    folder.mkdir(exist_ok=True)
    meta = []
    for k in picks:
        row, cls, finding, bx = pairs[k]
        name = f"{k:03d}.png"
        overlay_png(np.asarray(images[row]), cams[k], bx, folder / name)
        meta.append({"file": name, "image_id": str(rec.image_ids[row]), "finding": finding,
                     "prob": float(prob[row_pos[row], cls]), "label": 1, "hit": bool(scored[k]["hit"]),
                     "energy": float(scored[k]["energy"]), "rank": "best" if k in order[: (n + 1) // 2] else "worst"})
    (folder / "gallery.json").write_text(json.dumps(meta, indent=1))
