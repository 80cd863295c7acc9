"""The synthetic dataset's sites (a built-in domain shift) and its official split (NIH's two list files).

A **site** is a hospital the synthetic generator (:mod:`bench.data.synthetic`) films at. Site ``a`` is the
default and gives exactly the dataset the generator always wrote. Site ``b`` is another hospital: other
patients (its own random streams), another case mix and another scanner, so a model trained on ``a`` and
tested on ``b`` meets a domain shift of known size. Per image, site ``b`` draws (site ``a``'s in brackets):

* **prevalence**: an inpatient mix, :data:`PREVALENCE_B` (:data:`PREVALENCE_A`, NIH-like): effusion, edema,
  cardiomegaly, pneumothorax, consolidation 1.5 to 3 times as frequent; nodule, mass, emphysema, fibrosis about
  half; AP (portable) films for 55% of the images without a finding and 75% of those with one (30%, 52%);
* **contrast**: an exposure window from black U(0.10, 0.16) to white U(0.74, 0.84) (U(0, 0.06) to
  U(0.88, 1)) and gamma exp(N(0.15, 0.08)) (exp(N(0, 0.08))): darker and flatter;
* **noise**: a standard deviation of U(0.025, 0.04) of the gray-level range (U(0.006, 0.015));
* **field of view**: the anatomy at scale U(0.80, 0.88) of the frame (U(0.93, 1.02)): a wider field, the
  chest smaller in it.

Measured on 150 images a site at 64 px, seed 3 (``tests/test_synthetic_sites.py`` checks each): the median
1st-to-99th percentile gray-level range 144 (177), 0.81x; the median absolute Laplacian 27 (11.5), 2.3x; a
finding's mean box width 0.84x of site a's (median over findings); 18% of the pixels background-dark (10%);
prevalences within sampling error of the configured ones.

The **official split** mimics NIH's release: ``train_val_list.txt`` and ``test_list.txt``, one image name
a line, sorted, patient-wise (every image of a patient in one list), about a fifth of the images in the test
list (NIH: 25,596 of 112,120), and every label with positives on two or more patients positive in both lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import numpy as np

from bench.errors import BenchError

# Image-level prevalence, close to NIH ChestX-ray14 (Hernia raised from 0.2% so small sets have some).
PREVALENCE_A: dict[str, float] = {
    "Atelectasis": 0.103, "Cardiomegaly": 0.025, "Effusion": 0.119, "Infiltration": 0.177, "Mass": 0.052,
    "Nodule": 0.056, "Pneumonia": 0.013, "Pneumothorax": 0.047, "Consolidation": 0.042, "Edema": 0.020,
    "Emphysema": 0.022, "Fibrosis": 0.015, "Pleural_Thickening": 0.030, "Hernia": 0.005,
}
# An inpatient hospital: more fluid, collapse and air, fewer outpatient findings (nodules, masses, COPD).
PREVALENCE_B: dict[str, float] = {
    "Atelectasis": 0.150, "Cardiomegaly": 0.060, "Effusion": 0.200, "Infiltration": 0.150, "Mass": 0.025,
    "Nodule": 0.025, "Pneumonia": 0.030, "Pneumothorax": 0.080, "Consolidation": 0.070, "Edema": 0.060,
    "Emphysema": 0.010, "Fibrosis": 0.007, "Pleural_Thickening": 0.020, "Hernia": 0.005,
}
TEST_SHARE = 0.2  # of the images, in the official test list
TRAIN_VAL_LIST, TEST_LIST = "train_val_list.txt", "test_list.txt"


@dataclass(frozen=True)
class Site:
    """One site's case mix and scanner; every range is that of a uniform draw per image."""

    name: str
    prevalence: dict[str, float]
    ap_share: tuple[float, float]    # P(AP film) for an image without / with a finding
    black: tuple[float, float]       # the exposure window's black level ...
    white: tuple[float, float]       # ... and white level (their gap is the contrast)
    log_gamma: float                 # mean of log(gamma) (sd 0.08)
    noise: tuple[float, float]       # noise sd, as a fraction of the gray-level range
    scale: tuple[float, float]       # the anatomy's scale in the frame (smaller: a wider field of view)
    stream: tuple[int, ...] = ()     # appended to every random stream's key: () keeps site a's original streams


