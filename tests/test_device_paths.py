"""fedrobust._cpu and fedrobust._cuda have the same functions with the same signatures, so one
`dispatch.Backend` drives both; the emulated CUDA backend (tests/host_device.py) stands the
CPU code behind the CUDA backend's Python side, with the same names and arguments. The
kernels themselves are checked on a GPU (test_cuda.py)."""
import inspect
import re

import pytest

from fedrobust._native import cpu, cuda

from host_device import EMULATED, SHARED


def documented_signature(module, name):
    """The binding's signature as pybind11 documents it: "f(U: object, out: object) -> None"."""
    return re.match(rf"{name}\((.*?)\) ->(.*)", getattr(module, name).__doc__.splitlines()[0]).groups()


@pytest.mark.skipif(cuda is None, reason="the CUDA module is not built")
@pytest.mark.parametrize("name", SHARED)
def test_both_modules_take_the_same_arguments(name):
    assert documented_signature(cpu, name) == documented_signature(cuda, name)


@pytest.mark.parametrize("name", sorted(EMULATED))
def test_each_emulation_takes_the_bindings_arguments_in_order(name):
    documented = documented_signature(cpu, name)[0]
    names = [arg.split(":")[0].strip() for arg in documented.split(",")]
    assert names == list(inspect.signature(EMULATED[name]).parameters)
