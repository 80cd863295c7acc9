"""``cost`` section: what grids/full.yaml costs, from measured per-image costs.

Per trial (backbone b, strategy s)::

    T(b, s) = E * m_s * N_train * c_train(b)            training: E epochs of the sampler's epoch
            + (E * N_val + N_test) * c_eval(b)          validation after every epoch, the held-out fold once
            + sum over CAM methods of (P_test + P_val) * c_cam(b, method)    Grad-CAM maps

    hours = sum over b, s of folds * seeds * T(b, s) / 3600      (on one device; / G on G devices)

with N_test = N / folds, N_val = val_fraction * (N - N_test), N_train = N - N_test - N_val, m_s the
sampler's epoch size over N_train (measured by fitting each strategy's sampler on the NIH labels),
and P the boxed (image, finding) pairs of the fold. Per-image costs come from the newest
``benchmarks/results/gpu-*.json`` written by benchmarks/gpu_check.py (GPU-seconds), else from this
machine's CPU measured here at the grid's image size (CPU-seconds, labelled as such).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.perf.common import REPO, Context, Result, Target, fmt, random_memmap

NIH = REPO.parent / "shared" / "data" / "nih-cxr14"
RESULTS = REPO / "benchmarks" / "results"
NIH_IMAGES, NIH_BOXED_PAIRS = 112_120, 983   # fallbacks when the label / box files are not beside the repo
GPU_COMMAND = "python benchmarks/gpu_check.py"  # on the GPU node; then `bench perf --only gpu,cost` renders it


def latest_gpu_results(folder: Path = RESULTS) -> tuple[Path, dict] | None:
    """The newest GPU results file (by its recorded date), or None."""
    found = []
    for f in folder.glob("gpu-*.json"):
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("backbones") and doc.get("device", "cuda") == "cuda":  # not a --device cpu smoke test
            found.append((str(doc.get("date", "")), f, doc))
    if not found:
        return None
    _, f, doc = max(found, key=lambda t: (t[0], str(t[1])))
    return f, doc


def nih_labels() -> tuple[np.ndarray | None, int]:
    """The full NIH label matrix (N, 14) from the official label file, and the boxed (image, finding) pairs."""
    import pandas as pd

    from bench.data.labels import NIH_LABELS

    y, pairs = None, NIH_BOXED_PAIRS
    for name in ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"):
        if (NIH / name).is_file():
            df = pd.read_csv(NIH / name, usecols=["Finding Labels"])
            y = df["Finding Labels"].str.get_dummies(sep="|").reindex(columns=list(NIH_LABELS), fill_value=0)
            y = y.to_numpy(np.float64)
            break
    if (NIH / "BBox_List_2017.csv").is_file():
        b = pd.read_csv(NIH / "BBox_List_2017.csv", usecols=[0, 1])
        pairs = int(len(b.drop_duplicates()))
    return y, pairs


def sampler_factors(strategies, y: np.ndarray | None, *, n_sample: int, seed: int = 0) -> dict[str, float]:
    """Epoch size / training images for each strategy's sampler, fitted on ``n_sample`` NIH label rows."""
    from strategies import create_strategy

    rng = np.random.default_rng(seed)
    if y is None:
        prev = np.array([0.103, 0.025, 0.119, 0.177, 0.052, 0.056, 0.013, 0.047, 0.042, 0.021, 0.022, 0.015,
                         0.030, 0.002])
        y = (rng.random((n_sample, prev.size)) < prev).astype(np.float64)
    sub = y[rng.choice(len(y), size=min(n_sample, len(y)), replace=False)]
    out = {}
    for spec in strategies:
        s = create_strategy(spec)
        feats = rng.normal(size=(len(sub), 16)).astype(np.float32) if s.needs_features else None
        s.sampler.fit(sub, features=feats)
        out[s.name] = len(s.sampler.epoch_indices(np.random.default_rng(seed))) / len(sub)
    return out


