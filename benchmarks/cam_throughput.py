"""CAM throughput: the batched path (``compute_cams``) against the per-pair loop
(``compute_cams_per_image``), in (image, finding) maps per second.

Random weights, random images, every image asked for the same ``--classes`` findings (the
multi-label case: several maps per image). Times are the best of ``--repeats`` runs after a
warm-up; the maps of both paths are compared too.

Usage::

    .venv/bin/python benchmarks/cam_throughput.py [--backbones resnet18 mobilenetv3_small_100]
        [--sizes 64 128] [--images 64] [--classes 3] [--method gradcam] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

import backbones
from bench import seeding
from bench.cam import METHODS, compute_cams, compute_cams_per_image
from bench.perf import best_of


def measure(name: str, size: int, *, n_images: int, n_classes: int, method: str, batch_size: int,
            repeats: int) -> dict:
    seeding.seed_torch("cam_throughput", name)
    model = backbones.create_model(name, num_classes=14).eval()
    images = torch.randn(n_images, 1, size, size, generator=seeding.torch_generator("cam_throughput", size))
    targets = [(row, cls) for row in range(n_images) for cls in range(n_classes)]
    kw = dict(method=method, batch_size=batch_size)
    compute_cams(model, name, images[:2], targets[:2], **kw)  # warm-up (lazy init, allocator)
    compute_cams_per_image(model, name, images[:2], targets[:2], **kw)
    t_batched, batched = best_of(lambda: compute_cams(model, name, images, targets, **kw), repeats)
    t_naive, naive = best_of(lambda: compute_cams_per_image(model, name, images, targets, **kw), repeats)
    return {"backbone": name, "size": size, "method": method, "pairs": len(targets),
            "batched_s": t_batched, "per_image_s": t_naive,
            "batched_per_s": len(targets) / t_batched, "per_image_per_s": len(targets) / t_naive,
            "speedup": t_naive / t_batched, "max_abs_diff": float(np.abs(batched - naive).max())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "mobilenetv3_small_100"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--method", default="gradcam", choices=METHODS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = [measure(b, s, n_images=args.images, n_classes=args.classes, method=args.method,
                    batch_size=args.batch_size, repeats=args.repeats)
            for b in args.backbones for s in args.sizes]
    print(f"{args.method}, {args.images} images x {args.classes} classes, batch {args.batch_size}, "
          f"{args.threads} threads, torch {torch.__version__}, best of {args.repeats}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    head = f"{'backbone':<24}{'px':>5}{'batched maps/s':>16}{'per-pair maps/s':>17}{'ratio':>8}{'max |diff|':>12}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['backbone']:<24}{r['size']:>5}{r['batched_per_s']:>16.1f}{r['per_image_per_s']:>17.1f}"
              f"{r['speedup']:>7.1f}x{r['max_abs_diff']:>12.1e}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
