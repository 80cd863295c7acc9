"""The grid schema: frozen dataclasses are the schema and the defaults.

A grid YAML is loaded safely, parsed into :class:`GridConfig` and validated once; every error
is one line naming the file, the line, the key, the bad value and what would be valid::

    grids/demo.yaml:7: train.epochs: -1 is not valid; expected an integer >= 1

Relative paths in a grid are resolved against the current working directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from bench.data.catalogue import DATASETS, dataset_kinds, reader_class
from bench.data.reader import COMMON_KEYS
from bench.errors import BenchError, did_you_mean
from bench.yaml_lines import Where, line_map, read_yaml

DATASET_KINDS = dataset_kinds()  # the built-in kinds; validation asks the registry (bench.data.catalogue)


# ---- schema -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetConfig:
    """Where the images come from and how they are prepared.

    ``kind`` picks the reader (:mod:`bench.data.catalogue`); each reader class names its own keys (``keys``)
    and checks their values. The fields below are the union of the built-in kinds' keys.
    """

    kind: str = "synthetic"
    root: str = "data/synthetic"
    image_size: int = 64
    labels: tuple[str, ...] | None = None       # keep only these labels (default: all the reader knows)
    aliases: dict = field(default_factory=dict)  # rename labels, e.g. {"Pleural Effusion": "Effusion"}
    on_bad_image: Literal["exclude", "fail"] = "exclude"  # exclude (with a warning listing them) | fail
    cache_dir: str | None = None                # default: $BENCH_CACHE_DIR or ~/.cache/cxr-bench
    min_positives: int | None = None            # drop labels with fewer positives (default: keep, error if < folds)
    # synthetic
    n: int = 1500
    size: int = 128
    seed: int = 0
    # nih
    label_file: str | None = None
    box_file: str | None = None
    official_test: Literal["ignore", "exclude"] = "ignore"  # ignore | exclude (drop NIH's test_list.txt images)
    # chexpert
    split: str = "train"
    uncertainty: Literal["ignore", "ones", "zeros"] = "ignore"
    views: Literal["frontal", "lateral", "all"] = "frontal"
    # chestmnist
    file: str | None = None
    # csv
    csv: str | None = None
    image_root: str | None = None
    image_column: str = "path"
    label_column: str | None = None
    separator: str = "|"
    label_columns: tuple[str, ...] | None = None
    patient_column: str | None = None
    view_column: str | None = None


COMMON_DATASET_KEYS = set(COMMON_KEYS)


def kind_keys(kind: str) -> set[str]:
    """The keys of the dataset section that only ``kind`` has (its reader's ``keys``)."""
    return set(reader_class(kind).keys)


@dataclass(frozen=True)
class SplitConfig:
    folds: int = 5
    val_fraction: float = 0.2
    seed: int = 0
    file: str | None = None      # a manifest written by `bench data split --out` (verified by hash)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    scheduler: Literal["cosine", "none"] = "cosine"
    pretrained: Any = False      # false | true (timm hub weights) | path to a .pth/.safetensors file
    augment: bool = False        # light random shifts / contrast, on the batch
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    channels_last: str = "auto"  # auto (on GPU) | true | false
    compile: bool = False        # torch.compile the model (GPU)
    num_workers: int = 0         # data-loader worker processes (GPU nodes: 4-8)
    eval_batch_size: int = 256
    keep_weights: bool = False   # keep the final weights in the trial's last checkpoint


@dataclass(frozen=True)
class ResourcesConfig:
    cpu: float = 1
    gpu: float = 0               # fractional (0.5, 0.25) packs small trials onto one card
    max_concurrent: int = 0      # 0 = as many as resources allow
    max_failures: int = 2        # retries of a trial whose worker died, from its last checkpoint


@dataclass(frozen=True)
class LocalisationConfig:
    enabled: bool = True
    methods: tuple[str, ...] = ("gradcam",)
    max_images: int = 200        # held-out boxed images scored per trial (0 = all)
    gallery: int = 4             # overlays kept per trial
    threshold: str = "tune"      # tune (on validation boxed images) | a number in (0, 1)
    tolerance: float = 0.0       # pointing game: a hit within this many pixels of a box (Zhang et al.: 15)


@dataclass(frozen=True)
class ReportConfig:
    baseline: str = "bce"
    head: float = 0.05           # labels with training prevalence >= head are "head"
    tail: float = 0.01           # < tail are "tail"; the rest "medium"
    bootstrap: int = 1000


@dataclass(frozen=True)
class GridConfig:
    name: str = "grid"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    backbones: tuple[str, ...] = ("resnet18",)
    strategies: tuple = ("bce",)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0,)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    localisation: LocalisationConfig = field(default_factory=LocalisationConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    source: str = ""             # the grid file it came from

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def digest(self) -> str:
        """Hash of everything that changes results (not the source file name)."""
        d = self.to_dict()
        d.pop("source", None)
        d.pop("resources", None)  # resources change scheduling, not results
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping) -> "GridConfig":
        """The typed, frozen grid back from :meth:`to_dict` output (a grid validated before: nothing is checked
        again). Keys a section does not have are ignored and missing ones take their defaults, so a grid
        resolved by an older or newer version still reads.

        >>> g = GridConfig.from_dict(GridConfig(train=TrainConfig(batch_size=8)).to_dict())
        >>> g.train.batch_size, g.localisation.methods, g == GridConfig(train=TrainConfig(batch_size=8))
        (8, ('gradcam',), True)
        """
        def section(kind, value):
            names = {f.name: f for f in dataclasses.fields(kind)}
            out = {}
            for key, v in (value or {}).items():
                if key in names:
                    out[key] = tuple(v) if isinstance(v, list) else v
            return kind(**out)

        top = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
                  if k in top and k not in _SECTIONS}
        kwargs.update({k: section(kind, data.get(k)) for k, kind in _SECTIONS.items()})
        return cls(**kwargs)

    def strategy_specs(self) -> list[dict]:
        from strategies import resolve_spec

        return [resolve_spec(s) for s in self.strategies]


