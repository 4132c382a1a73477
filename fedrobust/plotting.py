"""Figures of results directories and of sweeps' tables (needs matplotlib)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from fedrobust.results import read_rounds


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("figures need matplotlib: pip install matplotlib (or fedrobust[plot])") from None
    return plt


def plot_grid(table: Dict[str, Any], path: str) -> str:
    """A sweep's table (fedrobust.sweep) with a figure spec as a PNG: one line with markers per
    row, each column at its x value, the mean of the table's key (the final test error) over
    the seeds with the std as error bars; the legend beside the axes, never over the data. Returns the path."""
    plt = _pyplot()
    spec, key = table["figure"], table.get("key", "final_test_error")
    fig, ax = plt.subplots(figsize=(7, 4))
    markers = "osD^v<>ph*"
    for k, row in enumerate(table["rows"]):
        points = sorted((spec["x"][c["column"]], c[key]["mean"], c[key]["std"])
                        for c in table["cells"] if c["row"] == row and c[key]["mean"] is not None)
        if not points:
            continue
        xs, ys, es = zip(*points)
        ax.errorbar(xs, ys, yerr=es, marker=markers[k % len(markers)], capsize=3, label=row)
    if spec.get("log_x"):
        ax.set_xscale("log")
    ax.set_xlabel(spec["x_label"])
    ax.set_ylabel(key.replace("_", " "))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    trials = sorted({c["trials"] for c in table["cells"] if c["trials"]})
    ax.set_title(f"{table.get('description') or table['grid']}\nmean ± std over {'/'.join(map(str, trials))} seeds",
                 fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def seed_directories(directory: str) -> List[str]:
    """The seed-<k> results directories of a sweep's cell directory (fedrobust.sweep), in
    seed order; [] for anything else."""
    if not os.path.isdir(directory):
        return []
    seeds = [e for e in os.listdir(directory) if e.startswith("seed-") and e[5:].isdigit()
             and os.path.isdir(os.path.join(directory, e))]
    return [os.path.join(directory, e) for e in sorted(seeds, key=lambda e: int(e[5:]))]


def _curve(directory: str) -> Dict[int, float]:
    rounds = read_rounds(directory)
    if not rounds:
        raise ValueError(f"{directory}/rounds.jsonl has no evaluated rounds yet")
    return {r["round"]: r["test_error"] for r in rounds if r.get("test_error") is not None}


def _mean_curve(directories: List[str]):
    """(rounds, means, stds) over the directories, at the rounds every one of them evaluated."""
    curves = [_curve(d) for d in directories]
    common = sorted(set.intersection(*(set(c) for c in curves)))
    if not common:
        raise ValueError(f"{', '.join(directories)}: no round evaluated in all of them")
    means, stds = [], []
    for r in common:
        values = [c[r] for c in curves]
        mu = sum(values) / len(values)
        means.append(mu)
        stds.append((sum((v - mu) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0)
    return common, means, stds


def plot_test_error(directories: List[str], output: Optional[str] = None, mean: bool = False) -> str:
    """Plot test error versus round as a PNG; returns its path. One line per results
    directory; a sweep's cell directory (holding seed-<k> runs) is one line, the mean over its
    seeds with a band of one std; with `mean`, all the directories are seeds of one setting,
    drawn the same way."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = [(f"mean of {len(directories)} runs", directories)] if mean else [
        (os.path.basename(os.path.normpath(d)), seed_directories(d)) for d in directories]
    for (label, seeds), directory in zip(groups, directories):
        if not seeds:  # a run directory
            curve = _curve(directory)
            ax.plot(list(curve), list(curve.values()), label=label)
            continue
        rounds, means, stds = _mean_curve(seeds)
        line, = ax.plot(rounds, means, marker=".", label=f"{label} (mean ± std, {len(seeds)} seeds)")
        ax.fill_between(rounds, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=line.get_color(), alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel("test error")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = output or os.path.join(directories[0], "test_error.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
