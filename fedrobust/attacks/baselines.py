"""The paper's baseline attacks (SPEC 7): Gaussian and label flipping, and no attack."""
from __future__ import annotations

import numpy as np

from fedrobust.attacks.context import AttackContext, on_any_array


@on_any_array
def no_attack(ctx: AttackContext) -> np.ndarray:
    """The compromised workers send their genuine updates."""
    return ctx.updates[ctx.compromised]


@on_any_array
def gaussian(ctx: AttackContext) -> np.ndarray:
    """Each compromised worker sends, per coordinate, a draw from N(mu_j, sigma_j^2) fitted
    (mean, population variance) on the j-th values of all m before-attack updates."""
    U = ctx.updates
    crafted, _ = ctx.backend.craft(U, list(range(U.shape[0])), "gaussian", ctx.compromised_ids(), ctx.seed,
                                   ctx.round)
    return crafted


def flip_labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Label flipping (a data poisoning attack): l -> L - 1 - l."""
    return (num_classes - 1 - np.asarray(y)).astype(np.asarray(y).dtype)
