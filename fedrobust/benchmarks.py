"""Speed and memory of the fedrobust kernels against numpy and torch, on one array.

What is measured, for each shape (m workers, d parameters) of float32 updates
U (seeded standard normal, C-contiguous), all in one process on the same U:

- read-once time: a column sum over U, ``U.sum(axis=0)`` (numpy) and
  ``torch.from_numpy(U).sum(0)``; the faster of the two is the reference,
  the time any rule needs at least to read U once;
- the fedrobust rules (mean, median, trimmed mean, Krum, Bulyan for m <= 200,
  coordinate statistics over the first c rows) and, for each rule, the
  usual numpy and torch ways to compute it (see `alternative_cases`);
- each time is the best (minimum) wall time of `repeats` calls after one
  warm-up call; fedrobust and torch run on the same number of threads,
  numpy's reductions, sorts and partitions run on one thread;
- peak extra memory of each fedrobust kernel: in a fresh Python process that
  builds U, the growth of the peak resident set size across one call (see
  `measure_peak_extra_memory`).

`run` does it all and returns a JSON-ready dict; `format_report` turns that
into the plain-text table that ``fedrobust bench`` prints.

`run_attacks` and `format_attack_report` (``fedrobust bench --attacks``) time
crafting each attack of fedrobust.attacks against one aggregation of the same
(100, 1e6) float32 updates with the rule it targets, as ratios measured in one
process (see `ATTACK_CASES`); `attack_cases` also feeds bench/test_bench_attacks.py.

This module imports only numpy and fedrobust; torch is imported when first
needed, and the torch rows are left out when it is not installed; fedrobust.attacks
is imported by `attack_cases` only.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import fedrobust
from fedrobust import aggregators, stats

FULL_SHAPES: Tuple[Tuple[int, int], ...] = ((100, 1_000_000), (1000, 100_000))
QUICK_SHAPES: Tuple[Tuple[int, int], ...] = ((100, 50_000), (200, 10_000))
REPEATS = 3
SEED = 0

# Which implementations each rule has; the order is the order of the table rows.
RULE_IMPLS: Dict[str, Tuple[str, ...]] = {
    "mean": ("fedrobust", "numpy", "torch"),
    "median": ("fedrobust", "numpy", "torch"),
    "trimmed_mean": ("fedrobust", "numpy", "torch"),
    "krum": ("fedrobust", "numpy", "torch"),
    "bulyan": ("fedrobust",),
    "pairwise_distances": ("fedrobust", "numpy", "torch"),
    "coordinate_stats": ("fedrobust", "numpy", "torch"),
}
# The rules of the `run` table (pairwise distances are part of Krum; pytest times them alone).
TABLE_RULES: Tuple[str, ...] = ("mean", "median", "trimmed_mean", "krum", "bulyan", "coordinate_stats")


@dataclass
class Case:
    """One timed call: `fn()` computes `rule` with `impl` on the array the case was built for."""

    rule: str
    impl: str  # "fedrobust", "numpy" or "torch"
    label: str  # how the rule is computed, for the table
    fn: Callable[[], Any]


# ---------------------------------------------------------------------------
# Inputs and parameters
# ---------------------------------------------------------------------------
def make_updates(m: int, d: int, seed: int = SEED) -> np.ndarray:
    """(m, d) float32 standard normal values, C-contiguous, generated directly in float32."""
    return np.random.default_rng(seed).standard_normal((m, d), dtype=np.float32)


def byzantine_count(m: int) -> int:
    """c (Krum, Bulyan, attacked rows) and beta (trimmed mean): m // 5, i.e. 20 for m = 100."""
    return m // 5


def first_rows_mask(m: int, c: int) -> np.ndarray:
    """Boolean mask of shape (m,) selecting the first c rows (the attackers' rows)."""
    return np.arange(m) < c