def cpu_costs(backbone: str, size: int, *, quick: bool, threads: int, n_labels: int, methods) -> dict:
    """Seconds per image on this CPU at ``size`` px: training (engine), prediction, and per CAM map."""
    import tempfile
    import time

    import torch

    import backbones
    from bench import engine
    from bench.cam import compute_cams
    from bench.perf.train import engine_train

    batch = 4 if quick else 8
    n = batch * (1 if quick else 2)
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp:
        images = random_memmap(Path(tmp) / "x.npy", 2 * n, size)
        labels = (np.random.default_rng(1).random((2 * n, n_labels)) < 0.1).astype(np.float32)
        train = engine_train(backbone, images, labels, np.arange(n), epochs=2, batch_size=batch, threads=threads)
        torch.set_num_threads(threads)
        dev = engine.Device.resolve(gpu=0)
        model = backbones.create_model(backbone, n_labels)
        if dev.channels_last:
            model = model.to(memory_format=torch.channels_last)
        engine.predict_logits(model, images, np.arange(batch), batch_size=batch, dev=dev)  # warm-up
        t0 = time.perf_counter()
        engine.predict_logits(model, images, np.arange(2 * n), batch_size=2 * n, dev=dev)
        c_eval = (time.perf_counter() - t0) / (2 * n)
        x = engine.to_input(torch.from_numpy(np.array(images[:batch])), dev)
        cam = {}
        for method in methods:
            compute_cams(model, backbone, x[:1], [(0, 0)], method=method)  # warm-up
            t0 = time.perf_counter()
            compute_cams(model, backbone, x, [(i, 0) for i in range(batch)], method=method, batch_size=32)
            cam[method] = (time.perf_counter() - t0) / batch
        del images
    return {"train": 1 / train["per_epoch"][-1], "eval": c_eval, "cam": cam}


def gpu_costs(doc: dict, backbone: str, methods) -> dict | None:
    """Seconds per image / map from a gpu_check.py results file; parts it lacks are estimated (and listed)."""
    b = (doc.get("backbones") or {}).get(backbone) or {}
    ips = (b.get("engine") or {}).get("images_per_s")
    if not ips:
        return None
    cams = b.get("cam_maps_per_s") or {}
    estimated = []
    eval_ips = b.get("eval_images_per_s")
    if not eval_ips:
        eval_ips, estimated = 3 * ips, ["eval = train/3"]
    cam = {}
    for m in methods:
        if cams.get(m):
            cam[m] = 1 / cams[m]
        else:
            cam[m], estimated = 2 / eval_ips, estimated + [f"{m} = 2 x eval"]
    return {"train": 1 / ips, "eval": 1 / eval_ips, "cam": cam, "estimated": estimated}


