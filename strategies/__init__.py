"""The imbalance-strategy catalogue: registries of losses, samplers and decision rules, and the
named presets that combine them.

>>> from strategies import create_strategy, list_strategies
>>> [e.name for e in list_strategies("focal*")]  # doctest: +SKIP
['focal', 'focal_ros']
>>> s = create_strategy({"loss": "focal", "sampler": "ml_ros", "threshold": "f1"})  # doctest: +SKIP

Importing this package does not import torch: entries are resolved on first use.
"""

from __future__ import annotations

from typing import Any, Mapping

from strategies._registry import Registry, UnknownNameError, as_mapping as _as_mapping
from strategies.catalogue import LOSSES, POSTHOC, SAMPLERS, STRATEGIES, THRESHOLDS

__all__ = [
    "LOSSES", "SAMPLERS", "THRESHOLDS", "POSTHOC", "STRATEGIES", "Registry", "UnknownNameError",
    "create_loss", "create_sampler", "create_threshold", "create_strategy", "list_strategies",
    "resolve_spec", "preset_space", "apply_params", "fold_spec",
]


def _create(registry: Registry, spec: Any):
    name, params = _split(spec, registry.kind)
    entry = registry.get(name)
    cls = entry.load()
    cls.name = name  # the registry's key is the one place a component's name is written (one key per class)
    _check_params(cls, params, f"{registry.kind} {name!r}")
    obj = registry.create(name, **params)
    check = getattr(obj, "check_params", None)
    if check is not None:
        check()
    return obj


def _split(spec: Any, kind: str) -> tuple[str, dict]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and "name" in spec:
        params = {k: v for k, v in spec.items() if k != "name"}
        return str(spec["name"]), params
    raise ValueError(f"a {kind} must be a name or a mapping with 'name', got {spec!r}")


def _check_params(cls, params: dict, what: str) -> None:
    from strategies._registry import did_you_mean
    from strategies.base import param_names

    allowed = param_names(cls)
    for key in params:
        if key not in allowed:
            hint = did_you_mean(key, allowed, n=1, fold_case=False)
            valid = ", ".join(allowed) or "none"
            raise ValueError(f"unknown parameter {key!r} for {what}{hint} (valid: {valid})")


def create_loss(spec: Any):
    """A fresh loss from a name or ``{name: ..., **params}``."""
    return _create(LOSSES, spec)


def create_sampler(spec: Any):
    """A fresh sampler from a name or ``{name: ..., **params}``."""
    return _create(SAMPLERS, spec)


def create_threshold(spec: Any):
    """A fresh decision rule from a name or ``{name: ..., **params}``."""
    return _create(THRESHOLDS, spec)


def resolve_spec(spec: Any) -> dict:
    """Normalise a strategy given as a preset name or a mapping into a full spec.

    Returns ``{"name", "loss", "sampler", "threshold", "description"}`` where each part is a
    mapping ``{"name": ..., **params}``, plus ``stages``, ``mixup`` and ``posthoc`` for a strategy that declares
    them (:mod:`strategies.stages`; each stage filled in and checked). A mapping may name a ``preset`` and
    override parts of it.
    """
    if isinstance(spec, str):
        if spec not in STRATEGIES:
            load_user_presets()
        entry = STRATEGIES.get(spec)
        out = {"name": spec, "description": entry.description}
        for part in ("loss", "sampler", "threshold"):
            out[part] = _as_mapping(entry.meta[part])
        for key in STAGED_KEYS:
            if entry.meta.get(key):
                out[key] = entry.meta[key]
        if entry.meta.get("folds"):  # tuned per outer fold: a run applies them with fold_spec
            out["folds"] = {int(f): dict(p) for f, p in entry.meta["folds"].items()}
        return _resolve_staged(out)
    if not isinstance(spec, Mapping):
        raise ValueError(f"a strategy must be a preset name or a mapping, got {spec!r}")
    allowed = {"name", "preset", "loss", "sampler", "threshold", "description", *STAGED_KEYS}
    for key in spec:
        if key not in allowed:
            from strategies._registry import did_you_mean

            hint = did_you_mean(key, sorted(allowed), n=1, fold_case=False)
            raise ValueError(f"unknown strategy key {key!r}{hint} (valid: {', '.join(sorted(allowed))})")
    base = resolve_spec(spec["preset"]) if "preset" in spec else {
        "loss": {"name": "bce"}, "sampler": {"name": "none"}, "threshold": {"name": "f1"}, "description": ""}
    if isinstance(spec.get("preset"), str) and STRATEGIES.get(spec["preset"]).meta.get("tuned") is not None:
        raise ValueError(f"preset {spec['preset']!r} ({STRATEGIES.get(spec['preset']).meta.get('file')}) was tuned "
                         "by bench tune for the folds of one split; name it on its own in strategies, not as the "
                         "'preset' of a composition")
    out = dict(base)
    for part in ("loss", "sampler", "threshold"):
        if part in spec:
            out[part] = _as_mapping(spec[part])
    for key in STAGED_KEYS:
        if key in spec:
            out[key] = spec[key]
    name = spec.get("name") or "+".join(
        [out["loss"]["name"]] + ([out["sampler"]["name"]] if out["sampler"]["name"] != "none" else []))
    out["name"] = str(name)
    out["description"] = str(spec.get("description") or base.get("description") or _describe(out))
    return _resolve_staged(out)


