"""Shared test fixtures: one Ray instance per session, a small synthetic dataset, the real NIH subset.

Markers that need something outside the repository (``realdata``: ../shared/data/nih-cxr14, ``cluster``:
extra Ray processes, ``browser``: Chromium, ``reference``: a reference package that ``make test`` installs) skip
with their reason on a user's machine and *fail* with it under CI (environment variable ``CI`` set to anything but ``""``/``0``/``false``): one hook,
:func:`pytest_runtest_makereport`, turns every skip of a test so marked into a failure there, whatever
raised it (``pytest.skip``, ``importorskip``, a ``skipif`` mark). A test that uses the ``nih_root`` fixture
is marked ``realdata`` automatically. ``BENCH_TEST_NIH_ROOT`` points the real subset elsewhere (the test of
this mechanism points it at an empty folder).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NIH = Path(os.environ.get("BENCH_TEST_NIH_ROOT") or REPO.parent / "shared" / "data" / "nih-cxr14")
REQUIRED_UNDER_CI = ("realdata", "cluster", "browser", "reference")


def under_ci() -> bool:
    """True where the environment variable ``CI`` is set to something other than ``""``, ``0`` or ``false``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

# The temporary files of every process the tests start (Ray's session folders, the temp folders that W&B and
# multiprocessing leave behind in killed workers, ...) go into one folder of this session's, removed when it ends: a
# run leaves nothing in the temp folder but pytest's own (PYTEST_DEBUG_TEMPROOT keeps those where pytest puts them,
# and as long: its last three runs'). A short name: Ray's socket paths under it are limited to 107 bytes.
_OWN_TMP = not os.environ.get("BENCH_TEST_TMPDIR")  # a pytest started by a test shares its parent's folder
if _OWN_TMP:
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    os.environ["BENCH_TEST_TMPDIR"] = tempfile.mkdtemp(prefix="bt")
    os.environ["TMPDIR"] = os.environ["BENCH_TEST_TMPDIR"]
    tempfile.tempdir = None  # this process's tempfile reads TMPDIR again
SESSION_TMP = Path(os.environ["BENCH_TEST_TMPDIR"])

# Nothing leaves the machine; Ray talks to 127.0.0.1 only. The network guard (tests/_netguard) refuses and logs
# every connection or name lookup beyond loopback in this process and, through PYTHONPATH's sitecustomize, in every
# Python process started from here (subprocesses, `ray start` nodes, Ray workers); _no_network_beyond_loopback
# fails the test during which the log grew.
NETGUARD = REPO / "tests" / "_netguard"
_OWN_LOG = not os.environ.get("BENCH_TEST_NETGUARD_LOG")  # a pytest started by a test shares its parent's log
if _OWN_LOG:
    _fd, _log = tempfile.mkstemp(prefix="bench-netguard-", suffix=".log")
    os.close(_fd)
    os.environ["BENCH_TEST_NETGUARD_LOG"] = _log
os.environ["PYTHONPATH"] = os.pathsep.join([str(NETGUARD)] + [p for p in os.environ.get("PYTHONPATH", "").split(
    os.pathsep) if p and p != str(NETGUARD)])
sys.path.insert(0, str(NETGUARD))
import loopback_guard  # noqa: E402

loopback_guard.install()
NETGUARD_LOG = Path(os.environ["BENCH_TEST_NETGUARD_LOG"])

