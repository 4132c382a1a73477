"""The cost of crafting an attack against one aggregation (``fedrobust bench --attacks``).

`run_attacks` times crafting each attack of fedrobust.attacks against one aggregation of the
same (100, 1e6) float32 updates with the rule it targets, as ratios measured in one process
(see `ATTACK_CASES`); `attack_cases` also feeds bench/test_bench_attacks.py, and
`report.format_attack_report` prints the result. fedrobust.attacks is imported by
`attack_cases` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import fedrobust
from fedrobust.benchmarks.cases import bound_rule, read_once_cases, rule_params
from fedrobust.benchmarks.inputs import SEED, byzantine_count, make_attack_inputs
from fedrobust.benchmarks.machine import machine_entry, set_threads, start_clock
from fedrobust.benchmarks.timing import best_time, best_times_interleaved

ATTACK_SHAPE: Tuple[int, int] = (100, 1_000_000)
ATTACK_QUICK_SHAPE: Tuple[int, int] = (100, 50_000)
ATTACK_REPEATS = 5
# (attack, knowledge, rule): the attack crafted against `rule` (the rule the attacker assumes,
# with `cases.rule_params`), timed against one aggregation of the same U with that rule.
# The order is the order of the table.
ATTACK_CASES: Tuple[Tuple[str, str, str], ...] = (
    ("krum", "full", "krum"),
    ("krum", "partial", "krum"),
    ("trim", "full", "median"),
    ("trim", "full", "trimmed_mean"),
    ("trim", "partial", "median"),
    ("trim", "partial", "trimmed_mean"),
    ("gaussian", "full", "mean"),
)


@dataclass
class AttackCase:
    """One attack and the aggregation it targets, over one (m, d) U.

    `craft()` returns the (c, d) crafted rows (the attack with measure=False: no metric passes);
    `aggregate()` runs `rule` once on U; `context` is the AttackContext `craft` reuses, so its
    `metrics` tell what the last call did (lambda, probes, ...).
    """

    attack: str
    knowledge: str
    rule: str
    rule_params: Dict[str, Any]
    craft: Callable[[], Any]
    aggregate: Callable[[], Any]
    context: Any

    @property
    def name(self) -> str:
        """"krum full vs krum", "trim partial vs median", "gaussian vs mean"."""
        who = self.attack if self.attack == "gaussian" else f"{self.attack} {self.knowledge}"
        return f"{who} vs {self.rule}"


def attack_cases(U: np.ndarray, w: np.ndarray, c: int, beta: int, seed: int = 1) -> List[AttackCase]:
    """The ATTACK_CASES over U: rows 0..c-1 compromised, round 0, lr 0.1, the attacks' default
    options with Krum on squared distances, measure=False."""
    from fedrobust.attacks import ATTACKS, AttackContext, AttackOptions

    compromised = np.arange(c)
    cases = []
    for attack, knowledge, rule in ATTACK_CASES:
        params = rule_params(rule, c, beta)
        ctx = AttackContext(updates=U, compromised=compromised, global_model=w, rule=rule, rule_params=params,
                            knowledge=knowledge, rng=np.random.default_rng(0), round=0, seed=seed, lr=0.1,
                            options=AttackOptions(krum_squared=True), measure=False)
        fn = ATTACKS[attack]
        cases.append(AttackCase(attack, knowledge, rule, params,
                                craft=lambda fn=fn, ctx=ctx: fn(ctx),
                                aggregate=bound_rule(rule, params, U),
                                context=ctx))
    return cases


def _jsonable(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """ctx.metrics with numpy scalars turned into Python ones."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metrics.items()}


def run_attacks(quick: bool = False, repeats: Optional[int] = None, threads: Optional[int] = None,
                seed: int = SEED, shape: Optional[Tuple[int, int]] = None,
                log: Callable[[str], None] = lambda s: None) -> dict:
    """Time crafting each attack of ATTACK_CASES against one aggregation of the same U with the
    rule it targets, in this process; returns a JSON-ready dict.

    U and w come from `inputs.make_attack_inputs` (ATTACK_SHAPE, or ATTACK_QUICK_SHAPE with
    quick=True); c = beta = m // 5. Each case times its attack and its aggregation interleaved,
    best of `repeats` (default ATTACK_REPEATS) after one warm-up call each; ratio = attack /
    aggregation. The read-once time (fastest column sum) is given for scale.
    """
    m, d = shape if shape is not None else (ATTACK_QUICK_SHAPE if quick else ATTACK_SHAPE)
    if repeats is None:
        repeats = ATTACK_REPEATS
    if threads is None:
        threads = fedrobust.backend_info()["cpu"]["threads"]
    set_threads(threads)
    info = fedrobust.backend_info()
    clock = start_clock()
    c = beta = byzantine_count(m)
    log(f"U ({m}, {d}) float32")
    U, w = make_attack_inputs(m, d, seed)
    log("  timing: read-once")
    read_once = {case.impl: best_time(case.fn, repeats) for case in read_once_cases(U)}
    rows = []
    for case in attack_cases(U, w, c, beta):
        log(f"  timing: {case.name}")
        attack_s, aggregation_s = best_times_interleaved([case.craft, case.aggregate], repeats)
        rows.append({"case": case.name, "attack": case.attack, "knowledge": case.knowledge,
                     "rule": case.rule, "rule_params": case.rule_params,
                     "attack_seconds": attack_s, "aggregation_seconds": aggregation_s,
                     "ratio": attack_s / aggregation_s, "metrics": _jsonable(case.context.metrics)})
    del U, w
    return {
        "settings": {"quick": quick, "repeats": repeats, "warmup": 1, "threads": threads, "seed": seed,
                     "measure": False, "krum_squared": True},
        "machine": machine_entry(info, clock),
        "backend_info": info,
        "m": m, "d": d, "dtype": "float32", "c": c, "beta": beta, "u_mib": m * d * 4 / 2**20,
        "read_once": {"seconds": read_once, "best": min(read_once.values())},
        "rows": rows,
    }
