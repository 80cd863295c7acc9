"""conftest's rule for the markers that need something outside the repository: under CI (``CI`` set) a
``realdata``, ``browser`` or ``reference`` test that cannot run fails with its reason; elsewhere it skips with it.

Each case runs pytest in a subprocess with the resource pointed at an empty folder (``BENCH_TEST_NIH_ROOT``,
``CHROMIUM``) or shadowed by an empty package (libauc), so ../shared, /usr/bin/chromium and the
installed libauc are never touched.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_in_subprocess(args: list[str], *, ci: bool, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")
            and not k.startswith("PYTEST_XDIST_")}  # this test may run in a pytest-xdist worker
    if ci:
        base["CI"] = "true"
    # -n 0: in this process, not pyproject's pytest-xdist workers (the tests it runs only skip or fail at once)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfsE", "-n", "0", *args],
                          cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=300)


def counts(out: str) -> dict[str, int]:
    last = out.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", last)}


def files_with_marked_tests() -> list[str]:
    """The test files that use the real data or a browser (collecting only these keeps the subprocesses short)."""
    here = Path(__file__).name
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                  if p.name != here and re.search(r"realdata|nih_root|mark\.browser", p.read_text()))


@pytest.fixture(scope="module")
def missing(tmp_path_factory) -> dict[str, str]:
    """An empty folder for the NIH subset and for KubeRay's CRDs, a path with no Chromium, and an empty libauc
    package ahead of the installed one."""
    tmp = tmp_path_factory.mktemp("missing")
    (tmp / "shadow" / "libauc").mkdir(parents=True)
    (tmp / "shadow" / "libauc" / "__init__.py").write_text("")  # an empty package: no libauc.losses to import
    return {"BENCH_TEST_NIH_ROOT": str(tmp / "nih"), "BENCH_TEST_KUBERAY_SCHEMAS": str(tmp / "kuberay"),
            "CHROMIUM": str(tmp / "chromium"),
            "PYTHONPATH": os.pathsep.join([str(tmp / "shadow"), os.environ.get("PYTHONPATH", "")])}


def test_marked_tests_fail_under_ci_when_what_they_need_is_missing(missing):
    files = files_with_marked_tests()
    assert "tests/test_browser.py" in files and "tests/test_realdata_run.py" in files
    r = pytest_in_subprocess(["-m", "realdata or browser or reference", *files, "tests/test_stages.py"], ci=True,
                             **missing)
    n = counts(r.stdout)
    assert r.returncode == 1, r.stdout[-3000:]
    assert n.get("skipped", 0) == 0 and n.get("passed", 0) == 0, r.stdout[-3000:]
    summary = [line for line in r.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    realdata = [line for line in summary if "a realdata test must run under CI" in line]
    browser = [line for line in summary if "a browser test must run under CI" in line]
    reference = [line for line in summary if "a reference test must run under CI" in line]
    assert len(realdata) >= 10 and len(browser) >= 6, r.stdout[-3000:]  # test_realdata_run's included
    assert any("test_realdata_run.py" in line for line in realdata)
    assert len(reference) == 1 and "test_aucm_matches_libauc" in reference[0], r.stdout[-3000:]
    assert n.get("failed", 0) + n.get("errors", n.get("error", 0)) == len(summary) == \
        len(realdata) + len(browser) + len(reference)
    assert "LibAUC is missing: `make test` installs it" in r.stdout
    assert f"real NIH subset not found at {missing['BENCH_TEST_NIH_ROOT']}" in r.stdout
    assert f"Chromium not found at {missing['CHROMIUM']}" in r.stdout
    assert f"KubeRay CRD schemas not found at {missing['BENCH_TEST_KUBERAY_SCHEMAS']}" in r.stdout
    assert any("test_k8s_manifests.py" in line for line in realdata)


def test_marked_tests_skip_with_their_reason_elsewhere(missing):
    # Two files suffice here (the hook is the same for all; the CI test above runs every marked file).
    r = pytest_in_subprocess(["-m", "realdata or browser or reference", "tests/test_nih.py", "tests/test_browser.py",
                              "tests/test_stages.py"], ci=False, **missing)
    n = counts(r.stdout)
    assert r.returncode == 0, r.stdout[-3000:]
    assert n.get("skipped", 0) >= 15 and set(n) <= {"skipped", "deselected"}, r.stdout[-3000:]
    assert "LibAUC is missing: `make test` installs it" in r.stdout
    # The reasons, in the -rs summary.
    assert f"real NIH subset not found at {missing['BENCH_TEST_NIH_ROOT']}" in r.stdout
    assert f"Chromium not found at {missing['CHROMIUM']}" in r.stdout

