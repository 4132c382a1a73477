"""Scalar and index parameters of the public functions: counts (c, beta), integers, row
selections. (Array arguments are `fedrobust.dispatch`'s.)"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

MAX_INT = 2**62  # the largest count the native modules take (their checks form 2c + 2 without overflow)


def as_int(value: Any, name: str) -> int:
    """An integer parameter in [-2**62, 2**62]; TypeError for floats, bools and other types."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None
    if abs(v) > MAX_INT:
        raise ValueError(f"{name} must be at most 2**62 in magnitude, got {v}")
    return v


def as_bool(value: Any, name: str) -> bool:
    """A flag: True or False (a numpy bool too); TypeError for anything else, such as the
    string "False", which would otherwise count as true."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")


def as_count(value: Any, name: str) -> int:
    """A non-negative integer parameter (c, beta)."""
    v = as_int(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def as_row_indices(rows: Any, m: int, name: str = "rows") -> list:
    """Row indices from a boolean mask of length m or a sequence of integer indices in [0, m)."""
    r = np.asarray(rows)
    if r.size == 0:
        raise ValueError(f"{name}: expected at least one row, got none")
    if r.dtype == np.bool_:
        if r.shape != (m,):
            raise ValueError(f"{name}: a boolean mask must have shape ({m},), got {r.shape}")
        idx = np.flatnonzero(r)
    elif r.dtype.kind in "iu" and r.ndim == 1:
        idx = r.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= m):
            raise ValueError(f"{name}: indices must lie in [0, {m}), got min {idx.min()} and max {idx.max()}")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"{name}: indices must be distinct")
    else:
        raise TypeError(f"{name}: expected a boolean mask of shape ({m},) or 1-D integer indices, "
                        f"got dtype {r.dtype} with shape {r.shape}")
    if idx.size == 0:
        raise ValueError(f"{name}: expected at least one row, got none")
    return idx.tolist()
