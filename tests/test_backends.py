"""One dispatch point, the same semantics on every backend: every rule, statistic and attack
gives the numpy path's bits for every kind of array (tests/backends.py), non-finite values
included (SPEC 13 item 15), and the one dispatch module is the only place that decides."""
import numpy as np
import pytest

from fedrobust import aggregators as agg
from fedrobust import dispatch, stats
from fedrobust.attacks import ATTACKS, AttackContext, AttackOptions

from conftest import DTYPES, assert_identical, with_nonfinite_rows
from test_cuda import special_case


def updates_with_nonfinite_rows(dtype, m=23, d=4000, seed=1):
    """Random updates, a duplicate row (ties) and three non-finite rows: NaN, +Inf, mixed."""
    U = np.random.default_rng(seed).standard_normal((m, d)).astype(dtype)
    U[3] = U[4]
    return with_nonfinite_rows(U, {7: "nan", 12: "inf", 19: "mixed"})


RULES = {
    "median": lambda U: agg.median(U),
    "trimmed_mean": lambda U: agg.trimmed_mean(U, 5),
    "krum": lambda U: agg.krum(U, 4),
    "multi_krum": lambda U: agg.krum(U, 4, multi=9, squared=False),
    "pairwise_distances": lambda U: agg.pairwise_distances(U),
    "pairwise_distances_rows": lambda U: agg.pairwise_distances(U, rows=[7, 2, 12]),
    "pairwise_distances_rows_plain": lambda U: agg.pairwise_distances(U, squared=False, rows=[7, 2, 11]),
    "multi_krum_squared": lambda U: agg.krum(U, 4, multi=3),
    "bulyan": lambda U: agg.bulyan(U, 4),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(RULES))
