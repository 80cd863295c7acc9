"""``data`` section: reading an epoch from the uint8 cache vs decoding the PNGs, and the loader
(``engine.iterate`` in random order + the training step's uint8 -> float normalisation) vs the
training speed of the smallest backbones."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.perf.common import REPO, Context, Result, Target, best_of, fmt, random_memmap, ratio

NIH_SUBSET = REPO.parent / "shared" / "data" / "nih-cxr14"


def best_rate(fn, n_items: int, repeats: int) -> float:
    """Items per second of ``fn()`` (which handles ``n_items``), best of ``repeats`` runs."""
    return n_items / best_of(fn, repeats)[0]


def decode_rate(paths, size: int) -> float:
    """Images/s of decoding and resizing ``paths`` one after another, as the cache builder does per thread."""
    from bench.data.cache import resize_gray
    from bench.data.images import load_gray

    def run():
        for p in paths:
            resize_gray(load_gray(p), size)

    return best_rate(run, len(paths), 1)


def loader_rates(images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int, repeats: int) -> tuple[float, float]:
    """(cache read, cache read + normalisation) images/s over every row of ``images`` in random order."""
    import torch

    from bench import engine, seeding

    dev = engine.Device.resolve(gpu=0)
    rows = seeding.numpy_rng("perf-data", seed).permutation(len(images))

    def read():
        for x, _ in engine.iterate(images, labels, rows, batch_size):
            pass

    def read_normalise():
        with torch.no_grad():
            for x, y in engine.iterate(images, labels, rows, batch_size):
                engine.to_input(x, dev)
                y.to(dev.device)

    return best_rate(read, len(rows), repeats), best_rate(read_normalise, len(rows), repeats)


def train_rate(backbone: str, images: np.ndarray, labels: np.ndarray, rows: np.ndarray, *, threads: int,
               batch_size: int) -> float:
    """Training images/s of ``engine.train_epoch`` (second of two epochs: the first warms up)."""
    from bench.perf.train import engine_train

    r = engine_train(backbone, images, labels, rows, epochs=2, batch_size=batch_size, threads=threads)
    return r["per_epoch"][-1]


def run_data(ctx: Context) -> Result:
    from bench.run import prepare_data

    cfg = ctx.grid(name="perf-data")
    rec, cache, _ = prepare_data(cfg, say=lambda s: None)
    size, batch = cfg.dataset.image_size, cfg.train.batch_size
    images = cache.open()
    labels = np.nan_to_num(rec.labels.astype(np.float32))
    n_dec = 150 if ctx.quick else len(rec)
    paths = list(rec.paths[:n_dec])
    ctx.say(f"  decoding {len(paths)} PNGs ({cfg.dataset.size} px) to {size} px ...")
    dec = decode_rate(paths, size)
    read, loader = loader_rates(images, labels, batch_size=batch, seed=0, repeats=2 if ctx.quick else 3)
    n_train = 256 if ctx.quick else 640
    rows_train = np.arange(min(n_train, len(rec)))
    trains = {}
    for name in ("mobilenetv3_small_100", "test_resnet"):
        ctx.say(f"  training {name} on {len(rows_train)} images ...")
        trains[name] = train_rate(name, images, labels, rows_train, threads=ctx.threads, batch_size=batch)
    res = Result()
    table = [["measurement", "images/s", "baseline", "baseline images/s", "ratio", "target"]]
    r_cache = ratio(read, dec)
    table.append([f"one epoch read from the cache ({len(images)} images, {size} px, random order, batches of {batch})",
                  fmt(read), f"PNG decode + resize ({cfg.dataset.size} -> {size} px, one thread, as the cache "
                  "builder per thread)", fmt(dec), f"**{r_cache:,.0f}x**", ""])
    res.ratios["cache_vs_decode"] = r_cache
    res.targets.append(Target("cache read / PNG decode (images/s)", r_cache))
    for name, rate in trains.items():
        r = ratio(loader, rate)
        target = ">= 5" if name == "mobilenetv3_small_100" else ""
        table.append([f"loader: `engine.iterate` + uint8 -> float normalisation ({size} px)", fmt(loader),
                      f"`{name}` training (engine, {ctx.threads} threads, batch {batch})", fmt(rate),
                      f"**{r:,.1f}x**", target])
        res.ratios[f"loader_vs_{name}"] = r
        if target:
            res.targets.append(Target(f"loader / {name} training (images/s, {size} px)", r, target, r >= 5))

    # The GPU case: 224 px, where one loader process must keep up with a GPU.
    n224 = 256 if ctx.quick else 1024
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp:
        big = random_memmap(Path(tmp) / "x.npy", n224, 224)
        read224, loader224 = loader_rates(big, np.zeros((n224, labels.shape[1]), np.float32), batch_size=batch,
                                          seed=1, repeats=2)
        del big
    table.append([f"loader at 224 px ({n224} images in a memory map, one process)", fmt(loader224), "cache read "
                  "alone at 224 px", fmt(read224), f"{ratio(loader224, read224):.2f}x", ""])
    res.ratios["loader224_vs_read224"] = ratio(loader224, read224)
    nih = sorted((NIH_SUBSET / "images").glob("*.png")) if (NIH_SUBSET / "images").is_dir() else []
    big_png = [p for p in nih if p.stat().st_size > 40_000][: (20 if ctx.quick else 100)]
    if big_png:
        dec224 = decode_rate([str(p) for p in big_png], 224)
        table.append(["loader at 224 px (as above)", fmt(loader224), f"NIH PNG decode + resize (512 -> 224 px, "
                      f"{len(big_png)} real images, one thread)", fmt(dec224), f"**{ratio(loader224, dec224):,.0f}x**",
                      ""])
        res.ratios["loader224_vs_nih_decode"] = ratio(loader224, dec224)
    res.tables.append(("", table))
    res.notes.append(f"All on the demo dataset ({len(rec)} synthetic images) unless stated. Released NIH PNGs are "
                     "1024 px: decoding them costs about 4x the 512 px subset's, so the cache's advantage on the full "
                     "dataset is larger still. At 224 px one loader process (no workers) is the ceiling of a GPU "
                     "trial fed without DataLoader workers (`train.num_workers: 0`); with workers it scales with them.")
    return res
