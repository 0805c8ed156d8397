"""MONET's figure: the learned soft order Ω as a heatmap (thesis Fig. 2.12 style)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aubench import ConfigError, load_record, pyplot

__all__ = ["soft_order_heatmap"]


def soft_order_heatmap(run_dir: Path, out: Path | None = None, extras: dict | None = None) -> Path:
    """The learned soft order Ω (timestep × AU) of a MONET cell as a heatmap (thesis Fig. 2.12 style).

    ``extras`` is the record's ``model_extras`` when the caller holds it; otherwise it is read from
    ``run_dir/record.json``."""
    run_dir = Path(run_dir)
    record = run_dir / "record.json"
    if extras is None:
        extras = load_record(record).model_extras
    if "soft_order" not in extras:
        raise ConfigError(f"{record} has no soft order: it is not a MONET cell (model.head=monet)")
    omega = np.asarray(extras["soft_order"])
    plt = pyplot()
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
