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

from bench.perf.common import Context, Result, Target, fmt, ratio, torch_threads

# The engine's grayscale normalisation, restated (the baseline must not import the engine).
_MEAN, _STD = 0.449, 0.226


def summarise(per_epoch: list[tuple[int, float]]) -> dict:
    """Images/s over all epochs and over the epochs after the first (steady state: the first pays the
    process's one-time kernel set-up), from (images, seconds) per epoch."""
    images, seconds = sum(n for n, _ in per_epoch), sum(t for _, t in per_epoch)
    later = per_epoch[1:] or per_epoch
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds,
            "steady_images_per_s": sum(n for n, _ in later) / sum(t for _, t in later),
            "per_epoch": [n / t for n, t in per_epoch]}


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

    with torch_threads(threads):
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
        per_epoch = []
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
            per_epoch.append((seen, time.perf_counter() - t0))
    return summarise(per_epoch)


def engine_train(backbone: str, images: np.ndarray, y: np.ndarray, rows: np.ndarray, *, epochs: int,
                 batch_size: int, threads: int, seed: int = 0, lr: float = 1e-3, num_workers: int = 0) -> dict:
    """Train with :func:`bench.engine.train_epoch` over ``images[rows]`` (a memory map), CPU, in this
    process: the trial's code path without Ray. Same return as :func:`plain_train`."""
    import torch

    import backbones
    from bench import engine, seeding

    with torch_threads(threads):
        dev = engine.Device.resolve(gpu=0)
        seeding.seed_torch("perf-engine", backbone, seed)
        model = backbones.create_model(backbone, y.shape[1])
        if dev.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = engine.make_optimizer(model, name="adamw", lr=lr, weight_decay=1e-4)
        loss = torch.nn.BCEWithLogitsLoss()
        rng = seeding.numpy_rng("perf-engine-order", seed)
        per_epoch = []
        for _ in range(epochs):
            s = engine.train_epoch(model, images, y, rows[rng.permutation(len(rows))], loss_fn=loss, optimizer=opt,
                                   batch_size=batch_size, dev=dev, num_workers=num_workers)
            per_epoch.append((s["images"], s["seconds"]))
    return summarise(per_epoch)


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
    from bench.runfolder import RunFolder, TrialFolder

    folder = RunFolder(run_dir)
    [trial] = list(folder.trials_dir.iterdir())
    doc = json.loads(TrialFolder(trial).metrics.read_text())
    hist = doc["history"]
    out = {"id": trial.name, **summarise([(h["train_images"], h["train_seconds"]) for h in hist]),
           "train_seconds": sum(h["train_seconds"] for h in hist),
           "eval_seconds": doc["timing"]["eval_seconds"], "localisation_seconds": doc["timing"]["localisation_seconds"]}
    iters = sorted((json.loads(line) for f in folder.tune_dir.rglob("result.json") if f.parent.name == trial.name
                    for line in f.read_text().splitlines() if line.strip()), key=lambda d: d["training_iteration"])
    out["ray_trial_seconds"] = float(iters[-1]["time_total_s"]) if iters else float("nan")
    # Per-epoch validation + checkpoint: an iteration's time beyond its training, for the middle epochs;
    # the first iteration also holds the worker's set-up (imports, model, data), the last the evaluation.
    middle = [d["time_this_iter_s"] - d["train_seconds"] for d in iters[1:-1]]
    extra = float(np.median(middle)) if middle else 0.0
    out["setup_seconds"] = (iters[0]["time_this_iter_s"] - iters[0]["train_seconds"] - extra) if iters else float("nan")
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


