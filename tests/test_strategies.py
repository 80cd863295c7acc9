"""Conformance suite for the strategy catalogue, parametrized over every registry entry.

References are computed here with NumPy and brute force, independently of the code under test.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from strategies import (LOSSES, SAMPLERS, STRATEGIES, THRESHOLDS, UnknownNameError, apply_params,
                        create_loss, create_sampler, create_strategy, create_threshold, preset_space,
                        resolve_spec)
from strategies.base import param_names

ROOT = pathlib.Path(__file__).resolve().parents[1]
L = 8


# ---- synthetic data --------------------------------------------------------------------------------
def long_tailed_labels(n: int = 1200, n_labels: int = L, seed: int = 0, nan_rate: float = 0.02) -> np.ndarray:
    """Independent labels with prevalence falling geometrically from 0.35 to 0.005, a few NaNs."""
    rng = np.random.default_rng(seed)
    prev = np.geomspace(0.35, 0.005, n_labels)
    y = (rng.random((n, n_labels)) < prev).astype(np.float64)
    y[:, 1] = np.maximum(y[:, 1], y[:, -1] * (rng.random(n) < 0.5))  # some co-occurrence with the rarest
    y[rng.random(y.shape) < nan_rate] = np.nan
    return y


def label_features(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Features in which images sharing labels are close, with enough noise to mix neighbourhoods."""
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(y.shape[1], 6)) * 2.0
    return np.nan_to_num(y) @ proj + rng.normal(size=(len(y), 6))


Y = long_tailed_labels()
X = label_features(Y)


def mean_ir_reference(y: np.ndarray) -> float:
    """MeanIR (Charte et al. 2015) of a label matrix, written out plainly."""
    counts = np.array([np.sum(y[:, j] == 1) for j in range(y.shape[1])], dtype=float)
    present = counts > 0
    return float(np.mean(counts.max() / counts[present]))


def bce_reference(logits: np.ndarray, targets: np.ndarray, pos_weight=None, weight=None) -> float:
    """Masked mean of -(w_pos y log s(x) + (1 - y) log(1 - s(x))) * w, via logaddexp."""
    known = ~np.isnan(targets)
    y = np.where(known, targets, 0.0)
    pw = 1.0 if pos_weight is None else pos_weight
    per = pw * y * np.logaddexp(0, -logits) + (1 - y) * np.logaddexp(0, logits)
    if weight is not None:
        per = per * weight
    return float(per[known].mean())


def batch(seed: int = 0, b: int = 16, scale: float = 2.0, kind: str = "random"):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=scale, size=(b, L))
    if kind == "all_negative":
        targets = np.zeros((b, L))
    else:
        targets = (rng.random((b, L)) < 0.3).astype(np.float64)
        targets[:, -1] = 0.0
        targets[0] = 0.0  # a row with no finding
        if kind == "nan":
            targets[rng.random((b, L)) < 0.3] = np.nan
            targets[1] = np.nan  # a fully unknown row
    if kind == "extreme":
        logits = np.where(rng.random((b, L)) < 0.5, -30.0, 30.0)
    return logits, targets


def tensors(logits, targets):
    return torch.tensor(logits, dtype=torch.float64, requires_grad=True), torch.tensor(targets, dtype=torch.float64)


def fitted_loss(spec):
    return create_loss(spec).fit(Y)


