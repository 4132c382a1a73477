"""pytest-benchmark suites: the cost of crafting each attack against one aggregation with the
rule it targets, one benchmark group per case.

    pytest bench --benchmark-enable -k attack               # U: (100, 100_000) float32
    FEDROBUST_BENCH_FULL=1 pytest bench --benchmark-enable -k attack   # U: (100, 1_000_000)

Every group holds two benchmarks over the same U (0.01 N(0, 1) plus a common drift, see
fedrobust.benchmarks.inputs.make_attack_inputs) and global model w: "attack", crafting the c = 20
rows (measure=False, so no metric passes), and "aggregation", one call of the rule the attack
targets, so the ratio pytest-benchmark prints within a group is the attack's cost in
aggregations. The cases are fedrobust.benchmarks.attacks.ATTACK_CASES (Krum full / partial vs Krum,
trim full / partial vs median and trimmed mean, Gaussian vs mean); `fedrobust bench --attacks`
prints the same ratios from one run. Each case runs one warm-up call and then ROUNDS timed calls.

`test_attack_cases_shapes` checks, on a small array, that every case crafts (c, d) finite rows
and aggregates to (d,), so the timings time what they say.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import fedrobust
from fedrobust.benchmarks import attacks, inputs
from fedrobust.benchmarks.machine import set_threads

FULL = os.environ.get("FEDROBUST_BENCH_FULL") == "1"
M, D = (100, 1_000_000) if FULL else (100, 100_000)
ROUNDS = 3 if FULL else 5
WHAT = ("attack", "aggregation")
NAMES = [f"{a} vs {r}" if a == "gaussian" else f"{a} {k} vs {r}" for a, k, r in attacks.ATTACK_CASES]
PARAMS = [(name, what) for name in NAMES for what in WHAT]


@pytest.fixture(scope="session")
def attack_cases():
    """{case name: AttackCase} over one seeded (M, D) float32 U and its global model w."""
    set_threads(fedrobust.backend_info()["cpu"]["threads"])
    U, w = inputs.make_attack_inputs(M, D)
    c = beta = inputs.byzantine_count(M)
    return {case.name: case for case in attacks.attack_cases(U, w, c, beta)}


@pytest.mark.parametrize("name,what", PARAMS, ids=[f"{n.replace(' ', '-')}-{w}" for n, w in PARAMS])
def test_attack_speed(benchmark, attack_cases, name, what):
    case = attack_cases[name]
    benchmark.group = f"{name}, U ({M}, {D}) float32"
    benchmark.extra_info.update(case=name, what=what, attack=case.attack, knowledge=case.knowledge,
                                rule=case.rule, m=M, d=D)
    fn = case.craft if what == "attack" else case.aggregate
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)


def test_attack_cases_shapes():
    """Each case crafts (c, d) finite float32 rows and aggregates U to (d,), on a small array."""
    m, d = 50, 300
    U, w = inputs.make_attack_inputs(m, d, seed=1)
    c = beta = inputs.byzantine_count(m)
    cases = attacks.attack_cases(U, w, c, beta)
    assert [case.name for case in cases] == NAMES
    for case in cases:
        rows = np.asarray(case.craft())
        assert rows.shape == (c, d) and rows.dtype == np.float32, case.name
        assert np.isfinite(rows).all(), case.name
        assert np.asarray(case.aggregate()).shape == (d,), case.name
        if case.attack == "krum":
            assert case.context.metrics["found"], case.name
