"""The numpy and torch versions of each rule: what a user would write without fedrobust.

These are the only baselines of the benchmarks: ``fedrobust bench``, the pytest-benchmark
suites and bench/gpu_bench.py all time these. The torch versions take a float tensor on any
device (CPU or CUDA) and compute on that device; numpy's arguments are numpy arrays. torch is
imported by the torch versions only. The Flower versions call Flower's own aggregation
functions (flwr.server.strategy.aggregate, when Flower is installed) on U as one layer per
client, as a Flower server would; byzfl's are its aggregators (byzfl.aggregators, when
byzfl is installed), called on a torch tensor as its training framework calls them.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any, Optional, Tuple

import numpy as np


# ---------------------------------------------------------------------------
# numpy
# ---------------------------------------------------------------------------
def numpy_mean(U: np.ndarray) -> np.ndarray:
    """The column means, U.mean(axis=0)."""
    return U.mean(axis=0)


def numpy_median(U: np.ndarray) -> np.ndarray:
    """The column medians, np.median(U, axis=0) (the mean of the two middle values for even m)."""
    return np.median(U, axis=0)


def numpy_trimmed_mean(U: np.ndarray, beta: int) -> np.ndarray:
    """Partition each column at ranks beta and m - beta - 1, then average the rows between them."""
    m = U.shape[0]
    P = np.partition(U, [beta, m - beta - 1], axis=0)
    return P[beta:m - beta].mean(axis=0)


def numpy_sort_median(U: np.ndarray) -> np.ndarray:
    """Sort every column (np.sort(U, axis=0), the fastest numpy way here), then the middle
    value, or the mean of the two middle values for even m."""
    m = U.shape[0]
    S = np.sort(U, axis=0)
    if m % 2:
        return S[m // 2]
    return S[m // 2 - 1] / 2 + S[m // 2] / 2


def numpy_sort_trimmed_mean(U: np.ndarray, beta: int) -> np.ndarray:
    """Sort every column, then average the rows ranked beta .. m - beta - 1."""
    m = U.shape[0]
    return np.sort(U, axis=0)[beta:m - beta].mean(axis=0)


def numpy_pairwise_sq(U: np.ndarray) -> np.ndarray:
    """Squared distances from the Gram matrix, |u|^2 + |v|^2 - 2 u.v (fast, loses digits for close rows)."""
    G = U @ U.T
    n = np.diag(G)
    return np.maximum(n[:, None] + n[None, :] - 2 * G, 0)


def numpy_krum_index(U: np.ndarray, c: int) -> int:
    """Krum's choice from `numpy_pairwise_sq`: the row with the least sum of its m - c - 2
    smallest distances to other rows."""
    m = U.shape[0]
    D = numpy_pairwise_sq(U)
    np.fill_diagonal(D, np.inf)
    k = m - c - 2
    scores = np.partition(D, k - 1, axis=1)[:, :k].sum(axis=1)
    return int(np.argmin(scores))


def numpy_krum(U: np.ndarray, c: int) -> np.ndarray:
    """The row `numpy_krum_index` chooses."""
    return U[numpy_krum_index(U, c)]


def numpy_coordinate_stats(U: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Mean, population std, min, max of every column over the masked rows (copies those rows)."""
    S = U[mask]
    return S.mean(axis=0), S.std(axis=0), S.min(axis=0), S.max(axis=0)


# ---------------------------------------------------------------------------
# torch (CPU or CUDA tensors)
# ---------------------------------------------------------------------------
def torch_mean(T: Any) -> Any:
    """The column means, T.mean(0)."""
    return T.mean(0)


def torch_median(T: Any) -> Any:
    """torch.median(T, dim=0): (values, indices), the lower of the two middle values for even m."""
    import torch

    return torch.median(T, dim=0)


def torch_trimmed_mean(T: Any, beta: int) -> Any:
    """Sort each column, then average the middle m - 2 beta rows."""
    import torch

    m = T.shape[0]
    return torch.sort(T, dim=0).values[beta:m - beta].mean(dim=0)


