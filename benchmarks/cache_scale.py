"""The image cache's build rate per core, with 1 and 2 (or more) decoding processes.

Builds the cache (``bench.data.cache.build_cache``, a fresh cache folder each time) of real NIH PNGs
from ``../shared/data/nih-cxr14/images``: its 512-px images, and 1,024-px images, the size of the
full release. The shared subset holds no 1,024-px original (see ``../shared/data/README.md``):
unless ``--dir-1024`` names a folder of originals, the 1,024-px set is made from the 512-px images
upscaled with Lanczos into a temporary folder (removed afterwards) and labelled ``upscaled``.
Upscaled images compress better than real ones, so their decoding is somewhat cheaper. Each time
is the best of ``--repeats`` builds, end to end (the process pool's start-up included) and steady (from
the first finished chunk to the last), and per CPU-second of the builder and its processes (the rate
per core of an idle machine: it holds on a busy one). The full dataset's build time is projected from the
steady rate.

Usage::

    .venv/bin/python benchmarks/cache_scale.py [--workers 1,2] [--size 224] [--n-1024 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.data.cache import available_cores, build_cache
from bench.perf import best_of, machine

NIH_IMAGES = Path(__file__).resolve().parents[1].parent / "shared/data/nih-cxr14/images"
FULL_NIH = 112_120


def pngs_of_width(folder: Path, width: int, limit: int | None = None) -> list[Path]:
    """The PNGs in ``folder`` that are ``width`` px wide, in name order (at most ``limit``)."""
    from PIL import Image

    out = []
    for p in sorted(folder.glob("*.png")):
        with Image.open(p) as im:
            if im.size[0] == width:
                out.append(p)
        if limit and len(out) >= limit:
            break
    return out


def upscale(paths: list[Path], out: Path, width: int) -> list[Path]:
    """Lanczos-upscaled 8-bit grayscale copies of ``paths`` at ``width`` px, written into ``out``."""
    from PIL import Image

    made = []
    for p in paths:
        with Image.open(p) as im:
            big = im.convert("L").resize((width, width), Image.Resampling.LANCZOS)
        q = out / p.name
        big.save(q)
        made.append(q)
    return made


def records_of(paths: list[Path], root: Path):
    from bench.data.labels import Records  # not at the top: the decoding processes re-import this script

    n = len(paths)
    return Records(labels=np.zeros((n, 1), np.float32), label_names=("A",), image_ids=[p.name for p in paths],
                   paths=[str(p) for p in paths], patients=[p.name.split("_")[0] for p in paths], kind="bench",
                   root=str(root))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the pool's, once it has shut down):
    images per CPU-second is the rate per core on an idle machine, whatever else runs."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def rate(paths: list[Path], root: Path, *, size: int, workers: int, chunk: int, repeats: int, work: Path) -> dict:
    """A fresh cache build of ``paths`` at ``size`` px with ``workers`` processes, ``chunk`` images per task:
    images/s end to end (the pool's start-up included) and steady (from the first finished chunk to the
    last, as in a long build), the best of ``repeats`` builds each."""
    rec = records_of(paths, root)
    runs = []
    for k in range(repeats):
        folder, ticks = work / f"cache-{workers}-{k}", []
        cpu0 = cpu_seconds()
        try:
            cache = build_cache(rec, size, folder, workers=workers, chunk=chunk,
                                progress=lambda done, total: ticks.append((time.perf_counter(), done)))
            if cache.bad:
                raise RuntimeError(f"{len(cache.bad)} unreadable image(s): {list(cache.bad.values())[:3]}")
            used = json.loads((folder / f"{cache.key}.json").read_text())["workers"]
            if used != workers:
                raise RuntimeError(f"the build used {used} worker(s), not {workers}: too few chunks; lower --chunk")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        (t_first, d_first), (t_last, d_last) = ticks[0], ticks[-1]
        if d_last - d_first < len(paths) / 2:
            raise RuntimeError(f"too few chunks ({len(ticks)}) to time the steady rate; lower --chunk")
        runs.append((cache.seconds, (d_last - d_first) / (t_last - t_first), cpu_seconds() - cpu0))
    seconds, steady, cpu = min(r[0] for r in runs), max(r[1] for r in runs), min(r[2] for r in runs)
    return {"images": len(paths), "workers": workers, "chunk": chunk, "seconds": round(seconds, 3),
            "images_per_s": round(len(paths) / seconds, 1), "steady_images_per_s": round(steady, 1),
            "steady_images_per_s_per_worker": round(steady / workers, 1), "cpu_s": round(cpu, 2),
            "images_per_cpu_s": round(len(paths) / cpu, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2", help="decoding process counts, comma-separated")
    ap.add_argument("--size", type=int, default=224, help="cache size in pixels")
    ap.add_argument("--images", type=Path, default=NIH_IMAGES, help="folder of NIH PNGs")
    ap.add_argument("--n-512", type=int, default=0, help="512-px images to use (0 = all)")
    ap.add_argument("--n-1024", type=int, default=200, help="1,024-px images to use")
    ap.add_argument("--dir-1024", type=Path, help="a folder of 1,024-px originals (else upscaled 512-px images)")
    ap.add_argument("--chunk", type=int, default=32, help="images per task of the decoding pool")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    workers = [int(w) for w in args.workers.split(",")]
    if not args.images.is_dir():
        print(f"error: no NIH images at {args.images}", file=sys.stderr)
        return 2
    load0, t0 = os.getloadavg()[0], time.time()
    work = Path(tempfile.mkdtemp(prefix="cache-scale-"))
    try:
        sets = {"nih-512": (pngs_of_width(args.images, 512, args.n_512 or None), args.images)}
        if args.dir_1024:
            sets["nih-1024"] = (pngs_of_width(args.dir_1024, 1024, args.n_1024), args.dir_1024)
        else:
            src = sets["nih-512"][0][: args.n_1024]
            (work / "up").mkdir()
            sets["nih-1024-upscaled"] = (upscale(src, work / "up", 1024), work / "up")
        rows = []
        for name, (paths, root) in sets.items():
            if not paths:
                raise SystemExit(f"error: no images for {name}")
            for w in workers:
                rows.append({"source": name, "size": args.size, **rate(paths, root, size=args.size, workers=w, chunk=args.chunk,
                                                                       repeats=args.repeats, work=work)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {"machine": {**machine(), "available_cores": available_cores()}, "load_before": round(load0, 2),
           "load_after": round(os.getloadavg()[0], 2), "seconds": round(time.time() - t0, 1), "results": rows,
           "speedup": {}, "full_dataset_hours": {}}
    for name in sets:
        by = {r["workers"]: r for r in rows if r["source"] == name}
        if 1 in by:
            out["speedup"][name] = {w: round(r["steady_images_per_s"] / by[1]["steady_images_per_s"], 2)
                                    for w, r in by.items()}
        best = max(by.values(), key=lambda r: r["steady_images_per_s"])
        out["full_dataset_hours"][name] = {"workers": best["workers"],
                                           "hours": round(FULL_NIH / best["steady_images_per_s"] / 3600, 2)}
    if args.json:
        print(json.dumps(out))
    else:
        for r in rows:
            print(f"{r['source']:>18}  {r['images']:>4} images -> {r['size']} px  {r['workers']} worker(s): "
                  f"{r['images_per_s']:7.1f} images/s end to end, steady {r['steady_images_per_s']:7.1f} "
                  f"({r['steady_images_per_s_per_worker']:.1f} per worker); {r['images_per_cpu_s']:.1f} per CPU-second")
        print(f"speed-up: {out['speedup']}; full dataset ({FULL_NIH:,} images): {out['full_dataset_hours']}")
        print(f"load average {out['load_before']} -> {out['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
