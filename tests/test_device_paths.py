"""The stand-ins behind the emulated CUDA backend (tests/host_device.py) take each binding's
arguments under its names and in its order, so the CUDA backend's calls that the
`emulated_cuda` array kind checks without a GPU (test_backends.py: every rule, statistic
and attack gives the CPU path's bits) are the calls the real module gets. The kernels
themselves are checked on a GPU (test_cuda.py)."""
import inspect
import re

import pytest

from fedrobust._native import cuda

from host_device import STAND_INS, HostKernels


@pytest.mark.skipif(cuda is None, reason="the CUDA module is not built")
@pytest.mark.parametrize("name", STAND_INS)
def test_each_stand_in_takes_the_bindings_arguments_in_order(name):
    documented = re.match(rf"{name}\((.*?)\) ->", getattr(cuda, name).__doc__).group(1)
    names = [arg.split(":")[0].strip() for arg in documented.split(",")]
    assert names == list(inspect.signature(getattr(HostKernels, name)).parameters)

