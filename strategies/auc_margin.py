"""AUC-M, the AUC-margin min-max loss of LibAUC (Yuan et al. 2021), and PESG, the optimiser it is trained with.

For each label l, with scores h = sigmoid(logit), the training prevalence p_l, the margin m and three learned
scalars a_l, b_l (minimised) and alpha_l >= 0 (maximised), the per-image objective is (the paper's eq. 6,
LibAUC's ``AUCMLoss`` version ``v1``)::

    (1-p)(h-a)^2 [y=1] + p (h-b)^2 [y=0] + 2 alpha (p(1-p) m + p h [y=0] - (1-p) h [y=1]) - p(1-p) alpha^2

:class:`AUCM` returns it per entry, so the masked mean over the known entries is LibAUC's per-label mean
averaged over the labels (``MultiLabelAUCMLoss`` with ``imratio`` given; the tests compare both numerically when
``libauc`` is installed: ``pip install -e .[libauc]``). This harness does not train through ``libauc`` itself:
version 2.0.1 pulls in transformers, torch-geometric, ogb, OpenCV and medmnist, its multi-label loss has no
unknown-label mask, and its ``PESG`` draws its reference point at random.

:class:`PESG` (the paper's Algorithm 1, SGD form) descends on the network and (a, b) with an "epoch-level"
proximal term ``epoch_decay * (v - v_ref)`` towards the weights the stage started from, plus weight decay and
heavy-ball momentum, and ascends on alpha, projected onto alpha >= 0. The loss brings its optimiser
(:meth:`AUCM.make_optimizer`), with LibAUC's defaults (lr 0.1, momentum 0.9, epoch_decay 2e-3, weight decay 1e-5):
the grid's ``train.optimizer`` / ``lr`` / ``weight_decay`` do not apply to a stage trained with AUC-M, its
``train.scheduler`` does.
"""

from __future__ import annotations

import numpy as np
import torch

from strategies.base import Loss, prevalence
from strategies.losses import as_like


class AUCM(Loss):
    """AUC-margin loss (Yuan et al. 2021) on sigmoid scores, one (a, b, alpha) per label, trained with PESG."""

    optimizer_kind = "pesg"
    # benchmarks/aucm_steps.py (LibAUC's defaults, NIH's prevalences): macro AUC below chance after 60-100 steps,
    # 0.67 after 300, 0.82 after 600 (BCE + Adam: 0.90 after 300); tests/test_stages.py checks the first two.
    min_steps = 600

    def __init__(self, margin: float = 1.0, lr: float = 0.1, momentum: float = 0.9, epoch_decay: float = 2e-3,
                 weight_decay: float = 1e-5):
        self.margin = margin
        self.lr = lr
        self.momentum = momentum
        self.epoch_decay = epoch_decay
        self.weight_decay = weight_decay

    def check_params(self):
        self._check_range("margin", 0.0)
        self._check_range("lr", 1e-12)
        self._check_range("momentum", 0.0, 1.0 - 1e-12)
        self._check_range("epoch_decay", 0.0)
        self._check_range("weight_decay", 0.0)

    def fit(self, y_train):
        super().fit(y_train)
        self.p_ = prevalence(y_train)
        zeros = np.zeros(len(self.p_), dtype=np.float32)
        self.a_, self.b_, self.alpha_ = (torch.tensor(zeros, requires_grad=True) for _ in range(3))
        return self

    def elementwise(self, logits, targets):
        self._require_fit("p_")
        h = torch.sigmoid(logits)
        p = as_like(self.p_, logits)
        a, b, alpha = (t.to(device=logits.device, dtype=logits.dtype) for t in (self.a_, self.b_, self.alpha_))
        pos, neg = targets, 1 - targets
        return (1 - p) * (h - a) ** 2 * pos + p * (h - b) ** 2 * neg + \
            2 * alpha * (p * (1 - p) * self.margin + p * h * neg - (1 - p) * h * pos) - p * (1 - p) * alpha ** 2

    # ---- its own parameters and optimiser ----
    def parameters(self) -> list:
        self._require_fit("a_")
        return [self.a_, self.b_, self.alpha_]

    def to(self, device) -> "AUCM":
        self._require_fit("a_")
        self.a_, self.b_, self.alpha_ = (t.detach().to(device).requires_grad_() for t in self.parameters())
        return self

    def state_dict(self) -> dict:
        return {"a": self.a_.detach().cpu(), "b": self.b_.detach().cpu(), "alpha": self.alpha_.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name in ("a", "b", "alpha"):
                getattr(self, name + "_").copy_(state[name])

    def make_optimizer(self, params, *, lr: float, weight_decay: float) -> "PESG":
        """PESG over the network's ``params``, (a, b) and alpha, with this loss's own settings (the grid's
        ``lr`` and ``weight_decay`` are for the grid's optimiser and are not used)."""
        return PESG([{"params": list(params) + [self.a_, self.b_]}, {"params": [self.alpha_], "ascent": True}],
                    lr=self.lr, momentum=self.momentum, epoch_decay=self.epoch_decay, weight_decay=self.weight_decay)


class PESG(torch.optim.Optimizer):
    """Proximal epoch stochastic gradient descent-ascent (Yuan et al. 2021, Algorithm 1), SGD form.

    A group with ``ascent=True`` (AUC-M's alpha) takes a projected ascent step ``alpha <- max(0, alpha + lr
    * grad)``; every other parameter ``v`` a descent step on ``grad + epoch_decay (v - v_ref) + weight_decay
    v`` through heavy-ball momentum (``buf <- momentum buf + d``, ``v <- v - lr buf``), ``v_ref`` being ``v``
    when the optimiser was made (kept in its state, so a resumed trial keeps it).
    """

    def __init__(self, params, *, lr: float = 0.1, momentum: float = 0.9, epoch_decay: float = 2e-3,
                 weight_decay: float = 1e-5):
        super().__init__(params, {"lr": lr, "momentum": momentum, "epoch_decay": epoch_decay,
                                  "weight_decay": weight_decay, "ascent": False})
        for group in self.param_groups:
            for p in group["params"]:
                if not group["ascent"]:
                    self.state[p]["ref"] = p.detach().clone()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["ascent"]:
                    p.add_(p.grad, alpha=group["lr"]).clamp_(min=0.0)
                    continue
                state = self.state[p]
                d = p.grad + group["epoch_decay"] * (p - state["ref"]) + group["weight_decay"] * p
                if group["momentum"] > 0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d)
                    d = buf
                p.add_(d, alpha=-group["lr"])
        return loss