def torch_pairwise_sq(T: Any) -> Any:
    """torch.cdist(T, T) squared (for m > 25 cdist also goes through the Gram matrix)."""
    import torch

    return torch.cdist(T, T) ** 2


def torch_krum_index(T: Any, c: int) -> Any:
    """Krum's choice from `torch_pairwise_sq`, as a 0-d tensor on T's device: topk of the
    m - c - 2 smallest distances per row, self excluded, then the least sum."""
    import torch

    m = T.shape[0]
    D = torch_pairwise_sq(T)
    D.fill_diagonal_(float("inf"))
    scores = torch.topk(D, m - c - 2, dim=1, largest=False).values.sum(dim=1)
    return torch.argmin(scores)


def torch_krum(T: Any, c: int) -> Any:
    """The row `torch_krum_index` chooses."""
    return T[torch_krum_index(T, c)]


def torch_coordinate_stats(T: Any, mask: np.ndarray) -> Tuple[Any, ...]:
    """Same as `numpy_coordinate_stats` with torch.std_mean, amin, amax; mask is a numpy boolean array."""
    import torch

    S = T[torch.as_tensor(mask, device=T.device)]
    std, mean = torch.std_mean(S, dim=0, correction=0)
    return mean, std, torch.amin(S, dim=0), torch.amax(S, dim=0)


# ---------------------------------------------------------------------------
# Flower's aggregation functions (flwr.server.strategy.aggregate)
# ---------------------------------------------------------------------------
def flower_results(U: np.ndarray) -> list:
    """U as Flower's fit results: one ([row], 1) per client (a view of each row, no copy)."""
    return [([U[i]], 1) for i in range(U.shape[0])]


def flower_median(results: list) -> np.ndarray:
    """Flower's aggregate_median (np.median over each layer)."""
    from flwr.server.strategy.aggregate import aggregate_median

    return aggregate_median(results)[0]


def flower_trimmed_mean(results: list, beta: int) -> np.ndarray:
    """Flower's aggregate_trimmed_avg with proportiontocut = (beta + 0.5) / m, so that the
    int(proportiontocut * m) values it cuts at each end are beta (np.partition)."""
    from flwr.server.strategy.aggregate import aggregate_trimmed_avg

    m = len(results)
    return aggregate_trimmed_avg(results, (beta + 0.5) / m)[0]


def flower_krum(results: list, c: int) -> np.ndarray:
    """Flower's aggregate_krum (squared distances from np.linalg.norm of each pair's
    difference, m^2 of them; the m - c - 2 nearest)."""
    from flwr.server.strategy.aggregate import aggregate_krum

    return aggregate_krum(results, c, 0)[0]


# ---------------------------------------------------------------------------
# byzfl's aggregators (byzfl.aggregators)
# ---------------------------------------------------------------------------
def byzfl_aggregators() -> Optional[Any]:
    """byzfl's aggregators module (Average, Median, TrMean(f), Krum(f), ...), or None where
    byzfl is not installed.

    `import byzfl` also imports byzfl's training framework and benchmark, which need
    torchvision and seaborn; its aggregators need only torch, numpy and scipy. Where the
    package import fails for that (no torchvision, or one built for another torch), the
    aggregators module is loaded under a bare `byzfl` package that runs none of the
    package's own imports, and sys.modules is put back as it was.
    """
    if importlib.util.find_spec("byzfl") is None:
        return None
    try:
        return importlib.import_module("byzfl.aggregators")
    except (ImportError, RuntimeError):
        pass
    saved = {name: module for name, module in sys.modules.items() if name == "byzfl" or name.startswith("byzfl.")}
    for name in saved:
        del sys.modules[name]
    bare = types.ModuleType("byzfl")
    bare.__path__ = list(importlib.util.find_spec("byzfl").submodule_search_locations)
    sys.modules["byzfl"] = bare
    try:
        return importlib.import_module("byzfl.aggregators.aggregators")
    finally:
        for name in [name for name in sys.modules if name == "byzfl" or name.startswith("byzfl.")]:
            del sys.modules[name]
        sys.modules.update(saved)
