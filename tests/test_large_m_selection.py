"""The coordinate-wise kernels at 512 rows and more, where the ranks come from sampled pivots
(coordinatewise.cpp's BandFinder) instead of the comparator network.

Every path of that selection must give the float64 oracle's bits (fedrobust.reference):
the usual case (the wanted rank between two pivots, found in a short band), ties at the
pivots, NaN and +-Inf, +Inf in the top interval, and the inputs that defeat the sample (a
band overflows and its interval is collected again from the column; a tile whose bands
overflow together is collected again one value at a time). Float tiles count and collect on
16-bit keys (keys.h) where the pivots' keys differ: values that are their keys' floors
(short mantissas), columns narrower than a key resolves (the tile goes back to the values),
and a -Inf pivot (the interval from -Inf, collected again from the column). Checked for the median, the
trimmed mean at several beta, the leave-one-out median and trimmed mean (the defenses), every
layout, both dtypes, every SIMD level (generic, AVX2, AVX-512 where the CPU has it) and 1 or
2 threads; inputs are never written.
"""
from __future__ import annotations

import numpy as np
import pytest

from fedrobust import aggregators as agg
from fedrobust import reference as ref
from fedrobust.dispatch import CPU

from conftest import (
    DTYPES,
    HAVE_AVX2,
    LAYOUTS,
    SIMD_LEVELS,
    as_layout,
    assert_identical,
    assert_unchanged,
    run_with_simd,
    run_with_threads,
    snapshot,
)


def _periodic_trap(m: int, d: int, g: np.random.Generator) -> np.ndarray:
    """Columns whose rows 4, 12, 20, ... (every 8th) hold values far above all the others.

    For m a multiple of 8 up to 8192 those are exactly the sampled rows ((2k + 1) m / 2s with
    s = m / 8), so every pivot lies above the median and the trimmed mean's thresholds: the
    wanted ranks fall in the bottom interval, far longer than a band may be."""
    X = g.standard_normal((m, d))
    X[4::8] += 1000.0
    return X