def test_every_robust_rule_gives_the_numpy_bits_on_non_finite_rows(array_kind, name, dtype):
    U = updates_with_nonfinite_rows(dtype)
    X = array_kind.put(U)
    got = RULES[name](X)
    assert type(got) is type(X)
    assert_identical(array_kind.host(got), RULES[name](U), f"{name} on {array_kind.name}")
    np.testing.assert_array_equal(array_kind.host(X), U)  # not modified


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 7, 16, 17, 64, 65, 100, 128, 129, 1000, 4001])
def test_median_and_trimmed_mean_give_the_numpy_bits_at_every_kernel_size(array_kind, m, dtype):
    """Sizes around the CUDA kernels' paths: the register networks of 16, 32, 64 and 128 rows
    and the radix selection beyond; constant columns, NaN, +-Inf, -0.0 and tied rows."""
    U = special_case(m, 5000, dtype)
    X = array_kind.put(U)
    out = agg.median(X)
    assert type(out) is type(X) and tuple(out.shape) == (5000,)
    assert_identical(array_kind.host(out), agg.median(U), f"median on {array_kind.name}, m = {m}")
    assert_identical(array_kind.host(agg.trimmed_mean(X, m // 5)), agg.trimmed_mean(U, m // 5),
                     f"trimmed mean on {array_kind.name}, m = {m}")
    np.testing.assert_array_equal(array_kind.host(X), U)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_mean_and_the_krum_scores_agree_on_every_backend(array_kind, dtype):
    U = np.random.default_rng(2).standard_normal((23, 300)).astype(dtype)
    X = array_kind.put(U)
    assert_identical(array_kind.host(agg.mean(X)), agg.mean(U), f"mean on {array_kind.name}")
    # the CPU sums the scores in its kernel, the device path from float64 distances: last bits
    np.testing.assert_allclose(array_kind.host(agg.krum_scores(X, 4)), agg.krum_scores(U, 4), rtol=1e-6)
    np.testing.assert_array_equal(array_kind.host(X), U)


@pytest.mark.parametrize("dtype", DTYPES)
def test_selections_statistics_and_the_non_finite_report_agree_on_every_backend(array_kind, dtype):
    U = updates_with_nonfinite_rows(dtype)
    X = array_kind.put(U)
    np.testing.assert_array_equal(agg.krum_select(X, 4, multi=6), agg.krum_select(U, 4, multi=6))
    np.testing.assert_array_equal(agg.bulyan_select(X, 4), agg.bulyan_select(U, 4))
    np.testing.assert_array_equal(agg.nonfinite_workers(X), [7, 12, 19])
    with pytest.raises(ValueError, match="multi must be in"):
        agg.krum(X, 4, multi=20)
    for rows in (None, [9, 0, 7], np.arange(23) % 3 == 0):
        for field, got, expected in zip(stats.CoordinateStats._fields, stats.coordinate_stats(X, rows),
                                        stats.coordinate_stats(U, rows)):
            assert_identical(array_kind.host(got), expected, f"{field} on {array_kind.name}")


def test_nan_counts_as_plus_infinity_in_the_statistics_on_every_backend(array_kind):
    U = np.array([[1.0, -2.0], [np.nan, 5.0], [3.0, np.nan]])
    s = stats.coordinate_stats(array_kind.put(U))
    np.testing.assert_array_equal(array_kind.host(s.max), [np.inf, np.inf])
    np.testing.assert_array_equal(array_kind.host(s.min), [1.0, -2.0])
    np.testing.assert_array_equal(array_kind.host(agg.median(array_kind.put(U))), [3.0, 5.0])


def test_the_mean_names_the_non_finite_workers_on_every_backend(array_kind):
    U = np.ones((4, 5), dtype=np.float32)
    U[1, 2], U[3, 0] = np.nan, -np.inf
    with pytest.raises(ValueError, match=r"workers \[1, 3\] sent NaN or Inf"):
        agg.mean(array_kind.put(U))


ATTACK_CASES = [("trim", "full", "median", {}), ("trim", "full", "trimmed_mean", {"trim_reference": "update"}),
                ("trim", "full", "median", {"goal": "deviation"}), ("trim", "partial", "trimmed_mean", {}),
                ("gaussian", "full", "mean", {}), ("krum", "full", "krum", {}), ("krum", "partial", "krum", {}),
                ("krum", "full", "median", {"direction": "mean"})]


@pytest.mark.parametrize("attack, knowledge, rule, options", ATTACK_CASES)
def test_every_attack_sends_the_numpy_rows_and_metrics_on_every_backend(array_kind, attack, knowledge, rule,
                                                                        options):
    """Including a benign row with NaN and one with +Inf: the benign extremes, the direction and
    the metrics are read with the rules' semantics (NaN as +Inf) on every backend."""
    rng = np.random.default_rng(11)
    U = (0.01 * rng.standard_normal((30, 400))).astype(np.float32)
    if attack != "gaussian":
        U[20, ::7], U[25, 3] = np.nan, np.inf
    w = (0.1 * rng.standard_normal(400)).astype(np.float32)
    params = {"median": {}, "trimmed_mean": {"beta": 6}, "mean": {}, "krum": {"c": 6}}[rule]

    def context(updates, model):
        return AttackContext(updates, np.arange(6), model, rule, params, knowledge, np.random.default_rng(0), 5,
                             seed=7, lr=0.1, options=AttackOptions(**options))

    on_numpy, on_kind = context(U, w), context(array_kind.put(U), array_kind.put(w))
    expected = ATTACKS[attack](on_numpy)
    got = ATTACKS[attack](on_kind)
    assert type(got) is type(on_kind.updates)
    assert_identical(array_kind.host(got), expected, f"{attack} on {array_kind.name}")
    assert on_kind.metrics == on_numpy.metrics
    np.testing.assert_array_equal(array_kind.host(on_kind.updates), U)


def test_dispatch_is_the_only_module_that_looks_at_array_types():
    """aggregators, stats and the attacks reach the kernels only through dispatch's backends."""
    import inspect

    import fedrobust.aggregators
    import fedrobust.attacks.baselines
    import fedrobust.attacks.direction
    import fedrobust.attacks.krum
    import fedrobust.attacks.trim
    import fedrobust.stats

    for module in (fedrobust.aggregators, fedrobust.stats, fedrobust.attacks.baselines, fedrobust.attacks.direction,
                   fedrobust.attacks.krum, fedrobust.attacks.trim):
        source = inspect.getsource(module)
        for probe in ("isinstance(U, np.ndarray)", "import torch", "import cupy", "hasattr(U", "__dlpack_device__",
                      "_native import cuda", ".data_ptr()", "on_device("):
            assert probe not in source, f"{module.__name__} looks at array types ({probe})"


def test_cpu_torch_tensors_take_the_cpu_backend_without_a_copy():
    torch = pytest.importorskip("torch")
    t = torch.randn(6, 5, dtype=torch.float64)
    A, backend, wrap = dispatch.matrix(t)
    assert backend is dispatch.CPU and isinstance(A, np.ndarray) and np.shares_memory(A, t.numpy())
    assert isinstance(wrap(backend.median(A)), torch.Tensor)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [[0, 1, 2], [22, 3, 4, 7, 12, 15, 9], list(range(1, 23))])
def test_median_and_trimmed_mean_of_listed_rows_equal_the_rule_on_those_rows(array_kind, rows, dtype):
    """The backends' row lists (read in place on the CPU, gathered on CUDA), ascending order for
    the sums whatever order they are listed in."""
    U = updates_with_nonfinite_rows(dtype)
    A, backend, wrap = dispatch.matrix(array_kind.put(U))
    chosen = U[sorted(rows)]
    beta = (len(rows) - 1) // 2
    assert_identical(array_kind.host(wrap(backend.median(A, rows))), agg.median(chosen), "median")
    assert_identical(array_kind.host(wrap(backend.trimmed_mean(A, beta, rows))), agg.trimmed_mean(chosen, beta),
                     "trimmed mean")
    with pytest.raises(ValueError, match="trimmed mean needs 2\\*beta < m"):
        backend.trimmed_mean(A, len(rows), rows)
