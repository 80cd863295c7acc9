"""Staged strategies: training in stages within the grid's fixed epoch budget, mix-up, and post-hoc steps.

A strategy's ``stages`` is a list, in training order, of::

    {name: features, until: 0.7, loss: bce, sampler: none, train: all}            # epochs [0, 70%) of the budget
    {name: classifier, loss: bce, sampler: class_aware, train: classifier, reinit: true}   # the rest

- ``until``: where the stage ends, as a fraction of ``train.epochs`` (increasing; the last stage ends at 1.0 and
  may omit it). Every strategy trains for the same ``train.epochs``, so staged and single-stage strategies are
  compared at equal compute. :func:`bounds` turns the fractions into epochs, at least one per stage.
- ``loss``, ``sampler``, ``mixup``: as at the strategy's top level, which a stage inherits when it omits them.
- ``train``: ``all`` (every parameter) or ``classifier`` (the backbone's ``get_classifier()`` only; the rest
  frozen, batch-norm statistics included). ``reinit: true`` re-initialises the classifier (timm's
  ``reset_classifier``) when the stage starts.
- ``restart``: a fresh optimiser and learning-rate schedule over this stage (and the stages after it that do
  not restart) instead of continuing the previous stage's. Required (and the default) for a ``classifier``
  stage, a ``reinit`` stage and a stage whose loss brings its own optimiser (AUC-M's PESG) or follows one that
  did; false otherwise (DRW keeps its optimiser and schedule, as Cao et al. do).

``mixup: {alpha, beta, partner}`` mixes every batch with a partner batch: ``x = (1 - lam) x + lam x'``, the loss
``(1 - lam) L(out, y) + lam L(out, y')`` (for BCE the same as mixing the label vectors), one ``lam ~ Beta(alpha,
beta)`` per batch. The partner rows are drawn by the ``partner`` sampler: ``none`` (a random permutation of the
training images: Zhang et al.'s MixUp, ``beta = alpha``) or ``class_aware`` (Galdran et al.'s Balanced-MixUp,
``beta = 1``).

The decision rule applies at the end, after the optional ``posthoc`` step (:class:`TauNorm`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from strategies._registry import as_mapping as _as_mapping  # a component as a name or a mapping
from strategies.base import Component, Stage, bounds, segment, stage_of  # noqa: F401  (the stage machinery)

STAGE_KEYS = ("name", "until", "loss", "sampler", "mixup", "train", "reinit", "restart")
TRAIN_CHOICES = ("all", "classifier")


# ---- specs ---------------------------------------------------------------------------------------
def resolve_stages(raw: Any, *, name: str, loss: dict, sampler: dict, mixup: dict | None) -> list[dict]:
    """Validate a strategy's ``stages`` and fill each stage in (inherited parts, defaults), as plain values."""
    from strategies._registry import did_you_mean
    from strategies.catalogue import LOSSES

    where = f"strategy {name!r}: stages"
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"{where} must be a non-empty list of stages ({{until, loss, sampler, train, ...}}), "
                         f"got {raw!r}")
    out, prev_until, prev_opt = [], 0.0, None
    for k, st in enumerate(raw):
        here = f"{where}[{k}]"
        if not isinstance(st, Mapping):
            raise ValueError(f"{here} must be a mapping with keys {', '.join(STAGE_KEYS)}, got {st!r}")
        for key in st:
            if key not in STAGE_KEYS:
                raise ValueError(f"{here}: unknown key {key!r}{did_you_mean(key, STAGE_KEYS, n=1, fold_case=False)} "
                                 f"(valid: {', '.join(STAGE_KEYS)})")
        last = k == len(raw) - 1
        until = st.get("until", 1.0 if last else None)
        if isinstance(until, bool) or not isinstance(until, (int, float)) or not prev_until < until <= 1.0:
            raise ValueError(f"{here}.until={until!r} must be a fraction of train.epochs in ({prev_until}, 1.0]"
                             + (" (the end of this stage)" if until is None else ""))
        if last and until != 1.0:
            raise ValueError(f"{here}.until={until!r}: the last stage must end at 1.0 (the whole budget)")
        train = st.get("train", "all")
        if train not in TRAIN_CHOICES:
            raise ValueError(f"{here}.train={train!r} is not one of {', '.join(map(repr, TRAIN_CHOICES))}")
        flags = {}
        for key in ("reinit", "restart"):
            if key in st and not isinstance(st[key], bool):
                raise ValueError(f"{here}.{key}={st[key]!r} must be true or false")
        stage_loss = _as_mapping(st.get("loss", loss))
        opt = LOSSES.get(str(stage_loss.get("name"))).meta.get("optimizer", "") if "name" in stage_loss else ""
        flags["reinit"] = bool(st.get("reinit", False))
        needed = k > 0 and (train == "classifier" or flags["reinit"] or opt != prev_opt or bool(opt))
        flags["restart"] = bool(st.get("restart", needed or k == 0))
        if needed and not flags["restart"]:
            why = "re-initialises the classifier" if flags["reinit"] else "trains the classifier only" \
                if train == "classifier" else f"uses its loss's own optimiser ({opt})" if opt else \
                "uses another optimiser than the stage before"
            raise ValueError(f"{here}.restart=false: this stage {why}, so it needs a fresh optimiser (restart: true)")
        stage_mixup = st.get("mixup", mixup)
        out.append({"name": str(st.get("name") or f"stage{k + 1}"), "until": float(until), "loss": stage_loss,
                    "sampler": _as_mapping(st.get("sampler", sampler)), "train": train, **flags,
                    **({"mixup": resolve_mixup(stage_mixup, where=f"{here}.mixup")} if stage_mixup else {})})
        prev_until, prev_opt = until, opt
    names = [s["name"] for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: stage names {names} repeat; give each stage its own name")
    return out


def resolve_mixup(raw: Any, *, where: str) -> dict:
    """``{alpha, beta, partner}`` with defaults (0.2, alpha, ``none``), checked."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a mapping {{alpha, beta, partner}}, got {raw!r}")
    unknown = set(raw) - {"alpha", "beta", "partner"}
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r} (valid: alpha, beta, partner)")
    out = {"alpha": raw.get("alpha", 0.2)}
    out["beta"] = raw.get("beta", out["alpha"])
    for key in ("alpha", "beta"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{where}.{key}={v!r} must be a number > 0 (lam ~ Beta(alpha, beta))")
        out[key] = float(v)
    out["partner"] = _as_mapping(raw.get("partner", "none"))
    return out


# ---- the objects a trial trains with -------------------------------------------------------------
class Mixup(Component):
    """Mix each batch with a partner batch drawn by the ``partner`` sampler; ``lam ~ Beta(alpha, beta)`` per
    batch (MixUp: partner ``none``, ``beta = alpha``; Balanced-MixUp: partner ``class_aware``, ``beta = 1``)."""

    kind = "mixup"

    def __init__(self, alpha: float = 0.2, beta: float = 0.2, partner=None):
        self.alpha = alpha
        self.beta = beta
        self.partner = partner

    def fit(self, y_train: np.ndarray, features: np.ndarray | None = None) -> "Mixup":
        self.partner.fit(y_train, features=features)
        self.n_ = len(y_train)
        return self

    def partner_rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` partner row positions (into the fitted labels), from the partner sampler's epochs."""
        self._require_fit("n_")
        rows = np.asarray(self.partner.epoch_indices(rng), dtype=np.int64)
        while len(rows) < n:
            rows = np.concatenate([rows, np.asarray(self.partner.epoch_indices(rng), dtype=np.int64)])
        return rows[:n]

    def lambdas(self, rng: np.random.Generator, n_batches: int) -> np.ndarray:
        """One mixing weight per batch, drawn from Beta(alpha, beta)."""
        return rng.beta(self.alpha, self.beta, size=n_batches)

    def __repr__(self) -> str:
        return f"Mixup(alpha={self.alpha}, beta={self.beta}, partner={self.partner!r})"


class TauNorm(Component):
    """tau-normalisation (Kang et al. 2020): classifier rows ``W_j / ||W_j||^tau``, tau chosen on validation.

    With independent sigmoid labels, rescaling row j multiplies ``z_j - b_j`` by a positive constant, a monotone
    map of label j's logit: per-label AUC, AP and F1 at thresholds tuned afterwards cannot change (tau-norm
    works in softmax through the competition between classes, which independent labels do not have). What it
    changes is the probabilities, so F1 at 0.5 and calibration. ``criterion`` picks tau among ``taus`` on the
    validation part: ``f1_fixed`` (macro F1 at 0.5, the analogue of Kang et al.'s accuracy at the arg-max; ties
    go to the smallest tau) or ``bce`` (validation log-loss). The bias is kept.
    """

    kind = "posthoc"

    def __init__(self, taus: tuple = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0), criterion: str = "f1_fixed"):
        self.taus = taus
        self.criterion = criterion

    def check_params(self):
        self._check_choice("criterion", ("f1_fixed", "bce"))
        taus = self.taus
        if not isinstance(taus, (list, tuple)) or not taus or \
                any(isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0 for t in taus):
            raise ValueError(f"TauNorm: taus={taus!r} must be a non-empty list of numbers >= 0")

    def fit(self, weight: np.ndarray, bias: np.ndarray | None, logits: np.ndarray, y: np.ndarray, *,
            adjust=None) -> "TauNorm":
        """Choose tau on validation ``logits`` (N, L) and labels ``y`` (1 / 0 / NaN) for a classifier of ``weight``
        (L, ...) and ``bias`` (L,) or None; ``adjust`` maps logits before the sigmoid (the loss's)."""
        weight = np.asarray(weight, dtype=np.float64).reshape(len(weight), -1)
        self.norms_ = np.linalg.norm(weight, axis=1)
        self.bias_ = np.zeros(len(weight)) if bias is None else np.asarray(bias, dtype=np.float64)
        scores = []
        for tau in self.taus:
            z = self._apply(np.asarray(logits, dtype=np.float64), float(tau))
            z = adjust(z) if adjust is not None else z
            scores.append(self._score(y, 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))))
        self.scores_ = [float(s) for s in scores]
        best = int(np.argmax(scores))  # the first (smallest-tau) of equal scores
        self.tau_ = float(self.taus[best])
        self.scale_ = 1.0 / np.power(np.maximum(self.norms_, 1e-12), self.tau_)
        return self

    def _apply(self, logits: np.ndarray, tau: float) -> np.ndarray:
        scale = 1.0 / np.power(np.maximum(self.norms_, 1e-12), tau)
        return (logits - self.bias_) * scale + self.bias_

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """The logits the tau-normalised classifier gives (what rescaling its rows in place makes the model give)."""
        self._require_fit("tau_")
        return self._apply(np.asarray(logits, dtype=np.float64), self.tau_)

    def _score(self, y: np.ndarray, p: np.ndarray) -> float:
        """Higher is better: macro F1 at 0.5 over the labels with a validation positive, or minus the log-loss."""
        y = np.asarray(y, dtype=np.float64)
        known = ~np.isnan(y)
        if self.criterion == "bce":
            p = np.clip(p, 1e-7, 1 - 1e-7)
            ll = np.where(known, np.nan_to_num(y) * np.log(p) + (1 - np.nan_to_num(y)) * np.log(1 - p), 0.0)
            return float(ll.sum() / max(known.sum(), 1))
        f1s = []
        for j in range(y.shape[1]):
            yj, pj = y[known[:, j], j], p[known[:, j], j] >= 0.5
            if yj.sum() > 0:
                tp = float(np.sum(pj & (yj == 1)))
                f1s.append(2 * tp / (2 * tp + np.sum(pj & (yj == 0)) + np.sum(~pj & (yj == 1))))
        return float(np.mean(f1s)) if f1s else 0.0

    def describe(self) -> dict:
        self._require_fit("tau_")
        return {"name": self.name, **self.get_params(), "taus": list(self.taus), "tau": self.tau_,
                "scores": self.scores_}
