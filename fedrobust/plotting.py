"""Figures of results directories (needs matplotlib)."""
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
    row, each column at its x value, the final test error's mean over the seeds with the std
    as error bars; the legend beside the axes, never over the data. Returns the path."""
    plt = _pyplot()
    spec = table["figure"]
    fig, ax = plt.subplots(figsize=(7, 4))
    markers = "osD^v<>ph*"
    for k, row in enumerate(table["rows"]):
        points = sorted((spec["x"][c["column"]], c["final_test_error"]["mean"], c["final_test_error"]["std"])
                        for c in table["cells"] if c["row"] == row and c["final_test_error"]["mean"] is not None)
        if not points:
            continue
        xs, ys, es = zip(*points)
        ax.errorbar(xs, ys, yerr=es, marker=markers[k % len(markers)], capsize=3, label=row)
    if spec.get("log_x"):
        ax.set_xscale("log")
    ax.set_xlabel(spec["x_label"])
    ax.set_ylabel("test error")
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


def plot_test_error(directories: List[str], output: Optional[str] = None) -> str:
    """Plot test error versus round, one line per results directory; returns the PNG path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for directory in directories:
        rounds = read_rounds(directory)
        if not rounds:
            raise ValueError(f"{directory}/rounds.jsonl has no evaluated rounds yet")
        ax.plot([r["round"] for r in rounds], [r["test_error"] for r in rounds],
                label=os.path.basename(os.path.normpath(directory)))
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
