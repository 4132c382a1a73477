"""Speed and memory of the fedrobust kernels against numpy and torch, on one array (``fedrobust bench``).

What is measured, for each shape (m workers, d parameters) of float32 updates
U (seeded standard normal, C-contiguous), all in one process on the same U:

- read-once time: a column sum over U, ``U.sum(axis=0)`` (numpy) and
  ``torch.from_numpy(U).sum(0)``; the faster of the two is the reference,
  the time any rule needs at least to read U once;
- the fedrobust rules of `cases.TABLE_RULES` (mean, median, trimmed mean, Krum, Bulyan,
  coordinate statistics over the first c rows) and, for each rule, the usual numpy and torch
  ways to compute it (see `baselines`);
- each time is the best (minimum) wall time of `repeats` calls after one
  warm-up call; fedrobust and torch run on the same number of threads,
  numpy's reductions, sorts and partitions run on one thread;
- peak extra memory of each fedrobust kernel: in a fresh Python process that
  builds U, the growth of the peak resident set size across one call (see
  `memory.measure_peak_extra_memory`).

`run` does it all and returns a JSON-ready dict; `report.format_report` turns that into the
plain-text table that ``fedrobust bench`` prints. torch rows are left out when torch is not
installed.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import fedrobust
from fedrobust.benchmarks.cases import TABLE_RULES, all_cases, read_once_cases
from fedrobust.benchmarks.inputs import SEED, byzantine_count, make_updates
from fedrobust.benchmarks.machine import machine_entry, set_threads, start_clock
from fedrobust.benchmarks.memory import measure_peak_extra_memory
from fedrobust.benchmarks.timing import best_time

FULL_SHAPES: Tuple[Tuple[int, int], ...] = ((100, 1_000_000), (1000, 100_000), (10_000, 7850))
QUICK_SHAPES: Tuple[Tuple[int, int], ...] = ((100, 50_000), (200, 10_000))
REPEATS = 3
# From this many workers only the coordinate-wise rules are timed: Krum's m^2 d / 2 exact
# distances (and Bulyan's m - 2c Krum rounds) would take minutes per call.
COORDINATE_ONLY_FROM_M = 5000


def shape_rules(m: int) -> Tuple[str, ...]:
    """The rules of TABLE_RULES timed at m workers."""
    if m < COORDINATE_ONLY_FROM_M:
        return TABLE_RULES
    return tuple(rule for rule in TABLE_RULES if rule not in ("krum", "bulyan"))


def bench_shape(m: int, d: int, repeats: int, memory: bool, threads: int, seed: int = SEED,
                log: Callable[[str], None] = lambda s: None) -> dict:
    """Time the read-once sums and every case of shape_rules(m) on one seeded (m, d) float32 U."""
    c = beta = byzantine_count(m)
    U = make_updates(m, d, seed)
    read_once = {}
    log("  timing: read-once")
    for case in read_once_cases(U):
        read_once[case.impl] = best_time(case.fn, repeats)
    reference = min(read_once.values())

    rows = []
    rules = shape_rules(m)
    for case in all_cases(U, c, beta, bulyan="bulyan" in rules):
        if case.rule not in rules:
            continue
        if case.impl == "fedrobust":
            log(f"  timing: {case.rule}")
        seconds = best_time(case.fn, repeats)
        rows.append({"rule": case.rule, "impl": case.impl, "label": case.label,
                     "seconds": seconds, "x_read_once": seconds / reference})
    del U
    _add_speedups(rows)

    if memory:
        for row in rows:
            if row["impl"] == "fedrobust":
                log(f"  memory: {row['rule']}")
                row["memory"] = measure_peak_extra_memory(row["rule"], m, d, threads, seed)
                row["peak_extra_mib"] = row["memory"]["peak_extra_mib"]

    return {
        "m": m, "d": d, "dtype": "float32", "seed": seed, "c": c, "beta": beta,
        "u_mib": m * d * 4 / 2**20,
        "read_once": {"seconds": read_once, "best": reference},
        "rows": rows,
    }


def _add_speedups(rows: List[dict]) -> None:
    """On each fedrobust row: the fastest other row of the same rule and its time / ours."""
    for row in rows:
        if row["impl"] != "fedrobust":
            continue
        others = [r for r in rows if r["rule"] == row["rule"] and r["impl"] != "fedrobust"]
        if others:
            best = min(others, key=lambda r: r["seconds"])
            row["speedup"] = best["seconds"] / row["seconds"]
            row["speedup_vs"] = f"{best['impl']} {best['label']}"


def run(quick: bool = False, repeats: Optional[int] = None, threads: Optional[int] = None,
        memory: Optional[bool] = None, seed: int = SEED,
        shapes: Optional[Sequence[Tuple[int, int]]] = None,
        log: Callable[[str], None] = lambda s: None) -> dict:
    """Benchmark every shape; returns a JSON-ready dict (settings, machine, one entry per shape).

    Defaults: FULL_SHAPES with the memory probes, or with quick=True QUICK_SHAPES without them;
    REPEATS timed calls per case; threads = fedrobust's current OpenMP thread count.
    """
    if shapes is None:
        shapes = QUICK_SHAPES if quick else FULL_SHAPES
    if repeats is None:
        repeats = REPEATS
    if memory is None:
        memory = not quick
    if threads is None:
        threads = fedrobust.backend_info()["cpu"]["threads"]
    set_threads(threads)
    info = dict(fedrobust.backend_info(), flwr=_version_of("flwr"), byzfl=_version_of("byzfl"))
    clock = start_clock()
    results = []
    for m, d in shapes:
        log(f"U ({m}, {d}) float32")
        results.append(bench_shape(m, d, repeats, memory, threads, seed, log))
    return {
        "settings": {"quick": quick, "repeats": repeats, "warmup": 1, "threads": threads,
                     "memory": memory, "seed": seed},
        "machine": machine_entry(info, clock),
        "backend_info": info,
        "shapes": results,
    }


def _version_of(package: str) -> Optional[str]:
    """The installed version of `package`, or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
