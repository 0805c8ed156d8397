"""SynthAU: a deterministic, seeded procedural benchmark shaped like BP4D and DISFA.

Real AU datasets are licensed, so the default benchmark is generated. Each frame is a face drawn
from a 68-point iBUG landmark configuration:

* **identity** per subject: face shape, skin and hair tone, feature positions and sizes, line
  thickness, and a *neutral-face bias* (naturally raised brows, down-turned mouth corners, narrow
  eyes) that imitates AUs without being labelled as them, as real neutral faces do;
* **AUs** as local deformations of the landmarks in their FACS regions (brows for AU1/2/4,
  lids and cheeks for AU5/6/7, nose for AU9, lips and jaw for AU10-26) plus the texture cues that
  coders use (glabella furrows for AU4, crow's feet for AU6, nose wrinkles for AU9, dimples for AU14,
  chin boss for AU17), all scaled by an intensity 0-5;
* **videos** per subject and task built from expression events with onset-apex-offset envelopes,
  so neighbouring frames are correlated; events are drawn from prototypes (smile = AU6+AU12,
  surprise = AU1+AU2+AU5+AU25+AU26, ...) and rules add realistic co-occurrence (AU4 suppresses
  AU1/AU2, AU26 implies AU25);
* **nuisances**: small head rotations, scale and shift, lighting gradients, sensor noise;
* **label noise**: a configurable fraction of positive AU episodes is annotated as absent
  (coders miss whole events, not single frames);
* per-frame 68-point landmarks and a face-parsing map (background, skin, brows, eyes, nose, lips,
  mouth interior, hair).

Two variants: ``synth-bp4d`` (41 subjects named like BP4D's, tasks T1-T8, BP4D's 12 AUs as 0/1/9
occurrence codes) and ``synth-disfa`` (27 subjects named like DISFA's, one long video each, 0-5
intensities of DISFA's 12 AUs, rarer AUs, a different rendering style so that cross-dataset
transfer has a domain gap).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BP4D_SUBJECTS", "DISFA_SUBJECTS", "BP4D_AUS", "DISFA_AUS", "DISFA_EVAL_AUS", "RENDERED_AUS",
    "VARIANTS", "generate", "simulate", "render_video", "synth_fingerprint", "render_face", "canonical_landmarks",
]

GENERATOR_VERSION = 1
BP4D_SUBJECTS = tuple([f"F{i:03d}" for i in range(1, 24)] + [f"M{i:03d}" for i in range(1, 19)])
DISFA_SUBJECTS = tuple(f"SN{i:03d}" for i in (*range(1, 14), 16, 17, 18, 21, *range(23, 33)))
BP4D_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
DISFA_EVAL_AUS = (1, 2, 4, 6, 9, 12, 25, 26)
RENDERED_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26)
_AU_COL = {au: i for i, au in enumerate(RENDERED_AUS)}

# Expression prototypes: relative AU intensities of one event (FACS-style compositions).
PROTOTYPES: dict[str, dict[int, float]] = {
    "smile": {6: 0.8, 12: 1.0, 7: 0.5, 10: 0.3},
    "laugh": {6: 1.0, 12: 1.0, 7: 0.6, 10: 0.6, 25: 1.0, 26: 0.6},
    "surprise": {1: 1.0, 2: 0.9, 5: 0.8, 25: 0.8, 26: 0.7},
    "sad": {4: 0.7, 15: 1.0, 17: 0.8},
    "worry": {1: 0.9, 2: 0.3, 15: 0.6, 20: 0.4},
    "fear": {1: 0.8, 2: 0.6, 5: 0.7, 20: 1.0, 25: 0.7},
    "disgust": {9: 1.0, 10: 0.9, 4: 0.4, 17: 0.5, 7: 0.4},
    "pain": {4: 1.0, 6: 0.8, 7: 1.0, 9: 0.5, 10: 0.8, 25: 0.4},
    "tension": {4: 1.0, 7: 0.8, 23: 1.0, 24: 0.8, 17: 0.6},
    "press": {24: 1.0, 23: 0.6, 17: 0.8, 14: 0.5},
    "dimple": {14: 1.0, 12: 0.3},
    "talk": {25: 1.0, 26: 0.5, 10: 0.3},
}

# Per task, the expression prototypes it elicits (weights), like BP4D's eight tasks.
BP4D_TASKS: dict[str, dict[str, float]] = {
    "T1": {"smile": 3, "laugh": 2, "talk": 2, "dimple": 1},
    "T2": {"sad": 3, "worry": 2, "talk": 1, "press": 1},
    "T3": {"surprise": 3, "fear": 1, "laugh": 1},
    "T4": {"smile": 2, "press": 2, "dimple": 2, "talk": 1},
    "T5": {"fear": 2, "surprise": 2, "tension": 1},
    "T6": {"pain": 3, "tension": 2, "press": 1},
    "T7": {"tension": 3, "press": 2, "disgust": 1},
    "T8": {"disgust": 3, "pain": 1, "smile": 1},
}
DISFA_MIX = {"smile": 2, "laugh": 1, "surprise": 1.2, "sad": 2.0, "fear": 0.8, "disgust": 2.0, "talk": 2.5,
             "worry": 0.8, "tension": 1.2, "pain": 0.6}


@dataclass(frozen=True)
class Variant:
    subjects: tuple[str, ...]
    au_set: tuple[int, ...]
    label_kind: str
    videos: tuple[str, ...]
    frames_per_video: int
    stride: int
    event_rate: float
    tonic: dict[int, float]
    style: str


VARIANTS: dict[str, Variant] = {
    "synth-bp4d": Variant(
        subjects=BP4D_SUBJECTS, au_set=BP4D_AUS, label_kind="occurrence", videos=tuple(BP4D_TASKS),
        frames_per_video=12, stride=3, event_rate=0.09,
        tonic={7: 0.5, 10: 0.5, 14: 0.4, 17: 0.3, 12: 0.3, 6: 0.2}, style="studio",
    ),
    "synth-disfa": Variant(
        subjects=DISFA_SUBJECTS, au_set=DISFA_AUS, label_kind="intensity", videos=("V1",),
        frames_per_video=150, stride=2, event_rate=0.04, tonic={25: 0.15}, style="lab",
    ),
}

# --------------------------------------------------------------------------- landmarks


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


_TEMPLATE = canonical_landmarks()
_DISP = np.stack([_au_displacements()[au] for au in RENDERED_AUS])  # [A, 68, 2]


# --------------------------------------------------------------------------- identities


def _identity(rng: np.random.Generator, style: str) -> dict[str, Any]:
    lab = style == "lab"
    tone = rng.uniform(0, 1)  # light to dark skin, along a realistic axis, plus a small hue jitter
    base_skin = (1 - tone) * np.array([241, 200, 172]) + tone * np.array([96, 62, 44]) + rng.normal(0, 6, 3)
    if lab:
        base_skin = base_skin * 0.6 + base_skin.mean() * 0.4
    return {
        "width": rng.uniform(0.88, 1.12), "height": rng.uniform(0.9, 1.12),
        "skin": base_skin, "hair": np.array([1.0, 0.8, 0.6]) * rng.uniform(15, 150) + rng.normal(0, 5, 3),
        "brow_color": rng.uniform(15, 80), "brow_width": rng.uniform(0.05, 0.09),
        "eye_dx": rng.uniform(-0.05, 0.05), "eye_dy": rng.uniform(-0.05, 0.05), "eye_scale": rng.uniform(0.85, 1.2),
        "nose_len": rng.uniform(-0.06, 0.08), "mouth_w": rng.uniform(0.88, 1.15), "mouth_dy": rng.uniform(-0.05, 0.05),
        "lip": rng.uniform([120, 40, 40], [210, 110, 110]), "iris": rng.uniform(20, 120, 3),
        # neutral-face bias, in AU intensity units: looks like an AU, is not labelled as one
        "bias": {1: rng.uniform(0, 1.3) * (rng.random() < 0.4), 2: rng.uniform(0, 1.3) * (rng.random() < 0.4),
                 15: rng.uniform(0, 1.2) * (rng.random() < 0.3), 7: rng.uniform(0, 1.2) * (rng.random() < 0.3),
                 12: rng.uniform(0, 0.8) * (rng.random() < 0.2)},
        "hairline": rng.uniform(-1.0, -0.8), "wrinkle": rng.uniform(0.6, 1.4),
    }


def _identity_landmarks(ident: dict[str, Any]) -> np.ndarray:
    p = _TEMPLATE.copy()
    p[:, 0] *= ident["width"]
    p[:, 1] *= ident["height"]
    for base, sign in ((36, -1), (42, 1)):
        eye = p[base:base + 6]
        c = eye.mean(0)
        p[base:base + 6] = (eye - c) * ident["eye_scale"] + c + [sign * ident["eye_dx"], ident["eye_dy"]]
    p[31:36, 1] += ident["nose_len"]
    p[30, 1] += ident["nose_len"] * 0.7
    mouth = p[48:68]
    mc = mouth.mean(0)
    p[48:68] = (mouth - mc) * [ident["mouth_w"], 1] + mc + [0, ident["mouth_dy"]]
    return p


# --------------------------------------------------------------------------- trajectories


def _envelope(T: int, rng: np.random.Generator) -> np.ndarray:
    start = rng.integers(-6, T)
    on, apex, off = rng.integers(2, 6), rng.integers(3, 16), rng.integers(3, 9)
    t = np.arange(T) - start
    env = np.clip(t / on, 0, 1)
    env = np.where(t > on + apex, np.clip(1 - (t - on - apex) / off, 0, 1), env)
    return env


def _trajectory(rng: np.random.Generator, T: int, mix: dict[str, float], rate: float,
                tonic: dict[int, float]) -> np.ndarray:
    """AU intensities [T, len(RENDERED_AUS)] of one video: events + tonic activity + co-occurrence rules."""
    inten = np.zeros((T, len(RENDERED_AUS)))
    names = list(mix)
    probs = np.array([mix[n] for n in names], float)
    probs /= probs.sum()
    n_events = max(1, rng.poisson(rate * T))
    for _ in range(n_events):
        proto = PROTOTYPES[names[rng.choice(len(names), p=probs)]]
        env = _envelope(T, rng)
        apex = rng.uniform(1.5, 5.0)
        for au, w in proto.items():
            inten[:, _AU_COL[au]] = np.maximum(inten[:, _AU_COL[au]], env * apex * w * rng.uniform(0.8, 1.15))
    for au, p in tonic.items():
        if rng.random() < p:
            level = rng.uniform(1.2, 3.5)
            drift = np.cumsum(rng.normal(0, 0.15, T))
            env = np.ones(T) if rng.random() < 0.5 else _envelope(T, rng)
            inten[:, _AU_COL[au]] = np.maximum(inten[:, _AU_COL[au]], np.clip(level + drift, 0, 5) * env)
    a4 = inten[:, _AU_COL[4]]
    for au in (1, 2):  # AU4 lowers the brows: it suppresses the raisers
        inten[:, _AU_COL[au]] *= np.clip(1 - a4 / 2.0, 0, 1)
    inten[:, _AU_COL[25]] = np.maximum(inten[:, _AU_COL[25]], inten[:, _AU_COL[26]])
    inten[:, _AU_COL[6]] = np.maximum(inten[:, _AU_COL[6]], 0.7 * inten[:, _AU_COL[12]] * (inten[:, _AU_COL[12]] > 2.5))
    return np.clip(inten, 0, 5)


def _drop_episodes(positive: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Missed positives: each contiguous positive episode is annotated absent with probability ``rate``."""
    out = positive.copy()
    if rate <= 0:
        return out
    for j in range(positive.shape[1]):
        col = positive[:, j].astype(int)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], col, [0]])))
        for s, e in zip(edges[::2], edges[1::2]):
            if rng.random() < rate:
                out[s:e, j] = False
    return out


