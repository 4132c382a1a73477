"""The few array operations the attacks need, for numpy arrays (CPU kernels) and torch CUDA
tensors (CUDA kernels; `fedrobust run --device cuda`): the attack code is written once.

The crafted values come from the same kernels' logic on both (csrc/include/fedrobust/craft.h,
krum_craft.h, random.h), so a CUDA run crafts the CPU's bits; directions and metrics use the
array library's own reductions. The Krum attack's distances, norms and dots come back to the
host as float64 numpy arrays: its lambda search is O(m^2) scalar work there.
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


def ones(U: Any) -> Any:
    """(d,) int8 ones on U's device: the direction s = 1 of the deviation goal."""
    if on_device(U):
        import torch

        return torch.ones(U.shape[1], dtype=torch.int8, device=U.device)
    return np.ones(U.shape[1], dtype=np.int8)


def _cuda_matrix(U: Any):
    """The CudaMatrix of a torch CUDA tensor; TypeError for anything else on a device."""
    import torch

    G = as_cuda_matrix(U)
    if G is None or not isinstance(U, torch.Tensor):
        raise TypeError(f"the attacks take numpy arrays or torch CUDA tensors, got {type(U).__name__}")
    return G


def _device_direction(s: Any, U: Any) -> Any:
    """The direction s (d,) as a contiguous int8 tensor on U's device (what the CUDA kernels read)."""
    import torch

    s = torch.as_tensor(s).to(device=U.device, dtype=torch.int8).contiguous()
    if s.shape != (U.shape[1],):
        raise ValueError(f"direction: expected {U.shape[1]} signs (one per column of U), got shape {tuple(s.shape)}")
    return s


def craft(U: Any, rows: Sequence[int], mode: str, ids: np.ndarray, seed: int, round: int,
          direction: Any = None, base: Any = None, b: float = 2.0, sigma: Tuple[float, float] = (3.0, 4.0)):
    """The crafting kernel (csrc/cpu/attacks.cpp or csrc/cuda/attacks.cu): (values (n, d) in U's
    dtype, the direction used (d,) int8) for the n = len(ids) output rows."""
    if not on_device(U):
        return cpu.craft_coordinates(U, list(rows), mode, ids, seed, round, direction=direction, base=base, b=b,
                                     sigma_lo=sigma[0], sigma_hi=sigma[1])
    import torch

    G = _cuda_matrix(U)
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


def sq_distances(U: Any, rows: Optional[Sequence[int]] = None) -> np.ndarray:
    """(n, n) float64 squared distances ||u_a - u_b||^2 between the given rows (all m by default),
    in that order, as a host numpy array (the distance kernel; on a device the rows are
    gathered there first)."""
    if not on_device(U):
        return cpu.pairwise_distances(U, True, None if rows is None else list(rows), True)
    sub = U if rows is None else U[list(rows)]
    G = _cuda_matrix(sub)
    with G.device():
        return cuda.sq_distances(G.data, *G.shape, *G.strides, G.dtype, G.stream)


def norms_and_dots(U: Any, s: Any, rows: Optional[Sequence[int]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(||u_i||^2 (n,), <u_i, s> (n,)) in float64 on the host, for the given rows (all m by
    default) and the direction s (d,) int8."""
    if not on_device(U):
        return cpu.norms_and_dots(U, s, None if rows is None else list(rows))
    sub = U if rows is None else U[list(rows)]
    G = _cuda_matrix(sub)
    s_dev = _device_direction(s, U)
    with G.device():
        return cuda.norms_and_dots(G.data, *G.shape, *G.strides, G.dtype, s_dev.data_ptr(), G.stream)


def krum_craft(U: Any, s: Any, lam: float, eps: float, seed: int, round: int, ids: Sequence[int]) -> Any:
    """The Krum attack's n = len(ids) sent updates (n, d), in U's dtype and on U's device:
    row 0 = -lam s, row k >= 1 = -lam s + (r_k / ||z_k||) z_k with z_k the counter normals of
    worker ids[k] and r_k in [0, eps) (csrc/include/fedrobust/krum_craft.h; the same bits on
    both backends)."""
    if not on_device(U):
        return cpu.krum_craft(s, lam, eps, seed, round, np.asarray(ids, dtype=np.int64), U.dtype)
    import torch

    G = _cuda_matrix(U)
    d = U.shape[1]
    s_dev = _device_direction(s, U)
    out = torch.empty((len(ids), d), dtype=U.dtype, device=U.device)
    with G.device():
        cuda.krum_craft(s_dev.data_ptr(), d, float(lam), float(eps), seed, round, [int(i) for i in ids], G.dtype,
                        out.data_ptr(), G.stream)
    return out
