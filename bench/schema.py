"""The grid's JSON Schema (``bench schema``, also ``bench grid schema``), made from the same frozen sections the grid is parsed into.

Pydantic reads the dataclasses of :mod:`bench.config` (their types, defaults and ``Literal`` choices); the
``dataset`` section is the union of the registered kinds' sections (``bench.data.catalogue``: each reader's
``config``), told apart by ``kind`` (a discriminated union: ``oneOf`` with a ``discriminator``; a section
without ``kind`` is the default kind's). The schema then gets the other names that live in registries: the
strategy names and the CAM methods, and the registered backbones as examples (a grid may name any timm model,
so the schema refuses no backbone string). Editors use it to complete and check grid files; ``bench run`` still
validates every grid itself, with line-numbered errors and checks no schema can express (files that must
exist, ``report.tail <= report.head``, a strategy's parameters, a backbone name timm does not know).

>>> s = grid_schema()
>>> s["properties"]["train"]["$ref"], s["$defs"]["TrainConfig"]["properties"]["optimizer"]["enum"]
('#/$defs/TrainConfig', ['adamw', 'sgd'])
>>> s["properties"]["dataset"]["discriminator"]["mapping"]["nih"], s["$defs"]["NIHSection"]["required"]
('#/$defs/NIHSection', ['kind'])
"""

from __future__ import annotations

from typing import Any, Literal, Union, get_args

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
#: The schema shipped with the grids (each grid file names it in its first line, the YAML language server's
#: modeline ``# yaml-language-server: $schema=./grid.schema.json``); ``bench schema --builtin --out`` writes it.
SHIPPED = "grids/grid.schema.json"


def grid_schema(*, user_presets: bool = True) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a grid file. Its strategies are every registered preset, the preset
    files of ``./presets`` and ``$BENCH_PRESETS`` included, or (``user_presets=False``: the schema shipped as
    ``grids/grid.schema.json``) the built-in ones only."""
    import pydantic

    from backbones import BACKBONES
    from bench.cam_methods import CAM_METHODS
    from bench.config import GridConfig
    from bench.data.catalogue import dataset_kinds, reader_class
    from bench.data.section import DatasetSection
    from bench.fields import Annotated
    from strategies import STRATEGIES, list_strategies

    schema = pydantic.TypeAdapter(GridConfig).json_schema(mode="validation")
    schema = {"$schema": SCHEMA_URI, **schema, "title": "cxr-imbalance-bench grid"}
    props = schema["properties"]
    props.pop("source", None)  # set by the loader, not by a grid
    defs = schema["$defs"]
    kinds, default = dataset_kinds(), DatasetSection().kind
    union = Union[tuple(_kind_section(kind, reader_class(kind).config) for kind in kinds)]  # noqa: UP007
    dataset = pydantic.TypeAdapter(Annotated[union, pydantic.Field(discriminator="kind")]).json_schema(
        mode="validation", ref_template="#/$defs/{model}")
    defs.pop("DatasetSection", None)
    defs.update(dataset.pop("$defs"))
    for name in dataset["discriminator"]["mapping"].values():
        member = defs[name.rsplit("/", 1)[1]]
        if member["properties"]["kind"]["const"] != default:
            member["required"] = ["kind"]  # a section without kind is the default kind's
    props["dataset"] = {**dataset, "title": "Dataset", "default": {"kind": default}}
    # protocol.test_sets: name -> a dataset section of any kind, as the grid's dataset is
    defs["ProtocolConfig"]["properties"]["test_sets"] = {
        "title": "Test Sets", "type": "object", "default": {}, "propertyNames": {"pattern": "^[A-Za-z0-9][A-Za-z0-9_.+-]*$"},
        "additionalProperties": {k: v for k, v in dataset.items() if k != "title"}}
    for section in defs.values():
        section["additionalProperties"] = False  # unknown keys are errors
    schema["additionalProperties"] = False
    defs["LocalisationConfig"]["properties"]["methods"] = {
        "title": "Methods", "default": ["gradcam"], "type": "array", "items": {"enum": list(CAM_METHODS)}}
    props["backbones"] = {  # any timm model: too many (and too version-bound) to list; bench run checks the names
        "title": "Backbones", "default": ["resnet18"], "type": "array", "minItems": 1,
        "items": {"type": "string", "minLength": 1, "examples": BACKBONES.names(),
                  "description": "a registered backbone (bench list backbones) or any timm model name "
                                 "(bench list backbones --all)"}}
    presets = ([e.name for e in list_strategies()] if user_presets else
               [e.name for e in STRATEGIES.list() if "file" not in e.meta])
    props["strategies"] = {
        "title": "Strategies", "default": ["bce"], "type": "array", "minItems": 1,
        "items": {"anyOf": [{"enum": presets, "description": "a preset (bench list strategies)"},
                            {"type": "object", "required": ["name"],
                             "description": "a variant or composition: {name, preset, loss, sampler, threshold, stages, mixup, "
                                            "posthoc}"}]}}
    props["seeds"] = {"title": "Seeds", "default": [0], "type": "array", "minItems": 1,
                      "items": {"type": "integer", "minimum": 0}}
    return schema


def _kind_section(kind: str, cls: type) -> type:
    """``cls``, the section of dataset ``kind``, with ``kind: Literal[kind]`` (what tells the union's members
    apart): a kind that uses the common section, or shares another kind's, gets a subclass saying so."""
    if get_args(cls.__pydantic_fields__["kind"].annotation) == (kind,):
        return cls
    from bench.fields import section

    name = "".join(part.capitalize() for part in kind.replace("-", "_").split("_")) + "Section"
    return section(type(name, (cls,), {"__annotations__": {"kind": Literal[kind]}, "kind": kind,
                                       "__module__": cls.__module__, "__doc__": f"The dataset section of {kind}."}))
