"""What the trials' training did, from their ``metrics.json``: per-epoch curves, stages and post-hoc steps.

A trial records (``bench/trial.py``) ``history``, one row per epoch with ``epoch``, ``train_loss``,
``val_macro_auc`` and, for a staged strategy, ``stage``; ``stages``, each stage's description (loss, sampler,
what trains, ``reinit``, ``restart``, mix-up) with its ``epochs: [first, last]`` (1-based, inclusive); and
``posthoc``, the post-hoc step's description with what it fitted (tau-normalisation's ``tau``); ``warnings``,
e.g. a loss trained for fewer optimiser steps than it needs (:func:`step_warnings`). Trials written
before these existed lack them: each function returns what the trials hold and nothing for what they do not.

>>> docs = [{"id": f"r-crt-f{f}-s0", "backbone": "r", "strategy": "crt", "fold": f, "seed": 0,
...          "history": [{"epoch": 1, "train_loss": 0.7, "val_macro_auc": 0.5 + f / 4}],
...          "stages": [{"name": "features", "epochs": [1, 1]}], "posthoc": {"name": "tau_norm", "tau": f / 2}}
...         for f in (0, 1)]
>>> curves(history_frame(docs), "val_macro_auc")[["epoch", "mean", "min", "max", "n"]].to_dict("records")
[{'epoch': 1, 'mean': 0.625, 'min': 0.5, 'max': 0.75, 'n': 2}]
>>> [(v.stages[0]["name"], v.trials) for v in stage_variants(docs)["crt"]]
[('features', ['r-crt-f0-s0', 'r-crt-f1-s0'])]
>>> posthoc_summary(docs)[0]["fitted"]["tau"]["mean"]
0.25
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The per-epoch values the page draws, in ``history``'s names.
CURVE_METRICS = ("val_macro_auc", "train_loss")
KEYS = ["id", "backbone", "strategy", "fold", "seed"]


def _number(v) -> float:
    """A finite float, NaN for anything else (missing, None, a string)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f if math.isfinite(f) else float("nan")


def history_frame(docs: list[dict]) -> pd.DataFrame:
    """One row per (trial, epoch): the trial's keys, ``epoch`` (1-based; a row's position when it has none),
    ``stage`` ('' for a single-stage strategy) and each of :data:`CURVE_METRICS` (NaN where not recorded)."""
    rows = []
    for d in docs:
        for i, h in enumerate(d.get("history") or []):
            rows.append({**{k: d[k] for k in KEYS}, "epoch": int(h.get("epoch", i + 1)),
                         "stage": str(h.get("stage", "")), **{m: _number(h.get(m)) for m in CURVE_METRICS}})
    return pd.DataFrame(rows, columns=KEYS + ["epoch", "stage", *CURVE_METRICS])


