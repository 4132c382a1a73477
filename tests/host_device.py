"""The CUDA backend's Python side run on a machine without a GPU: with the `host_as_device`
fixture, CPU torch tensors play CUDA tensors, dispatched to a `Backend` whose array library
is `HostTorch` (torch's allocation, copies and casts, on the CPU) and whose native module is
`HostKernels`.

fedrobust._cuda and fedrobust._cpu have the same functions with the same signatures
(test_device_paths.py checks it), and both read CPU torch tensors (through DLPack), so
HostKernels is the CPU module, except where the CUDA kernels' own per-column code and
steps are on the CPU (fedrobust/column.h and krum_craft.h through fedrobust._emulation):
there its functions run that code.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from fedrobust import _emulation, dispatch
from fedrobust._native import cpu


def _host(U) -> np.ndarray:
    return np.from_dlpack(U)


def median(U, rows, out):
    A = _host(U) if rows is None else _host(U)[sorted(rows)]
    _host(out)[:] = _emulation.column_rule_scalar(A, "median", network=A.shape[0] <= 128)


def trimmed_mean(U, beta, rows, out):
    A = _host(U) if rows is None else _host(U)[sorted(rows)]
    cpu.check_trimmed_mean(A.shape[0], beta)
    _host(out)[:] = _emulation.column_rule_scalar(A, "trimmed_mean", beta, network=A.shape[0] <= 128)


def leave_one_out_median(U, out):
    _host(out)[:] = _emulation.column_rule_scalar(_host(U), "leave_one_out_median")


def leave_one_out_trimmed_mean(U, beta, out):
    _host(out)[:] = _emulation.column_rule_scalar(_host(U), "leave_one_out_trimmed_mean", beta)


def mean(U, rows, out):
    rows = [] if rows is None else sorted(rows)
    _host(out)[:] = _emulation.column_rule_scalar(_host(U), "mean", rows=rows)


def coordinate_stats(U, rows, mean, std, min, max):
    rows = [] if rows is None else sorted(rows)
    for out, values in zip((mean, std, min, max), _emulation.column_rule_scalar(_host(U), "stats", rows=rows)):
        _host(out)[:] = values


def bulyan(U, c, squared, out):
    A = _host(U)
    chosen = cpu.bulyan(A, c, squared, np.empty(A.shape[1], A.dtype))
    _host(out)[:] = _emulation.column_rule_scalar(A, "bulyan", rows=chosen.tolist(), gamma=A.shape[0] - 4 * c)
    return chosen


def closest_to_median_mean(U, gamma, rows, out):
    _host(out)[:] = _emulation.column_rule_scalar(_host(U), "bulyan", rows=sorted(rows), gamma=gamma)


def krum_choose(U, c, multi, squared):
    """The CUDA module's krum_choose: krum_select's rows (the device scores every row anyway)."""
    return cpu.krum_select(U, c, multi, squared)[0], -1


def krum_craft(direction, lam, eps, seed, round, out_ids, out):
    _emulation.krum_craft_scalar(_host(direction), lam, eps, seed, round, out_ids, _host(out))


EMULATED = {f.__name__: f for f in (median, trimmed_mean, leave_one_out_median, leave_one_out_trimmed_mean, mean,
                                    coordinate_stats, bulyan, closest_to_median_mean, krum_choose, krum_craft)}
SHARED = ["median", "trimmed_mean", "mean", "coordinate_stats", "pairwise_distances", "sq_distances",
          "krum_select", "krum_choose", "bulyan", "nonfinite_rows", "leave_one_out_median",
          "leave_one_out_trimmed_mean", "closest_to_median_mean", "craft_coordinates", "norms_and_dots", "krum_craft",
          "check_krum", "check_multi_krum", "check_trimmed_mean", "check_bulyan"]
HostKernels = types.SimpleNamespace(**{name: EMULATED.get(name, getattr(cpu, name)) for name in SHARED})


class HostTorch(dispatch._TorchCuda):
    """CPU torch tensors as a CUDA backend's array library: the tensors themselves go to the
    native module (which reads them through DLPack), no device to make current; allocation,
    copies and casts as for CUDA tensors."""

    @staticmethod
    def arg(x):
        return x

    @staticmethod
    def device(like):
        return dispatch._NO_DEVICE


EMULATED_CUDA = dispatch.Backend("cuda", HostKernels, HostTorch)


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
