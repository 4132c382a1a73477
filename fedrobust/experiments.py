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
* ``table5``   a uniform sample of 6,000 MNIST training examples split IID (q = 0.1) over the
               100 workers: mean, Krum, trimmed mean and median under no attack and the
               partial / full attacks (the trim attack on the mean); the paper's two
               back-gradient data-poisoning columns are shown as not run, with the reason.
* ``table6``   defenses: Krum, trimmed mean and median, each without a defense and with
               ERR, LFR and Union (rows), against no attack and Table 4's partial-knowledge
               Krum and trim attacks (columns); each cell's summary holds its removals.
* ``table7b``  Bulyan (c = 20, so m >= 83 holds) under no attack and the partial- and
               full-knowledge Krum attacks.
* ``table8``   the directed deviation goal (the paper's attacks) against Appendix B's
               deviation goal, full knowledge, for each rule with its attack.

Figures (MNIST, LR unless named; the paper's plotted grids were not recovered, so the x values below
are ours; each is a grid whose rows are the lines and whose columns are the x values, drawn
as OUT/figure.png with the std over the seeds as error bars):

* ``fig2a`` .. ``fig2c``  Krum, trimmed mean, median: test error against the percentage of
               compromised workers (5, 10, 15, 20, 25 %), one line per attack.
* ``fig3a`` .. ``fig3c``  the same against the degree of non-IID q (0.1 = IID for 10
               classes, 0.3, 0.5, 0.7, 0.9).
* ``fig2d`` .. ``fig2f``, ``fig3d`` .. ``fig3f``  the same with the DNN (2,000 rounds, one
               trial by default: hours on a CPU).
* ``fig4a``    median, no attack and the partial trim attack, against the local SGD rounds
               (1, 2, 5, 10).
* ``fig4b``    median, against the number of workers (50, 100, 150, 200), 20 % of them
               compromised.
* ``fig4c``    median, against the workers sampled per round out of 100 (20 .. 100).
* ``fig5a``    trimmed mean, against beta (20, 25, 30, 35, 40, 45; c = 20).
* ``fig5b``    Krum, the partial- and full-knowledge Krum attacks, against epsilon (1e-4 ..
               1, log scale).
* ``fig5c``    each rule with its partial-knowledge attack, against the fraction of rounds
               attacked (0.1, 0.25, 0.5, 0.75, 1).

The parameter studies (fig4, fig5) use the median where the paper names no rule, and
no attack beside the partial-knowledge attack (SPEC 8.5); fig2 and fig3 draw every attack.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

from fedrobust.sweep import Cell, Figure, Grid

PAPER_DEFAULTS: Dict[str, Any] = dict(dataset="mnist", model="lr", workers=100, compromised=20, q=0.5,
                                      rounds=500, batch_size=32, eval_every=50, krum_distance="plain")

RULE_ATTACK = {"krum": "krum", "trimmed_mean": "trim", "median": "trim", "mean": "trim", "bulyan": "krum"}
RULES = ("krum", "trimmed_mean", "median")
DNN_ROUNDS = 2000  # SPEC 8: the DNNs train 2,000 rounds
DNN_SECONDS = 1.1  # MNIST DNN, m = 100, batch 32: 6 rounds took 1.1-1.3 s each

# Seconds per round of one cell on this project's 2-core machine, m = 100, by model (and
# dataset where it matters), scaled by the local rounds and the workers; a defense multiplies
# it (m + 1 candidate models per round; Union on the median halves the rounds per second).
# Measured: MNIST LR, table2a's 75 runs of 500 rounds in 4 min 12 s; the DNN from 6-round runs
# of the paper's settings. ResNet20 on CH-MNIST is not measured (no CH-MNIST file here): no
# estimate.
SECONDS_PER_ROUND: Dict[Tuple[str, str], float] = {
    ("lr", ""): 0.0067, ("dnn", ""): DNN_SECONDS, ("dnn", "breast_cancer"): 0.14}
DEFENSE_FACTOR = 2.5


def seconds_per_round(settings: Dict[str, Any]) -> Optional[float]:
    """The estimated seconds per round of a cell of these settings; None where not measured."""
    model, dataset = settings.get("model", "lr"), settings.get("dataset", "")
    rate = SECONDS_PER_ROUND.get((model, dataset), SECONDS_PER_ROUND.get((model, "")))
    if rate is None:
        return None
    rate *= settings.get("local_rounds", 1) * settings.get("workers", 100) / 100
    return rate * (DEFENSE_FACTOR if settings.get("defense", "none") != "none" else 1.0)


def _attack_columns(rule: str) -> List[Tuple[str, Dict[str, Any]]]:
    attack = RULE_ATTACK[rule]
    return [("none", dict(attack="none")), ("gaussian", dict(attack="gaussian")),
            ("labelflip", dict(attack="labelflip")),
            ("partial", dict(attack=attack, knowledge="partial")),
            ("full", dict(attack=attack, knowledge="full"))]


def table2a() -> Grid:
    cells = [Cell(rule, column, dict(rule=rule, **settings)) for rule in RULES
             for column, settings in _attack_columns(rule)]
    return Grid("table2a", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(30)),
                description="Table 2a: MNIST, LR; rules x attacks (final test error)")


