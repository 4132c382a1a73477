"""Wall and GPU times of zero-argument callables.

Every function calls fn once untimed first (warm-up: thread pools, lazy initialisation, caches)
and drops each result before the next call, so that calls do not pile up memory.
"""
from __future__ import annotations

import time
from typing import Any, Callable, List, Sequence

import numpy as np


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best (minimum) wall time in seconds of `repeats` calls of fn, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        del out
    return best


def best_times_interleaved(fns: Sequence[Callable[[], Any]], repeats: int) -> List[float]:
    """Best (minimum) wall time in seconds of each fn over `repeats` rounds, after one warm-up
    call each; a round calls every fn once, in turn, so that slow phases of a busy machine fall
    on all of them alike and their ratios stay fair."""
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


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time in seconds of `repeats` calls of fn, after `warmup` warm-up calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def best_time_cuda(fn: Callable[[], Any], repeats: int) -> float:
    """Best (minimum) GPU time in seconds of `repeats` calls of fn, after one warm-up call: the
    time between CUDA events recorded on the current stream before and after each call."""
    import torch

    fn()
    best = float("inf")
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop) / 1e3)
    return best
