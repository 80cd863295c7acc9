"""LDAM: label-distribution-aware margin loss (Cao et al. 2019), adapted to independent sigmoid labels.

Cao et al. subtract a class-dependent margin ``m_c = C / n_c^(1/4)`` from the true class's logit and apply
cross-entropy to the logits scaled by ``s`` (their code: margins scaled so the largest is ``max_m``, ``s = 30``).
Here every label is its own two-class problem, *positive* vs *negative*, and each of the 2L classes gets
Cao's margin from its own count: positives of label l ``m+_l = C / n+_l^(1/4)``, negatives
``m-_l = C / n-_l^(1/4)``, one ``C`` for all 2L classes so that the largest margin (the rarest label's
positives) is ``max_m``. With the logits (0, z) for (negative, positive), softmax cross-entropy of the
margin-shifted, scaled logits is exactly

    positive:  softplus(-s (z - m+_l))        negative:  softplus(s (z + m-_l))

which is what :class:`LDAM` computes per entry, so for a single label it *is* the official loss on two classes
(``tests/test_stages.py`` checks it against a transcription of ``LDAMLoss``). Deferred re-weighting (DRW, the
``beta`` of the second stage of ``ldam_drw``) weights each of the 2L classes by Cao's class-balanced weights
``(1 - beta) / (1 - beta^n)``, normalised to sum to 2L as the official code normalises them to sum to C; the
loss is then the mean over the known entries (PyTorch's weighted ``cross_entropy`` divides by the sum of the
weights instead: the same gradients up to a per-batch factor).

The model is trained to put ``s * z`` through the sigmoid, so prediction uses ``s * z`` (``adjust_logits``):
the same ranking as ``z``, probabilities on the scale the loss fitted.
"""

from __future__ import annotations

import numpy as np

from strategies.base import Loss, known_mask
from strategies.losses import as_like


def class_balanced_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cao et al.'s per-class weights ``(1 - beta) / (1 - beta^n)``, normalised to sum to ``len(counts)``
    (all ones for ``beta = 0``).

    >>> class_balanced_weights(np.array([1000.0, 10.0]), 0.0).tolist()
    [1.0, 1.0]
    >>> class_balanced_weights(np.array([1000.0, 10.0]), 0.9999).round(3).tolist()
    [0.021, 1.979]
    """
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    w = (1.0 - beta) / (1.0 - np.power(beta, counts)) if beta > 0 else np.ones_like(counts)
    return w / w.sum() * len(w)


class LDAM(Loss):
    """LDAM loss with per-label positive and negative margins (see the module docstring); ``beta > 0`` adds
    the DRW class-balanced weights (Cao et al. use 0.9999 in the deferred stage)."""

    def __init__(self, max_m: float = 0.5, s: float = 30.0, beta: float = 0.0):
        self.max_m = max_m
        self.s = s
        self.beta = beta

    def check_params(self):
        self._check_range("max_m", 0.0)
        self._check_range("s", 1e-6)
        self._check_range("beta", 0.0, 1.0 - 1e-12)

    def fit(self, y_train):
        super().fit(y_train)
        y = np.asarray(y_train, dtype=np.float64)
        known = known_mask(y)
        n_pos = np.maximum((y == 1).sum(axis=0), 1.0)
        n_neg = np.maximum((known & (y == 0)).sum(axis=0), 1.0)
        raw = np.concatenate([n_pos, n_neg]) ** -0.25
        margins = raw * (self.max_m / raw.max())
        weights = class_balanced_weights(np.concatenate([n_pos, n_neg]), self.beta)
        n_labels = len(n_pos)
        self.margin_pos_, self.margin_neg_ = margins[:n_labels], margins[n_labels:]
        self.weight_pos_, self.weight_neg_ = weights[:n_labels], weights[n_labels:]
        return self

    def elementwise(self, logits, targets):
        from torch.nn.functional import softplus

        self._require_fit("margin_pos_")
        pos = softplus(-self.s * (logits - as_like(self.margin_pos_, logits)))
        neg = softplus(self.s * (logits + as_like(self.margin_neg_, logits)))
        return targets * as_like(self.weight_pos_, logits) * pos + \
            (1 - targets) * as_like(self.weight_neg_, logits) * neg

    def adjust_logits(self, logits):
        """``s * logits``: the logits the loss trained the sigmoid on (a tensor or an array)."""
        import torch

        return logits * self.s if isinstance(logits, torch.Tensor) else np.asarray(logits) * self.s
