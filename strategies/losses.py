"""Multi-label losses on logits. Library implementations where they exist (torchvision, timm).

Every loss returns the per-entry loss from ``elementwise``; the base class masks unknown (NaN)
targets and averages over the known entries. Label statistics (prevalence, counts) are learned
in ``fit(y_train)``. The distribution-balanced loss lives in :mod:`strategies.db_loss`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from strategies.base import Loss, prevalence
from strategies.measures import positive_counts

if TYPE_CHECKING:
    import torch

# torch is imported where a loss computes, not here: checking a grid builds every loss of it (bench.config), and a
# `bench run` driver, which trains nothing, then starts without torch.


def as_like(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A NumPy per-label vector as a tensor with ``like``'s dtype and device."""
    import torch

    return torch.as_tensor(np.asarray(values), dtype=like.dtype, device=like.device)


def bce_elementwise(logits, targets, pos_weight=None):
    """Binary cross-entropy on logits per entry (``torch.nn.functional.binary_cross_entropy_with_logits``)."""
    from torch.nn.functional import binary_cross_entropy_with_logits

    return binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")


def focal_elementwise(logits, targets, gamma: float, alpha: float = -1.0):
    """Sigmoid focal loss per entry via ``torchvision.ops.sigmoid_focal_loss``; ``alpha < 0`` disables alpha."""
    from torchvision.ops import sigmoid_focal_loss

    return sigmoid_focal_loss(logits, targets, alpha=alpha if alpha >= 0 else -1, gamma=gamma, reduction="none")


class BCE(Loss):
    """Plain binary cross-entropy on logits."""


    def elementwise(self, logits, targets):
        return bce_elementwise(logits, targets)


class WeightedBCE(Loss):
    """BCE with per-label positive weights (1 - p) / p from training prevalence, clipped to [1, ``max_weight``]."""


    def __init__(self, max_weight: float = 50.0):
        self.max_weight = max_weight

    def check_params(self):
        self._check_range("max_weight", 1.0)

    def fit(self, y_train):
        super().fit(y_train)
        p = prevalence(y_train)
        self.pos_weight_ = np.clip((1 - p) / p, 1.0, self.max_weight)
        return self

    def elementwise(self, logits, targets):
        self._require_fit("pos_weight_")
        w = as_like(self.pos_weight_, logits)
        return bce_elementwise(logits, targets, pos_weight=w)


class Focal(Loss):
    """Sigmoid focal loss (Lin et al. 2017) via ``torchvision.ops.sigmoid_focal_loss``; alpha < 0 disables it."""


    def __init__(self, gamma: float = 2.0, alpha: float = -1.0):
        self.gamma = gamma
        self.alpha = alpha

    def check_params(self):
        self._check_range("gamma", 0.0)
        self._check_range("alpha", None, 1.0)

    def elementwise(self, logits, targets):
        return focal_elementwise(logits, targets, self.gamma, self.alpha)


class Asymmetric(Loss):
    """Asymmetric loss (Ridnik et al. 2021) via ``timm.loss.AsymmetricLossMultiLabel`` (per entry)."""


    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05, eps: float = 1e-8):
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps

    def check_params(self):
        self._check_range("gamma_neg", 0.0)
        self._check_range("gamma_pos", 0.0)
        self._check_range("clip", 0.0, 1.0)
        self._check_range("eps", 0.0, 0.5)

    def elementwise(self, logits, targets):
        from timm.loss import AsymmetricLossMultiLabel

        fn = AsymmetricLossMultiLabel(gamma_neg=self.gamma_neg, gamma_pos=self.gamma_pos,
                                      clip=self.clip, eps=self.eps, reduction="none")
        return fn(logits, targets).to(logits.dtype)  # timm computes in float32


class ClassBalanced(Loss):
    """Class-balanced loss (Cui et al. 2019) on BCE or focal.

    Per-label weight w_l proportional to 1 / E_l with the effective number
    E_l = (1 - beta^n_l) / (1 - beta) (n_l = training positives, at least 1), normalised so that
    the weights sum to L. Following ``ResampleLoss``'s ``CB`` by-class mode for multi-label data, w_l
    scales every entry of label l (positives and negatives). ``beta = 0`` gives plain BCE (or focal).
    """


    def __init__(self, beta: float = 0.999, base: str = "bce", gamma: float = 2.0):
        self.beta = beta
        self.base = base
        self.gamma = gamma

    def check_params(self):
        self._check_range("beta", 0.0, 1.0 - 1e-12)
        self._check_choice("base", ("bce", "focal"))
        self._check_range("gamma", 0.0)

    def fit(self, y_train):
        super().fit(y_train)
        n = np.maximum(positive_counts(y_train), 1.0)
        effective = (1.0 - np.power(self.beta, n)) / (1.0 - self.beta)
        w = 1.0 / effective
        self.weight_ = w / w.sum() * len(w)
        return self

    def elementwise(self, logits, targets):
        self._require_fit("weight_")
        if self.base == "focal":
            per = focal_elementwise(logits, targets, self.gamma)
        else:
            per = bce_elementwise(logits, targets)
        return per * as_like(self.weight_, logits)


class _PriorOdds(Loss):
    """Shared ``fit`` of the logit-adjustment losses: offset_l = tau * log(pi_l / (1 - pi_l))."""

    def __init__(self, tau: float = 1.0):
        self.tau = tau

    def check_params(self):
        self._check_range("tau", 0.0)

    def fit(self, y_train):
        super().fit(y_train)
        p = prevalence(y_train)
        self.offset_ = self.tau * np.log(p / (1 - p))
        return self


class LogitAdjusted(_PriorOdds):
    """Logit-adjusted loss (Menon et al. 2021), per-label binary form: BCE on logits + tau * log(pi / (1 - pi)).

    Training on shifted logits makes the raw logits prior-corrected, so prediction uses them as
    they are (``adjust_logits`` is the identity). ``tau = 0`` gives plain BCE.
    """


    def elementwise(self, logits, targets):
        self._require_fit("offset_")
        shifted = logits + as_like(self.offset_, logits)
        return bce_elementwise(shifted, targets)


class LogitAdjustedPostHoc(_PriorOdds):
    """Post-hoc logit adjustment (Menon et al. 2021): plain BCE training, then
    ``adjust_logits`` subtracts tau * log(pi / (1 - pi)) before the sigmoid at prediction time."""


    def elementwise(self, logits, targets):
        return bce_elementwise(logits, targets)

    def adjust_logits(self, logits):
        """Logits (N, L), a tensor or an array, minus the fitted prior log-odds offset."""
        import torch

        self._require_fit("offset_")
        if isinstance(logits, torch.Tensor):
            return logits - as_like(self.offset_, logits)
        logits = np.asarray(logits)
        return logits - self.offset_.astype(np.result_type(logits.dtype, np.float32), copy=False)
