"""Figures of results directories (needs matplotlib)."""
from __future__ import annotations

import os
from typing import List, Optional

from fedrobust.results import read_rounds


def plot_test_error(directories: List[str], output: Optional[str] = None) -> str:
    """Plot test error versus round, one line per results directory; returns the PNG path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("fedrobust plot needs matplotlib: pip install matplotlib") from None
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
