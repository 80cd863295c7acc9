"""k8s/: the KubeRay RayJob (with the RayCluster it creates) for grids/full.yaml, checked offline.

Schema: every ``ray.io`` object is validated against KubeRay's own CRDs (``../shared/schemas/kuberay``, v1.7;
its SOURCE.md says where they come from) with ``jsonschema``. A CRD's schema is *structural*: the API server
drops (and ``kubectl apply``'s default strict field validation rejects) every field the schema does not declare,
unless the node says ``x-kubernetes-preserve-unknown-fields: true``. A plain JSON Schema validator would accept
them, so :func:`closed` adds ``additionalProperties: false`` to every object node that declares no
``additionalProperties`` and does not preserve unknown fields (these CRDs have no such node today; the code
honours one if a later version adds it). ``metadata`` at the top is the API server's ObjectMeta, which the CRD
leaves as ``type: object``; it is checked against the ObjectMeta fields used here. CEL rules
(``x-kubernetes-validations``) cannot be evaluated offline: a manifest that sets a field carrying one is
refused with that reason rather than passed unchecked.

These tests need the CRDs beside the repository: they skip without them on a user's machine and fail under CI
(the ``realdata`` marker's rule in tests/conftest.py; ``BENCH_TEST_KUBERAY_SCHEMAS`` points elsewhere).

Design: the rules the issue asks of the manifests (a head with 0 CPUs, an autoscaling GPU group, the dataset
read-only, ``--out`` and ``--storage`` on a persistent volume, a backoffLimit, the project image) are checked
by :func:`design_problems`, which needs no CRD, against a broken copy each.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from bench.errors import did_you_mean

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
RAYJOB = K8S / "rayjob-full.yaml"
VOLUMES = K8S / "volumes.yaml"
KUBERAY = Path(os.environ.get("BENCH_TEST_KUBERAY_SCHEMAS") or REPO.parent / "shared" / "schemas" / "kuberay")
CRD_FILES = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
PROJECT_IN_IMAGE = "/home/ray/cxr-imbalance-bench"  # where docker/Dockerfile puts this checkout

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OBJECT_META = {  # the part of Kubernetes' ObjectMeta a manifest may set (the rest is written by the server)
    "type": "object", "required": ["name"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

needs_crds = pytest.mark.realdata  # skips without ../shared, fails under CI (tests/conftest.py)


# ---- loading ------------------------------------------------------------------------------------

def documents(path: Path, text: str | None = None) -> list[dict]:
    """The YAML documents of a manifest file (``text`` replaces the file's content)."""
    docs = [d for d in yaml.safe_load_all(path.read_text() if text is None else text) if d is not None]
    assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"
    return docs


@pytest.fixture(scope="module")
def crds() -> Path:
    """The folder of KubeRay's CRDs; skips (fails under CI) when it is missing."""
    if not all((KUBERAY / f).is_file() for f in CRD_FILES.values()):
        pytest.skip(f"KubeRay CRD schemas not found at {KUBERAY} (they ship beside the repository in "
                    "../shared/schemas/kuberay; BENCH_TEST_KUBERAY_SCHEMAS points elsewhere)")
    return KUBERAY


def crd_schema(kind: str) -> dict:
    """The closed-world v1 schema of a KubeRay kind, from the CRD file in ``KUBERAY``."""
    return _crd_schema(KUBERAY / CRD_FILES[kind], kind)


@functools.lru_cache(maxsize=None)
def _crd_schema(path: Path, kind: str) -> dict:
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind, f"{CRD_FILES[kind]} defines {crd['spec']['names']['kind']}"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = closed(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = OBJECT_META
    schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/v1"}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"].pop("status", None)  # written by the operator, never by a manifest
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return schema


def closed(node):
    """A structural schema as the API server applies it: undeclared fields are errors, not silently kept."""
    if isinstance(node, dict):
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        if node.get("type") == "object" and "additionalProperties" not in node and not preserve:
            node["additionalProperties"] = False
        for key, value in node.items():
            if key in ("properties", "patternProperties"):
                for sub in value.values():
                    closed(sub)
            elif key in ("items", "additionalProperties", "not") or key in ("anyOf", "allOf", "oneOf"):
                closed(value)
    elif isinstance(node, list):
        for sub in node:
            closed(sub)
    return node


# ---- validation ---------------------------------------------------------------------------------

def dotted(path) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".") or "(top level)"


