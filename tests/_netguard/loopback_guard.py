"""The tests' network guard: every Python process the test suite starts may reach this machine only
(loopback, and the addresses of its own interfaces, which Ray hands its agents).

:func:`install` wraps ``socket.socket.connect`` / ``connect_ex`` / ``sendto`` and the name lookups
(``socket.getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``) so that an address or name beyond
loopback is refused *before* the wrapped function is called: the attempt raises ``OSError`` (``ENETUNREACH``)
and is appended, one line per attempt, to the file named by ``$BENCH_TEST_NETGUARD_LOG``. ``tests/conftest.py``
installs it in the pytest process and puts this folder first on ``PYTHONPATH``, where ``sitecustomize.py``
installs it at the start of every Python process the tests start: CLI subprocesses, ``ray start`` nodes and
every Ray worker (the processes where timm would download weights). conftest fails a test during which the
log file grew, so an attempt caught and ignored by the code under test still fails the test (except the
callers listed in ``KNOWN``: refused all the same, logged as known).

Covered: Python-level sockets (urllib, requests, huggingface_hub, torch.hub, boto3, Ray's Python code). Not
covered: connections made inside C/C++ code (Ray's gRPC core, raylet, GCS; Chromium), which the tests bind to
127.0.0.1 by configuration instead.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys

LOG_ENV = "BENCH_TEST_NETGUARD_LOG"
MARK = "_bench_loopback_guard"
# Refused like every other attempt, but logged as known rather than failing a test: Ray's dashboard asks the
# cloud metadata services (169.254.169.254, metadata.google.internal) which cloud it runs on at every start,
# whatever RAY_USAGE_STATS_ENABLED says (ray/dashboard/modules/usage_stats/usage_stats_head.py, run()).
KNOWN = {("get_cloud_from_metadata_requests", "usage_lib.py"): "ray dashboard's cloud-metadata probe"}


def _known_caller() -> str | None:
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        for (function, filename), what in KNOWN.items():
            if code.co_name == function and code.co_filename.endswith(filename):
                return what
        frame = frame.f_back
    return None


def local_addresses() -> frozenset[str]:
    """The addresses of this machine's own interfaces (Linux: /proc), e.g. the one Ray's agents are handed.

    A packet to one of them never leaves the machine (the kernel routes it through ``lo``)."""
    found = set()
    try:
        lines = open("/proc/net/fib_trie").read().splitlines()
    except OSError:
        lines = []
    for prev, line in zip(lines, lines[1:]):
        if line.strip() == "/32 host LOCAL":
            found.add(prev.split()[-1])
    try:
        for line in open("/proc/net/if_inet6").read().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.ip_address(":".join(raw[i:i + 4] for i in range(0, 32, 4)))))
    except (OSError, ValueError, IndexError):
        pass
    return frozenset(found)


_LOCAL = local_addresses()


def allowed(host) -> bool:
    """True for a loopback or unspecified address, an address of this machine's own interfaces,
    ``localhost`` and this machine's own name."""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or host in ("", "localhost", socket.gethostname()):
        return True
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified or str(ip) in _LOCAL  # 0.0.0.0 / :: (binds) stay on the machine


def _refuse(kind: str, target, log_path: str | None):
    known = _known_caller()
    line = f"{os.getpid()} {kind} {target!r}" + (f" [known: {known}]" if known else "") + "\n"
    if log_path:
        with open(log_path, "a") as f:
            f.write(line)
    raise OSError(errno.ENETUNREACH, f"test network guard: {kind} of {target!r} refused (loopback only)")


def install(*, log_path: str | None = None) -> bool:
    """Wrap the socket functions currently in place (once per process); True when it installed the guard now."""
    if getattr(socket, MARK, None):
        return False
    log_path = log_path if log_path is not None else os.environ.get(LOG_ENV)
    inner_connect, inner_connect_ex, inner_sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    inner_gai, inner_ghbn, inner_ghbn_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex

    def inet(sock) -> bool:
        return sock.family in (socket.AF_INET, socket.AF_INET6)

    def connect(self, address):
        if inet(self) and not allowed(address[0]):
            _refuse("connect", address, log_path)
        return inner_connect(self, address)

    def connect_ex(self, address):
        if inet(self) and not allowed(address[0]):
            try:
                _refuse("connect_ex", address, log_path)
            except OSError as exc:
                return exc.errno
        return inner_connect_ex(self, address)

    def sendto(self, data, *args):
        address = args[-1] if args else None
        if inet(self) and isinstance(address, tuple) and not allowed(address[0]):
            _refuse("sendto", address, log_path)
        return inner_sendto(self, data, *args)

    def getaddrinfo(host, *args, **kwargs):
        if not allowed(host):
            try:
                _refuse("getaddrinfo", host, log_path)
            except OSError as exc:
                raise socket.gaierror(socket.EAI_NONAME, str(exc)) from None
        return inner_gai(host, *args, **kwargs)

    def gethostbyname(host):
        if not allowed(host):
            _refuse("gethostbyname", host, log_path)
        return inner_ghbn(host)

    def gethostbyname_ex(host):
        if not allowed(host):
            _refuse("gethostbyname_ex", host, log_path)
        return inner_ghbn_ex(host)

    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
    socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex = getaddrinfo, gethostbyname, gethostbyname_ex
    setattr(socket, MARK, {"pid": os.getpid(), "log": log_path, "connect": connect})
    return True


def status() -> dict:
    """What this process has: its pid, whether the guard is installed and is the connect in use, and its log."""
    mark = getattr(socket, MARK, None) or {}
    return {"pid": os.getpid(), "installed": bool(mark) and socket.socket.connect is mark.get("connect"),
            "log": mark.get("log"), "sitecustomize": "sitecustomize" in sys.modules}


def unknown_attempts(lines: list[str]) -> list[str]:
    """The log lines that are not of a ``KNOWN`` caller."""
    return [line for line in lines if "[known: " not in line]
