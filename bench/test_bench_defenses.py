"""pytest-benchmark suite: the defenses' leave-one-out aggregation against one aggregation.

    pytest bench --benchmark-enable -k leave_one_out               # U: (100, 100_000) float32
    FEDROBUST_BENCH_FULL=1 pytest bench --benchmark-enable -k leave_one_out   # U: (100, 1_000_000)

One group over one seeded U: "median" (one median, the unit of the ratios), "all m
leave-one-out medians" (the (m, d) result into a new array, as the defenses call it), the same
"into a reused array" (without the page faults of a new 4 m d byte array), "m medians over
row lists" (the rule recomputed m times, what the one pass replaces; (100, 100_000) only) and
"write (m, d) once" (filling an (m, d) array: the result's own memory traffic). The target
(issue 12): all m leave-one-out medians at (100, 1e6) cost at most 3 medians.
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
IMPLS = ("median", "all m leave-one-out medians", "into a reused array", "m medians over row lists",
         "write (m, d) once")


@pytest.fixture(scope="session")
def loo_cases():
    set_threads(fedrobust.backend_info()["cpu"]["threads"])
    U = inputs.make_updates(M, D)
    out = np.empty((M, D), np.float32)
    everyone = list(range(M))
    return {
        "median": lambda: CPU.median(U),
        "all m leave-one-out medians": lambda: CPU.leave_one_out_median(U),
        "into a reused array": lambda: CPU.native.leave_one_out_median(U, out),
        "m medians over row lists": None if FULL else (
            lambda: [CPU.median(U, everyone[:i] + everyone[i + 1:]) for i in range(M)]),
        "write (m, d) once": lambda: out.fill(1.0),
    }


@pytest.mark.parametrize("impl", IMPLS, ids=[i.replace(" ", "-") for i in IMPLS])
def test_leave_one_out_speed(benchmark, loo_cases, impl):
    fn = loo_cases[impl]
    if fn is None:
        pytest.skip("the m recomputations take minutes at this size")
    benchmark.group = f"leave-one-out median, U ({M}, {D}) float32"
    benchmark.extra_info.update(impl=impl, m=M, d=D)
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)


def test_the_benchmarked_calls_agree():
    """On a small U the one pass, the reused array and the recomputation give the same bits."""
    U = inputs.make_updates(9, 301)
    out = np.empty_like(U)
    CPU.native.leave_one_out_median(U, out)
    B = CPU.leave_one_out_median(U)
    np.testing.assert_array_equal(B, out)
    for i in range(9):
        np.testing.assert_array_equal(B[i], CPU.median(U, [j for j in range(9) if j != i]))
