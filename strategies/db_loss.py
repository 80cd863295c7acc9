"""Distribution-balanced loss (Wu et al., ECCV 2020), after the authors' ``ResampleLoss``.

Three parts, each following ``mllt/models/losses/resample_loss.py`` of
wutong16/DistributionBalancedLoss with ``reweight_func='rebalance'``:

1. **Re-balanced weighting.** For image i and label l with n_l training positives,
   r_il = (1 / n_l) / sum_{j in Y_i} (1 / n_j): the class-level sampling probability over the
   instance-level one (the paper's P^C / P^I, a *sum* over the image's positive labels, as in the
   paper and the code; REFERENCES.md's "mean" differs from both). It is smoothed to
   w_il = map_alpha + sigmoid(map_beta * (r_il - map_gamma)) and applied to positives and
   negatives alike. An image with no positive label has r = +inf, hence w = map_alpha + 1.
2. **Negative-tolerant regularisation.** A class-specific bias
   b_l = init_bias * log(p_l / (1 - p_l)) / neg_scale (p_l = training prevalence; the code's
   ``-log(N / n_l - 1) * init_bias / neg_scale``) is added to every logit; negative entries then
   use the logit scaled by ``neg_scale`` (lambda) and their weight divided by it:
   (w / lambda) * log(1 + exp(lambda * (z + b))).
3. **Focal modulation** (``focal=True``): loss * balance_param * (1 - p_t)^gamma, with p_t taken
   from the regularised logits.

Defaults are the authors' COCO-MLT / VOC-MLT ``DB`` configuration: ``focal=True, gamma=2,
balance_param=2.0, map_alpha=0.1, map_beta=10.0, map_gamma=0.2, neg_scale=2.0, init_bias=0.05``.
The authors pair this loss with class-aware sampling (see the ``dbloss`` preset).
With ``reweight=False, focal=False, neg_scale=1, init_bias=0`` it reduces to plain BCE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from strategies.base import Loss, prevalence
from strategies.losses import as_like, bce_elementwise
from strategies.measures import positive_counts

if TYPE_CHECKING:
    import torch


class DistributionBalanced(Loss):
    """Distribution-balanced loss: re-balanced weights + negative-tolerant regularisation (+ focal)."""


    def __init__(self, reweight: bool = True, map_alpha: float = 0.1, map_beta: float = 10.0,
                 map_gamma: float = 0.2, neg_scale: float = 2.0, init_bias: float = 0.05,
                 focal: bool = True, gamma: float = 2.0, balance_param: float = 2.0):
        self.reweight = reweight
        self.map_alpha = map_alpha
        self.map_beta = map_beta
        self.map_gamma = map_gamma
        self.neg_scale = neg_scale
        self.init_bias = init_bias
        self.focal = focal
        self.gamma = gamma
        self.balance_param = balance_param

    def check_params(self):
        self._check_choice("reweight", (True, False))
        self._check_choice("focal", (True, False))
        self._check_range("map_alpha", 0.0)
        self._check_range("map_beta", 0.0)
        self._check_range("map_gamma")
        self._check_range("neg_scale", 1e-6)
        self._check_range("init_bias")
        self._check_range("gamma", 0.0)
        self._check_range("balance_param", 0.0)

    def fit(self, y_train):
        super().fit(y_train)
        self.freq_inv_ = 1.0 / np.maximum(positive_counts(y_train), 1.0)
        p = prevalence(y_train)
        self.bias_ = self.init_bias * np.log(p / (1 - p)) / self.neg_scale
        return self

    def weights(self, targets: torch.Tensor) -> torch.Tensor:
        """Smoothed re-balancing weights (B, L) for zero-filled targets (no gradient)."""
        import torch

        if not self.reweight:
            return torch.ones_like(targets)
        targets = targets.to(torch.promote_types(targets.dtype, torch.float32))  # fp16 would underflow
        freq_inv = as_like(self.freq_inv_, targets)
        repeat = (targets * freq_inv).sum(dim=1, keepdim=True)
        # No positive label: r = +inf in the reference; a huge finite r keeps map_beta = 0 well defined.
        r = freq_inv / repeat.clamp(min=1e-12)
        return torch.sigmoid(self.map_beta * (r - self.map_gamma)) + self.map_alpha

    def elementwise(self, logits, targets):
        import torch

        self._require_fit("bias_")
        positive = targets == 1
        w = self.weights(targets.detach())
        z = logits + as_like(self.bias_, logits)
        z = torch.where(positive, z, z * self.neg_scale)
        w = torch.where(positive, w, w / self.neg_scale)
        bce = bce_elementwise(z, targets)
        w = w.to(bce.dtype)
        if not self.focal:
            return w * bce
        pt = torch.exp(-bce)
        return self.balance_param * (1 - pt) ** self.gamma * w * bce
