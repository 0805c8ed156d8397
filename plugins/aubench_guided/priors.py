"""Attention priors of the Tallec thesis §3.5: landmark heat maps (eq. 3.29-3.30) and face-parsing
frequencies per patch (the f_ij of eq. 3.35).

**Centres of interest (Table 3.2, after JAA-Net [60]).** "scale" is the distance between the two inner
eye corners (68-point iBUG landmarks 39 and 42, 0-based). Each AU has two centres, one per side of the
face; a centre on the midline is given twice, which leaves eq. 3.30's normalised sum unchanged:

=====  =====================================  =============================================
AU     Table 3.2                              landmarks (0-based iBUG-68)
=====  =====================================  =============================================
1      1/2 scale above inner brow             21, 22 raised by scale/2
2      1/3 scale above outer brow             17, 26 raised by scale/3
4      1/3 scale below brow centre            19, 24 lowered by scale/3
6      1 scale below eye bottom               mean(40, 41), mean(46, 47) lowered by scale
7      eye                                    mean(36..41), mean(42..47)
9      1/2 scale above nose bottom            31, 35 (the nostril wings) raised by scale/2
10     upper lip centre                       51 (twice)
12/14/15  lip corner                          48, 54
17/26  1/2 scale below lip                    57 (twice) lowered by scale/2
23/24/25  lip centre                          mean(62, 66) (twice)
=====  =====================================  =============================================

These are the thesis' 10 *location* priors (``LOCATIONS``): the multi-prior gives each AU the heat map
of its location; H2P (eq. 3.33) assigns the 10 locations to heads whatever the tasks. An AU without a
Table 3.2 entry gets the mono-prior (every landmark a centre), the guidance §3.5.1 validates first.

**Grid coordinates.** Eq. 3.29 rescales a centre to the h x w grid; eq. 3.30 compares it with ``[i j]``.
Patch (i, j) covers [i, i+1) x [j, j+1) of the rescaled image, so we compare with its centre
(i + 1/2, j + 1/2): with 0-based integers the printed ``[i j]`` would sit half a patch off.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from aubench import DatasetError

__all__ = ["LOCATIONS", "AU_LOCATION", "centres", "heatmaps", "mono_heatmap", "prior_index", "patch_frequencies"]

#: the 10 distinct locations of Table 3.2, in the order H2P assigns them to heads
LOCATIONS = ("inner_brow_above", "outer_brow_above", "brow_centre_below", "eye_bottom_below", "eye",
             "nose_bottom_above", "upper_lip_centre", "lip_corner", "lip_below", "lip_centre")
AU_LOCATION = {1: "inner_brow_above", 2: "outer_brow_above", 4: "brow_centre_below", 6: "eye_bottom_below", 7: "eye",
               9: "nose_bottom_above", 10: "upper_lip_centre", 12: "lip_corner", 14: "lip_corner", 15: "lip_corner",
               17: "lip_below", 23: "lip_centre", 24: "lip_centre", 25: "lip_centre", 26: "lip_below"}


def centres(landmarks: torch.Tensor) -> torch.Tensor:
    """Table 3.2's centres of every location: [B, 10, 2, 2] (location, side, (x, y)) in image pixels."""
    lm = landmarks.float()
    scale = (lm[:, 39] - lm[:, 42]).norm(dim=-1)[:, None, None]  # [B, 1, 1]
    up = torch.zeros_like(lm[:, :2])
    up[..., 1] = -1.0  # image y grows downwards

    def pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack([a, b], 1)

    def mean(idx: Sequence[int]) -> torch.Tensor:
        return lm[:, list(idx)].mean(1)

    lip_centre = mean((62, 66))
    out = [
        pair(lm[:, 21], lm[:, 22]) + up * scale / 2,
        pair(lm[:, 17], lm[:, 26]) + up * scale / 3,
        pair(lm[:, 19], lm[:, 24]) - up * scale / 3,
        pair(mean((40, 41)), mean((46, 47))) - up * scale,
        pair(mean(range(36, 42)), mean(range(42, 48))),
        pair(lm[:, 31], lm[:, 35]) + up * scale / 2,
        pair(lm[:, 51], lm[:, 51]),
        pair(lm[:, 48], lm[:, 54]),
        pair(lm[:, 57], lm[:, 57]) - up * scale / 2,
        pair(lip_centre, lip_centre),
    ]
    return torch.stack(out, 1)


def heatmaps(points: torch.Tensor, image_size: tuple[int, int], grid: tuple[int, int], sigma: float = 1.0) -> torch.Tensor:
    """eq. 3.29-3.30: one normalised heat map per group of centres. ``points`` [B, P, C, 2] in image pixels
    (x, y) -> [B, P, h·w] (row-major over the grid), each summing to one."""
    h, w = grid
    height, width = image_size
    scaled = points.float() * points.new_tensor([w / width, h / height])  # eq. 3.29
    ys = torch.arange(h, dtype=scaled.dtype, device=scaled.device) + 0.5
    xs = torch.arange(w, dtype=scaled.dtype, device=scaled.device) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    cells = torch.stack([gx, gy], -1).reshape(-1, 2)  # [h·w, 2] as (x, y)
    d2 = ((scaled[..., None, :] - cells) ** 2).sum(-1)  # [B, P, C, h·w]
    # eq. 3.30, normalised in log space: far-off centres would underflow exp(-d²/σ²) to zero everywhere
    return torch.softmax(torch.logsumexp(-d2 / sigma ** 2, dim=2), dim=-1)


def mono_heatmap(landmarks: torch.Tensor, image_size: tuple[int, int], grid: tuple[int, int],
                 sigma: float = 1.0) -> torch.Tensor:
    """The mono-prior of §3.5.1 ([3]): every landmark a centre of interest -> [B, h·w]."""
    return heatmaps(landmarks.float()[:, None], image_size, grid, sigma)[:, 0]


def prior_index(au_set: Sequence[int]) -> list[int]:
    """For each AU, the index of its Table 3.2 location in :data:`LOCATIONS`, or -1 (mono-prior)."""
    return [LOCATIONS.index(AU_LOCATION[au]) if au in AU_LOCATION else -1 for au in au_set]


def patch_frequencies(parsing: torch.Tensor, groups: Sequence[Sequence[int]], grid: tuple[int, int]) -> torch.Tensor:
    """f_ij of eq. 3.35: the share of each (grouped) parsing class in every patch, [B, h·w, F].

    ``parsing`` [B, H, W] holds class ids; ``groups[f]`` lists the ids that make class f."""
    lookup = torch.full((256,), -1, dtype=torch.long, device=parsing.device)
    for f, ids in enumerate(groups):
        lookup[torch.as_tensor(list(ids), dtype=torch.long, device=parsing.device)] = f
    grouped = lookup[parsing.long()]
    if bool((grouped < 0).any()):
        bad = sorted(set(parsing.long().unique().tolist()) - {i for g in groups for i in g})
        raise DatasetError(f"a parsing map holds class ids {bad} that no group of model.parsing_groups covers; "
                           "list every class of the prepared dataset's parsing_classes in one group")
    onehot = F.one_hot(grouped, len(groups)).permute(0, 3, 1, 2).float()  # [B, F, H, W]
    return F.adaptive_avg_pool2d(onehot, grid).flatten(2).transpose(1, 2)
