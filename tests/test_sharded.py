"""fedrobust.sharded: every rule on column shards of U equals the rule on U.

Coordinate-wise rules and the rows Krum / Bulyan select are checked bit for bit against
the unsharded aggregators (which tests/test_krum.py and test_coordinatewise.py check
against fedrobust.reference), over shapes, dtypes, layouts, shard counts, ties,
duplicates, near-identical rows and NaN / Inf; the shards are never modified.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from fedrobust import aggregators as agg
from fedrobust import reference as ref
from fedrobust import sharded, stats

from conftest import (
    as_layout,
    assert_identical,
    assert_unchanged,
    make_case,
    near_identical,
    snapshot,
    with_nonfinite_rows,
)

CASES = [  # (rule, params, m)
    ("mean", {}, 9),
    ("median", {}, 10),
    ("median", {}, 7),
    ("trimmed_mean", {"beta": 2}, 9),
    ("krum", {"c": 2}, 11),
    ("krum", {"c": 3, "multi": 4}, 12),
    ("krum", {"c": 2, "squared": False}, 11),
    ("bulyan", {"c": 2}, 11),
    ("bulyan", {"c": 1, "squared": False}, 9),
]


def unsharded(U, rule, params):
    entry = agg.rule(rule)
    if entry.selects_rows:
        return entry.select(U, **params)
    return entry.bind(**params)(U), None


def check_equal(U, rule, params, shards, mapper=map):
    pieces = sharded.split(U, shards)
    snaps = [snapshot(p) for p in pieces]
    outs, chosen = sharded.aggregate(pieces, rule, map=mapper, **params)
    expected, expected_rows = unsharded(U, rule, params)
    assert len(outs) == shards
    assert_identical(np.concatenate([np.asarray(o) for o in outs]), expected, f"{rule} {params} {shards} shards")
    if expected_rows is None:
        assert chosen is None
    else:
        np.testing.assert_array_equal(chosen, expected_rows)
    for s in snaps:
        assert_unchanged(s, rule)


@pytest.mark.parametrize("rule,params,m", CASES)
@pytest.mark.parametrize("kind", ("normal", "duplicates", "ties", "big_small"))
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("shards", (1, 2, 3, 7))
def test_sharded_rule_equals_unsharded(rule, params, m, kind, dtype, shards):
    check_equal(make_case(kind, m, 301, dtype, seed=shards), rule, params, shards)


@pytest.mark.parametrize("rule,params,m", CASES)
@pytest.mark.parametrize("layout", ("F", "col_strided", "row_reversed", "col_reversed"))
def test_sharded_rule_equals_unsharded_in_every_layout(rule, params, m, layout):
    U = as_layout(make_case("normal", m, 2000, np.float32, seed=3), layout)
    check_equal(U, rule, params, 4)


@pytest.mark.parametrize("rule,params,m", CASES)
def test_wide_shards_cover_many_kernel_chunks(rule, params, m):
    """d = 200,000 over 5 shards: each shard spans many of the distance kernel's column chunks."""
    U = make_case("normal", m, 200_000, np.float32, seed=1)
    check_equal(U, rule, params, 5)


@pytest.mark.parametrize("rule,params,m", [c for c in CASES if c[0] != "mean"])
@pytest.mark.parametrize("kinds", ({0: "nan"}, {1: "inf", 4: "-inf"}, {2: "nan", 3: "mixed"}))
def test_nonfinite_rows_are_handled_as_unsharded(rule, params, m, kinds):
    U = with_nonfinite_rows(make_case("normal", m, 257, np.float64, seed=2), kinds)
    check_equal(U, rule, params, 3)


@pytest.mark.parametrize("squared", (True, False))
def test_near_identical_rows_select_the_float64_reference_worker(squared):
    """A common component of norm 1e3, rows differing by 1e-4 per coordinate, row 6 exactly the
    common part: the reference, the unsharded and the sharded Krum all pick row 6."""
    U64 = near_identical()
    U32 = U64.astype(np.float32)
    assert ref.krum_select(U64, 2, squared=squared)[0] == 6
    for shards in (2, 3, 10):
        outs, chosen = sharded.aggregate(sharded.split(U32, shards), "krum", c=2, squared=squared)
        np.testing.assert_array_equal(chosen, [6])
        assert_identical(np.concatenate(outs), U32[6])


