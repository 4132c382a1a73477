"""Per-coordinate statistics over a subset of the workers (the attacks build on these)."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

from fedrobust import aggregators, dispatch
from fedrobust.params import as_row_indices


class CoordinateStats(NamedTuple):
    """Each field has shape (d,) and U's type and dtype."""

    mean: Any
    std: Any  # population standard deviation (divides by the number of rows)
    min: Any
    max: Any


def coordinate_stats(U: Any, rows: Optional[Any] = None) -> CoordinateStats:
    """Mean, population std, min and max of every coordinate over the chosen rows, in one pass.

    rows: a boolean mask of shape (m,) or integer indices; None means all rows.
    Values are read as in the coordinate-wise rules: NaN counts as +Inf. Every backend gives
    the same bits (the rows are summed in ascending order).
    """
    A, backend, wrap = dispatch.matrix(U)
    idx = None if rows is None else as_row_indices(rows, A.shape[0])
    stats = CoordinateStats(*backend.coordinate_stats(A, idx))
    for name in ("mean", "std"):
        aggregators.refuse_overflow(A, backend, getattr(stats, name), f"coordinate_stats' {name}", idx)
    return dispatch.wrap_each(wrap, stats)