STAGED_KEYS = ("stages", "mixup", "posthoc")


def _resolve_staged(out: dict) -> dict:
    """Check and fill in ``stages``, ``mixup`` and ``posthoc`` (``null`` ones are dropped)."""
    from strategies.stages import resolve_mixup, resolve_stages

    for key in STAGED_KEYS:
        if key in out and out[key] is None:
            del out[key]
    if "mixup" in out:
        out["mixup"] = resolve_mixup(out["mixup"], where=f"strategy {out['name']!r}: mixup")
    if "stages" in out:
        out["stages"] = resolve_stages(out["stages"], name=out["name"], loss=out["loss"], sampler=out["sampler"],
                                       mixup=out.get("mixup"))
    if "posthoc" in out:
        out["posthoc"] = _as_mapping(out["posthoc"])
    return out




def _describe(spec: dict) -> str:
    def fmt(p):
        params = ", ".join(f"{k}={v}" for k, v in p.items() if k != "name")
        return p["name"] + (f"({params})" if params else "")

    return f"loss {fmt(spec['loss'])}, sampler {fmt(spec['sampler'])}, threshold {fmt(spec['threshold'])}"


def create_strategy(spec: Any):
    """Build a :class:`strategies.base.Strategy` from a preset name or a spec mapping."""
    from strategies.base import Strategy

    from strategies.base import Stage
    from strategies.stages import Mixup

    full = resolve_spec(spec)

    def mixup(m):
        return Mixup(m["alpha"], m["beta"], create_sampler(m["partner"])) if m else None

    stages = [Stage(st["name"], st["until"], loss=create_loss(st["loss"]), sampler=create_sampler(st["sampler"]),
                    mixup=mixup(st.get("mixup")), train=st["train"], reinit=st["reinit"], restart=st["restart"])
              for st in full.get("stages", [])]
    if not stages and full.get("mixup"):
        stages = [Stage("train", 1.0, loss=create_loss(full["loss"]), sampler=create_sampler(full["sampler"]),
                        mixup=mixup(full["mixup"]))]
    loss = stages[-1].loss if stages else create_loss(full["loss"])
    sampler = stages[0].sampler if stages else create_sampler(full["sampler"])
    return Strategy(
        full["name"],
        loss=loss,
        sampler=sampler,
        threshold=create_threshold(full["threshold"]),
        description=full["description"],
        spec=full,
        stages=stages or None,
        posthoc=_create(POSTHOC, full["posthoc"]) if full.get("posthoc") else None,
    )


def preset_space(spec: Any) -> dict:
    """The tunable ``space`` of a preset name, or of a mapping's ``preset`` ({} for a bare mapping).

    >>> preset_space("focal")  # doctest: +SKIP
    {'loss.gamma': {'uniform': [1.0, 4.0]}}
    """
    if isinstance(spec, str):
        return dict(STRATEGIES.get(spec).meta.get("space", {}))
    if isinstance(spec, Mapping) and "preset" in spec:
        return preset_space(spec["preset"])
    return {}


def apply_params(spec: Any, params: Mapping[str, Any]) -> dict:
    """A resolved spec with dotted overrides such as ``{"loss.gamma": 3.0}`` applied.

    >>> apply_params("focal", {"loss.gamma": 3.0})["loss"]  # doctest: +SKIP
    {'name': 'focal', 'gamma': 3.0}
    """
    full = resolve_spec(spec)
    for key, value in params.items():
        part, _, param = str(key).partition(".")
        if part not in ("loss", "sampler", "threshold") or not param:
            raise ValueError(f"bad parameter key {key!r}: expected 'loss.<name>', 'sampler.<name>' or "
                             f"'threshold.<name>'")
        full[part] = {**full[part], param: value}
    return full


def fold_spec(spec: Mapping[str, Any], fold: int) -> dict:
    """The resolved spec a trial on ``fold`` trains with: a preset tuned per fold by ``bench tune`` gets
    the parameters chosen for that fold (``spec["folds"][fold]``); any other spec is returned unchanged.

    >>> fold_spec(resolve_spec("focal"), 1) == resolve_spec("focal")
    True
    >>> tuned = {**resolve_spec("focal"), "folds": {0: {"loss.gamma": 3.0}, 1: {"loss.gamma": 1.5}}}
    >>> fold_spec(tuned, 1)["loss"], "folds" in fold_spec(tuned, 1)
    ({'name': 'focal', 'gamma': 1.5}, False)
    """
    spec = dict(spec)
    folds = spec.pop("folds", None)
    if folds is None:
        return spec
    if fold not in folds:
        raise ValueError(f"strategy {spec['name']!r} holds tuned parameters for folds {sorted(folds)}, not for "
                         f"fold {fold}")
    out = apply_params(spec, folds[fold])
    chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in folds[fold].items())
    out["description"] = f"{spec['description']} [fold {fold}: {chosen}]"
    return out


def list_strategies(pattern: str | None = None):
    """Registered presets (built-in and user preset files) matching a shell-style pattern."""
    load_user_presets()
    return STRATEGIES.list(pattern)


def load_user_presets(dirs=None) -> list[str]:
    """Register the YAML presets of ``./presets`` and ``$BENCH_PRESETS`` (see strategies.user_presets)."""
    from strategies.user_presets import load_user_presets as _load

    return _load(dirs)
