"""pytest-benchmark suite: the defenses' leave-one-out aggregation (median, trimmed mean)
against one aggregation.

    pytest bench --benchmark-enable -k leave_one_out               # U: (100, 100_000) float32
    FEDROBUST_BENCH_FULL=1 pytest bench --benchmark-enable -k leave_one_out   # U: (100, 1_000_000)

One group per rule over one seeded U (the trimmed mean with beta = 20): "one aggregation"
(the unit of the ratios), "all m leave-one-out" (the (m, d) result into a new array, as the
defenses call it), the same "into a reused array" (without the page faults of a new 4 m d
byte array), "m aggregations over row lists" (the rule recomputed m times, what the one pass
replaces; (100, 100_000) only) and "write (m, d) once" (filling an (m, d) array: the result's
own memory traffic). The target: all m leave-one-out medians and trimmed means at (100, 1e6)
cost at most 3 aggregations.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import fedrobust
from fedrobust.benchmarks import inputs
from fedrobust.benchmarks.machine import set_threads
from fedrobust.dispatch import CPU

FULL = os.environ.get("FEDROBUST_BENCH_FULL") == "1"
M, D = (100, 1_000_000) if FULL else (100, 100_000)
ROUNDS = 3 if FULL else 5
IMPLS = ("one aggregation", "all m leave-one-out", "into a reused array", "m aggregations over row lists",
         "write (m, d) once")
RULES = ("median", "trimmed_mean")
PARAMS = [(rule, impl) for rule in RULES for impl in IMPLS]


@pytest.fixture(scope="session")
def loo_cases():
    """{(rule, impl): zero-argument callable or None} over one seeded (M, D) float32 U; the
    trimmed mean with beta = c = M // 5 (on the m - 1 rows for the leave-one-out calls)."""
    set_threads(fedrobust.backend_info()["cpu"]["threads"])
    U = inputs.make_updates(M, D)
    out = np.empty((M, D), np.float32)
    beta = inputs.byzantine_count(M)
    everyone = list(range(M))
    without = [everyone[:i] + everyone[i + 1:] for i in range(M)]
    one = {"median": lambda rows=None: CPU.median(U, rows),
           "trimmed_mean": lambda rows=None: CPU.trimmed_mean(U, beta, rows)}
    loo = {"median": lambda: CPU.leave_one_out_median(U),
           "trimmed_mean": lambda: CPU.leave_one_out_trimmed_mean(U, beta)}
    into = {"median": lambda: CPU.native.leave_one_out_median(U, out),
            "trimmed_mean": lambda: CPU.native.leave_one_out_trimmed_mean(U, beta, out)}
    table = {}
    for rule in RULES:
        table[(rule, "one aggregation")] = one[rule]
        table[(rule, "all m leave-one-out")] = loo[rule]
        table[(rule, "into a reused array")] = into[rule]
        table[(rule, "m aggregations over row lists")] = None if FULL else (
            lambda f=one[rule]: [f(rows) for rows in without])
        table[(rule, "write (m, d) once")] = lambda: out.fill(1.0)
    return table


@pytest.mark.parametrize("rule,impl", PARAMS, ids=[f"{r}-{i.replace(' ', '-')}" for r, i in PARAMS])
def test_leave_one_out_speed(benchmark, loo_cases, rule, impl):
    fn = loo_cases[(rule, impl)]
    if fn is None:
        pytest.skip("the m recomputations take minutes at this size")
    benchmark.group = f"leave-one-out {rule}, U ({M}, {D}) float32"
    benchmark.extra_info.update(rule=rule, impl=impl, m=M, d=D)
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)


def test_the_benchmarked_calls_agree():
    """On a small U the one pass, the reused array and the recomputation give the same bits."""
    U = inputs.make_updates(9, 301)
    for loo, native, one in ((CPU.leave_one_out_median, CPU.native.leave_one_out_median, CPU.median),
                             (lambda A: CPU.leave_one_out_trimmed_mean(A, 2),
                              lambda A, o: CPU.native.leave_one_out_trimmed_mean(A, 2, o),
                              lambda A, rows: CPU.trimmed_mean(A, 2, rows))):
        out = np.empty_like(U)
        native(U, out)
        B = loo(U)
        np.testing.assert_array_equal(B, out)
        for i in range(9):
            np.testing.assert_array_equal(B[i], one(U, [j for j in range(9) if j != i]))


# The other rules' leave-one-out at the defended round's size (MNIST LR: d = 7850), as
# defenses.leave_one_out computes it against the rule recomputed on each m - 1 rows.
SMALL_D = 7850
OTHER_RULES = {"mean": {}, "bulyan": {"c": 20}, "krum": {"c": 20}}
OTHER_IMPLS = ("defenses.leave_one_out", "the rule on each m - 1 rows")
OTHER = [(rule, impl) for rule in OTHER_RULES for impl in OTHER_IMPLS]


@pytest.fixture(scope="session")
def defended_round_updates():
    import torch

    set_threads(fedrobust.backend_info()["cpu"]["threads"])
    return torch.from_numpy(inputs.make_updates(M, SMALL_D))


@pytest.mark.parametrize("rule,impl", OTHER, ids=[f"{r}-{i.replace(' ', '-')}" for r, i in OTHER])
def test_leave_one_out_of_the_other_rules_speed(benchmark, defended_round_updates, rule, impl):
    from fedrobust import aggregators, defenses

    U, params = defended_round_updates, OTHER_RULES[rule]
    if impl == "defenses.leave_one_out":
        fn = lambda: defenses.leave_one_out(U, rule, params)  # noqa: E731
    else:
        fn = lambda: defenses._recomputed(U, aggregators.get(rule, **params))  # noqa: E731
    benchmark.group = f"leave-one-out {rule}, U ({M}, {SMALL_D}) float32"
    benchmark.extra_info.update(rule=rule, impl=impl, m=M, d=SMALL_D)
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
