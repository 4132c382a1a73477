"""Flower strategies that aggregate with any fedrobust rule and, optionally, a fedrobust defense.

    from fedrobust.integrations.flower import FedrobustStrategy          # Message API (flwr.serverapp)
    strategy = FedrobustStrategy(rule="trimmed_mean", rule_params={"beta": 2}, min_train_nodes=10)

    from fedrobust.integrations.flower import LegacyFedrobustStrategy    # flwr.server.strategy
    strategy = LegacyFedrobustStrategy(rule="krum", rule_params={"c": 2}, min_fit_clients=10)

Both subclass Flower's FedAvg of their API, so sampling, configuration, evaluation and every
FedAvg option stay Flower's; only the aggregation of the training results is replaced:

1. Each client's list of arrays (its layers, any shapes) is flattened, layer after layer, each in
   C order, into one row of an (m, d) array U (m clients, d parameters in all): float32 when every
   layer is float32, float64 otherwise (`Layout`). Clients whose layer count, shapes or dtypes
   differ from the first client's are refused with a ValueError naming them.
2. The rule maps U to one (d,) row, cut back into the layers with their shapes and dtypes
   (integer and bool layers rounded to the nearest integer).

Weights, not updates. Flower clients send their trained model weights W_i (the rows of U), not
updates W_i - w. The rules aggregate the weights directly: every rule commutes with a common
translation (mean, coordinate-wise median and trimmed mean: order statistics per coordinate;
Krum and Bulyan: pairwise distances), rule(W) = w + rule(W - w) up to rounding, so this is the
rule on the updates.

Example counts. With rule="mean" and weighted=True (the default) the aggregate is FedAvg's
example-weighted mean sum_i n_i W_i / sum_i n_i (n_i the client's num_examples); with
weighted=False it is fedrobust's plain mean. The robust rules (median, trimmed_mean, krum,
including Multi-Krum's mean, bulyan) ignore the counts: a client could claim any count.

Defenses ("err", "lfr", "union"; `fedrobust.defenses`) rank the clients by how much their update
raises a validation error / loss of the candidate global models w + A and w + B_i, and so need
the current global model w: the strategies record it when Flower configures the round
(`configure_train` / `configure_fit` receive it). The defense gets the updates U_i = W_i - w and
w, both flat and of U's dtype; `evaluate(models)` gets the (m + 1, d) numpy array of candidate
models [w + A; w + B_1; ...; w + B_m] and returns their (errors, losses), each (m + 1,);
`strategy.layout.restore(models[k])` gives model k as its list of layers. The rule then
aggregates the weights of the kept clients, as without a defense. `defense_c` clients are removed
per ranking (default: the rule's `c`). The defense's leave-one-out aggregates are unweighted;
example counts only weight the final mean.

Fewer clients than the parameters need. As in fedrobust's simulation (SPEC 13 item 11) the rule's
counts (c, beta) are lowered, where a round has too few clients (or kept clients) for them, to
the largest that runs (`Rule.clamped`), with a warning in Flower's log.

Metrics. Besides what Flower aggregates from the clients' own metrics (over the clients used,
as Flower's Krum and Bulyan do), the returned metrics hold

    fedrobust-selected-count, fedrobust-selected-ids   the clients whose models entered the
        aggregate: for krum and bulyan the rows the rule selected, in its selection order;
        for the other rules every kept client, in reply order
    fedrobust-rejected-count, fedrobust-rejected-ids   the other clients, in reply order
    fedrobust-removed-count, fedrobust-removed-ids     with a defense: the clients it removed

Ids are node ids (`message.metadata.src_node_id`) as a list of int in the Message API's
MetricRecord (whose values are int, float or lists of one of them), and `ClientProxy.cid`
joined by "," into one str in the legacy API (whose metric values are bool, bytes, float, int
or str).
"""
from __future__ import annotations

import collections
import dataclasses
from logging import INFO, WARNING
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from fedrobust import aggregators, defenses

try:
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.common import FitIns, FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.common.logger import log
    from flwr.server.client_manager import ClientManager
    from flwr.server.client_proxy import ClientProxy
    from flwr.server.strategy import FedAvg as _LegacyFedAvg
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import FedAvg as _FedAvg
except ImportError as error:  # flwr missing, or older than the Message API strategies (1.21)
    raise ImportError(f"fedrobust.integrations.flower needs Flower >= 1.21 ({error}): "
                      "pip install 'fedrobust[flower]'") from error

__all__ = ["Layout", "Aggregated", "RobustAggregation", "FedrobustStrategy", "LegacyFedrobustStrategy",
           "stack", "weighted_mean"]