def attacks() -> Grid:
    cells = []
    for rule in RULES + ("mean",):
        columns = _attack_columns(rule)
        if rule == "mean":  # the paper's mean row (Table 5) has the model-poisoning attacks only
            columns = [c for c in columns if c[0] not in ("gaussian", "labelflip")]
        columns.append(("full, direction rule", dict(attack=RULE_ATTACK[rule], knowledge="full", direction="rule")))
        cells += [Cell(rule, column, dict(rule=rule, **settings)) for column, settings in columns]
    return Grid("attacks", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(20)),
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
    return Grid("table4", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(50)), paper=TABLE4_PAPER,
                description="Table 4: transfer of partial-knowledge attacks (rows: crafted for; columns: "
                            "the server's rule)")


TABLE5_COLUMNS = ("none", "single worker (BGA)", "uniform (BGA)", "partial", "full")
TABLE5_NOT_RUN = ("the back-gradient data-poisoning attack (Munoz-Gonzalez et al. 2017) is an optimisation over "
                  "the training data that took the paper 10 days on a GPU for its 240 poisoned examples; "
                  "fedrobust does not implement it; the paper's values are shown")
TABLE5_PAPER = {(rule, column): value for rule, values in (
    ("mean", (0.10, 0.11, 0.15, 0.54, 0.69)), ("krum", (0.23, 0.24, 0.25, 0.85, 0.89)),
    ("trimmed_mean", (0.12, 0.12, 0.13, 0.27, 0.32)), ("median", (0.13, 0.13, 0.14, 0.19, 0.21)))
    for column, value in zip(TABLE5_COLUMNS, values)}


def table5() -> Grid:
    """Table 5: 6,000 uniformly sampled MNIST training examples spread IID over the 100 workers
    (q = 1/L = 0.1: every example goes to a uniformly chosen worker); the mean row runs the trim
    attack (SPEC 9.4)."""
    cells = [Cell(rule, column, dict(rule=rule, **settings)) for rule in ("mean",) + RULES
             for column, settings in _attack_columns(rule) if column in ("none", "partial", "full")]
    return Grid("table5", tuple(cells), dict(PAPER_DEFAULTS, q=0.1, train_examples=6000), seeds=tuple(range(30)),
                paper=TABLE5_PAPER, not_run={c: TABLE5_NOT_RUN for c in TABLE5_COLUMNS[1:3]},
                column_order=TABLE5_COLUMNS,
                description="Table 5: 6,000 MNIST training examples, IID over 100 workers, LR; the model-"
                            "poisoning attacks beside the back-gradient data poisoning (not run)")


def table6() -> Grid:
    cells = [Cell(f"{rule}, {defense}", column, dict(rule=rule, defense=defense, **settings))
             for rule in RULES for defense in ("none", "err", "lfr", "union")
             for column, settings in TRANSFER_ROWS]
    return Grid("table6", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(4)),
                description="Table 6: the defenses ERR, LFR and Union (final test error; each cell's "
                            "summary holds its detection rate and removals)")


def table7b() -> Grid:
    columns = [("none", dict(attack="none")), ("partial", dict(attack="krum", knowledge="partial")),
               ("full", dict(attack="krum", knowledge="full"))]
    cells = [Cell("bulyan", column, dict(rule="bulyan", **settings)) for column, settings in columns]
    return Grid("table7b", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(50)),
                description="Table 7b: Bulyan under the Krum attacks")


def table8() -> Grid:
    cells = [Cell(rule, goal, dict(rule=rule, attack=RULE_ATTACK[rule], knowledge="full", goal=key))
             for rule in RULES for goal, key in (("directed deviation", "directed"), ("deviation", "deviation"))]
    return Grid("table8", tuple(cells), PAPER_DEFAULTS, seeds=tuple(range(50)),
                description="Table 8: the directed deviation goal against Appendix B's deviation goal "
                            "(full knowledge)")


