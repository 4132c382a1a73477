"""Array types at the boundary: numpy in -> numpy out, torch in -> torch out (same dtype), CPU
tensors used without a copy; backend_info; the registry."""
from __future__ import annotations

import numpy as np
import pytest

import fedrobust
from fedrobust import aggregators as agg
from fedrobust import dispatch
from fedrobust.stats import coordinate_stats

from conftest import assert_identical, random_matrix

torch = pytest.importorskip("torch")

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

# name -> (function, output shape for an (m, d) input)
RULES = {
    "mean": (lambda U: agg.mean(U), lambda m, d: (d,)),
    "median": (lambda U: agg.median(U), lambda m, d: (d,)),
    "trimmed_mean": (lambda U: agg.trimmed_mean(U, 2), lambda m, d: (d,)),
    "krum": (lambda U: agg.krum(U, 2), lambda m, d: (d,)),
    "multi_krum": (lambda U: agg.krum(U, 2, multi=4, squared=False), lambda m, d: (d,)),
    "krum_scores": (lambda U: agg.krum_scores(U, 2), lambda m, d: (m,)),
    "pairwise_distances": (lambda U: agg.pairwise_distances(U), lambda m, d: (m, m)),
    "pairwise_distances_plain": (lambda U: agg.pairwise_distances(U, squared=False), lambda m, d: (m, m)),
    "bulyan": (lambda U: agg.bulyan(U, 2), lambda m, d: (d,)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(RULES))
def test_numpy_in_numpy_out_and_torch_in_torch_out_with_the_same_dtype_and_values(name, dtype):
    fn, shape = RULES[name]
    U = random_matrix(11, 37, dtype, seed=4)
    out = fn(U)
    assert type(out) is np.ndarray and out.dtype == dtype and out.shape == shape(11, 37)
    t = torch.from_numpy(U.copy())
    tout = fn(t)
    assert isinstance(tout, torch.Tensor) and tout.dtype == TORCH_DTYPES[np.dtype(dtype)]
    assert tout.device.type == "cpu" and tuple(tout.shape) == shape(11, 37)
    assert_identical(tout.numpy(), out, f"{name}: torch vs numpy")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coordinate_stats_returns_the_input_type_in_every_field(dtype):
    U = random_matrix(6, 9, dtype, seed=1)
    s = coordinate_stats(U)
    assert all(type(f) is np.ndarray and f.dtype == dtype and f.shape == (9,) for f in s)
    ts = coordinate_stats(torch.from_numpy(U.copy()), rows=torch.tensor([True, False, True, True, False, True]))
    assert all(isinstance(f, torch.Tensor) and f.dtype == TORCH_DTYPES[np.dtype(dtype)] for f in ts)
    for f, g in zip(ts, coordinate_stats(U, rows=[0, 2, 3, 5])):
        assert_identical(f.numpy(), g)


def test_index_results_are_numpy_int64_for_every_input_type():
    U = random_matrix(11, 8, np.float32, seed=2)
    for X in (U, torch.from_numpy(U.copy())):
        sel = agg.krum_select(X, 2, multi=3)
        assert type(sel) is np.ndarray and sel.dtype == np.int64 and sel.shape == (3,)
        bad = agg.nonfinite_workers(X)
        assert type(bad) is np.ndarray and bad.dtype == np.int64 and bad.size == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_torch_tensors_are_used_without_a_copy(dtype):
    t = torch.randn(7, 13, dtype=dtype, generator=torch.Generator().manual_seed(0))
    views = {
        "contiguous": t,
        "transposed": t.T,
        "column_slice": t[:, ::3],
        "row_slice": t[1::2],
    }
    for name, v in views.items():
        X, backend, wrap = dispatch.matrix(v)
        assert isinstance(X, np.ndarray) and backend is dispatch.CPU
        assert X.ctypes.data == v.data_ptr(), name
        assert X.strides == tuple(s * v.element_size() for s in v.stride()), name
        assert np.shares_memory(X, t.numpy()), name
        np.testing.assert_array_equal(X, v.numpy())
        # and the rules read those views correctly
        assert_identical(agg.median(v).numpy(), agg.median(np.ascontiguousarray(v.numpy())), name)


def test_numpy_arrays_are_used_without_a_copy():
    U = random_matrix(5, 6, np.float64)
    for V in (U, U.T, U[:, ::2], U[::-1]):
        X, backend, _ = dispatch.matrix(V)
        assert X is V and backend is dispatch.CPU


def test_torch_tensors_that_require_grad_are_accepted_and_results_carry_no_graph():
    t = torch.randn(11, 20, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(3))
    ref = t.detach().numpy().copy()
    for name, (fn, _) in RULES.items():
        out = fn(t)
        assert isinstance(out, torch.Tensor) and not out.requires_grad, name
        assert_identical(out.numpy(), fn(ref), name)
    # a non-leaf tensor in a graph works too
    y = t * 2.0
    assert_identical(agg.median(y).numpy(), agg.median(ref * 2.0))
    assert_identical(np.asarray(agg.krum_select(y, 2)), agg.krum_select(ref * 2.0, 2))


def test_results_are_new_arrays_not_views_of_the_input():
    U = random_matrix(1, 8, np.float64)  # m = 1: the result equals the only row
    for fn in (agg.mean, agg.median, lambda X: agg.trimmed_mean(X, 0)):
        out = fn(U)
        assert not np.shares_memory(out, U)
        out[:] = 0
    assert np.all(U != 0)


def test_backend_info_reports_versions_cpu_and_cuda():
    info = fedrobust.backend_info()
    for key in ("version", "cpu", "cuda", "numpy", "torch"):
        assert key in info, key
    assert info["version"] == fedrobust.__version__
    assert info["numpy"] == np.__version__
    assert info["torch"] == torch.__version__
    cpu = info["cpu"]
    assert isinstance(cpu["threads"], int) and cpu["threads"] >= 1
    assert cpu["simd"] in ("generic", "avx2", "avx512")
    assert "generic" in cpu["simd_available"] and cpu["simd"] in cpu["simd_available"]
    assert isinstance(info["cuda"]["built"], bool)


def test_available_lists_every_rule():
    assert agg.available() == ["bulyan", "krum", "mean", "median", "trimmed_mean"]


REGISTRY_CASES = [
    ("mean", {}, lambda U: agg.mean(U)),
    ("median", {}, lambda U: agg.median(U)),
    ("trimmed_mean", {"beta": 3}, lambda U: agg.trimmed_mean(U, 3)),
    ("krum", {"c": 2}, lambda U: agg.krum(U, 2)),
    ("krum", {"c": 2, "multi": 5, "squared": False}, lambda U: agg.krum(U, 2, multi=5, squared=False)),
    ("bulyan", {"c": 2}, lambda U: agg.bulyan(U, 2)),
    ("bulyan", {"c": 2, "squared": False}, lambda U: agg.bulyan(U, 2, squared=False)),
]


@pytest.mark.parametrize("name,params,direct", REGISTRY_CASES,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for n, p, _ in REGISTRY_CASES])
def test_registry_get_gives_the_same_result_as_the_direct_call(name, params, direct):
    rule = agg.get(name, **params)
    assert rule.__name__ == name and rule.__doc__ == getattr(agg, name).__doc__
    for dtype in (np.float32, np.float64):
        U = random_matrix(13, 50, dtype, seed=6)
        assert_identical(rule(U), direct(U), f"get({name!r}, {params})")
        t = torch.from_numpy(U.copy())
        out = rule(t)
        assert isinstance(out, torch.Tensor)
        assert_identical(out.numpy(), direct(U))


