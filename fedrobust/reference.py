"""Plain numpy float64 twins of every kernel: the test oracle.

Each function computes in float64 with the exact definitions the kernels
use (fedrobust/csrc/include/fedrobust/order.h), written for clarity, not
speed. Inputs are read as float64; results are float64 (indices int64).

- canonical values (coordinate-wise rules and statistics): NaN -> +Inf,
  -0 -> +0;
- sums over rows are sequential in row order (not numpy's pairwise sum);
- median, even m: lo/2 + hi/2;
- trimmed mean: (sum of the values strictly between lo = v[beta] and
  hi = v[m-beta-1], + (#{x <= lo} - beta) lo + (#{x >= hi} - beta) hi)
  / (m - 2 beta), and lo when lo == hi;
- distances: direct differences, +Inf for a pair with a non-finite value,
  0 on the diagonal; Krum neighbours m - c - 2, self excluded by index,
  summed in ascending order; ties to the lowest index.
"""
from __future__ import annotations

import numpy as np


def _f64(U) -> np.ndarray:
    return np.array(U, dtype=np.float64, copy=True)


def canonical(U) -> np.ndarray:
    """NaN -> +Inf and -0 -> +0, elementwise."""
    X = _f64(U)
    X[np.isnan(X)] = np.inf
    return X + 0.0


def _row_sum(X: np.ndarray) -> np.ndarray:
    acc = np.zeros(X.shape[1])
    for row in X:
        acc = acc + row
    return acc


def mean(U, rows=None) -> np.ndarray:
    X = _f64(U)
    if rows is not None:
        X = X[np.sort(np.asarray(rows))]
    return _row_sum(X) / X.shape[0]