# ---- losses: conformance ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "all_negative", "nan", "extreme"])
@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_finite_masked_mean_and_backpropagates(name, kind):
    loss = fitted_loss(name)
    logits, targets = batch(kind=kind)
    x, t = tensors(logits, targets)
    value = loss(x, t)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(x.grad).all()
    known = ~torch.isnan(t)
    assert (x.grad[~known] == 0).all()
    if kind != "extreme":
        assert x.grad[known].abs().sum() > 0
    # Mean over the known entries of the per-entry loss, not over all entries.
    with torch.no_grad():
        per = loss.elementwise(x, torch.where(known, t, torch.zeros_like(t)))
        manual = per[known].sum() / known.sum()
    assert torch.allclose(value.detach(), manual.to(value.dtype), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_a_mean_not_a_sum(name):
    loss = fitted_loss(name)
    logits, targets = batch(seed=3, kind="nan")
    x, t = tensors(logits, targets)
    x2, t2 = tensors(np.concatenate([logits, logits]), np.concatenate([targets, targets]))
    assert torch.allclose(loss(x, t), loss(x2, t2), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", LOSSES.names())
def test_nan_targets_are_masked(name):
    loss = fitted_loss(name)
    logits, targets = batch(seed=1, kind="nan")
    unknown = np.isnan(targets)
    other = np.where(unknown, np.random.default_rng(9).normal(scale=10, size=logits.shape), logits)
    grads, values = [], []
    for lg in (logits, other):
        x, t = tensors(lg, targets)
        v = loss(x, t)
        v.backward()
        values.append(v.detach())
        grads.append(x.grad)
    assert torch.allclose(values[0], values[1], rtol=0, atol=1e-12)
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-12)


def test_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        fitted_loss("bce")(torch.zeros(4, L), torch.zeros(4, L - 1))


# ---- losses: reference identities ---------------------------------------------------------------
IDENTITIES = [
    {"name": "focal", "gamma": 0.0, "alpha": -1.0},
    {"name": "cb", "beta": 0.0},
    {"name": "cb", "beta": 0.0, "base": "focal", "gamma": 0.0},
    {"name": "asl", "gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0},
    {"name": "la", "tau": 0.0},
    {"name": "la_posthoc"},
    {"name": "weighted_bce", "max_weight": 1.0},
    {"name": "db", "reweight": False, "focal": False, "neg_scale": 1.0, "init_bias": 0.0},
]


@pytest.mark.parametrize("spec", IDENTITIES, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", ["random", "nan"])
def test_reduces_to_bce(spec, kind):
    logits, targets = batch(seed=5, scale=1.0, kind=kind)
    x, t = tensors(logits, targets)
    assert abs(fitted_loss(spec)(x, t).item() - bce_reference(logits, targets)) < 1e-6


def test_weighted_bce_matches_prevalence_weights():
    loss = fitted_loss({"name": "weighted_bce", "max_weight": 20.0})
    p = np.nanmean(Y, axis=0)
    expected = np.clip((1 - p) / p, 1.0, 20.0)
    np.testing.assert_allclose(loss.pos_weight_, expected, rtol=1e-9)
    logits, targets = batch(seed=2, kind="nan")
    assert abs(loss(*tensors(logits, targets)).item() - bce_reference(logits, targets, pos_weight=expected)) < 1e-6


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999])
def test_class_balanced_weights_follow_effective_number(beta):
    loss = fitted_loss({"name": "cb", "beta": beta})
    n = np.array([np.sum(Y[:, j] == 1) for j in range(L)], dtype=float)
    w = (1 - beta) / (1 - beta ** n)
    w = w / w.sum() * L
    np.testing.assert_allclose(loss.weight_, w, rtol=1e-9)
    assert abs(loss.weight_.sum() - L) < 1e-9 and np.all(np.diff(loss.weight_) >= 0)  # rarer labels weigh more
    logits, targets = batch(seed=4, kind="nan")
    assert abs(loss(*tensors(logits, targets)).item() - bce_reference(logits, targets, weight=w)) < 1e-6


def test_focal_matches_formula():
    gamma, alpha = 2.0, 0.25
    logits, targets = batch(seed=6, kind="nan")
    known = ~np.isnan(targets)
    y = np.where(known, targets, 0)
    p = 1 / (1 + np.exp(-logits))
    pt = np.where(y == 1, p, 1 - p)
    at = np.where(y == 1, alpha, 1 - alpha)
    per = -at * (1 - pt) ** gamma * np.log(pt)
    value = fitted_loss({"name": "focal", "gamma": gamma, "alpha": alpha})(*tensors(logits, targets))
    assert abs(value.item() - per[known].mean()) < 1e-6


def test_asl_matches_formula():
    gn, gp, m = 4.0, 1.0, 0.05
    logits, targets = batch(seed=7, scale=1.0, kind="nan")
    known = ~np.isnan(targets)
    y = np.where(known, targets, 0)
    p = 1 / (1 + np.exp(-logits))
    pm = np.maximum(p - m, 0)
    per = -(y * (1 - p) ** gp * np.log(p) + (1 - y) * pm ** gn * np.log(1 - pm))
    value = fitted_loss({"name": "asl", "gamma_neg": gn, "gamma_pos": gp, "clip": m})(*tensors(logits, targets))
    assert abs(value.item() - per[known].mean()) < 1e-6


def test_logit_adjustment_offsets():
    tau = 1.5
    p = np.nanmean(Y, axis=0)
    offset = tau * np.log(p / (1 - p))
    logits, targets = batch(seed=8, kind="nan")
    la = fitted_loss({"name": "la", "tau": tau})
    assert abs(la(*tensors(logits, targets)).item() - bce_reference(logits + offset, targets)) < 1e-6
    np.testing.assert_allclose(np.asarray(la.adjust_logits(logits)), logits)
    post = fitted_loss({"name": "la_posthoc", "tau": tau})
    np.testing.assert_allclose(post.adjust_logits(logits), logits - offset, rtol=1e-9)
    adjusted = post.adjust_logits(torch.tensor(logits))
    assert isinstance(adjusted, torch.Tensor)
    np.testing.assert_allclose(adjusted.numpy(), logits - offset, rtol=1e-9)
    np.testing.assert_allclose(fitted_loss({"name": "la_posthoc", "tau": 0.0}).adjust_logits(logits), logits)


def db_reference(logits, targets, y_train, *, map_alpha=0.1, map_beta=10.0, map_gamma=0.2, neg_scale=2.0,
                 init_bias=0.05, gamma=2.0, balance_param=2.0):
    """Transcription of ResampleLoss.forward (reweight_func='rebalance', focal, logit_reg) in NumPy."""
    known = ~np.isnan(targets)
    label = np.where(known, targets, 0)
    class_freq = np.array([np.sum(y_train[:, j] == 1) for j in range(y_train.shape[1])], dtype=float)
    train_num = np.sum(~np.isnan(y_train), axis=0)
    freq_inv = 1 / class_freq
    repeat_rate = np.sum(label * freq_inv, axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        pos_weight = freq_inv[None, :] / repeat_rate
    weight = 1 / (1 + np.exp(-map_beta * (pos_weight - map_gamma))) + map_alpha
    bias = -np.log(train_num / class_freq - 1) * init_bias / neg_scale
    z = logits + bias
    z = z * (1 - label) * neg_scale + z * label
    weight = weight / neg_scale * (1 - label) + weight * label
    bce = label * np.logaddexp(0, -z) + (1 - label) * np.logaddexp(0, z)
    pt = np.exp(-bce)
    per = balance_param * (1 - pt) ** gamma * weight * bce
    return float(per[known].mean())


@pytest.mark.parametrize("params", [{}, {"neg_scale": 4.0, "init_bias": 0.1, "map_gamma": 0.3}])
def test_distribution_balanced_matches_reference(params):
    logits, targets = batch(seed=10, kind="nan")
    value = fitted_loss({"name": "db", **params})(*tensors(logits, targets))
    assert abs(value.item() - db_reference(logits, targets, Y, **params)) < 1e-6


# ---- samplers ------------------------------------------------------------------------------------
def fitted_sampler(name, y=Y, **params):
    sampler = create_sampler({"name": name, **params})
    return sampler.fit(y, features=X if sampler.needs_features else None)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_moves_irlbl_in_its_direction(name):
    sampler = fitted_sampler(name)
    assert sampler.irlbl_direction in ("down", "none")
    rows = sampler.epoch_indices(np.random.default_rng(0))
    assert rows.ndim == 1 and np.issubdtype(rows.dtype, np.integer) and len(rows) > 0
    assert rows.min() >= 0 and rows.max() < len(Y)
    before, after = mean_ir_reference(Y), mean_ir_reference(Y[rows])
    if sampler.irlbl_direction == "down":
        assert after < 0.9 * before, (before, after)
    else:
        assert after == pytest.approx(before, rel=1e-12)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_is_deterministic_given_the_generator(name):
    sampler = fitted_sampler(name)
    a = sampler.epoch_indices(np.random.default_rng(1))
    b = sampler.epoch_indices(np.random.default_rng(1))
    c = sampler.epoch_indices(np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_sampler_uses_no_global_rng():
    state = np.random.get_state()[1].copy()
    for name in SAMPLERS.names():
        fitted_sampler(name).epoch_indices(np.random.default_rng(0))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def initial_minority(y):
    counts = np.array([np.sum(y[:, j] == 1) for j in range(y.shape[1])], dtype=float)
    ir = counts.max() / np.maximum(counts, 1)
    return (counts > 0) & (ir > ir[counts > 0].mean())


def test_ml_ros_keeps_every_image_and_clones_minority_until_balanced():
    sampler = fitted_sampler("ml_ros", percentage=0.25)
    rows = sampler.epoch_indices(np.random.default_rng(0))
    assert np.all(np.bincount(rows, minlength=len(Y)) >= 1)
    clones = np.bincount(rows, minlength=len(Y)) - 1
    minority = initial_minority(Y)
    assert np.all((Y[clones > 0][:, minority] == 1).any(axis=1))  # only minority-label images are cloned
    budget = round(0.25 * len(Y))
    assert clones.sum() <= budget
    if clones.sum() < budget:  # stopped early: every minority bag reached MeanIR
        counts = np.array([np.sum(Y[rows, j] == 1) for j in range(L)], dtype=float)
        mean0 = mean_ir_reference(Y)
        assert np.all(counts.max() / counts[minority] <= mean0 + 1e-9)


@pytest.mark.parametrize("percentage", [0.1, 0.25, 0.6])
def test_ml_rus_never_drops_minority_rows(percentage):
    sampler = fitted_sampler("ml_rus", percentage=percentage)
    rows = sampler.epoch_indices(np.random.default_rng(3))
    assert len(np.unique(rows)) == len(rows)
    kept = np.zeros(len(Y), dtype=bool)
    kept[rows] = True
    carries_minority = (Y[:, initial_minority(Y)] == 1).any(axis=1)
    assert kept[carries_minority].all()
    assert (~kept).sum() == round(percentage * len(Y))  # enough deletable images for the whole budget
    label_less = ~(Y == 1).any(axis=1)
    assert not kept[label_less].all()  # label-less images are a bag that is undersampled too



def test_ml_rus_stops_when_nothing_is_deletable_and_bounds_its_budget():
    # IRLbl (1, 4): B is minority; A-only images and the label-less one are the only deletable rows.
    y = np.array([[1, 1]] * 2 + [[1, 0]] * 6 + [[0, 0]], dtype=float)
    rows = fitted_sampler("ml_rus", y=y, percentage=0.9).epoch_indices(np.random.default_rng(0))
    kept = np.zeros(len(y), dtype=bool)
    kept[rows] = True
    assert kept[:2].all()  # the minority images stay
    # Deleting A-only images lowers A's count; B stays minority throughout, so 7 go (budget 8) and 2 remain.
    assert len(rows) == 2
    with pytest.raises(ValueError, match=r"percentage=0.95 must be a number in \[0.0, 0.9\]"):
        create_sampler({"name": "ml_rus", "percentage": 0.95})

# ---- ML-RUS on NIH-like labels ----------------------------------------------------------------------
# Positives per finding in the NIH label file, rounded to hundreds (Hernia: 227), in the file's label order:
# Atelectasis, Cardiomegaly, Consolidation, Edema, Effusion, Emphysema, Fibrosis, Hernia, Infiltration,
# Mass, Nodule, Pleural_Thickening, Pneumonia, Pneumothorax.
NIH_POSITIVES = np.array([11600, 2800, 4700, 2300, 13300, 2500, 1700, 227, 19900, 5800, 6300, 3400, 1400, 5300])


def nih_like_labels(n: int = 6000, seed: int = 0, label_less: float = 0.5) -> np.ndarray:
    """NIH-like labels: a ``label_less`` share of images without a finding; the others carry 1 + Poisson(0.6)
    distinct findings drawn in proportion to NIH's positives (so frequent findings co-occur with rare ones)."""
    rng = np.random.default_rng(seed)
    p = NIH_POSITIVES / NIH_POSITIVES.sum()
    y = np.zeros((n, len(p)))
    for i in np.flatnonzero(rng.random(n) >= label_less):
        k = min(1 + rng.poisson(0.6), len(p))
        y[i, rng.choice(len(p), size=k, replace=False, p=p)] = 1
    return y


def rus_outcome(y: np.ndarray, percentage: float = 0.25, seed: int = 0) -> dict:
    sampler = create_sampler({"name": "ml_rus", "percentage": percentage}).fit(y)
    rows = sampler.epoch_indices(np.random.default_rng(seed))
    counts_before = (y == 1).sum(axis=0)
    counts_after = (y[rows] == 1).sum(axis=0)
    present = counts_before > 0
    return {
        "mean_ir": (mean_ir_reference(y), mean_ir_reference(y[rows])),
        "no_finding": (float((~(y == 1).any(axis=1)).mean()), float((~(y[rows] == 1).any(axis=1)).mean())),
        "largest_loss": float(np.max(1 - counts_after[present] / counts_before[present])),
        "rows": rows, "sampler": sampler,
    }


def check_rus_reduces_imbalance(y: np.ndarray, percentage: float) -> dict:
    out = rus_outcome(y, percentage)
    (ir0, ir1), (nf0, nf1) = out["mean_ir"], out["no_finding"]
    assert ir1 <= 0.9 * ir0, f"MeanIR {ir0:.2f} -> {ir1:.2f}: not reduced by 10%"
    assert nf1 <= nf0 + 0.005, f"No-Finding share {nf0:.3f} -> {nf1:.3f}: rose"
    # No majority label is stripped: each loses at most a little more than the deleted share of the images.
    assert out["largest_loss"] <= percentage + 0.1, out["largest_loss"]
    assert len(out["rows"]) == len(y) - round(percentage * len(y))
    return out


@pytest.mark.parametrize("percentage", [0.25, 0.5])
def test_ml_rus_reduces_imbalance_on_nih_like_labels(percentage):
    """Fails on the rule that never deleted label-less images: there the No-Finding share rose from 0.50 to
    0.67 (0.81 at 50%) and a majority label lost 78% of its positives (86%)."""
    y = nih_like_labels()
    check_rus_reduces_imbalance(y, percentage)
    # It is the label-less images that absorb most of the budget, not the findings' images.
    rows = rus_outcome(y, percentage)["rows"]
    deleted = np.setdiff1d(np.arange(len(y)), rows)
    assert (~(y[deleted] == 1).any(axis=1)).mean() >= (~(y == 1).any(axis=1)).mean() - 0.02


@pytest.mark.realdata
def test_ml_rus_reduces_imbalance_on_real_nih_labels(nih_root):
    """The same on 8,000 label vectors drawn from the full NIH label file (`No Finding` = no label)."""
    import pandas as pd

    df = pd.read_csv(nih_root / "Data_Entry_2017_v2020.csv", usecols=["Finding Labels"])
    sets = df["Finding Labels"].sample(n=8000, random_state=0).str.split("|")
    names = sorted({lab for s in df["Finding Labels"].str.split("|") for lab in s} - {"No Finding"})
    assert len(names) == 14
    y = np.array([[float(name in s) for name in names] for s in sets])
    out = check_rus_reduces_imbalance(y, 0.25)
    report = out["sampler"].imbalance(np.random.default_rng(0))
    assert report["mean_ir_after"] == pytest.approx(out["mean_ir"][1])
    assert report["no_finding_after"] == pytest.approx(out["no_finding"][1])


# ---- every sampler reports MeanIR before and after --------------------------------------------------
@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_reports_mean_ir_before_and_after(name):
    sampler = fitted_sampler(name)
    report = sampler.imbalance(np.random.default_rng(5))
    rows = sampler.epoch_indices(np.random.default_rng(5))  # the same epoch
    assert set(report) == {"mean_ir_before", "mean_ir_after", "no_finding_before", "no_finding_after",
                           "rows_before", "rows_after"}
    assert report["mean_ir_before"] == pytest.approx(mean_ir_reference(Y), rel=1e-12)
    assert report["mean_ir_after"] == pytest.approx(mean_ir_reference(Y[rows]), rel=1e-12)
    assert report["no_finding_before"] == pytest.approx(np.mean([not (r == 1).any() for r in Y]))
    assert report["no_finding_after"] == pytest.approx(np.mean([not (r == 1).any() for r in Y[rows]]))
    assert (report["rows_before"], report["rows_after"]) == (len(Y), len(rows))
    if sampler.irlbl_direction == "down":
        assert report["mean_ir_after"] < report["mean_ir_before"]
    else:
        assert report["mean_ir_after"] == pytest.approx(report["mean_ir_before"], rel=1e-12)


def test_imbalance_needs_a_fitted_sampler():
    with pytest.raises(RuntimeError, match="not fitted"):
        create_sampler("ml_rus").imbalance(np.random.default_rng(0))


def test_class_aware_balances_classes():
    sampler = fitted_sampler("class_aware")
    rows = sampler.epoch_indices(np.random.default_rng(0))
    assert len(rows) == len(Y)
    per_label = np.array([np.sum(Y[rows, j] == 1) for j in range(L)])
    assert per_label.min() > 0.5 * len(Y) / (L + 1)  # each class (plus "no finding") ~ N / (L + 1) draws
    skip = fitted_sampler("class_aware", no_finding="skip").epoch_indices(np.random.default_rng(0))
    assert (Y[skip] == 1).any(axis=1).all()


def test_sqrt_sampling_sits_between_uniform_and_class_aware():
    ir = [mean_ir_reference(Y[fitted_sampler("sqrt", power=p).epoch_indices(np.random.default_rng(0))])
          for p in (1.0, 0.5, 0.0)]
    assert ir[0] > ir[1] > ir[2]


def test_local_imbalance_ros_requires_features():
    sampler = create_sampler("local_imbalance_ros")
    with pytest.raises(ValueError, match="'local_imbalance_ros' needs per-image features"):
        sampler.fit(Y)
    with pytest.raises(ValueError, match="shape"):
        sampler.fit(Y, features=X[:-1])
    with pytest.raises(ValueError, match="features"):
        create_strategy("local_imbalance_ros").fit(Y)


@pytest.mark.parametrize("make", [create_strategy, create_sampler,
                                  lambda name: create_strategy({"sampler": name}),
                                  lambda name: create_strategy({"preset": name})])
def test_the_old_mlsol_name_says_what_it_became(make):
    with pytest.raises(UnknownNameError) as err:
        make("mlsol")
    message = str(err.value)
    assert "\n" not in message and "'mlsol' was renamed 'local_imbalance_ros'" in message
    assert "synthesised none" in message and "random oversampling" in message
    assert "mlsol" not in STRATEGIES and "mlsol" not in SAMPLERS  # never listed


def test_local_imbalance_ros_only_copies_real_images():
    """Weighted ROS: every original once plus percentage * N copies of real rows, drawn with the MLSOL weights."""
    sampler = fitted_sampler("local_imbalance_ros", percentage=0.5)
    rows = sampler.epoch_indices(np.random.default_rng(0))
    extra = np.bincount(rows, minlength=len(Y)) - 1
    assert extra.min() == 0 and extra.sum() == round(0.5 * len(Y))
    assert np.all(sampler.weights_[extra > 0] > 0)  # only seeds with a positive MLSOL weight are copied


def test_local_imbalance_ros_weights_match_brute_force():
    y = long_tailed_labels(n=120, n_labels=4, seed=3, nan_rate=0.05)
    x = label_features(y, seed=3)
    k = 4
    sampler = create_sampler({"name": "local_imbalance_ros", "k": k}).fit(y, features=x)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    n, n_labels = y.shape
    c = np.full(y.shape, np.nan)
    for j in range(n_labels):
        col = y[:, j]
        ones, zeros = np.sum(col == 1), np.sum(col == 0)
        minority = 1.0 if ones <= zeros else 0.0
        for i in range(n):
            neigh = np.argsort(d[i], kind="stable")[:k]
            known = neigh[~np.isnan(col[neigh])]
            if col[i] == minority and len(known):
                c[i, j] = np.mean(col[known] != col[i])
    w = np.zeros(n)
    for j in range(n_labels):
        ok = ~np.isnan(c[:, j]) & (c[:, j] < 1)
        if c[ok, j].sum() > 0:
            w[ok] += c[ok, j] / c[ok, j].sum()
    np.testing.assert_allclose(sampler.local_imbalance_, c, equal_nan=True)
    np.testing.assert_allclose(sampler.weights_, w, atol=1e-12)


# ---- decision rules --------------------------------------------------------------------------------
def validation(seed=0, n=300):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 5)) < [0.3, 0.1, 0.05, 0.5, 0.0]).astype(float)
    p = np.clip(0.35 * y + rng.random((n, 5)) * 0.7, 0, 1)
    p = np.round(p, 2)  # ties
    y[rng.random(y.shape) < 0.05] = np.nan
    return y, p


