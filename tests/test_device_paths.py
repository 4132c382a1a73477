"""The Python side of the CUDA paths, run without a GPU: CPU torch tensors take the device
branch of every rule, of coordinate_stats and of the attacks, with the CPU code standing
behind fedrobust._cuda's entry points (tests/host_device.py). What this checks: the
arguments reach each binding under its names and in its order, results are allocated, typed
and returned as on a device, rows are passed in the order the kernels expect, and every
path gives the CPU path's bits. The kernels themselves are checked on a GPU (test_cuda.py)."""
import inspect
import re

import numpy as np
import pytest

from fedrobust import aggregators as agg
from fedrobust import stats
from fedrobust._native import cuda
from fedrobust.attacks import ATTACKS, AttackContext

from conftest import DTYPES, assert_identical
from host_device import STAND_INS, HostKernels, host_as_device  # noqa: F401 (a fixture)


@pytest.mark.skipif(cuda is None, reason="the CUDA module is not built")
@pytest.mark.parametrize("name", STAND_INS)
def test_each_stand_in_takes_the_bindings_arguments_in_order(name):
    documented = re.match(rf"{name}\((.*?)\) ->", getattr(cuda, name).__doc__).group(1)
    names = [arg.split(":")[0].strip() for arg in documented.split(",")]
    assert names == list(inspect.signature(getattr(HostKernels, name)).parameters)


RULES = {
    "mean": lambda U: agg.mean(U),
    "median": lambda U: agg.median(U),
    "trimmed_mean": lambda U: agg.trimmed_mean(U, 5),
    "krum": lambda U: agg.krum(U, 4),
    "multi_krum": lambda U: agg.krum(U, 4, multi=9),
    "multi_krum_plain": lambda U: agg.krum(U, 4, multi=3, squared=False),
    "krum_scores": lambda U: agg.krum_scores(U, 4),
    "pairwise_distances": lambda U: agg.pairwise_distances(U),
    "pairwise_distances_rows": lambda U: agg.pairwise_distances(U, squared=False, rows=[7, 2, 11]),
    "bulyan": lambda U: agg.bulyan(U, 4),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rules_device_path_gives_the_cpu_paths_bits(host_as_device, name, dtype):
    torch = host_as_device
    U = np.random.default_rng(1).standard_normal((23, 300)).astype(dtype)
    U[3] = U[4]  # ties
    T = torch.from_numpy(U.copy())
    got = RULES[name](T)
    assert isinstance(got, torch.Tensor) and got.dtype == T.dtype
    expected = RULES[name](U)
    if name == "krum_scores":  # CPU: scores rounded to U's dtype; device: float64 scores in U's dtype
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    else:
        assert_identical(got.numpy(), expected, name)
    np.testing.assert_array_equal(T.numpy(), U)


def test_selections_and_statistics_on_the_device_path(host_as_device):
    torch = host_as_device
    U = np.random.default_rng(2).standard_normal((23, 300))
    T = torch.from_numpy(U.copy())
    np.testing.assert_array_equal(agg.krum_select(T, 4, multi=6), agg.krum_select(U, 4, multi=6))
    np.testing.assert_array_equal(agg.bulyan_select(T, 4), agg.bulyan_select(U, 4))
    out, rows = agg.bulyan_with_selection(T, 4)
    assert isinstance(out, torch.Tensor) and type(rows) is np.ndarray
    for mask in (None, [9, 0, 4], np.arange(23) % 3 == 0):
        for got, expected in zip(stats.coordinate_stats(T, mask), stats.coordinate_stats(U, mask)):
            assert isinstance(got, torch.Tensor)
            assert_identical(got.numpy(), expected, "coordinate_stats")
    with pytest.raises(ValueError, match="multi must be in"):
        agg.krum(T, 4, multi=20)


def test_the_mean_names_non_finite_workers_on_the_device_path(host_as_device):
    torch = host_as_device
    U = np.zeros((6, 4), dtype=np.float32)
    U[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"workers \[2\]"):
        agg.mean(torch.from_numpy(U))


@pytest.mark.parametrize("attack, knowledge, rule", [("trim", "full", "median"), ("trim", "full", "trimmed_mean"),
                                                      ("trim", "partial", "median"), ("gaussian", "full", "mean")])
def test_the_coordinate_attacks_device_path_sends_the_cpu_paths_values(host_as_device, attack, knowledge, rule):
    torch = host_as_device
    rng = np.random.default_rng(11)
    U = (0.01 * rng.standard_normal((30, 500))).astype(np.float32)
    w = (0.1 * rng.standard_normal(500)).astype(np.float32)
    params = {"median": {}, "trimmed_mean": {"beta": 6}, "mean": {}}[rule]

    def context(updates, model):
        return AttackContext(updates, np.arange(6), model, rule, params, knowledge, np.random.default_rng(0), 5,
                             seed=7, lr=0.1)

    on_numpy, on_torch = context(U, w), context(torch.from_numpy(U.copy()), torch.from_numpy(w.copy()))
    expected = ATTACKS[attack](on_numpy)
    got = ATTACKS[attack](on_torch)
    assert isinstance(got, torch.Tensor)
    assert_identical(got.numpy(), expected, attack)
    assert on_torch.metrics.keys() == on_numpy.metrics.keys()
