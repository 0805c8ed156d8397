"""The face in face units: the neutral 68-point iBUG template and each AU's landmark deformation."""
from __future__ import annotations

import numpy as np

from aubench_synthau.variants import RENDERED_AUS

__all__ = ["canonical_landmarks", "TEMPLATE", "DISPLACEMENTS"]


def canonical_landmarks() -> np.ndarray:
    """The neutral 68-point template (iBUG order) in face units: x right, y down, |x| <= 1."""
    p = np.zeros((68, 2), np.float64)
    t = np.linspace(0, np.pi, 17)
    p[0:17, 0] = -np.cos(t)
    p[0:17, 1] = -0.1 + 1.15 * np.sin(t)
    bx = np.linspace(-0.78, -0.2, 5)
    p[17:22, 0] = bx
    p[17:22, 1] = -0.52 - 0.09 * np.sin(np.linspace(0.2, np.pi - 0.6, 5))
    p[22:27, 0] = -bx[::-1]
    p[22:27, 1] = p[17:22, 1][::-1]
    p[27:31, 0] = 0
    p[27:31, 1] = np.linspace(-0.38, 0.12, 4)
    p[31:36, 0] = np.linspace(-0.2, 0.2, 5)
    p[31:36, 1] = [0.24, 0.28, 0.3, 0.28, 0.24]
    for sign, base in ((-1, 36), (1, 42)):
        cx, cy, w, h = 0.4 * sign, -0.28, 0.17, 0.075
        eye = np.array([[-w, 0], [-w / 2.5, -h], [w / 2.5, -h], [w, 0], [w / 2.5, h], [-w / 2.5, h]])
        # the same order serves both eyes: 36 (outer) / 42 (inner) are the leftmost points in the image
        p[base:base + 6] = eye + [cx, cy]
    outer = np.array([[-0.36, 0.62], [-0.24, 0.55], [-0.09, 0.52], [0, 0.535], [0.09, 0.52], [0.24, 0.55],
                      [0.36, 0.62], [0.24, 0.71], [0.1, 0.75], [0, 0.755], [-0.1, 0.75], [-0.24, 0.71]])
    p[48:60] = outer
    inner = np.array([[-0.3, 0.62], [-0.1, 0.6], [0, 0.605], [0.1, 0.6], [0.3, 0.62], [0.1, 0.64], [0, 0.645],
                      [-0.1, 0.64]])
    p[60:68] = inner
    return p


def _au_displacements() -> dict[int, np.ndarray]:
    """Landmark displacement per AU at intensity 5, in face units (FACS regions)."""
    d = {au: np.zeros((68, 2)) for au in RENDERED_AUS}
    right_brow, left_brow = np.arange(17, 22), np.arange(22, 27)
    inner_w = np.array([0.0, 0.15, 0.45, 0.8, 1.0])  # weight along the right brow, outer -> inner
    d[1][right_brow, 1] = -0.16 * inner_w
    d[1][left_brow, 1] = -0.16 * inner_w[::-1]
    d[2][right_brow, 1] = -0.16 * inner_w[::-1]
    d[2][left_brow, 1] = -0.16 * inner_w
    d[4][right_brow, 1] = 0.1 * (0.4 + inner_w)
    d[4][left_brow, 1] = 0.1 * (0.4 + inner_w[::-1])
    d[4][right_brow, 0] = 0.06 * inner_w
    d[4][left_brow, 0] = -0.06 * inner_w[::-1]
    upper = [37, 38, 43, 44]
    lower = [40, 41, 46, 47]
    d[5][upper, 1] = -0.06
    d[6][lower, 1] = -0.045
    d[6][[1, 2, 14, 15], 1] = -0.04
    d[7][upper, 1] = 0.03
    d[7][lower, 1] = -0.035
    d[9][[31, 32, 33, 34, 35], 1] = -0.06
    d[9][[27, 28], 1] = 0.04
    d[9][[21, 22], 1] = 0.05
    d[10][[49, 50, 51, 52, 53], 1] = -0.09
    d[10][[61, 62, 63], 1] = -0.05
    d[12][[48, 60], 0], d[12][[54, 64], 0] = -0.09, 0.09
    d[12][[48, 60, 54, 64], 1] = -0.12
    d[12][[49, 53, 59, 55], 1] = -0.05
    d[14][[48, 60], 0], d[14][[54, 64], 0] = 0.05, -0.05
    d[14][[48, 54], 1] = -0.02
    d[15][[48, 60, 54, 64], 1] = 0.11
    d[15][[59, 55], 1] = 0.04
    d[17][[55, 56, 57, 58, 59, 65, 66, 67], 1] = -0.07
    d[17][[7, 8, 9], 1] = -0.04
    d[20][[48, 60], 0], d[20][[54, 64], 0] = -0.13, 0.13
    d[20][[48, 54], 1] = 0.02
    d[23][[49, 50, 51, 52, 53], 1] = 0.035
    d[23][[55, 56, 57, 58, 59], 1] = -0.035
    d[23][[48, 60], 0], d[23][[54, 64], 0] = 0.04, -0.04
    d[24][[49, 50, 51, 52, 53, 61, 62, 63], 1] = 0.04
    d[24][[55, 56, 57, 58, 59, 65, 66, 67], 1] = -0.05
    d[25][[61, 62, 63], 1] = -0.035
    d[25][[65, 66, 67], 1] = 0.06
    d[25][[55, 56, 57, 58, 59], 1] = 0.05
    d[26][[65, 66, 67, 55, 56, 57, 58, 59], 1] = 0.16
    d[26][5:12, 1] = 0.13 * np.sin(np.linspace(0.3, np.pi - 0.3, 7))
    return d


TEMPLATE = canonical_landmarks()
DISPLACEMENTS = np.stack([_au_displacements()[au] for au in RENDERED_AUS])  # [A, 68, 2]
