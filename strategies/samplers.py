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

    name = "none"
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

    name = "ml_ros"

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
    """ML-RUS (Charte et al. 2015): delete random images carrying only majority labels.

    Majority labels have IRLbl <= MeanIR on the training labels. Until ``percentage`` * N images are
    deleted, it goes round the majority bags deleting one random image of each; only images whose
    positive labels are all majority may go, so an image with a minority label is never deleted.
    After each deletion the counts are updated; a label whose IRLbl rises above MeanIR (fixed at the
    start) becomes minority: its bag leaves the round and its images are protected from then on.
    Images with no positive label are in no bag and are kept. Stops early when no bag can delete.
    The epoch is the remaining images, shuffled.
    """

    name = "ml_rus"

    def epoch_indices(self, rng):
        self._require_fit("bags_")
        budget = int(round(self.percentage * self.n_))
        counts = self.counts_.copy()
        protected = self.minority_.copy()
        alive = np.ones(self.n_, dtype=bool)
        # Each bag in a random order: the next alive, deletable image is a uniform draw among them
        # (an image that is skipped never becomes deletable again: alive and protected only shrink / grow).
        order = {int(j): rng.permutation(self.bags_[j]) for j in np.flatnonzero(self.majority_)}
        cursor = dict.fromkeys(order, 0)
        active = [j for j in order if len(order[j])]
        deleted = 0
        while deleted < budget and active:
            for j in list(active):
                if j not in active:
                    continue
                row = self._next_deletable(order[j], cursor, j, alive, protected)
                if row is None:
                    active.remove(j)
                    continue
                alive[row] = False
                counts -= self.pos_[row]
                deleted += 1
                ir = irlbl_from_counts(counts)
                became = np.isfinite(ir) & (ir > self.mean_ir_) & ~protected
                if became.any():
                    protected |= became
                    active = [k for k in active if not protected[k]]
                if deleted >= budget:
                    break
        return rng.permutation(np.flatnonzero(alive))

    def _next_deletable(self, order, cursor, j, alive, protected):
        while cursor[j] < len(order):
            row = int(order[cursor[j]])
            cursor[j] += 1
            if alive[row] and not (self.pos_[row] & protected).any():
                return row
        return None
