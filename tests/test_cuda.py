"""The CUDA kernels: their per-column logic (fedrobust/column.h) on the CPU against the
reference, always; the kernels themselves on a GPU against the CPU kernels, bit for bit
(marked `gpu`, skipped without a visible device)."""
import numpy as np
import pytest

from fedrobust import _emulation, aggregators, dispatch, reference, stats
from fedrobust._native import cuda
from fedrobust.dispatch import CPU

from conftest import DTYPES, LAYOUTS, as_layout, native_craft


def special_case(m, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((m, d)).astype(dtype)
    U[:, 0] = 1.5  # a constant column
    U[rng.integers(0, m, 3), rng.integers(0, d, 3)] = np.nan
    U[rng.integers(0, m, 2), rng.integers(0, d, 2)] = np.inf
    U[rng.integers(0, m, 2), rng.integers(0, d, 2)] = -np.inf
    U[rng.integers(0, m, 2), rng.integers(0, d, 2)] = -0.0
    if m > 2:
        U[1] = U[2]  # duplicate rows: ties
    return U


# ---------------------------------------------------------------------------
# The shared per-column logic, on the CPU
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 8, 41, 100, 128])
def test_column_logic_matches_the_reference(m, dtype):
    U = special_case(m, 67, dtype)
    np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "median"), reference.median(U).astype(dtype))
    for beta in sorted({0, (m - 1) // 2, m // 5}):
        np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "trimmed_mean", beta),
                                      reference.trimmed_mean(U, beta).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 15, 16, 17, 33, 64, 65, 100, 127, 128])
def test_column_register_network_matches_the_reference(m, dtype):
    U = special_case(m, 67, dtype, seed=m + 100)
    np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "median", network=True),
                                  reference.median(U).astype(dtype))
    for beta in sorted({0, (m - 1) // 2, m // 5}):
        np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "trimmed_mean", beta, network=True),
                                      reference.trimmed_mean(U, beta).astype(dtype))


def test_column_register_network_takes_at_most_128_rows():
    with pytest.raises(ValueError, match="network path"):
        _emulation.column_rule_scalar(np.zeros((129, 2)), "median", network=True)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_column_logic_equals_the_cpu_kernels_in_every_layout(layout):
    U0 = special_case(20, 300, np.float32, seed=1)
    U = as_layout(U0, layout)
    np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "median"), CPU.median(U))
    np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "trimmed_mean", 4), CPU.trimmed_mean(U, 4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [129, 130, 1000, 4001])
def test_column_radix_selection_beyond_128_rows_matches_the_reference(m, dtype):
    U = special_case(m, 23, dtype, seed=m)
    U[:, 3] = np.where(np.arange(m) % 3 == 0, 0.0, -0.0).astype(dtype)  # signed zeros only
    U[:, 4] = np.inf
    np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "median"), reference.median(U).astype(dtype))
    for beta in (0, m // 5, (m - 1) // 2):
        np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "trimmed_mean", beta),
                                      reference.trimmed_mean(U, beta).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 5, 64, 300])
