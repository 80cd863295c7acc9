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
import os
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from bench.data.catalogue import DATASETS, dataset_kinds, reader_class
from bench.data.section import COMMON_KEYS, DatasetSection
from bench.errors import BenchError, did_you_mean
from bench.protocol_config import ProtocolConfig, check_protocol, parse_protocol
from bench.tracking_config import TrackingConfig, parse_tracking
from bench.fields import (BOOL, CHOICE, FLOAT, INT, NAMES, PATH, STR, Annotated, fail, fields_with, optional, parse,
                          rule, section)
from bench.yaml_lines import Where, line_map, read_yaml

DATASET_KINDS = dataset_kinds()  # the built-in kinds; validation asks the registry (bench.data.catalogue)


def _pretrained(raw: Any) -> bool | str:
    if isinstance(raw, (bool, str)):
        return raw
    raise PydanticCustomError("bench", "expected {expected}", {"expected": "true, false or a weights file path"})


def _switch(raw: Any) -> str:
    """``channels_last``: YAML's true / false (booleans) or the strings 'auto', 'true', 'false', any case."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str) and raw.lower() in ("auto", "true", "false"):
        return raw.lower()
    raise PydanticCustomError("bench", "expected {expected}", {"expected": "'auto', true or false"})


def _backbones(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        fail(f"backbones must be a non-empty list of names, got {raw!r}")
    for i, x in enumerate(raw):
        if not isinstance(x, str):
            fail(f"backbones[{i}]: {x!r} is not valid; expected a name", at=f"[{i}]")
    return tuple(raw)


def _strategies(raw: Any) -> tuple:
    if isinstance(raw, (str, Mapping)):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        fail(f"strategies must be a non-empty list, got {raw!r}")
    return tuple(dict(x) if isinstance(x, Mapping) else x for x in raw)


def _seeds(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw):
        raise PydanticCustomError("bench", "expected {expected}",
                                  {"expected": "a non-empty list of integers >= 0"})
    if len(set(raw)) != len(raw):
        fail(f"seeds: {list(raw)!r} repeats a seed")
    return tuple(raw)


def _threshold_ok(value: str) -> bool:
    if value == "tune":
        return True
    try:
        return 0 < float(value) < 1
    except ValueError:
        return False


# ---- schema: every section a frozen, typed dataclass; bench/fields.py coerces and checks each value ------

POSITIVE_INT = rule(lambda v: v >= 1, "an integer >= 1", minimum=1)


@section
class SplitConfig:
    folds: Annotated[int, INT, rule(lambda v: v >= 2, "an integer >= 2", minimum=2)] = 5
    val_fraction: Annotated[float, FLOAT, rule(lambda v: 0 < v <= 0.5, "a number in (0, 0.5]", exclusiveMinimum=0,
                                               maximum=0.5)] = 0.2
    seed: Annotated[int, INT] = 0
    file: Annotated[str | None, optional(STR), PATH] = None  # a manifest written by `bench data split --out`


@section
class TrainConfig:
    epochs: Annotated[int, INT, POSITIVE_INT] = 3
    batch_size: Annotated[int, INT, POSITIVE_INT] = 64
    lr: Annotated[float, FLOAT, rule(lambda v: v > 0, "a number > 0", exclusiveMinimum=0)] = 1e-3
    weight_decay: Annotated[float, FLOAT, rule(lambda v: v >= 0, "a number >= 0", minimum=0)] = 1e-4
    optimizer: Annotated[Literal["adamw", "sgd"], CHOICE] = "adamw"
    scheduler: Annotated[Literal["cosine", "none"], CHOICE] = "cosine"
    # false | true (timm hub weights) | path to a .pth/.safetensors file (must exist: checked with the grid)
    pretrained: Annotated[bool | str, BeforeValidator(_pretrained)] = False
    augment: Annotated[bool, BOOL] = False        # light random shifts / contrast, on the batch
    precision: Annotated[Literal["auto", "bf16", "fp32"], STR] = "auto"
    channels_last: Annotated[Literal["auto", "true", "false"], BeforeValidator(_switch)] = "auto"
    compile: Annotated[bool, BOOL] = False        # torch.compile the model (GPU)
    num_workers: Annotated[int, INT, rule(lambda v: v >= 0, "an integer >= 0", minimum=0)] = 0  # loader processes
    eval_batch_size: Annotated[int, INT, POSITIVE_INT] = 256
    keep_weights: Annotated[bool, BOOL] = False   # keep the final weights in the trial's last checkpoint


@section
class ResourcesConfig:
    cpu: Annotated[float, FLOAT, rule(lambda v: v > 0, "a number > 0", exclusiveMinimum=0)] = 1
    gpu: Annotated[float, FLOAT,  # fractional (0.5, 0.25) packs small trials onto one card
                   rule(lambda v: v >= 0, "a number >= 0 (fractions such as 0.5 pack trials onto one GPU)", minimum=0),
                   rule(lambda v: not (1 < v and not float(v).is_integer()),
                        "a fraction below 1 or a whole number of GPUs")] = 0
    max_concurrent: Annotated[int, INT, rule(lambda v: v >= 0, "an integer >= 0 (0 = no limit)", minimum=0)] = 0
    max_failures: Annotated[int, INT, rule(lambda v: v >= 0, "an integer >= 0", minimum=0)] = 2  # lost-trial retries


@section
class LocalisationConfig:
    enabled: Annotated[bool, BOOL] = True
    methods: Annotated[tuple[str, ...], NAMES] = ("gradcam",)  # CAM methods: checked against their registry
    max_images: Annotated[int, INT, rule(lambda v: v >= 0, "an integer >= 0 (0 = all)", minimum=0)] = 200
    gallery: Annotated[int, INT] = 4             # overlays kept per trial
    threshold: Annotated[str, STR, rule(_threshold_ok, "'tune' or a number in (0, 1)")] = "tune"
    # pointing game: a hit within this many pixels of a box (Zhang et al.: 15)
    tolerance: Annotated[float, FLOAT, rule(lambda v: v >= 0 and v != float("inf"), "a number of pixels >= 0",
                                                minimum=0)] = 0.0


@section
class ReportConfig:
    baseline: Annotated[str, STR] = "bce"
    head: Annotated[float, FLOAT] = 0.05         # labels with training prevalence >= head are "head"
    tail: Annotated[float, FLOAT] = 0.01         # < tail are "tail"; the rest "medium"
    bootstrap: Annotated[int, INT, rule(lambda v: v >= 0, "an integer >= 0 (0 = no confidence intervals)",
                                                minimum=0)] = 1000


def _synthetic() -> DatasetSection:
    return reader_class("synthetic").config()


@section
class GridConfig:
    """The whole grid: its top-level keys and one section per part (the dataset's is its kind's class)."""

    name: Annotated[str, STR, rule(lambda v: v and not any(c in v for c in "/\\\0"),
                                   "a non-empty name without slashes")] = "grid"
    dataset: DatasetSection = field(default_factory=_synthetic)
    splits: SplitConfig = field(default_factory=SplitConfig)
    backbones: Annotated[tuple[str, ...], BeforeValidator(_backbones)] = ("resnet18",)
    strategies: Annotated[tuple[Any, ...], BeforeValidator(_strategies)] = ("bce",)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: Annotated[tuple[int, ...], BeforeValidator(_seeds)] = (0,)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    localisation: LocalisationConfig = field(default_factory=LocalisationConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)  # kfold | official | external
    source: str = ""             # the grid file it came from (set by the loader, not by a grid)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def digest(self) -> str:
        """Hash of everything that changes results (not the source file name)."""
        d = self.to_dict()
        d.pop("source", None)
        d.pop("resources", None)  # resources change scheduling, not results
        d.pop("tracking", None)   # nor does where they are tracked (it may be switched on when resuming)
        if self.protocol.is_default():
            d.pop("protocol", None)  # the default K-fold protocol: the digest grids had before it existed
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping) -> "GridConfig":
        """The typed, frozen grid back from :meth:`to_dict` output (a grid validated before: only each value's
        type and rule are checked again). Keys a section does not have are ignored and missing ones take their
        defaults, so a grid resolved by an older or newer version still reads.

        >>> g = GridConfig.from_dict(GridConfig(train=TrainConfig(batch_size=8)).to_dict())
        >>> g.train.batch_size, g.localisation.methods, g == GridConfig(train=TrainConfig(batch_size=8))
        (8, ('gradcam',), True)
        """
        def section(kind, value):
            names = {f.name for f in dataclasses.fields(kind)}
            return kind(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in (value or {}).items()
                           if k in names})

        top = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
                  if k in top and k not in SECTIONS}
        kwargs.update({k: section(dataset_section((data.get(k) or {}).get("kind", "synthetic"), strict=False)
                                  if k == "dataset" else kind, data.get(k)) for k, kind in SECTIONS.items()})
        return cls(**{**kwargs, "protocol": ProtocolConfig.from_plain(data.get("protocol"), section, dataset_section)})

    def strategy_specs(self) -> list[dict]:
        from strategies import resolve_spec

        return [resolve_spec(s) for s in self.strategies]


#: The grid's sections and their classes (the dataset's: :class:`DatasetSection`, its kind's subclass).
SECTIONS = {"dataset": DatasetSection, "splits": SplitConfig, "train": TrainConfig, "resources": ResourcesConfig,
            "localisation": LocalisationConfig, "report": ReportConfig}
TOP_KEYS = tuple(f.name for f in dataclasses.fields(GridConfig) if f.name != "source")


def dataset_section(kind: str, *, strict: bool = True) -> type:
    """The section class of dataset ``kind`` (its reader's ``config``); an unregistered kind is a ``KeyError``,
    or (``strict=False``, reading a resolved grid) the common section."""
    if not strict and kind not in DATASETS:
        return DatasetSection
    return reader_class(kind).config


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---- loading ------------------------------------------------------------------------------------

def load_grid(path: str | os.PathLike, *, overrides: Sequence[str] = ()) -> GridConfig:
    """Read, parse and validate a grid YAML file, with ``overrides`` (``KEY=VALUE``, ``bench run --set``)
    applied to what it holds first (:mod:`bench.overrides`).

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
    return parse_grid(data, where=where, source=str(p), overrides=overrides)


def parse_grid(data: Mapping, *, where: Any = None, source: str = "", overrides: Sequence[str] = ()) -> GridConfig:
    """Validate a grid given as a mapping (what the YAML holds), with ``overrides`` applied first: every
    section, and then the top level, goes through :func:`bench.fields.parse` (unknown keys, each value's type
    and rule); then the checks that need a registry, a file or two values at once."""
    where = where or (lambda key: source or "grid")
    from bench.fields import check_keys

    if overrides:
        from bench.overrides import OverrideWhere, apply_overrides

        where = OverrideWhere(where, overrides, given=data)
        data = apply_overrides(data, overrides)

    check_keys(data, TOP_KEYS, "", where)
    sections = {key: (_dataset(data.get(key), where) if key == "dataset" else parse(cls, data.get(key), key, where))
                for key, cls in SECTIONS.items()}
    cfg = parse(GridConfig, {k: v for k, v in data.items() if k not in SECTIONS and k not in ("tracking", "protocol")},
                "", where, allowed=TOP_KEYS, **sections, tracking=parse_tracking(data.get("tracking"), where),
                protocol=parse_protocol(data.get("protocol"), where, dataset=_dataset), source=source)
    _validate(cfg, where)
    return cfg


def _dataset(value: Any, where, prefix: str = "dataset") -> DatasetSection:
    """The dataset section at ``prefix`` (``dataset`` or a test set's), of its ``kind``'s class, root defaulted."""
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise BenchError(f"{where(prefix)}: {prefix} must be a mapping, got {value!r}")
    kind = value.get("kind", "synthetic")
    if kind not in DATASETS:
        kinds = dataset_kinds()
        raise BenchError(f"{where(prefix + '.kind')}: {prefix}.kind: {kind!r} is not valid"
                         f"{did_you_mean(kind, kinds)} (choose from: {', '.join(kinds)})")
    cls = dataset_section(kind)
    own = set(reader_class(kind).keys)
    for k in value:
        if k not in COMMON_KEYS and k not in own and k in _every_kind_key():
            raise BenchError(f"{where(f'{prefix}.{k}')}: {prefix}.{k} does not apply to kind {kind!r} "
                             f"(keys for {kind}: {', '.join(sorted(own)) or 'none'})")
    return _default_root(parse(cls, value, prefix, where), value, where, prefix)


def _every_kind_key() -> set[str]:
    return {k for kind in dataset_kinds() for k in reader_class(kind).keys}


def _default_root(ds: DatasetSection, given: Mapping, where, prefix: str = "dataset") -> DatasetSection:
    """``root`` defaults to the synthetic data's folder; another kind's reader may imply one from its other
    keys (csv: the CSV's folder), or the grid must give it."""
    reader = reader_class(ds.kind)
    if reader.root_help is None or "root" in given:
        return ds
    root = reader.implied_root(ds)
    if root is None:
        raise BenchError(f"{where(prefix)}: {prefix}.root is required for kind {ds.kind!r} ({reader.root_help})")
    return ds if root == ds.root else dataclasses.replace(ds, root=root)


def _validate(cfg: GridConfig, where) -> None:
    def bad(key: str, value: Any, expected: str):
        raise BenchError(f"{where(key)}: {key}: {value!r} is not valid; expected {expected}")

    d, t, loc, rep = cfg.dataset, cfg.train, cfg.localisation, cfg.report
    # Each value's own type and rule were checked when its section was built (bench/fields.py); what is left
    # needs a file, a registry or two values at once.
    reader_class(d.kind).check(d, bad)
    check_protocol(cfg, bad)
    if isinstance(t.pretrained, str) and t.pretrained not in ("",) and not Path(t.pretrained).expanduser().is_file():
        bad("train.pretrained", t.pretrained, "true, false or an existing weights file (.pth / .safetensors)")
    from bench.cam_methods import CAM_METHODS

    for i, m in enumerate(loc.methods):
        if m not in CAM_METHODS:
            raise BenchError(f"{where(f'localisation.methods')}: localisation.methods[{i}]: {m!r} is not valid"
                             f"{did_you_mean(m, CAM_METHODS)} (choose from: {', '.join(CAM_METHODS)})")
    if not 0 < rep.tail <= rep.head < 1:
        bad("report.tail", rep.tail, f"0 < report.tail <= report.head (< 1), head is {rep.head}")

    from backbones import UnknownBackboneError, check_backbone

    for i, b in enumerate(cfg.backbones):
        try:
            check_backbone(b)  # registered, or any timm model (imports timm only for an unregistered name)
        except UnknownBackboneError as exc:
            raise BenchError(f"{where(f'backbones[{i}]')}: backbones[{i}]: {exc}") from None
    if len(set(cfg.backbones)) != len(cfg.backbones):
        raise BenchError(f"{where('backbones')}: backbones: {list(cfg.backbones)!r} names a backbone twice")
    names = []
    for i, spec in enumerate(cfg.strategies):
        try:
            names.append(_strategy_name(spec, epochs=int(cfg.train.epochs)))
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


def _strategy_name(spec: Any, *, epochs: int | None = None) -> str:
    from strategies import create_strategy

    s = create_strategy(spec)  # validates names and parameters; constructors only store
    if epochs is not None:
        s.stage_bounds(epochs)  # a staged strategy needs an epoch per stage
    if not s.name or any(c in s.name for c in "/\\ \0"):
        raise ValueError(f"strategy name {s.name!r} must be non-empty without slashes or spaces")
    return s.name


def resolve_paths(cfg: GridConfig, *, base: Path | None = None) -> GridConfig:
    """Make every path of the grid absolute (against ``base``, default the cwd): each section's ``PATH`` fields
    and a ``train.pretrained`` weights file."""
    base = base or Path.cwd()

    def absolute(value):
        if value in (None, ""):
            return value
        p = Path(str(value)).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())

    sections = {key: getattr(cfg, key) for key in SECTIONS}
    sections = {key: dataclasses.replace(sec, **{k: absolute(getattr(sec, k)) for k in fields_with(type(sec), PATH)})
                for key, sec in sections.items()}
    sections["protocol"] = cfg.protocol.resolved(absolute)  # its test sets' paths
    t = sections["train"]
    if isinstance(t.pretrained, str) and t.pretrained:
        sections["train"] = dataclasses.replace(t, pretrained=absolute(t.pretrained))
    return dataclasses.replace(cfg, **sections)
