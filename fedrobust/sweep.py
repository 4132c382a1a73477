"""Sweeps: a grid of cells (rows x columns, each cell the settings of one simulation) run for
several seeds, one results directory per cell and seed, and the table of their final test
errors as mean +- std over the seeds.

The paper's presets (fedrobust.experiments) and a user's own grid (`fedrobust sweep
GRID.toml`) are both a `Grid`, run by `run_grid`:

    OUT/<row>--<column>/seed-<k>/   one run's results directory (fedrobust.results)
    OUT/table.json, table.csv       per cell: mean, std, trials, seeds, settings, metrics
    OUT/table.md                    the table as printed

A cell and seed whose summary.json holds exactly the requested settings is read back, not
rerun; any other directory is handed to the simulation, which continues a run of the same
settings (extending it to more rounds) and refuses one of other settings, naming them, so
a stale result is never reused. `shard = (i, n)` runs every n-th cell (cells i, i + n, ...,
counted from 1), so a grid can be split over processes or machines; the table then shows
the cells finished so far (run again with `collect=True` once all are done).

A GRID.toml:

    name = "rules-vs-attacks"
    seeds = 3                 # seeds 0, 1, 2; or a list: [0, 5, 9]
    rows = ["rule"]           # the settings whose values name the rows (default: all but
    columns = ["attack"]      #   the last list-valued one); and the columns (the last)
    [settings]                # every setting of `fedrobust run`; a list gives one cell per value
    dataset = "digits"
    rule = ["median", "trimmed_mean"]
    attack = ["none", "trim"]
    rounds = 50

List-valued settings expand into their Cartesian product, in the order written.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from fedrobust.config import Config
from fedrobust.executors import Executor, Run, RunsFailed, Serial, execute
from fedrobust.results import RunDirectory, write_json, write_text

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of a grid: its row and column labels and its settings (Config fields)."""

    row: str
    column: str
    settings: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Figure:
    """How a grid is drawn: one line per row, the columns at the x values `x` (by column
    label), the final test error's mean with its std as error bars."""

    x_label: str
    x: Dict[str, float]
    log_x: bool = False


@dataclasses.dataclass(frozen=True)
class Grid:
    """Cells, the settings they share (`base`, under each cell's own) and the seeds each runs
    for. `paper`: published values by (row, column), shown beside ours; `figure`: drawn as
    OUT/figure.png when set."""

    name: str
    cells: Tuple[Cell, ...]
    base: Dict[str, Any] = dataclasses.field(default_factory=dict)
    seeds: Tuple[int, ...] = (0,)
    paper: Dict[Tuple[str, str], float] = dataclasses.field(default_factory=dict)
    description: str = ""
    figure: Optional[Figure] = None
    key: str = "final_test_error"  # what the table shows: "final_test_error" or "best_test_error"
    not_run: Dict[str, str] = dataclasses.field(default_factory=dict)  # column -> why no cell runs it
    column_order: Tuple[str, ...] = ()  # the columns' order, not_run ones included; () = as the cells give them

    def __post_init__(self) -> None:
        cells = set(_unique(c.column for c in self.cells))
        if cells & set(self.not_run):
            raise ValueError(f"grid {self.name}: not_run columns {sorted(cells & set(self.not_run))} have cells")
        if self.column_order and set(self.column_order) != cells | set(self.not_run):
            raise ValueError(f"grid {self.name}: column_order {list(self.column_order)} must list every column "
                             f"once: {sorted(cells | set(self.not_run))}")

    def with_seeds(self, seeds: Sequence[int]) -> Grid:
        return dataclasses.replace(self, seeds=tuple(seeds))

    def rows(self) -> List[str]:
        return _unique(c.row for c in self.cells)

    def columns(self) -> List[str]:
        if self.column_order:
            return list(self.column_order)
        return _unique(c.column for c in self.cells) + list(self.not_run)


def seeds_from(value: Any, where: str = "seeds") -> Tuple[int, ...]:
    """A count n (seeds 0 .. n - 1) or a list of distinct non-negative seeds."""
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise ValueError(f"{where}: expected a count or a list of seeds, got {value!r}")
    seeds = list(range(value)) if isinstance(value, int) else list(value)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"{where}: expected at least one seed, each an integer >= 0, got {value!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: a seed appears twice in {seeds}")
    return tuple(seeds)