def _case(kind: str, m: int, d: int, dtype, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    if kind == "normal":
        X = g.standard_normal((m, d))
    elif kind == "ties":  # few levels: the pivots are tied values
        X = g.integers(-3, 4, size=(m, d)).astype(np.float64)
    elif kind == "constant":  # every value equal (a model's unused weights: all zero)
        X = np.zeros((m, d))
        X[:, 1::2] = -2.5
    elif kind == "nonfinite":  # NaN (ordered as +Inf), +Inf and -Inf rows, some columns all +Inf
        X = g.standard_normal((m, d))
        X[: m // 10] = np.nan
        X[m // 10: m // 5, ::2] = np.inf
        X[m // 5: m // 4, 1::2] = -np.inf
        X[:, 3 % d] = np.inf
    elif kind == "signed_zeros":  # -0 and +0 are one value (the in-place band path maps -0 to +0)
        X = g.integers(-1, 2, size=(m, d)).astype(np.float64)
        X[(X == 0) & (g.random((m, d)) < 0.5)] = -0.0
        X[:, 0] = -0.0
    elif kind == "sorted":  # rows in ascending and descending order per column
        X = np.sort(g.standard_normal((m, d)), axis=0)
        X[:, ::2] = X[::-1, ::2]
    elif kind == "trap":  # every column defeats the sample
        X = _periodic_trap(m, d, g)
    elif kind == "trap_mixed":  # some columns defeat the sample, the others do not (one tile)
        X = g.standard_normal((m, d))
        X[:, ::3] = _periodic_trap(m, d, g)[:, ::3]
    elif kind == "clustered":  # most values within a hair of one value: a band far past its bound
        X = g.standard_normal((m, d))
        X[1::2] = 0.25 + 1e-7 * g.standard_normal((m // 2, d))
    elif kind == "short_mantissas":  # 8 significant bits: each value is its own 16-bit key's floor
        X = g.integers(128, 256, size=(m, d)) * np.exp2(g.integers(-20, 21, size=(m, d)))
        X *= g.choice([-1.0, 1.0], (m, d))
    elif kind == "key_collisions":  # half the columns far narrower than a 16-bit key resolves
        X = g.standard_normal((m, d))
        X[:, ::2] = 1000.0 + 1e-3 * X[:, ::2]
    elif kind == "inf_pivot":  # the median's lowest pivot is -Inf and its interval starts there
        X = 10.0 + g.standard_normal((m, d))
        s = min(max(m // 8, 64), 1024)
        sampled = np.array([(2 * k + 1) * m // (2 * s) for k in range(s)])
        low = set(sampled[: int(0.384 * s)].tolist())
        others = np.setdiff1d(np.arange(m), sampled)
        low |= set(g.choice(others, int(0.48 * m) - len(low), replace=False).tolist())
        X[sorted(low)] = -np.inf
    else:
        raise ValueError(kind)
    return X.astype(dtype)


KINDS = ("normal", "ties", "constant", "nonfinite", "signed_zeros", "sorted", "trap", "trap_mixed", "clustered",
         "short_mantissas", "key_collisions", "inf_pivot")


def _betas(m: int):
    return sorted({0, 1, m // 5, (m - 1) // 2})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [512, 513, 1000, 1024, 2000, 16385])
def test_median_and_trimmed_mean_match_the_reference_on_every_selection_path(m, kind, dtype):
    d = 70 if m < 16385 else 20  # 70: a full tile and a partial one of either width
    U = _case(kind, m, d, dtype, seed=m)
    before = snapshot(U)
    assert_identical(agg.median(U), ref.median(U).astype(dtype), f"median m={m} {kind}")
    for beta in _betas(m):
        assert_identical(agg.trimmed_mean(U, beta), ref.trimmed_mean(U, beta).astype(dtype),
                         f"trimmed mean m={m} {kind} beta={beta}")
    assert_unchanged(before, "median / trimmed_mean")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_reference_bits(layout, dtype):
    U = _case("trap_mixed", 2048, 37, dtype, seed=1)
    X = as_layout(U, layout)
    before = snapshot(X)
    assert_identical(agg.median(X), ref.median(U).astype(dtype), f"median {layout}")
    assert_identical(agg.trimmed_mean(X, 409), ref.trimmed_mean(U, 409).astype(dtype), f"trimmed {layout}")
    assert_unchanged(before, f"layout {layout}")


@pytest.mark.skipif(not HAVE_AVX2, reason="AVX2+FMA not available on this CPU/build")
@pytest.mark.parametrize("kind", ("normal", "ties", "trap_mixed"))
def test_every_simd_level_and_thread_count_agree(kind, restore_simd, restore_threads):
    U = _case(kind, 3000, 300, np.float32, seed=2)
    results = []
    for level in SIMD_LEVELS:
        for threads in (1, 2):
            run_with_threads(threads, run_with_simd, level, lambda: None)
            results.append((agg.median(U), agg.trimmed_mean(U, 600)))
    for median, trimmed in results[1:]:
        assert_identical(median, results[0][0], "median")
        assert_identical(trimmed, results[0][1], "trimmed mean")
    assert_identical(results[0][0], ref.median(U).astype(np.float32), "median vs reference")


@pytest.mark.parametrize("kind", ("normal", "ties", "nonfinite", "trap_mixed"))
@pytest.mark.parametrize("m", [512, 1024, 1501])
def test_leave_one_out_rules_match_the_reference_on_sampled_rows(m, kind):
    """The defenses' leave-one-out median and trimmed mean (4 ranks in 2 groups) at large m,
    against the oracle on the rows that touch every case (extremes, middle, non-finite)."""
    U = _case(kind, m, 9, np.float32, seed=3)
    before = snapshot(U)
    b = m // 5
    median_rows = CPU.leave_one_out_median(U)
    trimmed_rows = CPU.leave_one_out_trimmed_mean(U, b)
    order = np.argsort(np.where(np.isnan(U[:, 0]), np.inf, U[:, 0]), kind="stable")
    for i in sorted({0, 4, m // 2, m - 1, int(order[0]), int(order[b]), int(order[m // 2]), int(order[-1])}):
        rest = np.delete(U, i, axis=0)
        assert_identical(median_rows[i], ref.median(rest).astype(np.float32), f"median without row {i}")
        assert_identical(trimmed_rows[i], ref.trimmed_mean(rest, b).astype(np.float32), f"trimmed without row {i}")
    assert_unchanged(before, "leave-one-out")