def confusion(y, p, t):
    pred = p >= t
    tp = np.sum(pred & (y == 1))
    fp = np.sum(pred & (y == 0))
    fn = np.sum(~pred & (y == 1))
    tn = np.sum(~pred & (y == 0))
    return tp, fp, fn, tn


def f1_at(y, p, t):
    tp, fp, fn, _ = confusion(y, p, t)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def j_at(y, p, t):
    tp, fp, fn, tn = confusion(y, p, t)
    return tp / (tp + fn) - fp / (fp + tn)


def precision_at(y, p, t):
    tp, fp, _, _ = confusion(y, p, t)
    return tp / (tp + fp) if tp + fp else 0.0


def per_label(rule, y, p):
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        yield j, y[known, j], p[known, j], rule.thresholds_[j]


@pytest.mark.parametrize("name", THRESHOLDS.names())
def test_threshold_rule_contract(name):
    y, p = validation()
    rule = create_threshold(name)
    assert rule.fit(y, p) is rule
    assert rule.thresholds_.shape == (y.shape[1],) and np.isfinite(rule.thresholds_).all()
    pred = rule.predict(p)
    assert pred.shape == p.shape and pred.dtype == np.int8
    assert rule.thresholds_[4] == 0.5  # no validation positive: the default
    with pytest.raises(ValueError, match="shape"):
        rule.fit(y, p[:, :3])