def grid_from_table(table: Dict[str, Any], name: str = "sweep") -> Grid:
    """A Grid from a GRID.toml's table (see the module docstring)."""
    known = {"name", "seeds", "rows", "columns", "settings"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in the grid; expected {sorted(known)}")
    settings = table.get("settings")
    if not isinstance(settings, dict) or not settings:
        raise ValueError("the grid needs a [settings] table with at least one setting")
    if "seed" in settings or "out" in settings:
        raise ValueError("[settings] may not hold 'seed' or 'out': give seeds = N (or a list) at the top, "
                         "and the directory with --out")
    Config.from_dict({k: v for k, v in settings.items() if not isinstance(v, list)})  # names every unknown
    swept = [k for k, v in settings.items() if isinstance(v, list)]
    for k in swept:
        if not settings[k]:
            raise ValueError(f"setting {k!r}: an empty list gives no cells")
    rows = _names(table.get("rows", swept[:-1]), "rows", swept)
    columns = _names(table.get("columns", swept[-1:]), "columns", swept)
    if set(rows) & set(columns):
        raise ValueError(f"a setting cannot name both rows and columns: {sorted(set(rows) & set(columns))}")
    unnamed = [k for k in swept if k not in rows and k not in columns]
    if unnamed:
        raise ValueError(f"list-valued setting(s) {unnamed} name neither rows nor columns; add them to "
                         "rows = [...] or columns = [...]")
    base = {k: v for k, v in settings.items() if k not in swept}
    cells = []
    for values in itertools.product(*(settings[k] for k in swept)):
        chosen = dict(zip(swept, values))
        cells.append(Cell(_label(chosen, rows), _label(chosen, columns), chosen))
    return Grid(name=str(table.get("name", name)), cells=tuple(cells), base=base,
                seeds=seeds_from(table.get("seeds", 1)))


def read_grid(path: str) -> Grid:
    """The Grid of a GRID.toml file."""
    from fedrobust.config import read_toml

    name = os.path.splitext(os.path.basename(path))[0]
    try:
        return grid_from_table(read_toml(path), name)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def cell_dir(out: str, cell: Cell, seed: int) -> str:
    name = f"{cell.row}--{cell.column}".replace(" ", "_").replace("/", "_")
    return os.path.join(out, name, f"seed-{seed}")


Job = Tuple[int, Cell, int, Config]  # (the cell's index in the grid, the cell, the seed, its settings)


def configs(grid: Grid, out: str, overrides: Optional[Dict[str, Any]] = None) -> List[Job]:
    """Every (cell index, cell, seed, Config), validated, in the grid's order (cells, then seeds)."""
    places = [(c.row, c.column) for c in grid.cells]
    repeated = sorted({p for p in places if places.count(p) > 1})
    if repeated:
        raise ValueError(f"grid {grid.name!r}: two cells share the row and column {repeated[0]}")
    jobs = []
    for number, cell in enumerate(grid.cells):
        for seed in grid.seeds:
            values = dict(grid.base, **cell.settings, **(overrides or {}), seed=seed, out=cell_dir(out, cell, seed))
            config = Config.from_dict(values)
            try:
                config.validate()
            except ValueError as e:
                raise ValueError(f"cell {cell.row} / {cell.column}: {e}") from None
            jobs.append((number, cell, seed, config))
    return jobs


def finished_summary(config: Config) -> Optional[Dict[str, Any]]:
    """The summary of a finished run of exactly `config` in config.out, else None."""
    directory = RunDirectory(config.out)
    summary = directory.read_summary()
    if summary is None:
        return None
    saved = directory.read_config().get("config", {})
    wanted = dataclasses.asdict(config)
    return summary if all(saved.get(k) == v for k, v in wanted.items() if k != "out") else None


def run_grid(grid: Grid, out: str, overrides: Optional[Dict[str, Any]] = None,
             shard: Tuple[int, int] = (1, 1), collect: bool = False, progress: bool = True,
             log: Log = lambda s: print(s, file=sys.stderr), executor: Optional[Executor] = None) -> Dict[str, Any]:
    """Run (or read back) the grid's cells of this shard for every seed, then write the table
    of every cell finished so far (OUT/table.json, table.csv, table.md) and return it.
    `collect`: run nothing, only gather. Every cell's settings are checked before any runs.
    `executor`: where the runs go (fedrobust.executors: Serial, the default, Pool or Ray). A
    run that fails does not stop the others: RunsFailed lists them once the table is written."""
    index, count = shard
    if not (1 <= index <= count):
        raise ValueError(f"shard: expected i/n with 1 <= i <= n, got {index}/{count}")
    jobs = configs(grid, out, overrides)
    os.makedirs(out, exist_ok=True)
    mine = [job for job in jobs if job[0] % count == index - 1]
    failed: Optional[RunsFailed] = None
    if not collect:
        runs = []
        for k, (_, cell, seed, config) in enumerate(mine, 1):
            where = f"[{k}/{len(mine)}] {cell.row} / {cell.column}, seed {seed}"
            summary = finished_summary(config)
            if summary is not None:
                log(f"{where}: done before, final test error {summary['final_test_error']:.4f}")
            else:
                runs.append(Run(where, dataclasses.asdict(config)))
        try:
            execute(runs, executor or Serial(progress), log)
        except RunsFailed as e:  # the table of what finished is still written
            failed = e
    table = collect_table(grid, jobs)
    write_table(out, table)
    if grid.figure is not None:
        from fedrobust.plotting import plot_grid

        try:
            table["figure_png"] = plot_grid(table, os.path.join(out, "figure.png"))
        except ImportError as e:
            log(f"no figure: {e}")
    if failed is not None:
        failed.table = table
        raise failed
    return table


def collect_table(grid: Grid, jobs: List[Job]) -> Dict[str, Any]:
    """The table of the finished runs among `jobs`: per cell the mean and std (over the
    seeds, sample std; 0 for one seed) of the final and best test errors and of the attack
    and defense means, the seeds finished and missing, the settings."""
    cells = []
    for number, cell in enumerate(grid.cells):
        runs = [(seed, config, finished_summary(config)) for n, _, seed, config in jobs if n == number]
        done = [(seed, s) for seed, _, s in runs if s is not None]
        entry: Dict[str, Any] = {
            "row": cell.row, "column": cell.column, "trials": len(done), "seeds": [seed for seed, _ in done],
            "missing_seeds": [seed for seed, _, s in runs if s is None],
            "settings": {k: v for k, v in dataclasses.asdict(runs[0][1]).items() if k not in ("seed", "out")},
            "dirs": [config.out for _, config, _ in runs], "paper": grid.paper.get((cell.row, cell.column))}
        for key in ("final_test_error", "best_test_error"):
            entry[key] = _mean_std([s[key] for _, s in done])
        for group in ("attack", "defense"):
            entry[group] = _metric_means([s.get(group) for _, s in done])
        cells.append(entry)
    return {"grid": grid.name, "description": grid.description, "rows": grid.rows(), "columns": grid.columns(),
            "seeds": list(grid.seeds), "cells": cells, "key": grid.key, "not_run": dict(grid.not_run),
            "paper_not_run": {f"{row} / {column}": value for (row, column), value in grid.paper.items()
                              if column in grid.not_run},
            "figure": None if grid.figure is None else dataclasses.asdict(grid.figure)}


def format_table(table: Dict[str, Any], key: Optional[str] = None) -> str:
    """The grid as a markdown table: mean +- std of `key` (default: the table's own, the final
    test error) over the finished seeds, the paper's value in parentheses where known, "n/N"
    where only n of N seeds are done, blank where the grid has no such cell, "-" where none is
    done, "not run" in a column the grid does not run (its reason under the table)."""
    key = key or table.get("key", "final_test_error")
    by_place = {(c["row"], c["column"]): c for c in table["cells"]}
    not_run = table.get("not_run", {})
    total = len(table["seeds"])
    lines = ["| | " + " | ".join(table["columns"]) + " |", "|---" * (len(table["columns"]) + 1) + "|"]
    for row in table["rows"]:
        texts = []
        for column in table["columns"]:
            cell = by_place.get((row, column))
            if column in not_run:
                paper = table.get("paper_not_run", {}).get(f"{row} / {column}")
                texts.append("not run" if paper is None else f"not run (paper {paper:.2f})")
            else:
                texts.append("" if cell is None else _cell_text(cell, key, total))
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    for reason in _unique(not_run.values()):
        lines.append(f"\nNot run ({', '.join(c for c, r in not_run.items() if r == reason)}): {reason}")
    return "\n".join(lines)


def write_table(out: str, table: Dict[str, Any]) -> None:
    """OUT/table.json, table.csv and table.md, each written atomically."""
    write_json(os.path.join(out, "table.json"), table)
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["row", "column", "final_test_error_mean", "final_test_error_std", "best_test_error_mean",
                     "best_test_error_std", "trials", "seeds", "paper"])
    for c in table["cells"]:
        fe, be = c["final_test_error"], c["best_test_error"]
        writer.writerow([c["row"], c["column"], _csv(fe["mean"]), _csv(fe["std"]), _csv(be["mean"]),
                         _csv(be["std"]), c["trials"], " ".join(map(str, c["seeds"])), _csv(c["paper"])])
    write_text(os.path.join(out, "table.csv"), rows.getvalue())
    write_text(os.path.join(out, "table.md"), format_table(table) + "\n")


