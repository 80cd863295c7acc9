"""Known answer: how many optimiser steps AUC-M with PESG needs before it ranks better than chance.

AUC-M (:class:`strategies.auc_margin.AUCM`) starts, as LibAUC's does, from a = b = alpha = 0 while the
sigmoid scores start near 0.5. Until the dual variable alpha has grown, the loss is dominated by its two
squared terms, ``(1-p)(h-a)^2`` on positives and ``p(h-b)^2`` on negatives: both pull every score towards
a = b = 0, and the positives' pull is (1-p)/p times stronger per image, so the positives' scores fall
*faster* and the ranking drops *below* chance. alpha's projected ascent adds at most about
``lr * 2 p (1-p) m / L`` per step (L labels, the loss being their mean), so on NIH-like prevalences it needs
hundreds of steps before the margin term takes over. LibAUC trains for thousands (CheXpert: about 6,000 steps
per epoch at batch 32); a grid of 1,000 images and 5 epochs gives AUC-M about 60.

The simulation: a multi-label problem whose labels are logistic in 64 Gaussian features (so it is learnable:
the true scores' macro AUC is high), 14 labels with NIH's prevalences, 768 training images (the longtail grid's
training part), a two-layer MLP trained with AUC-M + PESG at LibAUC's defaults and, for comparison, with BCE +
Adam (lr 2e-3, the longtail grid's). Each row: the macro AUC on fresh test images after ``step`` steps, and
AUC-M's mean alpha.

Usage::

    .venv/bin/python benchmarks/aucm_steps.py --json             # 3 seeds, up to 3,000 steps
    .venv/bin/python benchmarks/aucm_steps.py --json --seeds 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the repository (strategies, reports) and benchmarks/ (stats_calibration)

from stats_calibration import NIH_PREVALENCE  # noqa: E402  (benchmarks/: NIH's label-file prevalences)
STEPS = (10, 30, 60, 100, 300, 600, 1000, 3000)


def problem(seed: int, n_train: int = 768, n_test: int = 4000, dims: int = 64,
            prevalence=NIH_PREVALENCE) -> tuple:
    """(x_train, y_train, x_test, y_test): labels Bernoulli(sigmoid(x w_l + logit(prevalence_l)))."""
    from scipy.special import expit, logit

    rng = np.random.default_rng(seed)
    w = rng.normal(scale=0.5, size=(dims, len(prevalence)))
    x = rng.normal(size=(n_train + n_test, dims)).astype(np.float32)
    y = (rng.random((len(x), len(prevalence))) < expit(x @ w + logit(np.asarray(prevalence)))).astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def macro_auc(y: np.ndarray, s: np.ndarray) -> float:
    """The leaderboard's macro AUC (:func:`reports.metrics.summary_metrics`: labels with both classes)."""
    from reports.metrics import summary_metrics

    return float(summary_metrics(y, s, label_names=[f"l{j}" for j in range(y.shape[1])])["macro_auc"])


def train(loss_name: str, seed: int, steps=STEPS, batch: int = 64) -> list[dict]:
    """Train the MLP with ``loss_name`` ('aucm': AUC-M + PESG, LibAUC's defaults; 'bce': BCE + Adam) and
    score the test images after each of ``steps``."""
    import torch

    from strategies import create_loss

    x, y, xt, yt = problem(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, y.shape[1]))
    loss = create_loss({"name": loss_name}).fit(y)
    opt = loss.make_optimizer(model.parameters(), lr=2e-3, weight_decay=0.0) or \
        torch.optim.Adam(model.parameters(), lr=2e-3)
    xs, ys, xts = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xt)
    gen = torch.Generator().manual_seed(seed)
    rows, step = [], 0
    while step < max(steps):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i:i + batch]
            value = loss(model(xs[idx]), ys[idx])
            opt.zero_grad()
            value.backward()
            opt.step()
            step += 1
            if step in steps:
                with torch.no_grad():
                    s = torch.sigmoid(model(xts)).numpy()
                alpha = float(loss.alpha_.detach().mean()) if hasattr(loss, "alpha_") else None
                rows.append({"loss": loss_name, "seed": seed, "step": step, "macro_auc": macro_auc(yt, s),
                             "alpha_mean": alpha})
            if step >= max(steps):
                break
    return rows


def run(seeds: int = 3, steps=STEPS) -> dict:
    t0 = time.perf_counter()
    rows = [r for seed in range(seeds) for name in ("aucm", "bce") for r in train(name, seed, steps)]
    table: dict = {}
    for name in ("aucm", "bce"):
        for step in steps:
            got = [r for r in rows if r["loss"] == name and r["step"] == step]
            table.setdefault(name, {})[str(step)] = {
                "macro_auc": round(float(np.mean([r["macro_auc"] for r in got])), 3),
                "macro_auc_min": round(float(np.min([r["macro_auc"] for r in got])), 3),
                **({"alpha_mean": round(float(np.mean([r["alpha_mean"] for r in got])), 3)} if name == "aucm" else {})}
    return {"seeds": seeds, "n_train": 768, "labels": len(NIH_PREVALENCE), "by_step": table,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    args = ap.parse_args(argv)
    out = run(args.seeds)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{'step':>6} {'AUC-M macro AUC':>16} {'alpha':>6} {'BCE macro AUC':>14}")
    for step in STEPS:
        a, b = out["by_step"]["aucm"][str(step)], out["by_step"]["bce"][str(step)]
        print(f"{step:>6} {a['macro_auc']:>16.3f} {a['alpha_mean']:>6.3f} {b['macro_auc']:>14.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
