"""The run folder, read side: its layout (every file name), the atomic writer, typed trial results.

A run folder is the contract between ``bench`` (which writes it) and ``reports`` (which reads it, and
adds its reports to it); this module is the one place that spells its file names. ``bench.runfolder``
builds the writing side (collecting trials, the run's own JSON files) on top of it, so ``reports``
stays free of ``bench`` and Ray::

    RUN_DIR/grid.json  grid.yaml  dataset.json  split.json  run.json  errors.json   (the runner's)
    RUN_DIR/trials/<id>/metrics.json  config.json  predictions.npz  bootstrap.npz
                        localisation.csv  gallery/gallery.json  gallery/NNN.png      (a trial's)
    RUN_DIR/trials/<id>/external/<test set>/metrics.json  predictions.npz  ...  (protocol external: the same
                        files for the trained model on each external test set)
    RUN_DIR/external.json                              (protocol external: the test sets, their labels)
    RUN_DIR/leaderboard.csv  trials.csv  per_label.csv  groups.csv  significance.csv  reliability.csv
            localisation.csv  localisation_significance.csv  friedman.json  leaderboard.html  (the reports')
    RUN_DIR/official_per_label.csv  external_leaderboard.csv  external_drop.csv  external_localisation.csv
                                                                   (the protocols' reports, reports/protocols.py)
    RUN_DIR/tune/                                                                      (Ray Tune's)
    RUN_DIR/tracking.json  tensorboard/<id>/  wandb/                 (grid section tracking, when on)

>>> run = RunFolder("runs/demo")
>>> run.trial("resnet18-bce-f0-s0").metrics.as_posix()
'runs/demo/trials/resnet18-bce-f0-s0/metrics.json'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# ---- the runner's files ----
GRID_JSON = "grid.json"            # the resolved grid and its digest: marks a folder as a run of that grid
GRID_YAML = "grid.yaml"            # a copy of the grid file as given
DATASET_JSON = "dataset.json"
SPLIT_JSON = "split.json"
RUN_JSON = "run.json"              # versions, git commit, status
ERRORS_JSON = "errors.json"        # errored trials' one-line errors (only while there are some)
TRIALS = "trials"
TUNE = "tune"                      # Ray Tune's experiment folder (local storage)
TRACKING_JSON = "tracking.json"    # the MLflow run ids of the grid and of each trial (grid section tracking)
TENSORBOARD = "tensorboard"        # TensorBoard event files, one folder per trial (tracking.tensorboard)
WANDB = "wandb"                    # W&B's run folders (tracking.wandb; offline: `wandb sync` uploads them)

# ---- a trial's files (RUN_DIR/trials/<id>/, and a checkpoint's outputs/ folder) ----
METRICS_JSON = "metrics.json"      # written last: its presence marks a finished trial
CONFIG_JSON = "config.json"
PREDICTIONS_NPZ = "predictions.npz"
BOOTSTRAP_NPZ = "bootstrap.npz"
LOCALISATION_CSV = "localisation.csv"
GALLERY = "gallery"
GALLERY_JSON = "gallery.json"
EXTERNAL = "external"              # protocol external: one folder per test set, laid out as a trial's
EXTERNAL_JSON = "external.json"    # protocol external: each test set's description and label alignment

# ---- the reports' files ----
LEADERBOARD_CSV = "leaderboard.csv"
TRIALS_CSV = "trials.csv"
PER_LABEL_CSV = "per_label.csv"
GROUPS_CSV = "groups.csv"
SIGNIFICANCE_CSV = "significance.csv"
RELIABILITY_CSV = "reliability.csv"  # the reliability diagram's bins per backbone x strategy x label
LOCALISATION_SIGNIFICANCE_CSV = "localisation_significance.csv"
FRIEDMAN_JSON = "friedman.json"
LEADERBOARD_HTML = "leaderboard.html"
OFFICIAL_CSV = "official_per_label.csv"             # protocol official: per-label AUC beside the published
EXTERNAL_LEADERBOARD_CSV = "external_leaderboard.csv"  # protocol external: a leaderboard per test set
EXTERNAL_DROP_CSV = "external_drop.csv"              # protocol external: internal - external, paired interval
EXTERNAL_LOCALISATION_CSV = "external_localisation.csv"  # protocol external: CAMs on test sets with boxes


def write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` and rename ``tmp`` to ``path``: a failed write (a full disk) leaves the previous
    file untouched and no temporary file; an ``OSError`` names ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:
            exc.filename = str(path)
        raise


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON document at ``path``, or ``default`` when there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else default


@dataclass(frozen=True)
class TrialFolder:
    """One trial's outputs: ``RUN_DIR/trials/<id>/`` (or a checkpoint's ``outputs/``)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_JSON

    @property
    def config(self) -> Path:
        return self.path / CONFIG_JSON

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS_NPZ

    @property
    def bootstrap(self) -> Path:
        return self.path / BOOTSTRAP_NPZ

    @property
    def localisation(self) -> Path:
        return self.path / LOCALISATION_CSV

    @property
    def gallery(self) -> Path:
        return self.path / GALLERY

    @property
    def gallery_json(self) -> Path:
        return self.path / GALLERY / GALLERY_JSON

    def external(self, name: str) -> "TrialFolder":
        """The trial's outputs on external test set ``name`` (``protocol: external``), laid out as its own."""
        return TrialFolder(self.path / EXTERNAL / name)

    def external_names(self) -> list[str]:
        """The external test sets this trial was scored on (each with its ``metrics.json``), sorted."""
        return sorted(p.parent.name for p in self.path.glob(f"{EXTERNAL}/*/{METRICS_JSON}"))

    def is_finished(self) -> bool:
        """A trial is finished once its ``metrics.json`` exists (it is written last, atomically)."""
        return self.metrics.is_file()

    def result(self) -> "TrialResult":
        """The trial's ``metrics.json`` as a :class:`TrialResult`."""
        return TrialResult.from_doc(json.loads(self.metrics.read_text()), folder=self)