def cel_fields(schema: dict, value, path=()) -> Iterator[tuple[tuple, list[str]]]:
    """Every field of ``value`` whose schema node carries CEL rules, with the rules' messages."""
    if not isinstance(schema, dict):
        return
    if "x-kubernetes-validations" in schema:
        yield path, [r.get("message") or r["rule"] for r in schema["x-kubernetes-validations"]]
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, sub in value.items():
            yield from cel_fields(props.get(key, extra if isinstance(extra, dict) else {}), sub, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            yield from cel_fields(schema["items"], sub, (*path, i))


def crd_problems(doc: dict, *, shown: str) -> list[str]:
    """One line per violation of the KubeRay CRD of ``doc['kind']``: ``FILE: KIND NAME: key.path: message``."""
    import jsonschema

    kind = doc.get("kind")
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    where = f"{shown}: {kind} {name}"
    if kind not in CRD_FILES:
        return [f"{where}: kind: {kind!r} is not a KubeRay kind checked here ({', '.join(CRD_FILES)})"]
    schema = crd_schema(kind)
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(err.schema.get("properties", {}))
            for key in err.instance:
                if key not in allowed:
                    valid = f" (valid: {', '.join(allowed)})" if allowed else " (no fields are allowed here)"
                    out.append(f"{where}: {dotted((*path, key))}: unknown field{did_you_mean(str(key), allowed)}"
                               f"{valid}")
        else:
            out.append(f"{where}: {dotted(path)}: {err.message}")
    for path, rules in cel_fields(schema, doc):
        out.append(f"{where}: {dotted(path)}: carries CEL rules that cannot be checked offline "
                   f"({'; '.join(rules)}); check it with `kubectl apply --dry-run=server`")
    return out


# ---- the design the issue asks for --------------------------------------------------------------

def bench_run_args(entrypoint: str):
    """``bench run``'s own parser applied to the RayJob's entrypoint (a typo'd option fails here)."""
    from bench.cli import build_parser

    argv = shlex.split(entrypoint)
    assert argv[:2] == ["bench", "run"], f"entrypoint: {entrypoint!r} does not start with `bench run`"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        raise AssertionError(f"entrypoint: `bench run` refuses its options: {entrypoint!r}") from None


def ray_start_options() -> set[str]:
    from ray.scripts.scripts import start

    return {opt.lstrip("-") for p in start.params for opt in p.opts if opt.startswith("--")}


def pods(job: dict) -> Iterator[tuple[str, dict]]:
    cluster = job["spec"]["rayClusterSpec"]
    yield "rayClusterSpec.headGroupSpec", cluster["headGroupSpec"]
    for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
        yield f"rayClusterSpec.workerGroupSpecs[{i}]", group


def mounts(group: dict) -> dict[str, dict]:
    """mountPath -> {volume, claim, readOnly, subPath} of the group's first container."""
    spec = group["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    out = {}
    for m in spec["containers"][0].get("volumeMounts") or []:
        vol = volumes.get(m["name"], {})
        pvc = vol.get("persistentVolumeClaim") or {}
        out[m["mountPath"].rstrip("/")] = {"volume": m["name"], "claim": pvc.get("claimName"),
                                           "readOnly": bool(m.get("readOnly")) or bool(pvc.get("readOnly")),
                                           "mountReadOnly": bool(m.get("readOnly")), "subPath": m.get("subPath")}
    return out


def mount_of(path: str, table: dict[str, dict]) -> tuple[str, dict] | None:
    best = max((p for p in table if path == p or path.startswith(p + "/")), key=len, default=None)
    return (best, table[best]) if best else None


def design_problems(job: dict, volumes: list[dict], *, shown: str = "k8s/rayjob-full.yaml") -> list[str]:
    """The issue's rules for the RayJob of grids/full.yaml, one line per broken rule."""
    import ray

    out: list[str] = []
    spec = job["spec"]
    args = bench_run_args(spec["entrypoint"])
    if not args.grid.startswith(PROJECT_IN_IMAGE + "/"):
        out.append(f"{shown}: spec.entrypoint: --grid {args.grid} is not in the image's checkout ({PROJECT_IN_IMAGE})")
        grid = {}
    else:
        local = REPO / args.grid[len(PROJECT_IN_IMAGE) + 1:]
        grid = yaml.safe_load(local.read_text()) if local.is_file() else {}
        if not grid:
            out.append(f"{shown}: spec.entrypoint: --grid {args.grid}: no such grid in the repository ({local})")
    if not isinstance(spec.get("backoffLimit"), int) or spec["backoffLimit"] < 1:
        out.append(f"{shown}: spec.backoffLimit: {spec.get('backoffLimit')!r}: set 1 or more so a failed job is retried "
                   "(and resumes from the volumes)")
    claims = {d["metadata"]["name"]: d for d in volumes if d.get("kind") == "PersistentVolumeClaim"}
    cluster = spec["rayClusterSpec"]
    if cluster.get("rayVersion") != ray.__version__:
        out.append(f"{shown}: spec.rayClusterSpec.rayVersion: {cluster.get('rayVersion')!r} is not the installed Ray "
                   f"({ray.__version__!r})")
    head = cluster["headGroupSpec"]
    if str(head.get("rayStartParams", {}).get("num-cpus")) != "0":
        out.append(f"{shown}: spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus: "
                   f"{head.get('rayStartParams', {}).get('num-cpus')!r}: the head must advertise \"0\" CPUs so no trial "
                   "runs on it")
    gpu_groups = [g for g in cluster.get("workerGroupSpecs") or []
                  if "nvidia.com/gpu" in (g["template"]["spec"]["containers"][0].get("resources", {}).get("limits") or {})]
    if not gpu_groups:
        out.append(f"{shown}: spec.rayClusterSpec.workerGroupSpecs: no group's container limits request nvidia.com/gpu")
    if not cluster.get("enableInTreeAutoscaling"):
        out.append(f"{shown}: spec.rayClusterSpec.enableInTreeAutoscaling: must be true (the GPU group autoscales)")
    for g in gpu_groups:
        if not g.get("minReplicas", 0) < g.get("maxReplicas", 0):
            out.append(f"{shown}: workerGroupSpecs {g['groupName']}: minReplicas {g.get('minReplicas')} must be less "
                       f"than maxReplicas {g.get('maxReplicas')} for the autoscaler to add GPU nodes")
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        want = grid.get("resources") or {}
        if float(str(limits.get("cpu", "0")).rstrip("m") or 0) < float(want.get("cpu", 1)) or \
                float(limits["nvidia.com/gpu"]) < float(want.get("gpu", 0)):
            out.append(f"{shown}: workerGroupSpecs {g['groupName']}: limits {limits} cannot hold one trial of the grid "
                       f"(resources {want})")
    images = set()
    dataset_root = ((grid.get("dataset") or {}).get("root") or "").rstrip("/")
    start_options = ray_start_options()
    for where, group in pods(job):
        for key in group.get("rayStartParams") or {}:
            if key not in start_options:
                out.append(f"{shown}: spec.{where}.rayStartParams.{key}: not an option of `ray start`"
                           f"{did_you_mean(key, start_options)}")
        containers = group["template"]["spec"]["containers"]
        images.update(c.get("image") for c in containers)
        table = mounts(group)
        for what, path in (("--out", args.out), ("--storage", args.storage)):
            found = mount_of(path or "", table)
            if not path or not found or found[1]["claim"] not in claims or found[1]["readOnly"]:
                out.append(f"{shown}: spec.{where}: {what} {path!r} is not on a writable persistent volume claim "
                           f"of k8s/volumes.yaml (mounts: {', '.join(sorted(table))})")
        if dataset_root:
            found = mount_of(dataset_root, table)
            if not found or not found[1]["readOnly"] or found[1]["claim"] not in claims:
                out.append(f"{shown}: spec.{where}: the grid's dataset.root {dataset_root} is not on a read-only "
                           "persistent volume claim")
    for image in images:
        tag = str(image).rpartition(":")[2]
        if not tag.startswith(ray.__version__ + "-"):
            out.append(f"{shown}: image {image!r}: its tag must start with the installed Ray version "
                       f"({ray.__version__}-...), as `make image` tags it")
    if len(images) != 1:
        out.append(f"{shown}: the head and the workers run different images: {sorted(map(str, images))}")
    for name, claim in claims.items():
        modes = set(claim["spec"].get("accessModes") or [])
        if not modes & {"ReadWriteMany", "ReadOnlyMany"}:
            out.append(f"k8s/volumes.yaml: {name}: accessModes {sorted(modes)}: every Ray pod mounts it, on any node "
                       "(ReadWriteMany or ReadOnlyMany)")
    used = {m["claim"] for _, g in pods(job) for m in mounts(g).values() if m["claim"]}
    for claim in sorted(used - set(claims)):
        out.append(f"{shown}: persistentVolumeClaim {claim!r} is not defined in k8s/volumes.yaml "
                   f"({', '.join(sorted(claims))})")
    return out


# ---- the tests ----------------------------------------------------------------------------------

def manifest_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def test_k8s_holds_the_rayjob_and_its_volumes():
    kinds = sorted((p.name, d["kind"]) for p in manifest_files() for d in documents(p))
    assert kinds == [("rayjob-full.yaml", "RayJob"), ("volumes.yaml", "PersistentVolumeClaim"),
                     ("volumes.yaml", "PersistentVolumeClaim")]


@needs_crds
def test_every_kuberay_manifest_validates_against_the_crds(crds):
    checked = 0
    for path in manifest_files():
        for doc in documents(path):
            if str(doc.get("apiVersion", "")).startswith("ray.io/"):
                assert crd_problems(doc, shown=path.name) == []
                checked += 1
    assert checked == 1


@needs_crds
def test_the_rayclusters_spec_validates_as_a_raycluster(crds):
    """The RayCluster the RayJob creates, applied on its own (kind RayCluster), passes the RayCluster CRD too."""
    job = documents(RAYJOB)[0]
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "cxr-bench"},
               "spec": job["spec"]["rayClusterSpec"]}
    assert crd_problems(cluster, shown="rayClusterSpec") == []


