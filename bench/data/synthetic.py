"""The built-in synthetic chest X-ray dataset, written in the NIH ChestX-ray14 release layout.

The harness's demo and fast tests run on it, read by the same reader as the real data
(:func:`bench.data.nih.read_nih`)::

    ROOT/Data_Entry_2017.csv     NIH header; labels joined by "|", "No Finding" when none
    ROOT/BBox_List_2017.csv      one box per planted lesion, in 1024x1024 release space,
                                 "Infiltrate" where the label file says "Infiltration"
    ROOT/images/00000001_000.png 8-bit grayscale, size x size
    ROOT/train_val_list.txt      the official split, patient-wise, as NIH's release has it
    ROOT/test_list.txt           (about a fifth of the images; :mod:`bench.data.synthetic_sites`)
    ROOT/synthetic.json          the parameters and a content summary

What it contains:

* Patients with several follow-ups (mean ~3.6 images, most patients have one), ages, genders,
  PA/AP views. Findings are drawn from a Gaussian copula whose factors give NIH-like
  co-occurrence (Effusion with Atelectasis, Pneumonia with Edema, ...); a patient-level share of
  the latent makes follow-ups repeat findings, and a patient's anatomy (lung, heart, body shape)
  and the side of each of the patient's findings persist across follow-ups, so patient-disjoint
  splits matter.
* Label frequencies follow NIH's long tail (Infiltration ~18% ... Hernia ~0.5%), about half the
  images are "No Finding", and every label has at least ``max(3, ceil(0.004 n))`` positives
  spread over as many patients.
* Each image is a radiograph-like phantom (body, dark lungs with vessel markings, mediastinum,
  heart, diaphragm domes, clavicles, ribs, a gradient, noise) with per-image pose, contrast and
  gamma. Each positive finding is one lesion of its own kind (shape, texture, site; see
  :func:`_lesion`), planted inside the one box the box file gives for it; its strength varies and
  about one in eight is faint. The lesions are tuned so that a ResNet-18 trained from scratch for
  3 epochs at 64 px reaches a macro ROC-AUC of about 0.86 on held-out patients, with the tail
  labels well below that (``benchmarks/synthetic_learnability.py``).

A second **site** (``site="b"``: another hospital's patients, case mix, contrast, noise and field of view,
documented in :mod:`bench.data.synthetic_sites`) gives a known domain shift for external validation; the
default site ``"a"`` is the dataset described above.

Same arguments, same bytes: every random draw comes from ``numpy.random.SeedSequence`` streams keyed
by ``(seed, image)`` or ``(seed, patient)``, and the site for site ``b``. Bump :data:`GENERATOR_VERSION`
whenever the output changes, so :func:`ensure_synthetic` refuses to reuse a folder written by another
version.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist
from typing import Callable, Literal

import numpy as np

from bench.data.labels import NIH_LABELS
from bench.data.nih import NIHReader, read_nih
from bench.data.section import DatasetSection
from bench.data.synthetic_sites import (
    PREVALENCE_A, SITES, TEST_LIST, TRAIN_VAL_LIST, Site, get_site, list_files, official_test_patients,
)
from bench.errors import BenchError
from bench.fields import CHOICE, INT, Annotated, rule, section

log = logging.getLogger(__name__)

GENERATOR = "bench.data.synthetic"
GENERATOR_VERSION = 2  # 2: the official list files, and sites (site a's images, labels and boxes are version 1's)
LABEL_FILE = "Data_Entry_2017.csv"
BOX_FILE = "BBox_List_2017.csv"
META_FILE = "synthetic.json"
IMAGE_DIR = "images"
LABEL_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
                "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
BOX_SPACE = 1024
NO_FINDING = "No Finding"
BOX_NAMES = {"Infiltration": "Infiltrate"}

MIN_N, MIN_SIZE, MAX_SIZE = 50, 32, 1024

# Image-level prevalence of the default site, close to NIH ChestX-ray14 (site b's: bench.data.synthetic_sites).
PREVALENCE: dict[str, float] = PREVALENCE_A
# Latent factors of the label copula (loadings); they set which findings co-occur.
_FACTORS: dict[str, dict[str, float]] = {
    "general": {name: 0.3 for name in NIH_LABELS},
    "fluid": {"Effusion": 0.5, "Atelectasis": 0.4, "Cardiomegaly": 0.4, "Edema": 0.3, "Infiltration": 0.25,
              "Consolidation": 0.3},
    "infection": {"Pneumonia": 0.6, "Edema": 0.5, "Infiltration": 0.35, "Consolidation": 0.35},
    "air": {"Pneumothorax": 0.55, "Emphysema": 0.55},
    "neoplasm": {"Mass": 0.5, "Nodule": 0.5, "Pleural_Thickening": 0.25},
    "fibrotic": {"Fibrosis": 0.55, "Pleural_Thickening": 0.45},
}
# How conspicuous the lesions are: their density change is multiplied by it, except for the findings
# that only replace lung air by soft tissue (they are as dense as soft tissue, no more).
LESION_GAIN = 1.8
_PHYSICAL = ("Effusion", "Cardiomegaly")
# Lesions may be denser than soft tissue by this much; calcified ones (granulomas, pleural plaques) by more.
_HEADROOM = 0.06
_CALCIFIED = {"Nodule": 0.2, "Pleural_Thickening": 0.2}
_PATIENT_SHARE = 0.65  # share of the label latent's variance that a patient's follow-ups have in common
_ORIGINAL_SIZES = ((2500, 2048), (2048, 2500), (2992, 2991), (3056, 2544), (2544, 3056), (2021, 2021))
_SPACINGS = (0.143, 0.168, 0.139, 0.171)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------

def write_synthetic(out: str | os.PathLike, *, n: int = 1500, size: int = 128, seed: int = 0, site: str = "a",
                    progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the synthetic dataset into the new (or empty) folder ``out``; return its summary.

    Writes ``n`` size x size 8-bit grayscale PNGs, ``Data_Entry_2017.csv``, ``BBox_List_2017.csv``,
    ``train_val_list.txt``, ``test_list.txt`` and ``synthetic.json`` into a temporary sibling folder and
    renames it into place, so an interrupted run never leaves a folder that looks complete.
    ``progress(done, total)`` is called after each image. ``site`` (``"a"`` or ``"b"``) is the hospital
    filmed at (:mod:`bench.data.synthetic_sites`).

    Returns:
        the content of ``synthetic.json``: generator, version, params (n, size, seed, site), images,
        patients, no_finding, positives (label -> count), boxes, boxes_per_label and official_test
        (images in the test list).

    >>> s = write_synthetic("/tmp/synth", n=120, size=64, seed=1)  # doctest: +SKIP
    >>> s["images"], s["positives"]["Hernia"] >= 3  # doctest: +SKIP
    (120, True)
    """
    n, size, seed = _check_args(n, size, seed)
    get_site(site)
    out = Path(out).expanduser()
    if out.exists() and not _is_empty_dir(out):
        raise BenchError(f"synthetic dataset folder {str(out)!r} already exists and is not empty; "
                         f"give a new or empty folder (or use ensure_synthetic to reuse it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        summary = _write_into(tmp, n=n, size=size, seed=seed, site=get_site(site), progress=progress)
        if out.exists():
            out.rmdir()  # empty (checked above); fails if a concurrent writer has filled it meanwhile
        os.replace(tmp, out)  # fails if a concurrent writer got there first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def ensure_synthetic(root: str | os.PathLike, *, n: int = 1500, size: int = 128, seed: int = 0, site: str = "a",
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Return the summary of the synthetic dataset at ``root``, writing it when absent.

    ``root`` is reused when its ``synthetic.json`` records the same n, size, seed, site and generator
    version, and written when it is missing or empty. A site-a folder of version 1 gains the two list files
    (its other files are version 2's). A folder holding another synthetic dataset or anything else is never
    touched: that is a :class:`BenchError`.

    >>> ensure_synthetic("data/synthetic", n=1500, size=128, seed=0)["images"]  # doctest: +SKIP
    1500
    """
    n, size, seed = _check_args(n, size, seed)
    get_site(site)
    root = Path(root).expanduser()
    if not root.exists() or _is_empty_dir(root):
        try:
            return write_synthetic(root, n=n, size=size, seed=seed, site=site, progress=progress)
        except OSError:
            if not (root.is_dir() and (root / META_FILE).is_file()):
                raise
            # Another process finished the same folder first: fall through and check its parameters.
    return _reuse(root, n=n, size=size, seed=seed, site=site)


# --------------------------------------------------------------------------------------------------
# Validation and reuse
# --------------------------------------------------------------------------------------------------

def _check_args(n: object, size: object, seed: object) -> tuple[int, int, int]:
    for name, value in (("n", n), ("size", size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise BenchError(f"synthetic dataset: {name} must be an integer, got {value!r}")
    if n < MIN_N:
        raise BenchError(f"synthetic dataset: n must be >= {MIN_N} images, got {n}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise BenchError(f"synthetic dataset: size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")
    if seed < 0:
        raise BenchError(f"synthetic dataset: seed must be >= 0, got {seed}")
    return int(n), int(size), int(seed)


def _is_empty_dir(path: Path) -> bool:
    if not path.is_dir():
        return False
    with os.scandir(path) as it:
        return next(it, None) is None


def _reuse(root: Path, *, n: int, size: int, seed: int, site: str = "a") -> dict:
    if not root.is_dir():
        raise BenchError(f"synthetic dataset root {str(root)!r} is a file, not a folder; give a missing or "
                         f"empty folder")
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise BenchError(f"synthetic dataset root {str(root)!r} is not empty and has no {META_FILE}: it is not a "
                         f"synthetic dataset; give a missing or empty folder")
    try:
        meta = json.loads(meta_path.read_text())
        recorded = {"n": meta["params"]["n"], "size": meta["params"]["size"], "seed": meta["params"]["seed"],
                    "site": meta["params"].get("site", "a"), "version": meta["version"]}
        generator = meta["generator"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"{meta_path}: not a synthetic dataset description ({type(exc).__name__}: {exc})") from None
    if generator != GENERATOR:
        raise BenchError(f"{meta_path}: written by {generator!r}, not {GENERATOR!r}; give another folder")
    if recorded["version"] == 1 and recorded["site"] == site == "a":
        meta = _add_lists(root, meta)  # version 1 wrote exactly these images, labels and boxes
        recorded["version"] = meta["version"]
    wanted = {"n": n, "size": size, "seed": seed, "site": site, "version": GENERATOR_VERSION}
    diff = [f"{k}={recorded[k]!r} (wanted {v!r})" for k, v in wanted.items() if recorded[k] != v]
    if diff:
        raise BenchError(f"synthetic dataset root {str(root)!r} holds a different dataset: {', '.join(diff)}; "
                         f"give another folder or delete this one")
    missing = [name for name in (LABEL_FILE, BOX_FILE, TRAIN_VAL_LIST, TEST_LIST) if not (root / name).is_file()]
    n_images = _count_pngs(root / IMAGE_DIR)
    if missing or n_images != n:
        what = f"{', '.join(missing)} missing" if missing else f"{n_images} of {n} images present"
        raise BenchError(f"synthetic dataset root {str(root)!r} is incomplete ({what}); delete it to regenerate")
    log.debug("reusing synthetic dataset %s (n=%d, size=%d, seed=%d, site %s)", root, n, size, seed, site)
    return meta


def _add_lists(root: Path, meta: dict) -> dict:
    """Write the official list files into a version-1 folder of site a, and record it as version 2."""
    params = meta["params"]
    images = _cohort(params["n"], params["seed"])
    tmp = f".tmp{os.getpid()}-{uuid.uuid4().hex[:8]}"
    test = _write_lists(root, images, params["seed"], SITES["a"], suffix=tmp)
    meta = {**meta, "version": GENERATOR_VERSION, "params": {**params, "site": "a"}, "official_test": test}
    (root / (META_FILE + tmp)).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8", newline="\n")
    os.replace(root / (META_FILE + tmp), root / META_FILE)  # after the lists: a folder that says 2 has them
    log.info("synthetic dataset %s: added %s and %s (generator version 1 -> %d)", root, TRAIN_VAL_LIST, TEST_LIST,
             GENERATOR_VERSION)
    return meta


def _write_lists(folder: Path, images: list["_Image"], seed: int, site: Site, *, suffix: str = "") -> int:
    """Write ``train_val_list.txt`` and ``test_list.txt`` (each through ``name + suffix`` when a suffix is
    given, then renamed); return the number of test images."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 5, *site.stream]))
    texts = list_files(images, official_test_patients(images, rng))
    for name, text in texts.items():
        (folder / (name + suffix)).write_text(text, encoding="ascii", newline="\n")
        if suffix:
            os.replace(folder / (name + suffix), folder / name)
    return texts[TEST_LIST].count("\n")


def _count_pngs(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    with os.scandir(folder) as it:
        return sum(1 for e in it if e.name.endswith(".png"))


# --------------------------------------------------------------------------------------------------
# The cohort: patients, follow-ups and labels
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Image:
    """One row of the label file."""

    name: str
    patient: int
    followup: int
    age: int
    gender: str
    view: str
    labels: tuple[str, ...]  # NIH_LABELS order
    original: tuple[int, int]
    spacing: float


def _loadings() -> np.ndarray:
    """(L, F + L) loadings: the shared factors, then each label's own residual."""
    w = np.array([[_FACTORS[f].get(name, 0.0) for f in _FACTORS] for name in NIH_LABELS])
    resid = np.sqrt(1.0 - (w ** 2).sum(axis=1))
    return np.concatenate([w, np.diag(resid)], axis=1)


def min_positives(n: int) -> int:
    """The fewest positives every label gets in a dataset of ``n`` images (6 for n=1500)."""
    return max(3, math.ceil(0.004 * n))


def _followup_counts(n: int, rng: np.random.Generator) -> list[int]:
    """Images per patient: ~55% single, else 1 + geometric (mean ~3.6 overall), capped, summing to n."""
    cap = max(2, min(30, n // 25))
    counts: list[int] = []
    total = 0
    while total < n:
        k = 1 if rng.random() < 0.55 else min(cap, 1 + int(rng.geometric(0.17)))
        counts.append(min(k, n - total))
        total += counts[-1]
    return counts


def _cohort(n: int, seed: int, site: Site = SITES["a"]) -> list[_Image]:
    """The rows of the label file: patients, follow-ups, demographics and findings (no pixels)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, *site.stream]))
    counts = _followup_counts(n, rng)
    n_pat = len(counts)
    patient_of = np.repeat(np.arange(n_pat), counts)
    load = _loadings()
    k = load.shape[1]
    z_pat = rng.standard_normal((n_pat, k)) @ load.T
    z_own = rng.standard_normal((n, k)) @ load.T
    z = math.sqrt(_PATIENT_SHARE) * z_pat[patient_of] + math.sqrt(1 - _PATIENT_SHARE) * z_own
    thresholds = np.array([NormalDist().inv_cdf(1 - site.prevalence[name]) for name in NIH_LABELS])
    y = z > thresholds
    # Every label gets a few positives, on distinct patients, so a 3-fold patient split can spread it.
    need = min_positives(n)
    for j in range(len(NIH_LABELS)):
        short = need - int(y[:, j].sum())
        if short <= 0:
            continue
        have = set(patient_of[y[:, j]].tolist())
        free = np.array([p for p in range(n_pat) if p not in have])
        for p in rng.choice(free, size=min(short, len(free)), replace=False):
            rows = np.flatnonzero(patient_of == p)
            y[rng.choice(rows), j] = True

    genders = np.where(rng.random(n_pat) < 0.56, "M", "F")
    first_age = np.clip(np.round(rng.normal(47, 16.5, n_pat)), 1, 94).astype(int)
    followup = np.concatenate([np.arange(c) for c in counts])
    older = (rng.random(n) < 0.4) & (followup > 0)  # a follow-up is a year older 40% of the time
    aged = np.cumsum(older)
    first_row = np.r_[0, np.cumsum(counts)[:-1]]
    age = np.minimum(95, first_age[patient_of] + aged - aged[first_row][patient_of])
    sick = y.any(axis=1)
    ap = rng.random(n) < np.where(sick, site.ap_share[1], site.ap_share[0])  # sicker patients: AP (in bed)
    original = rng.integers(len(_ORIGINAL_SIZES), size=n)
    spacing = rng.integers(len(_SPACINGS), size=n)
    images = []
    for i in range(n):
        p = int(patient_of[i])
        labels = tuple(name for j, name in enumerate(NIH_LABELS) if y[i, j])
        images.append(_Image(f"{p + 1:08d}_{followup[i]:03d}.png", p + 1, int(followup[i]), int(age[i]),
                             str(genders[p]), "AP" if ap[i] else "PA", labels, _ORIGINAL_SIZES[original[i]],
                             _SPACINGS[spacing[i]]))
    return images


# --------------------------------------------------------------------------------------------------
# Phantom anatomy. Coordinates: a (left -> right of the image) and b (top -> bottom) in [-1, 1];
# the heart is on the image's right (the patient's left, as on a PA film).
# --------------------------------------------------------------------------------------------------

def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _bump(d: np.ndarray) -> np.ndarray:
    """Smooth compact kernel: 1 at d=0, exactly 0 for d >= 1."""
    return np.clip(1.0 - d * d, 0.0, None) ** 2


class _Draw:
    """Scalar draws from a Generator as Python numbers (NumPy scalars would promote float32 grids to float64)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def normal(self, mu: float, sd: float) -> float:
        return float(self.rng.normal(mu, sd))

    def random(self) -> float:
        return float(self.rng.random())

    def integers(self, lo: int, hi: int | None = None) -> int:
        return int(self.rng.integers(lo, hi))


@dataclass(frozen=True)
class _Lung:
    side: int      # -1: image left (patient's right), +1: image right
    top: float     # b of the apex
    medial: float  # lateral coordinate x = side * a of the medial edge
    lateral: float  # x of the widest lateral edge
    base: float    # b of the costophrenic angle
    dome: float    # height of the diaphragm dome above the base

    def x_lat(self, b: np.ndarray) -> np.ndarray:
        t = np.clip((b - self.top) / (self.base - self.top), 0.0, 1.0)
        return self.medial + (self.lateral - self.medial) * (0.3 + 0.7 * np.sqrt(np.clip(t * 1.6, 0.0, 1.0)))

    def bottom(self, x: np.ndarray) -> np.ndarray:
        c = self.medial + 0.45 * (self.lateral - self.medial)
        q = ((x - c) / (0.62 * (self.lateral - self.medial))) ** 2
        return self.base - self.dome * np.clip(1.0 - q, 0.0, 1.0)

    def top_at(self, x: np.ndarray) -> np.ndarray:
        c = self.medial + 0.4 * (self.lateral - self.medial)
        return self.top + 1.2 * (x - c) ** 2

    def margins(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inside margin, wall margin): > 0 inside; the wall margin ignores medial and diaphragm edges."""
        x = self.side * a
        wall = np.minimum(self.x_lat(b) - x, b - self.top_at(x))
        inside = np.minimum(np.minimum(wall, x - self.medial), self.bottom(x) - b)
        return inside, wall

    def point(self, xi: float, eta: float) -> tuple[float, float]:
        """A point inside the lung: xi 0 medial -> 1 lateral, eta 0 apex -> 1 base."""
        b = self.top + 0.04 + eta * (self.base - self.dome * 0.55 - self.top - 0.06)
        x = self.medial + 0.03 + xi * (float(self.x_lat(np.float64(b))) - self.medial - 0.07)
        return self.side * x, b


@dataclass(frozen=True)
class _Anatomy:
    lungs: tuple[_Lung, _Lung]
    heart: tuple[float, float, float, float]  # centre a, centre b, half-width, half-height
    clavicle_b: float
    rib_period: float
    rib_phase: float
    body_w: float
    gastric: tuple[float, float, float] | None  # bubble under the left dome: a, b, r (or none)
    # Pose and exposure of this image.
    scale: float
    shift: tuple[float, float]
    angle: float
    gamma: float
    window: tuple[float, float]
    gradient: tuple[float, float]
    noise: float


def _patient_anatomy(seed: int, patient: int, stream: tuple[int, ...] = ()) -> dict:
    rng = _Draw(np.random.default_rng(np.random.SeedSequence([seed, 1, patient, *stream])))
    top = -0.72 + rng.normal(0, 0.03)
    base = 0.56 + rng.normal(0, 0.035)
    lateral = 0.8 + rng.normal(0, 0.025)
    return {
        "lungs": (_Lung(-1, top + rng.normal(0, 0.01), 0.12, lateral, base - 0.03, 0.17 + rng.normal(0, 0.02)),
                  _Lung(+1, top + rng.normal(0, 0.01), 0.14, lateral + rng.normal(0, 0.01), base,
                        0.15 + rng.normal(0, 0.02))),
        "heart": (0.14 + rng.normal(0, 0.015), base - 0.36 + rng.normal(0, 0.02), 0.34 + rng.normal(0, 0.02),
                  0.24 + rng.normal(0, 0.015)),
        "clavicle_b": -0.66 + rng.normal(0, 0.03),
        "rib_period": 0.15 + rng.normal(0, 0.008),
        "body_w": 0.93 + rng.normal(0, 0.025),
    }


def _anatomy(seed: int, image: _Image, rng: _Draw, site: Site = SITES["a"]) -> _Anatomy:
    base = _patient_anatomy(seed, image.patient, site.stream)
    ap = image.view == "AP"
    hx, hy, hw, hh = base["heart"]
    if ap:  # an AP film magnifies the heart a little and raises the clavicles
        hw, hh = hw * 1.06, hh * 1.03
    gastric = None
    if rng.random() < 0.35:
        lung = base["lungs"][1]
        gastric = (0.42 + rng.normal(0, 0.04), lung.base + 0.08 + rng.normal(0, 0.02), rng.uniform(0.05, 0.08))
    lo = rng.uniform(*site.black)
    return _Anatomy(
        lungs=base["lungs"], heart=(hx, hy, hw, hh), clavicle_b=base["clavicle_b"] - (0.05 if ap else 0.0),
        rib_period=base["rib_period"], rib_phase=rng.uniform(0, 1), body_w=base["body_w"], gastric=gastric,
        scale=rng.uniform(*site.scale), shift=(rng.uniform(-0.035, 0.035), rng.uniform(-0.035, 0.035)),
        angle=math.radians(rng.uniform(-3, 3)), gamma=math.exp(rng.normal(site.log_gamma, 0.08)),
        window=(lo, rng.uniform(*site.white)), gradient=(rng.normal(0, 0.025), rng.normal(0, 0.025)),
        noise=rng.uniform(*site.noise),
    )


@lru_cache(maxsize=4)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    return np.meshgrid(c, c)  # u (columns), v (rows)


@lru_cache(maxsize=4)
def _band_filters(size: int) -> dict[str, np.ndarray]:
    """Band-pass filters (in cycles per image, so textures scale with size), scaled to unit output variance."""
    f = np.fft.fftfreq(size) * size
    f = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    out = {}
    for key, centre in {"coarse": 4.0, "medium": 10.0, "fine": 22.0}.items():
        filt = np.exp(-0.5 * (np.log(np.maximum(f, 1e-3) / centre) / 0.45) ** 2)
        out[key] = (filt * size * size / np.sqrt((filt ** 2).sum())).astype(np.float32)
    return out


class _Textures:
    """Unit-variance band-limited noise fields ``coarse0/1``, ``medium0/1``, ``fine0/1``, made on first use.

    All come from one complex white spectrum; a band's two fields are the real and imaginary parts.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        # Uniform draws are 5x cheaper than normal ones and as good a white spectrum once band-filtered.
        white = rng.random((size, 2 * size), dtype=np.float32) - np.float32(0.5)
        self.spectrum = (white * np.float32(math.sqrt(12.0))).view(np.complex64)
        self.fields: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.fields:
            band = key[:-1]
            field = np.fft.ifft2(self.spectrum * _band_filters(self.size)[band])
            self.fields[band + "0"] = field.real.astype(np.float32)
            self.fields[band + "1"] = field.imag.astype(np.float32)
        return self.fields[key]


class _Scene:
    """The anatomy rasterised on the pixel grid, plus what lesions need to know about it."""

    AIR = 0.38     # how much a lung's air darkens the body
    HEART_TILT = math.radians(25)  # the long axis of the heart points down to the apex

    def __init__(self, anat: _Anatomy, size: int, tex: _Textures) -> None:
        self.anat, self.size, self.tex = anat, size, tex
        u, v = _pixel_grid(size)
        s, (dx, dy), t = anat.scale, anat.shift, anat.angle
        uu, vv = (u - dx) / s, (v - dy) / s
        self.a = (math.cos(t) * uu + math.sin(t) * vv).astype(np.float32)
        self.b = (-math.sin(t) * uu + math.cos(t) * vv).astype(np.float32)
        a, b = self.a, self.b
        self.edge = 2.0 / size  # one pixel in these units
        soft = max(self.edge, 0.012)
        self.lung_wall, self.lung = [], []  # per side: distance-like margin to the chest wall, soft mask
        for lung in anat.lungs:
            inside, wall = lung.margins(a, b)
            self.lung_wall.append(wall)
            self.lung.append(_sigmoid(inside / soft))
        self.heart = self.heart_mask()
        self.lungs = self.lung[0] + self.lung[1]
        self.aerated = self.lungs * (1.0 - self.heart)
        self.aer = [lung * (1.0 - self.heart) for lung in self.lung]  # per side, the air not behind the heart
        hilum = np.minimum((a + 0.2) ** 2 + (b + 0.05) ** 2, (a - 0.22) ** 2 + (b + 0.03) ** 2)
        ridge = np.exp(-(tex["medium0"] / 0.35) ** 2) + 0.5 * np.exp(-(tex["fine0"] / 0.3) ** 2)
        self.markings = (0.03 + 0.05 * np.exp(-hilum / 0.06)) * ridge  # vessel-like lines, denser at the hila

    def heart_mask(self, sx: float = 1.0, sy: float = 1.0, dx: float = 0.0, *, at: tuple | None = None) -> np.ndarray:
        """The heart shadow, scaled by (sx, sy) and shifted by dx; on the grid, or at the point ``at``."""
        hx, hy, hw, hh = self.anat.heart
        c, s = math.cos(self.HEART_TILT), math.sin(self.HEART_TILT)
        a, b = (self.a, self.b) if at is None else at
        da, db = a - hx - dx, b - hy
        d = ((c * da + s * db) / (hw * sx)) ** 2 + ((c * db - s * da) / (hh * sy)) ** 2
        return _sigmoid((1.0 - d) / 0.06)

    def site(self, lung: _Lung, xi: float, eta: float) -> tuple[float, float]:
        """``lung.point(xi, eta)``, moved laterally out of the heart shadow if it falls behind it."""
        for _ in range(4):
            ca, cb = lung.point(xi, eta)
            if float(self.heart_mask(at=(ca, cb))) < 0.3:
                break
            xi += (1.0 - xi) * 0.5
        return ca, cb

    def heart_term(self, heart: np.ndarray) -> np.ndarray:
        """Density added by a heart shadow ``heart``: it hides the lung air in front of it."""
        return self.AIR * heart * self.lungs

    def base_density(self) -> np.ndarray:
        anat, a, b = self.anat, self.a, self.b
        neck = 0.2 + (anat.body_w - 0.2) * _smoothstep(-1.0, -0.62, b)
        body = _sigmoid((neck - np.abs(a)) / 0.025)
        dens = 0.04 + 0.58 * body + 0.06 * body * _smoothstep(0.3, 1.0, b)
        dens += 0.13 * np.exp(-np.square((a / 0.075) ** 2)) * body  # spine
        dens -= self.AIR * self.lungs
        dens += self.heart_term(self.heart)
        # Hila and lung markings.
        for side in (-1, 1):
            dens += 0.08 * np.exp(-(((a - side * 0.2) / 0.07) ** 2 + ((b + 0.04) / 0.1) ** 2))
        dens += self.markings * self.aerated
        # Posterior ribs: curved bands across each hemithorax; clavicles.
        x = np.abs(a)
        phase = (b + 0.3 * x - 1.2 * np.clip(x - 0.5, 0, None) ** 2) / anat.rib_period + anat.rib_phase
        ribs = 0.5 + 0.5 * np.cos(2 * np.pi * phase)
        ribs = ribs * ribs * ribs * _smoothstep(0.5, -0.2, b)
        thorax = _sigmoid((anat.body_w - 0.06 - x) / 0.02) * _sigmoid((max(l.base for l in anat.lungs) - b) / 0.03)
        dens += 0.035 * ribs * thorax * (0.4 + 0.6 * self.aerated)
        cb = anat.clavicle_b
        line = b - (cb + 0.05 - 0.22 * (x - 0.1))
        dens += 0.12 * np.exp(-(line / 0.03) ** 2) * _smoothstep(0.05, 0.12, x) * _smoothstep(0.72, 0.55, x)
        if anat.gastric is not None:
            ga, gb, gr = anat.gastric
            dens -= 0.15 * _smoothstep(1.0, 0.8, np.hypot(a - ga, (b - gb) * 1.3) / gr)
        return dens

    def expose(self, dens: np.ndarray, noise: np.ndarray) -> np.ndarray:
        anat = self.anat
        lo, hi = anat.window
        # x ** gamma as exp(gamma log x): NumPy's float32 power is ~100x slower than exp and log.
        img = lo + (hi - lo) * np.exp(anat.gamma * np.log(np.clip(dens, 1e-4, 1.0)))
        img = img + anat.gradient[0] * self.a + anat.gradient[1] * self.b + anat.noise * noise
        return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Lesions: one per positive finding, each kind its own model. A finding's side is fixed per
# (patient, finding); its site, shape and strength vary per image, and some are faint.
# --------------------------------------------------------------------------------------------------

def _strength(rng: _Draw) -> float:
    return rng.uniform(0.5, 0.8) if rng.random() < 0.12 else rng.uniform(0.85, 1.2)


_LesionModel = Callable[["_Scene", "_Draw", float, int], np.ndarray]
_LESIONS: dict[str, _LesionModel] = {}


def _lesion_model(label: str) -> Callable[[_LesionModel], _LesionModel]:
    """Register the lesion model of finding ``label``."""
    def register(fn: _LesionModel) -> _LesionModel:
        _LESIONS[label] = fn
        return fn
    return register


def _lesion(label: str, sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Density change of finding ``label`` on scene ``sc``: ``p`` draws its geometry, ``amp`` is its
    strength (~1), ``side`` 0 / 1 its lung (image left / right)."""
    return _LESIONS[label](sc, p, amp, side)


@_lesion_model("Nodule")
def _nodule(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Small, well-defined round opacity."""
    a, b = sc.a, sc.b
    lung = sc.anat.lungs[side]
    ca, cb = sc.site(lung, p.uniform(0.25, 0.9), p.uniform(0.1, 0.75))
    d = np.hypot(a - ca, b - cb) / p.uniform(0.085, 0.115)
    return 0.6 * amp * _smoothstep(1.0, 0.75, d)


@_lesion_model("Mass")
def _mass(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Larger lobulated opacity."""
    a, b, tex = sc.a, sc.b, sc.tex
    lung = sc.anat.lungs[side]
    ca, cb = sc.site(lung, p.uniform(0.2, 0.8), p.uniform(0.2, 0.75))
    r = p.uniform(0.14, 0.22)
    phi = np.arctan2(b - cb, a - ca)
    lob = 1 + 0.12 * np.sin(3 * phi + p.uniform(0, 6.3)) + 0.07 * np.sin(5 * phi + p.uniform(0, 6.3))
    d = np.hypot(a - ca, b - cb) / (r * lob)
    return 0.4 * amp * _smoothstep(1.0, 0.75, d) * (0.9 + 0.07 * tex["coarse1"])


@_lesion_model("Effusion")
def _effusion(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Basal homogeneous opacity; meniscus rising to the lateral wall."""
    a, b = sc.a, sc.b
    lung = sc.anat.lungs[side]
    depth, men = p.uniform(0.2, 0.45), p.uniform(0.08, 0.2)
    x = lung.side * a
    level = lung.base - depth - men * np.clip((x - lung.medial) / (lung.lateral - lung.medial), 0, 1) ** 2
    fluid = _sigmoid((b - level) / 0.015) * sc.aer[side]
    return sc.AIR * (0.75 + 0.25 * min(amp, 1.0)) * fluid


@_lesion_model("Pneumothorax")
def _pneumothorax(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Hyperlucent rim at the apex / lateral wall, no markings, pleural line."""
    b = sc.b
    lung = sc.anat.lungs[side]
    in_lung = sc.lung[side]
    gap, reach = p.uniform(0.08, 0.16), p.uniform(0.45, 0.8)
    wall = sc.lung_wall[side]
    upper = _sigmoid((lung.top + reach * (lung.base - lung.top) - b) / 0.03)
    rim = in_lung * _sigmoid((gap - wall) / 0.008) * upper
    line = np.exp(-((wall - gap) / max(sc.edge, 0.012)) ** 2) * in_lung * upper
    return -rim * (0.24 * amp + sc.markings) + 0.15 * amp * line


@_lesion_model("Cardiomegaly")
def _cardiomegaly(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Enlarged heart, mostly to the left and down."""
    sx, sy = p.uniform(1.4, 1.65), p.uniform(1.08, 1.2)
    big = sc.heart_mask(sx, sy, dx=0.15 * (sx - 1.0))
    return (0.6 + 0.4 * min(amp, 1.0)) * (sc.heart_term(big) - sc.heart_term(sc.heart))


@_lesion_model("Emphysema")
def _emphysema(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Hyperlucent, hyperexpanded lungs with few markings and bullae."""
    a, b, anat = sc.a, sc.b, sc.anat
    dens = -(0.15 * amp) * sc.aerated - 0.6 * sc.markings * sc.aerated
    for _ in range(p.integers(4, 8)):
        lg = anat.lungs[p.integers(2)]
        ca, cb = lg.point(p.uniform(0.3, 0.95), p.uniform(0.05, 0.6))
        d = np.hypot(a - ca, b - cb) / p.uniform(0.06, 0.11)
        dens += amp * (-0.14 * _smoothstep(1.0, 0.8, d) + 0.1 * np.exp(-((d - 1.0) / 0.15) ** 2))
    for lg in anat.lungs:  # hyperexpansion: flat, low diaphragm domes
        low = _Lung(lg.side, lg.top, lg.medial, lg.lateral, lg.base + 0.05, lg.dome * 0.3)
        extra = _sigmoid(low.margins(a, b)[0] / max(sc.edge, 0.012)) - sc.lung[(lg.side + 1) // 2]
        dens -= sc.AIR * np.clip(extra, 0.0, 1.0) * (1.0 - sc.heart)
    return dens * (sc.lungs > 0.02)


@_lesion_model("Edema")
def _edema(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Bilateral perihilar (bat-wing) haze."""
    a, b, tex, anat = sc.a, sc.b, sc.tex, sc.anat
    env = np.zeros_like(a)
    for lg in anat.lungs:
        ca, cb = lg.side * (lg.medial + 0.17), -0.02 + p.uniform(-0.03, 0.06)
        env += _bump(np.hypot((a - ca) / 0.26, (b - cb) / 0.34))
    return 0.22 * amp * np.clip(env, 0, 1) * (0.8 + 0.2 * tex["fine1"]) * sc.aerated


@_lesion_model("Fibrosis")
def _fibrosis(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Reticular net, peripheral and basal."""
    a, b, tex = sc.a, sc.b, sc.tex
    lung = sc.anat.lungs[side]
    in_lung = sc.lung[side]
    ca, cb = sc.site(lung, p.uniform(0.5, 0.9), p.uniform(0.45, 0.9))
    env = _bump(np.hypot(a - ca, b - cb) / p.uniform(0.17, 0.25))
    net = np.exp(-(tex["medium1"] / 0.35) ** 2)  # a reticular net of lines a few pixels apart at 64 px
    return amp * env * (0.28 * net + 0.06) * in_lung


@_lesion_model("Consolidation")
def _consolidation(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Dense patch with dark air bronchograms."""
    a, b, tex = sc.a, sc.b, sc.tex
    lung = sc.anat.lungs[side]
    in_lung = sc.lung[side]
    ca, cb = sc.site(lung, p.uniform(0.25, 0.8), p.uniform(0.35, 0.9))
    r, aspect = p.uniform(0.14, 0.23), p.uniform(0.75, 1.3)
    d = np.hypot((a - ca) * aspect, b - cb) / r * (1.0 + 0.15 * tex["coarse0"])
    bronchi = np.exp(-(tex["medium1"] / 0.3) ** 2)
    return 0.32 * amp * _smoothstep(1.0, 0.7, d) * (1.0 - 0.6 * bronchi) * in_lung


@_lesion_model("Atelectasis")
def _atelectasis(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Plate-like band, or a wedge pointing to the hilum."""
    a, b = sc.a, sc.b
    lung = sc.anat.lungs[side]
    in_lung = sc.lung[side]
    ca, cb = sc.site(lung, p.uniform(0.3, 0.8), p.uniform(0.5, 0.9))
    if p.random() < 0.65:
        t = math.radians(p.uniform(-25, 15)) * lung.side
        along = (math.cos(t) * (a - ca) + math.sin(t) * (b - cb)) / p.uniform(0.15, 0.23)
        across = (-math.sin(t) * (a - ca) + math.cos(t) * (b - cb)) / p.uniform(0.035, 0.055)
        shape = _smoothstep(1.0, 0.6, np.hypot(along, across))
    else:
        ha, hb = lung.side * 0.2, -0.03
        ang = np.arctan2(b - hb, a - ha) - math.atan2(cb - hb, ca - ha)
        ang = (ang + np.pi) % (2 * np.pi) - np.pi
        r = np.hypot(a - ha, b - hb)
        r0 = math.hypot(ca - ha, cb - hb)
        shape = _smoothstep(0.22, 0.16, np.abs(ang)) * _smoothstep(0.12, 0.2, r) * _smoothstep(
            r0 + 0.12, r0 + 0.06, r)
    return 0.36 * amp * shape * in_lung


@_lesion_model("Infiltration")
def _infiltration(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Ill-defined patchy haze."""
    a, b, tex = sc.a, sc.b, sc.tex
    lung = sc.anat.lungs[side]
    in_lung = sc.lung[side]
    ca, cb = sc.site(lung, p.uniform(0.2, 0.85), p.uniform(0.2, 0.85))
    ra, rb = p.uniform(0.17, 0.29), p.uniform(0.17, 0.29)
    env = _bump(np.hypot((a - ca) / ra, (b - cb) / rb))
    patch = np.clip(0.5 + 0.35 * tex["coarse1"] + 0.3 * tex["medium0"], 0.0, 1.1)
    return 0.4 * amp * env * patch * in_lung


@_lesion_model("Pleural_Thickening")
def _pleural_thickening(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """A long dense rim along the chest wall (or an apical cap)."""
    b, tex = sc.b, sc.tex
    lung = sc.anat.lungs[side]
    in_lung = sc.lung[side]
    thick = p.uniform(0.05, 0.085) * (1.0 + 0.15 * tex["medium1"])
    wall = sc.lung_wall[side]
    mid = lung.top + p.uniform(0.05, 0.7) * (lung.base - lung.top)
    half = p.uniform(0.22, 0.38)
    along = _smoothstep(half, 0.6 * half, np.abs(b - mid))
    return 0.55 * amp * in_lung * _sigmoid((thick - wall) / 0.006) * along


@_lesion_model("Pneumonia")
def _pneumonia(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Lobar, patchy, sharp at the fissure."""
    a, b, tex = sc.a, sc.b, sc.tex
    lung = sc.anat.lungs[side]
    in_lung = sc.lung[side]
    x = lung.side * a
    if p.random() < 0.6:  # lower lobe, below an oblique fissure
        fissure = lung.top + 0.45 * (lung.base - lung.top) + 0.25 * (x - lung.medial) * p.uniform(0.6, 1.2)
        lobe = _sigmoid((b - fissure) / 0.012)
    else:  # upper lobe, above the horizontal fissure
        fissure = lung.top + p.uniform(0.38, 0.5) * (lung.base - lung.top)
        lobe = _sigmoid((fissure - b) / 0.012)
    patch = np.clip(0.6 + 0.35 * tex["coarse0"] + 0.2 * tex["medium1"], 0.0, 1.2)
    return 0.25 * amp * lobe * patch * in_lung


@_lesion_model("Hernia")
def _hernia(sc: _Scene, p: _Draw, amp: float, side: int) -> np.ndarray:
    """Round retrocardiac gas bubble with an air-fluid level."""
    a, b = sc.a, sc.b
    hx, hy = sc.anat.heart[:2]
    ca, cb, r = hx - 0.1 + p.uniform(-0.05, 0.05), hy + p.uniform(0.0, 0.08), p.uniform(0.09, 0.13)
    d = np.hypot(a - ca, b - cb) / r
    gas = _smoothstep(1.0, 0.85, d) * _sigmoid((cb + 0.25 * r - b) / 0.01)
    return amp * (-0.25 * gas + 0.12 * np.exp(-((d - 1.0) / 0.12) ** 2))


def _box(delta: np.ndarray, rel: float = 0.04) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel box (end exclusive) of where |delta| > rel * its peak, or None."""
    mag = np.abs(delta)
    peak = float(mag.max())
    if peak <= 0:
        return None
    on = mag > rel * peak
    cols, rows = np.flatnonzero(on.any(axis=0)), np.flatnonzero(on.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _render(image: _Image, size: int, seed: int, index: int, *, lesions: bool = True,
            site: Site = SITES["a"]) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """Render one image: (size, size) uint8 and [(label, (x0, y0, x1, y1) in pixels)] per lesion.

    ``lesions=False`` renders the same anatomy, exposure and noise without any lesion.
    """
    img_ss, noise_ss = np.random.SeedSequence([seed, 2, index, *site.stream]).spawn(2)
    rng = _Draw(np.random.default_rng(img_ss))
    anat = _anatomy(seed, image, rng, site)
    noise_rng = np.random.default_rng(noise_ss)
    tex = _Textures(size, noise_rng)
    noise = noise_rng.standard_normal((size, size), dtype=np.float32)
    sc = _Scene(anat, size, tex)
    base = sc.base_density()
    dens = base.copy()
    headroom = np.full_like(dens, _HEADROOM)
    boxes = []
    for label in image.labels:
        amp = _strength(rng)  # drawn even when lesions=False, so both renders share everything else
        if not lesions:
            continue
        j = NIH_LABELS.index(label)
        side = int(np.random.default_rng(np.random.SeedSequence([seed, 3, image.patient, j, *site.stream]))
                   .integers(2))
        p = _Draw(np.random.default_rng(np.random.SeedSequence([seed, 4, index, j, *site.stream])))
        gain = 1.0 if label in _PHYSICAL else LESION_GAIN
        delta = _lesion(label, sc, p, amp, side).astype(np.float32) * np.float32(gain)
        box = _box(delta)
        if box is None:
            raise RuntimeError(f"synthetic lesion {label!r} of {image.name} is empty (seed {seed})")
        x0, y0, x1, y1 = box
        cut = np.zeros_like(delta)
        cut[y0:y1, x0:x1] = delta[y0:y1, x0:x1]
        dens += cut
        if label in _CALCIFIED:
            headroom = np.where(cut != 0, np.maximum(headroom, np.float32(_CALCIFIED[label])), headroom)
        boxes.append((label, box))
    if boxes:  # (overlapping) opacities make a lung as dense as soft tissue, not denser, unless calcified
        dens = np.minimum(dens, base + sc.AIR * sc.aerated + headroom)
    return sc.expose(dens, noise), boxes


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

def _fmt(v: float) -> str:
    return repr(round(float(v), 4))


def _write_into(folder: Path, *, n: int, size: int, seed: int, site: Site = SITES["a"],
                progress: Callable[[int, int], None] | None) -> dict:
    from PIL import Image

    start = time.perf_counter()
    images = _cohort(n, seed, site)
    (folder / IMAGE_DIR).mkdir()
    scale = BOX_SPACE / size
    label_rows, box_rows = [LABEL_HEADER], [BOX_HEADER]
    boxes_per_label = dict.fromkeys(NIH_LABELS, 0)
    for i, im in enumerate(images):
        pixels, boxes = _render(im, size, seed, i, site=site)
        Image.fromarray(pixels).save(folder / IMAGE_DIR / im.name, format="PNG", compress_level=3)
        finding = "|".join(sorted(im.labels)) if im.labels else NO_FINDING
        label_rows.append(f"{im.name},{finding},{im.followup},{im.patient},{im.age},{im.gender},{im.view},"
                          f"{im.original[0]},{im.original[1]},{im.spacing},{im.spacing}")
        for label, (x0, y0, x1, y1) in boxes:
            box_rows.append(f"{im.name},{BOX_NAMES.get(label, label)},{_fmt(x0 * scale)},{_fmt(y0 * scale)},"
                            f"{_fmt((x1 - x0) * scale)},{_fmt((y1 - y0) * scale)}")
            boxes_per_label[label] += 1
        if progress is not None:
            progress(i + 1, n)
    (folder / LABEL_FILE).write_text("\n".join(label_rows) + "\n", encoding="ascii", newline="\n")
    (folder / BOX_FILE).write_text("\n".join(box_rows) + "\n", encoding="ascii", newline="\n")
    official_test = _write_lists(folder, images, seed, site)
    positives = {name: sum(name in im.labels for im in images) for name in NIH_LABELS}
    summary = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "params": {"n": n, "size": size, "seed": seed, "site": site.name},
        "layout": "nih-cxr14",
        "images": n,
        "patients": len({im.patient for im in images}),
        "no_finding": sum(not im.labels for im in images),
        "positives": positives,
        "boxes": len(box_rows) - 1,
        "boxes_per_label": boxes_per_label,
        "official_test": official_test,
    }
    (folder / META_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8", newline="\n")
    log.info("wrote %d synthetic images (%d px, seed %d, site %s) in %.1f s", n, size, seed, site.name,
             time.perf_counter() - start)
    return summary


@section
class SyntheticSection(DatasetSection):
    """The ``dataset`` section of ``kind: synthetic``: the generator's images, PNG size, seed and site."""

    kind: Literal["synthetic"] = "synthetic"
    n: Annotated[int, INT, rule(lambda v: v >= 50, "an integer >= 50", minimum=50)] = 1500
    size: Annotated[int, INT, rule(lambda v: 32 <= v <= 1024, "an integer from 32 to 1024", minimum=32,
                                   maximum=1024)] = 128
    seed: Annotated[int, INT] = 0
    site: Annotated[Literal["a", "b"], CHOICE] = "a"  # b: another hospital (bench/data/synthetic_sites.py)


class SyntheticReader(NIHReader):
    """The ``synthetic`` kind: generated at ``root`` in the NIH layout on first use, then read as NIH."""

    config = SyntheticSection
    root_help = None  # the default root (data/synthetic) is where it is generated

    def prepare(self, progress) -> None:
        ensure_synthetic(self.root, n=self.ds.n, size=self.ds.size, seed=self.ds.seed, site=self.ds.site,
                         progress=progress)

    def read(self, *, labels_only: bool = False):
        rec = read_nih(self.root, labels_only=labels_only)  # the NIH keys do not apply: the generator's files
        rec.kind = "synthetic"
        return rec
