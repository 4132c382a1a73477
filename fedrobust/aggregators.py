"""Aggregation rules: U (m workers, d parameters) -> one (d,) update.

Every rule takes a numpy array, a torch tensor (CPU or CUDA), a cupy array or any DLPack /
__cuda_array_interface__ producer, float32 or float64, in any memory layout, never modifies
it, and returns the input's type, dtype and device (`fedrobust.dispatch` picks the CPU or
the CUDA kernels). Results are deterministic: the same bits for any thread count, and the
CUDA kernels give the CPU's bits (Krum's choice can differ only on scores equal to their
last bits). The plain numpy twin of every rule is in `fedrobust.reference`.

Non-finite values (SPEC section 13, item 15): Krum and Bulyan treat a distance that involves
a NaN or Inf as +Inf; the coordinate-wise rules order NaN as +Inf, so trimming removes it;
`mean` has no tolerance and raises a ValueError naming the workers. `nonfinite_workers(U)`
reports them for any rule.

`RULES` is the registry: one `Rule` per name (function, parameters, requirement check,
whether it selects rows), from which the settings, the command line and the benchmarks
derive. Adding a rule is one entry plus its kernel.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from fedrobust import dispatch
from fedrobust._native import cpu
from fedrobust.params import as_bool, as_count, as_int, as_row_indices


def mean(U: Any) -> Any:
    """Coordinate-wise mean: out_j = (1/m) sum_i U_ij (summed in row order, in double).

    Raises ValueError naming the workers whose rows hold NaN or Inf.
    """
    A, backend, wrap = dispatch.matrix(U)
    out = backend.mean(A)
    if not backend.all_finite(out):
        bad = np.flatnonzero(backend.nonfinite_rows(A))
        if bad.size:
            raise ValueError(
                f"mean has no tolerance for non-finite updates: workers {bad.tolist()} sent NaN or Inf; "
                "use a robust rule (median, trimmed_mean, krum, bulyan)"
            )
        refuse_overflow(A, backend, out, "mean")
    return wrap(out)


def refuse_overflow(A: Any, backend: dispatch.Backend, out: Any, what: str, rows: Optional[list] = None) -> None:
    """ValueError when `out` (d,) is non-finite at a coordinate where every value of A (of its
    `rows`, default all) is finite: a float64 sum beyond the float64 maximum (float32 inputs
    are summed in double and cannot overflow)."""
    column = backend.overflow_column(A, out, rows)
    if column is not None:
        raise ValueError(f"{what} overflows float64 at coordinate {column}: its values are finite but their sum "
                         "exceeds the float64 maximum (about 1.8e308); rescale the updates")


def median(U: Any) -> Any:
    """Coordinate-wise median. Even m: the mean of the two middle values, lo/2 + hi/2."""
    A, backend, wrap = dispatch.matrix(U)
    return wrap(backend.median(A))


def trimmed_mean(U: Any, beta: int) -> Any:
    """Coordinate-wise trimmed mean: drop the beta largest and beta smallest values of each
    coordinate and average the remaining m - 2*beta. Requires 0 <= beta and 2*beta < m."""
    beta = as_count(beta, "beta")
    A, backend, wrap = dispatch.matrix(U)
    out = backend.trimmed_mean(A, beta)
    refuse_overflow(A, backend, out, "trimmed mean")
    return wrap(out)


def pairwise_distances(U: Any, squared: bool = True, rows: Any = None) -> Any:
    """(m, m) Euclidean distances ||U_i - U_j|| (squared if `squared`), computed from direct
    differences (exact for near-identical rows), 0 on the diagonal, +Inf for rows with NaN/Inf.
    With `rows` (k indices or a boolean mask), the (k, k) distances between those rows, in
    that order."""
    A, backend, wrap = dispatch.matrix(U)
    subset = None if rows is None else as_row_indices(rows, A.shape[0])
    return wrap(backend.pairwise_distances(A, as_bool(squared, "squared"), subset))


def krum_scores(U: Any, c: int, squared: bool = True) -> Any:
    """(m,) Krum scores: score_i = sum of the distances from U_i to its m - c - 2 nearest other
    rows (self excluded by index). Requires m > 2c + 2."""
    c = as_count(c, "c")
    A, backend, wrap = dispatch.matrix(U)
    return wrap(backend.krum_scores(A, c, as_bool(squared, "squared")))


def krum_select(U: Any, c: int, multi: int = 1, squared: bool = True) -> np.ndarray:
    """Indices (numpy int64, shape (multi,)) of the `multi` rows with the smallest Krum scores,
    ascending by score, ties to the lowest index."""
    return _krum(U, c, multi, squared)[1]


def krum(U: Any, c: int, multi: int = 1, squared: bool = True) -> Any:
    """Krum (multi = 1): the row with the smallest Krum score. Multi-Krum (multi > 1): the mean of
    the `multi` rows with the smallest scores (summed in row order). Requires m > 2c + 2 and
    1 <= multi <= m - c. `squared` picks squared distances (Blanchard et al.) or plain ones (Fang
    et al.'s text)."""
    aggregate, _, wrap = _krum(U, c, multi, squared)
    return wrap(aggregate)


def krum_with_selection(U: Any, c: int, multi: int = 1, squared: bool = True) -> Tuple[Any, np.ndarray]:
    """(krum(U, c, multi, squared), krum_select(U, c, multi, squared)) from one distance pass."""
    aggregate, chosen, wrap = _krum(U, c, multi, squared)
    return wrap(aggregate), chosen


def _krum(U: Any, c: int, multi: int, squared: bool) -> Tuple[Any, np.ndarray, dispatch.Wrap]:
    c, multi = as_count(c, "c"), as_int(multi, "multi")
    A, backend, wrap = dispatch.matrix(U)
    aggregate, chosen = backend.krum(A, c, multi, as_bool(squared, "squared"))
    if multi > 1:
        refuse_overflow(A, backend, aggregate, "Multi-Krum's mean")
    return aggregate, chosen, wrap


def bulyan(U: Any, c: int, squared: bool = True) -> Any:
    """Bulyan: select theta = m - 2c rows by applying Krum repeatedly to the rows not yet
    selected; then, per coordinate, average the gamma = theta - 2c selected values closest to
    their median. Requires m >= 4c + 3 (on CUDA also theta <= 128)."""
    aggregate, _, wrap = _bulyan(U, c, squared)
    return wrap(aggregate)


def bulyan_select(U: Any, c: int, squared: bool = True) -> np.ndarray:
    """Indices (numpy int64, shape (m - 2c,)) of the rows Bulyan's first stage selects, in
    selection order. Requires m >= 4c + 3."""
    return _bulyan(U, c, squared)[1]


def bulyan_with_selection(U: Any, c: int, squared: bool = True) -> Tuple[Any, np.ndarray]:
    """(bulyan(U, c, squared), bulyan_select(U, c, squared)) from one distance computation."""
    aggregate, chosen, wrap = _bulyan(U, c, squared)
    return wrap(aggregate), chosen


def _bulyan(U: Any, c: int, squared: bool) -> Tuple[Any, np.ndarray, dispatch.Wrap]:
    c = as_count(c, "c")
    A, backend, wrap = dispatch.matrix(U)
    aggregate, chosen = backend.bulyan(A, c, as_bool(squared, "squared"))
    refuse_overflow(A, backend, aggregate, "Bulyan's mean")
    return aggregate, chosen, wrap


def nonfinite_rows(U: Any) -> np.ndarray:
    """(m,) numpy bool: whether each row of U holds at least one NaN or Inf."""
    A, backend, _ = dispatch.matrix(U)
    return backend.nonfinite_rows(A)


def nonfinite_workers(U: Any) -> np.ndarray:
    """Indices (numpy int64) of the rows that hold at least one NaN or Inf."""
    return np.flatnonzero(nonfinite_rows(U))


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------
REQUIRED = object()  # the default of a parameter that has none


@dataclasses.dataclass(frozen=True)
class Param:
    """A rule's parameter: its name, type (int or bool), default (REQUIRED: none) and meaning."""

    name: str
    type: type
    default: Any
    help: str


@dataclasses.dataclass(frozen=True)
class Rule:
    """One aggregation rule.

    function:     (U, **params) -> the (d,) aggregate.
    params:       its parameters, in order.
    requirement:  what the rule needs of m, as text ("m > 2c + 2").
    check:        (m, **params) -> None: the native modules' own check (csrc/bindings/checks.h),
                  a ValueError with the kernels' message when the rule cannot run on m rows.
    summary:      one line for help texts.
    select:       rules built from whole selected rows (Krum, Bulyan):
                  (U, **params) -> (aggregate, the selected rows as numpy int64); None otherwise.
    """

    name: str
    function: Callable[..., Any]
    params: Tuple[Param, ...]
    requirement: str
    check: Callable[..., None]
    summary: str
    select: Optional[Callable[..., Tuple[Any, np.ndarray]]] = None

    @property
    def selects_rows(self) -> bool:
        return self.select is not None

    def defaults(self) -> Dict[str, Any]:
        return {p.name: p.default for p in self.params if p.default is not REQUIRED}

    def bind(self, **params: Any) -> Callable[[Any], Any]:
        """The rule with its parameters bound: RULES["trimmed_mean"].bind(beta=20)(U).

        Raises TypeError for a missing or unknown parameter."""
        names = [p.name for p in self.params]
        unknown = set(params) - set(names)
        if unknown:
            accepted = ", ".join(names) or "no parameters"
            raise TypeError(f"rule {self.name!r} got unknown parameter(s) {sorted(unknown)}; it accepts: {accepted}")
        missing = [p.name for p in self.params if p.default is REQUIRED and p.name not in params]
        if missing:
            raise TypeError(f"rule {self.name!r} needs parameter(s) {missing}")
        rule = functools.partial(self.function, **params)
        functools.update_wrapper(rule, self.function)
        return rule

    def check_fits(self, m: int, **params: Any) -> None:
        """ValueError (the native check's message) unless the rule runs on m rows with these
        parameters (defaults filled in)."""
        self.check(m, **{**self.defaults(), **params})

    def clamped(self, m: int, **params: Any) -> Dict[str, Any]:
        """params for m rows: the same where the rule runs with them, else each count (c, beta)
        lowered to the largest value that runs (SPEC 13 item 11: the defenses aggregate m - 1
        and fewer rows). ValueError when none does (Krum on m < 3 rows)."""
        counts = [name for name in ("c", "beta") if name in params]
        out = dict(params)
        while True:
            try:
                self.check_fits(m, **out)
                return out
            except ValueError as error:
                if not counts or all(out[name] == 0 for name in counts):
                    raise ValueError(f"rule {self.name!r} cannot run on {m} rows: {error}") from None
                for name in counts:
                    out[name] = max(0, out[name] - 1)


C = Param("c", int, REQUIRED, "the number of Byzantine workers the rule tolerates")
SQUARED = Param("squared", bool, True, "squared distances (Blanchard et al.) or plain ones (Fang et al.)")


def _no_requirement(m: int) -> None:
    pass


def _check_trimmed_mean(m: int, beta: int) -> None:
    cpu.check_trimmed_mean(m, beta)


def _check_krum(m: int, c: int, multi: int = 1, squared: bool = True) -> None:
    cpu.check_multi_krum(m, c, multi)


def _check_bulyan(m: int, c: int, squared: bool = True) -> None:
    cpu.check_bulyan(m, c)


RULES: Dict[str, Rule] = {rule.name: rule for rule in (
    Rule("mean", mean, (), "m >= 1", _no_requirement, "coordinate-wise mean (no robustness)"),
    Rule("median", median, (), "m >= 1", _no_requirement,
         "coordinate-wise median (even m: the mean of the two middle values)"),
    Rule("trimmed_mean", trimmed_mean, (Param("beta", int, REQUIRED, "values removed at each end"),),
         "2 beta < m", _check_trimmed_mean, "coordinate-wise mean of the values ranked beta .. m - beta - 1"),
    Rule("krum", krum, (C, Param("multi", int, 1, "Multi-Krum: the mean of the `multi` best rows"), SQUARED),
         "m > 2c + 2", _check_krum, "the row (Multi-Krum: the mean of the rows) of smallest Krum score",
         select=krum_with_selection),
    Rule("bulyan", bulyan, (C, SQUARED), "m >= 4c + 3", _check_bulyan,
         "Krum-select m - 2c rows, then per coordinate the mean of the m - 4c values closest to their median",
         select=bulyan_with_selection),
)}


def available() -> list:
    """Names accepted by `get`."""
    return sorted(RULES)


def rule(name: str) -> Rule:
    """The registry entry of `name`; ValueError naming the available rules otherwise."""
    if name not in RULES:
        raise ValueError(f"unknown aggregation rule {name!r}; available: {', '.join(available())}")
    return RULES[name]


def get(name: str, **params: Any) -> Callable[[Any], Any]:
    """The rule `name` with its parameters bound: get("trimmed_mean", beta=20)(U).

    Raises ValueError for an unknown name and TypeError for a missing or unknown parameter.
    """
    return rule(name).bind(**params)
