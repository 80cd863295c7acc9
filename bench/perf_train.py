"""Training throughput: an independent plain-PyTorch loop (the baseline), our engine, and the
``overhead`` section (a 1-trial grid through ``bench`` on Ray Tune against the plain loop).

The plain loop is deliberately written without :mod:`bench.engine`: the images are normalised
float tensors in memory, batches are shuffled index gathers, the loss is BCEWithLogits and the
optimizer AdamW, in one process with a fixed torch thread count.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np

from bench.perf import Context, Result, Target, fmt, ratio

# The engine's grayscale normalisation, restated (the baseline must not import the engine).
_MEAN, _STD = 0.449, 0.226


def plain_train(backbone: str, x_u8: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, threads: int,
                channels_last: bool, seed: int = 0, lr: float = 1e-3) -> dict:
    """Train ``backbone`` on in-memory images with a minimal loop; images/s per epoch and overall.

    ``x_u8`` (N, S, S) uint8 is normalised once, before timing; incomplete last batches are dropped
    (as the engine does). ``channels_last`` sets the model's and the inputs' memory format.

    >>> r = plain_train("test_resnet", np.zeros((8, 32, 32), np.uint8), np.zeros((8, 2)), epochs=1,
    ...                 batch_size=4, threads=1, channels_last=False)  # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F

    import backbones
    from bench import seeding

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seeding.seed_torch("perf-plain", backbone, seed)
        model = backbones.create_model(backbone, y.shape[1])
        x = torch.from_numpy(np.ascontiguousarray(x_u8)).unsqueeze(1).float().div_(255.0).sub_(_MEAN).div_(_STD)
        target = torch.from_numpy(np.nan_to_num(np.asarray(y, dtype=np.float32)))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        gen = seeding.torch_generator("perf-plain-order", seed)
        model.train()
        per_epoch, images, seconds = [], 0, 0.0
        for _ in range(epochs):
            t0, seen = time.perf_counter(), 0
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x) - batch_size + 1, batch_size):
                idx = order[i:i + batch_size]
                loss = F.binary_cross_entropy_with_logits(model(x[idx]), target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                seen += len(idx)
            dt = time.perf_counter() - t0
            per_epoch.append(seen / dt)
            images, seconds = images + seen, seconds + dt
    finally:
        torch.set_num_threads(previous)
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds, "per_epoch": per_epoch}


def engine_train(backbone: str, images: np.ndarray, y: np.ndarray, rows: np.ndarray, *, epochs: int,
                 batch_size: int, threads: int, seed: int = 0, lr: float = 1e-3, num_workers: int = 0) -> dict:
    """Train with :func:`bench.engine.train_epoch` over ``images[rows]`` (a memory map), CPU, in this
    process: the trial's code path without Ray. Same return as :func:`plain_train`."""
    import torch

    import backbones
    from bench import engine, seeding

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dev = engine.Device.resolve(gpu=0)
        seeding.seed_torch("perf-engine", backbone, seed)
        model = backbones.create_model(backbone, y.shape[1])
        if dev.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = engine.make_optimizer(model, name="adamw", lr=lr, weight_decay=1e-4)
        loss = torch.nn.BCEWithLogitsLoss()
        rng = seeding.numpy_rng("perf-engine-order", seed)
        per_epoch, n, seconds = [], 0, 0.0
        for _ in range(epochs):
            s = engine.train_epoch(model, images, y, rows[rng.permutation(len(rows))], loss_fn=loss, optimizer=opt,
                                   batch_size=batch_size, dev=dev, num_workers=num_workers)
            per_epoch.append(s["images_per_s"])
            n, seconds = n + s["images"], seconds + s["seconds"]
    finally:
        torch.set_num_threads(previous)
    return {"images": n, "seconds": seconds, "images_per_s": n / seconds, "per_epoch": per_epoch}


def ray_worker_threads(cpus: int) -> dict:
    """OMP_NUM_THREADS and torch's thread counts inside a Ray worker given ``cpus`` CPUs (before
    ``run_trial`` sets its own), from a task with the same resources as a trial."""
    import ray

    @ray.remote(num_cpus=cpus)
    def probe() -> dict:
        import os

        import torch

        return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch_threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads()}

    return ray.get(probe.remote(), timeout=120)


def trial_timings(run_dir: Path) -> dict:
    """The one trial's measured numbers from its run folder: training history, evaluation and
    localisation seconds (metrics.json), Ray's time_total_s (its result.json)."""
    [trial] = list((run_dir / "trials").iterdir())
    doc = json.loads((trial / "metrics.json").read_text())
    hist = doc["history"]
    out = {"id": trial.name, "images": sum(h["train_images"] for h in hist),
           "train_seconds": sum(h["train_seconds"] for h in hist),
           "per_epoch": [h["train_images_per_s"] for h in hist],
           "eval_seconds": doc["timing"]["eval_seconds"], "localisation_seconds": doc["timing"]["localisation_seconds"]}
    out["images_per_s"] = out["images"] / out["train_seconds"]
    totals = [float(json.loads(line).get("time_total_s", "nan"))
              for f in (run_dir / "tune").rglob("result.json") if f.parent.name == trial.name
              for line in f.read_text().splitlines() if line.strip()]
    total = max(totals) if totals else float("nan")
    out["ray_trial_seconds"] = total
    return out


@contextlib.contextmanager
def first_trial_only():
    """A grid expands to every fold; this limits ``bench.run.run_grid`` to the first trial (fold 0),
    which then runs exactly as it would in the grid."""
    from bench import run

    expand = run.expand
    run.expand = lambda cfg: expand(cfg)[:1]
    try:
        yield
    finally:
        run.expand = expand