def test_identical_attack_copies_tie_to_the_lowest_index_as_unsharded():
    """Krum's crafted copies are identical rows: their scores tie exactly, sharded or not."""
    U = make_case("normal", 15, 500, np.float32, seed=4)
    U[:4] = U[0] * 0.01  # four identical rows close to everything
    check_equal(U, "krum", {"c": 4}, 3)
    check_equal(U, "krum", {"c": 3, "multi": 5}, 6)


def test_many_random_selections_agree_with_unsharded():
    """300 random inputs with near-uniform scores (rows from one distribution): every Krum and
    Bulyan selection over 4 shards equals the unsharded one."""
    g = np.random.default_rng(5)
    for trial in range(300):
        U = g.standard_normal((13, 64)).astype(np.float32)
        rule, params = (("krum", {"c": 3, "multi": 3}) if trial % 2 else ("bulyan", {"c": 2}))
        check_equal(U, rule, params, 4)


def test_a_parallel_map_gives_the_same_bits():
    with ThreadPoolExecutor(3) as pool:
        for rule, params, m in CASES:
            check_equal(make_case("normal", m, 5000, np.float32, seed=6), rule, params, 3, mapper=pool.map)


def test_torch_shards_come_back_as_torch():
    U = torch.from_numpy(make_case("normal", 11, 100, np.float32, seed=7))
    outs, chosen = sharded.aggregate(sharded.split(U, 2), "bulyan", c=2)
    assert all(isinstance(o, torch.Tensor) for o in outs)
    assert_identical(torch.cat(outs).numpy(), agg.bulyan(U.numpy(), 2))
    np.testing.assert_array_equal(chosen, agg.bulyan_select(U.numpy(), 2))


def test_partial_distances_sum_to_the_unsharded_distances():
    U = make_case("normal", 9, 3000, np.float64, seed=8)
    D = sharded.sum_partials([sharded.partial_sq_distances(p) for p in sharded.split(U, 4)])
    np.testing.assert_allclose(D, ref.pairwise_sq_distances(U), rtol=1e-13, atol=0)
    assert (np.diag(D) == 0).all() and np.array_equal(D, D.T)


def test_attack_statistics_shard_like_the_rules():
    U = make_case("ties", 10, 777, np.float32, seed=9)
    rows = [0, 2, 3, 5, 8]
    pieces = sharded.split(U, 3)
    per_shard = sharded.coordinate_stats(pieces, rows)
    whole = stats.coordinate_stats(U, rows)
    for field in range(4):
        assert_identical(np.concatenate([s[field] for s in per_shard]), whole[field])
    s = np.sign(np.random.default_rng(1).standard_normal(777)).astype(np.int8)
    parts = [p[0] for p in sharded.split(s[None, :], 3)]  # s cut where U is
    norms, dots = sharded.norms_and_dots(pieces, parts)
    n_ref, d_ref = ref.norms_and_dots(U, s)
    np.testing.assert_allclose(norms, n_ref, rtol=1e-12)
    np.testing.assert_allclose(dots, d_ref, rtol=1e-12)


def test_bad_shards_and_parameters_say_what_was_expected():
    U = make_case("normal", 11, 20, np.float32)
    with pytest.raises(ValueError, match="same m rows"):
        sharded.aggregate([U[:, :10], U[:10, 10:]], "median")
    with pytest.raises(ValueError, match="at least one shard"):
        sharded.aggregate([], "median")
    with pytest.raises(ValueError, match=r"shards must be in \[1, d = 20\]"):
        sharded.split(U, 21)
    with pytest.raises(ValueError, match="unknown aggregation rule"):
        sharded.aggregate(sharded.split(U, 2), "average")
    with pytest.raises(ValueError, match="m > 2c"):
        sharded.aggregate(sharded.split(U, 2), "krum", c=5)
    with pytest.raises(ValueError, match="pass the rows"):
        sharded.aggregate_shard(U, "krum", c=2)
    with pytest.raises(ValueError, match="one direction part per shard"):
        sharded.norms_and_dots(sharded.split(U, 2), [np.ones(20, np.int8)])
