"""The leave-one-out kernels (the defenses' B_i) against the float64 twin that recomputes the
rule m times (reference.leave_one_out), bit for bit: every shape around the kernels' path
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 10, 11, 64])
def test_leave_one_out_median_with_nonfinite_rows(m, dtype):
    base = cached_case("normal", m, 40, np.dtype(dtype).name)
    kinds = {0: "nan", m - 1: "mixed"} if m < 4 else {0: "nan", 1: "inf", 2: "-inf", m - 1: "mixed"}
    U = with_nonfinite_rows(base, kinds)
    assert_identical(CPU.leave_one_out_median(U), ref.leave_one_out(U, "median").astype(dtype))


@pytest.mark.parametrize("m", [16385, 16386])
def test_leave_one_out_median_beyond_the_network_takes_the_selection_path(m):
    """More rows than the comparator network takes (16384): nth_element per column. Checked on
    sampled rows (the twin recomputes a 16k-row median per row)."""
    U = np.random.default_rng(m).integers(-50, 50, size=(m, 3)).astype(np.float32)  # many ties
    B = CPU.leave_one_out_median(U)
    for i in (0, 1, m // 2, m - 1, int(np.argmax(U[:, 0])), int(np.argmin(U[:, 1]))):
        assert_identical(B[i], ref.median(np.delete(U, i, axis=0)).astype(np.float32), f"row {i}")


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


@pytest.mark.skipif(not HAVE_AVX2, reason="needs AVX2 for a second SIMD level")
def test_leave_one_out_median_is_the_same_at_every_simd_level(restore_simd):
    U = cached_case("ties", 100, 1000, "float32")
    generic = run_with_simd("generic", CPU.leave_one_out_median, U)
    assert_identical(run_with_simd("avx2", CPU.leave_one_out_median, U), generic)


def test_leave_one_out_median_is_the_same_for_every_thread_count(restore_threads):
    U = cached_case("normal", 33, 70001, "float64")
    one = run_with_threads(1, CPU.leave_one_out_median, U)
    assert_identical(run_with_threads(restore_threads, CPU.leave_one_out_median, U), one)


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