def curves(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per backbone x strategy x epoch: ``mean``, the mean over folds of the mean over each fold's seeds (the
    leaderboard's average), ``min`` and ``max`` over the trials and ``n``, the trials with a value."""
    h = history[history[metric].notna()]
    cols = ["backbone", "strategy", "epoch", "mean", "min", "max", "n"]
    if h.empty:
        return pd.DataFrame(columns=cols)
    by = ["backbone", "strategy", "epoch"]
    fold_means = h.groupby(by + ["fold"], sort=False)[metric].mean().groupby(level=by, sort=False).mean()
    spread = h.groupby(by, sort=False)[metric].agg(["min", "max", "count"])
    out = pd.DataFrame({"mean": fold_means, "min": spread["min"], "max": spread["max"],
                        "n": spread["count"].astype(int)}).reset_index()
    return out.sort_values(by, kind="stable").reset_index(drop=True)[cols]


@dataclass
class Variant:
    """One ``stages`` list (None: the trials recorded none) and the ids of the trials that record it."""

    stages: list[dict] | None
    trials: list[str]


def _key(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def stage_variants(docs: list[dict]) -> dict[str, list[Variant]]:
    """Per strategy whose trials record ``stages`` (any of them), the distinct lists they record, the most
    common first; one variant when its trials agree, as they should."""
    by: dict[str, dict[str, Variant]] = {}
    for d in docs:
        stages = d.get("stages") or None
        by.setdefault(str(d["strategy"]), {}).setdefault(_key(stages), Variant(stages, [])).trials.append(str(d["id"]))
    return {s: sorted(v.values(), key=lambda x: -len(x.trials)) for s, v in by.items()
            if any(x.stages is not None for x in v.values())}


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def posthoc_summary(docs: list[dict]) -> list[dict]:
    """Per backbone x strategy whose trials record a ``posthoc`` step, in the trials' order: ``trials`` (their
    number); ``missing``, the ids of its trials without one; ``settings``, the distinct values of each key that is
    not a number and either agrees between the trials or is a plain value such as a name (more than one value is
    a disagreement); ``fitted``, each numeric key's ``mean``, ``min`` and ``max`` over the trials and its
    ``values``, ``(fold, seed, value)`` sorted by seed and fold; and ``varying``, the lists that differ between
    trials, such as the score of every candidate tau (left in ``metrics.json``)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for d in docs:
        groups.setdefault((str(d["backbone"]), str(d["strategy"])), []).append(d)
    out = []
    for (backbone, strategy), members in groups.items():
        steps = [(d, d["posthoc"]) for d in members if isinstance(d.get("posthoc"), dict)]
        if not steps:
            continue
        keys = list(dict.fromkeys(k for _, p in steps for k in p))
        settings, fitted, varying = {}, {}, []
        for k in keys:
            vals = [p.get(k) for _, p in steps]
            if all(_is_number(v) for v in vals):
                trio = sorted(((int(d["fold"]), int(d["seed"]), float(p[k])) for d, p in steps), key=lambda t: t[1::-1])
                nums = [t[2] for t in trio]
                fitted[k] = {"mean": float(np.mean(nums)), "min": min(nums), "max": max(nums), "values": trio}
                continue
            distinct = list({_key(v): v for v in vals}.values())
            if len(distinct) == 1 or not any(isinstance(v, (list, tuple, dict)) for v in vals):
                settings[k] = distinct  # a name or a choice: more than one value is a disagreement to show
            else:
                varying.append(k)
        out.append({"backbone": backbone, "strategy": strategy, "trials": len(steps),
                    "missing": [str(d["id"]) for d in members if not isinstance(d.get("posthoc"), dict)],
                    "settings": settings, "fitted": fitted, "varying": varying})
    return out


def step_warnings(docs: list[dict]) -> list[dict]:
    """Per backbone x strategy x stage x kind whose trials record a ``too_few_steps`` warning (a loss trained for
    fewer optimiser steps than its ``min_steps``) or ``steps_unknown`` (resumed from checkpoints that did not count
    them; ``bench.staging.describe``), in the trials' order: ``kind``, ``stage``, ``loss``, ``min_steps``, ``steps``
    (the fewest and the most over the warned trials; None when unknown), ``warned`` and ``trials`` (how many of the
    backbone x strategy's trials).

    >>> w = {"kind": "too_few_steps", "stage": "train", "loss": "aucm", "steps": 60, "min_steps": 600}
    >>> docs = [{"backbone": "r", "strategy": "aucm", "warnings": [{**w, "steps": n}]} for n in (58, 62)]
    >>> step_warnings(docs + [{"backbone": "r", "strategy": "aucm"}])[0]["steps"]
    (58, 62)
    """
    trials: dict[tuple[str, str], int] = {}
    groups: dict[tuple, list[int | None]] = {}
    for d in docs:
        pair = (str(d["backbone"]), str(d["strategy"]))
        trials[pair] = trials.get(pair, 0) + 1
        for w in d.get("warnings") or []:
            if isinstance(w, dict) and w.get("kind") in ("too_few_steps", "steps_unknown"):
                key = (*pair, str(w["kind"]), str(w.get("stage")), str(w.get("loss")), int(w.get("min_steps", 0)))
                groups.setdefault(key, []).append(int(w["steps"]) if w.get("steps") is not None else None)
    return [{"backbone": b, "strategy": s, "kind": kind, "stage": st, "loss": loss, "min_steps": floor,
             "steps": (min(n), max(n)) if None not in n else None, "warned": len(n), "trials": trials[(b, s)]}
            for (b, s, kind, st, loss, floor), n in groups.items()]


def spell(v) -> str:
    """A stage's part (a loss, a sampler, mix-up) or a value as short text.

    >>> spell({"name": "ldam", "max_m": 0.5, "s": 30.0, "beta": 0.9999})
    'ldam (max_m 0.5, s 30, beta 0.9999)'
    >>> spell({"alpha": 0.2, "beta": 1.0, "partner": {"name": "class_aware"}}), spell([0.0, 0.25]), spell(True)
    ('alpha 0.2, beta 1, partner class_aware', '0, 0.25', 'true')
    """
    if isinstance(v, dict):
        rest = ", ".join(f"{k} {spell(x)}" for k, x in v.items() if k != "name")
        name = str(v["name"]) if "name" in v else ""
        return f"{name} ({rest})" if name and rest else name or rest
    if isinstance(v, (list, tuple)):
        return ", ".join(spell(x) for x in v)
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if _is_number(v):
        return f"{float(v):g}"
    return "" if v is None else str(v)
