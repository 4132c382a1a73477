"""The direction s in {-1, 0, +1}^d an attack pushes against (SPEC 4, 10, 13 item 4).

s_j is the sign of the before-attack global model's change in coordinate j; the crafted
models move the other way. A coordinate that does not move has s_j = 0.
"""
from __future__ import annotations

from fedrobust import aggregators
from fedrobust.attacks.context import AttackContext


def full_knowledge(ctx: AttackContext):
    """s from all m updates, as options.direction says:
    "sum" (the default): sign of the sum of all m updates (the mean's sign);
    "rule": sign(A(U)) with A the assumed rule (the paper's literal definition);
    "mean": sign of the benign updates' mean."""
    U, backend = ctx.updates, ctx.backend
    how = ctx.options.direction
    if how == "rule":
        return backend.signs(aggregators.get(ctx.rule, **ctx.rule_params)(U))
    if how == "mean":
        return backend.signs(backend.mean(U, ctx.benign().tolist()))
    if how == "sum":
        return backend.signs(backend.mean(U))
    raise ValueError(f"direction must be 'rule', 'mean' or 'sum', got {how!r}")


def partial_knowledge(ctx: AttackContext):
    """s~ = sign(mean of the compromised updates) = sign(w~ - w_Re) (SPEC 5.2, 6.2)."""
    return ctx.backend.signs(ctx.backend.mean(ctx.updates, ctx.compromised.tolist()))


def agreement(ctx: AttackContext, estimated, full) -> float:
    """Fraction of coordinates where the estimated direction equals the full-knowledge one."""
    return ctx.backend.fraction(estimated == full)
