"""The grid's JSON Schema (``bench schema``) comes from the grid's own sections and agrees with validation."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from bench.cli import main
from bench.config import parse_grid
from bench.errors import BenchError
from bench.schema import grid_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = grid_schema()
#: the dataset kind a dataset key needs (and a root), to be accepted by the grid's validation
KIND_OF = {"official_test": "nih", "uncertainty": "chexpert", "views": "chexpert"}


@pytest.mark.parametrize("path", sorted((REPO / "grids").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_grids_satisfy_the_schema(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)


def _enum_fields() -> list[tuple[str, str, list]]:
    out = []
    for section, model in (("dataset", "DatasetConfig"), ("train", "TrainConfig")):
        for key, prop in SCHEMA["$defs"][model]["properties"].items():
            if "enum" in prop and key != "kind":
                out.append((section, key, prop["enum"]))
    return out


@pytest.mark.parametrize("section, key, values", _enum_fields(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_choice_the_schema_lists_is_what_validation_accepts(section, key, values):
    assert len(values) >= 2

    def grid(value):
        body = {key: value}
        if section == "dataset" and key in KIND_OF:
            body.update(kind=KIND_OF[key], root="/data")
        return {section: body}

    for value in values:
        parse_grid(grid(value))
        jsonschema.validate(grid(value), SCHEMA)
    with pytest.raises(BenchError, match=rf"{section}.{key}: 'nope' is not valid; expected .*{values[0]!r}"):
        parse_grid(grid("nope"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(grid("nope"), SCHEMA)


def test_the_schema_lists_the_registries_and_refuses_unknown_keys():
    for bad in ({"dataset": {"kind": "nih_typo"}}, {"backbones": ["resnet19"]},
                {"localisation": {"methods": ["gradcam+"]}}, {"train": {"epoch": 3}}, {"extra": 1},
                {"strategies": ["focl"]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
    jsonschema.validate({"dataset": {"kind": "csv"}, "backbones": ["resnet18"], "strategies": ["focal", {
        "name": "focal_ros", "loss": "focal", "sampler": "ml_ros"}], "localisation": {"methods": ["scorecam"]}},
        SCHEMA)


def test_bench_schema_prints_it_and_writes_it(tmp_path, capsys):
    # Computed now, not at import: user presets that earlier tests loaded stay registered for the session, and
    # the schema lists every registered preset.
    expected = json.loads(json.dumps(grid_schema()))
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert main(["schema", "--out", str(tmp_path / "grid.schema.json")]) == 0
    assert json.loads((tmp_path / "grid.schema.json").read_text()) == expected


def _bounded_fields() -> list[tuple[str, str, dict]]:
    sections = {"DatasetConfig": "dataset", "SplitConfig": "splits", "TrainConfig": "train",
                "ResourcesConfig": "resources", "LocalisationConfig": "localisation", "ReportConfig": "report"}
    out = []
    for model, section in sections.items():
        for key, prop in SCHEMA["$defs"][model]["properties"].items():
            bounds = {k: prop[k] for k in ("minimum", "maximum", "exclusiveMinimum") if k in prop}
            if bounds:
                out.append((section, key, bounds))
    return out


@pytest.mark.parametrize("section, key, bounds", _bounded_fields(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_bound_the_schema_states_is_the_rule_validation_applies(section, key, bounds):
    integer = isinstance(next(iter(bounds.values())), int) and key not in ("val_fraction", "lr", "cpu", "gpu",
                                                                           "tolerance", "weight_decay")
    step = 1 if integer else 1e-6
    inside, outside = [], []
    if "minimum" in bounds:
        inside.append(bounds["minimum"])
        outside.append(bounds["minimum"] - step)
    if "exclusiveMinimum" in bounds:
        inside.append(bounds["exclusiveMinimum"] + step)
        outside.append(bounds["exclusiveMinimum"])
    if "maximum" in bounds:
        inside.append(bounds["maximum"])
        outside.append(bounds["maximum"] + step)
    for value in inside:
        parse_grid({section: {key: value}})
        jsonschema.validate({section: {key: value}}, SCHEMA)
    for value in outside:
        with pytest.raises(BenchError, match=rf"{section}.{key}: .* is not valid; expected"):
            parse_grid({section: {key: value}})
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({section: {key: value}}, SCHEMA)
    assert len(_bounded_fields()) >= 15