# (old text, new text, the key path the error must name, a phrase of the message)
TYPOS = {
    "spec field": ("  backoffLimit: 2\n", "  backOffLimit: 2\n", "spec.backOffLimit", "did you mean 'backoffLimit'"),
    "cluster field": ("enableInTreeAutoscaling: true", "enableInTreeAutoScaling: true",
                      "spec.rayClusterSpec.enableInTreeAutoScaling", "did you mean 'enableInTreeAutoscaling'"),
    "worker group field": ("minReplicas: 0", "minReplica: 0", "spec.rayClusterSpec.workerGroupSpecs[0].minReplica",
                           "did you mean 'minReplicas'"),
    "container field": ("              imagePullPolicy: IfNotPresent", "              imagePulPolicy: IfNotPresent",
                        "spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].imagePulPolicy",
                        "did you mean 'imagePullPolicy'"),
    "volume mount field": ("{name: dshm, mountPath: /dev/shm}", "{name: dshm, mountpath: /dev/shm}",
                           "spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].volumeMounts[3]"
                           ".mountpath", "did you mean 'mountPath'"),
    "metadata field": ("  labels:\n    app.kubernetes.io", "  lables:\n    app.kubernetes.io", "metadata.lables",
                       "did you mean 'labels'"),
    "wrong type": ("        replicas: 0\n", "        replicas: none\n", "spec.rayClusterSpec.workerGroupSpecs[0].replicas",
                   "'none' is not of type 'integer'"),
    "not in the enum": ("upscalingMode: Default", "upscalingMode: Fast",
                        "spec.rayClusterSpec.autoscalerOptions.upscalingMode", "'Fast' is not one of"),
    "missing required": ("      - groupName: gpu\n        replicas: 0\n", "      - replicas: 0\n",
                         "spec.rayClusterSpec.workerGroupSpecs[0]", "'groupName' is a required property"),
    "bad quantity": ("limits: {cpu: \"3\", memory: 12Gi", "limits: {cpu: \"3\", memory: 12 GiB",
                     "spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].resources.limits.memory",
                     "does not match"),
    "bad name": ("  name: cxr-bench-full\n", "  name: CXR_bench\n", "metadata.name", "does not match"),
    "wrong apiVersion": ("apiVersion: ray.io/v1\n", "apiVersion: ray.io/v1alpha2\n", "apiVersion", "was expected"),
}