def _figure(name: str, description: str, x_label: str, series: List[Tuple[str, Dict[str, Any]]],
            points: List[Tuple[str, float, Dict[str, Any]]], seeds: int = 20, log_x: bool = False,
            base: Dict[str, Any] = PAPER_DEFAULTS) -> Grid:
    """A figure as a grid: rows = the lines (`series`), columns = the x values (`points`: label,
    x, the settings that give it)."""
    cells = [Cell(line, label, dict(**line_settings, **point_settings))
             for line, line_settings in series for label, _, point_settings in points]
    return Grid(name, tuple(cells), base, seeds=tuple(range(seeds)), description=description,
                figure=Figure(x_label, {label: x for label, x, _ in points}, log_x))


def _attack_lines(rule: str) -> List[Tuple[str, Dict[str, Any]]]:
    return [(column, dict(rule=rule, **settings)) for column, settings in _attack_columns(rule)]


RULE_NAMES = {"krum": "Krum", "trimmed_mean": "trimmed mean", "median": "median"}


# Figures 2 and 3 draw the LR in a-c (20 trials) and the DNN in d-f (SPEC 9.6; 2,000 rounds,
# one trial: about 15 hours per figure on a CPU).
FIGURE_MODELS = {"lr": (PAPER_DEFAULTS, 20), "dnn": (dict(PAPER_DEFAULTS, model="dnn", rounds=DNN_ROUNDS), 1)}


def _fig2(rule: str, letter: str, model: str = "lr") -> Callable[[], Grid]:
    points = [(f"{p} %", float(p), dict(compromised=p)) for p in (5, 10, 15, 20, 25)]  # m = 100
    base, seeds = FIGURE_MODELS[model]
    return lambda: _figure(f"fig2{letter}", f"Figure 2{letter}: MNIST, {model.upper()}, {RULE_NAMES[rule]}; error "
                           "against the compromised workers", "compromised workers (%)", _attack_lines(rule), points,
                           seeds=seeds, base=base)


def _fig3(rule: str, letter: str, model: str = "lr") -> Callable[[], Grid]:
    points = [(f"q = {q}", q, dict(q=q)) for q in (0.1, 0.3, 0.5, 0.7, 0.9)]
    base, seeds = FIGURE_MODELS[model]
    return lambda: _figure(f"fig3{letter}", f"Figure 3{letter}: MNIST, {model.upper()}, {RULE_NAMES[rule]}; error "
                           "against the degree of non-IID", "degree of non-IID q", _attack_lines(rule), points,
                           seeds=seeds, base=base)


def fig4a() -> Grid:
    series = [("none", dict(rule="median", attack="none")),
              ("partial", dict(rule="median", attack="trim", knowledge="partial"))]
    points = [(f"{k} rounds", float(k), dict(local_rounds=k)) for k in (1, 2, 5, 10)]
    return _figure("fig4a", "Figure 4a: MNIST, LR, median; error against the local SGD rounds",
                   "local SGD rounds per global round", series, points, seeds=12)  # 10 local rounds cost 10x


def _trim_lines(rule: str) -> List[Tuple[str, Dict[str, Any]]]:
    """No attack and the partial-knowledge trim attack: the parameter studies' attack (SPEC 8.5)."""
    return [("none", dict(rule=rule, attack="none")),
            ("partial", dict(rule=rule, attack="trim", knowledge="partial"))]


