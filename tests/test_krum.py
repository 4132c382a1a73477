"""Pairwise distances, Krum / Multi-Krum and Bulyan's selection against fedrobust.reference.

Distances are float sums, so they are compared with a relative tolerance
(float32 rows are accumulated in float lanes: rtol 1e-6; float64: 1e-12).
Selections are compared exactly, on data whose reference scores are not
near-tied (otherwise either answer is right).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from fedrobust import aggregators as agg
from fedrobust import reference as ref
from fedrobust._native import cpu
from fedrobust.dispatch import CPU

from conftest import (
    DTYPES,
    LAYOUTS,
    SIMD_LEVELS,
    as_layout,
    assert_identical,
    cached_case,
    near_identical,
    random_matrix,
    run_with_simd,
    run_with_threads,
    tied_matrix,
    with_nonfinite_rows,
)

GRAM_MIN_ROWS = 144  # krum.h kGramMinRows: from there Krum's choice takes the Gram path
RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
EXACT_KINDS = ("ties", "duplicates", "signed_zeros")  # exact ties in the scores are real ties


@functools.lru_cache(maxsize=256)
def _ref_sq(kind, m, d, dtype_name, seed=0):
    return ref.pairwise_sq_distances(cached_case(kind, m, d, dtype_name, seed))


def _assert_distances_close(got, expected_f64, dtype, what=""):
    got = np.asarray(got)
    assert got.dtype == dtype, what
    with np.errstate(over="ignore"):  # (float32 +Inf for squared distances beyond 3.4e38, as in the kernel)
        exp = expected_f64.astype(dtype).astype(np.float64)  # the kernel rounds its double result to dtype
    np.testing.assert_allclose(got.astype(np.float64), exp, rtol=RTOL[np.dtype(dtype)], atol=0, err_msg=what)


# ---------------------------------------------------------------------------
# Pairwise distances.
# ---------------------------------------------------------------------------
DIST_CASES = []
for _m in (1, 2, 3, 7, 100, 257):
    for _d in (1, 7, 1000):
        for _dt in DTYPES:
            for _lay in LAYOUTS:
                DIST_CASES.append(pytest.param("normal", _m, _d, np.dtype(_dt).name, _lay,
                                               id=f"normal-m{_m}-d{_d}-{np.dtype(_dt).name}-{_lay}"))
for _dt in DTYPES:
    DIST_CASES.append(pytest.param("normal", 3, 100003, np.dtype(_dt).name, "col_strided",
                                   id=f"normal-m3-d100003-{np.dtype(_dt).name}-col_strided"))
for _kind in ("ties", "duplicates", "signed_zeros", "constant_cols", "big_small"):
    for _m in (7, 100):
        for _dt in DTYPES:
            DIST_CASES.append(pytest.param(_kind, _m, 1000, np.dtype(_dt).name, "F",
                                           id=f"{_kind}-m{_m}-d1000-{np.dtype(_dt).name}-F"))


@pytest.mark.parametrize("kind,m,d,dtype_name,layout", DIST_CASES)
def test_pairwise_distances_match_reference_with_zero_diagonal_and_exact_symmetry(kind, m, d, dtype_name, layout):
    dtype = np.dtype(dtype_name)
    U = as_layout(cached_case(kind, m, d, dtype_name), layout)
    expected = _ref_sq(kind, m, d, dtype_name)
    for squared in (True, False):
        D = agg.pairwise_distances(U, squared=squared)
        assert D.shape == (m, m)
        _assert_distances_close(D, expected if squared else np.sqrt(expected), dtype, f"squared={squared}")
        assert np.all(np.diag(D) == 0) and not np.signbit(np.diag(D)).any(), "diagonal must be exactly +0"
        assert_identical(D, np.ascontiguousarray(D.T), "symmetry")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, d", [(121, 1500), (403, 1100), (611, 530)])
def test_distances_of_many_rows_cover_every_pair_once_with_the_same_bits_everywhere(m, d, dtype, restore_threads,
                                                                                     restore_simd):
    """Beyond 120 rows the micro-tiles go in blocks of rows: every pair must be summed once
    (against the twin), in the same order on any thread count and SIMD level, and the
    distance rows that Krum's candidates take must have the full matrix's bits (Krum's Gram
    path must choose as the full matrix)."""
    U = random_matrix(m, d, dtype, seed=m)
    expected = ref.pairwise_sq_distances(U)
    D = cpu.sq_distances(U, None)  # float64 distances whatever the rows' dtype
    np.testing.assert_allclose(D, expected, rtol=RTOL[np.dtype(dtype)], atol=0)
    assert_identical(D, np.ascontiguousarray(D.T), "symmetry")
    if dtype == np.float32 and m >= GRAM_MIN_ROWS:  # Krum's Gram path: its candidates' distance rows decide
        V = U.copy()
        V[[7, 9, 11]] = V[[8, 10, 12]]  # duplicated rows: tied scores
        for squared in (True, False):
            rows, candidates = cpu.krum_choose(V, m // 10, 3, squared)
            assert candidates >= 1, "the Gram path did not run"
            np.testing.assert_array_equal(rows, cpu.krum_select(V, m // 10, 3, squared)[0])
    for threads in (1, 3):
        assert_identical(run_with_threads(threads, cpu.sq_distances, U, None), D, f"{threads} threads")
    for level in SIMD_LEVELS[1:]:  # the vector levels share their lanes (the generic one has no FMA)
        assert_identical(run_with_simd(level, cpu.sq_distances, U, None), D, level)


def test_pairwise_distances_of_duplicate_rows_are_exactly_zero():
    for dtype in DTYPES:
        U = random_matrix(6, 777, dtype, seed=2)
        U[4] = U[1]
        U[5] = U[1]
        D = agg.pairwise_distances(U)
        assert D[1, 4] == D[4, 1] == D[1, 5] == D[4, 5] == 0
        assert (D[~np.eye(6, dtype=bool)] > 0).sum() == 30 - 6
        # equal rows have bit-identical distances to every other row
        assert_identical(D[1], D[4][[0, 4, 2, 3, 1, 5]])


def test_pairwise_distances_of_tiny_integer_rows_are_exact():
    U = tied_matrix(9, 1000, np.float32, seed=4)  # integer differences: every partial sum is exact
    assert_identical(agg.pairwise_distances(U), ref.pairwise_sq_distances(U).astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ("C", "F", "row_reversed"))
def test_nonfinite_rows_give_infinite_distances_and_zero_diagonal(dtype, layout):
    base = random_matrix(9, 301, dtype, seed=11)
    bad = {1: "nan", 4: "inf", 6: "-inf", 8: "mixed"}
    U = as_layout(with_nonfinite_rows(base, bad), layout)
    U2 = np.array(base, copy=True)
    U2[3, 150] = np.nan  # one non-finite value is enough
    expected = ref.pairwise_sq_distances(with_nonfinite_rows(base, bad))
    for squared in (True, False):
        D = agg.pairwise_distances(U, squared=squared)
        badrow = np.zeros(9, dtype=bool)
        badrow[list(bad)] = True
        off = ~np.eye(9, dtype=bool)
        pair_bad = (badrow[:, None] | badrow[None, :]) & off
        assert np.all(np.isposinf(D[pair_bad])), "a pair with a non-finite row has distance +Inf"
        assert np.all(np.diag(D) == 0), "the diagonal is 0 even for non-finite rows"
        good = ~pair_bad & off
        _assert_distances_close(D[good], (expected if squared else np.sqrt(expected))[good], dtype)
        D2 = agg.pairwise_distances(U2, squared=squared)
        assert np.all(np.isposinf(np.delete(D2[3], 3))) and np.all(np.isposinf(np.delete(D2[:, 3], 3)))


def test_float32_distances_beyond_float32_range_are_recomputed_in_double():
    """(1e30 - (-2e30))^2 = 9e60 overflows float32 lanes; the kernel recomputes that chunk in double."""
    U = np.zeros((4, 64), dtype=np.float32)
    U[0, 0], U[1, 0], U[2, 5], U[3, 5] = 1e30, -2e30, 1e-3, 2e-3
    Dplain = agg.pairwise_distances(U, squared=False)
    expected = np.sqrt(ref.pairwise_sq_distances(U))
    _assert_distances_close(Dplain, expected, np.float32)
    assert np.isfinite(Dplain).all()
    # squared: 9e60 is +Inf in float32 output, but the scores/selection use the double distances
    assert np.isposinf(agg.pairwise_distances(U)[0, 1])
    _assert_distances_close(agg.pairwise_distances(U)[2:, 2:], ref.pairwise_sq_distances(U)[2:, 2:], np.float32)


def test_float64_distances_that_overflow_double_are_positive_infinity():
    U = np.zeros((3, 4))
    U[0, 0], U[1, 0] = 1e200, -1e200
    D = agg.pairwise_distances(U)
    assert np.isposinf(D[0, 1]) and np.isposinf(D[1, 0])
    assert D[0, 2] == np.inf and D[1, 2] == np.inf  # (1e200)^2 overflows too
    assert_identical(D, ref.pairwise_sq_distances(U))


# ---------------------------------------------------------------------------
# Krum scores and selection.
# ---------------------------------------------------------------------------
KRUM_CASES = []
for (_m, _cs) in ((3, (0,)), (7, (0, 2)), (100, (10, 48)), (257, (0, 127))):
    for _d in (7, 1000):
        for _dt in DTYPES:
            for _lay in ("C", "F", "row_reversed", "col_strided"):
                KRUM_CASES.append(pytest.param("normal", _m, _cs, _d, np.dtype(_dt).name, _lay,
                                               id=f"normal-m{_m}-d{_d}-{np.dtype(_dt).name}-{_lay}"))
for _kind in ("ties", "duplicates", "signed_zeros", "constant_cols", "big_small"):
    for _dt in DTYPES:
        KRUM_CASES.append(pytest.param(_kind, 11, (2, 4), 300, np.dtype(_dt).name, "C",
                                       id=f"{_kind}-m11-d300-{np.dtype(_dt).name}-C"))
        KRUM_CASES.append(pytest.param(_kind, 100, (10,), 1000, np.dtype(_dt).name, "C",
                                       id=f"{_kind}-m100-d1000-{np.dtype(_dt).name}-C"))


def _selection_is_unambiguous(scores, multi, kind, rtol):
    """The reference order of the `multi` best scores (and the cut after them) is not a near-tie."""
    s = np.sort(scores)[: multi + 1]
    for a, b in zip(s[:-1], s[1:]):
        if a == b and kind != "big_small":
            continue  # a structural tie (same distances, e.g. the closest pair when k = 1): real in both
        if not np.isfinite(b):
            continue
        if (b - a) <= rtol * max(abs(b), 1e-300):
            return False
    return True


@functools.lru_cache(maxsize=512)
def _ref_scores(kind, m, d, dtype_name, c, squared):
    D = _ref_sq(kind, m, d, dtype_name)
    return ref._krum_scores_from(D, list(range(m)), c, squared)


@pytest.mark.parametrize("kind,m,cs,d,dtype_name,layout", KRUM_CASES)
def test_krum_scores_selection_and_aggregate_match_reference(kind, m, cs, d, dtype_name, layout):
    dtype = np.dtype(dtype_name)
    base = cached_case(kind, m, d, dtype_name)
    U = as_layout(base, layout)
    checked = 0
    for c in cs:
        for squared in (True, False):
            what = f"c={c} squared={squared}"
            expected = _ref_scores(kind, m, d, dtype_name, c, squared)
            scores = agg.krum_scores(U, c, squared=squared)
            assert scores.shape == (m,) and scores.dtype == dtype
            _assert_distances_close(scores, expected, dtype, what)
            for multi in sorted({1, min(3, m - c), m - c}):
                if not _selection_is_unambiguous(expected, multi, kind, 10 * RTOL[dtype]):
                    continue
                checked += 1
                ref_sel = np.argsort(expected, kind="stable")[:multi]
                sel = agg.krum_select(U, c, multi=multi, squared=squared)
                assert sel.dtype == np.int64
                np.testing.assert_array_equal(sel, ref_sel, err_msg=f"{what} multi={multi}")
                out = agg.krum(U, c, multi=multi, squared=squared)
                # Krum returns the selected row itself (bit for bit, -0 included); Multi-Krum the mean.
                expected_out = base[ref_sel[0]] if multi == 1 else ref.mean(base, rows=ref_sel).astype(dtype)
                assert_identical(out, expected_out, f"krum {what} multi={multi}")
                native_sel, native_scores = cpu.krum_select(U, c, multi, squared)
                np.testing.assert_array_equal(native_sel, sel)
                with np.errstate(over="ignore"):  # big_small in float32: scores beyond its range are Inf
                    assert_identical(native_scores.astype(dtype), scores)
    if kind != "big_small":
        assert checked >= len(cs), "test data too close to ties: the selection was never checked"


def test_krum_ties_go_to_the_lowest_index():
    U = np.zeros((9, 17))
    assert_identical(agg.krum_scores(U, 2), np.zeros(9))
    np.testing.assert_array_equal(agg.krum_select(U, 2, multi=4), [0, 1, 2, 3])
    # two identical central rows (3 and 6) among spread-out rows
    g = np.random.default_rng(5)
    V = g.standard_normal((9, 17)) * 10
    V[3] = V[6] = V.mean(axis=0)
    for dtype in DTYPES:
        X = V.astype(dtype)
        s = agg.krum_scores(X, 2)
        assert s[3] == s[6]
        np.testing.assert_array_equal(agg.krum_select(X, 2), [3])
        np.testing.assert_array_equal(agg.krum_select(X, 2, multi=2), [3, 6])
        np.testing.assert_array_equal(agg.krum_select(X[::-1], 2, multi=2), [2, 5])
        assert_identical(agg.krum(X, 2), X[3])


def test_multi_krum_is_the_mean_of_the_selected_rows_in_index_order():
    U = random_matrix(20, 513, np.float32, seed=8)
    sel = agg.krum_select(U, 4, multi=7)
    assert len(set(sel.tolist())) == 7
    assert_identical(agg.krum(U, 4, multi=7), ref.mean(U, rows=sel).astype(np.float32))
    assert_identical(agg.krum(U, 4, multi=7), agg.mean(U[np.sort(sel)]))
    # multi = m - c averages every row except the c worst
    worst = np.argsort(ref.krum_scores(U, 4), kind="stable")[16:]
    keep = np.setdiff1d(np.arange(20), worst)
    assert_identical(agg.krum(U, 4, multi=16), ref.mean(U, rows=keep).astype(np.float32))


def test_squared_flag_changes_the_score_definition():
    U = random_matrix(9, 50, np.float64, seed=12)
    sq = agg.krum_scores(U, 1, squared=True)
    plain = agg.krum_scores(U, 1, squared=False)
    np.testing.assert_allclose(sq, ref.krum_scores(U, 1, squared=True), rtol=1e-12)
    np.testing.assert_allclose(plain, ref.krum_scores(U, 1, squared=False), rtol=1e-12)
    assert not np.allclose(sq, plain)


def test_krum_with_smallest_valid_m_uses_one_neighbour():
    U = np.array([[0.0], [1.0], [3.0]])  # m = 3, c = 0: k = 1 neighbour
    assert_identical(agg.krum_scores(U, 0), np.array([1.0, 1.0, 4.0]))
    np.testing.assert_array_equal(agg.krum_select(U, 0, multi=3), [0, 1, 2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("squared", (True, False))
def test_krum_with_at_most_c_nonfinite_rows_never_selects_them(dtype, squared):
    base = random_matrix(15, 200, dtype, seed=21)
    bad = {0: "nan", 7: "inf", 9: "mixed", 14: "-inf"}
    U = with_nonfinite_rows(base, bad)
    c = len(bad)
    scores = agg.krum_scores(U, c, squared=squared)
    assert np.all(np.isposinf(scores[list(bad)]))
    good = np.setdiff1d(np.arange(15), list(bad))
    assert np.isfinite(scores[good]).all()
    sel = agg.krum_select(U, c, multi=15 - c, squared=squared)
    assert not set(sel.tolist()) & set(bad)
    np.testing.assert_array_equal(sel[: 15 - c - 4], ref.krum_select(U, c, 15 - c - 4, squared))
    assert np.isfinite(agg.krum(U, c, multi=5, squared=squared)).all()
    np.testing.assert_array_equal(agg.nonfinite_workers(U), sorted(bad))


# ---------------------------------------------------------------------------
# The near-identical case (float32 cancellation).
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("squared", (True, False))
@pytest.mark.parametrize("layout", ("C", "F", "col_strided"))
def test_near_identical_float32_rows_krum_selects_the_float64_reference_worker(layout, squared):
    U64 = near_identical()
    U32 = U64.astype(np.float32)
    c = 2
    assert ref.krum_select(U64, c, squared=squared)[0] == 6
    assert ref.krum_select(U32, c, squared=squared)[0] == 6
    X = as_layout(U32, layout)
    np.testing.assert_array_equal(agg.krum_select(X, c, squared=squared), [6])
    assert_identical(agg.krum(X, c, squared=squared), U32[6])
    D = agg.pairwise_distances(X)
    _assert_distances_close(D, ref.pairwise_sq_distances(U32), np.float32, "near-identical distances")
    _assert_distances_close(agg.krum_scores(X, c, squared=squared), ref.krum_scores(U32, c, squared), np.float32)
    # the test is sensitive: the Gram expansion ||a||^2 + ||b||^2 - 2ab in float32 is far off here
    n = (U32 * U32).sum(axis=1)
    gram = n[:, None] + n[None, :] - 2 * (U32 @ U32.T)
    exact = ref.pairwise_sq_distances(U32)
    off = ~np.eye(11, dtype=bool)
    assert np.max(np.abs(gram[off] - exact[off]) / exact[off]) > 0.1


def test_near_identical_float64_rows_have_exact_distances():
    g = np.random.default_rng(3)
    base = g.standard_normal(500)
    U = base + 1e-12 * g.standard_normal((7, 500))
    np.testing.assert_allclose(agg.pairwise_distances(U), ref.pairwise_sq_distances(U), rtol=1e-12, atol=0)


@pytest.mark.parametrize("exponent", (-80, -70, -40, 0, 40, 64))
def test_float32_krum_selection_is_invariant_under_power_of_two_scaling(exponent):
    """Scaling by 2^e is exact in float32 and leaves the float64 reference's choice unchanged;
    the kernel must not lose the answer to float32 underflow (tiny updates) or overflow."""
    g = np.random.default_rng(1)
    U = g.standard_normal((9, 50)).astype(np.float32)
    U[4] = U.mean(axis=0)  # the central row: Krum's choice
    V = U * np.float32(2.0**exponent)
    assert np.array_equal(V / np.float32(2.0**exponent), U), "the scaling must be exact"
    assert ref.krum_select(V, 2)[0] == 4
    np.testing.assert_array_equal(agg.krum_select(V, 2), [4], err_msg=f"scale 2^{exponent}")
    np.testing.assert_array_equal(agg.krum_select(V, 2, multi=9 - 2), ref.krum_select(V, 2, 9 - 2))


# ---------------------------------------------------------------------------
# Bulyan selection.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("squared", (True, False))
@pytest.mark.parametrize("layout", ("C", "F", "row_reversed", "col_reversed"))
@pytest.mark.parametrize("m,c,d", [(7, 1, 50), (12, 2, 300), (30, 6, 64)])
def test_bulyan_selection_order_matches_reference(m, c, d, layout, squared, dtype):
    base = random_matrix(m, d, dtype, seed=m * 31 + d)
    U = as_layout(base, layout)
    out, sel = CPU.bulyan(U, c, squared)
    assert sel.dtype == np.int64 and sel.shape == (m - 2 * c,)
    np.testing.assert_array_equal(sel, ref.bulyan_select(base, c, squared))
    assert len(set(sel.tolist())) == m - 2 * c
    assert_identical(agg.bulyan(U, c, squared=squared), out)
    if dtype == np.float64 or (m - 2 * c) % 2 == 1:  # float32 + even theta: see test_coordinatewise
        assert_identical(out, ref.bulyan(base, c, squared).astype(dtype), "bulyan aggregate")


def test_bulyan_with_c_zero_is_the_median_window_over_all_rows():
    U = random_matrix(5, 40, np.float64, seed=3)
    out, sel = CPU.bulyan(U, 0, True)
    assert sorted(sel.tolist()) == [0, 1, 2, 3, 4]
    # gamma = theta = m: every value kept -> the mean of the sorted values
    np.testing.assert_allclose(out, U.mean(axis=0), rtol=1e-14)
    assert_identical(out, ref.bulyan(U, 0))


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("m, c", [(5, 1), (12, 4), (40, 3)])
def test_scores_from_a_distance_matrix_are_the_kernels_scores(m, c, squared):
    """The one native Krum scoring serves the rules, the attacks' searches and device distances."""
    U = np.random.default_rng(m).standard_normal((m, 30))
    U[2] = U[3]  # ties
    sq = cpu.sq_distances(U, None)
    got = cpu.krum_scores_from_distances(sq, c, squared)
    assert got.dtype == np.float64 and got.shape == (m,)
    np.testing.assert_array_equal(got, cpu.krum_select(U, c, 1, squared)[1])
    np.testing.assert_allclose(got, ref.krum_scores(U, c, squared), rtol=1e-12)
    with pytest.raises(ValueError, match="expected a square"):
        cpu.krum_scores_from_distances(sq[:, :-1].copy(), c, squared)
    with pytest.raises(ValueError, match="c must be >= 0"):
        cpu.krum_scores_from_distances(sq, -1, squared)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("m, c", [(4, 0), (6, 1), (12, 4), (40, 3)])
