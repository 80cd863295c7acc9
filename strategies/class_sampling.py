"""Class-first samplers: pick a class, then an image of that class.

Multi-label version used here: the classes are the labels with at least one training positive,
plus (``no_finding="class"``) one extra class made of the images with no positive label, so that
normal images keep being seen; with ``no_finding="skip"`` those images are never drawn. Each of the
``epoch_size`` * N draws picks class c with probability proportional to n_c ** power (n_c = its
images), then an image of c. Within a class, images come from a shuffled list that is reshuffled
when exhausted (Shen et al. 2016), so every image of a class is seen before any is repeated.
An image with several labels can be reached through each of them; its total probability is
proportional to the sum over its classes of n_c ** power / n_c.

- ``power = 0``: class-aware sampling (Shen et al., ECCV 2016), every class equally often.
- ``power = 1/2``: square-root sampling (Mahajan et al. 2018; Kang et al., ICLR 2020).
- ``power = 1``: classes in proportion to their size (close to uniform image sampling).
"""

from __future__ import annotations

import numpy as np

from strategies.base import Sampler


class _ClassFirst(Sampler):
    """Pick a class with probability proportional to n_c ** power, then one of its images."""

    power = 0.0

    def check_params(self):
        self._check_choice("no_finding", ("class", "skip"))
        self._check_range("epoch_size", 0.0)
        self._check_range("power", 0.0, 1.0)

    def fit(self, y_train, features=None):
        super().fit(y_train)
        pos = self.y_ == 1
        classes = [np.flatnonzero(pos[:, j]) for j in range(pos.shape[1])]
        empty = np.flatnonzero(~pos.any(axis=1))
        if self.no_finding == "class":
            classes.append(empty)
        self.classes_ = [c for c in classes if len(c)]
        if not self.classes_:
            raise ValueError("no class has a training image to sample from")
        sizes = np.array([len(c) for c in self.classes_], dtype=np.float64)
        weights = sizes ** float(self.power)
        self.class_probs_ = weights / weights.sum()
        return self

    def epoch_indices(self, rng):
        self._require_fit("classes_")
        total = int(round(self.epoch_size * self.n_))
        picks = rng.choice(len(self.classes_), size=total, p=self.class_probs_)
        rows = np.empty(total, dtype=np.int64)
        for c in np.flatnonzero(np.bincount(picks, minlength=len(self.classes_))):
            where = np.flatnonzero(picks == c)
            members = self.classes_[c]
            cycles = -(-len(where) // len(members))
            stream = np.concatenate([rng.permutation(members) for _ in range(cycles)])
            rows[where] = stream[: len(where)]
        return rows


class ClassAware(_ClassFirst):
    """Class-aware sampling (Shen et al. 2016): a class uniformly, then an image of that class."""


    def __init__(self, no_finding: str = "class", epoch_size: float = 1.0):
        self.no_finding = no_finding
        self.epoch_size = epoch_size


class SquareRoot(_ClassFirst):
    """Square-root sampling: a class with probability proportional to sqrt(n_c) (``power``), then an image."""


    def __init__(self, power: float = 0.5, no_finding: str = "class", epoch_size: float = 1.0):
        self.power = power
        self.no_finding = no_finding
        self.epoch_size = epoch_size
