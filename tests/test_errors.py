"""Bad inputs: every one gets a ValueError or TypeError whose message names what was expected and
what was given."""
from __future__ import annotations

import numpy as np
import pytest

import fedrobust
from fedrobust import aggregators as agg
from fedrobust._native import cpu
from fedrobust.stats import coordinate_stats

torch = pytest.importorskip("torch")

# Every public entry point that takes U, with valid parameters for a 9 x 4 matrix.
ENTRY_POINTS = {
    "mean": lambda U: agg.mean(U),
    "median": lambda U: agg.median(U),
    "trimmed_mean": lambda U: agg.trimmed_mean(U, 1),
    "krum": lambda U: agg.krum(U, 1),
    "krum_scores": lambda U: agg.krum_scores(U, 1),
    "krum_select": lambda U: agg.krum_select(U, 1),
    "pairwise_distances": lambda U: agg.pairwise_distances(U),
    "bulyan": lambda U: agg.bulyan(U, 1),
    "nonfinite_workers": lambda U: agg.nonfinite_workers(U),
    "coordinate_stats": lambda U: coordinate_stats(U),
    "registry_median": lambda U: agg.get("median")(U),
}
FUNCS = sorted(ENTRY_POINTS)
SHAPE_MSG = "expected a 2-D array of shape (m workers, d parameters)"


def _raises(exc, fn, *substrings):
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    for s in substrings:
        assert s in msg, f"{s!r} not in message {msg!r}"
    return msg


# ---------------------------------------------------------------------------
# Shape.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("shape", [(9,), (2, 3, 4), (1, 9, 4)])
def test_wrong_rank_is_a_value_error_naming_the_expected_rank_and_the_shape_given(fn, shape):
    _raises(ValueError, lambda: ENTRY_POINTS[fn](np.zeros(shape)), SHAPE_MSG, f"got shape {shape}")
    _raises(ValueError, lambda: ENTRY_POINTS[fn](torch.zeros(shape)), SHAPE_MSG, f"got shape {shape}")


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("shape", [(0, 4), (9, 0), (0, 0)])
def test_zero_rows_or_columns_is_a_value_error_naming_the_shape(fn, shape):
    _raises(ValueError, lambda: ENTRY_POINTS[fn](np.zeros(shape)),
            "expected at least one row and one column", f"got shape {shape}")
    _raises(ValueError, lambda: ENTRY_POINTS[fn](torch.zeros(shape, dtype=torch.float64)),
            "expected at least one row and one column", f"got shape {shape}")


# ---------------------------------------------------------------------------
# Types and dtypes.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.float16, np.complex64,
                                   np.complex128, np.object_])
def test_non_float_numpy_dtypes_are_a_type_error_naming_the_dtype(fn, dtype):
    U = np.zeros((9, 4), dtype=dtype)
    _raises(TypeError, lambda: ENTRY_POINTS[fn](U), "expected float32 or float64", f"got dtype {U.dtype}")


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool", "float16", "bfloat16", "complex64", "complex128"])
def test_non_float_torch_dtypes_are_a_type_error_naming_the_dtype(fn, dtype):
    t = torch.zeros((9, 4), dtype=getattr(torch, dtype))
    _raises(TypeError, lambda: ENTRY_POINTS[fn](t), "expected float32 or float64", f"got dtype torch.{dtype}")


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("value,type_name", [([[1.0, 2.0], [3.0, 4.0]], "builtins.list"),
                                             (((1.0, 2.0),), "builtins.tuple"),
                                             (3.0, "builtins.float"),
                                             (None, "builtins.NoneType")])
def test_non_array_inputs_are_a_type_error_naming_the_accepted_types_and_the_type_given(fn, value, type_name):
    _raises(TypeError, lambda: ENTRY_POINTS[fn](value), "expected a numpy array or a torch tensor",
            f"got {type_name}")


def test_a_tensor_not_on_the_cpu_is_a_type_error_asking_for_a_cpu_tensor():
    t = torch.zeros((9, 4), device="meta")
    _raises(TypeError, lambda: agg.median(t), "got a torch tensor on meta", "pass a CPU tensor")


# ---------------------------------------------------------------------------
# Counts: c, beta, multi.
# ---------------------------------------------------------------------------
U9 = np.random.default_rng(0).standard_normal((9, 4))