Evaluate = Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------------
# Flower's list of arrays <-> one flat row
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Layout:
    """How one model's layers map onto a flat row of d = sum(sizes) values: layer k is
    row[offsets[k]:offsets[k + 1]] in C order, reshaped to shapes[k], of dtype dtypes[k].
    The row's dtype is float32 when every layer is float32, float64 otherwise."""

    shapes: Tuple[Tuple[int, ...], ...]
    dtypes: Tuple[np.dtype, ...]

    @classmethod
    def of(cls, layers: Sequence[Any]) -> Layout:
        """The layout of one model's layers (numpy arrays of bool, int or float)."""
        arrays = [np.asarray(a) for a in layers]
        for k, a in enumerate(arrays):
            if a.dtype.kind not in "biuf":
                raise TypeError(f"layer {k} has dtype {a.dtype}; expected real numbers (bool, int or float)")
        return cls(tuple(a.shape for a in arrays), tuple(a.dtype for a in arrays))

    @property
    def dtype(self) -> np.dtype:
        if self.dtypes and all(t == np.float32 for t in self.dtypes):
            return np.dtype(np.float32)
        return np.dtype(np.float64)

    @property
    def offsets(self) -> List[int]:
        """(len(shapes) + 1,) where each layer starts in the row; the last is d."""
        return [0, *np.cumsum([int(np.prod(s)) for s in self.shapes], dtype=np.int64).tolist()]

    @property
    def size(self) -> int:
        """d: the number of values in the row."""
        return self.offsets[-1]

    def flatten(self, layers: Sequence[Any], who: str, out: Optional[np.ndarray] = None) -> np.ndarray:
        """(d,) row of `layers` (in `out` when given); ValueError naming `who` when their
        count, shapes or dtypes differ from this layout's."""
        if len(layers) != len(self.shapes):
            raise ValueError(f"{who} has {len(layers)} layers; the first client has {len(self.shapes)}")
        row = np.empty(self.size, dtype=self.dtype) if out is None else out
        for k, (a, start, stop) in enumerate(zip(layers, self.offsets[:-1], self.offsets[1:])):
            a = np.asarray(a)
            if a.shape != self.shapes[k] or a.dtype != self.dtypes[k]:
                raise ValueError(f"{who} has layer {k} of shape {a.shape} and dtype {a.dtype}; the first client's "
                                 f"is of shape {self.shapes[k]} and dtype {self.dtypes[k]}")
            row[start:stop] = a.reshape(-1)
        return row

    def restore(self, row: np.ndarray) -> List[np.ndarray]:
        """The layers of a (d,) row: new arrays of the layout's shapes and dtypes (integer and
        bool layers rounded to the nearest integer, ties to even)."""
        row = np.asarray(row)
        if row.shape != (self.size,):
            raise ValueError(f"expected a row of shape ({self.size},), got {row.shape}")
        layers = []
        for shape, dtype, start, stop in zip(self.shapes, self.dtypes, self.offsets[:-1], self.offsets[1:]):
            part = row[start:stop]
            if dtype.kind in "biu":
                part = np.rint(part)
            layers.append(part.astype(dtype).reshape(shape))
        return layers


def stack(models: Sequence[Sequence[Any]], clients: Sequence[Any]) -> Tuple[np.ndarray, Layout]:
    """(U (m, d), layout): row i the flattened layers of models[i], client clients[i] (named in
    the ValueError when its layers do not match the first client's)."""
    if not models:
        raise ValueError("no client results to aggregate")
    layout = Layout.of(models[0])
    U = np.empty((len(models), layout.size), dtype=layout.dtype)
    for i, (layers, client) in enumerate(zip(models, clients)):
        layout.flatten(layers, f"client {client}", out=U[i])
    return U, layout


# ---------------------------------------------------------------------------
# The aggregation, on flat rows
# ---------------------------------------------------------------------------
def weighted_mean(U: np.ndarray, weights: Sequence[float], clients: Optional[Sequence[Any]] = None) -> np.ndarray:
    """(d,) example-weighted mean sum_i n_i U_i / sum_i n_i of U (m, d), summed in row order in
    float64 and rounded once to U's dtype. weights: (m,) finite, >= 0, with a positive sum.
    ValueError naming the clients (default: the row positions) whose rows hold NaN or Inf when
    the result is not finite."""
    n = np.asarray(weights, dtype=np.float64)
    if n.shape != (U.shape[0],) or not np.isfinite(n).all() or (n < 0).any() or n.sum() <= 0:
        raise ValueError(f"the weights (numbers of examples) must be {U.shape[0]} finite values >= 0 with a "
                         f"positive sum, got {np.asarray(weights).tolist()}")
    total = np.zeros(U.shape[1], dtype=np.float64)
    for i in range(U.shape[0]):
        total += U[i].astype(np.float64) * n[i]
    out = (total / n.sum()).astype(U.dtype)
    if not np.isfinite(out).all():
        bad = aggregators.nonfinite_workers(U).tolist()
        names = bad if clients is None else [clients[i] for i in bad]
        raise ValueError(f"the weighted mean has no tolerance for non-finite models: clients {names} sent NaN or "
                         "Inf; use a robust rule (median, trimmed_mean, krum, bulyan)")
    return out


