"""The leave-one-out kernels (the defenses' B_i: median and trimmed mean) against the float64
twin that recomputes the rule m times (reference.leave_one_out), bit for bit: every shape around the kernels' path
switches, both dtypes, every memory layout, ties, duplicates, signed zeros, NaN / Inf rows,
SIMD levels and thread counts; the CUDA kernels' per-column code (column.h) through
_emulation; inputs never written; bad arguments named."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from fedrobust import _emulation
from fedrobust import reference as ref
from fedrobust._native import cpu
from fedrobust.dispatch import CPU

from conftest import (
    DTYPES,
    HAVE_AVX2,
    LAYOUTS,
    SIMD_LEVELS,
    as_layout,
    assert_identical,
    assert_unchanged,
    cached_case,
    run_with_simd,
    run_with_threads,
    snapshot,
    with_nonfinite_rows,
)

KINDS = ("normal", "duplicates", "ties", "signed_zeros", "constant_cols", "big_small")


@functools.lru_cache(maxsize=256)
def _expected(kind: str, m: int, d: int, dtype_name: str) -> np.ndarray:
    return ref.leave_one_out(cached_case(kind, m, d, dtype_name), "median").astype(dtype_name)


@functools.lru_cache(maxsize=512)
def _expected_trimmed(kind: str, m: int, d: int, dtype_name: str, beta: int) -> np.ndarray:
    return ref.leave_one_out(cached_case(kind, m, d, dtype_name), "trimmed_mean", beta=beta).astype(dtype_name)


def _betas(m: int):
    """Trim counts valid on m - 1 rows: none, one, a quarter, the largest."""
    return sorted({b for b in (0, 1, (m - 1) // 4, (m - 2) // 2) if 2 * b < m - 1})


def _grid():
    cases = [("normal", m, d, dt, lay) for m in (2, 3, 4, 7, 16, 17, 100, 129, 257) for d in (1, 7, 300)
             for dt in ("float32", "float64") for lay in LAYOUTS]
    cases += [(kind, m, 50, dt, "C") for kind in KINDS[1:] for m in (2, 3, 8, 33, 100)
              for dt in ("float32", "float64")]
    return [pytest.param(*c, id=f"{c[0]}-m{c[1]}-d{c[2]}-{c[3]}-{c[4]}") for c in cases]


@pytest.mark.parametrize("kind,m,d,dtype_name,layout", _grid())
def test_leave_one_out_median_is_the_median_recomputed_m_times(kind, m, d, dtype_name, layout):
    U = as_layout(cached_case(kind, m, d, dtype_name), layout)
    snap = snapshot(U)
    assert_identical(CPU.leave_one_out_median(U), _expected(kind, m, d, dtype_name), "leave-one-out median")
    assert_unchanged(snap, "U")


@pytest.mark.parametrize("kind,m,d,dtype_name,layout", _grid())
def test_leave_one_out_trimmed_mean_is_the_trimmed_mean_recomputed_m_times(kind, m, d, dtype_name, layout):
    d = 60 if d == 300 and m > 100 else d  # the twin recomputes up to 257 trimmed means per beta
    U = as_layout(cached_case(kind, m, d, dtype_name), layout)
    snap = snapshot(U)
    for beta in _betas(m):
        assert_identical(CPU.leave_one_out_trimmed_mean(U, beta), _expected_trimmed(kind, m, d, dtype_name, beta),
                         f"leave-one-out trimmed mean beta={beta}")
    assert_unchanged(snap, "U")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 10, 11, 64])
def test_leave_one_out_median_with_nonfinite_rows(m, dtype):
    base = cached_case("normal", m, 40, np.dtype(dtype).name)
    kinds = {0: "nan", m - 1: "mixed"} if m < 4 else {0: "nan", 1: "inf", 2: "-inf", m - 1: "mixed"}
    U = with_nonfinite_rows(base, kinds)
    assert_identical(CPU.leave_one_out_median(U), ref.leave_one_out(U, "median").astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [3, 10, 11, 64])
def test_leave_one_out_trimmed_mean_with_nonfinite_rows(m, dtype):
    base = cached_case("normal", m, 40, np.dtype(dtype).name)
    kinds = {0: "nan", m - 1: "mixed"} if m < 4 else {0: "nan", 1: "inf", 2: "-inf", m - 1: "mixed"}
    U = with_nonfinite_rows(base, kinds)
    for beta in _betas(m):
        assert_identical(CPU.leave_one_out_trimmed_mean(U, beta),
                         ref.leave_one_out(U, "trimmed_mean", beta=beta).astype(dtype), f"beta={beta}")


def _wide_exponent_columns(m: int, dtype) -> np.ndarray:
    """Columns of m values with full mantissas, all of one size 2^e but one row, which is
    2^(e - s) with s from 16 to 30 (column by column), plus columns of zeros and subnormals:
    float32 sums of such columns need from about 40 to beyond 53 bits, around the spread
    where the kernel stops taking a middle row's skipping sum as the mid sum minus its value."""
    rng = np.random.default_rng(m)
    cols = []
    for s in range(16, 31):
        for e in (-30, 0, 20):
            x = (1 + rng.random(m)) * 2.0 ** e * rng.choice([-1.0, 1.0], m)
            x[rng.integers(m)] = (1 + rng.random()) * 2.0 ** (e - s) * rng.choice([-1.0, 1.0])
            cols.append(x)
    zeros = np.zeros(m)
    zeros[: m // 3] = 1 + rng.random(m // 3)
    tiny = np.full(m, np.finfo(np.float32).tiny) * rng.integers(-3, 4, m) / 4  # subnormals beside 1
    tiny[: m // 2] = 1 + rng.random(m // 2)
    cols += [zeros, tiny]
    return np.stack(cols, axis=1).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [17, 100, 128, 129])
def test_leave_one_out_trimmed_mean_where_sums_are_exact_and_where_not(m, dtype):
    """The kernel takes a middle row's sum without its row as the mid sum minus its value, and
    the ends' sums from the mid sum, only where every subset sum of the column is exact in
    double; elsewhere it adds in row order. Both give the rule's bits."""
    U = _wide_exponent_columns(m, dtype)
    for beta in _betas(m):
        assert_identical(CPU.leave_one_out_trimmed_mean(U, beta),
                         ref.leave_one_out(U, "trimmed_mean", beta=beta).astype(dtype), f"beta={beta}")


def _cancelling_columns(n: int) -> np.ndarray:
    """(8, n) float32 columns -Z, -Z, B, -B, B', t, Z, Z (shuffled) with |t| = 2^-s |B|, s from
    20 to 31: with one trimmed at each end, a middle row's result is its mid sum without it
    after P + Q = 0 cancel, so a row-order sum that dropped t's bits shows in the float32 bits."""
    rng = np.random.default_rng(7)
    cols = np.empty((8, n))
    for j in range(n):
        z = 2.0 ** rng.integers(-3, 3) * (1 + rng.random())
        big = float(np.float32(z * rng.uniform(0.3, 0.99)))
        tiny = (1 + rng.random()) * 2.0 ** (np.floor(np.log2(big)) - (20 + j % 12)) * rng.choice([-1, 1])
        cols[:, j] = rng.permutation([-z, -z, big, -big, z * rng.uniform(0.3, 0.99), tiny, z, z])
    return cols.astype(np.float32)


def test_leave_one_out_trimmed_mean_at_the_edge_of_exact_sums():
    """Columns where s_mid - x differs from the row-order sum without x in the float32 result
    (checked here, as the row-order sum recomputed in numpy), around the spread of exponents at
    which the kernel stops taking the shortcut: the kernel gives the rule's bits on all."""
    U = _cancelling_columns(600)
    expected = ref.leave_one_out(U, "trimmed_mean", beta=1).astype(np.float32)
    s_mid = np.zeros(U.shape[1])
    lo, hi = np.sort(U, axis=0)[1], np.sort(U, axis=0)[6]
    for row in U.astype(np.float64):
        s_mid += np.where((row > lo) & (row < hi), row, 0.0)
    shortcut = ((((s_mid - U) + (-hi)) + hi) / 5).astype(np.float32)  # P = -hi, Q = hi here
    middle = (U > lo) & (U < hi)
    assert np.any(middle & (shortcut != expected)), "no column where the shortcut shows"
    assert_identical(CPU.leave_one_out_trimmed_mean(U, 1), expected, "beta=1")


@pytest.mark.parametrize("m", [16385, 16386])
def test_leave_one_out_beyond_the_network_takes_the_selection_path(m):
    """16,385 rows (the sampled-pivot selection, with 64-byte tiles beyond 16,384 rows). Checked
    on sampled rows (the twin recomputes a 16k-row median per row)."""
    U = np.random.default_rng(m).integers(-50, 50, size=(m, 3)).astype(np.float32)  # many ties
    B = CPU.leave_one_out_median(U)
    T = CPU.leave_one_out_trimmed_mean(U, 4000)
    for i in (0, 1, m // 2, m - 1, int(np.argmax(U[:, 0])), int(np.argmin(U[:, 1]))):
        assert_identical(B[i], ref.median(np.delete(U, i, axis=0)).astype(np.float32), f"row {i}")
        assert_identical(T[i], ref.trimmed_mean(np.delete(U, i, axis=0), 4000).astype(np.float32), f"row {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 16, 17, 128, 129, 200])
def test_the_cuda_per_column_code_gives_the_same_bits(m, dtype):
    """column.h's column_leave_one_out_median (the CUDA kernel's per-thread code): local sort
    up to 128 rows, radix selection beyond."""
    for kind in ("normal", "ties", "signed_zeros"):
        U = cached_case(kind, m, 30, np.dtype(dtype).name)
        assert_identical(_emulation.column_rule_scalar(U, "leave_one_out_median"), _expected(kind, m, 30,
                                                                                              np.dtype(dtype).name))
    V = with_nonfinite_rows(cached_case("normal", m, 30, np.dtype(dtype).name), {0: "nan", m - 1: "mixed"})
    assert_identical(_emulation.column_rule_scalar(V, "leave_one_out_median"), CPU.leave_one_out_median(V))
    for beta in _betas(m):
        for W in (cached_case("ties", m, 30, np.dtype(dtype).name), V):
            assert_identical(_emulation.column_rule_scalar(W, "leave_one_out_trimmed_mean", beta),
                             CPU.leave_one_out_trimmed_mean(W, beta), f"beta={beta}")
        assert_identical(_emulation.column_rule_scalar(W, "leave_one_out_trimmed_mean", beta),
                         ref.leave_one_out(W, "trimmed_mean", beta=beta).astype(dtype), f"beta={beta}")


@pytest.mark.skipif(not HAVE_AVX2, reason="needs AVX2 for a second SIMD level")
def test_leave_one_out_is_the_same_at_every_simd_level(restore_simd):
    U = cached_case("ties", 100, 1000, "float32")
    for fn, args in ((CPU.leave_one_out_median, ()), (CPU.leave_one_out_trimmed_mean, (20,))):
        generic = run_with_simd("generic", fn, U, *args)
        for level in SIMD_LEVELS[1:]:
            assert_identical(run_with_simd(level, fn, U, *args), generic, level)


def test_leave_one_out_is_the_same_for_every_thread_count(restore_threads):
    U = cached_case("normal", 33, 70001, "float64")
    for fn, args in ((CPU.leave_one_out_median, ()), (CPU.leave_one_out_trimmed_mean, (8,))):
        one = run_with_threads(1, fn, U, *args)
        assert_identical(run_with_threads(restore_threads, fn, U, *args), one)


def test_leave_one_out_trimmed_mean_refuses_a_beta_invalid_on_m_minus_1_rows():
    U = np.zeros((5, 3))
    with pytest.raises(ValueError, match="trimmed mean needs 2\\*beta < m: got beta = 2, m = 4"):
        CPU.leave_one_out_trimmed_mean(U, 2)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        CPU.leave_one_out_trimmed_mean(U, -1)
    with pytest.raises(ValueError, match="leave-one-out aggregation needs at least 2 rows"):
        CPU.leave_one_out_trimmed_mean(np.zeros((1, 3)), 0)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        _emulation.column_rule_scalar(U, "leave_one_out_trimmed_mean", -1)


def test_leave_one_out_median_refuses_one_row_and_a_wrong_output():
    with pytest.raises(ValueError, match="leave-one-out aggregation needs at least 2 rows, got m = 1"):
        CPU.leave_one_out_median(np.zeros((1, 4)))
    U = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"out: expected shape \(3, 4\)"):
        cpu.leave_one_out_median(U, np.empty((4, 3)))
    with pytest.raises(TypeError, match="out: expected dtype float64, got float32"):
        cpu.leave_one_out_median(U, np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="rule must be"):
        _emulation.column_rule_scalar(U, "leave_one_out_mean")
