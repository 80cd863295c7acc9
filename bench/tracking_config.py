"""The grid's ``tracking`` section: which trackers follow a run (bench/tracking.py builds their Ray Tune callbacks).

Each backend with settings (``mlflow``, ``wandb``) is a section of its own, a mapping or null (off); every one
is parsed by :func:`bench.fields.parse`, so a bad key or value is the usual one-line error, and a backend whose
package is missing is refused with the pip extra that installs it.

>>> parse_tracking({"tensorboard": True, "mlflow": {"uri": "file:./mlruns"}}, lambda key: "g.yaml").mlflow.experiment
'cxr-bench'
>>> parse_tracking({"mlflow": {"experiment": ""}}, lambda key: "g.yaml")
Traceback (most recent call last):
bench.errors.BenchError: g.yaml: tracking.mlflow.experiment: '' is not valid; expected a non-empty experiment name
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Literal

from bench.errors import BenchError
from bench.fields import BOOL, CHOICE, STR, Annotated, optional, parse, rule, section


def _nonempty(v: str) -> bool:
    return bool(v.strip())


@section
class MLflowTracking:
    """``tracking.mlflow``: one MLflow run per trial under one parent run for the grid (bench/tracking.py)."""

    # http://HOST:PORT, file:./mlruns, sqlite:///mlflow.db; null: $MLFLOW_TRACKING_URI, else MLflow's default
    uri: Annotated[str | None, optional(STR)] = None
    experiment: Annotated[str, STR, rule(_nonempty, "a non-empty experiment name", minLength=1)] = "cxr-bench"
    artifacts: Annotated[bool, BOOL] = True   # each trial's outputs, and the leaderboard files on the parent run


@section
class WandbTracking:
    """``tracking.wandb``: one W&B run per trial; ``offline`` (the default) writes RUN_DIR/wandb, never the network."""

    project: Annotated[str, STR, rule(_nonempty, "a non-empty project name", minLength=1)] = "cxr-bench"
    mode: Annotated[Literal["offline", "online", "disabled"], CHOICE] = "offline"
    entity: Annotated[str | None, optional(STR)] = None


@section
class TrackingConfig:
    """Experiment tracking through Ray Tune's logger callbacks; every backend is off unless named."""

    mlflow: MLflowTracking | None = None
    tensorboard: Annotated[bool, BOOL] = False   # event files under RUN_DIR/tensorboard/<trial id>/
    wandb: WandbTracking | None = None


#: the backends of ``tracking`` that are sections of their own, and the package each needs
TRACKING_BACKENDS = {"mlflow": (MLflowTracking, "mlflow"), "wandb": (WandbTracking, "wandb")}


def parse_tracking(value: Any, where: Callable[[str], str]) -> TrackingConfig:
    """The tracking section: each backend that has settings (``mlflow``, ``wandb``) is a section of its own (a
    mapping, or null for off), parsed like any other; a backend whose package is missing is refused here, with
    the pip extra that installs it."""
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise BenchError(f"{where('tracking')}: tracking must be a mapping, got {value!r}")
    backends = {}
    for key, (cls, package) in TRACKING_BACKENDS.items():
        if value.get(key) is None:
            continue
        if not isinstance(value[key], Mapping):
            keys = ", ".join(f.name for f in dataclasses.fields(cls))
            raise BenchError(f"{where('tracking.' + key)}: tracking.{key}: {value[key]!r} is not valid; expected a "
                             f"mapping ({keys}; {{}} for the defaults) or null")
        backends[key] = parse(cls, value[key], f"tracking.{key}", where)
        _need_package(package, f"tracking.{key}", where)
    tracking = parse(TrackingConfig, {k: v for k, v in value.items() if k not in TRACKING_BACKENDS}, "tracking",
                     where, allowed=[f.name for f in dataclasses.fields(TrackingConfig)], **backends)
    if tracking.tensorboard:
        _need_package("tensorboardX", "tracking.tensorboard", where)
    return tracking


def _need_package(package: str, key: str, where: Callable[[str], str]) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        extra = "tracking" if package != "tensorboardX" else "tune"
        install = "pip install -e '.[tracking]'" if extra == "tracking" else "pip install 'ray[tune]'"
        raise BenchError(f"{where(key)}: {key} needs the {package} package, which is not installed: {install}")