@dataclasses.dataclass(frozen=True)
class Aggregated:
    """One round's aggregation of m client rows.

    row:       (d,) the new global model, flat, of U's dtype.
    selected:  row positions of the clients whose models entered the aggregate: for krum and
               bulyan the rows the rule selected, in its selection order; otherwise every kept
               row, ascending.
    rejected:  the other positions, ascending.
    removed:   the positions the defense removed, ascending (empty without a defense).
    params:    the rule's parameters used for the final aggregate (clamped to the rows kept).
    """

    row: np.ndarray
    selected: np.ndarray
    rejected: np.ndarray
    removed: np.ndarray
    params: Dict[str, Any]


class RobustAggregation:
    """A fedrobust rule (name + parameters) and optional defense, applied to flat rows.

    rule, rule_params:  a name of `fedrobust.aggregators.RULES` and its parameters, e.g.
                        "trimmed_mean", {"beta": 2} (beta: values removed at EACH end);
                        "krum", {"c": 2, "multi": 1}; "bulyan", {"c": 1}.
    defense:            None (or "none"), "err", "lfr" or "union".
    defense_c:          clients each ranking removes (default: rule_params["c"]).
    evaluate:           models (k, d) -> (errors (k,), losses (k,)); required with a defense.
    weighted:           rule "mean": the example-weighted mean (True) or the plain mean.
    """

    def __init__(self, rule: str = "mean", rule_params: Optional[Dict[str, Any]] = None,
                 defense: Optional[str] = None, defense_c: Optional[int] = None,
                 evaluate: Optional[Evaluate] = None, weighted: bool = True) -> None:
        self.rule = aggregators.rule(rule)
        self.params = dict(rule_params or {})
        self.rule.bind(**self.params)  # TypeError now for a missing or unknown parameter
        self.defense = None if defense in (None, "none") else defense
        if self.defense is not None:
            if self.defense not in defenses.DEFENSES:
                raise ValueError(f"defense must be one of {list(defenses.DEFENSES[1:])} or None, got {defense!r}")
            if evaluate is None:
                raise ValueError(f"defense {self.defense!r} needs evaluate(models) -> (errors, losses): the "
                                 "validation error rates and losses of the (k, d) candidate global models")
            if defense_c is None:
                defense_c = self.params.get("c")
            if defense_c is None:
                raise ValueError(f"defense {self.defense!r} needs defense_c: how many clients each ranking removes")
        self.defense_c = defense_c
        self.evaluate = evaluate
        self.weighted = bool(weighted)

    def describe(self) -> str:
        """One line: the rule, its parameters, the defense."""
        text = f"{self.rule.name}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"
        if self.rule.name == "mean":
            text += " weighted by the examples" if self.weighted else " unweighted"
        if self.defense is not None:
            text += f", defense {self.defense} removing {self.defense_c} per ranking"
        return text

    def clamped(self, m: int) -> Dict[str, Any]:
        """The rule's parameters for m rows (`Rule.clamped`), with a warning when lowered."""
        params = self.rule.clamped(m, **self.params)
        if params != self.params:
            log(WARNING, "fedrobust: %s cannot run with %s on %d clients; using %s", self.rule.name, self.params, m,
                params)
        return params

    def __call__(self, U: np.ndarray, weights: Sequence[float], clients: Sequence[Any],
                 w: Optional[np.ndarray] = None) -> Aggregated:
        """Aggregate U (m, d), the clients' flat models (row i: clients[i], weights[i] its
        number of examples); w (d,): the current global model, of U's dtype, needed by a
        defense only."""
        m = U.shape[0]
        rows = np.arange(m)
        removed = np.zeros(0, dtype=np.int64)
        if self.defense is not None:
            if w is None:
                raise ValueError(f"defense {self.defense!r} needs the current global model, which the strategy "
                                 "records when Flower configures the round (configure_train / configure_fit)")
            found = defenses.defend(self.defense, U - w, w, self.rule.name, self.clamped(m), self.defense_c,
                                    self.evaluate)
            rows, removed = found.kept, found.removed
        V = U if rows.size == m else U[rows]
        params = self.clamped(V.shape[0])
        if self.rule.name == "mean" and self.weighted:
            row = weighted_mean(V, np.asarray(weights, dtype=np.float64)[rows], [clients[i] for i in rows])
            selected = rows
        elif self.rule.selects_rows:
            row, chosen = self.rule.select(V, **params)
            selected = rows[chosen]
        else:
            row = self.rule.bind(**params)(V)
            selected = rows
        rejected = np.setdiff1d(np.arange(m), selected)
        return Aggregated(row=row, selected=selected.astype(np.int64), rejected=rejected.astype(np.int64),
                          removed=removed.astype(np.int64), params=params)

    def report(self, result: Aggregated, clients: Sequence[Any],
               ids: Callable[[List[Any]], Any]) -> Dict[str, Any]:
        """The fedrobust-* metrics of a round (module docstring); ids(list of client ids) -> the
        metric value of an id list."""
        groups = {"selected": result.selected, "rejected": result.rejected}
        if self.defense is not None:
            groups["removed"] = result.removed
        out: Dict[str, Any] = {}
        for name, positions in groups.items():
            out[f"fedrobust-{name}-count"] = int(positions.size)
            out[f"fedrobust-{name}-ids"] = ids([clients[i] for i in positions])
        return out


