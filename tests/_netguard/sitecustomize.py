"""Installs the tests' network guard in every Python process started with this folder on ``PYTHONPATH``
(tests/conftest.py puts it there; see loopback_guard.py)."""

import loopback_guard

loopback_guard.install()