def run_cost(ctx: Context) -> Result:
    from bench.config import load_grid

    cfg = load_grid(REPO / "grids" / "full.yaml")
    size, E, F, S = cfg.dataset.image_size, cfg.train.epochs, cfg.splits.folds, len(cfg.seeds)
    methods = list(cfg.localisation.methods) if cfg.localisation.enabled else []
    y, pairs = nih_labels()
    N = len(y) if y is not None else NIH_IMAGES
    n_test = N / F
    n_val = cfg.splits.val_fraction * (N - n_test)
    n_train = N - n_test - n_val
    p_cam = pairs * (1 / F + cfg.splits.val_fraction * (1 - 1 / F))  # held-out + validation boxed pairs
    ctx.say(f"  fitting {len(cfg.strategies)} samplers on the NIH labels ...")
    factors = sampler_factors(cfg.strategies, y, n_sample=5_000 if ctx.quick else 20_000)

    found = latest_gpu_results()
    res = Result()
    unit = "GPU" if found else "CPU"
    costs = {}
    if found:
        path, doc = found
        source = (f"GPU per-image costs from `{path.relative_to(REPO)}` ({doc.get('card')}, {doc.get('date')}, "
                  f"bf16 autocast, channels_last, batch {doc.get('batch_size')}, {doc.get('num_workers')} loader workers)")
        for b in cfg.backbones:
            costs[b] = gpu_costs(doc, b, methods)
    else:
        source = (f"CPU per-image costs measured now on this machine ({ctx.threads} threads, fp32, {size} px): these "
                  f"are **CPU-hours**; the GPU figures await a GPU run: `{GPU_COMMAND}` on a GPU node (writes "
                  f"benchmarks/results/gpu-<card>-<date>.json; about 4 minutes), then `bench perf --only gpu,cost`")
        for b in cfg.backbones:
            ctx.say(f"  measuring {b} at {size} px on the CPU ...")
            costs[b] = cpu_costs(b, size, quick=ctx.quick, threads=ctx.threads, n_labels=14, methods=methods)
    m_sum = sum(factors.values())
    rows = [["backbone", "train ms/img", "eval ms/img", "CAM ms/map (" + ", ".join(methods) + ")",
             f"{unit}-hours per trial (bce)", f"{unit}-hours, all {len(factors)} strategies x {F} folds x {S} seeds"]]
    total = 0.0
    for b, c in costs.items():
        if c is None:
            rows.append([b, "-", "-", "-", "-", "not in the GPU results"])
            continue
        fixed = (E * n_val + n_test) * c["eval"] + sum(p_cam * c["cam"][m] for m in methods)
        per_trial = E * factors.get("bce", 1.0) * n_train * c["train"] + fixed
        hours = F * S * (E * m_sum * n_train * c["train"] + len(factors) * fixed) / 3600
        total += hours
        name = b + (f" (estimated: {', '.join(c['estimated'])})" if c.get("estimated") else "")
        rows.append([name, fmt(1e3 * c["train"]), fmt(1e3 * c["eval"]), ", ".join(fmt(1e3 * c["cam"][m]) for m in methods),
                     fmt(per_trial / 3600), fmt(hours)])
    rows.append(["**all**", "", "", "", "", f"**{fmt(total)}**"])
    n_trials = len(cfg.backbones) * len(factors) * F * S
    res.tables.append((f"{source}.", rows))
    device = f"one {doc.get('card')}" if found else f"this machine ({ctx.threads} threads)"
    res.targets.append(Target(f"full grid, {unit}-hours on {device}", total))
    res.targets.append(Target("full grid, wall-clock hours on eight of them", total / 8))
    res.ratios[f"{unit.lower()}_hours_total"] = total
    res.notes.append(f"Formula (per trial, backbone b, strategy s): `T = E*m_s*N_train*c_train(b) + (E*N_val + "
                     f"N_test)*c_eval(b) + sum_methods P*c_cam(b)`; total = `sum_b sum_s folds*seeds*T / 3600`. Here "
                     f"N = {N:,} images at {size} px, folds = {F}, seeds = {S}, E = {E} epochs, N_test = N/{F} = "
                     f"{n_test:,.0f}, N_val = {cfg.splits.val_fraction}*(N - N_test) = {n_val:,.0f}, N_train = "
                     f"{n_train:,.0f}, P = {p_cam:.0f} boxed (image, finding) pairs per trial (held-out + validation, "
                     f"of {pairs} in the box file) per CAM method ({', '.join(methods) or 'none'}); {n_trials:,} "
                     f"trials ({len(cfg.backbones)} backbones x {len(factors)} strategies x {F} folds x {S} seeds). "
                     f"On eight devices: the trials are independent and far more numerous than devices, so the wall-clock "
                     f"is the total / 8 (to within one trial's length).")
    res.notes.append("Epoch size per strategy, m_s = sampler rows / training rows (fitted on "
                     f"{'NIH labels' if y is not None else 'NIH-like synthetic labels'}): " +
                     ", ".join(f"{k} {v:.2f}" for k, v in factors.items()) + ".")
    res.notes.append(packing_note(found))
    return res


def packing_note(found) -> str:
    """What fractional-GPU packing saves, from the GPU results' packing runs."""
    if not found:
        return (f"Fractional-GPU packing (e.g. mobilenetv3_small_100 at `resources.gpu: 0.25`, 4 trials per card) "
                f"awaits a GPU run: `{GPU_COMMAND}` measures 1, 2 and 4 concurrent processes "
                f"of it at `num_gpus` 1, 0.5 and 0.25.")
    _, doc = found
    runs = (doc.get("packing") or {}).get("runs") or []
    base = next((r for r in runs if r.get("processes") == 1 and r.get("total_images_per_s")), None)
    if not base:
        return "Fractional-GPU packing: no packing measurement in the GPU results (" + \
            str((doc.get("packing") or {}).get("error") or "not run") + ")."
    parts = []
    for r in runs:
        if r.get("total_images_per_s"):
            k = r["total_images_per_s"] / base["total_images_per_s"]
            parts.append(f"{r['processes']} x gpu {r['gpu_fraction']:g}: {r['total_images_per_s']:,.0f} img/s in all "
                         f"({k:.2f}x, GPU-hours x {1 / k:.2f}, saving {1 - 1 / k:.0%})")
    return (f"Fractional-GPU packing of {(doc.get('packing') or {}).get('backbone')} on {doc.get('card')}: "
            + "; ".join(parts) + ". A backbone whose single trial leaves the card idle gains in proportion; the full "
            "grid's backbones are sized to use a whole card (`resources.gpu: 1`).")