def test_f1_rule_reaches_brute_force_max():
    y, p = validation(1)
    rule = create_threshold("f1").fit(y, p)
    for j, yj, pj, t in per_label(rule, y, p):
        if yj.sum() == 0:
            continue
        best = max(f1_at(yj, pj, c) for c in np.unique(pj))
        assert f1_at(yj, pj, t) == pytest.approx(best, abs=1e-12), j


def test_youden_rule_maximises_j():
    y, p = validation(2)
    rule = create_threshold("youden").fit(y, p)
    for j, yj, pj, t in per_label(rule, y, p):
        if yj.sum() == 0:
            continue
        best = max(j_at(yj, pj, c) for c in np.unique(pj))
        assert j_at(yj, pj, t) == pytest.approx(best, abs=1e-12), j


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_precision_rule_reaches_target_with_smallest_threshold(target):
    y, p = validation(3)
    rule = create_threshold({"name": "precision", "target": target}).fit(y, p)
    f1_rule = create_threshold("f1").fit(y, p)
    for j, yj, pj, t in per_label(rule, y, p):
        if yj.sum() == 0:
            continue
        reaching = [c for c in np.unique(pj) if precision_at(yj, pj, c) >= target]
        if reaching:
            assert precision_at(yj, pj, t) >= target and t == pytest.approx(min(reaching)), j
        else:
            assert t == f1_rule.thresholds_[j]