@needs_crds
@pytest.mark.parametrize("case", sorted(TYPOS))
def test_a_broken_copy_fails_naming_the_field(crds, case):
    old, new, key, phrase = TYPOS[case]
    text = RAYJOB.read_text()
    assert text.count(old) >= 1, f"rayjob-full.yaml no longer contains {old!r}"
    (doc,) = documents(RAYJOB, text.replace(old, new, 1))
    problems = crd_problems(doc, shown="rayjob-full.yaml")
    hit = [p for p in problems if p.startswith(f"rayjob-full.yaml: RayJob ") and f": {key}: " in p]
    assert hit, f"{case}: no error names {key!r}: {problems}"
    assert any(phrase in p for p in hit), f"{case}: {hit}"
    assert all("\n" not in p for p in problems)


@needs_crds
def test_a_field_with_a_cel_rule_is_refused_not_passed_unchecked(crds):
    (doc,) = documents(RAYJOB)
    doc["spec"]["managedBy"] = "ray.io/kuberay-operator"
    problems = crd_problems(doc, shown="rayjob-full.yaml")
    assert problems == ["rayjob-full.yaml: RayJob cxr-bench-full: spec.managedBy: carries CEL rules that cannot be "
                        "checked offline (the managedBy field is immutable; the managedBy field value must be either "
                        "'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'); check it with "
                        "`kubectl apply --dry-run=server`"]


