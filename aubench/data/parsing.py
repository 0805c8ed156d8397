"""Face-parsing maps derived from 68-point landmarks (the default parsing source for real data).

Regions are the iBUG polygons: skin (jaw line closed over an estimated forehead), brows (thick
polylines), eyes, nose (bridge to nostrils), lips (outer lip contour) and mouth interior (inner lip
contour). Class ids follow :data:`aubench.data.prepared.PARSING_CLASSES`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["parsing_from_landmarks"]


def parsing_from_landmarks(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Parsing map uint8 [size, size] from landmarks [68, 2] in pixel coordinates of that image."""
    from PIL import Image, ImageDraw

    lm = np.asarray(landmarks, np.float64)
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)

    def poly(idx, value):
        d.polygon([tuple(p) for p in lm[list(idx)]], fill=value)

    jaw = lm[0:17]
    brow_top = lm[17:27, 1].min()
    height = jaw[:, 1].max() - brow_top
    forehead_y = brow_top - 0.35 * height
    cx = jaw[:, 0].mean()
    rx = (jaw[:, 0].max() - jaw[:, 0].min()) / 2
    t = np.linspace(0, np.pi, 12)
    arc = np.stack([cx + rx * np.cos(t), jaw[0, 1] + (forehead_y - jaw[0, 1]) * np.sin(t)], 1)
    d.polygon([tuple(p) for p in np.concatenate([jaw, arc])], fill=1)
    width = max(1, int(round(0.04 * rx * 2)))
    for idx in (range(17, 22), range(22, 27)):
        d.line([tuple(p) for p in lm[list(idx)]], fill=2, width=width)
    poly(range(36, 42), 3)
    poly(range(42, 48), 3)
    nose = np.concatenate([lm[[27]] + [-0.05 * rx, 0], lm[31:36], lm[[27]] + [0.05 * rx, 0]])
    d.polygon([tuple(p) for p in nose], fill=4)
    poly(range(48, 60), 5)
    gap = lm[[65, 66, 67], 1].mean() - lm[[61, 62, 63], 1].mean()
    if gap > 0.03 * height:  # lips apart: the inner contour is the mouth interior
        poly(range(60, 68), 6)
    return np.asarray(img, np.uint8)
