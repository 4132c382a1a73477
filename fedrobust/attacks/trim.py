"""Fang et al.'s attack on trimmed mean and median (SPEC section 6), full and partial
knowledge, crafted by one native pass over the updates (csrc/cpu/attacks.cpp).

Full knowledge: per coordinate, c values drawn uniformly beyond the benign extreme on the
side opposite to the direction s, inside the b-interval:
    s_j = -1: [w_max, b w_max] if w_max > 0, else [w_max, w_max / b]
    s_j = +1: [w_min / b, w_min] if w_min > 0, else [b w_min, w_min]
with w_max / w_min the benign maximum / minimum of the model values (trim_reference="model",
the paper's text) or of the updates ("update", what the reference codes do).
Partial knowledge: mu and sigma (population) of the c compromised updates, s~ = sign(mu);
s~_j = -1: [mu + 3 sigma, mu + 4 sigma]; s~_j = +1: [mu - 4 sigma, mu - 3 sigma].
A coordinate with s_j = 0 gets the update 0. The draws come from the counter (seed, round,
worker, coordinate), so they do not depend on threads or backend.
"""
from __future__ import annotations

from fedrobust import aggregators
from fedrobust.attacks import direction
from fedrobust.attacks.context import AttackContext, on_any_array


def _deviation_direction(ctx: AttackContext):
    """Appendix B's deviation goal: per coordinate, the side (above the benign maximum or below
    the benign minimum) farther from the before-attack aggregate; s_j = -1 means above."""
    U, backend = ctx.updates, ctx.backend
    _, _, lo, hi = (backend.float64(x) for x in backend.coordinate_stats(U, ctx.benign().tolist()))
    before = backend.float64(aggregators.get(ctx.rule, **ctx.rule_params)(U))
    up = (hi - before) >= (before - lo)  # in float64 on every backend
    return backend.signs(1.0 - 2.0 * up)  # up: -1, else +1


def beyond_benign_extremes(ctx: AttackContext, crafted, s) -> float:
    """Fraction of the crafted values (over coordinates with s_j != 0) strictly beyond the benign
    extreme on their side: above the maximum where s_j = -1, below the minimum where s_j = +1.
    The extremes are the coordinate-wise rules' (NaN counts as +Inf)."""
    _, _, lo, hi = ctx.backend.coordinate_stats(ctx.updates, ctx.benign().tolist())
    up, down = s < 0, s > 0
    moved = (int(up.sum()) + int(down.sum())) * crafted.shape[0]
    if moved == 0:
        return 0.0
    return (int((crafted[:, up] > hi[up]).sum()) + int((crafted[:, down] < lo[down]).sum())) / moved


@on_any_array
def trim_attack(ctx: AttackContext):
    """The (c, d) sent updates of the trim attack; fills ctx.metrics with beyond_extremes (and
    direction_agreement for partial knowledge) when measuring. The CPU and CUDA kernels craft
    the same values."""
    U, opts, backend = ctx.updates, ctx.options, ctx.backend
    ids = ctx.compromised_ids()
    if ctx.knowledge == "full":
        s = _deviation_direction(ctx) if opts.goal == "deviation" else direction.full_knowledge(ctx)
        base = ctx.global_model if opts.trim_reference == "model" else None
        crafted, used = backend.craft(U, ctx.benign().tolist(), "trim_full", ids, ctx.seed, ctx.round,
                                      direction=s, base=base, b=opts.b)
    else:
        if opts.goal == "deviation":
            raise ValueError("the trim attack's deviation goal needs full knowledge (the benign extremes)")
        crafted, used = backend.craft(U, ctx.compromised.tolist(), "trim_partial", ids, ctx.seed, ctx.round,
                                      sigma=opts.sigma)
    if ctx.measure:
        ctx.metrics["beyond_extremes"] = beyond_benign_extremes(ctx, crafted, used)
        if ctx.knowledge == "partial":
            ctx.metrics["direction_agreement"] = direction.agreement(ctx, used, direction.full_knowledge(ctx))
    return crafted
