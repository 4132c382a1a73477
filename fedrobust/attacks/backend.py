"""The few array operations the attacks need, for numpy arrays (CPU kernels) and torch CUDA
tensors (CUDA kernels; `fedrobust run --device cuda`): the attack code is written once.

The crafted values come from the same kernels' logic on both (csrc/include/fedrobust/craft.h,
random.h), so a CUDA run crafts the CPU's bits; directions and metrics use the array
library's own reductions.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from fedrobust._native import cpu, cuda
from fedrobust.arrays import as_cuda_matrix


def on_device(U: Any) -> bool:
    return not isinstance(U, np.ndarray)


def signs(x: Any) -> Any:
    """(d,) int8 signs; NaN counts as 0."""
    if on_device(x):
        import torch

        return (x > 0).to(torch.int8) - (x < 0).to(torch.int8)
    x = np.asarray(x)
    return (x > 0).astype(np.int8) - (x < 0).astype(np.int8)


def row_mean(U: Any, rows: Optional[Sequence[int]] = None) -> Any:
    """Mean of the given rows (all by default), (d,)."""
    if on_device(U):
        return (U if rows is None else U[list(rows)]).double().mean(dim=0)
    return cpu.mean(U) if rows is None else cpu.mean(U, list(rows))


def extremes(U: Any, rows: Sequence[int]) -> Tuple[Any, Any]:
    """Per-coordinate (minimum, maximum) of the given rows."""
    if on_device(U):
        sub = U[list(rows)]
        return sub.amin(dim=0), sub.amax(dim=0)
    _, _, lo, hi = cpu.coordinate_stats(U, list(rows))
    return lo, hi


def fraction(mask: Any) -> float:
    """The fraction of True entries of a boolean array."""
    return float(mask.float().mean()) if on_device(mask) else float(np.mean(mask))


def count(mask: Any) -> int:
    return int(mask.sum())


def craft(U: Any, rows: Sequence[int], mode: str, ids: np.ndarray, seed: int, round: int,
          direction: Any = None, base: Any = None, b: float = 2.0, sigma: Tuple[float, float] = (3.0, 4.0)):
    """The crafting kernel (csrc/cpu/attacks.cpp or csrc/cuda/attacks.cu): (values (n, d) in U's
    dtype, the direction used (d,) int8) for the n = len(ids) output rows."""
    if not on_device(U):
        return cpu.craft_coordinates(U, list(rows), mode, ids, seed, round, direction=direction, base=base, b=b,
                                     sigma_lo=sigma[0], sigma_hi=sigma[1])
    import torch

    G = as_cuda_matrix(U)
    if G is None or not isinstance(U, torch.Tensor):
        raise TypeError(f"the attacks take numpy arrays or torch CUDA tensors, got {type(U).__name__}")
    d = U.shape[1]
    out = torch.empty((len(ids), d), dtype=U.dtype, device=U.device)
    used = torch.empty(d, dtype=torch.int8, device=U.device)
    s = None if direction is None else direction.to(device=U.device, dtype=torch.int8).contiguous()
    w = None if base is None else base.to(device=U.device, dtype=U.dtype).contiguous()
    with G.device():
        cuda.craft_coordinates(G.data, *G.shape, *G.strides, list(rows), mode, [int(i) for i in ids], seed, round,
                               0 if s is None else s.data_ptr(), 0 if w is None else w.data_ptr(), b, sigma[0],
                               sigma[1], G.dtype, out.data_ptr(), used.data_ptr(), G.stream)
    return out, used