def test_leave_one_out_scores_are_the_scores_of_each_m_minus_1_rows(m, c, squared):
    """krum_leave_one_out_scores row i == krum_scores_from_distances on the rows other than i,
    bit for bit (the same values in the same order), +Inf at i; ties and an infinite row too."""
    U = np.random.default_rng(m + c).standard_normal((m, 30))
    U[2] = U[3]  # tied distances
    sq = cpu.sq_distances(U, None)
    sq[1, :] = sq[:, 1] = np.inf  # a non-finite row's distances
    sq[1, 1] = 0.0
    got = cpu.krum_leave_one_out_scores(sq, c, squared)
    assert got.dtype == np.float64 and got.shape == (m, m)
    for i in range(m):
        rows = np.delete(np.arange(m), i)
        assert got[i, i] == np.inf
        assert_identical(got[i, rows], cpu.krum_scores_from_distances(sq[np.ix_(rows, rows)], c, squared), f"row {i}")
    with pytest.raises(ValueError, match="expected a square"):
        cpu.krum_leave_one_out_scores(sq[:, :-1].copy(), c, squared)
    with pytest.raises(ValueError, match="c must be >= 0"):
        cpu.krum_leave_one_out_scores(sq, -1, squared)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("m, c", [(3, 0), (7, 1), (19, 4), (40, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bulyan_is_its_selection_from_distances_then_its_second_stage(m, c, squared, dtype):
    """bulyan == closest_to_median_mean (gamma = m - 4c) over bulyan_select_from_distances of
    its distance matrix, bit for bit, with the same selection in the same order: the two
    pieces the defenses' leave-one-out Bulyan is built from."""
    U = np.random.default_rng(m + c).standard_normal((m, 33)).astype(dtype)
    U[1] = U[2]  # tied distances
    expected = np.empty(33, dtype)
    chosen = cpu.bulyan(U, c, squared, expected)
    selection = cpu.bulyan_select_from_distances(cpu.sq_distances(U, None), c, squared)
    np.testing.assert_array_equal(selection, chosen)
    out = np.empty(33, dtype)
    cpu.closest_to_median_mean(U, m - 4 * c, selection.tolist(), out)
    assert_identical(out, expected, "second stage")
    assert_identical(out, ref.bulyan(U, c, squared).astype(dtype), "twin")


def _distance_matrix(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n) float64 squared distances that stress the selection's running scores."""
    if kind == "gaussian":
        X = rng.standard_normal((n, 6))
        return ((X[:, None] - X[None]) ** 2).sum(-1)
    if kind == "ties":  # exact ties among the values and among the scores
        D = rng.integers(0, 3, (n, n)).astype(np.float64)
    elif kind == "rounding":  # sums that round differently by order: 1e16 beside units
        D = rng.choice([1e16, 1.0, 3.0, 0.5, 1e-3], (n, n))
    elif kind == "ulps":  # scores that differ in their last bits
        D = 1.0 + rng.integers(0, 4, (n, n)) * np.finfo(np.float64).eps
    elif kind == "infinite":  # the rows of non-finite workers: +Inf distances
        D = rng.random((n, n))
        bad = rng.choice(n, size=max(1, n // 5), replace=False)
        D[bad, :] = np.inf
        D[:, bad] = np.inf
    elif kind == "huge":  # finite values whose sums overflow to +Inf
        D = rng.choice([1.5e308, 1.0, 2.0], (n, n))
    elif kind == "negative":  # not distances: every row scored exactly in every round
        D = rng.standard_normal((n, n))
    else:
        raise ValueError(kind)
    np.fill_diagonal(D, 0.0)
    return D  # not symmetric: each row's own values are its scores' terms


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("kind", ["gaussian", "ties", "rounding", "ulps", "infinite", "huge", "negative"])
@pytest.mark.parametrize("n, c", [(3, 0), (8, 1), (23, 5), (64, 7), (150, 30), (300, 70)])
def test_bulyan_selection_from_distances_is_its_twins_round_by_round_choice(n, c, kind, squared):
    """The selection keeps running scores and computes exact ones only for rows that can be
    the least: its choice must be the twin's, which scores every remaining row afresh in
    every round (ascending float64 sums, ties to the lowest row). At 300 rows each row's list
    of 299 is sorted by its values' bits (the radix sort) where they allow it."""
    rng = np.random.default_rng([n, c, len(kind)])
    for _ in range(3):
        D = np.ascontiguousarray(_distance_matrix(kind, n, rng))
        if kind == "negative" and not squared:
            D = np.abs(D)  # square roots of negative values are NaN, which the twin orders otherwise
        before = D.copy()
        got = cpu.bulyan_select_from_distances(D, c, squared)
        with np.errstate(over="ignore"):  # "huge": sums that overflow
            expected = ref.bulyan_select_from_distances(D, c, squared)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(D, before)  # the input is not modified


def test_bulyan_selection_of_many_rows_is_its_twins_choice():
    """A large case where most rows are pruned in most rounds: 400 Gaussian rows, 60 of them
    near-copies of one row (their scores nearly tie)."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((400, 40))
    X[:60] = X[0] + 1e-9 * rng.standard_normal((60, 40))
    D = ((X[:, None] - X[None]) ** 2).sum(-1)
    for squared in (True, False):
        np.testing.assert_array_equal(cpu.bulyan_select_from_distances(D, 90, squared),
                                      ref.bulyan_select_from_distances(D, 90, squared))


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("kind", ["gaussian", "ties", "rounding", "ulps", "infinite", "negative"])
@pytest.mark.parametrize("n, c", [(4, 0), (8, 1), (24, 5), (61, 12)])
def test_bulyan_leave_one_out_selections_are_the_selections_on_each_n_minus_1_rows(n, c, kind, squared):
    """Row i: bulyan_select_from_distances on the submatrix without row i, mapped back to the
    n rows (the lists are sorted once for all rows; leaving a row out keeps their order)."""
    rng = np.random.default_rng([n, c, len(kind), 7])
    D = np.ascontiguousarray(_distance_matrix(kind, n, rng))
    if kind == "negative" and not squared:
        D = np.abs(D)
    before = D.copy()
    got = cpu.bulyan_leave_one_out_selections(D, c, squared)
    assert got.shape == (n, n - 1 - 2 * c) and got.dtype == np.int64
    for i in range(n):
        rows = np.delete(np.arange(n), i)
        expected = rows[cpu.bulyan_select_from_distances(np.ascontiguousarray(D[np.ix_(rows, rows)]), c, squared)]
        np.testing.assert_array_equal(got[i], expected, err_msg=f"without row {i}")
    np.testing.assert_array_equal(D, before)
    with pytest.raises(ValueError, match="Bulyan needs m >= 4c \\+ 3 workers"):
        cpu.bulyan_leave_one_out_selections(D, (n - 1) // 4 + 1, squared)


def test_closest_to_median_mean_and_the_selection_name_bad_arguments():
    U = np.zeros((7, 3))
    out = np.empty(3)
    with pytest.raises(ValueError, match="needs 1 <= gamma <= the number of rows: got gamma = 4, 3 rows"):
        cpu.closest_to_median_mean(U, 4, [0, 1, 2], out)
    with pytest.raises(ValueError, match="got gamma = 0"):
        cpu.closest_to_median_mean(U, 0, [0, 1, 2], out)
    with pytest.raises(ValueError, match="rows: expected at least one row index"):
        cpu.closest_to_median_mean(U, 1, [], out)
    with pytest.raises(ValueError, match="Bulyan needs m >= 4c \\+ 3 workers: got m = 7, c = 2"):
        cpu.bulyan_select_from_distances(np.zeros((7, 7)), 2, True)
    with pytest.raises(ValueError, match="expected a square"):
        cpu.bulyan_select_from_distances(np.zeros((7, 6)), 1, True)
