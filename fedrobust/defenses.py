"""The paper's defenses (Section 5; SPEC 9.5 and 13 item 11): ERR, LFR and Union.

For each of the m updates U_i, the rule's aggregate with all m updates (A) and without U_i
(B_i) move the global model w; the impact of U_i is

    ERR:  impact_i = E(w + A) - E(w + B_i)      E: the error rate on the validation set
    LFR:  impact_i = L(w + A) - L(w + B_i)      L: the mean cross-entropy on it

(a harmful update raises the error or the loss, so removing it lowers them: a large impact).
ERR and LFR remove the c updates of largest impact (ties: the lower index first); Union
removes every update that either removes (between c and 2c). The rule then aggregates the
kept updates. Parameters (SPEC 13 item 11): B_i is the rule on m - 1 updates with the same
c / beta where it runs, else the largest value that runs; the kept updates likewise.

    result = defend("union", U, w, "median", {}, c, evaluate)
    aggregate = aggregators.get("median")(U[result.kept])

`evaluate(models)` takes the (m + 1, d) stack of candidate global models [w + A; w + B_1;
...; w + B_m] and returns their (errors, losses), each (m + 1,): one batched evaluation
(`fedrobust.models.BatchedModel.evaluate_many`), not m + 1 of them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Tuple

import numpy as np

from fedrobust import aggregators, dispatch

DEFENSES = ("none", "err", "lfr", "union")
Evaluate = Callable[[Any], Tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Defended:
    """What a defense decided for one round.

    kept, removed:  ascending row indices of U (together: every row once).
    error_impact:   (m,) E(w + A) - E(w + B_i) for every row i.
    loss_impact:    (m,) L(w + A) - L(w + B_i).
    reason:         one line saying what was removed and why.
    by_index:       for each ranking the defense used ("err", "lfr"), how many of its c removals
                    the tie rule decided (rows tied at the c-th largest impact, more of them
                    than places left: the lower indices were taken).
    """

    kept: np.ndarray
    removed: np.ndarray
    error_impact: np.ndarray
    loss_impact: np.ndarray
    reason: str
    by_index: Dict[str, int]


def leave_one_out(U: Any, rule: str, params: Dict[str, Any]) -> Tuple[Any, Any]:
    """(A (d,), B (m, d)): the rule on all m rows of U, and row i of B the rule on the m - 1
    rows without row i, its parameters clamped for m - 1 rows. U: the round's (m, d) array
    of any kind `dispatch.matrix` takes; A and B come back in U's type and device.

    Median and trimmed mean: one native pass (`leave_one_out_median`,
    `leave_one_out_trimmed_mean`): each column's values at the ranks around the middle (or the
    trim thresholds), then every row's result from where its value sits, with the rule's bits
    (the trimmed mean's middle rows take their row-order sums without their own row).
    Mean: (S - U_i) / (m - 1) from the one column sum S where that is exact
    (`_columns_with_exact_sums`), the rule on each m - 1 rows in the other columns.
    Krum: every leave-one-out choice from the one (m, m) distance matrix (O(m^3) scalar
    work, nothing more over d); the rule on m - 1 rows computes the same distances up to
    their last bits (its column chunks depend on the row count), so only a near-tie of scores
    can choose differently. Bulyan likewise: each selection from the one distance matrix,
    then the rule's second stage over the chosen rows. Every other B_i has the rule's
    exact bits."""
    entry = aggregators.rule(rule)
    V, backend, wrap = dispatch.matrix(U)
    m = V.shape[0]
    A = entry.bind(**params)(U)
    kept = entry.clamped(m - 1, **params)
    if rule in ("median", "trimmed_mean"):  # one native pass over the sorted neighbourhoods
        B = backend.leave_one_out_median(V) if rule == "median" else backend.leave_one_out_trimmed_mean(V, kept["beta"])
        return A, wrap(B)
    if rule == "krum":
        return A, wrap(_on_the_host(V, backend, lambda H: _krum_leave_one_out(H, **kept)))
    if rule == "mean":
        return A, wrap(_on_the_host(V, backend, _mean_leave_one_out))
    if rule == "bulyan":
        return A, wrap(_on_the_host(V, backend, lambda H: _bulyan_leave_one_out(H, **kept)))
    return A, wrap(_on_the_host(V, backend, lambda H: _recomputed(H, entry.bind(**kept))))


def _on_the_host(V: Any, backend: dispatch.Backend, compute: Callable[[np.ndarray], np.ndarray]) -> Any:
    """compute(V) for a numpy V; for a device array, on a host copy, the result put back on V's
    device (the selections are host work; the kernels give the same bits on both)."""
    if isinstance(V, np.ndarray):
        return compute(V)
    return backend.lib.from_host(compute(backend.lib.to_host(V)), like=V)


def _bulyan_leave_one_out(U: np.ndarray, c: int, squared: bool = True) -> np.ndarray:
    """(m, d): row i is Bulyan's aggregate of the rows other than i: its selection from the one
    (m, m) distance matrix restricted to them (the rule's selection code, each row's distances
    sorted once for all m selections), then its second stage over the selected rows (the
    rule's kernel, the rule's bits)."""
    sq = dispatch.CPU.sq_distances(U)
    m = sq.shape[0]
    gamma = (m - 1) - 4 * c  # theta - 2c on the m - 1 rows
    selections = dispatch.CPU.bulyan_leave_one_out_selections(sq, c, squared)
    return np.stack([dispatch.CPU.closest_to_median_mean(U, gamma, selections[i].tolist()) for i in range(m)])


def _recomputed(U: np.ndarray, without: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(m, d): row i is `without` on the rows of U other than i (m calls)."""
    rows = np.arange(U.shape[0])
    return np.stack([without(U[rows != i]) for i in range(U.shape[0])])


def _columns_with_exact_sums(U: np.ndarray) -> np.ndarray:
    """(d,) bool: the columns of U (m, d) whose sums of any subset of rows, in any order, are
    exact in double. That holds for finite float32 values whose exponents span at most
    53 - 24 - ceil(log2 m): all are multiples of q = 2^(e_min - 23) (e_min the exponent of the
    smallest nonzero |value|) and every sum is below m * 2^(e_max + 1) <= 2^53 q. Never for
    float64 values."""
    m, d = U.shape
    if U.dtype != np.float32:
        return np.zeros(d, dtype=bool)
    magnitude = np.abs(U)
    finite = np.isfinite(U).all(0)
    largest = np.where(finite, magnitude.max(0), 0)
    smallest = np.where(magnitude > 0, magnitude, np.inf).min(0)
    spread = np.frexp(largest)[1] - np.frexp(np.where(smallest < np.inf, smallest, 1))[1]
    bound = 53 - 24 - int(np.ceil(np.log2(m)))
    return finite & ((smallest == np.inf) | (spread <= bound))


def _mean_leave_one_out(U: np.ndarray) -> np.ndarray:
    """(m, d): row i the mean of the rows other than i. Where the column sums are exact
    (`_columns_with_exact_sums`), the rule's row-order sum without row i is S - U_i, exactly,
    for the one column sum S, so (S - U_i) / (m - 1), rounded once to U's dtype, has the
    rule's bits; the other columns take the rule on each m - 1 rows."""
    m = U.shape[0]
    X = U.astype(np.float64)
    B = ((X.sum(0) - X) / (m - 1)).astype(U.dtype)
    inexact = np.flatnonzero(~_columns_with_exact_sums(U))
    if len(inexact):
        B[:, inexact] = _recomputed(U[:, inexact], aggregators.mean)
    return B


def _krum_leave_one_out(U: np.ndarray, c: int, multi: int = 1, squared: bool = True) -> np.ndarray:
    """(m, d): row i is (Multi-)Krum's aggregate of the rows other than i, chosen from the
    scores of the one distance matrix restricted to them (the rule's scoring, its ties)."""
    sq = dispatch.CPU.sq_distances(U)
    m = sq.shape[0]
    scores_without = dispatch.CPU.krum_leave_one_out_scores(sq, c, squared)  # (m, m), one native call
    out = []
    for i in range(m):
        rows = np.delete(np.arange(m), i)
        chosen = rows[np.argsort(scores_without[i, rows], kind="stable")[:multi]]
        out.append(U[int(chosen[0])].copy() if multi == 1 else aggregators.mean(U[np.sort(chosen)]))
    return np.stack(out)


def impacts(U: Any, w: Any, rule: str, params: Dict[str, Any],
            evaluate: Evaluate) -> Tuple[np.ndarray, np.ndarray]:
    """(error impacts (m,), loss impacts (m,)) of the rows of U (module docstring). U (m, d)
    and w (d,) of one kind (w: the global model, of U's dtype); `evaluate` gets the candidate
    models in U's type and device."""
    V, backend, wrap = dispatch.matrix(U)
    A, B = leave_one_out(V, rule, params)
    w = dispatch.matrix(w.reshape(1, -1), "w")[0][0]
    models = backend.lib.empty((B.shape[0] + 1, B.shape[1]), B)
    # models = [w + A; w + B_1; ...; w + B_m], written in place (no concatenated copy)
    models[0] = w + A
    models[1:] = B + w
    errors, losses = evaluate(wrap(models))
    errors, losses = np.asarray(errors, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    return errors[0] - errors[1:], losses[0] - losses[1:]


def _by_impact(impact: np.ndarray) -> np.ndarray:
    """Row indices by impact, largest first, ties to the lower index (NaN last)."""
    return np.lexsort((np.arange(impact.size), -impact))  # by -impact, then by index


def largest(impact: np.ndarray, c: int) -> np.ndarray:
    """The c rows of largest impact, ties to the lower index; ascending."""
    return np.sort(_by_impact(impact)[:c])


def decided_by_index(impact: np.ndarray, c: int) -> int:
    """How many of `largest(impact, c)` the tie rule chose: with v the c-th largest impact,
    the rows above v are taken on their impact, and the places left go to the lowest-indexed
    rows at v (NaN impacts count as one value); those count when more rows than places sit
    at v."""
    if c == 0:
        return 0
    order = _by_impact(impact)
    v = impact[order[c - 1]]
    at_v = np.isnan(impact) if np.isnan(v) else impact == v
    places = int(at_v[order[:c]].sum())
    return places if int(at_v.sum()) > places else 0


def defend(name: str, U: Any, w: Any, rule: str, params: Dict[str, Any], c: int,
           evaluate: Evaluate) -> Defended:
    """Defense `name` ("err", "lfr" or "union") on the round's updates U (m, d) around the
    global model w (d,): which rows to keep (module docstring)."""
    if name not in DEFENSES or name == "none":
        raise ValueError(f"defense must be one of {list(DEFENSES[1:])}, got {name!r}")
    m = U.shape[0]
    if not 0 <= c < m:
        raise ValueError(f"c must be in [0, m = {m}), got {c}")
    error_impact, loss_impact = impacts(U, w, rule, params, evaluate)
    by_error, by_loss = largest(error_impact, c), largest(loss_impact, c)
    removed = {"err": by_error, "lfr": by_loss, "union": np.union1d(by_error, by_loss)}[name]
    kept = np.setdiff1d(np.arange(m), removed)
    reason = {"err": f"ERR: the {c} largest error-rate impacts",
              "lfr": f"LFR: the {c} largest loss impacts",
              "union": f"Union: the {c} largest error-rate impacts and the {c} largest loss impacts"}[name]
    rankings = {"err": ["err"], "lfr": ["lfr"], "union": ["err", "lfr"]}[name]
    impact_of = {"err": error_impact, "lfr": loss_impact}
    return Defended(kept=kept, removed=removed.astype(np.int64), error_impact=error_impact,
                    loss_impact=loss_impact, reason=reason,
                    by_index={r: decided_by_index(impact_of[r], c) for r in rankings})
