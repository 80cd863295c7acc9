"""Known answer: a saliency map that knows nothing about the image scores at chance on the pointing game.

Each simulated (map, box set) pair draws the map and the box set independently, so the map cannot know
where the box is. The project's own :func:`reports.localisation.pointing_game` scores it. The exact chance
level follows from the procedure: the map points at one pixel (:func:`reports.localisation.pointing_point`),
and a box set drawn uniformly from the pool covers that pixel with probability
``hit_coverage(pool)[point]``; the expected hit count is the sum of those probabilities over the maps drawn,
and the hit count's standard error is ``sqrt(sum e (1 - e))``. For a map whose point is uniform over the
pixels (the ``random`` map) this is the boxes' mean area share (``area_share``). The old rule (a hit when
*any* pixel tied at the maximum is inside a box) is scored on the same pairs for comparison: upsampled
low-resolution maps have flat maximal plateaus, and the old rule counts the whole plateau.

Maps: ``random`` (uniform noise per pixel, :func:`reports.localisation.random_map`), ``up2`` / ``up4`` /
``up7`` (a k x k uniform random map upsampled to the image by pytorch-grad-cam's own ``scale_cam_image``,
as the CAMs are: resnet18's last feature map is 2 x 2 at the demo's 48 px and 7 x 7 at 224 px), ``centre``
(:func:`reports.localisation.centre_prior_map`).

Box pools, each scaled to the image size: ``uniform`` (one box per image, sides uniform in 5-15 px at 48 px,
placed uniformly inside the image: the review's setting), ``nih`` (the 984 boxes of
``../shared/data/nih-cxr14/BBox_List_2017.csv``, grouped per (image, finding), from the 1024-px space) and
``demo`` (the demo's synthetic boxes, grouped per (image, finding): ``data/synthetic`` when it exists,
otherwise a small synthetic dataset written to a temporary folder).

Usage::

    .venv/bin/python benchmarks/localisation_chance.py --json            # 4,000 maps per condition
    .venv/bin/python benchmarks/localisation_chance.py --json --quick    # 1,000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from reports import localisation as L

ROOT = Path(__file__).resolve().parents[1]
NIH_BOXES = ROOT.parent / "shared/data/nih-cxr14/BBox_List_2017.csv"
DEMO_DATA = ROOT / "data/synthetic"
MAPS = ("random", "up2", "up4", "up7", "centre")
SIZES = (48, 224)  # the demo's image_size (grids/demo.yaml) and the usual ImageNet size


# ---- maps ----------------------------------------------------------------------------------------
def make_map(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uninformative (size x size) map of ``kind`` (see the module docstring)."""
    if kind == "random":
        return L.random_map((size, size), rng)
    if kind == "centre":
        return L.centre_prior_map((size, size))
    if kind.startswith("up"):
        from pytorch_grad_cam.utils.image import scale_cam_image

        k = int(kind[2:])
        return scale_cam_image(rng.random((1, k, k), dtype=np.float32), (size, size))[0]
    raise ValueError(f"unknown map kind {kind!r} (choose from: {', '.join(MAPS)})")


def any_tied_pixel_hit(cam: np.ndarray, boxes) -> bool:
    """The OLD pointing-game rule, kept here only to measure its bias: a hit when any pixel tied at the
    maximum is inside a box (a flat map misses)."""
    c = np.asarray(cam, dtype=float)
    top = c.max()
    return bool(top != c.min() and np.any(L.box_mask(boxes, c.shape) & (c == top)))


