"""Experiment grids from the paper, run with `fedrobust reproduce NAME`.

A grid is a list of cells, each a (row, column, settings) triple; every cell is one
simulation written to OUT/<row>--<column>/ (resumable: a cell whose summary.json exists is
read, not rerun; an interrupted cell continues from its checkpoint). The table of final
test errors is printed as markdown and written to OUT/table.csv and OUT/table.json.

Grids (MNIST, multi-class LR, the paper's defaults: m = 100, c = 20, q = 0.5, 500 rounds,
batch 32, beta = c, Krum with plain Euclidean distances as in the paper's text):

* ``attacks``   rules (Krum, trimmed mean, median, and mean) by attacks (none, Gaussian,
                label flipping, partial and full knowledge). The partial / full columns run
                the attack on the row's rule: the Krum attack against Krum, the trim attack
                against trimmed mean, median and mean (as the paper's Tables 3 and 5). The
                full column uses the default direction (sign of the sum of all updates, SPEC
                13 item 4); the last column the paper's literal one (sign of the rule's
                before-attack output).
* ``transfer``  the paper's Table 4: partial-knowledge attacks crafted for one rule (rows:
                none, the Krum attack, the trim attack assuming trimmed mean) against the
                rule the server runs (columns: Krum, trimmed mean, median).
* ``table6``    the paper's Table 6: Krum, trimmed mean and median, each without a defense
                and with ERR, LFR and Union (rows), against no attack and Table 4's
                partial-knowledge Krum and trim attacks (columns); each defended cell's
                summary.json holds its removals and detection rate.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from fedrobust.config import Config
from fedrobust.results import RunDirectory
from fedrobust.simulation import Simulation

Cell = Tuple[str, str, Dict[str, Any]]

PAPER_DEFAULTS: Dict[str, Any] = dict(dataset="mnist", model="lr", workers=100, compromised=20, q=0.5,
                                      rounds=500, batch_size=32, eval_every=50, krum_distance="plain")

RULE_ATTACK = {"krum": "krum", "trimmed_mean": "trim", "median": "trim", "mean": "trim"}


def attacks_grid() -> List[Cell]:
    cells: List[Cell] = []
    for rule in ("krum", "trimmed_mean", "median", "mean"):
        columns = [("none", dict(attack="none")), ("gaussian", dict(attack="gaussian")),
                   ("labelflip", dict(attack="labelflip")),
                   ("partial", dict(attack=RULE_ATTACK[rule], knowledge="partial")),
                   ("full", dict(attack=RULE_ATTACK[rule], knowledge="full")),
                   ("full, direction rule", dict(attack=RULE_ATTACK[rule], knowledge="full", direction="rule"))]
        for column, settings in columns:
            if rule == "mean" and column in ("gaussian", "labelflip"):
                continue  # the paper's mean row (Table 5) has the model-poisoning attacks only
            cells.append((rule, column, dict(rule=rule, **settings)))
    return cells


def transfer_grid() -> List[Cell]:
    rows = [("none", dict(attack="none")),
            ("krum attack", dict(attack="krum", knowledge="partial", attack_rule="krum")),
            ("trim attack", dict(attack="trim", knowledge="partial", attack_rule="trimmed_mean"))]
    return [(row, rule, dict(rule=rule, **settings)) for row, settings in rows
            for rule in ("krum", "trimmed_mean", "median")]


def defenses_grid() -> List[Cell]:
    """The paper's Table 6: each rule without a defense and with ERR, LFR and Union (rows)
    against no attack and the partial-knowledge attacks of Table 4 (columns)."""
    columns = [("none", dict(attack="none")),
               ("krum attack", dict(attack="krum", knowledge="partial", attack_rule="krum")),
               ("trim attack", dict(attack="trim", knowledge="partial", attack_rule="trimmed_mean"))]
    return [(f"{rule}, {defense}", column, dict(rule=rule, defense=defense, **settings))
            for rule in ("krum", "trimmed_mean", "median") for defense in ("none", "err", "lfr", "union")
            for column, settings in columns]


GRIDS: Dict[str, Callable[[], List[Cell]]] = {"attacks": attacks_grid, "transfer": transfer_grid,
                                              "table6": defenses_grid}


def cell_dir(out: str, row: str, column: str) -> str:
    return os.path.join(out, f"{row}--{column}".replace(" ", "_"))


def run_grid(name: str, out: str, data_dir: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None,
             progress: bool = True, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Dict[str, Any]:
    """Run (or read back) every cell of grid `name`; returns {"rows", "columns", "errors",
    "cells"} and writes OUT/table.csv and OUT/table.json."""
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; available: {', '.join(sorted(GRIDS))}")
    cells = GRIDS[name]()
    base = dict(PAPER_DEFAULTS, data_dir=data_dir, **(overrides or {}))
    configs = []
    for row, column, settings in cells:  # validate every cell before running any
        config = Config.from_dict(dict(base, **settings, out=cell_dir(out, row, column)))
        config.validate()
        configs.append((row, column, config))
    os.makedirs(out, exist_ok=True)
    results = []
    for k, (row, column, config) in enumerate(configs, 1):
        summary = RunDirectory(config.out).read_summary()
        if summary is not None:
            log(f"[{k}/{len(configs)}] {row} / {column}: done before, final test error "
                f"{summary['final_test_error']:.4f}")
        else:
            log(f"[{k}/{len(configs)}] {row} / {column}")
            summary = Simulation(config, progress=progress).run()
        results.append({"row": row, "column": column, "out": config.out,
                        "final_test_error": summary["final_test_error"],
                        "best_test_error": summary["best_test_error"],
                        "attack": summary.get("attack"), "config": dataclasses.asdict(config)})
    table = {"grid": name, "rows": _unique(r["row"] for r in results),
             "columns": _unique(r["column"] for r in results), "cells": results}
    _write_table(out, table)
    return table


def _unique(values) -> List[str]:
    seen: List[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _write_table(out: str, table: Dict[str, Any]) -> None:
    with open(os.path.join(out, "table.json"), "w") as f:
        json.dump(table, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "table.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "column", "final_test_error", "best_test_error", "out"])
        for cell in table["cells"]:
            writer.writerow([cell["row"], cell["column"], cell["final_test_error"], cell["best_test_error"],
                             cell["out"]])


def format_table(table: Dict[str, Any], key: str = "final_test_error") -> str:
    """The grid as a markdown table of `key` (blank where a cell is not part of the grid)."""
    values = {(c["row"], c["column"]): c[key] for c in table["cells"]}
    lines = ["| | " + " | ".join(table["columns"]) + " |", "|---" * (len(table["columns"]) + 1) + "|"]
    for row in table["rows"]:
        cells = [f"{values[(row, col)]:.4f}" if (row, col) in values else "" for col in table["columns"]]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
