"""Coordinate-wise kernels against the float64 numpy oracle (fedrobust.reference).

median, trimmed_mean, mean, coordinate_stats and Bulyan's second stage are
designed to give exactly reference(U).astype(dtype): these tests compare bit
patterns (assert_identical), over shapes, dtypes, memory layouts and special
values, plus SIMD-level and thread-count determinism and the guarantee that
inputs are never written to.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import fedrobust
from fedrobust import aggregators as agg
from fedrobust import reference as ref
from fedrobust._native import cpu
from fedrobust.dispatch import CPU
from fedrobust.stats import coordinate_stats

from conftest import (
    DTYPES,
    HAVE_AVX2,
    HAVE_AVX512,
    LAYOUTS,
    SIMD_LEVELS,
    as_layout,
    assert_identical,
    assert_unchanged,
    cached_case,
    random_matrix,
    run_with_simd,
    run_with_threads,
    snapshot,
    tied_matrix,
    with_nonfinite_rows,
)

BIG_D = 100003
SPECIAL_KINDS = ("duplicates", "ties", "signed_zeros", "constant_cols", "big_small")


# ---------------------------------------------------------------------------
# Case grid (shared by median / trimmed mean / mean / coordinate_stats).
# ---------------------------------------------------------------------------
def _grid():
    cases = []
    # Every layout on the normal data: m around the comparator-network limit (256) included.
    for m in (1, 2, 3, 7, 100, 256, 257):
        for d in (1, 7, 1000):
            for dt in DTYPES:
                for lay in LAYOUTS:
                    cases.append(("normal", m, d, np.dtype(dt).name, lay))
    # d = 100003: small m with every dtype, a few layouts; large m once per dtype.
    for m in (1, 2, 3, 7):
        for dt in DTYPES:
            for lay in ("C", "col_strided", "row_reversed"):
                cases.append(("normal", m, BIG_D, np.dtype(dt).name, lay))
    cases.append(("normal", 100, BIG_D, "float32", "C"))
    cases.append(("normal", 257, BIG_D, "float64", "F"))
    # Special values: duplicates, ties, signed zeros, constant columns, 1e30 beside 1e-3.
    for kind in SPECIAL_KINDS:
        for m in (2, 3, 7, 100, 257):
            for d in (7, 1000):
                for dt in DTYPES:
                    for lay in ("C", "F", "col_reversed"):
                        cases.append((kind, m, d, np.dtype(dt).name, lay))
    return [pytest.param(*c, id="-".join(f"{x}" if not isinstance(x, int) else f"{x}" for x in
                                         (c[0], f"m{c[1]}", f"d{c[2]}", c[3], c[4]))) for c in cases]


GRID = _grid()


def _betas(m: int, big: bool = False):
    betas = sorted({b for b in (0, 1, m // 4, (m - 1) // 2) if 2 * b < m})
    return betas[-2:] if big else betas


@functools.lru_cache(maxsize=4096)
def _expected(fn: str, kind: str, m: int, d: int, dtype_name: str, *params):
    """reference.<fn>(U, *params) cast to the input dtype (tuples for coordinate_stats), cached."""
    U = cached_case(kind, m, d, dtype_name)
    dt = np.dtype(dtype_name)
    out = getattr(ref, fn)(U, *params)
    if isinstance(out, tuple):
        return tuple(o.astype(dt) for o in out)
    return out.astype(dt)


def _input(kind, m, d, dtype_name, layout):
    return as_layout(cached_case(kind, m, d, dtype_name), layout)


# ---------------------------------------------------------------------------
# Bit-identical to the reference.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind,m,d,dtype_name,layout", GRID)
def test_median_is_bit_identical_to_reference(kind, m, d, dtype_name, layout):
    U = _input(kind, m, d, dtype_name, layout)
    assert_identical(agg.median(U), _expected("median", kind, m, d, dtype_name), "median")


@pytest.mark.parametrize("kind,m,d,dtype_name,layout", GRID)
def test_trimmed_mean_is_bit_identical_to_reference_for_every_beta(kind, m, d, dtype_name, layout):
    U = _input(kind, m, d, dtype_name, layout)
    for beta in _betas(m, big=(d == BIG_D and m > 7)):
        expected = _expected("trimmed_mean", kind, m, d, dtype_name, beta)
        assert_identical(agg.trimmed_mean(U, beta), expected, f"trimmed_mean beta={beta}")


@pytest.mark.parametrize("kind,m,d,dtype_name,layout", GRID)
def test_mean_is_bit_identical_to_reference(kind, m, d, dtype_name, layout):
    U = _input(kind, m, d, dtype_name, layout)
    assert_identical(agg.mean(U), _expected("mean", kind, m, d, dtype_name), "mean")


@pytest.mark.parametrize("kind,m,d,dtype_name,layout", GRID)
def test_coordinate_stats_are_bit_identical_to_reference(kind, m, d, dtype_name, layout):
    U = _input(kind, m, d, dtype_name, layout)
    got = coordinate_stats(U)
    expected = _expected("coordinate_stats", kind, m, d, dtype_name)
    for name, g, e in zip(("mean", "std", "min", "max"), got, expected):
        assert_identical(g, e, f"coordinate_stats.{name}")


def test_trimmed_mean_with_beta_zero_equals_mean_and_median_of_one_row_is_the_row():
    U = random_matrix(5, 33, np.float64, seed=3)
    assert_identical(agg.trimmed_mean(U, 0), ref.trimmed_mean(U, 0))
    row = random_matrix(1, 33, np.float32, seed=4)
    assert_identical(agg.median(row), row[0])
    assert_identical(agg.trimmed_mean(row, 0), row[0])
    assert_identical(agg.mean(row), row[0])


def test_median_of_even_m_is_lo_half_plus_hi_half_without_overflow():
    big = np.finfo(np.float64).max
    U = np.array([[big, -big, 1.0], [big, -big, 2.0]])
    assert_identical(agg.median(U), np.array([big, -big, 1.5]))
    f32max = np.finfo(np.float32).max
    U32 = np.array([[f32max], [f32max]], dtype=np.float32)
    assert_identical(agg.median(U32), np.array([f32max], dtype=np.float32))


def test_median_of_two_equal_least_subnormals_is_that_value():
    # lo/2 + hi/2 rounds each half of an odd multiple of the least double subnormal to even:
    # two equal middle values must give themselves back, on every path that averages two.
    tiny = np.nextafter(0.0, 1.0)  # 5e-324
    U = np.array([[tiny, 3 * tiny, -tiny, tiny], [tiny, 3 * tiny, -tiny, 3 * tiny]])
    assert_identical(agg.median(U), np.array([tiny, 3 * tiny, -tiny, 2 * tiny]))
    assert_identical(ref.median(U), agg.median(U))
    V = np.full((3, 2), tiny)  # leave-one-out median of 3 rows: the other two averaged
    assert_identical(CPU.leave_one_out_median(V), np.full((3, 2), tiny))


def test_signed_zero_columns_give_positive_zero():
    U = np.array([[-0.0, -0.0, 0.0], [-0.0, 0.0, -0.0], [-0.0, -0.0, -0.0]])
    for out in (agg.median(U), agg.trimmed_mean(U, 1), agg.mean(U), *coordinate_stats(U)[::2]):
        assert_identical(out, np.zeros(3))


# ---------------------------------------------------------------------------
# coordinate_stats over a subset of rows.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ("C", "F", "row_reversed"))
@pytest.mark.parametrize("m,d", [(1, 7), (7, 1000), (257, 33)])
def test_coordinate_stats_over_rows_mask_and_indices_match_reference(m, d, dtype, layout):
    base = random_matrix(m, d, dtype, seed=m + d)
    U = as_layout(base, layout)
    g = np.random.default_rng(m)
    mask = g.random(m) < 0.5
    mask[g.integers(m)] = True
    idx = g.permutation(np.flatnonzero(mask))  # unsorted indices: the result uses row order
    expected = tuple(e.astype(dtype) for e in ref.coordinate_stats(base, rows=mask))
    for rows in (mask, idx, idx.tolist(), idx.astype(np.int32)):
        got = coordinate_stats(U, rows=rows)
        for name, ge, ex in zip(got._fields, got, expected):
            assert_identical(ge, ex, f"coordinate_stats.{name} rows={type(rows).__name__}")
    all_rows = coordinate_stats(U, rows=np.ones(m, dtype=bool))
    for ge, ex in zip(all_rows, coordinate_stats(U)):
        assert_identical(ge, ex)


def test_coordinate_stats_std_is_population_std_and_fields_are_named():
    U = np.array([[1.0, 5.0], [3.0, 5.0]])
    s = coordinate_stats(U)
    assert s._fields == ("mean", "std", "min", "max")
    assert_identical(s.mean, np.array([2.0, 5.0]))
    assert_identical(s.std, np.array([1.0, 0.0]))
    assert_identical(s.min, np.array([1.0, 5.0]))
    assert_identical(s.max, np.array([3.0, 5.0]))


# ---------------------------------------------------------------------------
# Bulyan (second stage: mean of the gamma values closest to the median).
# ---------------------------------------------------------------------------
def _bulyan_margin(U, c: int) -> float:
    """Smallest relative gap between the best and second-best Krum score over the reference's
    selection rounds: the test data must not be near a tie, or float rounding may pick either."""
    D = ref.pairwise_sq_distances(U)
    remaining = list(range(D.shape[0]))
    margin = np.inf
    for _ in range(D.shape[0] - 2 * c):
        s = ref._krum_scores_from(D, remaining, c, True)
        order = np.argsort(s, kind="stable")
        if len(s) > 1 and np.isfinite(s[order[1]]):
            scale = max(abs(s[order[1]]), 1e-300)
            gap = (s[order[1]] - s[order[0]]) / scale
            if gap > 0:  # exact ties (duplicates) are fine: both break them by index
                margin = min(margin, gap)
        remaining.pop(int(order[0]))
    return margin


BULYAN_CASES = []
for _m, _c in ((7, 1), (8, 1), (11, 2), (12, 2), (100, 10), (100, 24)):
    for _d in (1, 7, 1000):
        for _dt in DTYPES:
            for _kind in ("normal", "ties", "duplicates", "signed_zeros", "constant_cols", "big_small"):
                if _m == 100 and _kind not in ("normal", "ties") and _d != (1000 if _kind == "big_small" else 7):
                    continue  # (big_small with d = 7 and m = 100 has Krum near-ties for every seed)
                _lays = LAYOUTS if _kind == "normal" else ("C",)
                for _lay in _lays:
                    BULYAN_CASES.append(pytest.param(_kind, _m, _c, _d, np.dtype(_dt).name, _lay,
                                                     id=f"{_kind}-m{_m}-c{_c}-d{_d}-{np.dtype(_dt).name}-{_lay}"))
BULYAN_CASES.append(pytest.param("normal", 257, 60, 1000, "float32", "C", id="normal-m257-c60-d1000-float32-C"))
BULYAN_CASES.append(pytest.param("normal", 11, 2, BIG_D, "float64", "col_strided",
                                 id="normal-m11-c2-d100003-float64-col_strided"))


EXACT_KINDS = ("ties", "signed_zeros")  # small dyadic values: every distance is exact in both


@functools.lru_cache(maxsize=512)
def _bulyan_expected(kind, m, c, d, dtype_name):
    """(seed, reference selection, reference aggregate): the first seed whose data has no
    near-tie in the Krum scores (or None), since float rounding may break a near-tie either way."""
    rtol = 1e-6 if dtype_name == "float32" else 1e-13
    for seed in range(20):
        U = cached_case(kind, m, d, dtype_name, seed)
        if kind in EXACT_KINDS or _bulyan_margin(U, c) > rtol:
            return seed, ref.bulyan_select(U, c), ref.bulyan(U, c).astype(np.dtype(dtype_name))
    return None, None, None


@pytest.mark.parametrize("kind,m,c,d,dtype_name,layout", BULYAN_CASES)
def test_bulyan_selection_and_aggregate_are_bit_identical_to_reference(kind, m, c, d, dtype_name, layout):
    seed, sel_ref, expected = _bulyan_expected(kind, m, c, d, dtype_name)
    if seed is None:
        pytest.skip("no seed gives data without a near-tie in the Krum scores (a test-data precondition)")
    U = as_layout(cached_case(kind, m, d, dtype_name, seed), layout)
    out, sel = CPU.bulyan(U, c, True)
    np.testing.assert_array_equal(sel, sel_ref)
    assert_identical(out, expected, "bulyan (cpu)")
    assert_identical(agg.bulyan(U, c), expected, "bulyan")
    both = agg.bulyan_with_selection(U, c)
    assert_identical(both[0], expected, "bulyan_with_selection")
    np.testing.assert_array_equal(both[1], sel_ref)


def test_bulyan_second_stage_float32_even_theta_uses_exact_median():
    """theta = m - 2c = 6 (even), gamma = 4; sorted selected values 0, 0.5, 1, 1+2^-23, 2, 3.
    The median 1 + 2^-24 is not a float32; the window test at l = 0 compares
    2 - med = 1 - 2^-24 with med - 0 = 1 + 2^-24 and moves on, so the window is
    {0.5, 1, 1+2^-23, 2} and the mean 1.125 (reference). Rounding the median to float32
    first (1.0) makes the gaps tie and keeps l = 0, giving 0.625."""
    one_up = float(np.nextafter(np.float32(1), np.float32(2)))
    col = np.array([0.0, 0.5, 1.0, one_up, 2.0, 3.0, 1e6, -1e6], dtype=np.float32)
    U = col[:, None]
    sel = CPU.bulyan(U, 1, True)[1]
    np.testing.assert_array_equal(np.sort(sel), [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(sel, ref.bulyan_select(U, 1))
    expected = ref.bulyan(U, 1).astype(np.float32)
    assert expected[0] == np.float32(1.125)
    assert_identical(agg.bulyan(U, 1), expected, "bulyan float32, even theta")


# ---------------------------------------------------------------------------
# Non-finite values (SPEC 13.15): NaN ordered as +Inf.
# ---------------------------------------------------------------------------
_KINDS_CYCLE = ("nan", "inf", "-inf", "mixed")


def _bad_rows(m: int, k: int, seed: int = 0):
    rows = np.random.default_rng(seed).choice(m, size=k, replace=False)
    return {int(r): _KINDS_CYCLE[i % len(_KINDS_CYCLE)] for i, r in enumerate(sorted(rows))}


NONFINITE_SHAPES = [(3, 7), (7, 1000), (100, 1000), (256, 7), (257, 1000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ("C", "F", "col_strided"))
@pytest.mark.parametrize("m,d", NONFINITE_SHAPES)
def test_median_with_fewer_than_half_nonfinite_rows_is_finite_and_matches_reference(m, d, dtype, layout):
    for k in sorted({1, (m - 1) // 2}):
        base = with_nonfinite_rows(random_matrix(m, d, dtype, seed=k), _bad_rows(m, k, seed=k))
        U = as_layout(base, layout)
        got = agg.median(U)
        assert np.isfinite(got).all(), f"k={k} bad rows of m={m}"
        assert_identical(got, ref.median(base).astype(dtype), f"median k={k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ("C", "F", "col_strided"))
@pytest.mark.parametrize("m,d", NONFINITE_SHAPES)
def test_trimmed_mean_with_beta_at_least_bad_rows_is_finite_and_matches_reference(m, d, dtype, layout):
    for k in sorted({1, (m - 1) // 4 or 1}):
        base = with_nonfinite_rows(random_matrix(m, d, dtype, seed=k), _bad_rows(m, k, seed=k))
        U = as_layout(base, layout)
        for beta in sorted({k, (m - 1) // 2}):
            got = agg.trimmed_mean(U, beta)
            assert np.isfinite(got).all(), f"k={k}, beta={beta}"
            assert_identical(got, ref.trimmed_mean(base, beta).astype(dtype), f"trimmed_mean k={k} beta={beta}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,d", NONFINITE_SHAPES)
def test_coordinatewise_rules_beyond_tolerance_still_match_reference(m, d, dtype):
    """Too many bad rows: the result may be non-finite, but it is still exactly the reference's."""
    k = m // 2 + 1 if m > 2 else m
    base = with_nonfinite_rows(random_matrix(m, d, dtype, seed=9), _bad_rows(m, k, seed=9))
    assert_identical(agg.median(base), ref.median(base).astype(dtype), "median")
    for beta in _betas(m):
        assert_identical(agg.trimmed_mean(base, beta), ref.trimmed_mean(base, beta).astype(dtype), f"tm {beta}")
    for name, g, e in zip(("mean", "std", "min", "max"), coordinate_stats(base), ref.coordinate_stats(base)):
        assert_identical(g, e.astype(dtype), f"coordinate_stats.{name}")


