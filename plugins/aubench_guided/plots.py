"""Cross-attention maps over the face, per head and AU (Tallec thesis Fig. 3.5 and 3.9 style).

``aubench plot attention <cell folder>`` rebuilds the cell's model from its record and weights, runs
it on one test frame of the cell's test subjects and draws, for each head (rows) and each AU (columns),
the softmaxed cross-attention of one layer resized to the image and overlaid on the face (§3.4.3,
"Attention Visualisation": the attention matrix of eq. 3.4 resized from h x w to H x W).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aubench import ConfigError, load_record, pyplot

__all__ = ["attention_maps", "draw_attention"]

MODELS = ("guided_transformer", "multilabel_transformer")


def attention_maps(run_dir: Path, frame: int = 0, layer: int = 0) -> dict[str, Any]:
    """The cell's model on test frame ``frame``: ``image`` uint8 [H, W, 3], ``attention`` [heads, T, h, w]
    (softmaxed, cross-attention layer ``layer``), ``labels`` (one per decoder token) and ``frame_id``."""
    import torch
    import torch.nn.functional as F
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from aubench import FrameBatches, PreparedDataset, build_model, dataset_dir, get_registry, model_inputs, to_device

    run_dir = Path(run_dir)
    rec = load_record(run_dir / "record.json")
    cfg = OmegaConf.create(rec.config)
    if cfg.model.name not in MODELS:
        raise ConfigError(f"{run_dir}: model {cfg.model.name!r} has no cross-attention maps; `aubench plot attention` "
                          f"draws cells of {', '.join(MODELS)}")
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{weights} is missing: the cell kept no weights (engine.save_weights) — rerun it")
    reg = get_registry()
    ds = PreparedDataset(dataset_dir(rec.dataset))
    rows = np.flatnonzero(ds.index["subject"].isin(list(rec.test_subjects)).to_numpy())
    if not 0 <= frame < len(rows):
        raise ConfigError(f"--frame {frame}: the cell's test subjects have {len(rows)} frames")
    rows = rows[frame:frame + 1]
    n = len(rec.train_aus)
    frames = FrameBatches(ds, rows, np.zeros((1, n), np.float32), np.ones((1, n), bool), model_inputs(cfg, reg))
    batch = to_device(frames[[0]], "cpu", False, cfg, None)
    model = build_model(cfg, reg, tuple(rec.train_aus), None)
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    with torch.no_grad():
        out = model(batch)
    layers = out["attention"]
    if not -len(layers) <= layer < len(layers):
        raise ConfigError(f"--layer {layer}: the model has {len(layers)} cross-attention layers")
    att = torch.softmax(out["attention"][layer][0].float(), -1)  # [heads, T, N]
    h, w = out.get("grid") or (int(round(att.shape[-1] ** 0.5)),) * 2
    att = att.reshape(*att.shape[:2], h, w)
    image = np.asarray(ds.frames[rows[0]])
    side = image.shape[0]
    up = F.interpolate(att.reshape(1, -1, h, w), size=(side, side), mode="bilinear", align_corners=False)
    labels = [f"AU{a}" for a in rec.train_aus] if att.shape[1] == n else ["task token"]
    idx = ds.index.iloc[rows[0]]
    return {"image": image, "attention": up.reshape(*att.shape[:2], side, side).numpy(), "labels": labels,
            "frame_id": f"{idx['subject']}/{idx['video']} frame {idx['frame']}", "layer": layer % len(layers)}


def draw_attention(run_dir: Path, out: Path | None = None, frame: int = 0, layer: int = 0,
                   max_aus: int = 8) -> Path:
    """Heads (rows) x AUs (columns) attention overlays of one test frame, as a PNG."""
    maps = attention_maps(run_dir, frame, layer)
    att, labels = maps["attention"], maps["labels"]
    cols = min(len(labels), max_aus)
    heads = att.shape[0]
    plt = pyplot()
    fig, axes = plt.subplots(heads, cols, figsize=(1.4 * cols + 0.6, 1.4 * heads + 0.6), squeeze=False)
    for hd in range(heads):
        for t in range(cols):
            ax = axes[hd][t]
            ax.imshow(maps["image"])
            ax.imshow(att[hd, t], cmap="jet", alpha=0.45)
            ax.set_xticks([])
            ax.set_yticks([])
            if hd == 0:
                ax.set_title(labels[t], fontsize=8)
            if t == 0:
                ax.set_ylabel(f"head {hd + 1}", fontsize=8)
    fig.suptitle(f"cross-attention layer {maps['layer'] + 1}, {maps['frame_id']}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    out = Path(out) if out else Path(run_dir) / "attention.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