def fig4b() -> Grid:
    points = [(f"m = {m}", float(m), dict(workers=m, compromised=m // 5)) for m in (50, 100, 150, 200)]
    return _figure("fig4b", "Figure 4b: MNIST, LR, median; error against the number of workers "
                   "(20 % compromised)", "workers m", _trim_lines("median"), points)


def fig4c() -> Grid:
    points = [(f"{k} sampled", float(k), dict(sample=k)) for k in (20, 40, 60, 80, 100)]
    return _figure("fig4c", "Figure 4c: MNIST, LR, median; error against the workers sampled per round "
                   "(of 100)", "workers sampled per round", _trim_lines("median"), points)


def fig5a() -> Grid:
    points = [(f"beta = {b}", float(b), dict(beta=b)) for b in (20, 25, 30, 35, 40, 45)]
    return _figure("fig5a", "Figure 5a: MNIST, LR, trimmed mean; error against beta (c = 20)", "beta",
                   _trim_lines("trimmed_mean"), points)


def fig5b() -> Grid:
    series = [("partial", dict(rule="krum", attack="krum", knowledge="partial")),
              ("full", dict(rule="krum", attack="krum", knowledge="full"))]
    points = [(f"eps = {e:g}", e, dict(epsilon=e)) for e in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)]
    return _figure("fig5b", "Figure 5b: MNIST, LR, Krum; error against epsilon", "epsilon", series, points,
                   log_x=True)


def fig5c() -> Grid:
    series = [(RULE_NAMES[rule], dict(rule=rule, attack=RULE_ATTACK[rule], knowledge="partial")) for rule in RULES]
    points = [(f"{f:g} attacked", f, dict(attack_fraction=f)) for f in (0.1, 0.25, 0.5, 0.75, 1.0)]
    return _figure("fig5c", "Figure 5c: MNIST, LR; error against the fraction of rounds attacked (partial "
                   "knowledge)", "fraction of rounds attacked", series, points)


# The DNN tables (SPEC 8: 2,000 rounds for the DNNs; batch 64 on Fashion-MNIST; the
# paper's other defaults). Hours per trial on a CPU: run them with --device cuda or split
# them with --shard over machines.


def _table2(name: str, description: str, **settings: Any) -> Callable[[], Grid]:
    def grid() -> Grid:
        base = dict(PAPER_DEFAULTS, rounds=DNN_ROUNDS, **settings)
        cells = [Cell(rule, column, dict(rule=rule, **s)) for rule in RULES for column, s in _attack_columns(rule)]
        return Grid(name, tuple(cells), base, seeds=(0,), description=description)
    return grid


TABLE3_PAPER = {(rule, column): value for rule, values in (
    ("krum", (0.10, 0.10, 0.09, 0.69, 0.70)), ("trimmed_mean", (0.06, 0.06, 0.07, 0.12, 0.18)),
    ("median", (0.06, 0.06, 0.06, 0.11, 0.32))) for column, value in zip(
    ("none", "gaussian", "labelflip", "partial", "full"), values)}


def table3() -> Grid:
    """Table 3: table2b's runs (the same cells and settings: give the same --out to read them
    back) shown with the best global model's test error (the master keeps the best)."""
    grid = _table2("table3", "", model="dnn")()
    return dataclasses.replace(grid, paper=TABLE3_PAPER, key="best_test_error",
                               description="Table 3: MNIST, DNN; the lowest test error of the global model")


PRESETS: Dict[str, Callable[[], Grid]] = {
    "table2a": table2a, "attacks": attacks, "table4": table4, "table5": table5, "table6": table6, "table7b": table7b,
    "table8": table8,
    "table2b": _table2("table2b", "Table 2b: MNIST, DNN; rules x attacks", model="dnn"),
    "table2c": _table2("table2c", "Table 2c: Fashion-MNIST, DNN, batch 64; rules x attacks", model="dnn",
                       dataset="fashion_mnist", batch_size=64),
    "table2d": _table2("table2d", "Table 2d: CH-MNIST (hmnist_64_64_L.csv in --data-dir), ResNet20; rules x "
                       "attacks", model="resnet20", dataset="chmnist"),
    "table2e": _table2("table2e", "Table 2e: Breast Cancer, DNN; rules x attacks", model="dnn",
                       dataset="breast_cancer"),
    "table3": table3,
    **{f"fig2{letter}": _fig2(rule, letter) for rule, letter in zip(RULES, "abc")},
    **{f"fig2{letter}": _fig2(rule, letter, "dnn") for rule, letter in zip(RULES, "def")},
    **{f"fig3{letter}": _fig3(rule, letter) for rule, letter in zip(RULES, "abc")},
    **{f"fig3{letter}": _fig3(rule, letter, "dnn") for rule, letter in zip(RULES, "def")},
    "fig4a": fig4a, "fig4b": fig4b, "fig4c": fig4c, "fig5a": fig5a, "fig5b": fig5b, "fig5c": fig5c}
ALIASES = {"transfer": "table4"}


def preset(name: str) -> Grid:
    """The Grid of preset `name` (or an alias); ValueError listing the presets otherwise."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))} "
                         f"(aliases: {', '.join(f'{a} = {b}' for a, b in ALIASES.items())})")
    return PRESETS[key]()


def estimated_seconds(grid: Grid, overrides: Optional[Dict[str, Any]] = None) -> Optional[float]:
    """The grid's estimated wall time on this project's 2-core machine (SECONDS_PER_ROUND);
    None where a cell's rate is not measured."""
    total = 0.0
    for cell in grid.cells:
        settings = dict(grid.base, **cell.settings, **(overrides or {}))
        rate = seconds_per_round(settings)
        if rate is None:
            return None
        total += rate * settings.get("rounds", 200) * len(grid.seeds)
    return total


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def describe_presets() -> str:
    """One line per preset: name, cells x trials, the estimated time, what it is."""
    lines = []
    for name in PRESETS:
        grid = PRESETS[name]()
        lines.append(f"{name:9s} {len(grid.cells):3d} cells x {len(grid.seeds):2d} trials  "
                     f"~{format_duration(estimated_seconds(grid)):>7s}  {grid.description}")
    return "\n".join(lines)
