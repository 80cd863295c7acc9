"""The three parts of a strategy: a loss, a sampler and a decision rule.

Following scikit-learn's convention, constructors only store their parameters; what is learned
from the training labels (positive weights, priors, sampling weights, thresholds) is learned in
``fit`` and stored in attributes ending in ``_``.

Each base class has one hook that variants override:

- :class:`Loss` -> ``elementwise(logits, targets)``: the (B, L) loss; the base masks NaN
  (unknown) targets and averages over the known entries.
- :class:`Sampler` -> ``epoch_indices(rng)``: the training rows of one epoch.
- :class:`ThresholdRule` -> ``fit_label(y, p)``: one label's threshold.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np


def param_names(cls) -> list[str]:
    """Named parameters of ``cls.__init__`` (no ``self``, no ``*args``/``**kwargs``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    sig = inspect.signature(cls.__init__)
    return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]


class Component:
    """Parameter storage shared by losses, samplers and threshold rules."""

    kind = "component"
    name = ""  # its registry key, set on the class when the registry first creates one (strategies._create)

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's parameter names (what a grid may set)."""
        return param_names(cls)

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self.param_names() if hasattr(self, p)}

    def check_params(self) -> None:
        """Validate parameter values (called when a component is created from a spec); raise ValueError."""

    def _check_choice(self, key: str, choices: tuple) -> None:
        value = getattr(self, key)
        if value not in choices:
            raise ValueError(f"{type(self).__name__}: {key}={value!r} is not one of {', '.join(map(repr, choices))}")

    def _check_range(self, key: str, lo: float | None = None, hi: float | None = None) -> None:
        value = getattr(self, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise ValueError(f"{type(self).__name__}: {key}={value!r} must be a number in {bounds}")

    def _require_fit(self, attr: str) -> None:
        if not hasattr(self, attr):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(y_train) first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def known_mask(y: np.ndarray) -> np.ndarray:
    """True where a label is known (not NaN)."""
    return ~np.isnan(np.asarray(y, dtype=np.float64))


def prevalence(y: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """Per-label positive rate over the known entries, clipped to [eps, 1 - eps]."""
    y = np.asarray(y, dtype=np.float64)
    known = known_mask(y)
    n_known = known.sum(axis=0)
    pos = np.where(known, y, 0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_known > 0, pos / np.maximum(n_known, 1), 0.0)
    return np.clip(p, eps, 1 - eps)


class Loss(Component):
    """A multi-label loss on logits. Override :meth:`elementwise`; optionally :meth:`fit`."""

    kind = "loss"

    def fit(self, y_train: np.ndarray) -> "Loss":
        """Learn label statistics from the training labels (N, L) of 1 / 0 / NaN."""
        self.n_labels_ = int(np.asarray(y_train).shape[1])
        return self

    def elementwise(self, logits, targets):  # pragma: no cover - abstract
        """Per-entry loss (B, L) for targets in {0, 1} (unknown entries already zero-filled)."""
        raise NotImplementedError

    def __call__(self, logits, targets):
        """Mean loss over the known (non-NaN) entries of ``targets``."""
        import torch

        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
        known = ~torch.isnan(targets)
        filled = torch.where(known, targets, torch.zeros_like(targets))
        per = self.elementwise(logits, filled)
        per = torch.where(known, per, torch.zeros_like(per))
        return per.sum() / known.sum().clamp(min=1)

    def adjust_logits(self, logits):
        """Post-hoc logit correction applied before the sigmoid at prediction time (identity)."""
        return logits

    # A loss with learned tensors of its own (AUC-M's a, b, alpha) overrides these; a loss that needs its own
    # optimiser (AUC-M's PESG) sets ``optimizer_kind`` and overrides :meth:`make_optimizer`.
    optimizer_kind = ""
    #: Optimiser steps below which this loss is known not to have learnt yet (None: no such floor). A trial
    #: whose stage trains it for fewer records a warning (``metrics.json`` ``warnings``, the log, the page).
    min_steps: int | None = None

    def parameters(self) -> list:
        """The loss's own learned tensors (none)."""
        return []

    def to(self, device) -> "Loss":
        """Move the loss's own tensors to ``device`` (before an optimiser is made over them)."""
        return self

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the loss's own tensors (nothing)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (nothing to restore)."""

    def make_optimizer(self, params, *, lr: float, weight_decay: float):
        """The optimiser of a stage trained with this loss, or ``None`` for the grid's ``train.optimizer``."""
        return None


class Sampler(Component):
    """Chooses the training rows of each epoch. Override :meth:`epoch_indices`.

    A sampler that needs per-image feature vectors (e.g. to find neighbours) sets
    ``needs_features = True`` and requires ``fit(y_train, features=...)``; see
    :meth:`Strategy.fit`.
    """

    kind = "sampler"
    # Which way the sampler is meant to move the imbalance ratio (IRLbl) of what the model sees:
    # "down" (towards balance), "none" (leaves it unchanged).
    irlbl_direction = "down"
    needs_features = False

    def fit(self, y_train: np.ndarray, features: np.ndarray | None = None) -> "Sampler":
        """Learn from the training labels (N, L) of 1 / 0 / NaN; ``features`` is ignored here."""
        self.y_ = np.asarray(y_train, dtype=np.float64)
        if self.y_.ndim != 2:
            raise ValueError(f"training labels must be an (N, L) matrix, got shape {self.y_.shape}")
        self.n_ = len(self.y_)
        return self

    def epoch_indices(self, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover - abstract
        """Row positions (into the fitted labels) for one epoch, in training order."""
        raise NotImplementedError

    def imbalance(self, rng: np.random.Generator) -> dict[str, float]:
        """MeanIR and label-less share of the training labels and of one epoch drawn with ``rng``.

        ``mean_ir_*`` is Charte et al.'s MeanIR (labels without a positive left out; NaN when no label has
        one); ``no_finding_*`` is the share of rows without a positive label; ``rows_*`` the row counts.
        It draws an epoch, so pass a generator made for the purpose (or the one of the epoch to describe).

        >>> from strategies.samplers import Uniform
        >>> y = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
        >>> Uniform().fit(y).imbalance(np.random.default_rng(0))  # doctest: +NORMALIZE_WHITESPACE
        {'mean_ir_before': 2.0, 'mean_ir_after': 2.0, 'no_finding_before': 0.25, 'no_finding_after': 0.25,
         'rows_before': 4, 'rows_after': 4}
        """
        from strategies.measures import mean_ir

        self._require_fit("y_")
        after = self.y_[np.asarray(self.epoch_indices(rng), dtype=np.int64)]

        def label_less(y: np.ndarray) -> float:
            return float((~(y == 1).any(axis=1)).mean()) if len(y) else float("nan")

        return {"mean_ir_before": mean_ir(self.y_), "mean_ir_after": mean_ir(after),
                "no_finding_before": label_less(self.y_), "no_finding_after": label_less(after),
                "rows_before": int(self.n_), "rows_after": int(len(after))}


class ThresholdRule(Component):
    """Turns probabilities into decisions, one threshold per label. Override :meth:`fit_label`."""

    kind = "threshold"

    def fit(self, y_val: np.ndarray, p_val: np.ndarray) -> "ThresholdRule":
        """Fit one threshold per label on VALIDATION labels and probabilities (never held-out ones)."""
        y_val = np.asarray(y_val, dtype=np.float64)
        p_val = np.asarray(p_val, dtype=np.float64)
        if y_val.shape != p_val.shape:
            raise ValueError(f"labels {y_val.shape} and probabilities {p_val.shape} differ in shape")
        out = np.empty(y_val.shape[1])
        for j in range(y_val.shape[1]):
            known = known_mask(y_val[:, j])
            out[j] = self.fit_label(y_val[known, j], p_val[known, j])
        self.thresholds_ = out
        return self

    def fit_label(self, y: np.ndarray, p: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, p: np.ndarray) -> np.ndarray:
        """Binary decisions (N, L) as int8."""
        return (np.asarray(p) >= self.thresholds_[None, :]).astype(np.int8)


# ---- stages: where each ends, optimiser segments (their specs, mix-up and post-hoc steps: strategies.stages) ----
def bounds(untils: list[float], epochs: int, *, name: str = "strategy") -> list[tuple[int, int]]:
    """Each stage's epochs ``[start, stop)``: stage k ends at ``round(until_k * epochs)``, moved so that every
    stage keeps at least one epoch; the last ends at ``epochs``. Fewer epochs than stages is an error.

    >>> bounds([0.7, 1.0], 10), bounds([0.7, 1.0], 3), bounds([0.7, 1.0], 2), bounds([1.0], 4)
    ([(0, 7), (7, 10)], [(0, 2), (2, 3)], [(0, 1), (1, 2)], [(0, 4)])
    """
    n = len(untils)
    if epochs < n:
        raise ValueError(f"strategy {name!r} trains in {n} stages but train.epochs is {epochs}: each stage needs at "
                         f"least one epoch (set train.epochs >= {n})")
    out, start = [], 0
    for k, until in enumerate(untils):
        stop = epochs if k == n - 1 else min(max(math.floor(until * epochs + 0.5), start + 1), epochs - (n - 1 - k))
        out.append((start, stop))
        start = stop
    return out


def stage_of(epoch: int, spans: list[tuple[int, int]]) -> int:
    """The index of the stage that trains ``epoch``."""
    for k, (start, stop) in enumerate(spans):
        if start <= epoch < stop:
            return k
    raise ValueError(f"epoch {epoch} is outside the stages {spans}")


def segment(k: int, stages: list) -> tuple[int, int]:
    """(first, last) stage index of the optimiser segment that stage ``k`` belongs to: it starts at the last
    stage <= k that restarts (or stage 0) and runs until the next restart."""
    first = max([j for j in range(k + 1) if j == 0 or stages[j].restart])
    last = first
    while last + 1 < len(stages) and not stages[last + 1].restart:
        last += 1
    return first, last


class Stage:
    """One stage: its loss, sampler, optional mix-up (:class:`strategies.stages.Mixup`), which parameters train,
    and where it ends (``until``, a fraction of the epoch budget)."""

    def __init__(self, name: str, until: float, *, loss, sampler, mixup: "Mixup | None" = None, train: str = "all",
                 reinit: bool = False, restart: bool = True):
        self.name, self.until, self.loss, self.sampler, self.mixup = name, until, loss, sampler, mixup
        self.train, self.reinit, self.restart = train, reinit, restart

    @property
    def needs_features(self) -> bool:
        return bool(getattr(self.sampler, "needs_features", False)) or \
            bool(self.mixup is not None and self.mixup.partner.needs_features)

    def fit(self, y_train: np.ndarray, *, features: np.ndarray | None = None) -> "Stage":
        self.loss.fit(y_train)
        self.sampler.fit(y_train, features=features)
        if self.mixup is not None:
            self.mixup.fit(y_train, features=features)
        return self

    def describe(self) -> dict:
        """Plain values for ``metrics.json``."""
        def part(c):
            return {"name": c.name, **c.get_params()}

        return {"name": self.name, "loss": part(self.loss), "sampler": part(self.sampler), "train": self.train,
                "reinit": self.reinit, "restart": self.restart,
                **({"mixup": {**self.mixup.get_params(), "partner": part(self.mixup.partner)}} if self.mixup else {})}

    def __repr__(self) -> str:
        return (f"Stage({self.name!r}, until={self.until}, loss={self.loss!r}, sampler={self.sampler!r}, "
                f"train={self.train!r}, reinit={self.reinit}, restart={self.restart}, mixup={self.mixup!r})")


class Strategy:
    """A named combination of a loss, a sampler and a threshold rule, trained in one or more stages. In a trial::

        s = Strategy("bce", loss=..., sampler=..., threshold=...)   # usually strategies.create_strategy(spec)
        s.fit(y_train); loss = s.loss(logits, targets); rows = s.sampler.epoch_indices(rng)
        probs = torch.sigmoid(s.loss.adjust_logits(logits))           # at prediction time
        decisions = s.threshold.fit(y_val, p_val).predict(probs)

    ``stages`` (:class:`Stage`, one or more, in training order) each hold their own loss,
    sampler, optional mix-up and which parameters train; without them the strategy is one stage of ``loss`` and
    ``sampler``. ``loss`` is then the last stage's (its ``adjust_logits`` applies at prediction) and ``sampler``
    the first stage's. ``posthoc`` (e.g. :class:`strategies.stages.TauNorm`) adjusts the trained classifier on
    the validation part before the decision rule is fitted.
    """

    def __init__(self, name: str, *, loss: Loss, sampler: Sampler, threshold: ThresholdRule,
                 description: str = "", spec: dict | None = None, stages: list | None = None, posthoc=None):
        self.name = name
        self.stages = stages or [Stage("train", 1.0, loss=loss, sampler=sampler)]
        self.loss = self.stages[-1].loss
        self.sampler = self.stages[0].sampler
        self.threshold = threshold
        self.posthoc = posthoc
        self.description = description
        self.spec = spec or {}

    @property
    def staged(self) -> bool:
        """True for a strategy declared with ``stages``, mix-up or a post-hoc step (its trials record them)."""
        return bool(self.spec.get("stages") or self.spec.get("mixup") or self.spec.get("posthoc"))

    @property
    def needs_features(self) -> bool:
        """True when :meth:`fit` needs per-image ``features`` (a local-imbalance sampler)."""
        return any(st.needs_features for st in self.stages)

    def stage_bounds(self, epochs: int) -> list[tuple[int, int]]:
        """Each stage's epochs ``[start, stop)`` within a budget of ``epochs`` (see :func:`bounds`)."""
        return bounds([st.until for st in self.stages], epochs, name=self.name)

    def fit(self, y_train: np.ndarray, *, features: np.ndarray | None = None) -> "Strategy":
        """Fit the loss and the sampler on the training labels (N, L) of 1 / 0 / NaN.

        ``features`` is an (N, D) float array, one row per training image in the order of
        ``y_train`` (e.g. PCA of downsampled training images, as ``bench.trial`` does, or a
        model's penultimate activations). Only samplers with ``needs_features`` use it, and they
        raise a ``ValueError`` without it. To refresh the features later (say every few epochs
        with the current model's embeddings), call ``strategy.sampler.fit(y_train, features=new)``.
        """
        for st in self.stages:
            st.fit(y_train, features=features)
        return self

    def __repr__(self) -> str:
        if len(self.stages) > 1:
            return f"Strategy({self.name!r}, stages={self.stages!r}, threshold={self.threshold!r})"
        return f"Strategy({self.name!r}, loss={self.loss!r}, sampler={self.sampler!r}, threshold={self.threshold!r})"