def test_column_mean_and_stats_over_listed_rows_equal_the_cpu_kernels(m, dtype):
    U = special_case(m, 45, dtype, seed=m + 7)
    U[np.isnan(U)] = 2.0  # the mean has no tolerance for NaN; stats read it as +Inf (checked below)
    rows = sorted(np.random.default_rng(m).choice(m, size=max(1, m // 2), replace=False).tolist())
    for listed in ([], rows):
        expected = CPU.mean(U, listed or None)
        np.testing.assert_array_equal(_emulation.column_rule_scalar(U, "mean", rows=listed), expected)
    V = special_case(m, 45, dtype, seed=m + 8)
    for listed in ([], rows):
        got = _emulation.column_rule_scalar(V, "stats", rows=listed)
        for a, b in zip(got, CPU.coordinate_stats(V, listed or None)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, gamma", [(1, 1), (2, 1), (7, 3), (40, 12), (41, 41), (128, 120)])
def test_column_bulyan_stage_matches_the_reference(n, gamma, dtype):
    m = n + 3
    U = special_case(m, 57, dtype, seed=n)
    rows = np.random.default_rng(n).permutation(m)[:n]  # any order: the stage sorts
    got = _emulation.column_rule_scalar(U, "bulyan", rows=rows.tolist(), gamma=gamma)
    np.testing.assert_array_equal(got, reference.closest_to_median_mean(U[rows], gamma).astype(dtype))


def test_column_code_rejects_what_the_kernels_never_take():
    U = np.zeros((5, 3))
    with pytest.raises(ValueError, match="out of range"):
        _emulation.column_rule_scalar(U, "mean", rows=[0, 5])
    with pytest.raises(ValueError, match="gamma"):
        _emulation.column_rule_scalar(U, "bulyan", rows=[0, 1], gamma=3)
    with pytest.raises(ValueError, match="rule must be"):
        _emulation.column_rule_scalar(U, "mode")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, d", [(1, 5), (2, 1), (5, 33), (13, 100), (17, 9000), (40, 4097)])
def test_the_distance_kernels_arithmetic_matches_the_reference(m, d, dtype):
    rng = np.random.default_rng(m * d)
    U = (rng.standard_normal((m, d)) + 3.0).astype(dtype)
    if m > 3:
        U[1] = U[2] + dtype(1e-3)  # near-identical rows: direct differences keep them exact
        U[3] = U[0]  # identical rows: exactly 0
    got = _emulation.distances_by_micro_tiles(U)
    expected = reference.pairwise_sq_distances(U)
    assert got.dtype == np.float64 and got.shape == (m, m) and np.all(np.diag(got) == 0)
    np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=0)
    np.testing.assert_array_equal(got, got.T)


def test_the_distance_kernels_arithmetic_redoes_float_stages_that_overflow_or_underflow_in_double():
    U = np.zeros((6, 70), dtype=np.float32)
    U[0], U[1] = 1e20, -1e20          # (2e20)^2 overflows float: redone in double
    U[2], U[3] = 1e-25, -1e-25        # (2e-25)^2 underflows float: redone in double
    U[4, 0], U[5, 0] = np.nan, np.inf  # non-finite rows: +Inf
    got = _emulation.distances_by_micro_tiles(U)
    big, tiny = 2 * np.float64(np.float32(1e20)), 2 * np.float64(np.float32(1e-25))
    np.testing.assert_allclose(got[0, 1], 70 * big**2, rtol=1e-14)  # a float stage sum would be +Inf
    np.testing.assert_allclose(got[2, 3], 70 * tiny**2, rtol=1e-14)  # a float stage sum would be 0
    assert np.isinf(got[4]).sum() == 5 and np.isinf(got[:, 5]).sum() == 5 and got[4, 4] == got[5, 5] == 0


# ---------------------------------------------------------------------------
# On a GPU
# ---------------------------------------------------------------------------
def _devices() -> int:
    return 0 if cuda is None else cuda.device_count()


def _libraries():
    found = []
    try:
        import torch

        if torch.cuda.is_available():
            found.append("torch")
    except ImportError:  # pragma: no cover
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            found.append("cupy")
    except Exception:  # not installed, or no device / driver
        pass
    return found


# Skipped where no CUDA library sees a device. Where one does, fedrobust must see it too: a
# module that cannot (no CUDA module, a driver older than its runtime) fails the GPU tests
# instead of skipping them, so a GPU check cannot pass with nothing run.
gpu = pytest.mark.skipif(not _libraries(), reason="no CUDA device or CUDA library")


@pytest.fixture(autouse=True)
def _fedrobust_sees_the_device(request):
    if request.node.get_closest_marker("gpu") and _devices() == 0:
        probe = "not built" if cuda is None else cuda.device_error()
        pytest.fail(f"a CUDA library sees a device but fedrobust's CUDA module does not ({probe})")


def to_device(A: np.ndarray, library: str):
    if library == "torch":
        import torch

        return torch.as_tensor(A, device="cuda")
    import cupy

    return cupy.asarray(A)


def to_host(x) -> np.ndarray:
    return x.cpu().numpy() if hasattr(x, "cpu") else x.get()


@pytest.mark.gpu
@gpu
def test_gpu_strided_and_transposed_inputs_and_a_side_stream():
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    import torch

    U = special_case(50, 3000, np.float32)
    wide = torch.zeros((50, 6000), device="cuda")
    wide[:, ::2] = torch.as_tensor(U, device="cuda")
    np.testing.assert_array_equal(aggregators.median(wide[:, ::2]).cpu().numpy(), CPU.median(U))
    T = torch.as_tensor(np.ascontiguousarray(U.T), device="cuda").T  # column-major
    np.testing.assert_array_equal(aggregators.trimmed_mean(T, 10).cpu().numpy(), CPU.trimmed_mean(U, 10))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        G = torch.as_tensor(U, device="cuda")
        out = aggregators.median(G)
    stream.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), CPU.median(U))


@pytest.mark.gpu
@gpu
def test_gpu_errors_say_what_was_expected():
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    import torch

    with pytest.raises(TypeError, match="float32 or float64"):
        aggregators.median(torch.zeros((3, 4), device="cuda", dtype=torch.int32))
    with pytest.raises(ValueError, match="2\\*beta < m"):
        aggregators.trimmed_mean(torch.zeros((4, 4), device="cuda"), 2)
    with pytest.raises(ValueError, match="multi must be in"):
        aggregators.krum(torch.zeros((9, 4), device="cuda"), 1, multi=9)
    with pytest.raises(ValueError, match="m >= 4c \\+ 3"):
        aggregators.bulyan(torch.zeros((9, 4), device="cuda"), 2)
    with pytest.raises(ValueError, match="at most 128 selected rows"):
        aggregators.bulyan(torch.zeros((300, 4), device="cuda"), 10)
    with pytest.raises(ValueError, match="out of range"):
        stats.coordinate_stats(torch.zeros((5, 4), device="cuda"), [0, 7])


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["trim_full", "trim_full_model", "trim_partial", "gaussian"])
def test_gpu_attack_crafting_equals_the_cpu_bit_for_bit(mode, dtype):
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    import torch

    rng = np.random.default_rng(3)
    U = (0.01 * rng.standard_normal((60, 4099))).astype(dtype)
    U[:, :3] = 0.0
    s = rng.integers(-1, 2, 4099).astype(np.int8)
    base = (0.1 * rng.standard_normal(4099)).astype(dtype)
    rows = [5, 1, 59, 30, 22, 7, 8]  # not sorted: statistics in this order, as on the CPU
    ids = [17, 3, 40]
    kind = "trim_full" if mode.startswith("trim_full") else mode
    kwargs = {"direction": s} if kind == "trim_full" else {}
    if mode == "trim_full_model":
        kwargs["base"] = base
    expected, expected_used = native_craft(U, rows, kind, ids, 9, 12, **kwargs)
    G = torch.as_tensor(U, device="cuda")
    s_dev = torch.as_tensor(s, device="cuda")
    base_dev = torch.as_tensor(base, device="cuda")
    out, used = dispatch.backend_of(G).craft(G, rows, kind, ids, 9, 12,
                                             direction=s_dev if kind == "trim_full" else None,
                                             base=base_dev if mode == "trim_full_model" else None)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), expected)
    np.testing.assert_array_equal(used.cpu().numpy(), expected_used)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("m, d", [(7, 10), (23, 5000), (100, 70000), (130, 3000), (300, 1000)])
