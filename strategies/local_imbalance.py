"""MLSOL-weighted random oversampling of real images (``local_imbalance_ros``); not MLSOL itself.

MLSOL (Liu, Blekas & Tsoumakas 2021) picks *seed* instances with probabilities from their local label
imbalance and creates synthetic instances by interpolating a seed with a neighbour, features and labels
alike. This sampler keeps only the first half: it draws seeds with MLSOL's weights and adds *copies of the
real seed images*; it synthesises nothing, so it is weighted random oversampling, and it is registered
under that name (the old name ``mlsol`` answers with an error that says so). Interpolating chest X-rays
pixel by pixel gives double-exposed images with no valid label, and interpolated embeddings cannot be
decoded back into images, which is why the synthesis step is left out rather than imitated.

1. k nearest neighbours of every training image in a feature space (``sklearn`` NearestNeighbors,
   Euclidean, the image itself excluded), from per-image ``features`` passed to ``fit``.
2. For label l, its minority value m_l is the rarer of 1 / 0 among the known entries. For image i
   holding the minority value, C_il = share of its neighbours (with label l known) whose value differs;
   other entries have no C.
3. Weights as in MLSOL: entries with C_il = 1 (all neighbours differ: outliers) get 0, the others
   S_il = C_il / sum_i C_il within label l, and image i gets w_i = sum_l S_il. So each label carries the
   same total weight, spread over its minority images in locally imbalanced neighbourhoods.
4. Each epoch is all N images once plus ``percentage`` * N extra draws (with replacement) with
   probabilities proportional to w. If every w is 0 (all minority images safe or outliers), the
   extra draws are uniform over the images holding a minority value.
"""

from __future__ import annotations

import numpy as np

from strategies.base import Sampler


class LocalImbalance(Sampler):
    """MLSOL-weighted ROS: copy minority-label images whose neighbourhood is imbalanced (no synthesis).

    ``fit(y, features=X)`` needs ``X`` of shape (N, D), one finite row per training image in label order.
    """

    needs_features = True

    def __init__(self, percentage: float = 0.25, k: int = 5):
        self.percentage = percentage
        self.k = k

    def check_params(self):
        self._check_range("percentage", 0.0)
        if not isinstance(self.k, (int, np.integer)) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"LocalImbalance: k={self.k!r} must be a positive integer")

    def fit(self, y_train, features=None):
        super().fit(y_train)
        x = self._check_features(features)
        self.neighbors_ = self._neighbors(x)
        self.local_imbalance_ = self._local_imbalance(self.y_, self.neighbors_)
        self.weights_ = self._weights(self.local_imbalance_)
        return self

    def epoch_indices(self, rng):
        self._require_fit("weights_")
        extra = int(round(self.percentage * self.n_))
        w = self.weights_
        if w.sum() <= 0:
            w = np.isfinite(self.local_imbalance_).any(axis=1).astype(np.float64)
        if extra and w.sum() > 0:
            picks = rng.choice(self.n_, size=extra, p=w / w.sum())
        else:
            picks = np.empty(0, dtype=np.int64)
        return rng.permutation(np.concatenate([np.arange(self.n_), picks]))

    # -- steps ---------------------------------------------------------------------------------------
    def _check_features(self, features) -> np.ndarray:
        if features is None:
            raise ValueError(
                f"sampler {self.name!r} needs per-image features: call fit(y_train, features=X) with X of shape "
                f"(N={self.n_}, D), e.g. PCA of downsampled training images or penultimate activations")
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) != self.n_:
            raise ValueError(f"sampler {self.name!r}: features must have shape (N={self.n_}, D), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"sampler {self.name!r}: features contain NaN or inf")
        if self.n_ <= self.k:
            raise ValueError(
                f"sampler {self.name!r}: k={self.k} needs more than {self.k} training images, got {self.n_}")
        return x

    def _neighbors(self, x: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import NearestNeighbors

        # Without a query, kneighbors leaves each training point out of its own neighbours.
        return NearestNeighbors(n_neighbors=self.k).fit(x).kneighbors(return_distance=False)

    @staticmethod
    def _local_imbalance(y: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
        """C (N, L): share of differing neighbours for minority-value entries, NaN elsewhere."""
        known = ~np.isnan(y)
        ones = np.where(known, y, 0).sum(axis=0)
        zeros = known.sum(axis=0) - ones
        minority_value = (ones <= zeros).astype(np.float64)  # 1 unless positives are the majority
        neigh_y = y[neighbors]  # (N, k, L)
        neigh_known = ~np.isnan(neigh_y)
        differ = (neigh_known & (neigh_y != y[:, None, :])).sum(axis=1)
        n_known = neigh_known.sum(axis=1)
        is_minority = known & (y == minority_value[None, :]) & (n_known > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(is_minority, differ / np.maximum(n_known, 1), np.nan)

    @staticmethod
    def _weights(c: np.ndarray) -> np.ndarray:
        """w_i = sum_l C_il / sum_i C_il over non-outlier minority entries (C < 1)."""
        usable = np.where(np.isfinite(c) & (c < 1), c, 0.0)
        totals = usable.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(totals > 0, usable / np.where(totals > 0, totals, 1.0), 0.0)
        return s.sum(axis=1)