def import_torch() -> Optional[Any]:
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def set_threads(n: int) -> None:
    """Use n threads in the fedrobust kernels and in torch (numpy is left as it is)."""
    fedrobust.set_num_threads(n)
    torch = import_torch()
    if torch is not None:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------
# numpy and torch versions of the rules (what a user would write without fedrobust)
# ---------------------------------------------------------------------------
def numpy_trimmed_mean(U: np.ndarray, beta: int) -> np.ndarray:
    """Partition each column at ranks beta and m - beta - 1, then average the rows between them."""
    m = U.shape[0]
    P = np.partition(U, [beta, m - beta - 1], axis=0)
    return P[beta:m - beta].mean(axis=0)


def torch_trimmed_mean(T: Any, beta: int) -> Any:
    """Sort each column, then average the middle m - 2 beta rows."""
    import torch

    m = T.shape[0]
    return torch.sort(T, dim=0).values[beta:m - beta].mean(dim=0)


def numpy_pairwise_sq(U: np.ndarray) -> np.ndarray:
    """Squared distances from the Gram matrix, |u|^2 + |v|^2 - 2 u.v (fast, loses digits for close rows)."""
    G = U @ U.T
    n = np.diag(G)
    return np.maximum(n[:, None] + n[None, :] - 2 * G, 0)


def torch_pairwise_sq(T: Any) -> Any:
    """torch.cdist(T, T) squared (for m > 25 cdist also goes through the Gram matrix)."""
    import torch

    return torch.cdist(T, T) ** 2


def numpy_krum(U: np.ndarray, c: int) -> np.ndarray:
    """Krum from `numpy_pairwise_sq`: per row, the sum of the m - c - 2 smallest distances to other rows."""
    m = U.shape[0]
    D = numpy_pairwise_sq(U)
    np.fill_diagonal(D, np.inf)
    k = m - c - 2
    scores = np.partition(D, k - 1, axis=1)[:, :k].sum(axis=1)
    return U[int(np.argmin(scores))]


def torch_krum(T: Any, c: int) -> Any:
    """Krum from `torch_pairwise_sq`: topk of the m - c - 2 smallest distances per row, self excluded."""
    import torch

    m = T.shape[0]
    D = torch_pairwise_sq(T)
    D.fill_diagonal_(float("inf"))
    scores = torch.topk(D, m - c - 2, dim=1, largest=False).values.sum(dim=1)
    return T[int(torch.argmin(scores))]


def numpy_coordinate_stats(U: np.ndarray, mask: np.ndarray) -> tuple:
    """Mean, population std, min, max of every column over the masked rows (copies those rows)."""
    S = U[mask]
    return S.mean(axis=0), S.std(axis=0), S.min(axis=0), S.max(axis=0)


def torch_coordinate_stats(T: Any, mask: np.ndarray) -> tuple:
    """Same as `numpy_coordinate_stats` with torch.std_mean, amin, amax."""
    import torch

    S = T[torch.from_numpy(mask)]
    std, mean = torch.std_mean(S, dim=0, correction=0)
    return mean, std, torch.amin(S, dim=0), torch.amax(S, dim=0)


# ---------------------------------------------------------------------------
# The cases: zero-argument callables over one array
# ---------------------------------------------------------------------------
def read_once_cases(U: np.ndarray) -> List[Case]:
    """Column sums over U: the cost of reading U once."""
    cases = [Case("read-once", "numpy", "U.sum(axis=0)", lambda: U.sum(axis=0))]
    torch = import_torch()
    if torch is not None:
        T = torch.from_numpy(U)
        cases.append(Case("read-once", "torch", "T.sum(0)", lambda: T.sum(0)))
    return cases