# ---------------------------------------------------------------------------
# Message API (flwr.serverapp.strategy)
# ---------------------------------------------------------------------------
class FedrobustStrategy(_FedAvg):
    """Flower's Message-API FedAvg with a fedrobust rule (and defense) as its aggregation.

    FedrobustStrategy(rule="median")
    FedrobustStrategy(rule="krum", rule_params={"c": 2, "multi": 3}, min_train_nodes=10)
    FedrobustStrategy(rule="trimmed_mean", rule_params={"beta": 1}, defense="union", defense_c=1,
                      evaluate=my_evaluate)

    rule, rule_params, defense, defense_c, evaluate, weighted: as `RobustAggregation`; every
    other keyword goes to `flwr.serverapp.strategy.FedAvg` (fraction_train, min_train_nodes,
    weighted_by_key, train_metrics_aggr_fn, ...). Each reply must hold one ArrayRecord and one
    MetricRecord with the `weighted_by_key` count (as for FedAvg); the aggregate keeps the
    ArrayRecord keys of the first reply. See the module docstring for weights, metrics, defenses.
    """

    def __init__(self, rule: str = "mean", rule_params: Optional[Dict[str, Any]] = None, *,
                 defense: Optional[str] = None, defense_c: Optional[int] = None,
                 evaluate: Optional[Evaluate] = None, weighted: bool = True, **fedavg_options: Any) -> None:
        super().__init__(**fedavg_options)
        self.aggregation = RobustAggregation(rule, rule_params, defense, defense_c, evaluate, weighted)
        self.global_arrays: Optional[ArrayRecord] = None  # the round's global model (configure_train)
        self.layout: Optional[Layout] = None  # the last round's layout (for evaluate: layout.restore(row))

    def summary(self) -> None:
        log(INFO, "\t├──> fedrobust: %s", self.aggregation.describe())
        super().summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """FedAvg's configure_train, recording `arrays` as the current global model."""
        self.global_arrays = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> Tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        """The rule's aggregate of the replies' ArrayRecords, and the metrics (module docstring).
        Replies that carry an error are skipped; (None, None) when none is left."""
        replies = list(replies)
        valid = [msg for msg in replies if not msg.has_error()]
        log(INFO, "aggregate_train: received %s results and %s failures", len(valid), len(replies) - len(valid))
        if not valid:
            return None, None
        clients = [int(msg.metadata.src_node_id) for msg in valid]
        records = [self._train_reply(msg.content, node) for msg, node in zip(valid, clients)]
        keys = list(records[0][0].keys())
        models = []
        for (arrays, _), node in zip(records, clients):
            if set(arrays.keys()) != set(keys):
                raise ValueError(f"client {node} sent arrays {sorted(arrays.keys())}; the first client sent "
                                 f"{sorted(keys)}")
            models.append([arrays[k].numpy() for k in keys])
        U, self.layout = stack(models, clients)
        weights = [metrics[self.weighted_by_key] for _, metrics in records]
        w = None
        if self.aggregation.defense is not None and self.global_arrays is not None:
            if set(self.global_arrays.keys()) != set(keys):
                raise ValueError(f"the global model has arrays {sorted(self.global_arrays.keys())}; the clients sent "
                                 f"{sorted(keys)}")
            w = self.layout.flatten([self.global_arrays[k].numpy() for k in keys], "the global model")
        result = self.aggregation(U, weights, clients, w)
        arrays = ArrayRecord(collections.OrderedDict(
            (k, Array(a)) for k, a in zip(keys, self.layout.restore(result.row))))
        metrics = self.train_metrics_aggr_fn([valid[i].content for i in result.selected], self.weighted_by_key)
        for name, value in self.aggregation.report(result, clients, list).items():
            metrics[name] = value
        return arrays, metrics

    def _train_reply(self, content: RecordDict, node: int) -> Tuple[ArrayRecord, MetricRecord]:
        """A reply's one ArrayRecord and one MetricRecord, which holds the weighted_by_key count."""
        if len(content.array_records) != 1 or len(content.metric_records) != 1:
            raise ValueError(f"client {node} replied with {len(content.array_records)} ArrayRecords and "
                             f"{len(content.metric_records)} MetricRecords; expected one of each")
        arrays = next(iter(content.array_records.values()))
        metrics = next(iter(content.metric_records.values()))
        count = metrics.get(self.weighted_by_key)
        if not isinstance(count, (int, float)):
            raise ValueError(f"client {node} replied without a number {self.weighted_by_key!r} in its MetricRecord")
        return arrays, metrics