def test_gpu_distances_are_close_and_krum_picks_the_same_row(m, d, squared):
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    import torch

    U = (0.01 * np.random.default_rng(m).standard_normal((m, d)) + 1.0).astype(np.float32)
    U[3] = U[4] + np.float32(1e-6)  # near-identical rows: exact differences matter
    G = torch.as_tensor(U, device="cuda")
    D = aggregators.pairwise_distances(G, squared=squared)
    assert D.shape == (m, m) and D.dtype == G.dtype and D.device == G.device
    backend = dispatch.backend_of(G)
    # the same arithmetic as the kernel's emulation
    np.testing.assert_array_equal(backend.sq_distances(G), _emulation.distances_by_micro_tiles(U))
    column_major = torch.as_tensor(np.ascontiguousarray(U.T), device="cuda").T
    np.testing.assert_array_equal(backend.sq_distances(column_major), _emulation.distances_by_micro_tiles(U))
    U64 = U.astype(np.float64) + 1e-9 * np.arange(d)
    np.testing.assert_array_equal(backend.sq_distances(torch.as_tensor(U64, device="cuda")),
                                  _emulation.distances_by_micro_tiles(U64))
    np.testing.assert_allclose(D.cpu().numpy(), CPU.pairwise_distances(U, squared), rtol=1e-5, atol=1e-12)
    assert np.all(np.diag(D.cpu().numpy()) == 0)
    c = (m - 3) // 2
    assert aggregators.krum_select(G, c, squared=squared)[0] == aggregators.krum_select(U, c, squared=squared)[0]
    np.testing.assert_array_equal(aggregators.krum(G, c, squared=squared).cpu().numpy(),
                                  aggregators.krum(U, c, squared=squared))
    np.testing.assert_allclose(aggregators.krum_scores(G, c, squared=squared).cpu().numpy(),
                               aggregators.krum_scores(U.astype(np.float64), c, squared=squared), rtol=1e-5)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("squared", [True, False])
def test_gpu_krum_scores_of_many_rows_by_radix_selection(squared):
    """Beyond 1024 rows a block per row selects the k-th smallest distance instead of sorting."""
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    import torch

    U = np.random.default_rng(5).standard_normal((1500, 40))
    U[10] = U[11]  # a zero distance and ties
    U[20, 3] = np.inf  # a row at +Inf from every other
    G = torch.as_tensor(U, device="cuda")
    c = 300
    got = aggregators.krum_scores(G, c, squared=squared).cpu().numpy()
    expected = aggregators.krum_scores(U, c, squared=squared)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.isinf(got[20])
    assert aggregators.krum_select(G, c, squared=squared)[0] == aggregators.krum_select(U, c, squared=squared)[0]


