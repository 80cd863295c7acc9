"""docker/Dockerfile, the cluster image every node runs, checked statically.

There is no Docker daemon where these tests run, so the image is never built here: the tests read the
Dockerfile and check that its base is Ray's own image of the installed Ray, that its install step installs
exactly this project as pyproject.toml declares it (torch and torchvision pinned within pyproject's ranges,
Ray held at the installed version, nothing else pip-installed), and that every file naming the image
(Makefile, cluster.yaml, k8s/, slurm/) names the one `make image` builds.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            word, _, rest = current.partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def args_of(steps) -> dict[str, str]:
    """Every ARG's default (the last one wins, as in a build without --build-arg)."""
    out = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            out[key] = value.strip('"')
    return out


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


@pytest.fixture(scope="module")
def dockerfile():
    steps = instructions(DOCKERFILE.read_text())
    return steps, args_of(steps)


@pytest.fixture(scope="module")
def project() -> dict:
    """pyproject.toml's [project] table (Python 3.10, without tomllib: the installed package's metadata)."""
    try:
        import tomllib
    except ModuleNotFoundError:
        from importlib.metadata import metadata, requires

        return {"dependencies": [r for r in requires("cxr-imbalance-bench") or [] if "extra ==" not in r],
                "requires-python": metadata("cxr-imbalance-bench")["Requires-Python"]}
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirement(project: dict, name: str) -> Requirement:
    return next(r for r in map(Requirement, project["dependencies"]) if r.name == name)


def test_the_base_is_rays_image_of_the_installed_ray(dockerfile):
    import ray

    from bench.cluster import expected_image

    steps, args = dockerfile
    assert args["RAY_VERSION"] == ray.__version__
    (base,) = [expand(rest, args) for word, rest in steps if word == "FROM"]
    assert base == expected_image() == f"rayproject/ray:{ray.__version__}-py311-gpu"


def test_the_install_step_matches_pyproject(dockerfile, project):
    steps, args = dockerfile
    runs = [expand(rest, args) for word, rest in steps if word == "RUN"]
    pip = [shlex.split(part.strip()) for run in runs for part in re.split(r"&&", run) if "pip install" in part]
    assert len(pip) == 2, pip
    torch_step, project_step = pip
    # torch and torchvision: pinned builds of the CUDA index, inside pyproject's ranges.
    pins = {Requirement(a).name: Requirement(a) for a in torch_step if "==" in a}
    assert set(pins) == {"torch", "torchvision"}, torch_step
    assert f"https://download.pytorch.org/whl/{args['TORCH_CUDA']}" in torch_step
    for name, pin in pins.items():
        version = Version(next(iter(pin.specifier)).version)
        assert version.local == args["TORCH_CUDA"], pin
        assert requirement(project, name).specifier.contains(version, prereleases=False), (name, version)
    # The project itself, editable from the folder the checkout was copied to, held to the image's Ray and torch.
    copies = [rest.split() for word, rest in steps if word == "COPY"]
    assert copies == [["--chown=ray:users", ".", "/home/ray/cxr-imbalance-bench"]]
    assert project_step[project_step.index("-e") + 1] == "/home/ray/cxr-imbalance-bench"
    packages = [a for a in project_step[2:] if not a.startswith("-") and a not in ("/tmp/constraints.txt",
                                                                                   "/home/ray/cxr-imbalance-bench")]
    assert packages == [], f"the image installs more than the project: {packages}"
    (constraints,) = [run for run in runs if "constraints.txt" in run and "printf" in run]
    held = re.search(r"printf '([^']*)'", constraints).group(1).split("\\n")
    assert held[:3] == ["ray==%s", "torch==%s+%s", "torchvision==%s+%s"], held
    assert requirement(project, "ray").specifier.contains(args["RAY_VERSION"])
    assert project["requires-python"] and Requirement(f"python{project['requires-python']}").specifier.contains("3.11")


def test_the_cached_weights_are_the_full_grids_backbones(dockerfile):
    _, args = dockerfile
    grid = yaml.safe_load((REPO / "grids" / "full.yaml").read_text())
    assert grid["train"]["pretrained"] is True
    assert args["PRETRAINED"].split() == grid["backbones"]


def test_every_file_names_the_image_make_builds(dockerfile):
    _, args = dockerfile
    # A top-level make, as a user runs it: under `make test` (CI) the inherited MAKELEVEL would make this one a
    # sub-make that prints "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    image = subprocess.run(["make", "-s", "image-name"], cwd=REPO, capture_output=True, text=True, env=env,
                           check=True).stdout.strip()
    assert image == f"cxr-imbalance-bench:{args['RAY_VERSION']}-{args['TORCH_CUDA']}"
    assert subprocess.run(["make", "-n", "image"], cwd=REPO, capture_output=True, text=True, env=env,
                          check=True).stdout.strip() == f"docker build -f docker/Dockerfile -t {image} ."
    for path in ("cluster.yaml", "k8s/rayjob-full.yaml", "slurm/bench.sbatch"):
        named = set(re.findall(r"cxr-imbalance-bench:\w[\w.-]*\w", (REPO / path).read_text()))
        assert named == {image}, f"{path} names {named}"


def test_the_build_context_leaves_out_the_local_state():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs", "data"} <= set(ignored)
