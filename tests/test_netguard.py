"""The tests' network guard (tests/_netguard/loopback_guard.py): it refuses every address beyond loopback
before the socket call underneath runs, and it is installed in the pytest process, in its subprocesses and in
every Ray worker.

The refusal test replaces the real socket functions by recorders first: even with a broken guard, no test
here sends anything beyond 127.0.0.1 (a recorder only notes the call).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import loopback_guard
import pytest


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """The socket functions replaced by recorders, with a fresh guard installed on top of them."""
    calls = []

    def recorder(name):
        def call(*args):
            calls.append((name, args[-1] if name in ("connect", "connect_ex", "sendto") else args[0]))
            return 0 if name == "connect_ex" else None
        return call

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, recorder(name))
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, recorder(name))
    monkeypatch.delattr(socket, loopback_guard.MARK)
    log = tmp_path / "attempts.log"
    assert loopback_guard.install(log_path=str(log))
    return calls, log


@pytest.mark.parametrize("family, address", [(socket.AF_INET, ("192.0.2.1", 9)), (socket.AF_INET6, ("2001:db8::1", 9)),
                                             (socket.AF_INET, ("example.org", 80))])
def test_refuses_beyond_loopback_without_calling_the_real_functions(recorded, family, address):
    calls, log = recorded
    with socket.socket(family, socket.SOCK_STREAM) as s:
        with pytest.raises(OSError, match="refused") as info:
            s.connect(address)
        assert info.value.errno == errno.ENETUNREACH
        assert s.connect_ex(address) == errno.ENETUNREACH
    with socket.socket(family, socket.SOCK_DGRAM) as u, pytest.raises(OSError, match="refused"):
        u.sendto(b"x", address)
    with pytest.raises(socket.gaierror, match="refused"):
        socket.getaddrinfo(address[0], 80)
    with pytest.raises(OSError, match="refused"):
        socket.gethostbyname(address[0])
    assert calls == []  # the real functions were never reached
    lines = log.read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["connect", "connect_ex", "sendto", "getaddrinfo", "gethostbyname"]
    assert all(line.startswith(f"{os.getpid()} ") and repr(address[0]) in line for line in lines)


def test_lets_loopback_through_to_the_real_functions(recorded):
    calls, log = recorded
    with socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    with socket.socket(socket.AF_INET6) as s:
        s.connect(("::1", 9))
    socket.getaddrinfo("localhost", 80)
    assert calls == [("connect", ("127.0.0.1", 9)), ("connect", ("::1", 9)), ("getaddrinfo", "localhost")]
    assert not log.exists()


def test_installed_here_and_in_a_subprocess():
    here = loopback_guard.status()
    assert here["installed"] and here["log"] == os.environ[loopback_guard.LOG_ENV]
    code = "import json, loopback_guard; print(json.dumps(loopback_guard.status()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    child = json.loads(r.stdout)
    assert child["installed"] and child["sitecustomize"] and child["pid"] != os.getpid()  # via sitecustomize
    assert child["log"] == here["log"]


def test_installed_in_ray_workers(ray_session):
    ray = ray_session
    status = ray.remote(num_cpus=1)(loopback_guard.status)
    reports = ray.get([status.remote() for _ in range(2)])
    assert all(r["installed"] and r["sitecustomize"] for r in reports), reports
    assert all(r["pid"] != os.getpid() and r["log"] == os.environ[loopback_guard.LOG_ENV] for r in reports)
