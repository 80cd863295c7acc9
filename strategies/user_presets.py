"""Presets stored as YAML files (written by ``bench tune``), registered next to the built-in ones.

A preset file names a strategy and its three parts::

    name: focal_tuned
    description: focal loss, gamma tuned by bench tune (val macro AUC 0.842 over 16 trials)
    loss: {name: focal, gamma: 2.71}
    sampler: {name: none}
    threshold: {name: f1}

A preset written by ``bench tune`` is tuned **per outer fold** (nested): its ``loss`` / ``sampler`` /
``threshold`` are the untuned base, ``folds`` maps each fold of the tuning split to the parameters chosen
on that fold's training part alone, and ``tuned`` records where they came from, including which images
each fold's search saw (``tuned.images``)::

    folds:
      0: {loss.gamma: 2.71}
      1: {loss.gamma: 1.93}
    tuned: {from: focal, split: {hash: ...}, images: {...}, ...}

A run applies fold F's parameters to its fold-F trials and refuses the preset when the images fold F's
search saw intersect the run's held-out fold F (``bench.tuned_presets.check_presets``); a preset with a
``tuned`` block but no ``folds`` (written by an older ``bench tune``) is refused by runs.

They are looked up in ``./presets`` and in every folder of ``$BENCH_PRESETS`` (``:``-separated).
"""

from __future__ import annotations

import os
from pathlib import Path

from strategies.catalogue import STRATEGIES

_loaded: set[str] = set()


def preset_dirs() -> list[Path]:
    dirs = [Path("presets")]
    dirs += [Path(p) for p in os.environ.get("BENCH_PRESETS", "").split(os.pathsep) if p]
    return [d.resolve() for d in dirs if d.is_dir()]


def load_preset_file(path: Path) -> str | None:
    """Register the preset in ``path``; returns its name (None if already registered from there)."""
    import yaml

    path = Path(path).resolve()
    key = str(path)
    if key in _loaded:
        return None
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: YAML syntax error in preset file ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ValueError(f"{path}: a preset file needs 'name', 'loss', 'sampler' and 'threshold' keys")
    name = doc["name"]
    if name in STRATEGIES:
        raise ValueError(f"{path}: preset {name!r} already exists; give the tuned preset another name")
    for part in ("loss", "sampler", "threshold"):
        if part not in doc:
            raise ValueError(f"{path}: preset {name!r} has no {part!r}")
    tuned = doc.get("tuned")
    if tuned is not None and not isinstance(tuned, dict):
        raise ValueError(f"{path}: preset {name!r}: 'tuned' must be a mapping (written by bench tune), got {tuned!r}")
    STRATEGIES.register(name, "strategies.base:Strategy", description=str(doc.get("description", "")),
                        loss=doc["loss"], sampler=doc["sampler"], threshold=doc["threshold"],
                        space=dict(doc.get("space") or {}), file=str(path),
                        folds=_fold_params(doc.get("folds"), path, name), tuned=tuned)
    _loaded.add(key)
    return name


def load_user_presets(dirs: list[Path] | None = None) -> list[str]:
    """Register every ``*.yaml`` preset in the preset folders; returns the names added."""
    added = []
    for d in preset_dirs() if dirs is None else dirs:
        for f in sorted(Path(d).glob("*.y*ml")):
            name = load_preset_file(f)
            if name:
                added.append(name)
    return added


def _fold_params(raw, path: Path, name: str) -> dict[int, dict] | None:
    """``folds`` of a preset file: {fold (int >= 0): {"loss.<p>" | "sampler.<p>" | "threshold.<p>": value}}."""
    if raw is None:
        return None
    where = f"{path}: preset {name!r}: folds"
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{where} must map each fold (0, 1, ...) to its tuned parameters, got {raw!r}")
    out = {}
    for fold, params in raw.items():
        if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0:
            raise ValueError(f"{where}: key {fold!r} is not valid; expected a fold number 0, 1, ...")
        if not isinstance(params, dict):
            raise ValueError(f"{where}.{fold} must map 'loss.<param>' etc. to values, got {params!r}")
        for key, value in params.items():
            part, _, param = str(key).partition(".")
            if part not in ("loss", "sampler", "threshold") or not param:
                raise ValueError(f"{where}.{fold}: key {key!r} is not valid; expected 'loss.<param>', "
                                 "'sampler.<param>' or 'threshold.<param>'")
            if isinstance(value, (dict, list)):
                raise ValueError(f"{where}.{fold}.{key}: {value!r} is not valid; expected a number, string or bool")
        out[fold] = dict(params)
    return out
