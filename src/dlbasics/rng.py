"""Explicit randomness: one seed in params, one derived stream per purpose.

Deriving by name (not by drawing from a parent generator) means adding a new purpose never
shifts the numbers an existing one gets.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, *purpose: str) -> int:
    """A 31-bit seed for `purpose` (e.g. "init", "mlp"), stable across runs and platforms."""
    digest = hashlib.sha256(":".join([str(seed), *purpose]).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def torch_generator(seed: int, *purpose: str) -> torch.Generator:
    """A CPU torch.Generator seeded for `purpose`."""
    return torch.Generator().manual_seed(derive_seed(seed, *purpose))


def numpy_rng(seed: int, *purpose: str) -> np.random.Generator:
    """A numpy Generator seeded for `purpose`."""
    return np.random.default_rng(derive_seed(seed, *purpose))
