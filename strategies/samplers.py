"""Samplers choose each epoch's training rows. All randomness comes from the passed generator.

This module holds the uniform sampler and the random resampling methods of Charte et al.
(Neurocomputing 163, 2015): ML-ROS and ML-RUS. Class-first samplers are in
:mod:`strategies.class_sampling`, the local-imbalance sampler in :mod:`strategies.local_imbalance`.
Resampling is redone every epoch with that epoch's generator, so successive epochs see
different clones / deletions (the paper resamples the dataset once, as a preprocessing step).
"""

from __future__ import annotations

import numpy as np

from strategies.base import Sampler
from strategies.measures import irlbl_from_counts, mean_ir_from_counts


class Uniform(Sampler):
    """Every training image once per epoch, shuffled."""

    irlbl_direction = "none"

    def epoch_indices(self, rng):
        self._require_fit("n_")
        return rng.permutation(self.n_)


class _ChartePercent(Sampler):
    """Shared parameters of ML-ROS / ML-RUS: the budget is ``percentage`` of N rows per epoch."""

    def __init__(self, percentage: float = 0.25):
        self.percentage = percentage

    def check_params(self):
        self._check_range("percentage", 0.0)

    def fit(self, y_train, features=None):
        super().fit(y_train)
        self.pos_ = self.y_ == 1
        self.counts_ = self.pos_.sum(axis=0).astype(np.float64)
        # MeanIR is computed once, on the training labels, as in the paper's pseudo-code.
        self.mean_ir_ = mean_ir_from_counts(self.counts_)
        ir = irlbl_from_counts(self.counts_)
        self.minority_ = np.isfinite(ir) & (ir > self.mean_ir_)
        self.majority_ = np.isfinite(ir) & (ir <= self.mean_ir_)
        self.bags_ = [np.flatnonzero(self.pos_[:, j]) for j in range(self.pos_.shape[1])]
        return self


class MLROS(_ChartePercent):
    """ML-ROS (Charte et al. 2015): clone random images of the minority labels' bags.

    Minority labels are those with IRLbl > MeanIR on the training labels. Until ``percentage`` * N
    clones are added, it goes round the minority bags cloning one random image of each; after each
    clone the bag's IRLbl is recomputed on the current counts (clones included, co-occurring labels
    too) and the bag leaves the round once its IRLbl <= MeanIR (MeanIR fixed at the start). Stops
    early if every bag has left. The epoch is all N originals plus the clones, shuffled.
    """


    def epoch_indices(self, rng):
        self._require_fit("bags_")
        budget = int(round(self.percentage * self.n_))
        counts = self.counts_.copy()
        active = [j for j in np.flatnonzero(self.minority_) if len(self.bags_[j])]
        clones: list[int] = []
        while len(clones) < budget and active:
            for j in list(active):
                bag = self.bags_[j]
                row = int(bag[rng.integers(len(bag))])
                clones.append(row)
                counts += self.pos_[row]
                if counts.max() / counts[j] <= self.mean_ir_:
                    active.remove(j)
                if len(clones) >= budget:
                    break
        rows = np.concatenate([np.arange(self.n_), np.asarray(clones, dtype=np.int64)])
        return rng.permutation(rows)


class MLRUS(_ChartePercent):
    """ML-RUS (Charte et al. 2015), label-less images included: delete random images with no minority label.

    Majority labels have IRLbl <= MeanIR on the training labels, minority labels IRLbl > MeanIR. An
    image is deletable when it carries no minority label: it sits in majority bags only, or in the bag
    of images without any positive label (``No Finding`` in chest X-rays; a row with no known positive
    counts here too). Until ``percentage`` * N images are deleted, each deletion is a uniform draw among
    the images still deletable; after it the label counts are updated, and a label whose IRLbl rises
    above MeanIR (fixed at the start) becomes minority, its images protected from then on. Stops early
    when nothing is deletable. The epoch is the remaining images, shuffled.

    Two departures from the paper's pseudo-code, both because in chest X-ray data the label-less images
    are the largest bag: the paper deletes only from label bags, so label-less images are never touched,
    and it goes round the majority bags deleting one image from each in turn, so a 20,000-image bag loses
    no more images than a 2,000-image one. Together they make the label-less share of the epoch rise and
    strip the smaller majority labels of most of their positives. Here every label-less image is
    deletable, so label-less images go at least in proportion to their share of the epoch (that share
    does not rise, up to chance); the majority labels lose about the same fraction each; MeanIR falls
    because the minority labels keep every image while the largest label shrinks.
    :meth:`imbalance` reports MeanIR and the label-less share before and after.

    >>> y = np.array([[1, 0]] * 6 + [[1, 1]] + [[0, 0]] * 5, dtype=float)  # IRLbl (1, 7): B is minority
    >>> rows = MLRUS(percentage=0.5).fit(y).epoch_indices(np.random.default_rng(0))
    >>> len(rows), bool((y[rows, 1] == 1).any())  # 6 of 12 deleted, B's only image kept
    (6, True)
    """


    def check_params(self):
        self._check_range("percentage", 0.0, 0.9)

    def epoch_indices(self, rng):
        self._require_fit("pos_")
        budget = int(round(self.percentage * self.n_))
        counts = self.counts_.copy()
        protected = self.minority_.copy()
        alive = np.ones(self.n_, dtype=bool)
        deleted = 0
        # A uniform draw among the deletable images at every step: walk one random order and skip what
        # is protected (an image that is skipped never becomes deletable again: protection only grows).
        for row in rng.permutation(self.n_):
            if deleted >= budget:
                break
            labels = self.pos_[row]
            if (labels & protected).any():
                continue
            alive[row] = False
            deleted += 1
            if labels.any():
                counts -= labels
                ir = irlbl_from_counts(counts)
                protected |= np.isfinite(ir) & (ir > self.mean_ir_)
        return rng.permutation(np.flatnonzero(alive))