# ---- box pools -----------------------------------------------------------------------------------
def uniform_pool(size: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` one-box sets: sides uniform in 5-15 px at 48 px (scaled to ``size``), placed uniformly inside."""
    f = size / 48
    w, h = rng.integers(5, 16, n) * f, rng.integers(5, 16, n) * f
    x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
    return [np.array([[x[i], y[i], w[i], h[i]]]) for i in range(n)]


def box_file_pool(csv: Path, size: int) -> list[np.ndarray]:
    """The boxes of an NIH-layout box file, one set per (image, finding), scaled from 1024 px to ``size``."""
    df = pd.read_csv(csv)
    df = df.iloc[:, :6]
    df.columns = ["image", "finding", "x", "y", "w", "h"]
    return [L.nih_box_to_pixels(g[["x", "y", "w", "h"]].to_numpy(float), size)
            for _, g in df.groupby(["image", "finding"], sort=True)]


def demo_box_file(n: int = 400) -> Path:
    """The demo's box file: ``data/synthetic``'s when it exists, else a small synthetic dataset's."""
    if (DEMO_DATA / "BBox_List_2017.csv").is_file():
        return DEMO_DATA / "BBox_List_2017.csv"
    from bench.data.synthetic import write_synthetic

    folder = Path(tempfile.mkdtemp(prefix="loc-chance-")) / "synthetic"
    write_synthetic(folder, n=n, size=128, seed=0)
    return folder / "BBox_List_2017.csv"


# ---- simulation ----------------------------------------------------------------------------------
def simulate(kind: str, pool: list[np.ndarray], size: int, n: int, rng: np.random.Generator, *,
             tolerance: float = 0.0) -> dict:
    """Score ``n`` independent (map, box set) pairs; the hit rate against its exact chance level."""
    cover = L.hit_coverage(pool, (size, size), tolerance=tolerance)
    hits = old = 0
    expected = np.zeros(n)
    for i in range(n):
        cam = make_map(kind, size, rng)
        boxes = pool[int(rng.integers(len(pool)))]
        point = L.pointing_point(cam)
        expected[i] = cover[point] if point is not None else 0.0
        hits += L.pointing_game(cam, boxes, tolerance=tolerance)
        old += any_tied_pixel_hit(cam, boxes)
    var = float((expected * (1 - expected)).sum())
    se = np.sqrt(var) / n if var > 0 else 0.0

    def z(count: int) -> float:
        d = count / n - expected.mean()
        return float(d / se) if se > 0 else (0.0 if d == 0 else float(np.sign(d) * np.inf))

    return {"map": kind, "size": size, "tolerance": tolerance, "n": n, "hit_rate": hits / n,
            "expected": float(expected.mean()), "se": float(se), "z": z(hits), "area_share": float(cover.mean()),
            "hit_rate_old_rule": old / n, "z_old_rule": z(old)}


def run(n: int, seed: int = 0, sizes=SIZES, maps=MAPS, pools=("uniform", "nih", "demo")) -> dict:
    rng = np.random.default_rng(seed)
    demo_csv = demo_box_file() if "demo" in pools else None
    rows = []
    for size in sizes:
        for pool_name in pools:
            if pool_name == "uniform":
                pool = uniform_pool(size, 5000, rng)
            elif pool_name == "nih":
                if not NIH_BOXES.is_file():
                    raise FileNotFoundError(f"{NIH_BOXES} is missing: pass --pools uniform demo to leave NIH out")
                pool = box_file_pool(NIH_BOXES, size)
            elif pool_name == "demo":
                pool = box_file_pool(demo_csv, size)
            else:
                raise ValueError(f"unknown box pool {pool_name!r} (choose from: uniform, nih, demo)")
            for kind in maps:
                rows.append({"boxes": pool_name, **simulate(kind, pool, size, n, rng)})
    return {"n_per_condition": n, "seed": seed, "demo_boxes": str(demo_csv) if demo_csv else None,
            "max_abs_z": max(abs(r["z"]) for r in rows), "results": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    ap.add_argument("--quick", action="store_true", help="1,000 maps per condition instead of 4,000")
    ap.add_argument("--n", type=int, default=None, help="maps per condition")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pools", nargs="+", default=["uniform", "nih", "demo"])
    args = ap.parse_args(argv)
    n = args.n or (1000 if args.quick else 4000)
    t0 = time.perf_counter()
    out = run(n, args.seed, pools=tuple(args.pools))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    head = ("size", 4), ("boxes", 7), ("map", 6), ("hit", 6), ("chance", 6), ("z", 6), ("area", 6), ("old rule", 8), \
        ("z old", 6)
    print(" ".join(f"{name:>{width}}" for name, width in head))
    for r in out["results"]:
        print(f"{r['size']:>4} {r['boxes']:>7} {r['map']:>6} {r['hit_rate']:6.3f} {r['expected']:6.3f} {r['z']:6.2f} "
              f"{r['area_share']:6.3f} {r['hit_rate_old_rule']:8.3f} {r['z_old_rule']:6.1f}")
    print(f"{n} maps per condition, {out['seconds']} s; max |z| under the one-point rule: {out['max_abs_z']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
