"""What one trial of a grid is: a frozen :class:`TrialSpec` (backbone, resolved strategy, fold, seed).

The driver expands a grid into specs (:func:`bench.run.expand`) and every trial function receives one
(:func:`bench.trial.run_trial`). Ray Tune's ``param_space`` holds plain values only, so the spec crosses
that boundary as a plain dict in one place, here: :meth:`TrialSpec.to_dict` on the way in (the driver's
``param_space``, each trial's ``config.json``) and :func:`spec_of` on the way out (a Tune trial's
``config``, in the trainable and in the driver's callbacks).

>>> s = TrialSpec.make("resnet18", {"name": "bce", "loss": "bce"}, fold=1, seed=0)
>>> s.id, s.to_dict()["fold"], spec_of({"trial": s.to_dict()}) == s
('resnet18-bce-f1-s0', 1, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


def trial_id(backbone: str, strategy: str, fold: int, seed: int) -> str:
    """Short readable id, e.g. ``resnet18-focal-f0-s0``."""
    def safe(text: str) -> str:
        return "".join(c if c.isalnum() or c in "_.+" else "_" for c in str(text))

    return f"{safe(backbone)}-{safe(strategy)}-f{int(fold)}-s{int(seed)}"


@dataclass(frozen=True)
class TrialSpec:
    """One (backbone, strategy, fold, seed) of a grid.

    ``strategy`` is the resolved strategy spec (``strategies.resolve_spec`` / ``fold_spec``: name, loss,
    sampler, threshold and their parameters), what ``strategies.create_strategy`` builds the strategy from.
    """

    id: str
    backbone: str
    strategy: Mapping[str, Any]
    fold: int
    seed: int
    node_id: str | None = None   # the Ray node that ran it (set by the trainable; recorded in metrics.json)
    search: bool = False         # a `bench tune` search trial: validation only, the held-out fold never touched

    @classmethod
    def make(cls, backbone: str, strategy: Mapping[str, Any], *, fold: int, seed: int) -> "TrialSpec":
        """The spec of ``backbone`` x ``strategy`` on ``fold`` and ``seed``, with its :func:`trial_id`."""
        return cls(id=trial_id(backbone, strategy["name"], fold, seed), backbone=backbone, strategy=dict(strategy),
                   fold=int(fold), seed=int(seed))

    def replace(self, **changes: Any) -> "TrialSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain values (what Ray Tune's ``param_space`` and ``config.json`` hold); ``node_id`` and ``search``
        only when set."""
        out = {"id": self.id, "backbone": self.backbone, "strategy": dict(self.strategy), "fold": self.fold,
               "seed": self.seed}
        if self.node_id is not None:
            out["node_id"] = self.node_id
        if self.search:
            out["search"] = True
        return out

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> "TrialSpec":
        """The spec back from :meth:`to_dict`'s plain values."""
        return cls(id=str(value["id"]), backbone=str(value["backbone"]), strategy=dict(value["strategy"]),
                   fold=int(value["fold"]), seed=int(value["seed"]), node_id=value.get("node_id"),
                   search=bool(value.get("search", False)))


def spec_of(config: Mapping[str, Any]) -> TrialSpec:
    """The spec of a Ray Tune trial, from its ``config`` (the ``param_space`` entry ``"trial"``)."""
    return TrialSpec.from_dict(config["trial"])


def grid_point(trial) -> str | None:
    """The bench's id of a Ray Tune trial: from its ``config`` or, where that is still empty (a restored trial's,
    until Tune resolves it to start the trial), from the grid values it was created with; None if neither has it.

    >>> from types import SimpleNamespace as T
    >>> grid_point(T(config={}, evaluated_params={"trial": {"id": "a"}})), grid_point(T(config={}))
    ('a', None)
    """
    for values in (trial.config, getattr(trial, "evaluated_params", None)):
        point = values.get("trial") if isinstance(values, dict) else None
        if isinstance(point, dict) and "id" in point:
            return point["id"]
    return None
