"""docs/distributed.md stays in step with the files it walks through: its links resolve, its IAM policy is the
one in aws/iam/, the commands name the image `make image` builds, and it says what ran on real machines."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "distributed.md"


def test_every_relative_link_resolves():
    text = DOC.read_text()
    links = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert links, "no links found"
    missing = [t for t in links if not (DOC.parent / t).exists()]
    assert missing == []
    assert "docs/distributed.md" in (REPO / "cluster.yaml").read_text()
    assert "(docs/distributed.md)" in (REPO / "README.md").read_text()


def test_the_policy_shown_is_the_head_policy_with_pass_role():
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)]
    head = json.loads((REPO / "aws" / "iam" / "head-policy.json").read_text())
    assert blocks == [head]
    passrole = [s for s in head["Statement"] if s["Action"] == "iam:PassRole"]
    assert passrole and passrole[0]["Resource"].endswith(":role/cxr-bench-worker")
    cluster = (REPO / "cluster.yaml").read_text()
    assert "Name: cxr-bench-head" in cluster and "Name: cxr-bench-worker" in cluster


def test_the_commands_name_the_image_make_builds():
    image = subprocess.run(["make", "-s", "image-name"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip()
    named = set(re.findall(r"cxr-imbalance-bench:\w[\w.-]*\w", DOC.read_text()))
    assert named == {image}


def test_it_says_what_ran_on_real_machines():
    text = DOC.read_text()
    assert "What was and was not run on real cloud machines: nothing was." in text
    for test in ("tests/test_slurm.py", "tests/test_k8s_manifests.py", "tests/test_cluster_image.py",
                 "tests/test_cluster_config.py", "tests/test_distributed.py"):
        assert test in text and (REPO / test).is_file(), test
