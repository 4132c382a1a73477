"""The direction s in {-1, 0, +1}^d an attack pushes against (SPEC 4, 10, 13 item 4).

s_j is the sign of the before-attack global model's change in coordinate j; the crafted
models move the other way. A coordinate that does not move has s_j = 0.
"""
from __future__ import annotations

import numpy as np

from fedrobust import aggregators
from fedrobust._native import cpu
from fedrobust.attacks.context import AttackContext


def signs(x: np.ndarray) -> np.ndarray:
    """(d,) int8 signs; NaN counts as 0."""
    x = np.asarray(x)
    return ((x > 0).astype(np.int8) - (x < 0).astype(np.int8))


def full_knowledge(ctx: AttackContext) -> np.ndarray:
    """s from all m updates, as options.direction says:
    "rule": sign(A(U)) with A the assumed rule (the paper's definition);
    "mean": sign of the benign updates' mean; "sum": sign of the sum of all m updates."""
    U = ctx.updates
    how = ctx.options.direction
    if how == "rule":
        return signs(aggregators.get(ctx.rule, **ctx.rule_params)(U))
    if how == "mean":
        return signs(cpu.mean(U, ctx.benign().tolist()))
    if how == "sum":
        return signs(cpu.mean(U))
    raise ValueError(f"direction must be 'rule', 'mean' or 'sum', got {how!r}")


def partial_knowledge(ctx: AttackContext) -> np.ndarray:
    """s~ = sign(mean of the compromised updates) = sign(w~ - w_Re) (SPEC 5.2, 6.2)."""
    return signs(cpu.mean(ctx.updates, ctx.compromised.tolist()))


def agreement(estimated: np.ndarray, full: np.ndarray) -> float:
    """Fraction of coordinates where the estimated direction equals the full-knowledge one."""
    return float(np.mean(estimated == full))