def test_nan_is_ordered_as_positive_infinity():
    U = np.array([[np.nan, 1.0], [-np.inf, np.nan], [0.0, np.inf], [5.0, -1.0]])
    # columns sorted (NaN -> +Inf): [-inf, 0, 5, inf] and [-1, 1, inf, inf]
    assert_identical(agg.median(U), np.array([2.5, np.inf]))
    assert_identical(agg.trimmed_mean(U, 1), np.array([2.5, np.inf]))
    s = coordinate_stats(U)
    assert_identical(s.max, np.array([np.inf, np.inf]))
    assert_identical(s.min, np.array([-np.inf, -1.0]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", _KINDS_CYCLE)
def test_mean_raises_value_error_naming_the_nonfinite_workers(kind, dtype):
    base = random_matrix(9, 50, dtype, seed=1)
    U = with_nonfinite_rows(base, {2: kind, 7: kind})
    with pytest.raises(ValueError, match=r"workers \[2, 7\]") as info:
        agg.mean(U)
    assert "NaN or Inf" in str(info.value)
    one = np.array(base, copy=True)
    one[4, 13] = np.nan
    with pytest.raises(ValueError, match=r"workers \[4\]"):
        agg.mean(one)
    np.testing.assert_array_equal(agg.nonfinite_workers(U), [2, 7])
    np.testing.assert_array_equal(agg.nonfinite_workers(one), [4])
    assert agg.nonfinite_workers(base).size == 0
    assert agg.nonfinite_workers(U).dtype == np.int64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,c", [(7, 1), (11, 2), (100, 24)])
def test_bulyan_with_at_most_c_nonfinite_rows_excludes_them_and_matches_reference(m, c, dtype):
    base = random_matrix(m, 40, dtype, seed=m)
    bad = _bad_rows(m, c, seed=c)
    U = with_nonfinite_rows(base, bad)
    out, sel = CPU.bulyan(U, c, True)
    assert not set(sel.tolist()) & set(bad), f"selected a bad row: {sel} vs {sorted(bad)}"
    np.testing.assert_array_equal(sel, ref.bulyan_select(U, c))
    assert np.isfinite(out).all()
    assert_identical(agg.bulyan(U, c), ref.bulyan(U, c).astype(dtype), "bulyan")


# ---------------------------------------------------------------------------
# Inputs are never modified.
# ---------------------------------------------------------------------------
ALL_FUNCTIONS = {
    "mean": lambda U: agg.mean(U),
    "median": lambda U: agg.median(U),
    "trimmed_mean": lambda U: agg.trimmed_mean(U, 2),
    "krum": lambda U: agg.krum(U, 2),
    "multi_krum": lambda U: agg.krum(U, 2, multi=3, squared=False),
    "krum_scores": lambda U: agg.krum_scores(U, 2),
    "krum_select": lambda U: agg.krum_select(U, 2, multi=2),
    "pairwise_distances": lambda U: agg.pairwise_distances(U),
    "pairwise_distances_plain": lambda U: agg.pairwise_distances(U, squared=False),
    "bulyan": lambda U: agg.bulyan(U, 2),
    "nonfinite_workers": lambda U: agg.nonfinite_workers(U),
    "coordinate_stats": lambda U: coordinate_stats(U),
    "coordinate_stats_rows": lambda U: coordinate_stats(U, rows=[3, 0, 5]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fn", sorted(ALL_FUNCTIONS))
def test_inputs_are_never_modified(fn, layout, dtype):
    rows_sets = [random_matrix(12, 1000, dtype, seed=5), tied_matrix(12, 300, dtype, seed=6)]
    nonfinite = with_nonfinite_rows(random_matrix(12, 300, dtype, seed=7), {1: "nan", 4: "mixed"})
    for base in rows_sets + [nonfinite]:
        U = as_layout(base, layout)
        snap = snapshot(U)
        try:
            ALL_FUNCTIONS[fn](U)
        except ValueError:
            assert fn == "mean" and base is nonfinite
        assert_unchanged(snap, fn)
        assert_identical(U, base, f"{fn}: logical input")


def test_torch_inputs_are_never_modified():
    torch = pytest.importorskip("torch")
    for dtype in (torch.float32, torch.float64):
        t = torch.randn(12, 257, dtype=dtype, generator=torch.Generator().manual_seed(0))
        t[3, 5] = float("nan")
        before = t.clone()
        for name, fn in ALL_FUNCTIONS.items():
            try:
                fn(t)
            except ValueError:
                assert name == "mean"
            assert torch.equal(t.nan_to_num(0.0), before.nan_to_num(0.0)) and torch.isnan(t[3, 5]), name


# ---------------------------------------------------------------------------
# SIMD levels: generic, AVX2 and AVX-512 give the same bits.
# ---------------------------------------------------------------------------
SIMD_CASES = [
    ("normal", 7, 1000), ("normal", 100, 1000), ("normal", 256, 129), ("normal", 257, 1000),
    ("normal", 3, BIG_D), ("ties", 100, 1000), ("big_small", 7, 1000), ("signed_zeros", 257, 64),
]

SIMD_FUNCTIONS = {
    "median": agg.median,
    "trimmed_mean": lambda U: agg.trimmed_mean(U, (U.shape[0] - 1) // 4),
    "trimmed_mean_max_beta": lambda U: agg.trimmed_mean(U, (U.shape[0] - 1) // 2),
    "mean": agg.mean,
    "coordinate_stats": lambda U: coordinate_stats(U),
    "coordinate_stats_rows": lambda U: coordinate_stats(U, rows=np.arange(0, U.shape[0], 2)),
}


@pytest.mark.skipif(not HAVE_AVX2, reason="AVX2+FMA not available on this CPU/build")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ("C", "col_strided"))
@pytest.mark.parametrize("kind,m,d", SIMD_CASES)
def test_generic_and_avx2_levels_are_bit_identical(kind, m, d, layout, dtype, restore_simd):
    base = cached_case(kind, m, d, np.dtype(dtype).name)
    if kind == "normal" and m >= 7:  # add non-finite rows (not for mean, which raises)
        nonfinite = with_nonfinite_rows(base, {1: "nan", 5: "mixed"})
    else:
        nonfinite = None
    for data in (base, nonfinite):
        if data is None:
            continue
        U = as_layout(data, layout)
        for name, fn in SIMD_FUNCTIONS.items():
            if name == "mean" and data is nonfinite:
                continue
            g = run_with_simd("generic", fn, U)
            for level in SIMD_LEVELS[1:]:  # avx2, and avx512 where the CPU has it
                a = run_with_simd(level, fn, U)
                assert cpu.simd_level() == level
                for x, y in zip(g if isinstance(g, tuple) else (g,), a if isinstance(a, tuple) else (a,)):
                    assert_identical(x, y, f"{name}: generic vs {level}")


def test_simd_level_switch_is_reported_and_restorable(restore_simd):
    assert restore_simd in ("generic", "avx2", "avx512")
    cpu.set_simd_level("generic")
    assert cpu.simd_level() == "generic"
    assert fedrobust.backend_info()["cpu"]["simd"] == "generic"
    cpu.set_simd_level("auto")
    assert cpu.simd_level() == ("avx512" if HAVE_AVX512 else "avx2" if HAVE_AVX2 else "generic")
    assert cpu.simd_level_available("generic")
    assert not cpu.simd_level_available("sse9")


# ---------------------------------------------------------------------------
# Thread counts: 1, 2 and 3 threads give the same bits, for every kernel.
# ---------------------------------------------------------------------------
THREAD_FUNCTIONS = {
    "median": agg.median,
    "trimmed_mean": lambda U: agg.trimmed_mean(U, U.shape[0] // 4),
    "mean": agg.mean,
    "coordinate_stats": lambda U: coordinate_stats(U),
    "pairwise_distances": agg.pairwise_distances,
    "pairwise_distances_plain": lambda U: agg.pairwise_distances(U, squared=False),
    "krum_scores": lambda U: agg.krum_scores(U, (U.shape[0] - 3) // 2),
    "krum_select": lambda U: agg.krum_select(U, 1, multi=3).astype(np.float64),
    "multi_krum": lambda U: agg.krum(U, 1, multi=3),
    "bulyan": lambda U: agg.bulyan(U, (U.shape[0] - 3) // 4),
    "bulyan_select": lambda U: agg.bulyan_select(U, (U.shape[0] - 3) // 4).astype(np.float64),
    "nonfinite_workers": lambda U: agg.nonfinite_workers(U).astype(np.float64),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,m,d", [("normal", 7, BIG_D), ("normal", 100, 1000), ("normal", 257, 1000),
                                      ("normal", 13, 5000), ("big_small", 40, 777)])
def test_results_are_bit_identical_for_1_2_and_3_threads(kind, m, d, dtype, restore_threads):
    U = as_layout(cached_case(kind, m, d, np.dtype(dtype).name), "C")
    for name, fn in THREAD_FUNCTIONS.items():
        results = [run_with_threads(n, fn, U) for n in (1, 2, 3)]
        for n, r in zip((2, 3), results[1:]):
            for x, y in zip(results[0] if isinstance(results[0], tuple) else (results[0],),
                            r if isinstance(r, tuple) else (r,)):
                assert_identical(y, x, f"{name}: {n} threads vs 1")


def test_set_num_threads_changes_backend_info_threads(restore_threads):
    fedrobust.set_num_threads(1)
    assert fedrobust.backend_info()["cpu"]["threads"] == 1
    fedrobust.set_num_threads(3)
    assert fedrobust.backend_info()["cpu"]["threads"] == 3


# The comparator network (below 512 rows): blocks of 16 rows sorted as the tile loads (the
# last one completed with +Inf), then bitonic merges whose short distances run in registers, a
# block of 8 (AVX2, generic) or 16 rows (AVX-512) at a time. Every row count up to 70 and the
# block and power-of-two edges beyond, at every SIMD level, both dtypes, with ties, signed
# zeros and non-finite values, over a full tile and a partial one (d = 70): the reference's
# bits for the median, the trimmed mean and Bulyan's second stage (a full sort).
NETWORK_ROWS = list(range(1, 71)) + [95, 96, 97, 127, 128, 129, 255, 256, 257, 383, 511]


def _network_rules(U, beta, gamma, rows):
    return agg.median(U), agg.trimmed_mean(U, beta), CPU.closest_to_median_mean(U, gamma, rows)


@pytest.mark.parametrize("m", NETWORK_ROWS)
def test_network_rows_match_the_reference_at_every_simd_level(m, restore_simd):
    rng = np.random.default_rng(m)
    base = rng.standard_normal((m, 70))
    base[:, 1] = rng.integers(0, 3, m)  # ties
    base[:, 2] = np.where(rng.random(m) < 0.5, 0.0, -0.0)  # signed zeros only
    base[rng.random(m) < 0.2, 3] = np.nan
    base[rng.random(m) < 0.2, 4] = np.inf
    base[rng.random(m) < 0.2, 5] = -np.inf
    beta = (m - 1) // 4
    rows = list(range(m))
    gamma = max(1, m // 2)
    for dtype in DTYPES:
        U = base.astype(dtype)
        before = snapshot(U)
        expected = (ref.median(U).astype(dtype), ref.trimmed_mean(U, beta).astype(dtype),
                    ref.closest_to_median_mean(U, gamma).astype(dtype))
        for level in SIMD_LEVELS:
            got = run_with_simd(level, _network_rules, U, beta, gamma, rows)
            for name, x, y in zip(("median", "trimmed mean", "closest to the median"), got, expected):
                assert_identical(x, y, f"{name} m={m} {np.dtype(dtype).name} {level}")
        assert_unchanged(before, f"network m={m}")


# Large m: the comparator network runs below 512 rows, the sampled pivots from there (and
# std::nth_element where a band overflows); all must give the reference's bits (the switch
# never changes a result). tests/test_large_m_selection.py covers the pivots' paths.
@pytest.mark.parametrize("m", [5000, 16384, 16385])
@pytest.mark.parametrize("dtype", DTYPES)
def test_median_and_trimmed_mean_for_large_m_are_bit_identical_to_reference(m, dtype):
    rng = np.random.default_rng(m)
    U = rng.standard_normal((m, 5)).astype(dtype)
    U[:, 1] = rng.integers(0, 4, m)  # heavy ties
    U[: m // 10, 2] = np.nan  # within tolerance for the median and for beta = m // 5
    U[m // 10: m // 5, 3] = -np.inf
    assert_identical(agg.median(U), ref.median(U).astype(dtype), f"median m={m}")
    beta = m // 5
    assert_identical(agg.trimmed_mean(U, beta), ref.trimmed_mean(U, beta).astype(dtype), f"trimmed m={m}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ("C", "F", "col_strided", "row_reversed", "col_reversed"))
@pytest.mark.parametrize("d", (1, 7, 8, 9, 33, 1000))
def test_nonfinite_workers_find_one_bad_value_anywhere_in_a_row(dtype, layout, d):
    """One NaN, +Inf or -Inf at a random column of some rows (vector bodies and tails, every
    layout): nonfinite_workers names exactly those rows, as the reference does, and leaves U."""
    g = np.random.default_rng(d)
    U = g.standard_normal((12, d)).astype(dtype)
    for row, value in zip((0, 5, 11), (np.nan, np.inf, -np.inf)):
        U[row, g.integers(d)] = value
    U[7, d - 1] = np.nan  # the last column: the tail of a vector loop
    X = as_layout(U, layout)
    before = snapshot(X)
    got = agg.nonfinite_workers(X)
    np.testing.assert_array_equal(got, np.flatnonzero(ref.nonfinite_rows(U)))
    np.testing.assert_array_equal(got, [0, 5, 7, 11])
    assert_unchanged(before, "nonfinite_workers")
