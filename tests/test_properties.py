"""Property-based tests (hypothesis): invariances of the aggregation rules and agreement with the
reference on arbitrary floats (subnormals, signed zeros, infinities, NaN).

The profile registered in conftest.py sets max_examples=50, deadline=None.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedrobust import aggregators as agg
from fedrobust import reference as ref
from fedrobust.stats import coordinate_stats

from conftest import assert_identical

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                          HealthCheck.too_slow])
DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])


@st.composite
def matrices(draw, min_m=1, max_m=12, max_d=6, bound=1e3, any_float=False, unique=False):
    dtype = draw(DTYPES)
    m = draw(st.integers(min_m, max_m))
    d = draw(st.integers(1, max_d))
    width = 32 if dtype == np.float32 else 64
    if any_float:
        elements = st.floats(width=width, allow_nan=True, allow_infinity=True, allow_subnormal=True)
    else:
        elements = st.floats(-bound, bound, width=width, allow_nan=False, allow_infinity=False)
    return draw(hnp.arrays(dtype, (m, d), elements=elements, unique=unique))


def _tol(U, extra=0.0):
    eps = np.finfo(U.dtype).eps
    scale = float(np.max(np.abs(U))) + extra if U.size else 1.0
    return 8 * U.shape[0] * eps * max(scale, np.finfo(U.dtype).tiny)


def _cut_is_clear(scores, multi, rtol):
    """The multi best scores are separated from the rest (no tie or near-tie at the cut)."""
    if multi >= len(scores):
        return True
    s = np.sort(scores)
    a, b = s[multi - 1], s[multi]
    return np.isfinite(b) and (b - a) > rtol * max(abs(b), 1e-300)


def _bulyan_rounds_are_clear(U, c, rtol):
    D = ref.pairwise_sq_distances(U)
    remaining = list(range(U.shape[0]))
    for _ in range(U.shape[0] - 2 * c):
        s = ref._krum_scores_from(D, remaining, c, True)
        if len(s) > 1 and not _cut_is_clear(s, 1, rtol):
            return False
        remaining.pop(int(np.argmin(s)))
    return True


# ---------------------------------------------------------------------------
# Agreement with the reference on arbitrary floats.
# ---------------------------------------------------------------------------
@SETTINGS
@given(U=matrices(max_m=20, max_d=5, any_float=True), data=st.data())
def test_coordinatewise_rules_equal_reference_on_arbitrary_floats(U, data):
    m = U.shape[0]
    beta = data.draw(st.integers(0, (m - 1) // 2), label="beta")
    with np.errstate(all="ignore"):
        assert_identical(agg.median(U), ref.median(U).astype(U.dtype), "median")
        expected = ref.trimmed_mean(U, beta).astype(U.dtype)
        if overflows(U, expected):  # float64 values whose sum exceeds the maximum: refused, not Inf
            with pytest.raises(ValueError, match="overflows float64"):
                agg.trimmed_mean(U, beta)
        else:
            assert_identical(agg.trimmed_mean(U, beta), expected, "trimmed_mean")
        expected = [e.astype(U.dtype) for e in ref.coordinate_stats(U)]
        if overflows(U, expected[0]) or overflows(U, expected[1]):
            with pytest.raises(ValueError, match="overflows float64"):
                coordinate_stats(U)
        else:
            for name, g, e in zip(("mean", "std", "min", "max"), coordinate_stats(U), expected):
                assert_identical(g, e, f"coordinate_stats.{name}")
        if not np.isfinite(U).all():
            with pytest.raises(ValueError, match="workers"):
                agg.mean(U)
        elif overflows(U, ref.mean(U).astype(U.dtype)):
            with pytest.raises(ValueError, match="overflows float64"):
                agg.mean(U)
        else:
            assert_identical(agg.mean(U), ref.mean(U).astype(U.dtype), "mean")


def overflows(U: np.ndarray, result: np.ndarray) -> bool:
    """Whether a float64 result is non-finite at a coordinate whose values are all finite."""
    return U.dtype == np.float64 and bool((~np.isfinite(result) & np.isfinite(U).all(axis=0)).any())


@SETTINGS
@given(U=matrices(min_m=3, max_m=24, max_d=5), data=st.data())
def test_tolerated_nonfinite_rows_never_reach_the_result(U, data):
    m = U.shape[0]
    beta = data.draw(st.integers(1, (m - 1) // 2), label="beta")
    k = data.draw(st.integers(1, beta), label="bad rows")
    rows = data.draw(st.lists(st.integers(0, m - 1), min_size=k, max_size=k, unique=True), label="rows")
    vals = data.draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=k, max_size=k))
    X = U.copy()
    for r, v in zip(rows, vals):
        X[r] = v
    tm = agg.trimmed_mean(X, beta)
    assert np.isfinite(tm).all()
    assert_identical(tm, ref.trimmed_mean(X, beta).astype(X.dtype))
    if 2 * k < m:
        med = agg.median(X)
        assert np.isfinite(med).all()
        assert_identical(med, ref.median(X).astype(X.dtype))
    np.testing.assert_array_equal(agg.nonfinite_workers(X), sorted(rows))


# ---------------------------------------------------------------------------
# Row-permutation invariance.
# ---------------------------------------------------------------------------
@SETTINGS
@given(U=matrices(max_m=15), data=st.data())
def test_median_and_trimmed_mean_are_invariant_to_row_permutation(U, data):
    m = U.shape[0]
    perm = np.array(data.draw(st.permutations(range(m)), label="perm"))
    beta = data.draw(st.integers(0, (m - 1) // 2), label="beta")
    P = U[perm]
    assert_identical(agg.median(P), agg.median(U), "median (order statistics: exact)")
    np.testing.assert_allclose(agg.trimmed_mean(P, beta), agg.trimmed_mean(U, beta), rtol=0, atol=_tol(U))
    s, sp = coordinate_stats(U), coordinate_stats(P)
    assert_identical(sp.min, s.min)
    assert_identical(sp.max, s.max)
    np.testing.assert_allclose(sp.mean, s.mean, rtol=0, atol=_tol(U))


@SETTINGS
@given(U=matrices(min_m=3, max_m=14, max_d=4), data=st.data())
def test_krum_selects_the_same_set_of_rows_under_row_permutation(U, data):
    m = U.shape[0]
    c = data.draw(st.integers(0, (m - 3) // 2), label="c")
    multi = data.draw(st.integers(1, m - c), label="multi")
    squared = data.draw(st.booleans(), label="squared")
    rtol = 1e-5 if U.dtype == np.float32 else 1e-10
    assume(_cut_is_clear(ref.krum_scores(U, c, squared), multi, rtol))
    perm = np.array(data.draw(st.permutations(range(m)), label="perm"))
    P = U[perm]
    sel = agg.krum_select(U, c, multi=multi, squared=squared)
    sel_p = agg.krum_select(P, c, multi=multi, squared=squared)
    assert set(perm[sel_p].tolist()) == set(sel.tolist())
    np.testing.assert_allclose(agg.krum(P, c, multi=multi, squared=squared),
                               agg.krum(U, c, multi=multi, squared=squared), rtol=0, atol=_tol(U))


@SETTINGS
@given(U=matrices(min_m=11, max_m=16, max_d=4, unique=True), data=st.data())
def test_bulyan_aggregate_is_invariant_to_row_permutation(U, data):
    """c >= 2: Bulyan's last Krum round has k = (2c + 1) - c - 2 = c - 1 >= 1 neighbours. (With
    c <= 1 the last round has k = 0, every score is 0 and the lowest index wins, so the selection,
    in the reference as in the kernel, depends on the row order.)"""
    m = U.shape[0]
    c = data.draw(st.integers(2, (m - 3) // 4), label="c")
    rtol = 1e-5 if U.dtype == np.float32 else 1e-10
    assume(_bulyan_rounds_are_clear(U, c, rtol))
    perm = np.array(data.draw(st.permutations(range(m)), label="perm"))
    # the same selected set, then per-coordinate sorted values: the same bits
    assert_identical(agg.bulyan(U[perm], c), agg.bulyan(U, c), "bulyan")


# ---------------------------------------------------------------------------
# Translation equivariance.
# ---------------------------------------------------------------------------
@SETTINGS
@given(U=matrices(max_m=15), data=st.data())
def test_median_trimmed_mean_and_mean_are_translation_equivariant(U, data):
    m, d = U.shape
    width = 32 if U.dtype == np.float32 else 64
    t = np.array(data.draw(st.lists(st.floats(-1e3, 1e3, width=width), min_size=d, max_size=d), label="t"),
                 dtype=U.dtype)
    beta = data.draw(st.integers(0, (m - 1) // 2), label="beta")
    V = U + t
    atol = _tol(U, extra=float(np.max(np.abs(t))))
    t64 = t.astype(np.float64)
    np.testing.assert_allclose(agg.median(V), agg.median(U) + t64, rtol=0, atol=atol)
    np.testing.assert_allclose(agg.trimmed_mean(V, beta), agg.trimmed_mean(U, beta) + t64, rtol=0, atol=atol)
    np.testing.assert_allclose(agg.mean(V), agg.mean(U) + t64, rtol=0, atol=atol)
    if m % 2 == 1:  # an order statistic, and rounding is monotone: exact
        assert_identical(agg.median(V), (agg.median(U) + t).astype(U.dtype))


# ---------------------------------------------------------------------------
# Bounds.
# ---------------------------------------------------------------------------
@SETTINGS
@given(U=matrices(max_m=20, bound=1e6), data=st.data())
def test_median_and_trimmed_mean_lie_within_each_columns_range(U, data):
    m = U.shape[0]
    beta = data.draw(st.integers(0, (m - 1) // 2), label="beta")
    lo, hi = U.min(axis=0), U.max(axis=0)
    med = agg.median(U)
    assert np.all(lo <= med) and np.all(med <= hi)
    S = np.sort(U, axis=0)
    tm = agg.trimmed_mean(U, beta).astype(np.float64)
    slack = _tol(U)
    assert np.all(S[beta] - slack <= tm) and np.all(tm <= S[m - beta - 1] + slack)
    assert np.all(lo - slack <= tm) and np.all(tm <= hi + slack)
    s = coordinate_stats(U)
    assert_identical(s.min, (lo + 0).astype(U.dtype))  # (+0: min/max report -0 as +0)
    assert_identical(s.max, (hi + 0).astype(U.dtype))
    assert np.all(s.std >= 0)
