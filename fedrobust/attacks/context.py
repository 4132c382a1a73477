"""What an attack sees in one round, and the switches of SPEC section 13."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Optional, Protocol, Tuple

import numpy as np

from fedrobust import dispatch

GOALS = ("directed", "deviation")
DIRECTIONS = ("rule", "mean", "sum")
ON_FAILURE = ("last", "benign")
TRIM_REFERENCES = ("model", "update")


@dataclasses.dataclass(frozen=True)
class AttackOptions:
    """The attack's settings (SPEC 5, 6, 13). Defaults are the paper's (Table 1) and our decisions.

    epsilon:        Krum attack: the supporters lie within this distance of the crafted model.
    goal:           "directed" (the paper's directed deviation, SPEC 4) or "deviation" (Appendix B).
    direction:      full knowledge: s = sign of the sum of all m before-attack updates ("sum", the
                    default: the public code of the authors' group), of the assumed rule's
                    before-attack output ("rule", the paper's literal definition) or of the
                    benign mean ("mean", NDSS21-style ports). SPEC 13 item 4.
    on_failure:     Krum attack when no lambda >= threshold makes Krum pick the crafted model:
                    send the last crafted model ("last") or the genuine updates ("benign").
    trim_reference: trim attack, full knowledge: the b-interval scales model values ("model",
                    the paper's text) or update values ("update", all reference codes). SPEC 13.8.
    b:              trim attack, full knowledge: the interval factor (> 1).
    sigma:          trim attack, partial knowledge: the interval in standard deviations.
    threshold:      Krum attack: the lambda search stops below this (model units).
    krum_squared:   the Krum the attack simulates uses squared distances (the server's setting).
    """

    epsilon: float = 0.01
    goal: str = "directed"
    direction: str = "sum"
    on_failure: str = "last"
    trim_reference: str = "model"
    b: float = 2.0
    sigma: Tuple[float, float] = (3.0, 4.0)
    threshold: float = 1e-5
    krum_squared: bool = True


@dataclasses.dataclass
class AttackContext:
    """One round, as the attacker sees it (SPEC section 3). All in update space: an update is a
    local model minus the received global model w_Re (SPEC 13 item 1).

    updates:      (m, d) before-attack updates of the selected workers: any array the
                  aggregation rules take (numpy, torch on the CPU or CUDA, cupy, DLPack).
    compromised:  (c,) row indices of the compromised workers among them.
    global_model: (d,) w_Re, of the same kind as updates.
    rule, rule_params: the rule the attacker assumes the server runs, and its parameters.
    knowledge:    "full" (every worker's update) or "partial" (the compromised ones only).
    rng:          the simulation's generator (for anything not drawn from the counter).
    round:        the round index; with `seed` and the worker ids it keys the counter-based draws.
    worker_ids:   (m,) the global index of each row's worker (default: the row index).
    lr:           the local learning rate (the partial Krum attack's lambda start, SPEC 13.7).
    measure:      also compute the round metrics that need extra passes over the updates.
    metrics:      filled by the attack: what it did this round (written to rounds.jsonl).
    """

    updates: Any
    compromised: np.ndarray
    global_model: Any
    rule: str
    rule_params: Dict[str, Any]
    knowledge: str
    rng: np.random.Generator
    round: int
    seed: int = 0
    worker_ids: Optional[np.ndarray] = None
    lr: float = 1.0
    options: AttackOptions = dataclasses.field(default_factory=AttackOptions)
    measure: bool = True
    metrics: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def backend(self) -> dispatch.Backend:
        """The backend that computes on the updates (fedrobust.dispatch)."""
        return dispatch.backend_of(self.updates)

    @property
    def c(self) -> int:
        return int(self.compromised.size)

    def benign(self) -> np.ndarray:
        """Row indices of the benign workers."""
        mask = np.ones(self.updates.shape[0], dtype=bool)
        mask[self.compromised] = False
        return np.flatnonzero(mask)

    def compromised_ids(self) -> np.ndarray:
        """The compromised workers' global ids (int64): the rows of the counter-based draws."""
        ids = self.compromised if self.worker_ids is None else np.asarray(self.worker_ids)[self.compromised]
        return np.ascontiguousarray(ids, dtype=np.int64)


def on_any_array(attack: Attack) -> Attack:
    """`attack` run on the backend's view of the updates and the global model (numpy for numpy
    arrays and CPU tensors, the array itself on a CUDA device); the rows it returns come back
    as the caller's type. The attacks' code then calls only ctx.backend's methods."""

    @functools.wraps(attack)
    def run(ctx: AttackContext) -> Any:
        A, backend, wrap = dispatch.matrix(ctx.updates, "updates")
        model = backend.vector(ctx.global_model, A)
        return wrap(attack(dataclasses.replace(ctx, updates=A, global_model=model)))

    return run


class Attack(Protocol):
    def __call__(self, ctx: AttackContext) -> Any:
        """Return the (c, d) rows that replace updates[ctx.compromised], as an array of the
        updates' kind; may fill ctx.metrics."""
