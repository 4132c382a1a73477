"""Aggregation of a model split over its parameters: U (m, d) held as column shards.

A model too wide for one machine is held as shards U_1 .. U_K, the column blocks of U
(U = [U_1 | U_2 | ... | U_K], U_k of shape (m, d_k), the same m rows in every shard). Each
shard may live on another machine; `map` runs a per-shard function where the shard lives
(the builtin `map` runs them here, one after another).

    outs, chosen = sharded.aggregate(shards, "krum", c=20)       # outs[k]: (d_k,)
    aggregate = np.concatenate(outs)                             # == aggregators.krum(U, c=20)

  - mean, median, trimmed mean: coordinate-wise, so each shard's aggregate is the rule on the
    shard, with no communication: the same bits as the unsharded rule.
  - Krum, Bulyan: each shard sends its (m, m) float64 partial squared distances
    D_k[i, j] = ||U_k,i - U_k,j||^2 (m^2 numbers, independent of d); they are summed in shard
    order, D = ((D_1 + D_2) + ...) + D_K, the selection is made once from D, and the
    selected rows (only their indices travel) are aggregated per shard: Krum's row or
    Multi-Krum's mean, Bulyan's closest-to-median mean, the unsharded kernels' bits on those
    rows. The distances are sums in another order than the unsharded kernel's (its chunks of
    columns are added one after another), so they can differ from it in the last bits
    (relative differences near K * 2^-53); a selection can then differ only between Krum
    scores equal to about 1e-15 relative. Exact ties (duplicate rows, the attacks' identical
    copies) stay ties and go to the lower index, as unsharded. A NaN or Inf in any shard
    makes the pair's distance +Inf, as unsharded.

The attacks' statistics shard the same way: `coordinate_stats` per shard (coordinate-wise:
exact), `norms_and_dots` and `partial_sq_distances` as sums over shards in shard order.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from fedrobust import aggregators, dispatch
from fedrobust.params import as_count
from fedrobust.stats import CoordinateStats
from fedrobust.stats import coordinate_stats as _coordinate_stats

Map = Callable[..., Iterable[Any]]  # map(function, shards) -> one result per shard, in shard order


def split(U: Any, shards: int) -> List[Any]:
    """U (m, d) as `shards` column blocks U[:, a_k:a_(k+1)] (views, not copies), of widths
    differing by at most one; 1 <= shards <= d."""
    shards = as_count(shards, "shards")
    d = U.shape[1] if len(getattr(U, "shape", ())) == 2 else None
    if d is None:
        raise ValueError(f"split needs an (m, d) array, got {type(U).__name__} of shape "
                         f"{getattr(U, 'shape', None)}")
    if not 1 <= shards <= d:
        raise ValueError(f"shards must be in [1, d = {d}], got {shards}")
    bounds = [d * k // shards for k in range(shards + 1)]
    return [U[:, bounds[k]:bounds[k + 1]] for k in range(shards)]


def partial_sq_distances(shard: Any) -> np.ndarray:
    """(m, m) host float64 squared distances between the rows of one shard (exact kernel,
    0 on the diagonal, +Inf for a pair with a NaN or Inf)."""
    A, backend, _ = dispatch.matrix(shard, "shard")
    return backend.sq_distances(A)


def sum_partials(partials: Sequence[np.ndarray]) -> np.ndarray:
    """The shards' (m, m) partial matrices summed in shard order: ((P_1 + P_2) + ...) + P_K."""
    total = np.array(partials[0], dtype=np.float64, copy=True)
    for p in partials[1:]:
        total += p
    return total


def select(rule: str, sq_distances: np.ndarray, **params: Any) -> Optional[np.ndarray]:
    """The rows a row-selecting rule keeps, from the (m, m) float64 squared distances of all
    shards: Krum's `multi` rows ascending by score (ties to the lower index), Bulyan's
    m - 2c rows in selection order; None for the coordinate-wise rules."""
    entry = aggregators.rule(rule)
    if not entry.selects_rows:
        return None
    m = sq_distances.shape[0]
    params = {**entry.defaults(), **params}
    entry.check_fits(m, **params)
    if entry.name == "krum":
        scores = dispatch.CPU.krum_scores_from_distances(sq_distances, params["c"], params["squared"])
        return np.argsort(scores, kind="stable")[: params["multi"]].astype(np.int64)
    return np.asarray(dispatch.CPU.bulyan_select_from_distances(sq_distances, params["c"], params["squared"]),
                      dtype=np.int64)


