"""Plots of finished cells, written as PNG next to the run (matplotlib is an optional extra).

Plugins draw their own figures with :func:`pyplot` and register them with ``cli.add_plot``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aubench.errors import ConfigError, DatasetError

__all__ = ["pyplot", "reliability_histogram"]


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a one-line install hint (plots are an optional extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("plots need matplotlib: pip install 'aubench[plots]'") from exc
    return plt


def reliability_histogram(run_dir: Path, out: Path | None = None, bins: int = 20) -> Path:
    """Per-AU histograms of predicted probabilities, positives in green and negatives in red (thesis
    Fig. 4.4): over-confidence in the majority class shows as mass of positives at 0."""
    run_dir = Path(run_dir)
    path = run_dir / "predictions.npz"
    if not path.is_file():
        raise DatasetError(f"{path} not found; point at a finished cell folder (one with record.json)")
    pred = np.load(path)
    probs, labels, mask, aus = pred["probs"], pred["labels"], pred["mask"], pred["aus"]
    plt = pyplot()
    cols = min(4, len(aus))
    rows = -(-len(aus) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    edges = np.linspace(0, 1, bins + 1)
    for j, au in enumerate(aus):
        ax = axes[j // cols][j % cols]
        valid = mask[:, j].astype(bool)
        for value, colour, name in ((1, "tab:green", "positive"), (0, "tab:red", "negative")):
            sel = valid & (labels[:, j] == value)
            ax.hist(probs[sel, j], bins=edges, color=colour, alpha=0.55, label=f"{name} ({sel.sum()})")
        ax.axvline(0.5, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_title(f"AU{au}", fontsize=9)
        ax.legend(fontsize=6)
    for k in range(len(aus), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(f"Predicted probability by ground truth: {run_dir}", fontsize=8)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "reliability.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