def test_closed_honours_preserve_unknown_fields():
    schema = closed({"type": "object", "properties": {
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "shut": {"type": "object", "properties": {"a": {"type": "string"}}}}})
    assert "additionalProperties" not in schema["properties"]["open"]
    assert schema["properties"]["shut"]["additionalProperties"] is False and schema["additionalProperties"] is False


def test_the_rayjob_follows_the_design():
    (job,) = documents(RAYJOB)
    assert design_problems(job, documents(VOLUMES)) == []


# (old text, new text, a phrase of the one problem expected)
DESIGN_BREAKS = {
    "head runs trials": ('num-cpus: "0"', 'num-cpus: "4"', "the head must advertise \"0\" CPUs"),
    "no GPU group": ("nvidia.com/gpu: 1}\n                volumeMounts", "}\n                volumeMounts",
                     "no group's container limits request nvidia.com/gpu"),
    "no autoscaling": ("maxReplicas: 4", "maxReplicas: 0", "for the autoscaler to add GPU nodes"),
    "dataset writable": ("{name: nih-cxr14, mountPath: /home/ray/data/nih-cxr14, readOnly: true}\n                - {name: "
                         "results, mountPath: /mnt/results}\n                - {name: results, mountPath: /mnt/cache, "
                         "subPath: cache}\n          volumes:\n            - name: nih-cxr14\n              "
                         "persistentVolumeClaim: {claimName: cxr-bench-nih-cxr14, readOnly: true}",
                         "{name: nih-cxr14, mountPath: /home/ray/data/nih-cxr14}\n                - {name: "
                         "results, mountPath: /mnt/results}\n                - {name: results, mountPath: /mnt/cache, "
                         "subPath: cache}\n          volumes:\n            - name: nih-cxr14\n              "
                         "persistentVolumeClaim: {claimName: cxr-bench-nih-cxr14}",
                         "headGroupSpec: the grid's dataset.root /home/ray/data/nih-cxr14 is not on a read-only"),
    "out off the volume": ("--out /mnt/results/runs/full", "--out /home/ray/runs/full",
                           "--out '/home/ray/runs/full' is not on a writable persistent volume claim"),
    "no retries": ("  backoffLimit: 2\n", "  backoffLimit: 0\n", "spec.backoffLimit: 0"),
    "typo'd bench option": ("--address auto --storage", "--adress auto --storage", "`bench run` refuses its options"),
    "typo'd ray start option": ('dashboard-host: "0.0.0.0"', 'dashbord-host: "0.0.0.0"',
                                "rayStartParams.dashbord-host: not an option of `ray start`; did you mean "
                                "'dashboard-host'"),
    "image of another Ray": ("image: cxr-imbalance-bench:2.60.0-cu126\n              imagePullPolicy: IfNotPresent\n"
                             "              env", "image: cxr-imbalance-bench:2.9.0-cu126\n              "
                             "imagePullPolicy: IfNotPresent\n              env", "must start with the installed Ray"),
}


