"""``bench cluster validate``: the repository's cluster.yaml passes (and with any image of the installed Ray);
broken copies fail naming the key, one line each."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench.cli import main
from bench.cluster import expected_image, validate_cluster_file

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster.yaml"


def broken(tmp_path: Path, old: str, new: str, *, count: int = 1) -> Path:
    """A copy of cluster.yaml with ``old`` replaced by ``new`` (``old`` must occur ``count`` times)."""
    text = CLUSTER.read_text()
    assert text.count(old) == count, f"cluster.yaml no longer contains {old!r} {count} time(s)"
    out = tmp_path / "cluster.yaml"
    out.write_text(text.replace(old, new))
    return out


def test_cluster_yaml_is_valid():
    assert validate_cluster_file(CLUSTER) == []


def test_cluster_yaml_runs_the_image_make_builds():
    import ray

    assert expected_image() == f"rayproject/ray:{ray.__version__}-py311-gpu"
    image = subprocess.run(["make", "-s", "image-name"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip()
    assert image == f"cxr-imbalance-bench:{ray.__version__}-cu126"
    assert f"  image: {image}\n" in CLUSTER.read_text()
    assert f"docker tag $REGISTRY/{image} {image}\n" in CLUSTER.read_text()  # what pull_before_run: false needs


def test_any_image_of_the_installed_ray_passes(tmp_path):
    """A custom image whose tag carries the installed Ray's version (pulled by Ray itself) is accepted."""
    text = CLUSTER.read_text().replace("  image: cxr-imbalance-bench:2.60.0-cu126\n", "  image: myorg/cxr-bench:2.60.0-cu128\n")
    text = text.replace("  pull_before_run: false\n", "  pull_before_run: true\n")
    (tmp_path / "cluster.yaml").write_text(text)
    assert validate_cluster_file(tmp_path / "cluster.yaml") == []
    text = text.replace("myorg/cxr-bench:2.60.0-cu128", "rayproject/ray:2.60.0-py311-gpu")
    (tmp_path / "cluster.yaml").write_text(text)
    assert validate_cluster_file(tmp_path / "cluster.yaml") == []


def test_cli_accepts_cluster_yaml(capsys):
    assert main(["cluster", "validate", str(CLUSTER)]) == 0
    assert "valid Ray cluster configuration" in capsys.readouterr().out


