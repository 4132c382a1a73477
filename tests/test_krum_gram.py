"""Krum's choice through the quantized Gram matrix (csrc/cpu/gram.cpp, krum_gram.cpp).

For float32 rows on the CPU, `krum_choose` bounds every distance from a Gram matrix of the
rows quantized to 16-bit integers, then computes exact direct distances only for the rows
that can win. Its answer must be the full direct path's (`krum_select`), bit for bit, for
every input: the bounds must hold for every pair, and the candidates' exact distances must
have the full matrix's bits (ties go to the lower row only if they do).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedrobust import aggregators as agg
from fedrobust import reference as ref
from fedrobust._native import cpu

from conftest import (
    HAVE_AVX512,
    SIMD_LEVELS,
    as_layout,
    assert_identical,
    assert_unchanged,
    make_case,
    near_identical,
    random_matrix,
    run_with_simd,
    run_with_threads,
    snapshot,
    with_nonfinite_rows,
)

GRAM_MIN_ROWS = 144  # krum.h kGramMinRows: below it the full direct path runs


def _centre(U):
    """A centre like krum_choose's (any centre gives valid bounds)."""
    return np.ascontiguousarray(np.median(np.asarray(U, dtype=np.float32)[:: max(1, len(U) // 31)], axis=0),
                                dtype=np.float32)


def _assert_bounds_hold(U, what=""):
    bounds = cpu.krum_distance_bounds(U, _centre(U))
    assert bounds is not None, f"{what}: the Gram path refused finite data"
    lo, hi = bounds
    D = cpu.sq_distances(U, None)  # the direct kernel's values, which the bounds are about
    assert (lo <= D).all() and (D <= hi).all(), f"{what}: a direct distance outside its bounds"
    assert (np.diag(lo) == 0).all() and (np.diag(hi) == 0).all()
    return lo, hi, D


def _assert_choice_is_the_direct_one(U, c, multi, squared, what=""):
    rows, candidates = cpu.krum_choose(U, c, multi, squared)
    expected = cpu.krum_select(U, c, multi, squared)[0]
    np.testing.assert_array_equal(rows, expected, err_msg=what)
    assert rows.dtype == np.int64
    return candidates


def _attack_like(m, d, c, seed):
    """c near-identical crafted rows (one direction, tiny per-row noise) among m - c honest ones."""
    g = np.random.default_rng(seed)
    U = g.standard_normal((m, d)).astype(np.float32)
    crafted = -3.0 * np.sign(U.mean(axis=0))
    U[:c] = crafted + 1e-5 * g.standard_normal((c, d))
    return U.astype(np.float32)


def _mixed_scales(m, d, seed):
    """Columns from 1e-35 to 1e15 (subnormal-scale blocks, huge blocks) and a zero row."""
    g = np.random.default_rng(seed)
    X = g.standard_normal((m, d)) * np.logspace(-35, 15, d)
    X[3] = 0.0
    return X.astype(np.float32)


CASES = []
for _m, _d in ((144, 1), (144, 17), (160, 1000), (200, 2049), (150, 4097), (257, 300)):
    CASES.append(pytest.param("normal", _m, _d, id=f"normal-m{_m}-d{_d}"))
for _kind in ("ties", "duplicates", "signed_zeros", "constant_cols", "big_small"):
    CASES.append(pytest.param(_kind, 150, 1000, id=f"{_kind}-m150-d1000"))
CASES += [pytest.param("attack", 160, 2100, id="attack-m160-d2100"),
          pytest.param("mixed_scales", 150, 3000, id="mixed_scales-m150-d3000")]


def _case(kind, m, d, seed=0):
    if kind == "attack":
        return _attack_like(m, d, m // 5, seed)
    if kind == "mixed_scales":
        return _mixed_scales(m, d, seed)
    return make_case(kind, m, d, np.float32, seed)


@pytest.mark.parametrize("layout", ("C", "F", "col_strided", "row_reversed"))
@pytest.mark.parametrize("kind,m,d", CASES)
def test_every_direct_distance_lies_within_its_gram_bounds(kind, m, d, layout):
    U = as_layout(_case(kind, m, d), layout)
    if kind == "big_small":  # 1e30 is beyond what the Gram path takes: refused, not bounded
        assert cpu.krum_distance_bounds(U, _centre(U)) is None
        return
    _assert_bounds_hold(U, f"{kind} {layout}")


@pytest.mark.parametrize("layout", ("C", "F", "col_strided", "row_reversed"))
@pytest.mark.parametrize("kind,m,d", CASES)
def test_gram_choice_is_the_direct_choice(kind, m, d, layout):
    U = as_layout(_case(kind, m, d), layout)
    snap = snapshot(U)
    for c in (0, m // 10, (m - 3) // 2):
        for squared in (True, False):
            for multi in (1, 2, m // 4):
                _assert_choice_is_the_direct_one(U, c, multi, squared, f"{kind} {layout} c={c} multi={multi}")
    assert_unchanged(snap, "krum_choose must not modify its input")


def test_gram_path_runs_and_narrows_normal_rows_to_a_few_candidates():
    U = random_matrix(300, 5000, np.float32, seed=4)
    lo, hi, D = _assert_bounds_hold(U)
    off = ~np.eye(300, dtype=bool)
    assert np.median((hi - lo)[off] / D[off]) < 1e-2, "bounds too loose to be of use"
    candidates = _assert_choice_is_the_direct_one(U, 30, 1, True)
    assert 1 <= candidates <= 30, f"{candidates} candidates: the Gram path did not narrow the choice"


def test_rows_below_the_gram_threshold_or_in_float64_take_the_direct_path():
    U = random_matrix(GRAM_MIN_ROWS - 1, 300, np.float32, seed=5)
    assert _assert_choice_is_the_direct_one(U, 5, 1, True) == -1
    V = random_matrix(GRAM_MIN_ROWS + 36, 300, np.float64, seed=5)
    assert _assert_choice_is_the_direct_one(V, 5, 1, True) == -1
    assert _assert_choice_is_the_direct_one(V.astype(np.float32), 5, 1, True) >= 1


@pytest.mark.parametrize("kind", ("nan", "inf", "mixed"))
def test_nonfinite_or_huge_rows_fall_back_to_the_direct_path(kind):
    U = with_nonfinite_rows(random_matrix(150, 700, np.float32, seed=6), {4: kind, 50: "inf"})
    assert cpu.krum_distance_bounds(U, _centre(U)) is None
    assert _assert_choice_is_the_direct_one(U, 10, 3, True) == -1
    V = random_matrix(150, 700, np.float32, seed=6)
    V[7, 3] = 3e18  # beyond the Gram path's range (1e17 after centring)
    assert _assert_choice_is_the_direct_one(V, 10, 1, False) == -1


def test_near_tied_rows_all_become_candidates_and_the_tie_goes_to_the_lower_row():
    g = np.random.default_rng(7)
    U = g.standard_normal((150, 1500)).astype(np.float32)
    centre = U.mean(axis=0)
    U[[20, 40, 60]] = centre  # three identical central rows: an exact tie in the scores
    U[80] = centre + np.float32(1e-6) * g.standard_normal(1500).astype(np.float32)  # a near tie
    candidates = _assert_choice_is_the_direct_one(U, 10, 1, True)
    assert candidates >= 4
    np.testing.assert_array_equal(cpu.krum_choose(U, 10, 3, True)[0], cpu.krum_select(U, 10, 3, True)[0])
    assert cpu.krum_choose(U, 10, 1, True)[0][0] in (20, 80)


def test_near_identical_rows_pick_the_float64_reference_worker_on_the_gram_path():
    U64 = near_identical(m=150, center=33)
    U32 = U64.astype(np.float32)
    for squared in (True, False):
        assert ref.krum_select(U64, 5, squared=squared)[0] == 33
        rows, candidates = cpu.krum_choose(U32, 5, 1, squared)
        assert candidates >= 1, "the Gram path must run here"
        np.testing.assert_array_equal(rows, [33])
        assert_identical(agg.krum(U32, 5, squared=squared), U32[33])


def test_attack_rows_crafted_alike_are_scored_exactly():
    U = _attack_like(150, 3000, 30, seed=8)
    for squared in (True, False):
        candidates = _assert_choice_is_the_direct_one(U, 30, 1, squared)
        assert candidates >= 1
        _assert_choice_is_the_direct_one(U, 30, 30, squared)


@pytest.mark.parametrize("seed", range(40))
def test_random_shapes_and_scales_choose_as_the_direct_path(seed):
    g = np.random.default_rng(100 + seed)
    m = int(g.integers(GRAM_MIN_ROWS, 260))
    d = int(g.integers(1, 3000))
    scale = 10.0 ** g.uniform(-20, 15)
    U = (g.standard_normal((m, d)) * scale * g.uniform(0.1, 10, size=(m, 1))).astype(np.float32)
    U[g.integers(m)] = U[g.integers(m)]  # a duplicate row
    c = int(g.integers(0, (m - 3) // 2 + 1))
    _assert_bounds_hold(U, f"seed {seed}")
    _assert_choice_is_the_direct_one(U, c, int(g.integers(1, m // 4 + 1)), bool(seed % 2), f"seed {seed}")


def test_bounds_are_bit_identical_for_any_thread_count(restore_threads):
    U = random_matrix(150, 4500, np.float32, seed=9)
    centre = _centre(U)
    one = run_with_threads(1, cpu.krum_distance_bounds, U, centre)
    for threads in (2, 3):
        other = run_with_threads(threads, cpu.krum_distance_bounds, U, centre)
        assert_identical(other[0], one[0])
        assert_identical(other[1], one[1])


@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_every_simd_level_bounds_its_direct_distances_and_chooses_as_it(level, restore_simd):
    for seed, U in enumerate((random_matrix(150, 2500, np.float32, seed=10), _attack_like(160, 1200, 30, 11),
                              _mixed_scales(150, 2100, 12))):
        run_with_simd(level, _assert_bounds_hold, U, f"{level} case {seed}")
        for squared in (True, False):
            run_with_simd(level, _assert_choice_is_the_direct_one, U, 7, 2, squared, f"{level} case {seed}")


def _cpu_has_vnni() -> bool:
    try:
        return "avx512_vnni" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not (HAVE_AVX512 and _cpu_has_vnni()), reason="needs a CPU with AVX-512 VNNI")
def test_vnni_and_pmaddwd_products_give_the_same_bits(tmp_path, restore_simd):
    """The quantized products are exact integers, so the AVX-512 level's two instructions
    (vpdpwssd, and pmaddwd + paddd under FEDROBUST_NO_VNNI) must give identical bounds."""
    U = _mixed_scales(150, 4500, 13)
    centre = _centre(U)
    np.save(tmp_path / "U.npy", U)
    np.save(tmp_path / "centre.npy", centre)
    script = (
        "import sys, numpy as np\n"
        "from fedrobust._native import cpu\n"
        "cpu.set_simd_level('avx512')\n"
        "d = sys.argv[1]\n"
        "lo, hi = cpu.krum_distance_bounds(np.load(d + '/U.npy'), np.load(d + '/centre.npy'))\n"
        "np.save(d + '/lo.npy', lo); np.save(d + '/hi.npy', hi)\n"
    )
    env = dict(os.environ, FEDROBUST_NO_VNNI="1")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env, cwd=tmp_path)
    lo, hi = run_with_simd("avx512", cpu.krum_distance_bounds, U, centre)
    assert_identical(np.load(tmp_path / "lo.npy"), lo)
    assert_identical(np.load(tmp_path / "hi.npy"), hi)
