"""Plots of finished cells, written as PNG next to the run (matplotlib is an optional extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aubench.errors import ConfigError, DatasetError

__all__ = ["reliability_histogram", "soft_order_heatmap"]


def _pyplot():
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
    plt = _pyplot()
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


def soft_order_heatmap(run_dir: Path, out: Path | None = None, extras: dict | None = None) -> Path:
    """The learned soft order Ω (timestep × AU) of a MONET cell as a heatmap (thesis Fig. 2.12 style).

    ``extras`` is the record's ``model_extras`` when the caller holds it; otherwise it is read from
    ``run_dir/record.json``."""
    import json

    run_dir = Path(run_dir)
    record = run_dir / "record.json"
    if extras is None:
        if not record.is_file():
            raise DatasetError(f"{record} not found; point at a finished cell folder")
        extras = json.loads(record.read_text()).get("model_extras") or {}
    if "soft_order" not in extras:
        raise ConfigError(f"{record} has no soft order: only MONET cells record one")
    omega = np.asarray(extras["soft_order"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.5 * omega.shape[1] + 2, 0.45 * omega.shape[0] + 1.5))
    im = ax.imshow(omega, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(omega.shape[1]), [f"AU{a}" for a in extras["aus"]], rotation=90, fontsize=8)
    ax.set_yticks(range(omega.shape[0]), [str(t + 1) for t in range(omega.shape[0])], fontsize=8)
    ax.set_xlabel("action unit")
    ax.set_ylabel("timestep")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "soft_order.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
