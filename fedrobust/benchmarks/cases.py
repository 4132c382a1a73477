"""The rule table and the timed cases built from it: zero-argument callables over one array.

The rule knowledge of the benchmarks lives here only: which rules are timed and by which
implementations (`RULE_IMPLS`, in table order), which of them the ``fedrobust bench`` table
shows (`TABLE_RULES`), and the parameters each rule of fedrobust.aggregators is called with
(`rule_params`, which the attack benchmark's targeted rules use too).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from fedrobust import aggregators, stats
from fedrobust.benchmarks import baselines as bl
from fedrobust.benchmarks.inputs import first_rows_mask
from fedrobust.benchmarks.machine import import_torch

# Which implementations each rule has; the order is the order of the table rows. torch,
# flower and byzfl rows exist where those packages are installed (byzfl's with torch too);
# Flower's Krum only where it takes under about FLOWER_KRUM_MAX_WORK multiply-adds (m^2 d:
# it loops over all pairs in Python).
RULE_IMPLS: Dict[str, Tuple[str, ...]] = {
    "mean": ("fedrobust", "numpy", "torch", "byzfl"),
    "median": ("fedrobust", "numpy", "numpy_sort", "torch", "flower", "byzfl"),
    "trimmed_mean": ("fedrobust", "numpy", "numpy_sort", "torch", "flower", "byzfl"),
    "krum": ("fedrobust", "numpy", "torch", "flower", "byzfl"),
    "bulyan": ("fedrobust",),
    "pairwise_distances": ("fedrobust", "numpy", "torch"),
    "coordinate_stats": ("fedrobust", "numpy", "torch"),
}
FLOWER_KRUM_MAX_WORK = 2e9
# The rules of the `run` table (pairwise distances are part of Krum; pytest times them alone).
TABLE_RULES: Tuple[str, ...] = ("mean", "median", "trimmed_mean", "krum", "bulyan", "coordinate_stats")


def rule_params(rule: str, c: int, beta: int) -> Dict[str, Any]:
    """The parameters of fedrobust.aggregators.get(rule, ...) in the benchmarks, for c Byzantine
    workers and trimming beta: the rule's registry parameters named c and beta get those values,
    the others (Krum's and Bulyan's squared distances, multi = 1) their defaults. The attack
    benchmark's attackers assume the same."""
    values = {"c": c, "beta": beta}
    return {p.name: values[p.name] for p in aggregators.rule(rule).params if p.name in values}


@dataclass
class Case:
    """One timed call: `fn()` computes `rule` with `impl` on the array the case was built for."""

    rule: str
    impl: str  # "fedrobust", "numpy", "numpy_sort" (a second numpy way), "torch", "flower" or "byzfl"
    label: str  # how the rule is computed, for the table
    fn: Callable[[], Any]


def bound_rule(rule: str, params: Dict[str, Any], U: Any) -> Callable[[], Any]:
    """fedrobust's `rule` with `params`, as a zero-argument call on U."""
    agg = aggregators.get(rule, **params)
    return lambda: agg(U)


def read_once_cases(U: np.ndarray) -> List[Case]:
    """Column sums over U: the cost of reading U once."""
    cases = [Case("read-once", "numpy", "U.sum(axis=0)", lambda: U.sum(axis=0))]
    torch = import_torch()
    if torch is not None:
        T = torch.from_numpy(U)
        cases.append(Case("read-once", "torch", "T.sum(0)", lambda: T.sum(0)))
    return cases


def fedrobust_cases(U: np.ndarray, c: int, beta: int, bulyan: bool = True) -> List[Case]:
    """The fedrobust kernels, the rules with `rule_params`; distances squared."""
    mask = first_rows_mask(U.shape[0], c)

    def rule(name: str, label: str) -> Case:
        return Case(name, "fedrobust", label, bound_rule(name, rule_params(name, c, beta), U))

    cases = [
        rule("mean", "mean"),
        rule("median", "median"),
        rule("trimmed_mean", f"trimmed_mean(beta={beta})"),
        rule("krum", f"krum(c={c})"),
        Case("pairwise_distances", "fedrobust", "pairwise_distances",
             lambda: aggregators.pairwise_distances(U, squared=True)),
        Case("coordinate_stats", "fedrobust", f"coordinate_stats(first {c} rows)",
             lambda: stats.coordinate_stats(U, mask)),
    ]
    if bulyan:
        cases.insert(4, rule("bulyan", f"bulyan(c={c})"))
    return cases


