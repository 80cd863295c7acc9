"""An epoch's checkpoint is staged in a temp folder named after its host and worker pid; a folder whose worker was
killed before it could remove it (SIGKILL: a lost node, Ray stopping actors on Ctrl-C) is removed by the next
staging on that host, and nothing of a live worker or another host is touched."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile

from bench.runfolder import CKPT_PREFIX, _alive, checkpoint_staging, remove_orphaned_checkpoints


def dead_pid() -> int:
    """The pid of a process that has exited (and whose pid no other process holds yet)."""
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        if not _alive(proc.pid):
            return proc.pid
    raise AssertionError("every finished child's pid was taken again at once")


def staged(root, host: str, pid: int, tail: str = "x1y2z3") -> os.PathLike:
    folder = root / f"{CKPT_PREFIX}{host}-{pid}-{tail}"
    folder.mkdir()
    (folder / "state.pt").write_bytes(b"weights")
    return folder


def test_only_folders_of_dead_workers_of_this_host_are_removed(tmp_path):
    host = socket.gethostname()
    orphan = staged(tmp_path, host, dead_pid())
    live = staged(tmp_path, host, os.getpid())
    elsewhere = staged(tmp_path, f"not-{host}", dead_pid())  # a temp folder shared with another machine
    unnamed = tmp_path / f"{CKPT_PREFIX}abc"  # an older release's name: no host or pid to check
    unnamed.mkdir()
    other = tmp_path / "bench-cache"
    other.mkdir()
    assert remove_orphaned_checkpoints(tmp_path) == [orphan]
    assert not orphan.exists()
    assert live.is_dir() and elsewhere.is_dir() and unnamed.is_dir() and other.is_dir()
    assert remove_orphaned_checkpoints(tmp_path) == []


def test_a_folder_that_cannot_be_removed_is_named_in_a_warning_and_not_counted(tmp_path, monkeypatch, caplog):
    import shutil

    orphan = staged(tmp_path, socket.gethostname(), dead_pid())
    monkeypatch.setattr(shutil, "rmtree", lambda path, ignore_errors=False: None)  # as if permission was refused
    with caplog.at_level(logging.INFO, logger="bench.runfolder"):
        assert remove_orphaned_checkpoints(tmp_path) == []
    assert orphan.is_dir()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(orphan) in warnings[0] and "could not remove 1 checkpoint folder" in warnings[0]
    assert not [r for r in caplog.records if r.levelno == logging.INFO]  # nothing claimed as removed


def test_a_trials_first_staging_removes_orphans_and_every_staging_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    orphan = staged(tmp_path, socket.gethostname(), dead_pid())
    with checkpoint_staging() as folder:  # a later epoch's staging: no sweep (it lists the temp folder once a trial)
        assert orphan.is_dir()
    assert not folder.exists()
    with checkpoint_staging(sweep=True) as folder:
        assert not orphan.exists()
        assert folder.parent == tmp_path and folder.is_dir()
        assert folder.name.startswith(f"{CKPT_PREFIX}{socket.gethostname()}-{os.getpid()}-")
        (folder / "state.pt").write_bytes(b"weights")
        assert remove_orphaned_checkpoints(tmp_path) == []  # its own folder: the pid is alive
    assert not folder.exists()
    assert list(tmp_path.iterdir()) == []
