"""Per-coordinate statistics over a subset of the workers (the attacks build on these)."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

from fedrobust._native import cpu, cuda
from fedrobust.arrays import accepts_any_array, as_cuda_matrix, as_matrix, as_row_indices, device_call


class CoordinateStats(NamedTuple):
    """Each field has shape (d,) and U's type and dtype."""

    mean: Any
    std: Any  # population standard deviation (divides by the number of rows)
    min: Any
    max: Any


@accepts_any_array(returns="each")
def coordinate_stats(U: Any, rows: Optional[Any] = None) -> CoordinateStats:
    """Mean, population std, min and max of every coordinate over the chosen rows, in one pass.

    rows: a boolean mask of shape (m,) or integer indices; None means all rows.
    Values are read as in the coordinate-wise rules: NaN counts as +Inf. torch CUDA tensors and
    cupy arrays run on their device and give the CPU's bits.
    """
    G = as_cuda_matrix(U)
    if G is not None:  # on the device, the CPU's bits
        idx = [] if rows is None else sorted(as_row_indices(rows, G.shape[0]))
        return CoordinateStats(*device_call(G, lambda *out: cuda.coordinate_stats(G.data, *G.shape, *G.strides, idx,
                                                                                  G.dtype, *out, G.stream),
                                            *[G.shape[1]] * 4))
    X, wrap = as_matrix(U)
    idx = None if rows is None else as_row_indices(rows, X.shape[0])
    return CoordinateStats(*(wrap(a) for a in cpu.coordinate_stats(X, idx)))