def overhead_case(ctx: Context, out: Path, name: str, *, threads: int, epochs: int, batch: int = 64):
    """plain loop, engine, the 1-trial grid on a fresh local Ray, plain loop again; returns the table
    row, the wall-clock split row, the Ray worker's thread settings and the ratios."""
    import ray

    from bench import tuner
    from bench.run import prepare_data, run_grid

    quiet = lambda s: None  # noqa: E731
    cfg = ctx.grid(name=f"perf-overhead-{name}", backbones=[name], strategies=["bce"],
                   train={"epochs": epochs, "batch_size": batch}, resources={"cpu": threads, "gpu": 0})
    rec, cache, manifest = prepare_data(cfg, say=quiet)
    train = manifest.rows(0)[0]
    images = cache.open_for(rec.image_ids)  # as the trial opens it
    x_train = np.asarray(images[train])
    ctx.say(f"  {name}: {len(train)} training images at {cfg.dataset.image_size} px, {epochs} epochs, batch {batch}, "
            f"{threads} thread(s)")
    plain1 = plain_train(name, x_train, rec.labels[train], epochs=epochs, batch_size=batch, threads=threads,
                         channels_last=True)
    eng = engine_train(name, images, rec.labels, train, epochs=epochs, batch_size=batch, threads=threads)
    if ray.is_initialized():
        ray.shutdown()
    t0 = time.perf_counter()
    tuner.init_ray()
    ray_start = time.perf_counter() - t0
    try:
        probe = ray_worker_threads(threads)
        t0 = time.perf_counter()
        with first_trial_only():
            outcome = run_grid(None, cfg=cfg, out=out, say=quiet)
        grid_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    if outcome.errors:
        raise RuntimeError(f"the 1-trial grid failed: {outcome.errors}")
    trial = trial_timings(out)
    plain2 = plain_train(name, x_train, rec.labels[train], epochs=epochs, batch_size=batch, threads=threads,
                         channels_last=True)
    base = (plain1["steady_images_per_s"] + plain2["steady_images_per_s"]) / 2
    base_all = (plain1["images_per_s"] + plain2["images_per_s"]) / 2
    wall = ray_start + grid_s
    r = {"ray_vs_plain": ratio(trial["steady_images_per_s"], base),
         "engine_vs_plain": ratio(eng["steady_images_per_s"], base),
         "ray_vs_plain_all_epochs": ratio(trial["images_per_s"], base_all),
         "end_to_end": ratio(trial["images"] / base_all, wall)}
    row = [name, str(threads), f"{fmt(plain1['steady_images_per_s'])} / {fmt(plain2['steady_images_per_s'])}",
           fmt(eng["steady_images_per_s"]), fmt(trial["steady_images_per_s"]), f"**{r['ray_vs_plain']:.2f}**",
           f"{r['engine_vs_plain']:.2f}", f"{r['ray_vs_plain_all_epochs']:.2f}", fmt(wall), f"{r['end_to_end']:.2f}"]
    other = trial["ray_trial_seconds"] - trial["setup_seconds"] - trial["train_seconds"] - trial["eval_seconds"] - \
        trial["localisation_seconds"]
    split = [name, str(threads), fmt(ray_start), fmt(grid_s - trial["ray_trial_seconds"]), fmt(trial["setup_seconds"]),
             fmt(trial["train_seconds"]), fmt(other), fmt(trial["eval_seconds"]), fmt(trial["localisation_seconds"]),
             fmt(wall)]
    ctx.say(f"  {name}, {threads} thread(s): plain {base:.0f} img/s, engine {eng['steady_images_per_s']:.0f}, on Ray "
            f"{trial['steady_images_per_s']:.0f} (per epoch {', '.join(f'{v:.0f}' for v in trial['per_epoch'])}); "
            f"Ray / plain {r['ray_vs_plain']:.2f}; wall {wall:.1f}s")
    return row, split, probe, r


def run_overhead(ctx: Context) -> Result:
    """The overhead section: mobilenetv3_small_100 (and, in full mode, resnet18 and one thread) at 48 px."""
    T = ctx.threads
    cases = [("mobilenetv3_small_100", T)] if ctx.quick else \
        [("mobilenetv3_small_100", T), ("resnet18", T)] + ([("mobilenetv3_small_100", 1)] if T > 1 else [])
    epochs = 3 if ctx.quick else 5
    work = ctx.section_dir("overhead")
    rows = [["backbone", "threads", "plain loop img/s (before / after)", "engine, no Ray img/s",
             "bench on Ray Tune img/s", "**Ray / plain**", "engine / plain", "Ray / plain, all epochs",
             "trial wall s (incl. Ray start)", "end-to-end ratio"]]
    split_rows = [["backbone", "threads", "Ray start", "driver: data, scheduling, output copy",
                   "worker set-up (imports, model, data)", "training", "per-epoch validation + checkpoints",
                   "evaluation", "Grad-CAM", "total"]]
    res = Result()
    probes = {}
    for name, threads in cases:
        row, split, probe, r = overhead_case(ctx, work / f"{name}-{threads}t", name, threads=threads, epochs=epochs)
        rows.append(row)
        split_rows.append(split)
        probes[threads] = probe
        case = f"{name}@{threads}t"
        res.ratios.update({f"{case}.{k}": v for k, v in r.items()})
        res.targets.append(Target(f"{name}, {threads} thread(s): trial training img/s on Ray Tune / plain loop",
                                  r["ray_vs_plain"], ">= 0.95", r["ray_vs_plain"] >= 0.95))
        res.targets.append(Target(f"{name}, {threads} thread(s): plain-loop time for the trial's training images "
                                  "/ trial wall-clock", r["end_to_end"]))
    res.tables.append((f"Training images/s of the same model, rows (fold 0's training part of the demo dataset, "
                       f"48 px), batch size 64, thread count and {epochs} epochs. *plain loop*: normalised tensors in "
                       "memory, shuffled batches, BCEWithLogits, AdamW, channels_last like the engine; run before "
                       "and after the Ray run, their mean is the baseline. *engine, no Ray*: "
                       "`bench.engine.train_epoch` over the memory-mapped uint8 cache, in this process. *bench on "
                       "Ray Tune*: the trial's own `train_images_per_s` (metrics.json history, which excludes Ray "
                       "start-up) of a 1-trial grid run by `bench.run.run_grid`. The ratios use the epochs after "
                       "the first (each process's first epoch pays one-time kernel set-up); *all epochs* includes "
                       "it. *End-to-end*: the plain loop's time for the trial's training images / the trial's "
                       "wall-clock (Ray start, scheduling, per-epoch validation and checkpoints, evaluation, "
                       "Grad-CAM).", rows))
    res.tables.append(("Where the trial's wall-clock went (seconds):", split_rows))
    for threads, probe in probes.items():
        res.notes.append(f"Inside a Ray worker given {threads} CPU(s) (a task with a trial's resources, before "
                         f"`run_trial` calls `torch.set_num_threads({threads})`): OMP_NUM_THREADS="
                         f"{probe.get('OMP_NUM_THREADS')}, torch threads {probe.get('torch_threads')}, inter-op "
                         f"threads {probe.get('interop_threads')}.")
    return res