def fedrobust_cases(U: np.ndarray, c: int, beta: int, bulyan: bool = True) -> List[Case]:
    """The fedrobust kernels; Krum and Bulyan use squared distances (exact, direct differences)."""
    mask = first_rows_mask(U.shape[0], c)
    cases = [
        Case("mean", "fedrobust", "mean", lambda: aggregators.mean(U)),
        Case("median", "fedrobust", "median", lambda: aggregators.median(U)),
        Case("trimmed_mean", "fedrobust", f"trimmed_mean(beta={beta})",
             lambda: aggregators.trimmed_mean(U, beta)),
        Case("krum", "fedrobust", f"krum(c={c})", lambda: aggregators.krum(U, c, squared=True)),
        Case("pairwise_distances", "fedrobust", "pairwise_distances",
             lambda: aggregators.pairwise_distances(U, squared=True)),
        Case("coordinate_stats", "fedrobust", f"coordinate_stats(first {c} rows)",
             lambda: stats.coordinate_stats(U, mask)),
    ]
    if bulyan:
        cases.insert(4, Case("bulyan", "fedrobust", f"bulyan(c={c})", lambda: aggregators.bulyan(U, c)))
    return cases


def alternative_cases(U: np.ndarray, c: int, beta: int) -> List[Case]:
    """The numpy and torch ways to compute each rule (torch ones only if torch is installed)."""
    mask = first_rows_mask(U.shape[0], c)
    cases = [
        Case("mean", "numpy", "U.mean(axis=0)", lambda: U.mean(axis=0)),
        Case("median", "numpy", "np.median(axis=0)", lambda: np.median(U, axis=0)),
        Case("trimmed_mean", "numpy", "np.partition + mean", lambda: numpy_trimmed_mean(U, beta)),
        Case("krum", "numpy", "Gram (inexact) + partition", lambda: numpy_krum(U, c)),
        Case("pairwise_distances", "numpy", "Gram matrix", lambda: numpy_pairwise_sq(U)),
        Case("coordinate_stats", "numpy", "U[mask] mean/std/min/max",
             lambda: numpy_coordinate_stats(U, mask)),
    ]
    torch = import_torch()
    if torch is not None:
        T = torch.from_numpy(U)
        cases += [
            Case("mean", "torch", "T.mean(0)", lambda: T.mean(0)),
            Case("median", "torch", "torch.median(dim=0)", lambda: torch.median(T, dim=0)),
            Case("trimmed_mean", "torch", "torch.sort + mean", lambda: torch_trimmed_mean(T, beta)),
            Case("krum", "torch", "cdist (Gram, inexact) + topk", lambda: torch_krum(T, c)),
            Case("pairwise_distances", "torch", "cdist ** 2", lambda: torch_pairwise_sq(T)),
            Case("coordinate_stats", "torch", "T[mask] std_mean/amin/amax",
                 lambda: torch_coordinate_stats(T, mask)),
        ]
    return cases


def all_cases(U: np.ndarray, c: int, beta: int, bulyan: bool) -> List[Case]:
    """fedrobust, numpy and torch cases, ordered as in RULE_IMPLS."""
    cases = fedrobust_cases(U, c, beta, bulyan) + alternative_cases(U, c, beta)
    order = {(r, i): k for k, (r, i) in enumerate((r, i) for r in RULE_IMPLS for i in RULE_IMPLS[r])}
    return sorted(cases, key=lambda case: order[(case.rule, case.impl)])


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------
def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best (minimum) wall time in seconds of `repeats` calls of fn, after one warm-up call.

    Each result is dropped before the next call, so calls do not pile up memory.
    """
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        del out
    return best


# ---------------------------------------------------------------------------
# Peak extra memory, in a fresh process
# ---------------------------------------------------------------------------
def _proc_status_mib(field: str) -> Optional[float]:
    """A kB field of /proc/self/status (Linux) in MiB, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def _peak_rss_mib() -> Tuple[float, str]:
    """Peak resident set size of this process so far, and where it was read.

    Linux: VmHWM, the peak of this process's own address space. ru_maxrss is not used there
    because the kernel carries the parent's peak across fork + exec into the child's ru_maxrss,
    so a child of a big parent reads the parent's peak. Elsewhere: ru_maxrss (bytes on macOS).
    """
    hwm = _proc_status_mib("VmHWM")
    if hwm is not None:
        return hwm, "VmHWM"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "ru_maxrss"


