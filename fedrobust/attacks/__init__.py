"""The attacks of Fang et al. (USENIX Security 2020) and the paper's baselines, on the
simulation's attack hook (SPEC sections 3 to 7, 10, 11, 13).

    ATTACKS["krum"](ctx)  -> (c, d) rows replacing ctx.updates[ctx.compromised]

`ATTACKS` is the registry: one `AttackEntry` per name (callable as the attack itself), with
what the settings and the round loop need to know of it.

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

import dataclasses
from typing import Any, Dict, Optional

from fedrobust.attacks.baselines import flip_labels, gaussian, no_attack
from fedrobust.attacks.context import (
    DIRECTIONS,
    GOALS,
    ON_FAILURE,
    TRIM_REFERENCES,
    Attack,
    AttackContext,
    AttackOptions,
)
from fedrobust.attacks.krum import KrumPool, krum_attack
from fedrobust.attacks.trim import trim_attack


@dataclasses.dataclass(frozen=True)
class AttackEntry:
    """One attack of the registry; calling it runs the attack.

    function:      (AttackContext) -> the (c, d) rows the compromised workers send.
    summary:       one line for help texts.
    poisons_labels: a data-poisoning attack: the compromised workers train on flipped labels
                   and send their updates as they are (the round loop skips `function`).
    crafted:       crafts against a rule the attacker assumes, with full or partial knowledge
                   (the settings check that rule's requirements).
    assumed_rule:  the rule it crafts against unless `attack_rule` is set; None: the server's.
    """

    name: str
    function: Attack
    summary: str
    poisons_labels: bool = False
    crafted: bool = False
    assumed_rule: Optional[str] = None

    def __call__(self, ctx: AttackContext) -> Any:
        return self.function(ctx)


ATTACKS: Dict[str, AttackEntry] = {entry.name: entry for entry in (
    AttackEntry("none", no_attack, "the genuine updates"),
    AttackEntry("gaussian", gaussian, "per-coordinate Gaussian fitted on all m updates"),
    AttackEntry("labelflip", no_attack, "the compromised workers train on labels L - 1 - l", poisons_labels=True),
    AttackEntry("krum", krum_attack, "Fang et al.'s attack on Krum", crafted=True, assumed_rule="krum"),
    AttackEntry("trim", trim_attack, "Fang et al.'s attack on trimmed mean and median", crafted=True),
)}

__all__ = ["ATTACKS", "Attack", "AttackEntry", "AttackContext", "AttackOptions", "DIRECTIONS", "GOALS", "KrumPool",
           "ON_FAILURE", "TRIM_REFERENCES", "flip_labels", "gaussian", "krum_attack", "no_attack", "trim_attack"]
