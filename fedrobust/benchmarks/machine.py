"""The machine a benchmark runs on: CPU model, threads, and how busy the rest of the machine was.

Other work on the machine skews timings; `start_clock` and `machine_entry` record the load
average and the CPU-seconds the other processes used during a run, so a report can say so.
"""
from __future__ import annotations

import os
import platform
import resource
import time
from typing import Any, Optional, Tuple

from fedrobust._native import set_threads  # noqa: F401 (the benchmarks' import)

# (load average, machine busy CPU-seconds, own CPU-seconds, wall time) at the start of a run.
Clock = Tuple[Optional[float], Optional[float], float, float]


def import_torch() -> Optional[Any]:
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


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


def start_clock() -> Clock:
    """Load average, machine and own CPU-seconds, and wall time at the start of a run."""
    busy, own = _cpu_seconds()
    return _load_average(), busy, own, time.perf_counter()


def machine_entry(info: dict, clock: Clock) -> dict:
    """The "machine" entry of a result: CPU, SIMD level (from `info`, fedrobust.backend_info()),
    and how busy the rest of the machine was since `clock` (from `start_clock`)."""
    load_before, busy_before, own_before, t0 = clock
    wall = time.perf_counter() - t0
    busy_after, own_after = _cpu_seconds()
    other = None if busy_before is None else (busy_after - busy_before) - (own_after - own_before)
    return {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
            "simd": info["cpu"]["simd"], "platform": platform.platform(),
            "load_average_before": load_before, "load_average_after": _load_average(),
            "wall_seconds": wall, "other_processes_cpu_seconds": other}