def run_overhead(ctx: Context) -> Result:
    """One-trial grids through ``bench.run.run_grid`` on a local Ray vs the plain loop (before and after)."""
    import ray

    from bench import tuner
    from bench.run import prepare_data, run_grid

    names = ["mobilenetv3_small_100"] if ctx.quick else ["mobilenetv3_small_100", "resnet18"]
    epochs, threads, batch = (2 if ctx.quick else 4), ctx.threads, 64
    work = ctx.section_dir("overhead")
    quiet = lambda s: None  # noqa: E731
    rows = [["backbone", "plain loop img/s (before / after)", "engine, no Ray img/s", "bench on Ray Tune img/s",
             "ratio Ray / plain", "ratio engine / plain", "trial wall s (incl. Ray start)",
             "ratio end-to-end"]]
    split_rows = [["backbone", "Ray start s", "driver + scheduling s", "training s", "validation, checkpoints, "
                   "setup s", "evaluation s", "Grad-CAM s", "total s"]]
    res = Result()
    probe = {}
    for name in names:
        cfg = ctx.grid(name=f"perf-overhead-{name}", backbones=[name], strategies=["bce"],
                       train={"epochs": epochs, "batch_size": batch}, resources={"cpu": threads, "gpu": 0})
        rec, cache, manifest = prepare_data(cfg, say=quiet)
        train = manifest.rows(0)[0]
        images = cache.open()[cache.rows_for(rec.image_ids)] if len(cache.bad) else cache.open()
        x_train = np.asarray(images[train])
        ctx.say(f"  {name}: {len(train)} training images at {cfg.dataset.image_size} px, {epochs} epochs, batch {batch}, "
                f"{threads} threads")
        plain1 = plain_train(name, x_train, rec.labels[train], epochs=epochs, batch_size=batch, threads=threads,
                             channels_last=True)
        eng = engine_train(name, images, rec.labels, train, epochs=epochs, batch_size=batch, threads=threads)
        t0 = time.perf_counter()
        tuner.init_ray()
        ray_start = time.perf_counter() - t0
        if not probe:
            probe = ray_worker_threads(threads)
        with first_trial_only():
            outcome = run_grid(None, cfg=cfg, out=work / name, say=quiet)
        if outcome.errors:
            raise RuntimeError(f"the 1-trial grid failed: {outcome.errors}")
        ray.shutdown()
        trial = trial_timings(work / name)
        plain2 = plain_train(name, x_train, rec.labels[train], epochs=epochs, batch_size=batch, threads=threads,
                             channels_last=True)
        base = (plain1["images_per_s"] + plain2["images_per_s"]) / 2
        wall = ray_start + outcome.seconds
        e2e = ratio(trial["images"] / base, wall)
        r_ray, r_eng = ratio(trial["images_per_s"], base), ratio(eng["images_per_s"], base)
        rows.append([name, f"{fmt(plain1['images_per_s'])} / {fmt(plain2['images_per_s'])}", fmt(eng["images_per_s"]),
                     fmt(trial["images_per_s"]), f"**{r_ray:.2f}**", f"{r_eng:.2f}", fmt(wall), f"{e2e:.2f}"])
        other = trial["ray_trial_seconds"] - trial["train_seconds"] - trial["eval_seconds"] - trial["localisation_seconds"]
        split_rows.append([name, fmt(ray_start), fmt(outcome.seconds - trial["ray_trial_seconds"]),
                           fmt(trial["train_seconds"]), fmt(other), fmt(trial["eval_seconds"]),
                           fmt(trial["localisation_seconds"]), fmt(wall)])
        res.ratios[f"{name}.ray_vs_plain"] = r_ray
        res.ratios[f"{name}.engine_vs_plain"] = r_eng
        res.ratios[f"{name}.end_to_end"] = e2e
        res.targets.append(Target(f"{name}: trial training img/s on Ray Tune / plain loop", r_ray, ">= 0.95",
                                  r_ray >= 0.95))
        res.targets.append(Target(f"{name}: plain-loop training time / trial wall-clock incl. Ray start", e2e))
        ctx.say(f"  {name}: plain {base:.0f} img/s, engine {eng['images_per_s']:.0f}, on Ray "
                f"{trial['images_per_s']:.0f} (per epoch {', '.join(f'{v:.0f}' for v in trial['per_epoch'])}); "
                f"ratio {r_ray:.2f}; wall {wall:.1f}s")
    res.tables.append(("Training images/s of the same model, data (fold 0's training rows of the demo dataset), "
                       "batch size, thread count and number of epochs. *plain loop*: normalised tensors in "
                       "memory, shuffled batches, BCEWithLogits, AdamW, channels_last like the engine, run before "
                       "and after the Ray run (their mean is the baseline). *engine, no Ray*: "
                       "`bench.engine.train_epoch` over the memory-mapped uint8 cache in this process. *bench on "
                       "Ray Tune*: the trial's own `train_images_per_s` (metrics.json history: Ray start-up "
                       "excluded) of a 1-trial grid run with `bench.run.run_grid`. *end-to-end*: the plain loop's "
                       "time for the trial's training images / the trial's wall-clock (Ray start, scheduling, "
                       "per-epoch validation and checkpoints, evaluation, Grad-CAM).", rows))
    res.tables.append(("Where the trial's wall-clock went (seconds):", split_rows))
    res.notes.append(f"Inside a Ray worker with {threads} CPUs (a task with a trial's resources, before `run_trial` "
                     f"calls `torch.set_num_threads({threads})`): OMP_NUM_THREADS={probe.get('OMP_NUM_THREADS')}, "
                     f"torch threads {probe.get('torch_threads')}, inter-op threads {probe.get('interop_threads')}.")
    return res