def test_precision_rule_fallbacks():
    y = np.array([[0.0], [1.0], [0.0], [0.0]])
    p = np.array([[0.9], [0.6], [0.8], [0.1]])  # the top score is a negative: 0.8 is unreachable at 1.0
    assert create_threshold({"name": "precision", "target": 1.0}).fit(y, p).thresholds_[0] == \
        create_threshold("f1").fit(y, p).thresholds_[0]
    rule = create_threshold({"name": "precision", "target": 1.0, "fallback": "default"}).fit(y, p)
    assert rule.thresholds_[0] == 0.5


# ---- presets and specs -----------------------------------------------------------------------------
DISTRIBUTIONS = {"uniform", "loguniform", "choice"}


def test_there_are_enough_presets():
    assert len(STRATEGIES) >= 12
    for name in ("bce", "weighted_bce", "cb", "cb_focal", "focal", "asl", "dbloss", "la_loss", "la_posthoc",
                 "ml_ros", "ml_rus", "class_aware", "sqrt_sampling", "focal_ros", "asl_ros", "local_imbalance_ros",
                 "bce_youden"):
        assert name in STRATEGIES


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_preset_builds_fits_and_runs(name):
    entry = STRATEGIES.get(name)
    assert entry.description and "\n" not in entry.description
    s = create_strategy(name)
    assert s.name == name and s.description == entry.description
    expected = "f1"
    for rule in ("youden", "precision", "fixed"):
        if name.endswith(rule):
            expected = rule
    assert s.threshold.name == expected
    s.fit(Y, features=X if s.needs_features else None)
    rows = s.sampler.epoch_indices(np.random.default_rng(0))
    logits, targets = batch(kind="nan")
    x, t = tensors(logits[:, :L], targets)
    value = s.loss(x, t)
    value.backward()
    assert torch.isfinite(value)
    probs = torch.sigmoid(torch.as_tensor(s.loss.adjust_logits(x.detach()))).numpy()
    assert s.threshold.fit(targets, probs).predict(probs).shape == probs.shape
    assert len(rows) > 0


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_preset_space_is_valid(name):
    spec = resolve_spec(name)
    registries = {"loss": LOSSES, "sampler": SAMPLERS, "threshold": THRESHOLDS}
    for key, dist in preset_space(name).items():
        part, _, param = key.partition(".")
        assert part in registries, key
        assert param in param_names(registries[part].get(spec[part]["name"]).load()), key
        (kind, values), = dist.items()
        assert kind in DISTRIBUTIONS, key
        if kind == "choice":
            assert len(values) >= 2
        else:
            lo, hi = values
            assert lo < hi and (kind == "uniform" or lo > 0), key
        # Both ends (or every choice) build a valid strategy.
        for v in (values if kind == "choice" else [values[0], values[1]]):
            create_strategy(apply_params(name, {key: v}))


