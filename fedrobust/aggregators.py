"""Aggregation rules: U (m workers, d parameters) -> one (d,) update.

Every function accepts a numpy array or a CPU torch tensor, float32 or
float64, in any memory layout, never modifies it, and returns the input's
type and dtype. Results are deterministic: the same bits for any thread
count. The plain numpy twin of every rule is in `fedrobust.reference`.

torch CUDA tensors and cupy arrays run on their device (csrc/cuda), on the producer's
current stream, and come back as the same type on the same device. Other libraries' arrays
come in zero-copy through DLPack or __cuda_array_interface__ (fedrobust.arrays.adopt).

Non-finite values (SPEC section 13, item 15): Krum and Bulyan treat a
distance that involves a NaN or Inf as +Inf; the coordinate-wise rules
order NaN as +Inf, so trimming removes it; `mean` has no tolerance and raises
a ValueError naming the workers. `nonfinite_workers(U)` reports them for
any rule.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Tuple

import numpy as np

from fedrobust._native import cpu, cuda
from fedrobust.arrays import (CudaMatrix, accepts_any_array, as_count, as_cuda_matrix, as_int, as_matrix,
                              as_row_indices, device_call)


@accepts_any_array(returns="array")
def mean(U: Any) -> Any:
    """Coordinate-wise mean: out_j = (1/m) sum_i U_ij (summed in row order, in double).
    CUDA inputs (torch, cupy) run on the device, same bits as the CPU.

    Raises ValueError naming the workers whose rows hold NaN or Inf.
    """
    G = as_cuda_matrix(U)
    if G is not None:
        out = device_call(G, lambda out: cuda.mean(G.data, *G.shape, *G.strides, [], G.dtype, out, G.stream))
        finite = bool(out.isfinite().all()) if hasattr(out, "isfinite") else bool(_cupy().isfinite(out).all())
    else:
        X, wrap = as_matrix(U)
        out = wrap(cpu.mean(X))
        finite = bool(np.isfinite(np.asarray(out)).all())
    if not finite:
        bad = nonfinite_workers(U)
        if bad.size:
            raise ValueError(
                f"mean has no tolerance for non-finite updates: workers {bad.tolist()} sent NaN or Inf; "
                "use a robust rule (median, trimmed_mean, krum, bulyan)"
            )
    return out


@accepts_any_array(returns="array")
def median(U: Any) -> Any:
    """Coordinate-wise median. Even m: the mean of the two middle values, lo/2 + hi/2.
    CUDA inputs (torch, cupy) run on the device, same bits as the CPU."""
    G = as_cuda_matrix(U)
    if G is not None:
        return device_call(G, lambda out: cuda.median(G.data, *G.shape, *G.strides, G.dtype, out, G.stream))
    X, wrap = as_matrix(U)
    return wrap(cpu.median(X))


@accepts_any_array(returns="array")
def trimmed_mean(U: Any, beta: int) -> Any:
    """Coordinate-wise trimmed mean: drop the beta largest and beta smallest values of
    each coordinate and average the remaining m - 2*beta. Requires 0 <= beta and 2*beta < m.
    CUDA inputs (torch, cupy) run on the device, same bits as the CPU."""
    beta = as_count(beta, "beta")
    G = as_cuda_matrix(U)
    if G is not None:
        return device_call(G, lambda out: cuda.trimmed_mean(G.data, *G.shape, *G.strides, beta, G.dtype, out,
                                                            G.stream))
    X, wrap = as_matrix(U)
    return wrap(cpu.trimmed_mean(X, beta))


@accepts_any_array(returns="array")
def pairwise_distances(U: Any, squared: bool = True, rows: Any = None) -> Any:
    """(m, m) Euclidean distances ||U_i - U_j|| (squared if `squared`), computed from direct
    differences (exact for near-identical rows), 0 on the diagonal, +Inf for rows with NaN/Inf.
    With `rows` (k indices), the (k, k) distances between those rows, in that order (CPU: without
    copying them; CUDA: from a gathered copy)."""
    G = as_cuda_matrix(U)
    if G is not None:
        if rows is not None:
            return pairwise_distances(U[as_row_indices(rows, G.shape[0])], squared)
        m = G.shape[0]
        return device_call(G, lambda out: cuda.pairwise_distances(G.data, *G.shape, *G.strides, G.dtype,
                                                                  bool(squared), out, G.stream), (m, m))
    X, wrap = as_matrix(U)
    subset = None if rows is None else as_row_indices(rows, X.shape[0])
    return wrap(cpu.pairwise_distances(X, bool(squared), subset))


@accepts_any_array(returns="array")
def krum_scores(U: Any, c: int, squared: bool = True) -> Any:
    """(m,) Krum scores: score_i = sum of the distances from U_i to its m - c - 2 nearest other rows
    (self excluded by index). Requires m > 2c + 2."""
    G = as_cuda_matrix(U)
    if G is not None:
        scores = np.asarray(_cuda_krum(G, as_count(c, "c"), bool(squared))[1])
        with G.device():
            return G.from_host(scores)
    X, wrap = as_matrix(U)
    return wrap(cpu.krum_scores(X, as_count(c, "c"), bool(squared)))


@accepts_any_array(returns="none")
def krum_select(U: Any, c: int, multi: int = 1, squared: bool = True) -> np.ndarray:
    """Indices (numpy int64, shape (multi,)) of the `multi` rows with the smallest Krum scores,
    ascending by score, ties to the lowest index."""
    G = as_cuda_matrix(U)
    if G is not None:
        return _cuda_krum_rows(G, as_count(c, "c"), as_int(multi, "multi"), bool(squared))
    X, _ = as_matrix(U)
    return cpu.krum(X, as_count(c, "c"), as_int(multi, "multi"), bool(squared))[1]


@accepts_any_array(returns="array")
def krum(U: Any, c: int, multi: int = 1, squared: bool = True) -> Any:
    """Krum (multi = 1): the row with the smallest Krum score. Multi-Krum (multi > 1): the mean of
    the `multi` rows with the smallest scores (summed in row order). Requires m > 2c + 2 and
    1 <= multi <= m - c. `squared` picks squared distances (Blanchard et al.) or plain ones (Fang
    et al.'s text). CUDA inputs: distances and scores on the device, the same selection as the
    CPU unless two scores differ only in their last bits."""
    G = as_cuda_matrix(U)
    if G is not None:
        chosen = _cuda_krum_rows(G, as_count(c, "c"), as_int(multi, "multi"), bool(squared))
        if chosen.size == 1:
            row = U[int(chosen[0])]
            return row.clone() if hasattr(row, "clone") else row.copy()
        rows = sorted(chosen.tolist())
        return device_call(G, lambda out: cuda.mean(G.data, *G.shape, *G.strides, rows, G.dtype, out, G.stream))
    X, wrap = as_matrix(U)
    return wrap(cpu.krum(X, as_count(c, "c"), as_int(multi, "multi"), bool(squared))[0])


def _cuda_krum(G: CudaMatrix, c: int, squared: bool):
    """(chosen row, scores) of Krum on the device (waits for the producer's stream)."""
    with G.device():
        return cuda.krum_select(G.data, *G.shape, *G.strides, G.dtype, c, squared, G.stream)


def _cuda_krum_rows(G: CudaMatrix, c: int, multi: int, squared: bool) -> np.ndarray:
    """The `multi` rows with the smallest device-computed scores, ordered as on the CPU."""
    m = G.shape[0]
    if not 1 <= multi <= m - c:
        raise ValueError(f"multi must be in [1, m - c] = [1, {m - c}], got {multi}")
    chosen, scores = _cuda_krum(G, c, squared)
    if multi == 1:
        return np.array([chosen], dtype=np.int64)
    return np.argsort(np.asarray(scores), kind="stable")[:multi].astype(np.int64)


@accepts_any_array(returns="array")
def bulyan(U: Any, c: int, squared: bool = True) -> Any:
    """Bulyan: select theta = m - 2c rows by applying Krum repeatedly to the rows not yet
    selected; then, per coordinate, average the gamma = theta - 2c selected values closest to
    their median. Requires m >= 4c + 3. CUDA inputs: distances and the second stage on the
    device (theta <= 128), the selection on the host from the device's distances."""
    return bulyan_with_selection(U, c, squared)[0]


@accepts_any_array(returns="none")
def bulyan_select(U: Any, c: int, squared: bool = True) -> np.ndarray:
    """Indices (numpy int64, shape (m - 2c,)) of the rows Bulyan's first stage selects, in
    selection order. Requires m >= 4c + 3."""
    return bulyan_with_selection(U, c, squared)[1]


@accepts_any_array(returns="first")
def bulyan_with_selection(U: Any, c: int, squared: bool = True) -> Tuple[Any, np.ndarray]:
    """(bulyan(U, c, squared), bulyan_select(U, c, squared)) from one distance computation."""
    c = as_count(c, "c")
    G = as_cuda_matrix(U)
    if G is not None:
        chosen: list = []
        out = device_call(G, lambda out: chosen.extend(cuda.bulyan(G.data, *G.shape, *G.strides, c, bool(squared),
                                                                   G.dtype, out, G.stream)))
        return out, np.array(chosen, dtype=np.int64)
    X, wrap = as_matrix(U)
    out, chosen = cpu.bulyan(X, c, bool(squared))
    return wrap(out), chosen


@accepts_any_array(returns="none")
def nonfinite_workers(U: Any) -> np.ndarray:
    """Indices (numpy int64) of the rows that hold at least one NaN or Inf."""
    if as_cuda_matrix(U) is not None:  # the array library's own elementwise test, on the device
        finite = U.isfinite().all(dim=1) if hasattr(U, "isfinite") else _cupy().isfinite(U).all(axis=1)
        bad = ~finite
        return np.flatnonzero(bad.cpu().numpy() if hasattr(bad, "cpu") else bad.get())
    X, _ = as_matrix(U)
    return np.flatnonzero(cpu.nonfinite_rows(X))


def _cupy():
    import cupy

    return cupy


# ---------------------------------------------------------------------------
# Registry: rules by name, for configuration files and command lines.
# ---------------------------------------------------------------------------
_RULES: Dict[str, Callable[..., Any]] = {
    "mean": mean,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "bulyan": bulyan,
}
_PARAMS: Dict[str, tuple] = {
    "mean": (),
    "median": (),
    "trimmed_mean": ("beta",),
    "krum": ("c", "multi", "squared"),
    "bulyan": ("c", "squared"),
}
_REQUIRED: Dict[str, tuple] = {"trimmed_mean": ("beta",), "krum": ("c",), "bulyan": ("c",)}


def available() -> list:
    """Names accepted by `get`."""
    return sorted(_RULES)


def get(name: str, **params: Any) -> Callable[[Any], Any]:
    """The rule `name` with its parameters bound: get("trimmed_mean", beta=20)(U).

    Raises ValueError for an unknown name and TypeError for a missing or unknown parameter.
    """
    if name not in _RULES:
        raise ValueError(f"unknown aggregation rule {name!r}; available: {', '.join(available())}")
    unknown = set(params) - set(_PARAMS[name])
    if unknown:
        accepted = ", ".join(_PARAMS[name]) or "no parameters"
        raise TypeError(f"rule {name!r} got unknown parameter(s) {sorted(unknown)}; it accepts: {accepted}")
    missing = [p for p in _REQUIRED.get(name, ()) if p not in params]
    if missing:
        raise TypeError(f"rule {name!r} needs parameter(s) {missing}")
    rule = functools.partial(_RULES[name], **params)
    functools.update_wrapper(rule, _RULES[name])
    return rule