# (old text, new text, occurrences, the key path the error must name, a phrase of the message)
BROKEN = {
    "wrong type": ("    max_workers: 4\n", "    max_workers: four\n", 1,
                   "available_node_types.ray.worker.gpu.max_workers", "'four' is not of type 'integer'"),
    "negative workers": ("    min_workers: 0 ", "    min_workers: -1 ", 1,
                         "available_node_types.ray.worker.gpu.min_workers", "-1 is less than the minimum of 0"),
    "negative global max": ("\nmax_workers: 4\n", "\nmax_workers: -1\n", 1,
                            "max_workers", "-1 is less than the minimum of 0"),
    "unknown top-level key": ("\nupscaling_speed: 1.0\n", "\nupscaling_sped: 1.0\n", 1,
                              "upscaling_sped", "did you mean 'upscaling_speed'"),
    "unknown node key": ("    min_workers: 0 ", "    min_worker: 0 ", 1,
                         "available_node_types.ray.worker.gpu.min_worker", "unknown key"),
    "missing head_node_type": ("\nhead_node_type: ray.head.cpu\n", "\n", 1,
                               "head_node_type", "required key is missing"),
    "head_node_type not a node type": ("\nhead_node_type: ray.head.cpu\n", "\nhead_node_type: ray.head\n", 1,
                                       "head_node_type", "is not one of available_node_types"),
    "image of another Ray": ("  image: cxr-imbalance-bench:2.60.0-cu126", "  image: cxr-imbalance-bench:2.9.0-cu126", 1,
                             "docker.image", "runs Ray 2.9.0 (its tag) but the installed Ray is 2.60.0"),
    "image tag without a version": ("  image: cxr-imbalance-bench:2.60.0-cu126", "  image: myorg/cxr-bench:latest", 1,
                                    "docker.image", "its tag does not start with a Ray version"),
    "image never pulled": ("  image: cxr-imbalance-bench:2.60.0-cu126", "  image: myorg/cxr-bench:2.60.0-cu128", 1,
                           "docker.pull_before_run", "no initialization_commands pull or tag 'myorg/cxr-bench:2.60.0-cu128'"),
    "GPU node without an AMI": ("      InstanceType: g5.xlarge\n      # The same AMI as the head (see there); its NVIDIA "
                                "driver runs the image's CUDA 12.6 torch.\n      ImageId: resolve:ssm:/aws/service/"
                                "deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id\n",
                                "      InstanceType: g5.xlarge\n", 1,
                                "available_node_types.ray.worker.gpu.node_config.ImageId",
                                "missing on a GPU node type: Ray would pick its old default Deep Learning AMI"),
    "malformed AMI": ("      ImageId: resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/"
                      "latest/ami-id\n      BlockDeviceMappings", "      ImageId: ami-latest\n      BlockDeviceMappings", 1,
                      "available_node_types.ray.head.cpu.node_config.ImageId", "is neither an AMI id"),
    "more CPUs than the instance": ("resources: {CPU: 4, GPU: 1}", "resources: {CPU: 8, GPU: 1}", 1,
                                    "available_node_types.ray.worker.gpu.resources.CPU",
                                    "8 is more than the 4 vCPUs of g5.xlarge"),
    "GPUs the instance does not have": ("resources: {CPU: 4, GPU: 1}", "resources: {CPU: 4, GPU: 4}", 1,
                                        "available_node_types.ray.worker.gpu.resources.GPU",
                                        "4 does not match the 1 GPU(s) of g5.xlarge"),
    "head cannot pass the workers' role": ("      IamInstanceProfile:\n        Name: cxr-bench-head\n", "", 1,
                                           "available_node_types.ray.worker.gpu.node_config.IamInstanceProfile",
                                           "has no iam:PassRole"),
    "head with CPUs": ("resources: {CPU: 0}", "resources: {CPU: 8}", 1,
                       "available_node_types.ray.head.cpu.resources.CPU", "0 CPUs"),
    "head started with CPUs": ("--head --port=6379 --num-cpus=0", "--head --port=6379 --num-cpus=8", 1,
                               "head_start_ray_commands[1]", "--num-cpus=0"),
    "no GPU worker": ("resources: {CPU: 4, GPU: 1}", "resources: {CPU: 4}", 1,
                      "available_node_types", "no worker type has GPUs"),
    "unknown provider": ("  type: aws\n", "  type: aws2\n", 1, "provider.type", "did you mean 'aws'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_copies_fail_naming_the_key(tmp_path, case):
    old, new, count, key, phrase = BROKEN[case]
    path = broken(tmp_path, old, new, count=count)
    problems = validate_cluster_file(path)
    assert problems, f"{case}: accepted"
    hit = [p for p in problems if re.search(rf"^{re.escape(str(path))}(:\d+)?: {re.escape(key)}: ", p)]
    assert hit, f"{case}: no error names {key!r}: {problems}"
    assert any(phrase in p for p in hit), f"{case}: {hit}"


def test_error_carries_the_line(tmp_path):
    path = broken(tmp_path, "    min_workers: 0 ", "    min_workers: -1 ")
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "min_workers: -1" in t)
    assert validate_cluster_file(path) == [
        f"{path}:{line}: available_node_types.ray.worker.gpu.min_workers: -1 is less than the minimum of 0"]


def test_yaml_syntax_error_is_one_line_with_the_line(tmp_path):
    path = broken(tmp_path, "  region: us-west-2\n", "  region: [us-west-2\n")
    problems = validate_cluster_file(path)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert re.match(rf"{re.escape(str(path))}:\d+: YAML syntax error: ", problems[0]), problems


def test_missing_file_and_non_mapping(tmp_path):
    assert validate_cluster_file(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert "must be a mapping" in validate_cluster_file(tmp_path / "list.yaml")[0]


def test_cli_rejects_a_broken_copy(tmp_path, capsys):
    path = broken(tmp_path, "    max_workers: 4\n", "    max_workers: four\n")
    assert main(["cluster", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:") and "available_node_types.ray.worker.gpu.max_workers" in err