SITES: dict[str, Site] = {
    "a": Site("a", PREVALENCE_A, ap_share=(0.3, 0.52), black=(0.0, 0.06), white=(0.88, 1.0), log_gamma=0.0,
              noise=(0.006, 0.015), scale=(0.93, 1.02)),
    "b": Site("b", PREVALENCE_B, ap_share=(0.55, 0.75), black=(0.10, 0.16), white=(0.74, 0.84), log_gamma=0.15,
              noise=(0.025, 0.04), scale=(0.80, 0.88), stream=(0xB,)),
}


def get_site(name: object) -> Site:
    """The site called ``name``; a one-line error lists the sites otherwise.

    >>> get_site("b").prevalence["Effusion"]
    0.2
    """
    if not isinstance(name, str) or name not in SITES:
        raise BenchError(f"synthetic dataset: site {name!r} is not a site; expected one of "
                         f"{', '.join(repr(s) for s in SITES)}")
    return SITES[name]


class _Row(Protocol):
    name: str
    patient: int
    labels: tuple[str, ...]


def official_test_patients(images: Sequence[_Row], rng: np.random.Generator, *,
                           share: float = TEST_SHARE) -> set[int]:
    """The patients of the official test list: about ``share`` of the images, whole patients, and for every
    label with two or more positive patients about ``share`` of them (at least one, never all).

    >>> from types import SimpleNamespace as R
    >>> rows = [R(name=f"{p}_{k}", patient=p, labels=("Mass",) if p < 3 else ()) for p in range(10) for k in (0, 1)]
    >>> test = official_test_patients(rows, np.random.default_rng(0))
    >>> len(test), len(test & {0, 1, 2})
    (2, 1)
    """
    count: dict[int, int] = {}
    positive: dict[str, set[int]] = {}
    for im in images:
        count[im.patient] = count.get(im.patient, 0) + 1
        for label in im.labels:
            positive.setdefault(label, set()).add(im.patient)
    labels_of: dict[int, set[str]] = {}
    for label, patients in positive.items():
        for p in patients:
            labels_of.setdefault(p, set()).add(label)
    order = [int(p) for p in rng.permutation(sorted(count))]
    left = {label: len(patients) for label, patients in positive.items()}  # positive patients in train_val
    test: set[int] = set()

    def take(p: int) -> bool:
        if p in test or any(left[label] <= 1 for label in labels_of.get(p, ())):
            return False  # never the last positive patient of a label
        test.add(p)
        for label in labels_of.get(p, ()):
            left[label] -= 1
        return True

    for label in sorted(positive, key=lambda lab: (len(positive[lab]), lab)):  # rarest first
        want = max(1, round(share * len(positive[label]))) if len(positive[label]) >= 2 else 0
        for p in order:
            if len(positive[label] & test) >= want:
                break
            if p in positive[label]:
                take(p)
    target, taken = round(share * len(images)), sum(count[p] for p in test)
    for p in order:
        if taken >= target:
            break
        if take(p):
            taken += count[p]
    return test


def list_files(images: Iterable[_Row], test_patients: set[int]) -> dict[str, str]:
    """The text of ``train_val_list.txt`` and ``test_list.txt``: sorted image names, one a line."""
    names = {TRAIN_VAL_LIST: [], TEST_LIST: []}
    for im in images:
        names[TEST_LIST if im.patient in test_patients else TRAIN_VAL_LIST].append(im.name)
    return {file: "".join(f"{name}\n" for name in sorted(rows)) for file, rows in names.items()}
