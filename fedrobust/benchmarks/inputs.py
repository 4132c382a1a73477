"""The benchmarks' inputs: seeded float32 update arrays, and the Byzantine counts derived from m."""
from __future__ import annotations

from typing import Tuple

import numpy as np

SEED = 0


def make_updates(m: int, d: int, seed: int = SEED) -> np.ndarray:
    """(m, d) float32 standard normal values, C-contiguous, generated directly in float32."""
    return np.random.default_rng(seed).standard_normal((m, d), dtype=np.float32)


def make_attack_inputs(m: int, d: int, seed: int = SEED) -> Tuple[np.ndarray, np.ndarray]:
    """Realistic updates and global model, float32: U = 0.01 N(0, 1) per entry plus a common
    drift 0.001 N(0, 1) per coordinate (C-contiguous (m, d)); w = 0.1 N(0, 1), shape (d,).
    Generated directly in float32 (no float64 copy of U)."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((m, d), dtype=np.float32)
    U *= np.float32(0.01)
    U += np.float32(0.001) * rng.standard_normal(d, dtype=np.float32)
    w = np.float32(0.1) * rng.standard_normal(d, dtype=np.float32)
    return U, w


def byzantine_count(m: int) -> int:
    """c (Krum, Bulyan, attacked rows) and beta (trimmed mean): m // 5, i.e. 20 for m = 100."""
    return m // 5


def first_rows_mask(m: int, c: int) -> np.ndarray:
    """Boolean mask of shape (m,) selecting the first c rows (the attackers' rows)."""
    return np.arange(m) < c
