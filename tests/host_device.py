"""fedrobust._cuda's entry points stood in for by the CPU code on host memory, so that the
Python side of every device path (fedrobust.aggregators, stats, attacks.backend) runs on a
machine without a GPU: CPU torch tensors play CUDA tensors, and the `host_as_device` fixture
points those modules' `cuda` and `as_cuda_matrix` here.

Each stand-in takes the binding's arguments under the binding's names, in its order
(test_device_paths.py checks them against the built module's signatures), reads the raw
addresses it is given, and writes its outputs there, as the kernels do. Where the kernel's
per-column code is on the CPU (column.h through _emulation.column_rule_scalar), the stand-in runs
that code; elsewhere it runs the CPU kernel of the same name.
"""
from __future__ import annotations

import contextlib
import ctypes

import numpy as np
import pytest

from fedrobust import aggregators, stats
from fedrobust import _emulation
from fedrobust._native import cpu
from fedrobust.arrays import CudaMatrix
from fedrobust.attacks import backend
from fedrobust.attacks.krum import krum_scores_from


def host_view(ptr: int, m: int, d: int, row_stride: int, col_stride: int, dtype) -> np.ndarray:
    """The (m, d) numpy view of host memory at address ptr, strides in elements."""
    dt = np.dtype(dtype)
    corners = [0, (m - 1) * row_stride, (d - 1) * col_stride, (m - 1) * row_stride + (d - 1) * col_stride]
    lo, hi = min(corners), max(corners)
    flat = np.frombuffer((ctypes.c_char * ((hi - lo + 1) * dt.itemsize)).from_address(ptr + lo * dt.itemsize), dt)
    return np.lib.stride_tricks.as_strided(flat[-lo:], (m, d), (row_stride * dt.itemsize, col_stride * dt.itemsize))


def host_vector(ptr: int, n: int, dtype) -> np.ndarray:
    return host_view(ptr, 1, n, n, 1, dtype)[0]


class HostKernels:
    """The entry points of fedrobust._cuda that the Python code calls, on host memory."""

    @staticmethod
    def median(data, m, d, row_stride, col_stride, dtype, out, stream):
        U = host_view(data, m, d, row_stride, col_stride, dtype)
        host_vector(out, d, dtype)[:] = _emulation.column_rule_scalar(U, "median", network=m <= 128)

    @staticmethod
    def trimmed_mean(data, m, d, row_stride, col_stride, beta, dtype, out, stream):
        U = host_view(data, m, d, row_stride, col_stride, dtype)
        host_vector(out, d, dtype)[:] = _emulation.column_rule_scalar(U, "trimmed_mean", beta, network=m <= 128)

    @staticmethod
    def mean(data, m, d, row_stride, col_stride, rows, dtype, out, stream):
        U = host_view(data, m, d, row_stride, col_stride, dtype)
        host_vector(out, d, dtype)[:] = _emulation.column_rule_scalar(U, "mean", rows=rows)

    @staticmethod
    def coordinate_stats(data, m, d, row_stride, col_stride, rows, dtype, mean, std, min, max, stream):
        U = host_view(data, m, d, row_stride, col_stride, dtype)
        for ptr, values in zip((mean, std, min, max), _emulation.column_rule_scalar(U, "stats", rows=rows)):
            host_vector(ptr, d, dtype)[:] = values

    @staticmethod
    def bulyan(data, m, d, row_stride, col_stride, c, squared, dtype, out, stream):
        U = host_view(data, m, d, row_stride, col_stride, dtype)
        chosen = cpu.bulyan(U, c, squared)[1].tolist()
        host_vector(out, d, dtype)[:] = _emulation.column_rule_scalar(U, "bulyan", rows=chosen, gamma=m - 4 * c)
        return chosen

    @staticmethod
    def pairwise_distances(data, m, d, row_stride, col_stride, dtype, squared, out, stream):
        U = host_view(data, m, d, row_stride, col_stride, dtype)
        host_view(out, m, m, m, 1, dtype)[...] = cpu.pairwise_distances(U, squared)

    @staticmethod
    def sq_distances(data, m, d, row_stride, col_stride, dtype, stream):
        return cpu.pairwise_distances(host_view(data, m, d, row_stride, col_stride, dtype), True, None, True)

    @staticmethod
    def krum_select(data, m, d, row_stride, col_stride, dtype, c, squared, stream):
        sq = cpu.pairwise_distances(host_view(data, m, d, row_stride, col_stride, dtype), True, None, True)
        scores = krum_scores_from(sq, c, squared)
        return int(np.argmin(scores)), scores.tolist()

    @staticmethod
    def craft_coordinates(data, m, d, row_stride, col_stride, rows, mode, out_ids, seed, round, direction, base, b,
                          sigma_lo, sigma_hi, dtype, out, direction_out, stream):
        U = host_view(data, m, d, row_stride, col_stride, dtype)
        s = host_vector(direction, d, np.int8).copy() if direction else None
        w = host_vector(base, d, dtype).copy() if base else None
        values, used = cpu.craft_coordinates(U, rows, mode, np.asarray(out_ids, dtype=np.int64), seed, round,
                                             direction=s, base=w, b=b, sigma_lo=sigma_lo, sigma_hi=sigma_hi)
        host_view(out, len(out_ids), d, d, 1, dtype)[...] = values
        host_vector(direction_out, d, np.int8)[:] = used

    @staticmethod
    def norms_and_dots(data, m, d, row_stride, col_stride, dtype, direction, stream):
        s = host_vector(direction, d, np.int8).copy()
        return cpu.norms_and_dots(host_view(data, m, d, row_stride, col_stride, dtype), s)

    @staticmethod
    def krum_craft(direction, d, lam, eps, seed, round, out_ids, dtype, out, stream):
        s = host_vector(direction, d, np.int8).copy()
        host_view(out, len(out_ids), d, d, 1, dtype)[...] = cpu.krum_craft(
            s, lam, eps, seed, round, np.asarray(out_ids, dtype=np.int64), np.dtype(dtype))


STAND_INS = [name for name in vars(HostKernels) if not name.startswith("_")]


def host_cuda_matrix(U, name="U"):
    """The CudaMatrix of a CPU torch tensor (its host address), None for anything else."""
    import torch

    if not isinstance(U, torch.Tensor):
        return None
    t = U.detach()
    return CudaMatrix(t.data_ptr(), tuple(t.shape), tuple(t.stride()), str(t.dtype).replace("torch.", ""), 0,
                      lambda n: torch.empty(n, dtype=t.dtype), lambda a: torch.as_tensor(a, dtype=t.dtype),
                      contextlib.nullcontext)


@pytest.fixture
def host_as_device(monkeypatch):
    """CPU torch tensors take the device paths of aggregators, stats and the attacks' backend."""
    torch = pytest.importorskip("torch")
    for module in (aggregators, stats, backend):
        monkeypatch.setattr(module, "as_cuda_matrix", host_cuda_matrix)
        monkeypatch.setattr(module, "cuda", HostKernels)
    return torch
