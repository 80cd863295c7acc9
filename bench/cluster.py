"""``bench cluster validate``: check a Ray cluster-launcher file offline, the way ``ray up`` would.

The YAML is loaded safely, prepared with Ray's own ``prepare_config`` (it merges the provider's
``defaults.yaml``, exactly what ``ray up`` does before it calls the cloud) and validated against the
JSON schema that ships inside Ray (``ray/autoscaler/ray-schema.json``) and Ray's ``validate_config``.
Nothing here talks to a cloud. Then this project's own rules are checked (:mod:`bench.cluster_rules`): the
image's tag carries the installed Ray's version (any image: ``make image`` builds the project's), GPU node types
name their AMI, ``resources`` match the instance type, the head can pass the workers' IAM role, the head
advertises 0 CPUs, some worker type has GPUs, ``0 <= min_workers <= max_workers``.

Every problem is one line naming the file, the line and the key path::

    cluster.yaml:61: available_node_types.ray.worker.gpu.min_workers: -1 is less than the minimum of 0

>>> validate_cluster_file("cluster.yaml")  # doctest: +SKIP
[]
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from bench.cluster_rules import check, unique
from bench.errors import did_you_mean

PYTHON_TAG = "py311"


def expected_image() -> str:
    """Ray's own image of the installed Ray, e.g. ``rayproject/ray:2.60.0-py311-gpu`` (docker/Dockerfile's base)."""
    import ray

    return f"rayproject/ray:{ray.__version__}-{PYTHON_TAG}-gpu"


def validate_cluster_file(path: str | os.PathLike) -> list[str]:
    """All problems found in the cluster-launcher file at ``path`` (an empty list when it is valid).

    >>> validate_cluster_file("cluster.yaml")  # doctest: +SKIP
    []
    """
    from bench.yaml_lines import line_map, line_of, read_yaml
    from bench.errors import BenchError

    shown = str(path)
    p = Path(path)
    if not p.is_file():
        return [f"{shown}: file not found"]
    try:
        data, node = read_yaml(p, shown=shown)
    except BenchError as exc:
        return [str(exc)]
    if not isinstance(data, Mapping):
        return [f"{shown}: a cluster file must be a mapping of keys (cluster_name, provider, ...), "
                f"got {type(data).__name__ if data is not None else 'an empty file'}"]
    lines = line_map(node)

    def fmt(key_path: Iterable, message: str) -> str:
        dotted = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in key_path).lstrip(".")
        line = line_of(lines, dotted)
        return f"{shown}:{line}: {dotted or '(top level)'}: {message}" if line else \
            f"{shown}: {dotted or '(top level)'}: {message}"

    raw_problems = _check_raw(data)
    if raw_problems:
        return [fmt(k, m) for k, m in raw_problems]
    prepared, failure = _prepare(data)
    if prepared is None:
        merged = _merged_defaults(data)
        problems = _schema_problems(merged) or [((), failure)]
        return [fmt(k, m) for k, m in problems]
    problems = _schema_problems(prepared)
    if not problems:
        problems = _ray_checks(prepared)
    problems += _project_checks(prepared)
    return [fmt(k, m) for k, m in unique(problems)]


# ---- Ray's own preparation and checks ------------------------------------------------------------

def _check_raw(data: Mapping) -> list[tuple[tuple, str]]:
    """What must be checked before Ray fills in defaults (which would hide it)."""
    from ray.autoscaler._private.providers import _NODE_PROVIDERS

    provider = data.get("provider")
    if provider is None:
        return [(("provider",), "required key is missing (e.g. provider: {type: aws, region: us-west-2})")]
    if not isinstance(provider, Mapping):
        return [(("provider",), f"{provider!r} is not of type 'object'")]
    kind = provider.get("type")
    if kind not in _NODE_PROVIDERS:
        return [(("provider", "type"), f"{kind!r} is not a node provider Ray knows"
                 f"{did_you_mean(str(kind), _NODE_PROVIDERS)} (choose from: {', '.join(sorted(_NODE_PROVIDERS))})")]
    types = data.get("available_node_types")
    if isinstance(types, Mapping):
        # ray up fails on this for AWS (check_legacy_fields); prepare_config would silently default it.
        head = data.get("head_node_type")
        if head is None:
            return [(("head_node_type",), f"required key is missing; it must name one of available_node_types "
                                          f"({', '.join(map(str, types))})")]
        if head not in types:
            return [(("head_node_type",), f"{head!r} is not one of available_node_types"
                                          f"{did_you_mean(str(head), map(str, types))} ({', '.join(map(str, types))})")]
    return []


def _prepare(data: Mapping) -> tuple[dict | None, str]:
    """``prepare_config`` as ``ray up`` runs it; (None, why) when Ray cannot prepare the file."""
    from ray.autoscaler._private.util import prepare_config

    quiet = logging.getLogger("ray.autoscaler")  # "setting max workers for ..." is no news here
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        config = prepare_config(copy.deepcopy(dict(data)))
    except Exception as exc:  # noqa: BLE001 - any failure of Ray's preparation is reported, not raised
        return None, f"Ray cannot prepare this configuration: {type(exc).__name__}: {exc}"
    finally:
        quiet.setLevel(level)
    # `ray up` fills missing `resources` from the AWS instance type (a cloud call); offline we take the
    # file's resources as they are and let an absent field stand for "autodetected".
    if config.get("provider", {}).get("type") == "aws":
        for node_type in (config.get("available_node_types") or {}).values():
            if isinstance(node_type, dict):
                node_type.setdefault("resources", {})
    return config, ""


def _merged_defaults(data: Mapping) -> Mapping:
    from ray.autoscaler._private.util import fillout_defaults

    try:
        return fillout_defaults(copy.deepcopy(dict(data)))
    except Exception:  # noqa: BLE001 - fall back to the file as written
        return data


def _schema() -> dict:
    import ray.autoscaler

    with open(Path(ray.autoscaler.__file__).parent / "ray-schema.json") as f:
        return json.load(f)


def _schema_problems(config: Mapping) -> list[tuple[tuple, str]]:
    """Every violation of Ray's shipped ``ray-schema.json``, with its key path."""
    import jsonschema

    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    out = []
    for err in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        where = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            allowed = set(err.schema.get("properties", {}))
            patterns = list(err.schema.get("patternProperties", {}))
            for key in err.instance:
                if key in allowed or any(re.search(p, str(key)) for p in patterns):
                    continue
                out.append(((*where, key), f"unknown key{did_you_mean(str(key), allowed)} "
                                           f"(valid: {', '.join(sorted(allowed))})"))
        elif err.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", err.message)
            out.append(((*where, *missing[:1]), "required key is missing"))
        else:
            out.append((where, err.message))
    return out


def _ray_checks(config: dict) -> list[tuple[tuple, str]]:
    """Ray's ``validate_config`` beyond the schema (head type, min_workers sum, synced-files field)."""
    from ray.autoscaler._private.util import validate_config

    try:
        validate_config(config)
    except Exception as exc:  # noqa: BLE001 - ValueError / RuntimeError / jsonschema errors alike
        return [((), f"{type(exc).__name__}: {exc}")]
    return []


# ---- this project's rules -----------------------------------------------------------------------

def _project_checks(config: Mapping) -> list[tuple[tuple, str]]:
    import ray

    return check(config, ray.__version__)