_SECTIONS = {"dataset": DatasetConfig, "splits": SplitConfig, "train": TrainConfig, "resources": ResourcesConfig,
             "localisation": LocalisationConfig, "report": ReportConfig}


def choices(cls, name: str) -> tuple:
    """The values a ``Literal``-typed field of a section allows: what validation accepts and what the grid's
    JSON Schema lists (``bench schema``).

    >>> choices(TrainConfig, "optimizer")
    ('adamw', 'sgd')
    """
    return typing.get_args(typing.get_type_hints(cls)[name])


def _or(values: tuple) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---- loading ------------------------------------------------------------------------------------

def load_grid(path: str | os.PathLike) -> GridConfig:
    """Read, parse and validate a grid YAML file.

    >>> cfg = load_grid("grids/demo.yaml")  # doctest: +SKIP
    >>> cfg.backbones  # doctest: +SKIP
    ('resnet18', 'mobilenetv3_small_100')
    """
    p = Path(path)
    shown = str(path)
    if not p.is_file():
        raise BenchError(f"{shown}: grid file not found" + ("" if p.suffix in (".yaml", ".yml") else
                                                             " (expected a .yaml grid, e.g. grids/demo.yaml)"))
    data, node = read_yaml(p, shown=shown)
    if data is None:
        raise BenchError(f"{shown}: the grid is empty")
    if not isinstance(data, Mapping):
        raise BenchError(f"{shown}: a grid must be a mapping of keys (name, dataset, backbones, ...), "
                         f"got {type(data).__name__}")
    where = Where(shown, line_map(node))
    return parse_grid(data, where=where, source=str(p))