def alternative_cases(U: np.ndarray, c: int, beta: int) -> List[Case]:
    """The numpy and torch ways to compute each rule (see `baselines`; torch ones only if torch
    is installed, on a CPU tensor sharing U's memory)."""
    mask = first_rows_mask(U.shape[0], c)
    cases = [
        Case("mean", "numpy", "U.mean(axis=0)", lambda: bl.numpy_mean(U)),
        Case("median", "numpy", "np.median(axis=0)", lambda: bl.numpy_median(U)),
        Case("median", "numpy_sort", "np.sort(axis=0), middle", lambda: bl.numpy_sort_median(U)),
        Case("trimmed_mean", "numpy", "np.partition + mean", lambda: bl.numpy_trimmed_mean(U, beta)),
        Case("trimmed_mean", "numpy_sort", "np.sort(axis=0), slice, mean",
             lambda: bl.numpy_sort_trimmed_mean(U, beta)),
        Case("krum", "numpy", "Gram (inexact) + partition", lambda: bl.numpy_krum(U, c)),
        Case("pairwise_distances", "numpy", "Gram matrix", lambda: bl.numpy_pairwise_sq(U)),
        Case("coordinate_stats", "numpy", "U[mask] mean/std/min/max",
             lambda: bl.numpy_coordinate_stats(U, mask)),
    ]
    torch = import_torch()
    if torch is not None:
        T = torch.from_numpy(U)
        cases += [
            Case("mean", "torch", "T.mean(0)", lambda: bl.torch_mean(T)),
            Case("median", "torch", "torch.median(dim=0)", lambda: bl.torch_median(T)),
            Case("trimmed_mean", "torch", "torch.sort + mean", lambda: bl.torch_trimmed_mean(T, beta)),
            Case("krum", "torch", "cdist (Gram, inexact) + topk", lambda: bl.torch_krum(T, c)),
            Case("pairwise_distances", "torch", "cdist ** 2", lambda: bl.torch_pairwise_sq(T)),
            Case("coordinate_stats", "torch", "T[mask] std_mean/amin/amax",
                 lambda: bl.torch_coordinate_stats(T, mask)),
        ]
    return cases + flower_cases(U, c, beta) + byzfl_cases(U, c, beta)


def flower_cases(U: np.ndarray, c: int, beta: int) -> List[Case]:
    """Flower's aggregation functions on U (one layer per client); none without Flower.
    Krum only where m^2 d <= FLOWER_KRUM_MAX_WORK."""
    try:
        import flwr.server.strategy.aggregate  # noqa: F401
    except ImportError:
        return []
    results = bl.flower_results(U)
    cases = [
        Case("median", "flower", "aggregate_median", lambda: bl.flower_median(results)),
        Case("trimmed_mean", "flower", "aggregate_trimmed_avg", lambda: bl.flower_trimmed_mean(results, beta)),
    ]
    m, d = U.shape
    if m * m * d <= FLOWER_KRUM_MAX_WORK:
        cases.append(Case("krum", "flower", "aggregate_krum (pairwise norms)", lambda: bl.flower_krum(results, c)))
    return cases


def byzfl_cases(U: np.ndarray, c: int, beta: int) -> List[Case]:
    """byzfl's aggregators on a torch tensor sharing U's memory (its TrMean(f) drops f values
    at each end: f = beta; its Krum(f) sums the m - f - 1 nearest, one more than fedrobust's
    m - c - 2); none without byzfl or torch."""
    agg = bl.byzfl_aggregators()
    torch = import_torch()
    if agg is None or torch is None:
        return []
    T = torch.from_numpy(U)
    average, median, trimmed, krum = agg.Average(), agg.Median(), agg.TrMean(f=beta), agg.Krum(f=c)
    return [
        Case("mean", "byzfl", "Average", lambda: average(T)),
        Case("median", "byzfl", "Median (torch.median)", lambda: median(T)),
        Case("trimmed_mean", "byzfl", "TrMean (torch.sort)", lambda: trimmed(T)),
        Case("krum", "byzfl", "Krum (torch.cdist, m - f - 1 nearest)", lambda: krum(T)),
    ]


def all_cases(U: np.ndarray, c: int, beta: int, bulyan: bool) -> List[Case]:
    """fedrobust, numpy, torch, Flower and byzfl cases, ordered as in RULE_IMPLS."""
    cases = fedrobust_cases(U, c, beta, bulyan) + alternative_cases(U, c, beta)
    order = {(r, i): k for k, (r, i) in enumerate((r, i) for r in RULE_IMPLS for i in RULE_IMPLS[r])}
    return sorted(cases, key=lambda case: order[(case.rule, case.impl)])
