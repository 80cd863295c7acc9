"""tests/conftest.py gives every process a test session starts one temp folder, removed when the session ends: a
`make test` leaves nothing in the machine's temp folder but pytest's own ``pytest-of-USER`` (Ray's session folders,
the W&B and multiprocessing folders of killed workers went there: dozens of folders a run)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

INNER = '''
import json, os, subprocess, sys, tempfile

def test_processes_write_into_the_session_folder():
    here = tempfile.mkdtemp(prefix="left-")
    child = subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.mkdtemp(prefix='left-'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    print("SEEN " + json.dumps({"here": here, "child": child, "tmpdir": os.environ["TMPDIR"]}))
'''


def test_a_session_leaves_nothing_in_the_temp_folder_but_pytests_own(tmp_path):
    machine_tmp, tests = tmp_path / "tmp", tmp_path / "inner"
    machine_tmp.mkdir()
    tests.mkdir()
    (tests / "test_inner.py").write_text(INNER)
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_TEST_TMPDIR", "BENCH_TEST_NETGUARD_LOG",
                                                            "PYTEST_DEBUG_TEMPROOT", "PYTEST_ADDOPTS", "CI")
           and not k.startswith("PYTEST_XDIST_")}
    env.update(TMPDIR=str(machine_tmp), PYTHONPATH=os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")]))
    # tests/conftest.py as a plugin of a pytest whose one test sits outside the repository
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-n", "0", "-s",
                        "-q", "--rootdir", str(tests), str(tests / "test_inner.py")],
                       cwd=tests, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    seen = json.loads(next(line[5:] for line in r.stdout.splitlines() if line.startswith("SEEN ")))
    session = Path(seen["tmpdir"])
    assert session.parent == machine_tmp and session.name.startswith("bt")  # the session's own folder, short
    assert Path(seen["here"]).parent == session and Path(seen["child"]).parent == session
    assert not session.exists()  # removed at the end, with what the processes left there
    assert sorted(p.name for p in machine_tmp.iterdir()) in ([], [f"pytest-of-{getpass.getuser()}"])


def test_this_session_has_its_own_temp_folder():
    assert Path(tempfile.gettempdir()).name.startswith("bt") and os.environ["TMPDIR"] == tempfile.gettempdir()