def parse_grid(data: Mapping, *, where: Any = None, source: str = "") -> GridConfig:
    """Validate a grid given as a mapping (what the YAML holds)."""
    where = where or (lambda key: source or "grid")
    top = _fields(GridConfig) - {"source"}
    _check_keys(data, top, "", where)

    def sub(cls, key):
        value = data.get(key, {}) or {}
        if not isinstance(value, Mapping):
            raise BenchError(f"{where(key)}: {key} must be a mapping, got {value!r}")
        allowed = _fields(cls)
        if cls is DatasetConfig:
            kind = value.get("kind", "synthetic")
            if kind not in DATASETS:
                kinds = dataset_kinds()
                raise BenchError(f"{where(key + '.kind')}: dataset.kind: {kind!r} is not valid"
                                 f"{did_you_mean(kind, kinds)} (choose from: {', '.join(kinds)})")
            own = kind_keys(kind)
            allowed = COMMON_DATASET_KEYS | own
            for k in value:
                if k not in allowed and k in _fields(cls):
                    raise BenchError(f"{where(key + '.' + str(k))}: dataset.{k} does not apply to kind {kind!r} "
                                     f"(keys for {kind}: {', '.join(sorted(own)) or 'none'})")
        _check_keys(value, allowed, key, where)
        return _build(cls, value, key, where)

    ds = _default_root(sub(DatasetConfig, "dataset"), data.get("dataset") or {}, where)
    cfg = GridConfig(
        name=_coerce(str, data.get("name", "grid"), "name", where),
        dataset=ds,
        splits=sub(SplitConfig, "splits"),
        backbones=_names(data.get("backbones", ["resnet18"]), "backbones", where),
        strategies=_strategies(data.get("strategies", ["bce"]), where),
        train=sub(TrainConfig, "train"),
        seeds=_seeds(data.get("seeds", [0]), where),
        resources=sub(ResourcesConfig, "resources"),
        localisation=sub(LocalisationConfig, "localisation"),
        report=sub(ReportConfig, "report"),
        source=source,
    )
    _validate(cfg, where)
    return cfg


def _default_root(ds: DatasetConfig, given: Mapping, where) -> DatasetConfig:
    """``root`` defaults to the synthetic data's folder; another kind's reader may imply one from its other
    keys (csv: the CSV's folder), or the grid must give it."""
    reader = reader_class(ds.kind)
    if reader.root_help is None or "root" in given:
        return ds
    root = reader.implied_root(ds)
    if root is None:
        raise BenchError(f"{where('dataset')}: dataset.root is required for kind {ds.kind!r} ({reader.root_help})")
    return ds if root == ds.root else dataclasses.replace(ds, root=root)


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _check_keys(data: Mapping, allowed: set[str], prefix: str, where) -> None:
    for key in data:
        if key not in allowed:
            full = f"{prefix}.{key}" if prefix else str(key)
            raise BenchError(f"{where(full)}: unknown key {full!r}{did_you_mean(str(key), allowed)} "
                             f"(valid{' under ' + prefix if prefix else ''}: {', '.join(sorted(allowed))})")


def _build(cls, value: Mapping, prefix: str, where):
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    for key, raw in value.items():
        default = getattr(defaults, key)
        kwargs[key] = _coerce_like(default, raw, f"{prefix}.{key}", where, hints[key].type)
    return cls(**kwargs)


def _coerce_like(default: Any, raw: Any, key: str, where, annotation: Any) -> Any:
    ann = str(annotation)
    if raw is None and "None" in ann:
        return None
    if key.endswith(".pretrained"):
        if isinstance(raw, (bool, str)):
            return raw
        raise BenchError(f"{where(key)}: {key}: {raw!r} is not valid; expected true, false or a weights file path")
    if "tuple" in ann:
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, (list, tuple)) or not all(isinstance(x, (str, int, float)) for x in raw):
            raise BenchError(f"{where(key)}: {key}: {raw!r} is not valid; expected a list of names")
        return tuple(str(x) for x in raw)
    if "dict" in ann:
        if not isinstance(raw, Mapping):
            raise BenchError(f"{where(key)}: {key}: {raw!r} is not valid; expected a mapping")
        # a null value is kept (aliases: {Lipoid: null} ignores that name), never turned into the string 'None'
        return {str(k): (None if v is None else str(v)) for k, v in raw.items()}
    if isinstance(default, bool) or ann == "bool":
        return _coerce(bool, raw, key, where)
    if isinstance(default, int) and not isinstance(default, bool) and ann == "int":
        return _coerce(int, raw, key, where)
    if isinstance(default, float) or ann == "float":
        return _coerce(float, raw, key, where)
    if "str" in ann or ann.startswith("Literal["):
        return _coerce(str, raw, key, where)
    return raw