# Two pytest-xdist workers share two cores: a BLAS pool of two threads in each spins in its barriers while the other
# process holds a core (the coverage simulations of test_stats_calibration.py took 82 CPU-seconds with the default
# pool, 56 with one thread, in less wall time). Set before numpy loads here and inherited by every process started
# from here (subprocesses, Ray nodes and workers); torch's own threads are set per test and per trial.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# With usage stats disabled, the dashboard of a `ray start` cluster still posts a "disabled" report to
# usage-stats.ray.io (ray/dashboard/modules/usage_stats/usage_stats_head.py); point it at a closed loopback port.
os.environ.setdefault("RAY_USAGE_STATS_REPORT_URL", "http://127.0.0.1:9/")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ray resolves 127.0.0.1 to the machine's address unless told that this is a single-machine setup: with
# this, local instances and `ray start --node-ip-address 127.0.0.1` nodes listen on loopback only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# As bench.tuner.init_ray's private instance: no idle workers prestarted for the first driver (the session's
# instance would keep one polling for the whole session; Tune's trial actors start workers of their own).
os.environ.setdefault("RAY_prestart_worker_first_driver", "0")


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy machine OpenMP barriers make them slow: one torch
    thread for the test, the previous count restored after it (``pytestmark = usefixtures(...)`` in a module)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_torch_thread_per_xdist_worker():
    """Under pytest-xdist the two workers share the two cores: torch code in a worker's own process runs on one
    thread (two would spin in OpenMP's barriers while the other worker holds a core, several times slower). A test
    or trial that sets its own count (``resources.cpu`` in ``run_trial``) still does; Ray's trial workers are
    separate processes with their own."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def pytest_unconfigure(config):
    if _OWN_LOG:
        NETGUARD_LOG.unlink(missing_ok=True)
    if _OWN_TMP:
        shutil.rmtree(SESSION_TMP, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "nih_root" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("realdata"):
            item.add_marker(pytest.mark.realdata)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: see pytest_xdist_make_scheduler
        unlisted = sorted({_module(item.nodeid) for item in items if item.get_closest_marker("cluster")}
                          - set(CLUSTER_MODULES))
        if unlisted:
            raise pytest.UsageError(f"{', '.join(unlisted)} holds cluster tests: add it to CLUSTER_MODULES in "
                                    "tests/conftest.py, so that one worker runs every cluster test")
        # The order work is handed out in: the cluster tests, then the longest modules, longest first, then the
        # other modules with slow tests, then the rest (many short modules last, so that the two workers finish
        # together).
        missing = [m for m in LONGEST_MODULES if not (REPO / m).is_file()]
        if missing:
            raise pytest.UsageError(f"tests/conftest.py: LONGEST_MODULES names {', '.join(missing)}, which does "
                                    "not exist: list the modules that do")
        slow = {item.path for item in items if item.get_closest_marker("slow")}
        rank = {m: i for i, m in enumerate(LONGEST_MODULES)}
        items.sort(key=lambda item: (_module(item.nodeid) not in CLUSTER_MODULES,
                                     rank.get(_module(item.nodeid), len(rank)), item.path not in slow))


# Under pytest-xdist (pyproject's addopts: ``-n 2 --dist loadgroup``) one worker runs every ``cluster`` test, one
# after another: each starts Ray nodes of its own on ports found free a moment before `ray start` binds them, which
# a second cluster starting at once could take. Every other test module goes whole to one worker, so a
# module-scoped fixture (one `bench run` read by several tests) is built once. The group is made of whole modules,
# named here: pytest-xdist's own grouping (an ``xdist_group`` mark, which it appends to the test's node id) does
# nothing under pytest 9.2, whose node ids it can no longer change. Collection fails if a module not listed here
# holds a ``cluster`` test.
CLUSTER_GROUP = "cluster"
CLUSTER_MODULES = ("tests/test_distributed.py", "tests/test_faults.py", "tests/test_slurm.py")
# While one worker runs the cluster group (about 470 s), the other takes these first, longest first (the seconds
# each took in one `make test` here, 2026-12-01), so that no long module is handed out last: test_stats_calibration
# (not `slow`: no Ray) was, and the suite ended 70 s after the other worker had run out of work.
LONGEST_MODULES = (
    "tests/test_stats_calibration.py",     # 97
    "tests/test_browser.py",               # 67
    "tests/test_tune.py",                  # 63
    "tests/test_tracking.py",              # 58
    "tests/test_protocol.py",              # 40
    "tests/test_reproducibility.py",       # 33
    "tests/test_realdata_run.py",          # 28
    "tests/test_stages.py",                # 28
    "tests/test_localisation_trained.py",  # 26
    "tests/test_bad_inputs.py",            # 25
    "tests/test_tune_restore.py",          # 24
    "tests/test_run.py",                   # 23
    "tests/test_html.py",                  # 22
    "tests/test_markers_under_ci.py",      # 21
    "tests/test_driver_scale.py",          # 21
    "tests/test_overrides.py",             # 16
    "tests/test_backbones.py",             # 15
    "tests/test_perf.py",                  # 15
    "tests/test_cli.py",                   # 14
)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    # Handed out in the workers' collection order (pytest_collection_modifyitems): the cluster group first.
    config.option.loadscopereorder = False

    class ModulesAndOneClusterGroup(LoadGroupScheduling):
        """Work units: the ``cluster`` group, then one per test module."""

        def _split_scope(self, nodeid: str) -> str:
            return CLUSTER_GROUP if _module(nodeid) in CLUSTER_MODULES else _module(nodeid)

    return ModulesAndOneClusterGroup(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Stops the cluster test_distributed.py and test_faults.py share (tests/_cluster.py: SharedCluster) once the
    next test is in neither, after this test's fixtures are torn down."""
    yield
    from _cluster import SHARED

    if SHARED.current is not None and (nextitem is None or _module(nextitem.nodeid) not in SHARED.MODULES):
        SHARED.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a test marked as in ``REQUIRED_UNDER_CI`` that skips fails instead, with the skip's reason."""
    outcome = yield
    rep = outcome.get_result()
    if not (rep.skipped and under_ci()) or hasattr(rep, "wasxfail"):
        return
    needs = [m for m in REQUIRED_UNDER_CI if item.get_closest_marker(m)]
    if not needs:
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason.removeprefix("Skipped: ")
    rep.outcome = "failed"
    rep.longrepr = f"{reason} (a {'/'.join(needs)} test must run under CI, where CI={os.environ.get('CI')!r})"


