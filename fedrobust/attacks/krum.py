"""Fang et al.'s attack on Krum (SPEC section 5), full and partial knowledge.

The crafted update is -lambda s (the model w_Re - lambda s); the other c - 1 compromised
workers send supporters within epsilon of it. lambda is the largest value in the halving
sequence lambda_0, lambda_0 / 2, ... (down to the threshold 1e-5) for which a simulated
Krum picks the crafted model.

The search never re-runs Krum over d. One pass gives, for every model u_i of the pool,
||u_i||^2 and <u_i, s> (native norms_and_dots, on the CPU or the updates' CUDA device), and
the pool's own distances come from the distance kernel, both as host float64 arrays; then
the crafted model's squared distance to u_i is the quadratic

    ||u_i + lambda s||^2 = ||u_i||^2 + 2 lambda <u_i, s> + lambda^2 ||s||^2,

and one probe costs O(n^2) scalar work for a pool of n models (`KrumPool.crafted_wins`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Tuple

import numpy as np

from fedrobust import dispatch
from fedrobust.attacks import direction
from fedrobust.attacks.context import AttackContext, on_any_array


@dataclasses.dataclass
class KrumPool:
    """The models a simulated Krum sees besides the crafted copies.

    sorted_dist: (n, n-1) each model's distances (Krum's units) to the other models, ascending.
    prefix:      (n, n) prefix sums of sorted_dist, prefix[:, 0] = 0.
    sq_norms, dots: (n,) ||u_i||^2 and <u_i, s>; ss = ||s||^2.
    positions:   (n,) the models' row positions in the aggregated array (for Krum's ties).
    squared:     Krum scores with squared distances (else plain).
    """

    sorted_dist: np.ndarray
    prefix: np.ndarray
    sq_norms: np.ndarray
    dots: np.ndarray
    ss: float
    positions: np.ndarray
    squared: bool

    @classmethod
    def build(cls, sq_dist: np.ndarray, sq_norms: np.ndarray, dots: np.ndarray, ss: float,
              positions: np.ndarray, squared: bool) -> KrumPool:
        """sq_dist: (n, n) squared distances between the models."""
        n = sq_dist.shape[0]
        dist = np.asarray(sq_dist, dtype=np.float64) if squared else np.sqrt(np.asarray(sq_dist, dtype=np.float64))
        off_diagonal = ~np.eye(n, dtype=bool)
        sorted_dist = np.sort(dist[off_diagonal].reshape(n, n - 1), axis=1)
        prefix = np.zeros((n, n))
        np.cumsum(sorted_dist, axis=1, out=prefix[:, 1:])
        return cls(sorted_dist, prefix, np.asarray(sq_norms, np.float64), np.asarray(dots, np.float64),
                   float(ss), np.asarray(positions), squared)

    def crafted_sq_distances(self, lam: float) -> np.ndarray:
        """(n,) ||u_i - (-lam s)||^2 from the quadratic; NaN (a non-finite model) becomes +Inf."""
        q = self.sq_norms + 2.0 * lam * self.dots + lam * lam * self.ss
        return np.nan_to_num(np.maximum(q, 0.0), nan=np.inf)

    def crafted_wins(self, lam: float, copies: int, neighbours: int, crafted_position: int) -> bool:
        """Does Krum (each score = sum of the `neighbours` smallest distances to the other rows)
        over `copies` identical crafted rows plus the pool pick a crafted row? Ties go to the
        lowest row position; the first crafted row sits at `crafted_position`."""
        q = self.crafted_sq_distances(lam)
        v = q if self.squared else np.sqrt(q)
        k = neighbours
        # A crafted row: copies - 1 zeros, then the smallest distances to the pool.
        from_pool = max(k - (copies - 1), 0)
        crafted_score = np.sort(v)[:from_pool].sum() if from_pool else 0.0
        # Pool model i: its k smallest among its sorted distances merged with `copies` values v_i.
        rows = np.arange(v.size)
        t = (self.sorted_dist < v[:, None]).sum(axis=1)
        scores = self.prefix[rows, np.minimum(t, k)] + np.clip(k - t, 0, copies) * v
        beyond = k - t - copies > 0
        if beyond.any():
            scores[beyond] += self.prefix[rows[beyond], k - copies] - self.prefix[rows[beyond], t[beyond]]
        scores[np.isnan(scores)] = np.inf
        best = scores.min()
        if crafted_score != best:
            return bool(crafted_score < best)
        return crafted_position < self.positions[scores == best].min()

    def theorem1_bound(self, neighbours: int, denominator: int) -> float:
        """lambda_0 of Theorem 1 (SPEC 5.1 item 4), with plain distances:
        min_i (sum of model i's `neighbours` nearest distances) / (denominator ||s||)
        + max_i ||u_i|| / ||s||; full knowledge: denominator m - 2c - 1; partial (SPEC 5.2):
        c - k - 1."""
        plain = self.sorted_dist if not self.squared else np.sqrt(self.sorted_dist)
        nearest = plain[:, :neighbours].sum(axis=1).min()
        norm_s = np.sqrt(self.ss)
        finite = self.sq_norms[np.isfinite(self.sq_norms)]  # Krum never picks a non-finite model
        largest = np.sqrt(finite.max()) if finite.size else np.inf
        return float(nearest / (denominator * norm_s) + largest / norm_s)


def halving_search(wins: Callable[[float], bool], lam0: float, threshold: float) -> Tuple[float, bool, int]:
    """Probe lam0, lam0/2, ... while lambda >= threshold (lam0 is always probed).
    Returns (the winning lambda or the last one probed, found, number of probes); a start that
    is not finite (no finite model to bound it) is not searched: (0.0, False, 0)."""
    if not np.isfinite(lam0):
        return 0.0, False, 0
    lam, probes = lam0, 0
    while True:
        probes += 1
        if wins(lam):
            return lam, True, probes
        if lam / 2 < threshold:
            return lam, False, probes
        lam /= 2


def _wins_at(pool: KrumPool, copies: int, neighbours: int, crafted_position: int, lam: float) -> bool:
    return pool.crafted_wins(lam, copies, neighbours, crafted_position)


def krum_choice(sq_dist: np.ndarray, c: int, squared: bool) -> int:
    """The row Krum selects given the (m, m) float64 squared distances: the smallest score
    (the native Krum scoring, csrc/cpu/krum.cpp), ties to the lowest index."""
    return int(np.argmin(dispatch.CPU.krum_scores_from_distances(sq_dist, c, squared)))


def _full_direction_and_distances(ctx: AttackContext) -> Tuple[Any, np.ndarray]:
    """s (d,) int8 on the updates' device and the benign models' (m - c, m - c) squared
    distances (host float64). When s comes from Krum's own before-attack choice, one distance
    matrix over all m rows serves both."""
    U, benign, backend = ctx.updates, ctx.benign(), ctx.backend
    if ctx.options.goal == "directed" and ctx.options.direction == "rule" and ctx.rule == "krum":
        sq = backend.sq_distances(U)
        chosen = krum_choice(sq, ctx.rule_params["c"], ctx.rule_params.get("squared", True))
        return backend.signs(U[chosen]), sq[np.ix_(benign, benign)]
    s = backend.ones(U) if ctx.options.goal == "deviation" else direction.full_knowledge(ctx)
    return s, backend.sq_distances(U, benign.tolist())


def _search_full(ctx: AttackContext, s: Any, ss: float, sq: np.ndarray) -> Tuple[float, bool, int, float]:
    """SPEC 5.1: c crafted copies against the m - c benign models (squared distances sq),
    Krum with parameter c."""
    U, c = ctx.updates, ctx.c
    m = U.shape[0]
    benign = ctx.benign()
    norms, dots = ctx.backend.norms_and_dots(U, s, benign.tolist())
    pool = KrumPool.build(sq, norms, dots, ss, benign, ctx.options.krum_squared)
    neighbours = m - c - 2
    lam0 = pool.theorem1_bound(neighbours, m - 2 * c - 1)
    first = int(ctx.compromised.min())
    lam, found, probes = halving_search(lambda lam: pool.crafted_wins(lam, c, neighbours, first),
                                        lam0, ctx.options.threshold)
    return lam, found, probes, lam0


def _search_partial(ctx: AttackContext, s: Any, ss: float) -> Tuple[float, bool, int, float, int]:
    """SPEC 5.2 and 13.7: k = 1, 2, ..., c crafted copies (rows 0..k-1) against the c
    before-attack compromised models (rows k..k+c-1), Krum with parameter k (c - 2
    neighbours); lambda_0 is the bound of SPEC 5.2 while k < c - 1, else lr (1.0 in update
    units of a gradient step)."""
    U, c = ctx.updates, ctx.c
    rows = ctx.compromised.tolist()
    sq = ctx.backend.sq_distances(U, rows)
    norms, dots = ctx.backend.norms_and_dots(U, s, rows)
    neighbours = c - 2
    total_probes = 0
    models = KrumPool.build(sq, norms, dots, ss, np.arange(c), ctx.options.krum_squared)
    for k in range(1, c + 1):
        pool = dataclasses.replace(models, positions=np.arange(k, k + c))
        lam0 = pool.theorem1_bound(neighbours, c - k - 1) if k < c - 1 else float(ctx.lr)
        lam, found, probes = halving_search(functools.partial(_wins_at, pool, k, neighbours, 0),
                                            lam0, ctx.options.threshold)
        total_probes += probes
        if found:
            break
    return lam, found, total_probes, lam0, k


@on_any_array
def krum_attack(ctx: AttackContext) -> Any:
    """The (c, d) sent updates of the Krum attack, of the updates' kind, dtype and device;
    fills ctx.metrics with lambda, lambda_start, found, probes (and copies for partial
    knowledge; direction_agreement when measuring). The passes over d run on the updates'
    backend (the same crafted bits on every backend); the lambda search runs on the host."""
    U, backend = ctx.updates, ctx.backend
    if ctx.knowledge == "full":
        s, sq = _full_direction_and_distances(ctx)
    elif ctx.options.goal == "deviation":  # Appendix B: w'_1 = w_Re - lambda * 1
        s = backend.ones(U)
    else:
        s = direction.partial_knowledge(ctx)
    ss = float(int((s != 0).sum()))
    if ss == 0:  # nothing moves: -lambda s is the update 0 whatever lambda
        lam, found, probes, lam0, copies = 0.0, False, 0, 0.0, ctx.c
    elif ctx.knowledge == "full":
        lam, found, probes, lam0 = _search_full(ctx, s, ss, sq)
        copies = ctx.c
    else:
        lam, found, probes, lam0, copies = _search_partial(ctx, s, ss)
    ctx.metrics.update({"lambda": lam, "lambda_start": lam0, "found": found, "probes": probes})
    if ctx.knowledge == "partial":
        ctx.metrics["copies"] = copies
        if ctx.measure and ctx.options.goal == "directed":
            ctx.metrics["direction_agreement"] = direction.agreement(ctx, s, direction.full_knowledge(ctx))
    if not found and ctx.options.on_failure == "benign":
        ctx.metrics["sent"] = "benign"
        return U[ctx.compromised.tolist()]
    return backend.krum_craft(U, s, lam, ctx.options.epsilon, ctx.seed, ctx.round, ctx.compromised_ids())
