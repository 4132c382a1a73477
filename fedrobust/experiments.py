"""The paper's experiments as presets: `fedrobust reproduce NAME` runs one with the sweep
engine (fedrobust.sweep), the same one `fedrobust sweep GRID.toml` runs a user's grid with.

Every preset is data: its cells (row, column, settings), the settings they share (the
paper's defaults below), its default number of trials (seeds 0 .. N - 1) and the published
values SPEC section 9 gives. `PRESETS[name]()` returns its Grid.

Presets (MNIST, multi-class LR, the paper's defaults: m = 100, c = 20, q = 0.5, 500 rounds,
batch 32, beta = c, Krum on plain Euclidean distances as in the paper's text; the
full-knowledge direction is the sign of the sum of all updates, SPEC 13 item 4):

* ``table2a``  rules (Krum, trimmed mean, median) by attacks (none, Gaussian, label
               flipping, partial and full knowledge); the partial / full columns run the
               attack on the row's rule (the Krum attack on Krum, the trim attack on the
               others).
* ``attacks``  table2a plus the mean row (the trim attack on the mean, as in Table 5) and
               a column with the paper's literal full-knowledge direction (the sign of the
               rule's own before-attack output).
* ``table4``   transfer (alias ``transfer``): partial-knowledge attacks crafted for one rule
               (rows: none, the Krum attack, the trim attack assuming trimmed mean) against
               the rule the server runs (columns).
* ``table6``   defenses: Krum, trimmed mean and median, each without a defense and with
               ERR, LFR and Union (rows), against no attack and Table 4's partial-knowledge
               Krum and trim attacks (columns); each cell's summary holds its removals.
* ``table7b``  Bulyan (c = 20, so m >= 83 holds) under no attack and the partial- and
               full-knowledge Krum attacks.
* ``table8``   the directed deviation goal (the paper's attacks) against Appendix B's
               deviation goal, full knowledge, for each rule with its attack.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

from fedrobust.sweep import Cell, Grid

PAPER_DEFAULTS: Dict[str, Any] = dict(dataset="mnist", model="lr", workers=100, compromised=20, q=0.5,
                                      rounds=500, batch_size=32, eval_every=50, krum_distance="plain")

RULE_ATTACK = {"krum": "krum", "trimmed_mean": "trim", "median": "trim", "mean": "trim", "bulyan": "krum"}
RULES = ("krum", "trimmed_mean", "median")

# Seconds per round of one cell on this project's 2-core machine (MNIST LR, m = 100, the
# paper's defaults; measured: the attacks grid, 22 cells of 500 rounds, took 5 minutes), and
# the factor a defense adds (m + 1 candidate models per round).
SECONDS_PER_ROUND = {"lr": 0.027}
DEFENSE_FACTOR = 3.0


def _attack_columns(rule: str) -> List[Tuple[str, Dict[str, Any]]]:
    attack = RULE_ATTACK[rule]
    return [("none", dict(attack="none")), ("gaussian", dict(attack="gaussian")),
            ("labelflip", dict(attack="labelflip")),
            ("partial", dict(attack=attack, knowledge="partial")),
            ("full", dict(attack=attack, knowledge="full"))]


def table2a() -> Grid:
    cells = [Cell(rule, column, dict(rule=rule, **settings)) for rule in RULES
             for column, settings in _attack_columns(rule)]
    return Grid("table2a", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(5)),
                description="Table 2a: MNIST, LR; rules x attacks (final test error)")


def attacks() -> Grid:
    cells = []
    for rule in RULES + ("mean",):
        columns = _attack_columns(rule)
        if rule == "mean":  # the paper's mean row (Table 5) has the model-poisoning attacks only
            columns = [c for c in columns if c[0] not in ("gaussian", "labelflip")]
        columns.append(("full, direction rule", dict(attack=RULE_ATTACK[rule], knowledge="full", direction="rule")))
        cells += [Cell(rule, column, dict(rule=rule, **settings)) for column, settings in columns]
    return Grid("attacks", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(3)),
                description="MNIST, LR; rules x attacks, with the mean and the paper's literal direction")


TRANSFER_ROWS = [("no attack", dict(attack="none")),
                 ("krum attack", dict(attack="krum", knowledge="partial", attack_rule="krum")),
                 ("trim attack", dict(attack="trim", knowledge="partial", attack_rule="trimmed_mean"))]
TABLE4_PAPER = {("no attack", "krum"): 0.14, ("no attack", "trimmed_mean"): 0.12, ("no attack", "median"): 0.13,
                ("krum attack", "krum"): 0.70, ("krum attack", "trimmed_mean"): 0.15,
                ("krum attack", "median"): 0.18, ("trim attack", "krum"): 0.14,
                ("trim attack", "trimmed_mean"): 0.25, ("trim attack", "median"): 0.20}


def table4() -> Grid:
    cells = [Cell(row, rule, dict(rule=rule, **settings)) for row, settings in TRANSFER_ROWS for rule in RULES]
    return Grid("table4", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(10)), paper=TABLE4_PAPER,
                description="Table 4: transfer of partial-knowledge attacks (rows: crafted for; columns: "
                            "the server's rule)")


def table6() -> Grid:
    cells = [Cell(f"{rule}, {defense}", column, dict(rule=rule, defense=defense, **settings))
             for rule in RULES for defense in ("none", "err", "lfr", "union")
             for column, settings in TRANSFER_ROWS]
    return Grid("table6", tuple(cells), PAPER_DEFAULTS, seeds=(0,),
                description="Table 6: the defenses ERR, LFR and Union (final test error; each cell's "
                            "summary holds its detection rate and removals)")


def table7b() -> Grid:
    columns = [("none", dict(attack="none")), ("partial", dict(attack="krum", knowledge="partial")),
               ("full", dict(attack="krum", knowledge="full"))]
    cells = [Cell("bulyan", column, dict(rule="bulyan", **settings)) for column, settings in columns]
    return Grid("table7b", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(10)),
                description="Table 7b: Bulyan under the Krum attacks")


def table8() -> Grid:
    cells = [Cell(rule, goal, dict(rule=rule, attack=RULE_ATTACK[rule], knowledge="full", goal=key))
             for rule in RULES for goal, key in (("directed deviation", "directed"), ("deviation", "deviation"))]
    return Grid("table8", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(5)),
                description="Table 8: the directed deviation goal against Appendix B's deviation goal "
                            "(full knowledge)")


PRESETS: Dict[str, Callable[[], Grid]] = {"table2a": table2a, "attacks": attacks, "table4": table4,
                                          "table6": table6, "table7b": table7b, "table8": table8}
ALIASES = {"transfer": "table4"}


def preset(name: str) -> Grid:
    """The Grid of preset `name` (or an alias); ValueError listing the presets otherwise."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))} "
                         f"(aliases: {', '.join(f'{a} = {b}' for a, b in ALIASES.items())})")
    return PRESETS[key]()


def estimated_seconds(grid: Grid, rounds: int = 0) -> float:
    """The preset's estimated wall time on this project's 2-core machine (SECONDS_PER_ROUND)."""
    total = 0.0
    for cell in grid.cells:
        settings = dict(grid.base, **cell.settings)
        per_round = SECONDS_PER_ROUND.get(settings.get("model", "lr"), SECONDS_PER_ROUND["lr"])
        if settings.get("defense", "none") != "none":
            per_round *= DEFENSE_FACTOR
        total += per_round * (rounds or settings.get("rounds", 200)) * len(grid.seeds)
    return total


def describe_presets() -> str:
    """One line per preset: name, cells x trials, the estimated time, what it is."""
    lines = []
    for name in PRESETS:
        grid = PRESETS[name]()
        minutes = estimated_seconds(grid) / 60
        lines.append(f"{name:9s} {len(grid.cells):3d} cells x {len(grid.seeds):2d} trials  ~{minutes:5.0f} min  "
                     f"{grid.description}")
    return "\n".join(lines)