@pytest.mark.gpu
@gpu
def test_gpu_distances_of_non_finite_rows_are_infinite():
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    import torch

    U = np.random.default_rng(1).standard_normal((9, 300)).astype(np.float32)
    U[2, 5] = np.nan
    U[6, 7] = np.inf
    D = aggregators.pairwise_distances(torch.as_tensor(U, device="cuda")).cpu().numpy()
    np.testing.assert_array_equal(np.isinf(D), np.isinf(CPU.pairwise_distances(U, True)))
    assert np.all(np.diag(D) == 0)


def test_device_cuda_without_a_gpu_fails_before_training(tmp_path):
    from fedrobust.simulation import Config, Simulation

    if _devices() > 0 and "torch" in _libraries():
        pytest.skip("a CUDA device is visible")
    config = Config(dataset="digits", workers=20, compromised=4, rounds=2, device="cuda", out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="'cuda' needs a visible CUDA device"):
        Simulation(config, progress=False)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("rule", ["mean", "median", "trimmed_mean", "krum", "bulyan"])
def test_gpu_simulation_trains_on_the_device(tmp_path, rule):
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    from fedrobust.simulation import Config, Simulation

    common = dict(dataset="digits", model="lr", rule=rule, workers=40, compromised=8, rounds=40, lr=0.5,
                  eval_every=20, seed=1)
    gpu_run = Simulation(Config(device="cuda", out=str(tmp_path / "gpu"), **common), progress=False).run()
    cpu_run = Simulation(Config(device="cpu", out=str(tmp_path / "cpu"), **common), progress=False).run()
    assert gpu_run["final_test_error"] < 0.5  # learns (chance is 0.9)
    assert abs(gpu_run["final_test_error"] - cpu_run["final_test_error"]) < 0.1


def test_nan_results_are_the_one_quiet_nan_on_every_backend():
    """-Inf and +Inf as the middle values give NaN; its bits must not depend on the backend."""
    U = np.array([[-np.inf, 1.0], [np.inf, 2.0]], dtype=np.float32)
    quiet = np.array(np.nan, dtype=np.float32).view(np.uint32)
    for result in (CPU.median(U), _emulation.column_rule_scalar(U, "median")):
        assert result[0].view(np.uint32) == quiet
    V = np.array([[-np.inf], [np.inf], [-np.inf], [np.inf]])  # trimmed mean, beta 1: lo = -Inf, hi = +Inf
    for result in (CPU.trimmed_mean(V, 1), _emulation.column_rule_scalar(V, "trimmed_mean", 1)):
        assert result[0].view(np.uint64) == np.array(np.nan).view(np.uint64)


@pytest.mark.gpu
@gpu
def test_gpu_simulation_with_the_partial_trim_attack(tmp_path):
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    from fedrobust.simulation import Config, Simulation

    config = Config(dataset="digits", model="lr", rule="median", workers=200, compromised=40, rounds=20, lr=0.5,
                    eval_every=10, attack="trim", knowledge="partial", device="cuda", out=str(tmp_path / "gpu"))
    summary = Simulation(config, progress=False).run()
    assert summary["attack"]["rounds_attacked"] == 20 and 0.0 <= summary["final_test_error"] <= 1.0


@pytest.mark.gpu
@gpu
def test_gpu_dlpack_and_cuda_array_interface_producers_run_on_the_device():
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    import torch

    U = special_case(30, 2000, np.float32, seed=4)
    T = torch.as_tensor(U, device="cuda")

    class DLPackOnly:  # a producer from a package without from_dlpack: results come back as torch
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, stream=None, **kwargs):
            return self.t.__dlpack__(stream=stream)

        def __dlpack_device__(self):
            return self.t.__dlpack_device__()

    class InterfaceOnly:
        def __init__(self, t):
            self.__cuda_array_interface__ = t.__cuda_array_interface__

    for wrapped in (DLPackOnly(T), InterfaceOnly(T)):
        out = aggregators.median(wrapped)
        assert isinstance(out, torch.Tensor) and out.device.type == "cuda"
        np.testing.assert_array_equal(out.cpu().numpy(), CPU.median(U))
        np.testing.assert_array_equal(aggregators.krum_select(wrapped, 5), aggregators.krum_select(U, 5))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "krum"])
def test_gpu_a_defended_run_on_the_device_records_its_removals(tmp_path, rule):
    """The built-in defenses on device 'cuda': leave-one-out aggregation and the batched
    evaluation on the device, the removals recorded as on the CPU."""
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    from fedrobust.simulation import Config, Simulation

    cfg = Config(dataset="digits", model="lr", rule=rule, workers=20, compromised=3, rounds=3, eval_every=3,
                 attack="trim", knowledge="partial", defense="union", device="cuda", out=str(tmp_path / rule))
    summary = Simulation(cfg, progress=False).run()
    assert summary["defense"]["rounds"] == 3
    assert 3 <= summary["defense"]["removed_mean"] <= 6
