"""The `array_kind` fixture: one behaviour test runs on every kind of array fedrobust takes,
and so on every backend that is available here.

    numpy          the CPU backend
    torch_cpu      the CPU backend through a zero-copy numpy view, results back as tensors
    emulated_cuda  the CUDA backend's Python side on CPU tensors, the CPU code standing behind
                   fedrobust._cuda's entry points (host_device.py)
    torch_cuda     the CUDA backend on torch CUDA tensors   (marked gpu: needs a device)
    cupy           the CUDA backend on cupy arrays           (marked gpu: needs a device)

Each kind gives `put(A)`, a numpy array as that kind (a copy, on its device), and `host(x)`,
a result back as numpy.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pytest

from fedrobust._native import cuda


@dataclasses.dataclass
class ArrayKind:
    name: str
    put: Callable[[np.ndarray], Any]
    host: Callable[[Any], np.ndarray]


def _device_count() -> int:
    return 0 if cuda is None else cuda.device_count()


def _torch_kind(device: str) -> ArrayKind:
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    return ArrayKind(f"torch_{device}", lambda A: torch.tensor(A, device=device),
                     lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))


def _cupy_kind() -> ArrayKind:
    cupy = pytest.importorskip("cupy")
    return ArrayKind("cupy", lambda A: cupy.array(A), lambda x: x.get() if hasattr(x, "get") else np.asarray(x))


KINDS = ["numpy", "torch_cpu", "emulated_cuda",
         pytest.param("torch_cuda", marks=pytest.mark.gpu), pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=KINDS)
def array_kind(request) -> ArrayKind:
    name = request.param
    if name == "numpy":
        return ArrayKind(name, np.array, np.asarray)
    if name == "torch_cpu":
        return _torch_kind("cpu")
    if name == "emulated_cuda":
        request.getfixturevalue("host_as_device")
        kind = _torch_kind("cpu")
        return dataclasses.replace(kind, name=name)
    if _device_count() == 0:
        pytest.skip("no CUDA device visible to fedrobust")
    return _torch_kind("cuda") if name == "torch_cuda" else _cupy_kind()