def test_registry_covers_every_available_rule():
    assert sorted({n for n, _, _ in REGISTRY_CASES}) == agg.available()


# ---------------------------------------------------------------------------
# Other libraries' arrays through DLPack: in zero-copy, out as the producer's type.
# ---------------------------------------------------------------------------
class ForeignArray:
    """A minimal DLPack producer from a package `foreignlib` that has its own from_dlpack."""

    def __init__(self, a: np.ndarray):
        self.a = a

    def __dlpack__(self, stream=None, **kwargs):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


ForeignArray.__module__ = "foreignlib.core"


@pytest.fixture
def foreignlib(monkeypatch):
    import types

    module = types.ModuleType("foreignlib")
    module.from_dlpack = lambda x: ForeignArray(np.from_dlpack(x))
    monkeypatch.setitem(__import__("sys").modules, "foreignlib", module)
    return module


@pytest.mark.parametrize("name", sorted(RULES))
def test_a_dlpack_producer_gets_its_own_type_back_with_the_numpy_values(name, foreignlib):
    fn, shape = RULES[name]
    U = random_matrix(11, 37, np.float32, seed=5)
    out = fn(ForeignArray(U))
    assert type(out) is ForeignArray and out.a.shape == shape(11, 37)
    assert_identical(out.a, fn(U), name)


def test_dlpack_inputs_are_read_in_place_and_host_results_stay_numpy(foreignlib):
    U = random_matrix(11, 37, np.float64, seed=6)
    seen = []
    original = np.from_dlpack

    def spy(x):
        view = original(x)
        seen.append(np.shares_memory(view, U))
        return view

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np, "from_dlpack", spy)
        selected = agg.krum_select(ForeignArray(U), 2, multi=3)
    assert seen == [True]  # no copy on the way in
    assert type(selected) is np.ndarray and selected.dtype == np.int64
    np.testing.assert_array_equal(selected, agg.krum_select(U, 2, multi=3))
    stats = coordinate_stats(ForeignArray(U), [0, 3])
    assert all(type(s) is ForeignArray for s in stats)
    np.testing.assert_array_equal(stats.max.a, coordinate_stats(U, [0, 3]).max)
    out, rows = agg.bulyan_with_selection(ForeignArray(U), 2)
    assert type(out) is ForeignArray and type(rows) is np.ndarray


def test_a_dlpack_producer_without_from_dlpack_gets_numpy_and_other_devices_are_refused():
    class Plain(ForeignArray):
        pass

    Plain.__module__ = "no_such_package_here"
    U = random_matrix(9, 5, np.float32, seed=7)
    out = agg.median(Plain(U))
    assert type(out) is np.ndarray
    assert_identical(out, agg.median(U), "median")

    class OnAnotherDevice(ForeignArray):
        def __dlpack_device__(self):
            return (14, 0)  # OneAPI

    with pytest.raises(TypeError, match="DLPack array on device type 14"):
        agg.median(OnAnotherDevice(U))
