"""Subjects and their AU trajectories: identities with a neutral-face bias, expression events over time,
co-occurrence rules and missed-episode label noise."""
from __future__ import annotations

from typing import Any

import numpy as np

from aubench_synthau.geometry import TEMPLATE
from aubench_synthau.variants import AU_COL, PROTOTYPES, RENDERED_AUS

__all__ = ["identity", "identity_landmarks", "trajectory", "drop_episodes"]


def identity(rng: np.random.Generator, style: str) -> dict[str, Any]:
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


def identity_landmarks(ident: dict[str, Any]) -> np.ndarray:
    p = TEMPLATE.copy()
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


def _envelope(T: int, rng: np.random.Generator) -> np.ndarray:
    start = rng.integers(-6, T)
    on, apex, off = rng.integers(2, 6), rng.integers(3, 16), rng.integers(3, 9)
    t = np.arange(T) - start
    env = np.clip(t / on, 0, 1)
    env = np.where(t > on + apex, np.clip(1 - (t - on - apex) / off, 0, 1), env)
    return env


def trajectory(rng: np.random.Generator, T: int, mix: dict[str, float], rate: float,
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
            inten[:, AU_COL[au]] = np.maximum(inten[:, AU_COL[au]], env * apex * w * rng.uniform(0.8, 1.15))
    for au, p in tonic.items():
        if rng.random() < p:
            level = rng.uniform(1.2, 3.5)
            drift = np.cumsum(rng.normal(0, 0.15, T))
            env = np.ones(T) if rng.random() < 0.5 else _envelope(T, rng)
            inten[:, AU_COL[au]] = np.maximum(inten[:, AU_COL[au]], np.clip(level + drift, 0, 5) * env)
    a4 = inten[:, AU_COL[4]]
    for au in (1, 2):  # AU4 lowers the brows: it suppresses the raisers
        inten[:, AU_COL[au]] *= np.clip(1 - a4 / 2.0, 0, 1)
    inten[:, AU_COL[25]] = np.maximum(inten[:, AU_COL[25]], inten[:, AU_COL[26]])
    inten[:, AU_COL[6]] = np.maximum(inten[:, AU_COL[6]], 0.7 * inten[:, AU_COL[12]] * (inten[:, AU_COL[12]] > 2.5))
    return np.clip(inten, 0, 5)


def drop_episodes(positive: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
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