@dataclass(frozen=True)
class TrialResult:
    """A finished trial's ``metrics.json``: who it was (backbone, strategy, fold, seed), its summary metrics,
    per-label rows, tuned thresholds and the rest of the document in ``doc``."""

    id: str
    backbone: str
    strategy: str
    fold: int
    seed: int
    summary: dict
    per_label: list
    thresholds: dict
    folder: TrialFolder | None = None
    doc: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_doc(cls, doc: dict, *, folder: TrialFolder | None = None) -> "TrialResult":
        return cls(id=str(doc["id"]), backbone=str(doc["backbone"]), strategy=str(doc["strategy"]),
                   fold=int(doc["fold"]), seed=int(doc["seed"]), summary=dict(doc.get("summary") or {}),
                   per_label=list(doc.get("per_label") or []), thresholds=dict(doc.get("thresholds") or {}),
                   folder=folder, doc=doc)

    def as_record(self) -> dict:
        """The document as the reports use it: ``metrics.json``'s keys plus ``_dir``, the trial's folder."""
        return {**self.doc, "_dir": str(self.folder.path) if self.folder else ""}


@dataclass(frozen=True)
class RunFolder:
    """A run folder's paths; reading it needs nothing but the files."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def grid_json(self) -> Path:
        return self.path / GRID_JSON

    @property
    def grid_yaml(self) -> Path:
        return self.path / GRID_YAML

    @property
    def dataset_json(self) -> Path:
        return self.path / DATASET_JSON

    @property
    def split_json(self) -> Path:
        return self.path / SPLIT_JSON

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def errors_json(self) -> Path:
        return self.path / ERRORS_JSON

    @property
    def external_json(self) -> Path:
        return self.path / EXTERNAL_JSON

    @property
    def trials_dir(self) -> Path:
        return self.path / TRIALS

    @property
    def tune_dir(self) -> Path:
        return self.path / TUNE

    def trial(self, tid: str) -> TrialFolder:
        return TrialFolder(self.path / TRIALS / tid)

    def finished(self) -> list[TrialFolder]:
        """The finished trials (each marked by its ``metrics.json``), sorted by id; a hidden folder (a copy
        being made, or cut short) is not a finished trial."""
        return [TrialFolder(p.parent) for p in sorted(self.trials_dir.glob(f"*/{METRICS_JSON}"))
                if not p.parent.name.startswith(".")]

    def gallery_files(self) -> list[Path]:
        """Every trial's ``gallery/gallery.json``, sorted."""
        return sorted(self.trials_dir.glob(f"*/{GALLERY}/{GALLERY_JSON}"))

    def results(self) -> list[TrialResult]:
        """Every finished trial's :class:`TrialResult`, sorted by id."""
        return [t.result() for t in self.finished()]
