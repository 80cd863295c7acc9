"""The run folder, write side: what the runner and the trials put into it, built on :mod:`reports.runfolder`.

``reports.runfolder`` owns the layout (every file name), the atomic writer and the typed trial results,
and only reads; this module adds the writing the driver and the trials do: the run's JSON files, a
trial's outputs inside its checkpoint (``outputs/``, beside the training state ``state.pt``), and the
copy of a finished trial's outputs into ``RUN_DIR/trials/<id>/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError
from reports.runfolder import (  # noqa: F401  (the layout, re-exported for the bench side)
    BOOTSTRAP_NPZ, CONFIG_JSON, DATASET_JSON, ERRORS_JSON, GALLERY, GALLERY_JSON, GRID_JSON, GRID_YAML,
    LOCALISATION_CSV, METRICS_JSON, PREDICTIONS_NPZ, RUN_JSON, SPLIT_JSON, TRIALS, TUNE, RunFolder, TrialFolder,
    TrialResult, read_json, write_atomic)

log = logging.getLogger(__name__)

# ---- a trial's checkpoint folder ----
CKPT_PREFIX = "bench-ckpt-"  # + host + "-" + pid + "-" + tempfile's random part (no "-" in it)
_CKPT_NAME = re.compile(rf"{re.escape(CKPT_PREFIX)}(?P<host>.+)-(?P<pid>\d+)-[^-]+")


@contextlib.contextmanager
def checkpoint_staging(*, sweep: bool = False) -> Iterator[Path]:
    """The temporary folder an epoch's checkpoint is written to, for Ray Tune to copy to storage; removed after.

    A trial worker killed with SIGKILL (a lost node, Ray stopping its actors on Ctrl-C) cannot remove its own, a
    model's weights and optimizer state left in the node's temp folder; the folder's name carries the host and the
    worker's pid, and with ``sweep`` (a trial's first staging: once a trial, not every epoch) the staging first
    removes this host's folders whose process is gone (:func:`remove_orphaned_checkpoints`).
    """
    if sweep:
        remove_orphaned_checkpoints()
    with worker_folder() as folder:
        yield folder


@contextlib.contextmanager
def worker_folder() -> Iterator[Path]:
    """A temporary folder of this trial worker, named for its host and pid, removed after (or, if the worker is
    killed first, by a later trial's sweep: :func:`remove_orphaned_checkpoints`)."""
    with tempfile.TemporaryDirectory(prefix=f"{CKPT_PREFIX}{socket.gethostname()}-{os.getpid()}-") as folder:
        yield Path(folder)


def remove_orphaned_checkpoints(root: str | Path | None = None) -> list[Path]:
    """Remove the staging folders in ``root`` (the temp folder) left by dead workers of this host; return those
    removed. A folder of another host (a temp folder shared between machines or containers) or of a live pid stays;
    one that cannot be removed (permissions) stays too, with a warning naming it."""
    root, host, removed, stuck = Path(root or tempfile.gettempdir()), socket.gethostname(), [], []
    for folder in root.glob(f"{CKPT_PREFIX}*"):
        name = _CKPT_NAME.fullmatch(folder.name)
        if name and name["host"] == host and not _alive(int(name["pid"])) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            (stuck if folder.exists() else removed).append(folder)
    if removed:
        log.info("removed %d checkpoint folder(s) left in %s by killed trial workers", len(removed), root)
    if stuck:
        log.warning("could not remove %d checkpoint folder(s) left by killed trial workers (delete them by hand): %s",
                    len(stuck), ", ".join(map(str, stuck)))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True

STATE_FILE = "state.pt"    # model, optimizer, epoch, history (every epoch but a last one without keep_weights)
OUTPUTS = "outputs"        # the finished trial's outputs (a TrialFolder), in its last checkpoint


def checkpoint_outputs(checkpoint_dir: str | Path) -> TrialFolder:
    """The outputs folder inside a trial's checkpoint folder."""
    return TrialFolder(Path(checkpoint_dir) / OUTPUTS)


def write_json(path: Path, obj: Any, *, default: Callable[[Any], Any] = str) -> None:
    """Write ``obj`` as JSON to ``path``: a temporary name renamed into place, so a failed write (a full
    disk) never leaves a half-written file under the final name, nor the temporary one."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, default=default)))


def check_run_dir(run_dir: Path, digest: str) -> bool:
    """True when ``run_dir`` holds an earlier run of the grid whose digest is ``digest`` (resume); raises
    for another grid, or for a folder that is not a run folder."""
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise BenchError(f"--out {str(run_dir)!r} exists and is not a folder")
    grid_file = RunFolder(run_dir).grid_json
    if not grid_file.is_file():
        if any(run_dir.iterdir()):
            raise BenchError(f"--out {str(run_dir)!r} is not empty and is not a run folder; choose another --out")
        return False
    old = json.loads(grid_file.read_text())
    if old.get("digest") != digest:
        raise BenchError(f"run folder {str(run_dir)!r} was made by a different grid ({old.get('source') or old.get('name')},"
                         f" digest {old.get('digest')} != {digest}); use another --out or the same grid")
    return True


def remove_stale_copies(run_dir: Path) -> None:
    """Remove copies of trial outputs cut short by a killed driver (hidden ``trials/.<id>.tmp<pid>``)."""
    for stale in RunFolder(run_dir).trials_dir.glob(".*.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)


def has_outputs(checkpoint) -> bool:
    """Whether a trial's checkpoint holds its finished outputs (a checkpoint of an unfinished epoch does not)."""
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as folder:
        return checkpoint_outputs(folder).is_finished()


def collect_trial(run_dir: Path, tid: str, checkpoint) -> None:
    """Copy a finished trial's outputs from its last checkpoint into ``run_dir/trials/<id>``."""
    if checkpoint is None:
        raise RuntimeError(f"trial {tid} finished without a checkpoint")
    with checkpoint.as_directory() as folder:
        src = checkpoint_outputs(folder)
        if not src.is_finished():
            raise RuntimeError(f"trial {tid}'s last checkpoint holds no outputs")
        copy_outputs(src.path, RunFolder(run_dir).trial(tid).path)


def copy_outputs(src: Path, dest: Path) -> None:
    """Copy a finished trial's outputs into ``dest`` atomically (temp folder, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        shutil.copytree(src, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk: no half copy is left behind
        raise
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def finished_trials(run_dir: Path, epochs: int) -> dict[str, dict]:
    """The trials whose outputs were collected into ``run_dir/trials`` (each marked by its ``metrics.json``),
    mapped to their final metrics. A resume reads only these small files, never a trial's predictions."""
    return {t.id: _final_metrics(t.metrics, epochs) for t in RunFolder(run_dir).finished()}


def _final_metrics(path: Path, epochs: int) -> dict:
    """A collected trial's summary numbers, as its last Tune result reported them."""
    summary = json.loads(path.read_text()).get("summary", {})
    return {**{k: v for k, v in summary.items() if isinstance(v, (int, float))}, "epoch": epochs}
