"""``eval`` section: the metrics and the patient bootstrap against naive per-label sklearn loops, and
batched Grad-CAM (``compute_cams``) against one library call per (image, finding) pair."""

from __future__ import annotations

import time

import numpy as np

from bench.perf.common import Context, Result, Target, best_of, fmt, ratio

# NIH ChestX-ray14 label prevalences (full label file), rounded: a realistic long tail.
NIH_PREVALENCE = (0.103, 0.025, 0.119, 0.177, 0.052, 0.056, 0.013, 0.047, 0.042, 0.021, 0.022, 0.015, 0.030,
                  0.002)


def synthetic_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, p, patients, thresholds): NIH-like labels, informative scores, 3.6 images per patient."""
    rng = np.random.default_rng(seed)
    prev = np.asarray(NIH_PREVALENCE)
    y = (rng.random((n, prev.size)) < prev).astype(np.float64)
    p = 1 / (1 + np.exp(-(rng.normal(size=y.shape) + 1.5 * y - 2.5)))
    patients = np.sort(rng.integers(0, max(1, int(n / 3.6)), n))
    return y, p, patients, np.full(prev.size, 0.3)


def naive_summary(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> dict:
    """The same numbers as ``summary_metrics`` from a plain per-label loop over sklearn."""
    from sklearn.metrics import average_precision_score, f1_score, recall_score, roc_auc_score

    per = {k: [] for k in ("auc", "ap", "f1", "f1_fixed", "sens", "spec")}
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        yj, pj = y[known, j].astype(int), p[known, j]
        if not 0 < yj.sum() < yj.size:
            continue
        d, d_fixed = (pj >= thresholds[j]).astype(int), (pj >= 0.5).astype(int)
        per["auc"].append(roc_auc_score(yj, pj))
        per["ap"].append(average_precision_score(yj, pj))
        per["f1"].append(f1_score(yj, d, zero_division=0.0))
        per["f1_fixed"].append(f1_score(yj, d_fixed, zero_division=0.0))
        per["sens"].append(recall_score(yj, d, zero_division=np.nan))
        per["spec"].append(recall_score(yj, d, pos_label=0, zero_division=np.nan))
    known = ~np.isnan(y)
    yk, pk, tk = y[known].astype(int), p[known], np.broadcast_to(thresholds, y.shape)[known]
    out = {f"macro_{k}": float(np.nanmean(v)) for k, v in per.items()}
    out.update(micro_auc=roc_auc_score(yk, pk), micro_ap=average_precision_score(yk, pk),
               micro_f1=f1_score(yk, (pk >= tk).astype(int), zero_division=0.0),
               micro_f1_fixed=f1_score(yk, (pk >= 0.5).astype(int), zero_division=0.0))
    return out


def naive_replicate(y: np.ndarray, p: np.ndarray, d: np.ndarray, w: np.ndarray) -> dict:
    """One bootstrap replicate the naive way: repeat each image by its weight, then sklearn per label."""
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    idx = np.repeat(np.arange(len(y)), w.astype(np.int64))
    yr, pr, dr = y[idx], p[idx], d[idx]
    aucs, aps, f1s = [], [], []
    for j in range(y.shape[1]):
        known = ~np.isnan(yr[:, j])
        yj = yr[known, j].astype(int)
        if 0 < yj.sum() < yj.size:
            aucs.append(roc_auc_score(yj, pr[known, j]))
            aps.append(average_precision_score(yj, pr[known, j]))
            f1s.append(f1_score(yj, dr[known, j].astype(int), zero_division=0.0))
    known = ~np.isnan(yr)
    return {"macro_auc": np.mean(aucs), "macro_ap": np.mean(aps), "macro_f1": np.mean(f1s),
            "micro_auc": roc_auc_score(yr[known].astype(int), pr[known]),
            "micro_ap": average_precision_score(yr[known].astype(int), pr[known]),
            "micro_f1": f1_score(yr[known].astype(int), dr[known].astype(int), zero_division=0.0)}


def metrics_rows(ctx: Context, res: Result) -> list[list[str]]:
    from reports.metrics import summary_metrics
    from reports.stats import bootstrap_macro_ci, patient_bootstrap_weights

    n = 20_000
    y, p, patients, thr = synthetic_scores(n)
    names = [f"l{j}" for j in range(y.shape[1])]
    repeats = 1 if ctx.quick else 3
    t_ours, ours = best_of(lambda: summary_metrics(y, p, thresholds=thr, label_names=names), repeats)
    t_naive, naive = best_of(lambda: naive_summary(y, p, thr), repeats)
    diff = max(abs(ours[k] - naive[k]) for k in ("macro_auc", "micro_auc", "macro_ap", "micro_ap", "macro_f1",
                                                  "micro_f1"))
    rows = [["measurement", "ours s", "baseline", "baseline s", "speed-up", "max abs difference"]]
    r_sum = ratio(t_naive, t_ours)
    rows.append([f"`summary_metrics`, {n:,} x {y.shape[1]}", fmt(t_ours), "per-label sklearn loop (same metrics)",
                 fmt(t_naive), f"**{r_sum:.2f}x**", f"{diff:.1e}"])
    res.ratios["summary_metrics_speedup"] = r_sum

    n_boot, n_naive = (200, 2) if ctx.quick else (1000, 5)
    d = (p >= thr).astype(np.float64)
    t_boot, ci = best_of(lambda: bootstrap_macro_ci(y, p, patients, decisions=d, n_boot=n_boot,
                                                    rng=np.random.default_rng(7), return_replicates=True), 1)
    weights = patient_bootstrap_weights(patients, n_boot=n_naive, rng=np.random.default_rng(7))
    t0 = time.perf_counter()
    reps = [naive_replicate(y, p, d, w) for w in weights]
    t_rep = (time.perf_counter() - t0) / n_naive
    diff = max(abs(reps[i][k] - ci["replicates"][k][i]) for i in range(n_naive) for k in reps[0])
    r_boot = ratio(t_rep * n_boot, t_boot)
    rows.append([f"`bootstrap_macro_ci`, {n:,} x {y.shape[1]}, {n_boot} patient replicates (6 metrics)",
                 fmt(t_boot), f"loop over replicates with sklearn ({n_naive} timed, {fmt(t_rep)} s each, "
                 f"extrapolated to {n_boot})", fmt(t_rep * n_boot), f"**{r_boot:.0f}x**", f"{diff:.1e}"])
    res.ratios["bootstrap_speedup"] = r_boot
    res.targets.append(Target(f"bootstrap_macro_ci speed-up vs naive loop ({n_boot} replicates)", r_boot))
    return rows


def cam_rate(backbone: str, size: int, *, n_images: int, n_classes: int, repeats: int) -> dict:
    """Batched vs per-pair Grad-CAM maps/s on random weights and images (as benchmarks/cam_throughput.py)."""
    import torch

    import backbones
    from bench import seeding
    from bench.cam import compute_cams, compute_cams_per_image

    seeding.seed_torch("perf-cam", backbone)
    model = backbones.create_model(backbone, num_classes=14).eval()
    images = torch.randn(n_images, 1, size, size, generator=seeding.torch_generator("perf-cam", size))
    targets = [(row, cls) for row in range(n_images) for cls in range(n_classes)]
    compute_cams(model, backbone, images[:2], targets[:2])  # warm-up
    compute_cams_per_image(model, backbone, images[:2], targets[:2])
    t_b, batched = best_of(lambda: compute_cams(model, backbone, images, targets, batch_size=32), repeats)
    t_n, naive = best_of(lambda: compute_cams_per_image(model, backbone, images, targets), repeats)
    return {"pairs": len(targets), "batched": len(targets) / t_b, "naive": len(targets) / t_n,
            "diff": float(np.abs(batched - naive).max())}


def run_eval(ctx: Context) -> Result:
    import torch

    torch.set_num_threads(ctx.threads)
    res = Result()
    ctx.say("  metrics and bootstrap ...")
    res.tables.append(("Metrics on synthetic NIH-like scores (14 labels at NIH's prevalences, 3.6 images per "
                       "patient); times are the best of repeated runs; the differences compare the values:",
                       metrics_rows(ctx, res)))
    cases = [("resnet18", 64)] if ctx.quick else [("resnet18", 64), ("mobilenetv3_small_100", 64), ("resnet18", 224),
                                                   ("densenet121", 224)]
    n_images, n_classes = (6, 2) if ctx.quick else (32, 3)
    rows = [["backbone", "px", "(image, finding) pairs", "batched maps/s", "per-pair maps/s", "speed-up",
             "max abs difference"]]
    for name, size in cases:
        ctx.say(f"  Grad-CAM {name} at {size} px ...")
        r = cam_rate(name, size, n_images=n_images, n_classes=n_classes, repeats=1 if ctx.quick else 2)
        s = ratio(r["batched"], r["naive"])
        rows.append([name, str(size), str(r["pairs"]), fmt(r["batched"]), fmt(r["naive"]), f"**{s:.1f}x**",
                     f"{r['diff']:.1e}"])
        res.ratios[f"cam_{name}_{size}_speedup"] = s
        res.targets.append(Target(f"Grad-CAM batched / per-pair maps/s ({name}, {size} px)", s))
    res.tables.append((f"Grad-CAM throughput, `bench.cam.compute_cams` (batched per finding, batch 32) vs "
                       f"`compute_cams_per_image` (one library call per pair); {n_images} images x {n_classes} "
                       f"findings each, random weights, {ctx.threads} threads:", rows))
    return res