def _coerce(kind, raw: Any, key: str, where) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        raise BenchError(f"{where(key)}: {key}: {raw!r} is not valid; expected true or false")
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            raise BenchError(f"{where(key)}: {key}: {raw!r} is not valid; expected an integer")
        return raw
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            # YAML 1.1 reads "1e-3" as a string; accept numeric strings.
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise BenchError(f"{where(key)}: {key}: {raw!r} is not valid; expected a number") from None
            if not math.isfinite(value):
                raise BenchError(f"{where(key)}: {key}: {raw!r} is not valid; expected a finite number")
            return value
        return float(raw)
    if kind is str:
        if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
            return str(raw)
        raise BenchError(f"{where(key)}: {key}: {raw!r} is not valid; expected a string")
    return raw


def _names(raw: Any, key: str, where) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise BenchError(f"{where(key)}: {key} must be a non-empty list of names, got {raw!r}")
    out = []
    for i, x in enumerate(raw):
        if not isinstance(x, str):
            raise BenchError(f"{where(f'{key}[{i}]')}: {key}[{i}]: {x!r} is not valid; expected a name")
        out.append(x)
    return tuple(out)


def _strategies(raw: Any, where) -> tuple:
    if isinstance(raw, (str, Mapping)):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise BenchError(f"{where('strategies')}: strategies must be a non-empty list, got {raw!r}")
    return tuple(dict(x) if isinstance(x, Mapping) else x for x in raw)


def _seeds(raw: Any, where) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw):
        raise BenchError(f"{where('seeds')}: seeds: {raw!r} is not valid; expected a non-empty list of integers >= 0")
    if len(set(raw)) != len(raw):
        raise BenchError(f"{where('seeds')}: seeds: {list(raw)!r} repeats a seed")
    return tuple(raw)


def _validate(cfg: GridConfig, where) -> None:
    def bad(key: str, value: Any, expected: str):
        raise BenchError(f"{where(key)}: {key}: {value!r} is not valid; expected {expected}")

    d, s, t, r, loc, rep = cfg.dataset, cfg.splits, cfg.train, cfg.resources, cfg.localisation, cfg.report
    if not cfg.name or any(c in cfg.name for c in "/\\\0"):
        bad("name", cfg.name, "a non-empty name without slashes")
    if not 16 <= d.image_size <= 1024:
        bad("dataset.image_size", d.image_size, "an integer from 16 to 1024")
    if d.on_bad_image not in choices(DatasetConfig, "on_bad_image"):
        bad("dataset.on_bad_image", d.on_bad_image, _or(choices(DatasetConfig, "on_bad_image")))
    reader_class(d.kind).check(d, bad)
    if d.min_positives is not None and d.min_positives < 1:
        bad("dataset.min_positives", d.min_positives, "an integer >= 1")
    if s.folds < 2:
        bad("splits.folds", s.folds, "an integer >= 2")
    if not 0 < s.val_fraction <= 0.5:
        bad("splits.val_fraction", s.val_fraction, "a number in (0, 0.5]")
    if t.epochs < 1:
        bad("train.epochs", t.epochs, "an integer >= 1")
    if t.batch_size < 1:
        bad("train.batch_size", t.batch_size, "an integer >= 1")
    if t.eval_batch_size < 1:
        bad("train.eval_batch_size", t.eval_batch_size, "an integer >= 1")
    if not t.lr > 0:
        bad("train.lr", t.lr, "a number > 0")
    if t.weight_decay < 0:
        bad("train.weight_decay", t.weight_decay, "a number >= 0")
    for key in ("optimizer", "scheduler", "precision"):
        if getattr(t, key) not in choices(TrainConfig, key):
            bad(f"train.{key}", getattr(t, key), _or(choices(TrainConfig, key)))
    if str(t.channels_last).lower() not in ("auto", "true", "false"):
        bad("train.channels_last", t.channels_last, "'auto', true or false")
    if t.num_workers < 0:
        bad("train.num_workers", t.num_workers, "an integer >= 0")
    if isinstance(t.pretrained, str) and t.pretrained not in ("",) and not Path(t.pretrained).expanduser().is_file():
        bad("train.pretrained", t.pretrained, "true, false or an existing weights file (.pth / .safetensors)")
    if r.cpu <= 0:
        bad("resources.cpu", r.cpu, "a number > 0")
    if r.gpu < 0:
        bad("resources.gpu", r.gpu, "a number >= 0 (fractions such as 0.5 pack trials onto one GPU)")
    if 1 < r.gpu and not float(r.gpu).is_integer():
        bad("resources.gpu", r.gpu, "a fraction below 1 or a whole number of GPUs")
    if r.max_concurrent < 0:
        bad("resources.max_concurrent", r.max_concurrent, "an integer >= 0 (0 = no limit)")
    if r.max_failures < 0:
        bad("resources.max_failures", r.max_failures, "an integer >= 0")
    from bench.cam_methods import CAM_METHODS

    for i, m in enumerate(loc.methods):
        if m not in CAM_METHODS:
            raise BenchError(f"{where(f'localisation.methods')}: localisation.methods[{i}]: {m!r} is not valid"
                             f"{did_you_mean(m, CAM_METHODS)} (choose from: {', '.join(CAM_METHODS)})")
    if loc.max_images < 0:
        bad("localisation.max_images", loc.max_images, "an integer >= 0 (0 = all)")
    if not loc.tolerance >= 0 or loc.tolerance == float("inf"):
        bad("localisation.tolerance", loc.tolerance, "a number of pixels >= 0")
    if loc.threshold != "tune":
        try:
            value = float(loc.threshold)
        except ValueError:
            value = float("nan")
        if not 0 < value < 1:
            bad("localisation.threshold", loc.threshold, "'tune' or a number in (0, 1)")
    if not 0 < rep.tail <= rep.head < 1:
        bad("report.tail", rep.tail, f"0 < report.tail <= report.head (< 1), head is {rep.head}")
    if rep.bootstrap < 0:
        bad("report.bootstrap", rep.bootstrap, "an integer >= 0 (0 = no confidence intervals)")

    from backbones import BACKBONES, UnknownNameError

    for i, b in enumerate(cfg.backbones):
        if b not in BACKBONES:
            raise BenchError(f"{where(f'backbones[{i}]')}: backbones[{i}]: {UnknownNameError('backbone', b, BACKBONES.names())}")
    if len(set(cfg.backbones)) != len(cfg.backbones):
        raise BenchError(f"{where('backbones')}: backbones: {list(cfg.backbones)!r} names a backbone twice")
    names = []
    for i, spec in enumerate(cfg.strategies):
        try:
            names.append(_strategy_name(spec))
        except (KeyError, ValueError) as exc:
            msg = str(exc) if not isinstance(exc, KeyError) or hasattr(exc, "kind") else str(exc.args[0])
            raise BenchError(f"{where(f'strategies[{i}]')}: strategies[{i}]: {msg}") from None
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise BenchError(f"{where('strategies')}: strategies: {sorted(dup)[0]!r} appears twice; "
                         "give variants distinct names ({name: ..., loss: ...})")
    if rep.baseline not in names:
        import logging

        logging.getLogger(__name__).info("baseline strategy %r is not in the grid: no paired tests", rep.baseline)


