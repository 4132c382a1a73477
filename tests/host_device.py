"""fedrobust._cuda's entry points stood in for by the CPU code on host memory, so that the
CUDA backend's Python side (fedrobust.dispatch.CudaBackend, and through it every rule,
statistic and attack) runs on a machine without a GPU: with the `host_as_device` fixture,
CPU torch tensors play CUDA tensors, dispatched to a CudaBackend whose native module is
`HostKernels` and whose array library is `HostTorch`.

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

from fedrobust import _emulation, dispatch
from fedrobust._native import cpu


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
    def check_multi_krum(m, c, multi):
        cpu.check_multi_krum(m, c, multi)

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
        scores = cpu.krum_scores_from_distances(sq, c, squared)
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


class HostTorch(dispatch._TorchCuda):
    """CPU torch tensors as the CUDA backend's array library: host addresses, stream 0, no
    device to make current; allocation, copies and casts as for CUDA tensors."""

    @staticmethod
    def matrix(A):
        return dispatch.DeviceMatrix(A.data_ptr(), tuple(A.shape), tuple(A.stride()),
                                     str(A.dtype).replace("torch.", ""), 0)

    @staticmethod
    def device(like):
        return contextlib.nullcontext()


EMULATED_CUDA = dispatch.CudaBackend(HostKernels, HostTorch)


@pytest.fixture
def host_as_device(monkeypatch):
    """CPU torch tensors take the CUDA backend (the one dispatch point is patched, nothing else)."""
    torch = pytest.importorskip("torch")
    real = dispatch.matrix

    def matrix(U, name="U"):
        A, backend, wrap = real(U, name)
        if isinstance(U, torch.Tensor) and U.device.type == "cpu":
            return U.detach(), EMULATED_CUDA, dispatch._identity
        return A, backend, wrap

    monkeypatch.setattr(dispatch, "matrix", matrix)
    return torch
