"""Presets stored as YAML files (written by ``bench tune``), registered next to the built-in ones.

A preset file names a strategy and its three parts::

    name: focal_tuned
    description: focal loss, gamma tuned by bench tune (val macro AUC 0.842 over 16 trials)
    loss: {name: focal, gamma: 2.71}
    sampler: {name: none}
    threshold: {name: f1}
    tuned: {...}          # provenance, ignored when loading

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
    STRATEGIES.register(name, "strategies.base:Strategy", description=str(doc.get("description", "")),
                        loss=doc["loss"], sampler=doc["sampler"], threshold=doc["threshold"],
                        space=dict(doc.get("space") or {}), file=str(path))
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
