"""This project's rules for a Ray cluster-launcher file, checked by ``bench cluster validate`` after Ray's schema.

- The Docker image may be any image whose **tag starts with the installed Ray's version**
  (``rayproject/ray:2.60.0-py311-gpu``, or ``cxr-imbalance-bench:2.60.0-cu126`` as ``make image`` tags
  docker/Dockerfile's build): the driver and every node must run the same Ray. An image kept from being pulled
  (``pull_before_run: false``) must be pulled or tagged by ``initialization_commands``.
- On AWS, every node type with GPUs names its AMI (``ImageId``: an ``ami-`` id or ``resolve:ssm:PARAMETER``):
  without one Ray 2.60 picks an old Deep Learning AMI whose NVIDIA driver is older than the image's torch needs.
- ``resources`` do not contradict the instance type: CPU at most its vCPUs, GPU exactly its GPUs (for the
  instance families in :data:`GPUS`; other families are not checked offline).
- Workers that get an instance profile need a head that names one too: Ray's default head role
  (``ray-autoscaler-v1``) has no ``iam:PassRole``, so it cannot launch them (Ray issue #3190).
- The head advertises 0 CPUs (no trial runs on it), some worker type has GPUs, and
  ``0 <= min_workers <= max_workers``.

Each rule returns ``(key path, message)`` pairs; :mod:`bench.cluster` adds the file and line.

>>> image_ray_version("myorg/cxr-bench:2.60.0-cu126"), image_ray_version("rayproject/ray:latest-gpu")
('2.60.0', None)
>>> instance_shape("g5.12xlarge"), instance_shape("m5.2xlarge"), instance_shape("x9.huge")
((48, 4), (8, 0), (None, None))
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

Problem = tuple[tuple, str]

DLAMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
DRIVER_NOTE = "its NVIDIA driver must suit the image's torch (docker/Dockerfile: CUDA 12.6, driver >= 560)"

# vCPUs by size for the families below (AWS names sizes by vCPU count in these families).
VCPUS = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32, "9xlarge": 36, "12xlarge": 48,
         "16xlarge": 64, "18xlarge": 72, "24xlarge": 96, "32xlarge": 128, "48xlarge": 192}
# GPUs by family: the count of the family's 1-GPU sizes, and the sizes that differ (None: size not offered).
GPUS: dict[str, tuple[int, dict[str, int | None]]] = {
    "g4dn": (1, {"12xlarge": 4, "metal": 8}),
    "g5": (1, {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g6": (1, {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "g6e": (1, {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8}),
    "p3": (1, {"8xlarge": 4, "16xlarge": 8}),
    "p4d": (8, {}),
    "p5": (8, {"4xlarge": 1}),
}
CPU_FAMILIES = {"m5", "m5a", "m5n", "m6i", "m6a", "m7i", "m7a", "c5", "c5a", "c6i", "c6a", "c7i", "r5", "r6i",
                "r7i", "t3", "t3a"}


def image_ray_version(image: str) -> str | None:
    """The Ray version an image's tag starts with (``2.60.0`` of ``…:2.60.0-cu126``), or None."""
    last = str(image).split("@", 1)[0].rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    m = re.match(r"(\d+\.\d+\.\d+)(?:-|$)", last.rsplit(":", 1)[1])
    return m.group(1) if m else None


def instance_shape(instance_type: str) -> tuple[int | None, int | None]:
    """(vCPUs, GPUs) of an EC2 instance type of the families known here; None where unknown."""
    family, _, size = str(instance_type).partition(".")
    if family in GPUS:
        default, sizes = GPUS[family]
        gpus = sizes.get(size, default)
    elif family in CPU_FAMILIES:
        gpus = 0
    else:
        return None, None
    return VCPUS.get(size), gpus


# ---- the rules ----------------------------------------------------------------------------------

def check(config: Mapping, ray_version: str) -> list[Problem]:
    out = _images(config, ray_version)
    types = config.get("available_node_types")
    if not isinstance(types, Mapping):
        return out
    head = config.get("head_node_type")
    aws = (config.get("provider") or {}).get("type") == "aws"
    out += _workers(types, head) + _head_cpus(config, types, head)
    if aws:
        for name, spec in types.items():
            if isinstance(spec, Mapping):
                out += _aws_node(name, spec)
        out += _iam(types, head)
    return out


def _images(config: Mapping, ray_version: str) -> list[Problem]:
    out: list[Problem] = []
    docker = config.get("docker") if isinstance(config.get("docker"), Mapping) else {}
    example = f"rayproject/ray:{ray_version}-py311-gpu or `make image`'s cxr-imbalance-bench:{ray_version}-cu126"
    if not docker.get("image"):
        out.append((("docker", "image"), f"missing; the nodes run a Docker image whose tag starts with the installed "
                                         f"Ray's version (e.g. {example})"))
    images = [(("docker", key), docker.get(key)) for key in ("image", "head_image", "worker_image")]
    for name, spec in (config.get("available_node_types") or {}).items():
        if isinstance(spec, Mapping) and isinstance(spec.get("docker"), Mapping):
            images.append((("available_node_types", name, "docker", "worker_image"), spec["docker"].get("worker_image")))
    init = " ; ".join(map(str, config.get("initialization_commands") or []))
    for where, image in images:
        if not image:
            continue
        version = image_ray_version(image)
        if version is None:
            out.append((where, f"{image!r}: its tag does not start with a Ray version, so the nodes' Ray cannot be "
                               f"checked against the installed {ray_version}; tag it {ray_version}-... (e.g. {example})"))
        elif version != ray_version:
            out.append((where, f"{image!r} runs Ray {version} (its tag) but the installed Ray is {ray_version}: the "
                               f"driver and every node must run the same version (rebuild with `make image`)"))
        if docker.get("pull_before_run") is False and not re.search(
                rf"docker\s+(?:pull|tag)\b[^;&|]*\s{re.escape(str(image))}(?=\s|$|[;&|])", init):
            out.append((("docker", "pull_before_run"), f"false, but no initialization_commands pull or tag {image!r}: "
                                                       "the nodes would not have it (pull it there, or set true)"))
    return out