def test_mapping_specs_and_overrides():
    s = create_strategy({"loss": {"name": "focal", "gamma": 3}, "sampler": "ml_ros", "threshold": "youden"})
    assert (s.loss.gamma, s.sampler.name, s.threshold.name, s.name) == (3, "ml_ros", "youden", "focal+ml_ros")
    s = create_strategy({"preset": "cb_focal", "loss": {"name": "cb", "beta": 0.9, "base": "focal"}})
    assert s.loss.beta == 0.9 and s.loss.base == "focal"
    assert preset_space({"preset": "focal"}) == preset_space("focal")


@pytest.mark.parametrize("make, spec, hint", [
    (create_strategy, "focl", "'focal'"),
    (create_strategy, "ml_rs", "'ml_ros'"),
    (create_loss, "asll", "'asl'"),
    (create_sampler, "class_awar", "'class_aware'"),
    (create_threshold, "youdn", "'youden'"),
    (create_strategy, {"loss": "focall"}, "'focal'"),
])
def test_unknown_names_suggest_close_matches(make, spec, hint):
    with pytest.raises(UnknownNameError) as err:
        make(spec)
    message = str(err.value)
    assert "\n" not in message and "did you mean" in message
    assert hint in message.split("did you mean")[1].split("?")[0]


@pytest.mark.parametrize("make, spec, hint", [
    (create_loss, {"name": "focal", "gama": 3}, "did you mean 'gamma'"),
    (create_sampler, {"name": "ml_ros", "percentag": 0.5}, "did you mean 'percentage'"),
    (create_threshold, {"name": "precision", "targt": 0.9}, "did you mean 'target'"),
    (create_strategy, {"los": "focal"}, "did you mean 'loss'"),
])
def test_unknown_parameters_suggest_close_matches(make, spec, hint):
    with pytest.raises(ValueError) as err:
        make(spec)
    assert hint in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("spec", [
    {"name": "cb", "base": "focall"}, {"name": "focal", "gamma": -1}, {"name": "la", "tau": "x"},
])
def test_bad_parameter_values_fail_at_creation(spec):
    with pytest.raises(ValueError, match=repr(list(spec.values())[1]).strip("'")):
        create_loss(spec)