def median(U) -> np.ndarray:
    S = np.sort(canonical(U), axis=0)
    m = S.shape[0]
    lo, hi = S[(m - 1) // 2], S[m // 2]
    # The two middle values' mean, lo itself where they are equal (order.h's mean_of_middle:
    # halving the least subnormals rounds, so lo/2 + hi/2 of two equal ones could leave them).
    return lo if m % 2 == 1 else np.where(lo == hi, lo, 0.5 * lo + 0.5 * hi)


def trimmed_mean(U, beta: int) -> np.ndarray:
    X = canonical(U)
    m = X.shape[0]
    S = np.sort(X, axis=0)
    lo, hi = S[beta], S[m - beta - 1]
    mid = (X > lo) & (X < hi)
    mid_sum = _row_sum(np.where(mid, X, 0.0))
    n_le = (X <= lo).sum(axis=0)
    n_ge = (X >= hi).sum(axis=0)
    with np.errstate(invalid="ignore"):
        total = mid_sum + (n_le - beta) * lo + (n_ge - beta) * hi
        out = total / (m - 2 * beta)
    return np.where(lo == hi, lo, out)


def pairwise_sq_distances(U) -> np.ndarray:
    X = _f64(U)
    m = X.shape[0]
    finite = np.isfinite(X).all(axis=1)
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            d = float(np.sum((X[i] - X[j]) ** 2)) if finite[i] and finite[j] else np.inf
            D[i, j] = D[j, i] = d if np.isfinite(d) else np.inf
    return D


def pairwise_distances(U, squared: bool = True) -> np.ndarray:
    D = pairwise_sq_distances(U)
    return D if squared else np.sqrt(D)


def _krum_scores_from(D: np.ndarray, members, c: int, squared: bool) -> np.ndarray:
    """The Krum scores of the rows `members` within them: row p's k = (len(members) - c - 2)
    smallest values D[i_p, j] (their square roots unless squared) over the other members j,
    summed in ascending order."""
    r = len(members)
    k = max(r - c - 2, 0)
    sub = D[np.ix_(members, members)]
    others = sub[~np.eye(r, dtype=bool)].reshape(r, r - 1)  # row p without its own entry
    if not squared:
        others = np.sqrt(others)
    smallest = np.sort(others, axis=1)[:, :k]
    return np.cumsum(smallest, axis=1)[:, -1] if k > 0 else np.zeros(r)


def krum_scores(U, c: int, squared: bool = True) -> np.ndarray:
    D = pairwise_sq_distances(U)
    return _krum_scores_from(D, list(range(D.shape[0])), c, squared)


def krum_select(U, c: int, multi: int = 1, squared: bool = True) -> np.ndarray:
    scores = krum_scores(U, c, squared)
    return np.argsort(scores, kind="stable")[:multi].astype(np.int64)


def krum(U, c: int, multi: int = 1, squared: bool = True) -> np.ndarray:
    selected = krum_select(U, c, multi, squared)
    return _f64(U)[selected[0]] if multi == 1 else mean(U, rows=selected)


def bulyan_select(U, c: int, squared: bool = True) -> np.ndarray:
    return bulyan_select_from_distances(pairwise_sq_distances(U), c, squared)


def bulyan_select_from_distances(D: np.ndarray, c: int, squared: bool = True) -> np.ndarray:
    """Bulyan's selection from an (n, n) float64 matrix D of squared distances: n - 2c
    rounds, each choosing the least Krum score among the rows not chosen yet (ties to the
    lowest row). A row's score is the sum, in ascending order, of its k = (remaining - c - 2)
    smallest values D[i, j] (their square roots unless squared) over the other remaining j."""
    D = np.asarray(D, dtype=np.float64)
    remaining = np.arange(D.shape[0])
    chosen = []
    for _ in range(D.shape[0] - 2 * c):
        p = int(np.argmin(_krum_scores_from(D, remaining, c, squared)))
        chosen.append(int(remaining[p]))
        remaining = np.delete(remaining, p)
    return np.array(chosen, dtype=np.int64)


def closest_to_median_mean(U, gamma: int) -> np.ndarray:
    """Per coordinate: the mean of the gamma values closest to the median (Bulyan's second stage)."""
    S = np.sort(canonical(U), axis=0)
    theta = S.shape[0]
    med = median(U)
    start = np.full(S.shape[1], theta - gamma)
    for lo in range(theta - gamma - 1, -1, -1):  # the first window start lo that satisfies the test wins
        stop = (S[lo + gamma] - med) >= (med - S[lo])
        start = np.where(stop, lo, start)
    cols = np.arange(S.shape[1])
    total = np.zeros(S.shape[1])
    for k in range(gamma):
        total = total + S[start + k, cols]
    return total / gamma


def bulyan(U, c: int, squared: bool = True) -> np.ndarray:
    X = _f64(U)
    theta = X.shape[0] - 2 * c
    return closest_to_median_mean(X[bulyan_select(X, c, squared)], theta - 2 * c)


def clamped_params(rule: str, n: int, params: dict) -> dict:
    """SPEC 13 item 11: the rule's c / beta on n rows where valid, else the largest valid value
    (trimmed mean 2 beta < n, Krum n > 2c + 2, Bulyan n >= 4c + 3)."""
    largest = {"trimmed_mean": ("beta", (n - 1) // 2), "krum": ("c", (n - 3) // 2), "bulyan": ("c", (n - 3) // 4)}
    out = dict(params)
    if rule in largest:
        name, most = largest[rule]
        out[name] = max(0, min(out[name], most))
    return out


def leave_one_out(U, rule: str, **params) -> np.ndarray:
    """(m, d) float64: row i is `rule` (this module's twin) on the m - 1 rows without row i,
    its parameters clamped for m - 1 rows: the rule recomputed m times."""
    X = _f64(U)
    rules = {"mean": mean, "median": median, "trimmed_mean": trimmed_mean, "krum": krum, "bulyan": bulyan}
    kept = clamped_params(rule, X.shape[0] - 1, params)
    return np.stack([rules[rule](np.delete(X, i, axis=0), **kept) for i in range(X.shape[0])])


def coordinate_stats(U, rows=None):
    """(mean, population std, min, max) per coordinate over the rows (NaN read as +Inf)."""
    X = canonical(U)
    if rows is not None:
        r = np.asarray(rows)
        X = X[np.flatnonzero(r) if r.dtype == np.bool_ else np.sort(r)]
    n = X.shape[0]
    mu = _row_sum(X) / n
    with np.errstate(invalid="ignore"):
        var = _row_sum((X - mu) ** 2) / n
    return mu, np.sqrt(var), X.min(axis=0), X.max(axis=0)


def nonfinite_rows(U) -> np.ndarray:
    return ~np.isfinite(_f64(U)).all(axis=1)


def lr_sgd_step(w, X, y, batches, classes: int, lr: float, U=None) -> np.ndarray:
    """One local SGD step of multi-class LR for every worker (the training kernel's twin).

    w (d,), X (N, F), y (N,), batches (m, B) indices into X (-1 = empty slot),
    U (m, d) or None (= zeros), d = F*C + C with weights W (C, F) then biases b (C,).
    Worker i: P = w + U_i, p_e = softmax(W x_e + b) over its examples e (n of them),
    g_e = (p_e - onehot(y_e)) / n, U_i - lr * (sum_e g_e x_e^T, sum_e g_e).
    A worker without examples keeps U_i.
    """
    w, X = _f64(w), _f64(X)
    y, batches = np.asarray(y), np.asarray(batches)
    F, C = X.shape[1], classes
    U = np.zeros((batches.shape[0], F * C + C)) if U is None else _f64(U)
    for i, row in enumerate(batches):
        idx = row[row >= 0]
        if idx.size == 0:
            continue
        P = w + U[i]
        logits = X[idx] @ P[: F * C].reshape(C, F).T + P[F * C:]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(idx.size), y[idx]] -= 1.0
        g = p / idx.size
        U[i, : F * C] -= lr * (g.T @ X[idx]).ravel()
        U[i, F * C:] -= lr * g.sum(axis=0)
    return U


def minibatch_indices(table, keys, batch: int) -> np.ndarray:
    """The minibatch draw's twin (csrc/cpu/minibatch.cpp).

    table (m, S) example indices (-1 = empty slot), keys (m, S) -> (m, batch) int64:
    row i holds, in slot order, table[i, s] for the slots with table[i, s] >= 0 whose
    (keys[i, s], s) are the min(batch, their number) smallest, then -1.
    """
    table, keys = np.asarray(table), np.asarray(keys, dtype=np.float64)
    out = np.full((table.shape[0], batch), -1, dtype=np.int64)
    for i in range(table.shape[0]):
        slots = np.flatnonzero(table[i] >= 0)
        chosen = np.sort(slots[np.lexsort((slots, keys[i, slots]))][:batch])
        out[i, : chosen.size] = table[i, chosen]
    return out


# ---------------------------------------------------------------------------
# Attack crafting (csrc/cpu/attacks.cpp, csrc/include/fedrobust/random.h)
# ---------------------------------------------------------------------------
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix64(z) -> np.ndarray:
    """The splitmix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counter_hash(seed: int, round: int, row, column) -> np.ndarray:
    """mix(mix(mix(mix(seed) ^ round) ^ row) ^ column), broadcast over row and column."""
    h = mix64(np.uint64(seed)) ^ np.uint64(round)
    h = mix64(h) ^ np.asarray(row, dtype=np.uint64)
    return mix64(mix64(h) ^ np.asarray(column, dtype=np.uint64))


def uniform01(h) -> np.ndarray:
    return (np.asarray(h, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _uniform01_open_low(h) -> np.ndarray:
    return ((np.asarray(h, dtype=np.uint64) >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * 2.0 ** -53


def craft_coordinates(U, rows, mode: str, out_ids, seed: int, round: int, direction=None, base=None,
                      b: float = 2.0, sigma_lo: float = 3.0, sigma_hi: float = 4.0):
    """Twin of the crafting kernel: (values (n_out, d) float64, direction used (d,) int8).

    Statistics over U[rows] in row order: trim_full uses max / min (plus base when given:
    intervals on model values), trim_partial and gaussian the mean and population std.
    The value of output row k, column j draws u = uniform01(counter_hash(seed, round,
    out_ids[k], j)) and is lo + u (hi - lo) (clamped to hi) minus base, or 0 where the
    direction is 0; gaussian: mean + std * z with z the Box-Muller pair of columns (2p, 2p+1)
    from the hash h of column 2p (`normal_pairs`).
    """
    X = _f64(U)[np.asarray(rows)]
    d = X.shape[1]
    ids = np.asarray(out_ids, dtype=np.int64)
    cols = np.arange(d, dtype=np.uint64)
    h = counter_hash(seed, round, ids.astype(np.uint64)[:, None], cols[None, :])
    offset = np.zeros(d) if base is None or mode != "trim_full" else _f64(base)
    if mode == "gaussian" or mode == "trim_partial":
        mu = _row_sum(X) / X.shape[0]
        sd = np.sqrt(_row_sum((X - mu) ** 2) / X.shape[0])
    if mode == "gaussian":
        z = np.stack([normal_pairs(seed, round, k, d) for k in ids])
        return mu + sd * z, np.zeros(d, dtype=np.int8)
    if mode == "trim_full":
        s = np.asarray(direction, dtype=np.int8)
        mx, mn = X.max(axis=0) + offset, X.min(axis=0) + offset
        lo = np.where(s < 0, mx, np.where(mn > 0, mn / b, b * mn))
        hi = np.where(s < 0, np.where(mx > 0, b * mx, mx / b), mn)
    elif mode == "trim_partial":
        s = np.sign(mu).astype(np.int8)
        lo = np.where(s < 0, mu + sigma_lo * sd, mu - sigma_hi * sd)
        hi = np.where(s < 0, mu + sigma_hi * sd, mu - sigma_lo * sd)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    values = np.minimum(lo + uniform01(h) * (hi - lo), hi)
    values = np.where(s == 0, offset, values) - offset
    return values, s


def norms_and_dots(U, direction, rows=None):
    """(||u_i||^2, <u_i, direction>) in float64 for the given rows (all by default)."""
    X = _f64(U) if rows is None else _f64(U)[np.asarray(rows)]
    s = np.asarray(direction, dtype=np.float64)
    return np.einsum("ij,ij->i", X, X), X @ s


def _estrin(c, z):
    """c[0] + c[1] z + ... grouped as the kernels' estrin6 / estrin7 (random.h)."""
    z2 = z * z
    z4 = z2 * z2
    low = (c[0] + c[1] * z) + (c[2] + c[3] * z) * z2
    if len(c) == 6:
        return low + (c[4] + c[5] * z) * z4
    return low + ((c[4] + c[5] * z) + c[6] * z2) * z4


_LOG_C = [1.0 / k for k in (3, 5, 7, 9, 11, 13, 15)]
_SIN_C = [1.0 / 6.0, -1.0 / 120.0, 1.0 / 5040.0, -1.0 / 362880.0, 1.0 / 39916800.0, -1.0 / 6227020800.0]
_COS_C = [0.5, -1.0 / 24.0, 1.0 / 720.0, -1.0 / 40320.0, 1.0 / 3628800.0, -1.0 / 479001600.0, 1.0 / 87178291200.0]


def counter_log(x) -> np.ndarray:
    """ln(x) by the kernels' plain-arithmetic formula (random.h counter_log), elementwise,
    for normal x > 0: x = m 2^e, m folded into [sqrt(2)/2, sqrt(2)), 2 atanh((m-1)/(m+1))."""
    x = np.asarray(x, dtype=np.float64)
    bits = x.view(np.uint64)
    e = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64) - 1023
    m = ((bits & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x3FF0000000000000)).view(np.float64)
    high = m > 1.4142135623730950488
    m = np.where(high, 0.5 * m, m)
    e = np.where(high, e + 1, e)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    ln_m = 2.0 * s + 2.0 * s * z * _estrin(_LOG_C, z)
    ed = e.astype(np.float64)
    return ed * 6.93147180369123816490e-01 + (ln_m + ed * 1.90821492927058770002e-10)


def counter_sincos_small(a):
    """(sin a, cos a) for |a| <= pi/4 by the kernels' Taylor polynomials (random.h)."""
    a = np.asarray(a, dtype=np.float64)
    z = a * a
    return a - a * z * _estrin(_SIN_C, z), 1.0 - z * _estrin(_COS_C, z)


def normal_pair(h):
    """(first, second) standard normals of hashes h, as random.h normal_pair: Box-Muller with
    the angle 2 pi t reduced in turns (t = q/4 + f, f > 1/8 folded to 1/4 - f)."""
    r = np.sqrt(-2.0 * counter_log(_uniform01_open_low(h)))
    t = uniform01(mix64(h))
    q = np.floor(4.0 * t)
    f = t - 0.25 * q
    fold = f > 0.125
    sf, cf = counter_sincos_small(6.283185307179586476925286766559 * np.where(fold, 0.25 - f, f))
    s0, c0 = np.where(fold, cf, sf), np.where(fold, sf, cf)
    sin_a = np.select([q == 0, q == 1, q == 2], [s0, c0, -s0], -c0)
    cos_a = np.select([q == 0, q == 1, q == 2], [c0, -s0, -c0], s0)
    return r * cos_a, r * sin_a


def normal_pairs(seed: int, round: int, row: int, d: int) -> np.ndarray:
    """(d,) standard normals of one counter row: columns 2p and 2p + 1 are the normal_pair
    of h = counter_hash(seed, round, row, 2p)."""
    h = counter_hash(seed, round, np.uint64(row), np.arange(0, d, 2, dtype=np.uint64))
    first, second = normal_pair(h)
    z = np.empty(d)
    z[0::2] = first
    z[1::2] = second[: d // 2]
    return z


def krum_craft(direction, lam: float, eps: float, seed: int, round: int, out_ids, dtype=np.float64) -> np.ndarray:
    """Twin of the Krum crafting kernel (float64 result): row 0 = -lam s; row k >= 1 adds
    r_k z_k / ||z_k||, z_k = normal_pairs(seed, round, out_ids[k], d) rounded to `dtype`,
    r_k = eps * uniform01(counter_hash(seed, round, out_ids[k], d))."""
    s = np.asarray(direction, dtype=np.float64)
    d = s.size
    ids = np.asarray(out_ids, dtype=np.int64)
    out = np.tile(-lam * s, (ids.size, 1))
    for k in range(1, ids.size):
        z = normal_pairs(seed, round, int(ids[k]), d).astype(dtype).astype(np.float64)
        r = eps * uniform01(counter_hash(seed, round, np.uint64(ids[k]), np.uint64(d)))
        out[k] += r / np.sqrt(np.sum(z * z)) * z
    return out