# ---------------------------------------------------------------------------
# Legacy API (flwr.server.strategy)
# ---------------------------------------------------------------------------
class LegacyFedrobustStrategy(_LegacyFedAvg):
    """Flower's legacy FedAvg (flwr.server.strategy) with a fedrobust rule (and defense) as its
    aggregation of the fit results.

    LegacyFedrobustStrategy(rule="bulyan", rule_params={"c": 1}, min_fit_clients=7)

    rule, rule_params, defense, defense_c, evaluate, weighted: as `RobustAggregation`; every
    other keyword goes to `flwr.server.strategy.FedAvg` (fraction_fit, min_fit_clients,
    accept_failures, fit_metrics_aggregation_fn, ...). See the module docstring.
    """

    def __init__(self, rule: str = "mean", rule_params: Optional[Dict[str, Any]] = None, *,
                 defense: Optional[str] = None, defense_c: Optional[int] = None,
                 evaluate: Optional[Evaluate] = None, weighted: bool = True, **fedavg_options: Any) -> None:
        super().__init__(**fedavg_options)
        self.aggregation = RobustAggregation(rule, rule_params, defense, defense_c, evaluate, weighted)
        self.global_parameters: Optional[Parameters] = None  # the round's global model (configure_fit)
        self.layout: Optional[Layout] = None  # the last round's layout (for evaluate: layout.restore(row))

    def __repr__(self) -> str:
        return f"LegacyFedrobustStrategy({self.aggregation.describe()}, accept_failures={self.accept_failures})"

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> List[Tuple[ClientProxy, FitIns]]:
        """FedAvg's configure_fit, recording `parameters` as the current global model."""
        self.global_parameters = parameters
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: List[Tuple[ClientProxy, FitRes]],
                      failures: List[Union[Tuple[ClientProxy, FitRes], BaseException]],
                      ) -> Tuple[Optional[Parameters], Dict[str, Scalar]]:
        """The rule's aggregate of the clients' parameters, and the metrics (module docstring).
        (None, {}) without results, or with failures when accept_failures is False (as FedAvg)."""
        if not results or (failures and not self.accept_failures):
            return None, {}
        clients = [proxy.cid for proxy, _ in results]
        U, self.layout = stack([parameters_to_ndarrays(res.parameters) for _, res in results], clients)
        w = None
        if self.aggregation.defense is not None and self.global_parameters is not None:
            w = self.layout.flatten(parameters_to_ndarrays(self.global_parameters), "the global model")
        result = self.aggregation(U, [res.num_examples for _, res in results], clients, w)
        parameters = ndarrays_to_parameters(self.layout.restore(result.row))
        metrics: Dict[str, Scalar] = {}
        if self.fit_metrics_aggregation_fn:
            used = [results[i][1] for i in result.selected]
            metrics = dict(self.fit_metrics_aggregation_fn([(res.num_examples, res.metrics) for res in used]))
        metrics.update(self.aggregation.report(result, clients, lambda ids: ",".join(str(i) for i in ids)))
        return parameters, metrics