# ---- component conventions -------------------------------------------------------------------------
COMPONENTS = [(create_loss, LOSSES, n) for n in LOSSES.names()] + \
    [(create_sampler, SAMPLERS, n) for n in SAMPLERS.names()] + \
    [(create_threshold, THRESHOLDS, n) for n in THRESHOLDS.names()]


@pytest.mark.parametrize("make, registry, name", COMPONENTS, ids=[f"{r.kind}-{n}" for _, r, n in COMPONENTS])
def test_constructor_stores_and_fit_learns_underscored(make, registry, name):
    obj = make(name)
    cls = registry.get(name).load()
    assert set(vars(obj)) == set(param_names(cls)), "a constructor must only store its parameters"
    assert set(obj.get_params()) == set(param_names(cls)) and type(obj).__name__ in repr(obj)
    params = dict(vars(obj))
    if registry is THRESHOLDS:
        obj.fit(*validation())
    else:
        obj.fit(Y, features=X) if registry is SAMPLERS else obj.fit(Y)
    learned = set(vars(obj)) - set(params)
    assert learned and all(a.endswith("_") for a in learned), learned
    assert {k: vars(obj)[k] for k in params} == params, "fit must not change parameters"


# ---- import hygiene --------------------------------------------------------------------------------
def test_import_is_light_and_never_reaches_bench():
    code = ("import sys, strategies\n"
            "assert 'torch' not in sys.modules, 'importing strategies imported torch'\n"
            "from strategies import LOSSES, SAMPLERS, THRESHOLDS\n"
            "[e.load() for r in (LOSSES, SAMPLERS, THRESHOLDS) for e in r.list()]\n"
            "assert not [m for m in sys.modules if m == 'bench' or m.startswith('bench.')]\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for path in (ROOT / "strategies").glob("*.py"):
        text = path.read_text()
        assert "import bench" not in text and "from bench" not in text, path
        assert "print(" not in text and "np.random.seed" not in text and "torch.manual_seed" not in text, path


def test_each_component_class_has_one_registry_name_and_carries_it():
    """A component's name is written once, as its registry key; creating it names its class."""
    seen: dict = {}
    for make, registry, name in COMPONENTS:
        cls = registry.get(name).load()
        assert seen.setdefault((registry.kind, cls), name) == name, \
            f"{cls.__name__} is registered as {seen[(registry.kind, cls)]!r} and {name!r}"
        assert make(name).name == name and "name" not in vars(make(name))