@pytest.mark.parametrize("case", sorted(DESIGN_BREAKS))
def test_a_design_break_is_reported(case):
    old, new, phrase = DESIGN_BREAKS[case]
    text = RAYJOB.read_text()
    assert text.count(old) >= 1, f"rayjob-full.yaml no longer contains {old!r}"
    try:
        (job,) = documents(RAYJOB, text.replace(old, new, 1))
        problems = design_problems(job, documents(VOLUMES))
    except AssertionError as exc:  # bench run's parser refusing the entrypoint
        problems = [str(exc)]
    assert any(phrase in p for p in problems), f"{case}: {problems}"
    assert all("\n" not in p for p in problems)


def test_an_undefined_claim_is_reported():
    (job,) = documents(RAYJOB)
    volumes = [d for d in documents(VOLUMES) if d["metadata"]["name"] != "cxr-bench-results"]
    problems = design_problems(job, volumes)
    assert "k8s/rayjob-full.yaml: persistentVolumeClaim 'cxr-bench-results' is not defined in k8s/volumes.yaml " \
           "(cxr-bench-nih-cxr14)" in problems


def test_the_job_resumes_from_the_volume():
    """--out, --storage and the image cache are on the same claim in every pod, so a new RayCluster finds them."""
    (job,) = documents(RAYJOB)
    args = bench_run_args(job["spec"]["entrypoint"])
    for _, group in pods(job):
        table = mounts(group)
        assert mount_of(args.out, table)[1]["claim"] == mount_of(args.storage, table)[1]["claim"] == "cxr-bench-results"
        env = {e["name"]: e["value"] for e in group["template"]["spec"]["containers"][0]["env"]}
        assert mount_of(env["BENCH_CACHE_DIR"], table)[1]["claim"] == "cxr-bench-results"
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert all(mounts(g)["/mnt/cache"]["mountReadOnly"] for g in workers), "a GPU worker could build the cache"
    assert re.search(r"--out \S+ .*--storage \S+", job["spec"]["entrypoint"])
