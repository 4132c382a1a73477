"""pytest-benchmark suites: fedrobust against numpy and torch, one benchmark group per rule.

    pytest bench --benchmark-enable               # U: (100, 100_000) float32
    FEDROBUST_BENCH_FULL=1 pytest bench --benchmark-enable   # U: (100, 1_000_000)

Krum has a second group at many workers, (1000, 20_000) (FULL: (1000, 100_000)), where its
choice goes through the quantized Gram matrix; fedrobust's Bulyan is timed in that group too,
so the group shows Bulyan's time against Krum's.

Every group holds the rule's implementations (fedrobust, numpy, torch where one exists; see
fedrobust.benchmarks.baselines for how each is written) and two read-once column sums (numpy and torch)
over the same U, so the ratios pytest-benchmark prints within a group compare the
implementations with each other and with one read of U. Each case runs one warm-up call and
then ROUNDS timed calls; fedrobust and torch use the same thread count.

`test_alternatives_agree` checks, on a small array, that the numpy and torch versions compute
the same thing as fedrobust, so the timings compare like with like.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import fedrobust
from fedrobust import aggregators, stats
from fedrobust.benchmarks import baselines as bl
from fedrobust.benchmarks import cases as rule_cases
from fedrobust.benchmarks import inputs
from fedrobust.benchmarks.machine import import_torch, set_threads

FULL = os.environ.get("FEDROBUST_BENCH_FULL") == "1"
M, D = (100, 1_000_000) if FULL else (100, 100_000)
ROUNDS = 3 if FULL else 5
# Every rule of the table but Bulyan, which has no numpy or torch version to compare with.
RULES = tuple(rule for rule in rule_cases.RULE_IMPLS if rule != "bulyan")
READ_ONCE = ("read-once numpy", "read-once torch")
PARAMS = [(rule, impl) for rule in RULES for impl in rule_cases.RULE_IMPLS[rule] + READ_ONCE]


@pytest.fixture(scope="session")
def cases():
    """{(rule, impl): zero-argument callable} over one seeded (M, D) float32 U."""
    set_threads(fedrobust.backend_info()["cpu"]["threads"])
    U = inputs.make_updates(M, D)
    c = beta = inputs.byzantine_count(M)
    table = {(case.rule, case.impl): case for case in rule_cases.all_cases(U, c, beta, bulyan=False)}
    for case in rule_cases.read_once_cases(U):
        for rule in RULES:
            table[(rule, f"read-once {case.impl}")] = case
    return table


@pytest.mark.parametrize("rule,impl", PARAMS, ids=[f"{r}-{i.replace(' ', '-')}" for r, i in PARAMS])
def test_speed(benchmark, cases, rule, impl):
    case = cases.get((rule, impl))
    if case is None:
        pytest.skip(f"{impl} is not installed")
    benchmark.group = f"{rule}, U ({M}, {D}) float32"
    benchmark.extra_info.update(rule=rule, impl=impl, how=case.label, m=M, d=D)
    benchmark.pedantic(case.fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)


KRUM_M, KRUM_D = (1000, 100_000) if FULL else (1000, 20_000)
KRUM_IMPLS = rule_cases.RULE_IMPLS["krum"] + ("bulyan fedrobust",) + READ_ONCE


@pytest.fixture(scope="session")
def krum_cases():
    """{impl: zero-argument callable}: Krum's implementations and fedrobust's Bulyan over one
    (KRUM_M, KRUM_D) U."""
    set_threads(fedrobust.backend_info()["cpu"]["threads"])
    U = inputs.make_updates(KRUM_M, KRUM_D)
    c = inputs.byzantine_count(KRUM_M)
    table = {case.impl: case for case in rule_cases.all_cases(U, c, c, bulyan=False) if case.rule == "krum"}
    table.update({f"bulyan {case.impl}": case for case in rule_cases.fedrobust_cases(U, c, c)
                  if case.rule == "bulyan"})
    table.update({f"read-once {case.impl}": case for case in rule_cases.read_once_cases(U)})
    return table


@pytest.mark.parametrize("impl", KRUM_IMPLS, ids=[i.replace(" ", "-") for i in KRUM_IMPLS])
def test_krum_speed_at_many_workers(benchmark, krum_cases, impl):
    case = krum_cases.get(impl)
    if case is None:
        pytest.skip(f"{impl} is not installed or not timed at this size")
    benchmark.group = f"krum (and fedrobust's Bulyan), U ({KRUM_M}, {KRUM_D}) float32"
    benchmark.extra_info.update(rule=case.rule, impl=impl, how=case.label, m=KRUM_M, d=KRUM_D)
    benchmark.pedantic(case.fn, rounds=3, warmup_rounds=1, iterations=1)


def _numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def test_alternatives_agree():
    """The numpy and torch versions agree with fedrobust on a small array (odd m, so that torch's
    lower-middle median is the median)."""
    torch = import_torch()
    m, d = 51, 300
    U = inputs.make_updates(m, d, seed=1)
    c = beta = inputs.byzantine_count(m)
    mask = inputs.first_rows_mask(m, c)

    expected = {
        "mean": aggregators.mean(U),
        "median": aggregators.median(U),
        "trimmed_mean": aggregators.trimmed_mean(U, beta),
        "krum": aggregators.krum(U, c),
        "pairwise_distances": aggregators.pairwise_distances(U),
        "coordinate_stats": stats.coordinate_stats(U, mask),
    }
    alternatives = rule_cases.alternative_cases(U, c, beta)
    expected_impls = {"numpy", "numpy_sort"} | ({"torch"} if torch else set()) | (
        {"flower"} if importlib.util.find_spec("flwr") else set()) | (
        {"byzfl"} if torch and bl.byzfl_aggregators() is not None else set())
    assert {case.impl for case in alternatives} == expected_impls
    for case in alternatives:
        got, want = case.fn(), expected[case.rule]
        if case.rule == "krum" and case.impl == "byzfl":  # it sums one more neighbour: a row of U
            assert any(np.array_equal(_numpy(got), row) for row in U), "byzfl krum"
            continue
        if case.rule == "median" and case.impl == "torch":
            got = got.values
        if case.rule != "coordinate_stats":
            got, want = (got,), (want,)
        # Gram-matrix distances lose digits: |u|^2 ~ 300, so absolute errors ~ 1e-4.
        atol = 1e-3 if case.rule == "pairwise_distances" else 1e-5
        for g, w in zip(got, want):
            np.testing.assert_allclose(_numpy(g), w, rtol=1e-5, atol=atol, err_msg=f"{case.impl} {case.rule}")
