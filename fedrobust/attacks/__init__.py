"""The attacks of Fang et al. (USENIX Security 2020) and the paper's baselines, on the
simulation's attack hook (SPEC sections 3 to 7, 10, 11, 13).

    ATTACKS["krum"](ctx)  -> (c, d) rows replacing ctx.updates[ctx.compromised]

* ``none``      the genuine updates;
* ``gaussian``  per-coordinate Gaussian fitted on all m updates (SPEC 7);
* ``labelflip`` data poisoning: the compromised workers train on labels L - 1 - l (the
                simulation flips them; their updates are then sent as they are);
* ``krum``      the attack on Krum (SPEC 5): full or partial knowledge;
* ``trim``      the attack on trimmed mean and median (SPEC 6): full or partial knowledge.

Each attack reads an `AttackContext` (the round's updates, the compromised rows, the
received model, the rule the attacker assumes, the knowledge level, `AttackOptions`) and
writes what it did to ctx.metrics.
"""
from __future__ import annotations

from typing import Dict

from fedrobust.attacks.baselines import flip_labels, gaussian, no_attack
from fedrobust.attacks.context import (DIRECTIONS, GOALS, ON_FAILURE, TRIM_REFERENCES, Attack, AttackContext,
                                       AttackOptions)
from fedrobust.attacks.krum import KrumPool, krum_attack
from fedrobust.attacks.trim import trim_attack

ATTACKS: Dict[str, Attack] = {
    "none": no_attack,
    "gaussian": gaussian,
    "labelflip": no_attack,
    "krum": krum_attack,
    "trim": trim_attack,
}

__all__ = ["ATTACKS", "Attack", "AttackContext", "AttackOptions", "DIRECTIONS", "GOALS", "KrumPool",
           "ON_FAILURE", "TRIM_REFERENCES", "flip_labels", "gaussian", "krum_attack", "no_attack", "trim_attack"]