def aggregate_shard(shard: Any, rule: str, chosen: Optional[np.ndarray] = None, **params: Any) -> Any:
    """One shard's (d_k,) aggregate, in the shard's type: the coordinate-wise rule on the shard,
    or for Krum / Bulyan the rule's second stage on the rows `chosen` (from `select`)."""
    entry = aggregators.rule(rule)
    if not entry.selects_rows:
        return entry.bind(**params)(shard)
    if chosen is None:
        raise ValueError(f"rule {rule!r} selects rows: pass the rows `select` chose")
    params = {**entry.defaults(), **params}
    A, backend, wrap = dispatch.matrix(shard, "shard")
    rows = [int(i) for i in chosen]
    if entry.name == "krum":
        if params["multi"] == 1:
            return wrap(backend.lib.copy(A[rows[0]]))
        out = backend.mean(A, rows)
        aggregators.refuse_overflow(A, backend, out, "Multi-Krum's mean")
        return wrap(out)
    out = backend.closest_to_median_mean(A, A.shape[0] - 4 * params["c"], rows)  # gamma = theta - 2c
    aggregators.refuse_overflow(A, backend, out, "Bulyan's mean")
    return wrap(out)


def aggregate(shards: Sequence[Any], rule: str, map: Map = map,
              **params: Any) -> Tuple[List[Any], Optional[np.ndarray]]:
    """(each shard's (d_k,) aggregate in shard order, the selected rows or None): the rule on
    U = [U_1 | ... | U_K] computed shard by shard (see the module docstring). `map(f,
    shards)` runs f on every shard, in shard order (a process pool's or Ray's map runs them
    where they are)."""
    shards = list(shards)
    entry = aggregators.rule(rule)
    m = _check_shards(shards)
    entry.check_fits(m, **params)
    if not entry.selects_rows:
        return list(map(lambda s: aggregate_shard(s, rule, **params), shards)), None
    chosen = select(rule, sum_partials(list(map(partial_sq_distances, shards))), **params)
    return list(map(lambda s: aggregate_shard(s, rule, chosen, **params), shards)), chosen


def coordinate_stats(shards: Sequence[Any], rows: Optional[Any] = None, map: Map = map) -> List[CoordinateStats]:
    """Each shard's (mean, std, min, max) over `rows` (`fedrobust.stats.coordinate_stats`), in
    shard order: concatenated, the unsharded statistics, bit for bit."""
    _check_shards(list(shards))
    return list(map(lambda s: _coordinate_stats(s, rows), shards))


def norms_and_dots(shards: Sequence[Any], directions: Sequence[Any], map: Map = map) -> Tuple[np.ndarray, np.ndarray]:
    """(||u_i||^2, <u_i, s>), each (m,) float64, summed over the shards in shard order; shard k
    takes its part s_k (d_k,) of the direction s (the Krum attack's statistics)."""
    shards = list(shards)
    _check_shards(shards)
    if len(directions) != len(shards):
        raise ValueError(f"norms_and_dots needs one direction part per shard: {len(shards)} shards, "
                         f"{len(directions)} parts")

    def part(pair: Tuple[Any, Any]) -> Tuple[np.ndarray, np.ndarray]:
        A, backend, _ = dispatch.matrix(pair[0], "shard")
        return backend.norms_and_dots(A, pair[1])

    parts = list(map(part, zip(shards, directions)))
    return sum_partials([p[0] for p in parts]), sum_partials([p[1] for p in parts])


def _check_shards(shards: List[Any]) -> int:
    """m, the row count every shard shares; ValueError for no shards or differing row counts."""
    if not shards:
        raise ValueError("expected at least one shard (an (m, d_k) array)")
    rows = [s.shape[0] if len(getattr(s, "shape", ())) == 2 else None for s in shards]
    if None in rows:
        k = rows.index(None)
        raise ValueError(f"shard {k}: expected an (m, d_k) array, got {type(shards[k]).__name__} of shape "
                         f"{getattr(shards[k], 'shape', None)}")
    if len(set(rows)) > 1:
        raise ValueError(f"every shard must hold the same m rows; got row counts {rows}")
    return rows[0]