@pytest.mark.parametrize("m,c", [(3, 1), (6, 2), (4, 1), (8, 3)])
def test_krum_with_m_at_most_2c_plus_2_is_a_value_error_with_m_c_and_the_largest_valid_c(m, c):
    U = U9[:m] if m <= 9 else None
    for fn in (lambda: agg.krum(U, c), lambda: agg.krum_scores(U, c), lambda: agg.krum_select(U, c),
               lambda: agg.get("krum", c=c)(U)):
        _raises(ValueError, fn, "Krum needs m > 2c + 2", f"got m = {m}, c = {c}", f"at most c = {(m - 3) // 2}")


@pytest.mark.parametrize("m,beta", [(6, 3), (1, 1), (9, 5), (2, 1)])
def test_trimmed_mean_with_2beta_at_least_m_is_a_value_error_naming_beta_and_m(m, beta):
    _raises(ValueError, lambda: agg.trimmed_mean(U9[:m], beta), "2*beta < m", f"got beta = {beta}, m = {m}",
            f"at most beta = {(m - 1) // 2}")


@pytest.mark.parametrize("m,c", [(10, 2), (6, 1), (2, 0), (14, 3)])
def test_bulyan_with_m_below_4c_plus_3_is_a_value_error_naming_m_and_c(m, c):
    U = np.random.default_rng(1).standard_normal((m, 3))
    _raises(ValueError, lambda: agg.bulyan(U, c), "Bulyan needs m >= 4c + 3", f"got m = {m}, c = {c}")


@pytest.mark.parametrize("call,name", [
    (lambda: agg.krum(U9, -1), "c"),
    (lambda: agg.krum_scores(U9, -2), "c"),
    (lambda: agg.krum_select(U9, -1), "c"),
    (lambda: agg.bulyan(U9, -1), "c"),
    (lambda: agg.trimmed_mean(U9, -1), "beta"),
])
def test_negative_counts_are_a_value_error_naming_the_parameter_and_value(call, name):
    _raises(ValueError, call, f"{name} must be >= 0", "got -")


@pytest.mark.parametrize("value,shown", [(1.0, "float 1.0"), (2.5, "float 2.5"), (True, "bool True"),
                                         (False, "bool False"), ("2", "str '2'"), (None, "NoneType None"),
                                         (np.float64(1.0), "float64")])
@pytest.mark.parametrize("call,name", [
    (lambda U, v: agg.krum(U, v), "c"),
    (lambda U, v: agg.krum_scores(U, v), "c"),
    (lambda U, v: agg.krum_select(U, v), "c"),
    (lambda U, v: agg.bulyan(U, v), "c"),
    (lambda U, v: agg.trimmed_mean(U, v), "beta"),
    (lambda U, v: agg.krum(U, 1, multi=v), "multi"),
])
def test_non_integer_counts_are_a_type_error_naming_the_parameter_and_the_value(call, name, value, shown):
    _raises(TypeError, lambda: call(U9, value), f"{name}: expected an integer", f"got {shown}")


def test_numpy_and_torch_integer_scalars_are_accepted_as_counts():
    expected = agg.krum(U9, 2, multi=3)
    np.testing.assert_array_equal(agg.krum(U9, np.int64(2), multi=np.int32(3)), expected)
    np.testing.assert_array_equal(agg.trimmed_mean(U9, np.uint8(2)), agg.trimmed_mean(U9, 2))
    np.testing.assert_array_equal(agg.bulyan(U9, torch.tensor(1)), agg.bulyan(U9, 1))


@pytest.mark.parametrize("multi", [0, 9, 100])
def test_multi_outside_1_to_m_minus_c_is_a_value_error_naming_the_range_and_value(multi):
    for fn in (lambda: agg.krum(U9, 1, multi=multi), lambda: agg.krum_select(U9, 1, multi=multi)):
        _raises(ValueError, fn, "multi must be in [1, m - c] = [1, 8]", f"got {multi}")


def test_negative_multi_is_a_value_error_naming_multi_and_the_value():
    _raises(ValueError, lambda: agg.krum(U9, 1, multi=-1), "multi", "-1")


# ---------------------------------------------------------------------------
# Registry.
# ---------------------------------------------------------------------------
def test_unknown_rule_name_is_a_value_error_listing_the_available_rules():
    msg = _raises(ValueError, lambda: agg.get("geomed"), "unknown aggregation rule 'geomed'", "available:")
    for name in agg.available():
        assert name in msg


@pytest.mark.parametrize("name,params,unknown,accepted", [
    ("median", {"beta": 1}, ["beta"], "no parameters"),
    ("mean", {"c": 1}, ["c"], "no parameters"),
    ("trimmed_mean", {"beta": 1, "c": 1}, ["c"], "beta"),
    ("krum", {"c": 1, "bogus": 2, "alpha": 0}, ["alpha", "bogus"], "c, multi, squared"),
    ("bulyan", {"c": 1, "multi": 2}, ["multi"], "c, squared"),
])
def test_unknown_rule_parameter_is_a_type_error_naming_it_and_the_accepted_ones(name, params, unknown, accepted):
    _raises(TypeError, lambda: agg.get(name, **params), f"rule {name!r} got unknown parameter(s) {unknown}",
            f"it accepts: {accepted}")