# --------------------------------------------------------------------------- rendering


def _poly(pts: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in pts]


def _ellipse_pts(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def render_face(landmarks: np.ndarray, au: np.ndarray, ident: dict[str, Any], pose: dict[str, float],
                size: int, style: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one face. Returns (image uint8 [S,S,3], landmarks in pixels [68,2], parsing uint8 [S,S]).

    ``landmarks`` are in face units (already deformed by the AUs); ``au`` holds the intensities of
    :data:`RENDERED_AUS`, used for the texture cues.
    """
    from PIL import Image, ImageDraw, ImageFilter

    ss = 2  # supersampling factor
    S = size * ss
    lab = style == "lab"
    scale = S * (0.27 if lab else 0.3) * pose["scale"]
    c, s = np.cos(pose["angle"]), np.sin(pose["angle"])
    R = np.array([[c, -s], [s, c]])
    center = np.array([S / 2 + pose["dx"] * S, S / 2 + pose["dy"] * S + 0.05 * S])

    def tf(pts: np.ndarray) -> np.ndarray:
        return (np.asarray(pts, float) @ R.T) * scale + center

    bg = np.array([70, 90, 140]) if lab else np.array([200, 196, 188])
    img = Image.new("RGB", (S, S), tuple(int(v) for v in bg * pose["bg"]))
    par = Image.new("L", (S, S), 0)
    d, dp = ImageDraw.Draw(img), ImageDraw.Draw(par)
    lw = max(1, int(round(S / 64)))
    skin = tuple(int(v) for v in ident["skin"])
    dark = tuple(int(v * 0.62) for v in ident["skin"])

    jaw = landmarks[0:17]
    top = np.stack([np.linspace(jaw[-1, 0], jaw[0, 0], 15),
                    jaw[0, 1] + (ident["hairline"] - 0.35 - jaw[0, 1]) * np.sin(np.linspace(0, np.pi, 15))], 1)
    face = tf(np.concatenate([jaw, top]))
    hair = tf(np.concatenate([top * [1.08, 1.0] + [0, -0.05],
                              _ellipse_pts(0, ident["hairline"] - 0.55, 1.12, 0.55)[12:]]))
    d.polygon(_poly(hair), fill=tuple(int(v) for v in ident["hair"]))
    dp.polygon(_poly(hair), fill=7)
    d.polygon(_poly(face), fill=skin)
    dp.polygon(_poly(face), fill=1)

    def line(pts: np.ndarray, strength: float, width: int = lw) -> None:
        if strength <= 0.05:
            return
        col = tuple(int(sv * (1 - 0.45 * min(strength, 1.0))) for sv in ident["skin"])
        d.line(_poly(tf(pts)), fill=col, width=width)

    A = {a: au[_AU_COL[a]] / 5.0 for a in RENDERED_AUS}
    wr = ident["wrinkle"]
    # AU6: raised cheeks (bulge) and crow's feet at the outer eye corners
    for sign, corner in ((-1, 36), (1, 45)):
        cx, cy = landmarks[corner]
        if A[6] > 0.1:
            bulge = tf(_ellipse_pts(cx - sign * 0.12, cy + 0.2 - 0.06 * A[6], 0.2, 0.1 + 0.04 * A[6]))
            d.polygon(_poly(bulge), fill=tuple(int(min(255, v * (1 + 0.18 * A[6]))) for v in ident["skin"]))
            for k in (-1, 0, 1):
                line(np.array([[cx + sign * 0.03, cy + k * 0.03], [cx + sign * 0.15, cy + k * 0.07]]), A[6] * wr)
    # AU4: vertical glabella furrows; AU1: horizontal forehead lines
    for x in (-0.06, 0.06):
        line(np.array([[x, -0.55], [x * 0.7, -0.38]]), A[4] * 1.4 * wr)
    for k in range(3):
        y = -0.75 - 0.07 * k
        line(np.array([[-0.35, y], [0, y - 0.03], [0.35, y]]), (A[1] + 0.5 * A[2]) * wr)
    # AU9: nose-bridge wrinkles; AU10/AU9/AU12: nasolabial folds
    for k in range(2):
        y = -0.2 - 0.06 * k
        line(np.array([[-0.1, y], [0.1, y]]), A[9] * 1.6 * wr)
    fold = max(A[9], A[10], 0.7 * A[12]) * wr
    line(np.array([landmarks[31] + [-0.05, 0], landmarks[48] + [-0.06, -0.02]]), fold, lw + 1)
    line(np.array([landmarks[35] + [0.05, 0], landmarks[54] + [0.06, -0.02]]), fold, lw + 1)
    # AU14: dimples; AU17: chin boss crease; AU20: stretch lines
    for corner, sign in ((48, -1), (54, 1)):
        x, y = landmarks[corner]
        if A[14] > 0.1:
            dim = tf(_ellipse_pts(x + sign * 0.05, y, 0.025 + 0.02 * A[14], 0.04, 10))
            d.polygon(_poly(dim), fill=tuple(int(v * (1 - 0.35 * A[14])) for v in ident["skin"]))
        line(np.array([[x + sign * 0.02, y + 0.04], [x + sign * 0.08, y + 0.16]]), A[20] * wr)
    chin_y = landmarks[57, 1]
    line(np.array([[-0.15, chin_y + 0.08], [0, chin_y + 0.11 - 0.04 * A[17]], [0.15, chin_y + 0.08]]), A[17] * 1.5 * wr)

    # brows
    bw = max(lw, int(round(ident["brow_width"] * scale)))
    brow_col = tuple(int(ident["brow_color"] * k) for k in (1.0, 0.9, 0.8))
    for idx in (range(17, 22), range(22, 27)):
        pts = tf(landmarks[list(idx)])
        d.line(_poly(pts), fill=brow_col, width=bw, joint="curve")
        dp.line(_poly(pts), fill=2, width=bw)
    # eyes
    for base in (36, 42):
        eye = tf(landmarks[base:base + 6])
        d.polygon(_poly(eye), fill=(235, 235, 230), outline=dark)
        dp.polygon(_poly(eye), fill=3)
        ec = eye.mean(0)
        open_h = np.linalg.norm(eye[[1, 2]].mean(0) - eye[[4, 5]].mean(0))
        r = max(1.0, min(open_h * 0.55, np.linalg.norm(eye[0] - eye[3]) * 0.22))
        d.ellipse([ec[0] - r, ec[1] - r, ec[0] + r, ec[1] + r], fill=tuple(int(v) for v in ident["iris"]))
        d.line(_poly(eye[[0, 1, 2, 3]]), fill=tuple(int(v * 0.4) for v in ident["skin"]), width=lw + 1)
    # nose
    nose = tf(np.concatenate([landmarks[[27]] + [-0.05, 0], landmarks[31:36], landmarks[[27]] + [0.05, 0]]))
    dp.polygon(_poly(nose), fill=4)
    d.line(_poly(tf(landmarks[31:36])), fill=dark, width=lw + 1)
    d.line(_poly(tf(landmarks[[28, 30]] + [0.06, 0])), fill=dark, width=lw)
    # mouth: lips, then the opening between the inner lips
    lip_col = tuple(int(v * (1 - 0.3 * max(A[23], A[24]))) for v in ident["lip"])
    outer = tf(landmarks[48:60])
    d.polygon(_poly(outer), fill=lip_col)
    dp.polygon(_poly(outer), fill=5)
    inner = tf(landmarks[60:68])
    gap = landmarks[[65, 66, 67], 1].mean() - landmarks[[61, 62, 63], 1].mean()
    if gap > 0.05:
        d.polygon(_poly(inner), fill=(45, 15, 20))
        dp.polygon(_poly(inner), fill=6)
        teeth = tf(np.concatenate([landmarks[61:64], landmarks[61:64][::-1] + [0, min(gap * 0.4, 0.04)]]))
        d.polygon(_poly(teeth), fill=(230, 230, 220))
    else:
        d.line(_poly(inner[[0, 1, 2, 3, 4]]), fill=tuple(int(v * 0.5) for v in ident["lip"]), width=lw)

    if lab:
        img = img.filter(ImageFilter.GaussianBlur(radius=0.6 * ss))
    img = img.resize((size, size), Image.BOX)
    par = par.resize((size, size), Image.NEAREST)
    arr = np.asarray(img, np.float32)
    # lighting: a directional gradient and a global gain; then sensor noise
    ramp = np.linspace(-1, 1, size)[None, :, None] * pose["light"]
    arr = arr * (pose["gain"] + 0.25 * ramp)
    arr = arr + rng.normal(0, 4.0 if lab else 3.0, arr.shape)
    if lab:
        arr = arr * 0.85 + arr.mean(-1, keepdims=True) * 0.15
    img_u8 = np.clip(arr, 0, 255).astype(np.uint8)
    lm_px = tf(landmarks) / ss
    return img_u8, lm_px.astype(np.float32), np.asarray(par, np.uint8)


# --------------------------------------------------------------------------- generation


DEFAULT_PARAMS: dict[str, Any] = {"variant": None, "seed": 0, "image_size": 64, "label_noise": 0.0, "unknown_rate": 0.01,
                                  "subjects": None, "frames_per_video": None}


def synth_fingerprint(name: str, params: dict[str, Any]) -> str:
    """Fingerprint of a generated variant: generator version, variant name and (defaulted) parameters."""
    unknown = set(params) - set(DEFAULT_PARAMS) - {"name"}
    if unknown:
        raise TypeError(f"unknown SynthAU parameters {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    full = {**DEFAULT_PARAMS, **{k: v for k, v in params.items() if k != "name"}}
    # the generator's own source is part of the fingerprint: any change to it regenerates cached data
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    blob = json.dumps({"v": GENERATOR_VERSION, "code": code, "name": name, **full}, sort_keys=True, default=str)
    return "synth-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _subject_rng(seed: int, name: str, subject: str, stream: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{name}/{subject}/{stream}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def simulate(name: str, *, seed: int = 0, label_noise: float = 0.0, unknown_rate: float = 0.01,
             subjects: int | None = None, frames_per_video: int | None = None) -> list[dict[str, Any]]:
    """Per-video AU intensities, labels and render parameters (no pixels yet), deterministically.

    Each subject has its own random stream, so adding subjects never changes the others.
    """
    var = VARIANTS[name]
    subj_list = var.subjects[:subjects] if subjects else var.subjects
    fpv = frames_per_video or var.frames_per_video
    videos = []
    for subj in subj_list:
        rng = _subject_rng(seed, name, subj, "identity")
        ident = _identity(rng, var.style)
        base = _identity_landmarks(ident)
        for vid in var.videos:
            vr = _subject_rng(seed, name, subj, f"video/{vid}")
            T = fpv * var.stride
            mix = BP4D_TASKS[vid] if name == "synth-bp4d" else DISFA_MIX
            inten = _trajectory(vr, T, mix, var.event_rate, var.tonic)[:: var.stride]
            frame0 = int(vr.integers(1, 3000)) if name == "synth-bp4d" else 1
            lab_aus = [_AU_COL[a] for a in var.au_set]
            if var.label_kind == "occurrence":
                pos = _drop_episodes(inten[:, lab_aus] >= 1.0, label_noise, vr)
                codes = pos.astype(np.int16)
                unknown = vr.random(codes.shape) < unknown_rate
                codes[unknown] = 9
            else:
                levels = np.floor(inten[:, lab_aus] + 0.5).astype(np.int16).clip(0, 5)
                keep = _drop_episodes(levels >= 2, label_noise, vr) | (levels < 2)
                codes = np.where(keep, levels, 0).astype(np.int16)
            videos.append({"subject": subj, "video": vid, "identity": ident, "base": base, "intensity": inten,
                           "codes": codes, "frames": np.arange(frame0, frame0 + len(inten)),
                           "seed": int(vr.integers(0, 2**31))})
    return videos


def render_video(v: dict[str, Any], image_size: int, style: str):
    """Yield ``(image, landmarks_px, parsing)`` for every frame of a simulated video ``v``."""
    rng = np.random.default_rng(v["seed"])
    T = len(v["frames"])
    # slow head motion: smooth random walks for pose and lighting
    walk = lambda sd: np.cumsum(rng.normal(0, sd, T)) * 0.5 + rng.normal(0, sd * 2)  # noqa: E731
    angle, dx, dy = walk(0.03), walk(0.01), walk(0.01)
    gain = 1 + 0.08 * rng.standard_normal()
    light = rng.uniform(-0.6, 0.6)
    bgk = rng.uniform(0.8, 1.15)
    scl = rng.uniform(0.93, 1.07) + walk(0.005)
    for t in range(T):
        eff = v["intensity"][t].copy()
        for au, b in v["identity"]["bias"].items():
            eff[_AU_COL[au]] = min(5.0, eff[_AU_COL[au]] + b)
        lm = v["base"] + np.tensordot(eff / 5.0, _DISP, axes=1)
        pose = {"angle": float(np.clip(angle[t], -0.2, 0.2)), "dx": float(np.clip(dx[t], -0.05, 0.05)),
                "dy": float(np.clip(dy[t], -0.05, 0.05)), "scale": float(scl[t]), "gain": float(gain),
                "light": light, "bg": bgk}
        yield render_face(lm, eff, v["identity"], pose, image_size, style, rng)


def generate(out_dir: Path, *, name: str, variant: str | None = None, seed: int = 0, image_size: int = 64, label_noise: float = 0.0,
             unknown_rate: float = 0.01, subjects: int | None = None, frames_per_video: int | None = None,
             progress: bool = True) -> Path:
    """Generate a SynthAU variant as the prepared dataset ``name`` in ``out_dir`` (atomically).

    ``variant`` (default: ``name``) picks the shape (``synth-bp4d`` or ``synth-disfa``), so the same
    variant can be registered under several names with different parameters (e.g. label noise).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from aubench.data.prepared import PreparedWriter

    params = {"variant": variant, "seed": seed, "image_size": image_size, "label_noise": label_noise,
              "unknown_rate": unknown_rate, "subjects": subjects, "frames_per_video": frames_per_video}
    variant = variant or name
    if variant not in VARIANTS:
        raise ValueError(f"unknown SynthAU variant {variant!r}; use one of {sorted(VARIANTS)}")
    var = VARIANTS[variant]
    videos = simulate(variant, seed=seed, label_noise=label_noise, unknown_rate=unknown_rate, subjects=subjects,
                      frames_per_video=frames_per_video)
    n = sum(len(v["frames"]) for v in videos)
    writer = PreparedWriter(out_dir, name=name, au_set=var.au_set, label_kind=var.label_kind,
                            image_size=image_size, n_frames=n, with_landmarks=True, with_parsing=True,
                            unknown_code=9 if var.label_kind == "occurrence" else None)
    rows, i = [], 0
    bar = tqdm(total=n, desc=f"generating {name}", unit="frame", disable=not progress)
    for v in videos:
        for t, (img, lm_px, par) in enumerate(render_video(v, image_size, var.style)):
            writer.frames[i], writer.landmarks[i], writer.parsing[i] = img, lm_px, par
            rows.append((v["subject"], v["video"], int(v["frames"][t]), *v["codes"][t].tolist()))
            i += 1
            bar.update(1)
    bar.close()
    index = pd.DataFrame(rows, columns=["subject", "video", "frame", *[f"AU{a}" for a in var.au_set]])
    return writer.finish(index, fingerprint=synth_fingerprint(name, params), preprocessing_id=f"synthau-v{GENERATOR_VERSION}",
                         source="SynthAU procedural generator", generator_params=params,
                         detection_failed_fraction=0.0)