def _reset_peak_rss() -> bool:
    """Lower the peak RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _memory_probe(rule: str, m: int, d: int, threads: int, seed: int) -> dict:
    """Run in the fresh process: build U, warm the kernel up on a small copy (thread pool, lazy
    initialisation), lower the peak mark to the current RSS (the warm-up's own (m, m) scratch
    would otherwise hide the call's), then record the peak RSS before and after one call on U."""
    fedrobust.set_num_threads(threads)
    c = beta = byzantine_count(m)
    U = make_updates(m, d, seed)
    small = np.ascontiguousarray(U[:, :256])
    warm = {case.rule: case.fn for case in fedrobust_cases(small, c, beta)}
    warm[rule]()
    fn = {case.rule: case.fn for case in fedrobust_cases(U, c, beta)}[rule]
    del warm
    peak_reset = _reset_peak_rss()
    rss_before = _proc_status_mib("VmRSS")
    before, source = _peak_rss_mib()
    out = fn()
    after, _ = _peak_rss_mib()
    del out
    return {"peak_extra_mib": after - before, "peak_before_mib": before, "rss_before_mib": rss_before,
            "peak_source": source, "peak_reset": peak_reset}


_PROBE_SCRIPT = """
import json, sys
args = json.loads(sys.argv[1])
sys.path[:] = args.pop("sys_path")
import fedrobust
fedrobust.__path__[:] = args.pop("package_path")
from fedrobust.benchmarks import _memory_probe
print(json.dumps(_memory_probe(**args)))
"""


def measure_peak_extra_memory(rule: str, m: int, d: int, threads: int, seed: int = SEED) -> dict:
    """Peak RSS increase (MiB) while the fedrobust kernel `rule` runs once on a fresh (m, d) U.

    A new Python process (same interpreter, same sys.path and fedrobust package as this one, no
    torch) builds U, warms the kernel up on a 256-column copy, resets the peak mark to the
    current RSS where the OS allows it (`peak_reset`), reads its peak RSS (see `_peak_rss_mib`),
    calls the kernel on U and reads the peak again; the difference is the memory the call needed
    beyond what the process already held (U included), output included. The dict also gives
    the resident size just before the call: were it well below the peak before the call (no
    reset), the call could reuse that room unseen.
    """
    args = {
        "rule": rule, "m": m, "d": d, "threads": threads, "seed": seed,
        "sys_path": list(sys.path), "package_path": list(fedrobust.__path__),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE_SCRIPT, json.dumps(args)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe for {rule} on ({m}, {d}) failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# The whole comparison
# ---------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> Optional[float]:
    """1-minute load average (None where unknown): other work on the machine skews the timings."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _cpu_seconds() -> Tuple[Optional[float], float]:
    """CPU-seconds so far: busy time of the whole machine (Linux /proc/stat, else None) and of
    this process with its finished children. Their growth apart tells how much other work ran."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    own = sum(u.ru_utime + u.ru_stime for u in usage)
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None, own
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]  # user nice system irq softirq
    return busy / os.sysconf("SC_CLK_TCK"), own


def _start_clock() -> Tuple[Optional[float], Optional[float], float, float]:
    """Load average, machine and own CPU-seconds, and wall time at the start of a run."""
    busy, own = _cpu_seconds()
    return _load_average(), busy, own, time.perf_counter()


def _machine(info: dict, clock: Tuple[Optional[float], Optional[float], float, float]) -> dict:
    """The "machine" entry of a result: CPU, SIMD level, and how busy the rest of the machine
    was since `clock` (from `_start_clock`)."""
    load_before, busy_before, own_before, t0 = clock
    wall = time.perf_counter() - t0
    busy_after, own_after = _cpu_seconds()
    other = None if busy_before is None else (busy_after - busy_before) - (own_after - own_before)
    return {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
            "simd": info["cpu"]["simd"], "platform": platform.platform(),
            "load_average_before": load_before, "load_average_after": _load_average(),
            "wall_seconds": wall, "other_processes_cpu_seconds": other}


def bench_shape(m: int, d: int, repeats: int, memory: bool, threads: int, seed: int = SEED,
                log: Callable[[str], None] = lambda s: None) -> dict:
    """Time the read-once sums and every case of TABLE_RULES on one seeded (m, d) float32 U."""
    c = beta = byzantine_count(m)
    U = make_updates(m, d, seed)
    read_once = {}
    log("  timing: read-once")
    for case in read_once_cases(U):
        read_once[case.impl] = best_time(case.fn, repeats)
    reference = min(read_once.values())

    rows = []
    for case in all_cases(U, c, beta, bulyan=True):
        if case.rule not in TABLE_RULES:
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
    """On each fedrobust row: the fastest numpy/torch row of the same rule and its time / ours."""
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
    info = fedrobust.backend_info()
    clock = _start_clock()
    results = []
    for m, d in shapes:
        log(f"U ({m}, {d}) float32")
        results.append(bench_shape(m, d, repeats, memory, threads, seed, log))
    return {
        "settings": {"quick": quick, "repeats": repeats, "warmup": 1, "threads": threads,
                     "memory": memory, "seed": seed},
        "machine": _machine(info, clock),
        "backend_info": info,
        "shapes": results,
    }


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def _fmt_load(load: Optional[float]) -> str:
    return "unknown" if load is None else f"{load:.2f}"


def _format_machine_load(mach: dict) -> str:
    """How busy the rest of the machine was during the run (other work skews the timings)."""
    load = (f"load average (1 min) {_fmt_load(mach['load_average_before'])} before, "
            f"{_fmt_load(mach['load_average_after'])} after")
    other = mach["other_processes_cpu_seconds"]
    if other is None:
        return f"machine load: {load}"
    share = max(other, 0.0) / (mach["wall_seconds"] * (mach["logical_cpus"] or 1))
    return (f"machine load: other processes used {max(other, 0.0):.1f} CPU-s during the "
            f"{mach['wall_seconds']:.0f} s run ({share:.0%} of the CPUs); {load}")


def _fmt_seconds(s: float) -> str:
    return f"{s:.4f}" if s < 10 else f"{s:.2f}"


def format_report(result: dict) -> str:
    """Plain-text tables, one block per shape."""
    st, mach, info = result["settings"], result["machine"], result["backend_info"]
    lines = [
        "fedrobust benchmark: aggregation rules vs numpy and torch",
        f"CPU: {mach['cpu_model']} ({mach['logical_cpus']} logical CPUs), SIMD {mach['simd']}",
        f"threads: {st['threads']} (fedrobust and torch); numpy runs single-threaded except BLAS (U @ U.T)",
        _format_machine_load(mach),
        f"versions: fedrobust {info['version']}, numpy {info['numpy']}, torch {info.get('torch') or 'not installed'}",
        (f"timing: best of {st['repeats']} calls after {st['warmup']} warm-up; "
         "'x read' = seconds / read-once time;"),
        "'speedup' = time of the fastest numpy/torch row of the rule / fedrobust's time (< 1: fedrobust is slower)",
    ]
    for shape in result["shapes"]:
        lines += [""] + _format_shape(shape, st)
    return "\n".join(lines)


def _format_shape(shape: dict, settings: dict) -> List[str]:
    ro = shape["read_once"]["seconds"]
    read = ", ".join(f"{impl} {_fmt_seconds(s)} s" for impl, s in ro.items())
    lines = [
        (f"== U: ({shape['m']}, {shape['d']}) {shape['dtype']}, {shape['u_mib']:.1f} MiB; "
         f"c = {shape['c']}, beta = {shape['beta']}, seed {shape['seed']} =="),
        f"read-once (column sum): {read} -> reference {_fmt_seconds(shape['read_once']['best'])} s",
    ]
    memory = settings["memory"]
    header = f"{'rule':<17}{'impl':<10}{'how':<32}{'seconds':>9}{'x read':>8}{'speedup':>9}"
    if memory:
        header += f"{'peak extra MiB':>16}"
    lines += [header, "-" * len(header)]
    previous = None
    for row in shape["rows"]:
        rule = row["rule"] if row["rule"] != previous else ""
        previous = row["rule"]
        speedup = f"{row['speedup']:.1f}x" if "speedup" in row else ""
        line = (f"{rule:<17}{row['impl']:<10}{row['label']:<32}{_fmt_seconds(row['seconds']):>9}"
                f"{row['x_read_once']:>8.1f}{speedup:>9}")
        if memory and "peak_extra_mib" in row:
            line += f"{row['peak_extra_mib']:>16.1f}"
        lines.append(line.rstrip())
    if memory:
        lines.append(f"peak extra MiB: growth of the peak RSS across one call, in a fresh process "
                     f"holding U; one copy of U is {shape['u_mib']:.1f} MiB")
    return lines


def write_json(result: dict, path: str) -> None:
    """All numbers, settings and backend info as indented JSON."""
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------
# Attacks: the cost of crafting an attack against one aggregation (`fedrobust bench --attacks`)
# ---------------------------------------------------------------------------
ATTACK_SHAPE: Tuple[int, int] = (100, 1_000_000)
ATTACK_QUICK_SHAPE: Tuple[int, int] = (100, 50_000)
ATTACK_REPEATS = 5
# (attack, knowledge, rule): the attack crafted against `rule` (the rule the attacker assumes),
# timed against one aggregation of the same U with that rule. The order is the order of the table.
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


def make_attack_inputs(m: int, d: int, seed: int = SEED) -> Tuple[np.ndarray, np.ndarray]:
    """Realistic updates and global model, float32: U = 0.01 N(0, 1) per entry plus a common
    drift 0.001 N(0, 1) per coordinate (C-contiguous (m, d)); w = 0.1 N(0, 1), shape (d,).
    Generated directly in float32 (no float64 copy of U)."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((m, d), dtype=np.float32)
    U *= np.float32(0.01)
    U += np.float32(0.001) * rng.standard_normal(d, dtype=np.float32)
    w = np.float32(0.1) * rng.standard_normal(d, dtype=np.float32)
    return U, w


def attack_rule_params(rule: str, c: int, beta: int) -> Dict[str, Any]:
    """The parameters the attacker assumes for `rule` (and the timed aggregation uses)."""
    return {"krum": {"c": c, "squared": True}, "trimmed_mean": {"beta": beta}}.get(rule, {})


def attack_cases(U: np.ndarray, w: np.ndarray, c: int, beta: int, seed: int = 1) -> List[AttackCase]:
    """The ATTACK_CASES over U: rows 0..c-1 compromised, round 0, lr 0.1, the attacks' default
    options with Krum on squared distances, measure=False."""
    from fedrobust.attacks import ATTACKS, AttackContext, AttackOptions

    compromised = np.arange(c)
    cases = []
    for attack, knowledge, rule in ATTACK_CASES:
        params = attack_rule_params(rule, c, beta)
        ctx = AttackContext(updates=U, compromised=compromised, global_model=w, rule=rule, rule_params=params,
                            knowledge=knowledge, rng=np.random.default_rng(0), round=0, seed=seed, lr=0.1,
                            options=AttackOptions(krum_squared=True), measure=False)
        fn = ATTACKS[attack]
        cases.append(AttackCase(attack, knowledge, rule, params,
                                craft=lambda fn=fn, ctx=ctx: fn(ctx),
                                aggregate=_bound_rule(rule, params, U),
                                context=ctx))
    return cases


def _bound_rule(rule: str, params: Dict[str, Any], U: np.ndarray) -> Callable[[], Any]:
    agg = aggregators.get(rule, **params)
    return lambda: agg(U)


def best_times_interleaved(fns: Sequence[Callable[[], Any]], repeats: int) -> List[float]:
    """Best (minimum) wall time in seconds of each fn over `repeats` rounds, after one warm-up
    call each; a round calls every fn once, in turn, so that slow phases of a busy machine fall
    on all of them alike and their ratios stay fair. Results are dropped before the next call."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            out = fn()
            best[k] = min(best[k], time.perf_counter() - t0)
            del out
    return best


def _jsonable(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """ctx.metrics with numpy scalars turned into Python ones."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metrics.items()}


def run_attacks(quick: bool = False, repeats: Optional[int] = None, threads: Optional[int] = None,
                seed: int = SEED, shape: Optional[Tuple[int, int]] = None,
                log: Callable[[str], None] = lambda s: None) -> dict:
    """Time crafting each attack of ATTACK_CASES against one aggregation of the same U with the
    rule it targets, in this process; returns a JSON-ready dict.

    U and w come from `make_attack_inputs` (ATTACK_SHAPE, or ATTACK_QUICK_SHAPE with quick=True);
    c = beta = m // 5. Each case times its attack and its aggregation interleaved, best of
    `repeats` (default ATTACK_REPEATS) after one warm-up call each; ratio = attack / aggregation.
    The read-once time (fastest column sum) is given for scale.
    """
    m, d = shape if shape is not None else (ATTACK_QUICK_SHAPE if quick else ATTACK_SHAPE)
    if repeats is None:
        repeats = ATTACK_REPEATS
    if threads is None:
        threads = fedrobust.backend_info()["cpu"]["threads"]
    set_threads(threads)
    info = fedrobust.backend_info()
    clock = _start_clock()
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
        "machine": _machine(info, clock),
        "backend_info": info,
        "m": m, "d": d, "dtype": "float32", "c": c, "beta": beta, "u_mib": m * d * 4 / 2**20,
        "read_once": {"seconds": read_once, "best": min(read_once.values())},
        "rows": rows,
    }


def format_attack_report(result: dict) -> str:
    """The plain-text table of `run_attacks`: one row per case."""
    st, mach, info = result["settings"], result["machine"], result["backend_info"]
    lines = [
        "fedrobust benchmark: crafting an attack vs one aggregation with the rule it targets",
        (f"CPU: {mach['cpu_model']} ({mach['logical_cpus']} logical CPUs), SIMD {mach['simd']}; "
         f"threads: {st['threads']}"),
        _format_machine_load(mach),
        f"versions: fedrobust {info['version']}, numpy {info['numpy']}",
        (f"U: ({result['m']}, {result['d']}) {result['dtype']}, {result['u_mib']:.1f} MiB, 0.01 N(0,1) + common "
         f"drift; c = beta = {result['c']} (rows 0..{result['c'] - 1} compromised), seed {st['seed']}"),
        (f"timing: attack and aggregation interleaved, best of {st['repeats']} calls each after "
         f"{st['warmup']} warm-up; attacks with measure=False; read-once (column sum) "
         f"{_fmt_seconds(result['read_once']['best'])} s"),
        "ratio = attack seconds / aggregation seconds",
        "",
    ]
    header = f"{'case':<30}{'attack s':>10}{'aggregation s':>15}{'ratio':>8}"
    lines += [header, "-" * len(header)]
    for row in result["rows"]:
        lines.append(f"{row['case']:<30}{_fmt_seconds(row['attack_seconds']):>10}"
                     f"{_fmt_seconds(row['aggregation_seconds']):>15}{row['ratio']:>8.2f}")
    return "\n".join(lines)