@pytest.mark.parametrize("name,missing", [("trimmed_mean", "beta"), ("krum", "c"), ("bulyan", "c")])
def test_missing_rule_parameter_is_a_type_error_naming_it(name, missing):
    _raises(TypeError, lambda: agg.get(name), f"rule {name!r} needs parameter(s) [{missing!r}]")
    _raises(TypeError, lambda: agg.get(name, squared=True) if name != "trimmed_mean" else agg.get(name),
            f"needs parameter(s) [{missing!r}]")


def test_registry_rules_check_their_bound_parameters_when_called():
    rule = agg.get("trimmed_mean", beta=5)
    _raises(ValueError, lambda: rule(U9), "2*beta < m", "got beta = 5, m = 9")


# ---------------------------------------------------------------------------
# coordinate_stats rows.
# ---------------------------------------------------------------------------
U5 = np.random.default_rng(2).standard_normal((5, 3))


@pytest.mark.parametrize("rows", [np.zeros(5, dtype=bool), np.array([], dtype=np.int64), []])
def test_coordinate_stats_with_no_rows_is_an_error_naming_rows(rows):
    with pytest.raises((ValueError, TypeError)) as info:
        coordinate_stats(U5, rows=rows)
    msg = str(info.value)
    assert msg.startswith("rows:"), msg
    if isinstance(rows, np.ndarray):
        assert isinstance(info.value, ValueError) and "expected at least one row, got none" in msg


@pytest.mark.parametrize("mask", [np.ones(4, dtype=bool), np.ones(6, dtype=bool), np.ones((5, 1), dtype=bool)])
def test_coordinate_stats_mask_of_the_wrong_shape_is_a_value_error_naming_both_shapes(mask):
    _raises(ValueError, lambda: coordinate_stats(U5, rows=mask), "a boolean mask must have shape (5,)",
            f"got {mask.shape}")


@pytest.mark.parametrize("rows,lo,hi", [([0, 7], 0, 7), ([-1], -1, -1), ([5], 5, 5), (np.array([2, 9, 1]), 1, 9)])
def test_coordinate_stats_index_out_of_range_is_a_value_error_naming_the_range_and_the_indices(rows, lo, hi):
    _raises(ValueError, lambda: coordinate_stats(U5, rows=rows), "indices must lie in [0, 5)",
            f"got min {lo} and max {hi}")


def test_coordinate_stats_repeated_indices_are_a_value_error():
    _raises(ValueError, lambda: coordinate_stats(U5, rows=[1, 1]), "rows: indices must be distinct")


@pytest.mark.parametrize("rows,given", [([0.5], "dtype float64 with shape (1,)"),
                                        ([[0, 1]], "with shape (1, 2)"),
                                        (["a"], "dtype <U1")])
def test_coordinate_stats_rows_of_another_kind_are_a_type_error_naming_what_is_accepted(rows, given):
    _raises(TypeError, lambda: coordinate_stats(U5, rows=rows),
            "expected a boolean mask of shape (5,) or 1-D integer indices", given)


# ---------------------------------------------------------------------------
# Backend switches.
# ---------------------------------------------------------------------------
def test_unknown_simd_level_is_a_value_error_listing_the_levels(restore_simd):
    _raises(ValueError, lambda: cpu.set_simd_level("sse9"), "'auto', 'generic', 'avx2' or 'avx512'", "got 'sse9'")
    assert cpu.simd_level() == restore_simd


@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_thread_count_is_a_value_error(n, restore_threads):
    _raises(ValueError, lambda: fedrobust.set_num_threads(n), "num_threads must be in [1, ", f"got {n}")
    assert fedrobust.backend_info()["cpu"]["threads"] == restore_threads


@pytest.mark.parametrize("call", [
    lambda U: agg.trimmed_mean(U, 2**62),
    lambda U: agg.krum(U, 2**62),
    lambda U: agg.krum_scores(U, 2**62),
    lambda U: agg.bulyan(U, 2**61),
])
def test_huge_parameters_are_refused_not_overflowed(call):
    """2*beta, 2c + 2 and 4c + 3 would overflow int64: the checks must not."""
    with pytest.raises(ValueError):
        call(np.zeros((5, 3), np.float32))
