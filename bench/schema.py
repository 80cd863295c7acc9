"""The grid's JSON Schema (``bench schema``), made from the same frozen sections the grid is parsed into.

Pydantic reads the dataclasses of :mod:`bench.config` (their types, defaults and ``Literal`` choices); the
schema then gets what lives in registries: the dataset kinds (``bench.data.catalogue``), the backbone and
strategy names, the CAM methods. Editors use it to complete and check grid files; ``bench run`` still
validates every grid itself, with line-numbered errors and checks no schema can express (files that must
exist, ``report.tail <= report.head``, a strategy's parameters).

>>> s = grid_schema()
>>> s["properties"]["train"]["$ref"], s["$defs"]["TrainConfig"]["properties"]["optimizer"]["enum"]
('#/$defs/TrainConfig', ['adamw', 'sgd'])
"""

from __future__ import annotations

from typing import Any

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def grid_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a grid file."""
    import pydantic

    from backbones import BACKBONES
    from bench.cam_methods import CAM_METHODS
    from bench.config import GridConfig
    from bench.data.catalogue import dataset_kinds, reader_class
    from strategies import list_strategies

    schema = pydantic.TypeAdapter(GridConfig).json_schema(mode="validation")
    schema = {"$schema": SCHEMA_URI, **schema, "title": "cxr-imbalance-bench grid"}
    props = schema["properties"]
    props.pop("source", None)  # set by the loader, not by a grid
    defs = schema["$defs"]
    for section in defs.values():
        section["additionalProperties"] = False  # unknown keys are errors
    schema["additionalProperties"] = False
    dataset = defs["DatasetConfig"]["properties"]
    dataset["kind"]["enum"] = list(dataset_kinds())
    readers = [reader_class(kind) for kind in dataset_kinds()]
    for reader in readers:  # a kind's choices, unless another kind has the same key (chexpert's and chestmnist's split)
        for key, values in reader.choices.items():
            if sum(key in r.keys for r in readers) == 1:
                dataset[key]["enum"] = list(values)
    defs["LocalisationConfig"]["properties"]["methods"] = {
        "title": "Methods", "default": ["gradcam"], "type": "array", "items": {"enum": list(CAM_METHODS)}}
    props["backbones"] = {"title": "Backbones", "default": ["resnet18"], "type": "array", "minItems": 1,
                          "items": {"enum": BACKBONES.names()}}
    presets = [e.name for e in list_strategies()]
    props["strategies"] = {
        "title": "Strategies", "default": ["bce"], "type": "array", "minItems": 1,
        "items": {"anyOf": [{"enum": presets, "description": "a preset (bench list strategies)"},
                            {"type": "object", "required": ["name"],
                             "description": "a variant or composition: {name, preset, loss, sampler, threshold}"}]}}
    props["seeds"] = {"title": "Seeds", "default": [0], "type": "array", "minItems": 1,
                      "items": {"type": "integer", "minimum": 0}}
    return schema
