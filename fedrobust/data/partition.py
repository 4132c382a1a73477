"""Non-IID split of a training set over workers (SPEC 8.4, 13 item 12)."""
from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np


def group_sizes(num_workers: int, num_groups: int) -> np.ndarray:
    """Workers per group, shape (num_groups,) int64: sizes differ by at most one, the larger first.

    Example: 100 workers, 8 groups -> [13, 13, 13, 13, 12, 12, 12, 12].
    """
    base, extra = divmod(num_workers, num_groups)
    return np.array([base + (g < extra) for g in range(num_groups)], dtype=np.int64)


def partition(
    labels: np.ndarray,
    num_workers: int,
    num_classes: int,
    q: float,
    rng: Union[np.random.Generator, int],
    return_groups: bool = False,
) -> Union[List[np.ndarray], Tuple[List[np.ndarray], np.ndarray]]:
    """Assign training examples to workers with degree of non-IID q (the paper's p).

    labels: shape (n,), integers in [0, num_classes).
    The workers are split into L = num_classes groups whose sizes differ by at most one
    (group g holds workers group_sizes(...)[:g].sum() onwards, before the permutation below).
    Each example with label l goes to group l with probability q, otherwise to one of the
    other L - 1 groups, each with probability (1 - q) / (L - 1); inside its group it goes to a
    uniformly random worker. Finally the worker list is randomly permuted, so the first c
    workers (the compromised ones by convention) come from random groups. q = 1/L is IID.

    rng: a numpy Generator (or an int seed); the same seed gives the same partition.
    Returns a list of num_workers sorted int64 index arrays into `labels` (some may be empty;
    together they hold every example exactly once). With return_groups=True, returns
    (parts, group_of_worker), group_of_worker of shape (num_workers,) int64: worker i's group.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if int(num_workers) < num_classes:
        raise ValueError(
            f"num_workers ({num_workers}) must be >= num_classes ({num_classes}): every group needs a worker"
        )
    if not 0.0 <= q <= 1.0:  # also rejects NaN
        raise ValueError(f"q must be in [0, 1], got {q}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)

    n, L, m = labels.size, int(num_classes), int(num_workers)
    labels = labels.astype(np.int64)
    # Group of each example: its own label with probability q, else a uniformly chosen other one.
    group = labels.copy()
    if L > 1:
        moved = rng.random(n) >= q
        offset = rng.integers(1, L, size=n)  # 1..L-1: never the example's own group
        group[moved] = (labels[moved] + offset[moved]) % L
    # Uniformly random worker inside the group (workers of group g: start[g] .. start[g]+size[g]-1).
    sizes = group_sizes(m, L)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    worker = start[group] + rng.integers(0, sizes[group]) if n else np.zeros(0, np.int64)
    group_of_worker = np.repeat(np.arange(L, dtype=np.int64), sizes)
    # Permute the worker list: new worker i is old worker perm[i].
    perm = rng.permutation(m)
    new_id = np.empty(m, dtype=np.int64)
    new_id[perm] = np.arange(m)
    worker = new_id[worker]
    group_of_worker = group_of_worker[perm]
    # Per-worker index lists; a stable sort keeps each list in increasing index order.
    order = np.argsort(worker, kind="stable")
    counts = np.bincount(worker, minlength=m)
    parts = [p.astype(np.int64) for p in np.split(order, np.cumsum(counts)[:-1])]
    return (parts, group_of_worker) if return_groups else parts