def _strategy_name(spec: Any) -> str:
    from strategies import create_strategy

    s = create_strategy(spec)  # validates names and parameters; constructors only store
    if not s.name or any(c in s.name for c in "/\\ \0"):
        raise ValueError(f"strategy name {s.name!r} must be non-empty without slashes or spaces")
    return s.name


def resolve_paths(cfg: GridConfig, *, base: Path | None = None) -> GridConfig:
    """Make every path in the dataset section absolute (against ``base``, default the cwd)."""
    base = base or Path.cwd()

    def absolute(value):
        if value in (None, ""):
            return value
        p = Path(str(value)).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())

    d = cfg.dataset
    changes = {k: absolute(getattr(d, k)) for k in ("root", "label_file", "box_file", "file", "csv", "image_root",
                                                      "cache_dir")}
    t = cfg.train
    tr = t
    if isinstance(t.pretrained, str) and t.pretrained:
        tr = dataclasses.replace(t, pretrained=absolute(t.pretrained))
    sp = cfg.splits
    if sp.file:
        sp = dataclasses.replace(sp, file=absolute(sp.file))
    return dataclasses.replace(cfg, dataset=dataclasses.replace(d, **changes), train=tr, splits=sp)


def grid_from_dict(data: Mapping) -> GridConfig:
    """Rebuild a GridConfig from :meth:`GridConfig.to_dict` output (as saved in a run folder)."""
    data = dict(data)
    source = data.pop("source", "")
    return parse_grid(data, source=source)
