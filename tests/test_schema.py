"""The grid's JSON Schema (``bench schema``) comes from the grid's own sections and agrees with validation."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from bench.cli import main
from bench.config import parse_grid
from bench.data.catalogue import reader_class
from bench.errors import BenchError
from bench.schema import grid_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = grid_schema()
#: the section each definition of the schema is, and (for a dataset kind's) the kind a grid names to use it
SECTIONS = {"SplitConfig": ("splits", None), "TrainConfig": ("train", None), "ResourcesConfig": ("resources", None),
            "LocalisationConfig": ("localisation", None), "ReportConfig": ("report", None),
            **{ref.rsplit("/", 1)[1]: ("dataset", kind)
               for kind, ref in SCHEMA["properties"]["dataset"]["discriminator"]["mapping"].items()}}


#: the dataset keys of one kind (``split`` is chexpert's and chestmnist's, each with its own choices)
KIND_KEYS = {key for kind in SCHEMA["properties"]["dataset"]["discriminator"]["mapping"]
             for key in reader_class(kind).keys}


def _grid(section: str, kind: str | None, key: str, value) -> dict:
    """The smallest grid that sets ``section.key`` (with its dataset kind and a root, for a kind's key)."""
    body = {key: value}
    if kind:
        body.update(kind=kind, root="/data", **({"csv": "/data/labels.csv"} if kind == "csv" else {}))
    return {section: body}


@pytest.mark.parametrize("path", sorted((REPO / "grids").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_grids_satisfy_the_schema(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)


def _enum_fields() -> list[tuple[str, str | None, str, list]]:
    out, seen = [], set()
    for model, (section, kind) in SECTIONS.items():
        for key, prop in SCHEMA["$defs"][model]["properties"].items():
            if "enum" in prop and key != "kind" and (section, key, kind if key in KIND_KEYS else None) not in seen:
                seen.add((section, key, kind if key in KIND_KEYS else None))  # a common dataset key once
                out.append((section, kind, key, prop["enum"]))
    return out


def test_the_dataset_section_is_a_union_of_the_kinds_sections_told_apart_by_kind():
    dataset = SCHEMA["properties"]["dataset"]
    assert dataset["discriminator"]["propertyName"] == "kind"
    assert set(dataset["discriminator"]["mapping"]) == {"synthetic", "nih", "chexpert", "chestmnist", "csv"}
    assert [k for k in SECTIONS.values() if k[0] == "dataset"] == [("dataset", k) for k in dataset["discriminator"][
        "mapping"]]
    jsonschema.validate({"dataset": {"root": "data/x", "n": 100}}, SCHEMA)  # no kind: the default kind's keys
    jsonschema.validate({"dataset": {"kind": "chexpert", "root": "/d", "uncertainty": "ones"}}, SCHEMA)
    for bad in ({"dataset": {"kind": "synthetic", "uncertainty": "ones"}},  # another kind's key
                {"dataset": {"uncertainty": "ones"}}, {"dataset": {"kind": "chexpert", "n": 100}},
                {"dataset": {"kind": "chestmnist", "split": "valid"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
        with pytest.raises(BenchError):
            parse_grid(bad)


@pytest.mark.parametrize("section, kind, key, values", _enum_fields(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_choice_the_schema_lists_is_what_validation_accepts(section, kind, key, values):
    assert len(values) >= 2

    def grid(value):
        return _grid(section, kind, key, value)

    for value in values:
        parse_grid(grid(value))
        jsonschema.validate(grid(value), SCHEMA)
    with pytest.raises(BenchError, match=rf"{section}.{key}: 'nope' is not valid; expected .*{values[0]!r}"):
        parse_grid(grid("nope"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(grid("nope"), SCHEMA)


def test_the_schema_lists_the_registries_and_refuses_unknown_keys():
    for bad in ({"dataset": {"kind": "nih_typo"}}, {"backbones": [""]}, {"backbones": []},
                {"localisation": {"methods": ["gradcam+"]}}, {"train": {"epoch": 3}}, {"extra": 1},
                {"strategies": ["focl"]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
    # any timm model may be a backbone: the schema offers the registered ones and refuses no name (bench run checks)
    assert "densenet121" in SCHEMA["properties"]["backbones"]["items"]["examples"]
    jsonschema.validate({"backbones": ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"]}, SCHEMA)
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


def _bounded_fields() -> list[tuple[str, str | None, str, dict]]:
    out, seen = [], set()
    for model, (section, kind) in SECTIONS.items():
        for key, prop in SCHEMA["$defs"][model]["properties"].items():
            bounds = {k: prop[k] for k in ("minimum", "maximum", "exclusiveMinimum") if k in prop}
            if bounds and (section, key) not in seen:  # a common dataset key once, under the default kind
                seen.add((section, key))
                out.append((section, kind, key, bounds))
    return out


@pytest.mark.parametrize("section, kind, key, bounds", _bounded_fields(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_bound_the_schema_states_is_the_rule_validation_applies(section, kind, key, bounds):
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
        parse_grid(_grid(section, kind, key, value))
        jsonschema.validate(_grid(section, kind, key, value), SCHEMA)
    for value in outside:
        with pytest.raises(BenchError, match=rf"{section}.{key}: .* is not valid; expected"):
            parse_grid(_grid(section, kind, key, value))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_grid(section, kind, key, value), SCHEMA)
    assert len(_bounded_fields()) >= 15


# ---- the schema shipped with the grids ---------------------------------------------------------------------

MODELINE = "# yaml-language-server: $schema=./grid.schema.json"


def test_the_shipped_schema_is_the_generated_one():
    shipped = REPO / "grids" / "grid.schema.json"
    assert json.loads(shipped.read_text()) == json.loads(json.dumps(grid_schema(user_presets=False))), \
        "grids/grid.schema.json is stale: regenerate it with `bench schema --builtin --out grids/grid.schema.json`"


@pytest.mark.parametrize("path", sorted((REPO / "grids").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_grid_names_the_schema_in_the_yaml_language_servers_modeline(path):
    assert path.read_text().splitlines()[0] == MODELINE
    assert (path.parent / "grid.schema.json").is_file()


def test_bench_grid_schema_is_bench_schema(capsys):
    assert main(["grid", "schema", "--builtin"]) == 0
    grid = json.loads(capsys.readouterr().out)
    assert main(["schema", "--builtin"]) == 0
    assert json.loads(capsys.readouterr().out) == grid == json.loads((REPO / "grids" / "grid.schema.json").read_text())


def test_null_works_where_the_schema_allows_it():
    body = {"dataset": {"kind": "nih", "root": "/data", "labels": None, "aliases": {"Lipoid": None, "Pleural Effusion":
            "Effusion"}, "cache_dir": None, "min_positives": None, "label_file": None},
            "splits": {"file": None}}
    jsonschema.validate(body, SCHEMA)
    cfg = parse_grid(body)
    assert cfg.dataset.aliases == {"Lipoid": None, "Pleural Effusion": "Effusion"} and cfg.dataset.labels is None
    assert cfg.splits.file is None and cfg.dataset.min_positives is None
    for bad in ({"train": {"epochs": None}}, {"dataset": {"image_size": None}}):  # where it does not
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
        with pytest.raises(BenchError, match=r"None is not valid; expected an integer"):
            parse_grid(bad)