def _cell_text(cell: Dict[str, Any], key: str, total: int) -> str:
    value = cell[key]
    if cell["trials"] == 0:
        return "-"
    text = f"{value['mean']:.3f}" if cell["trials"] == 1 else f"{value['mean']:.3f} ± {value['std']:.3f}"
    if cell["trials"] < total:
        text += f" ({cell['trials']}/{total} seeds)"
    if cell.get("paper") is not None:
        text += f" (paper {cell['paper']:.2f})"
    return text


def _mean_std(values: List[Any]) -> Dict[str, Optional[float]]:
    """Mean and sample std of the finite numbers among `values` (None where there are none)."""
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None}
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
    return {"mean": mean, "std": std}


def _metric_means(groups: List[Optional[Dict[str, Any]]]) -> Optional[Dict[str, Dict[str, Optional[float]]]]:
    """Per numeric metric of the summaries' attack / defense entries: mean and std over the runs."""
    present = [g for g in groups if isinstance(g, dict)]
    if not present:
        return None
    keys = _unique(k for g in present for k, v in g.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    return {k: _mean_std([g[k] for g in present if k in g]) for k in keys}


def _names(value: Any, what: str, swept: List[str]) -> List[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or any(n not in swept for n in names):
        raise ValueError(f"{what}: expected list-valued settings among {swept}, got {value!r}")
    return names


def _label(chosen: Dict[str, Any], names: List[str]) -> str:
    return ", ".join(f"{chosen[n]}" for n in names) if names else "all"


def _csv(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _unique(values) -> List[Any]:
    seen: List[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen
