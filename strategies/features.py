"""Per-image feature vectors for samplers that need neighbours (``needs_features``).

>>> import numpy as np
>>> images = np.random.default_rng(0).random((50, 64, 64))
>>> pixel_pca(images, size=16, n_components=8, rng=np.random.default_rng(0)).shape
(50, 8)
"""

from __future__ import annotations

import numpy as np


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Area-average (N, H, W) or (N, C, H, W) images to (N, [C,] size, size) (no resampling library)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {x.shape}")
    for axis in (-2, -1):
        n = x.shape[axis]
        if n <= size:
            continue
        edges = np.linspace(0, n, size + 1).astype(int)
        x = np.add.reduceat(x, edges[:-1], axis=axis) / np.diff(edges).reshape(
            (-1, 1) if axis == -2 else (1, -1)).astype(np.float32)
    return x


def pixel_pca(images: np.ndarray, *, size: int = 16, n_components: int = 32,
              rng: np.random.Generator) -> np.ndarray:
    """PCA embedding (N, n_components) of downsampled, per-image standardised training images.

    Fit it on the training images only; the rows follow the order of the training labels.
    """
    from sklearn.decomposition import PCA

    x = downsample(images, size).reshape(len(images), -1)
    x = (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)
    k = int(min(n_components, x.shape[0], x.shape[1]))
    pca = PCA(n_components=k, svd_solver="randomized", random_state=int(rng.integers(2**31 - 1)))
    return pca.fit_transform(x).astype(np.float32)
