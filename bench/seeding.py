"""The one place that seeds global RNGs; everything else receives explicit generators."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts) -> int:
    """A stable 31-bit seed from any parts: ``derive_seed(seed, "epoch", 3)``."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def numpy_rng(*parts) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))


def torch_generator(*parts, device: str = "cpu"):
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g


def seed_torch(*parts) -> None:
    """Seed torch's global RNG (weight init, dropout) for a trial; the only global seeding."""
    import torch

    torch.manual_seed(derive_seed(*parts))