_NETWORK_FAILURES = []  # attempts already failed a test


def _attempts(start: int = 0) -> list[str]:
    if not NETGUARD_LOG.exists():
        return []
    with NETGUARD_LOG.open() as f:
        f.seek(start)
        return loopback_guard.unknown_attempts(f.read().splitlines())


@pytest.fixture(autouse=True)
def _no_network_beyond_loopback():
    """Fails the test if any process of the suite attempted a connection beyond loopback while it ran."""
    start = NETGUARD_LOG.stat().st_size if NETGUARD_LOG.exists() else 0
    yield
    attempts = _attempts(start)
    if attempts:
        _NETWORK_FAILURES.extend(attempts)
        pytest.fail(f"network access beyond loopback attempted (pid, call, target): {attempts[:5]}", pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """Attempts outside any test (a session fixture's Ray start, say) fail the session instead (under pytest-xdist
    every attempt of the run: the workers write to the log this process made)."""
    if not _OWN_LOG:
        return
    rest = _attempts()[len(_NETWORK_FAILURES):]
    if rest:
        # Under pytest-xdist the workers share this log and fail their own tests; here every attempt shows.
        where = "during the session" if session.config.pluginmanager.has_plugin("dsession") else "outside any test"
        session.config.get_terminal_writer().line(
            f"network access beyond loopback attempted {where} (pid, call, target): {rest[:5]}", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Image caches go to a session folder, never to the user's ~/.cache."""
    d = tmp_path_factory.mktemp("bench-cache")
    old = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session (no dashboard) with one CPU: a grid's trials (``cpu: 1``) run
    one after another in one reused trial worker, which imports torch and timm once. The tests' trials are tiny, so
    a second worker at once saves no time and costs that import again (about 9 CPU-seconds a run, measured with
    `bench run --address` against a standing instance: 26 CPU-seconds for a 4-trial grid two at a time, 17 one at a
    time, in the same 16 s). Each pytest-xdist worker has its own instance, so the two keep both cores busy. A test
    about concurrency asks for fractional CPUs (``cpu: 0.5``: two trials at once)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING", _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic dataset in the NIH layout (200 images, 64 px), generated once per session."""
    from bench.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("synth") / "data"
    write_synthetic(root, n=200, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def nih_root() -> Path:
    if not (NIH / "Data_Entry_2017_v2020.csv").is_file():
        pytest.skip(f"real NIH subset not found at {NIH} (it ships beside the repository; "
                    "BENCH_TEST_NIH_ROOT points elsewhere)")
    return NIH


def write_grid(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