def _workers(types: Mapping, head) -> list[Problem]:
    out: list[Problem] = []
    has_gpu_worker = False
    for name, spec in types.items():
        if not isinstance(spec, Mapping):
            continue
        lo, hi = spec.get("min_workers", 0), spec.get("max_workers", 0)
        for key, value in (("min_workers", lo), ("max_workers", hi)):
            if isinstance(value, int) and value < 0:
                out.append((("available_node_types", name, key), f"{value} is less than the minimum of 0"))
        if isinstance(lo, int) and isinstance(hi, int) and 0 <= hi < lo:
            out.append((("available_node_types", name, "min_workers"), f"{lo} is more than max_workers ({hi})"))
        resources = spec.get("resources") if isinstance(spec.get("resources"), Mapping) else {}
        if name != head and isinstance(resources.get("GPU"), (int, float)) and resources["GPU"] >= 1:
            has_gpu_worker = True
    if not has_gpu_worker:
        out.append((("available_node_types",), "no worker type has GPUs; give one worker type resources "
                                               "{CPU: N, GPU: 1} (e.g. g5.xlarge: {CPU: 4, GPU: 1})"))
    return out


def _head_cpus(config: Mapping, types: Mapping, head) -> list[Problem]:
    out: list[Problem] = []
    spec = types.get(head) if isinstance(types.get(head), Mapping) else {}
    resources = spec.get("resources") if isinstance(spec.get("resources"), Mapping) else {}
    if head in types and resources.get("CPU") != 0:
        shown = "missing" if "CPU" not in resources else repr(resources["CPU"])
        out.append((("available_node_types", head, "resources", "CPU"),
                    f"{shown}: the head node must advertise 0 CPUs so no trial runs on it (resources: {{CPU: 0}})"))
    for i, cmd in enumerate(config.get("head_start_ray_commands") or []):
        m = re.search(r"--num-cpus[= ](\S+)", str(cmd))
        if "--head" in str(cmd) and m and m.group(1) not in ("0", "'0'", '"0"'):
            out.append((("head_start_ray_commands", i), f"--num-cpus={m.group(1)}: the head node must start with "
                                                        "--num-cpus=0"))
    return out


def _aws_node(name: str, spec: Mapping) -> list[Problem]:
    out: list[Problem] = []
    node = spec.get("node_config") if isinstance(spec.get("node_config"), Mapping) else {}
    resources = spec.get("resources") if isinstance(spec.get("resources"), Mapping) else {}
    itype = node.get("InstanceType")
    vcpus, gpus = instance_shape(itype) if itype else (None, None)
    where = ("available_node_types", name, "resources")
    cpu, gpu = resources.get("CPU"), resources.get("GPU")
    if vcpus is not None and isinstance(cpu, (int, float)) and cpu > vcpus:
        out.append(((*where, "CPU"), f"{cpu} is more than the {vcpus} vCPUs of {itype}"))
    if gpus is not None and isinstance(gpu, (int, float)) and gpu != gpus:
        has = f"the {gpus} GPU(s) of {itype}" if gpus else f"{itype}, which has no GPU"
        out.append(((*where, "GPU"), f"{gpu} does not match {has}"))
    image = node.get("ImageId")
    if not image and ((isinstance(gpu, (int, float)) and gpu > 0) or (gpus or 0) > 0):
        out.append((("available_node_types", name, "node_config", "ImageId"),
                    f"missing on a GPU node type: Ray would pick its old default Deep Learning AMI; name one "
                    f"whose NVIDIA driver suits the image ({DRIVER_NOTE}), e.g. resolve:ssm:{DLAMI_PARAMETER} "
                    "or the ami- id that parameter holds today"))
    elif image and not re.fullmatch(r"ami-[0-9a-f]{8,17}|resolve:ssm:/\S+", str(image)):
        out.append((("available_node_types", name, "node_config", "ImageId"),
                    f"{image!r} is neither an AMI id (ami-0123456789abcdef0) nor resolve:ssm:PARAMETER"))
    return out


def _iam(types: Mapping, head) -> list[Problem]:
    head_cfg = (types.get(head) or {}).get("node_config") or {}
    if "IamInstanceProfile" in head_cfg:
        return []
    return [(("available_node_types", name, "node_config", "IamInstanceProfile"),
             "the workers get an instance profile but the head has none, so it runs with Ray's default role "
             "ray-autoscaler-v1, which has no iam:PassRole and cannot launch them; give the head an "
             "IamInstanceProfile whose role may pass the workers' role (docs/distributed.md, \"IAM\")")
            for name, spec in types.items()
            if name != head and isinstance(spec, Mapping) and "IamInstanceProfile" in (spec.get("node_config") or {})]


def unique(items: Iterable[Problem]) -> list[Problem]:
    seen, out = set(), []
    for item in items:
        marker = (tuple(map(str, item[0])), item[1])
        if marker not in seen:
            seen.add(marker)
            out.append(item)
    return out
